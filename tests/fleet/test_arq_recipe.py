"""The fleet recipe runs: an Arq worker (asyncio, on the tests' real Redis) serves ideochar jobs through the
shared state and a PostgreSQL journal, and keeps the fleet's limit and budget."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import make_image
from ideochar.emulator import testing
from ideochar.limits import Budget
from ideochar.state.redis import RedisState


@pytest.mark.socket
def test_an_arq_worker_runs_ideochar_jobs_on_the_fleets_redis(
    redis_url: str, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker

    from fleet import arq_tasks

    reference = tmp_path / "hero.png"
    reference.write_bytes(make_image(48, 48))
    with testing.running_emulator(model_seconds=0.05) as server:
        base = testing.base_urls(server)["fal"]
        environ = {
            "IDEOCHAR_STATE_URL": redis_url,
            "IDEOCHAR_JOURNAL_URL": postgres_url,
            "IDEOCHAR_OUTPUT_DIR": str(tmp_path / "out"),
            "IDEOCHAR_BUDGET_USD": "0.60",  # four images at $0.15
            "IDEOCHAR_BUDGET_NAME": f"arq-{os.getpid()}",
            "IDEOCHAR_BASE_URLS": " ".join(f"fal.{name}={url}" for name, url in base.items()),
            "FAL_KEY": "arq-key",
        }
        for name, value in environ.items():
            monkeypatch.setenv(name, value)

        async def main() -> list[Any]:
            settings = RedisSettings.from_dsn(redis_url)
            pool = await create_pool(settings)
            jobs = [
                await pool.enqueue_job("character", f"arq job {n}", str(reference), n, _queue_name="ideochar-test")
                for n in range(6)
            ]
            worker = Worker(
                functions=arq_tasks.WorkerSettings.functions,
                on_startup=arq_tasks.startup,
                on_shutdown=arq_tasks.shutdown,
                redis_settings=settings,
                queue_name="ideochar-test",
                burst=True,
                max_jobs=8,
                handle_signals=False,
            )
            await worker.async_run()
            await worker.close()
            results = []
            for job in jobs:
                assert job is not None
                info = await job.result_info()
                results.append(info)
            await pool.aclose()
            return results

        results = anyio.run(main)
        billed = testing.billed(server, "fal")
    served = [r.result for r in results if r is not None and r.success]
    assert len(served) == 4 and billed == 4  # the budget held across the worker's concurrent tasks
    assert all(s["provider"] == "fal" and s["job_id"] for s in served)
    state = RedisState(redis_url)
    assert state.spent(Budget(Decimal("0.60"), environ["IDEOCHAR_BUDGET_NAME"])) == (Decimal("0.6"), Decimal(0))
    state.close()

"""The fleet recipe runs: the Arq block of docs/howto/fleet.md, exactly as printed, is the worker's module.

An Arq worker (asyncio, on the tests' real Redis) serves ideochar jobs through the shared state and a
PostgreSQL journal, configured by the environment alone as a deployment would be, against the emulator,
and keeps the fleet's budget across its concurrent tasks.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from conftest import make_image
from ideochar.emulator import testing
from ideochar.limits import Budget
from ideochar.state.redis import RedisState

TESTS_DIR = Path(__file__).resolve().parents[1]
RECIPE_PAGE = TESTS_DIR.parent / "docs" / "howto" / "fleet.md"


def _docs_support() -> ModuleType:
    """tests/docs/docs_support.py, which reads the docs' blocks as the docs' own tests do (its folder is on
    sys.path only when those tests were collected)."""
    if "docs_support" in sys.modules:
        return sys.modules["docs_support"]
    spec = importlib.util.spec_from_file_location("docs_support", TESTS_DIR / "docs" / "docs_support.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_support"] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def recipe_code() -> str:
    """The page's one Python block that defines Arq's ``WorkerSettings``."""
    found = [b.code for b in _docs_support().blocks(RECIPE_PAGE, "python") if "class WorkerSettings" in b.code]
    assert len(found) == 1, f"{RECIPE_PAGE.name} should hold one Arq recipe, found {len(found)}"
    return str(found[0])


def load_recipe(folder: Path) -> ModuleType:
    """The recipe saved as ``tasks.py`` and imported, as ``arq tasks.WorkerSettings`` would."""
    path = folder / "tasks.py"
    path.write_text(recipe_code(), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("tasks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_never_lets_arq_retry_a_task() -> None:
    """A retried task is a new job, which could pay twice: the printed settings must say so."""
    assert "max_tries = 1" in recipe_code()


@pytest.mark.socket
def test_the_docs_arq_recipe_runs_ideochar_jobs_on_the_fleets_redis(
    redis_url: str, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker

    reference = tmp_path / "hero.png"
    reference.write_bytes(make_image(48, 48))
    with testing.running_emulator(model_seconds=0.05) as server:
        base = testing.base_urls(server)["fal"]
        environ = {
            "IDEOCHAR_STATE_URL": redis_url,
            "IDEOCHAR_JOURNAL_URL": postgres_url,
            "IDEOCHAR_OUTPUT_DIR": str(tmp_path / "out"),
            "IDEOCHAR_BUDGET_USD": "0.60",  # four images at $0.15
            "IDEOCHAR_BUDGET_NAME": f"arq-{os.getpid()}-{tmp_path.name}",
            "IDEOCHAR_BASE_URLS": " ".join(f"fal.{name}={url}" for name, url in base.items()),
            "FAL_KEY": "arq-key",
        }
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)  # no configuration file of this checkout is found from here
        tasks = load_recipe(tmp_path)
        monkeypatch.setitem(sys.modules, "tasks", tasks)
        settings = tasks.WorkerSettings

        async def main() -> list[Any]:
            pool = await create_pool(settings.redis_settings)
            jobs = [
                await pool.enqueue_job("character", f"arq job {n}", str(reference), n, _queue_name="ideochar-test")
                for n in range(6)
            ]
            worker = Worker(
                functions=settings.functions,
                on_startup=settings.on_startup,
                on_shutdown=settings.on_shutdown,
                redis_settings=settings.redis_settings,
                max_jobs=settings.max_jobs,
                max_tries=settings.max_tries,
                queue_name="ideochar-test",
                burst=True,
                handle_signals=False,
            )
            await worker.async_run()
            await worker.close()
            results = [await job.result_info() for job in jobs if job is not None]
            await pool.aclose()
            return results

        results = anyio.run(main)
        billed = testing.billed(server, "fal")
    assert isinstance(settings.redis_settings, RedisSettings)
    served = [r.result for r in results if r is not None and r.success]
    refused = [r.result for r in results if r is not None and not r.success]
    assert len(results) == 6 and len(served) == 4 and billed == 4  # the budget held across concurrent tasks
    assert all(type(error).__name__ == "OverBudget" for error in refused), refused
    assert all(s["provider"] == "fal" and s["job_id"] for s in served)
    state = RedisState(redis_url)
    assert state.spent(Budget(Decimal("0.60"), environ["IDEOCHAR_BUDGET_NAME"])) == (Decimal("0.6"), Decimal(0))
    state.close()

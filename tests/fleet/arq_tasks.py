"""The recipe of docs/howto/fleet.md: ideochar in Arq workers, on the Redis the fleet's state uses.

One ``AsyncClient`` per worker process, made at start-up and closed at shutdown; each task is one job.
The settings come from the environment (``IDEOCHAR_STATE_URL``, ``IDEOCHAR_JOURNAL_URL``, ...), as a
deployment would give them.
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings

from ideochar import AsyncClient


async def startup(ctx: dict[str, Any]) -> None:
    ctx["ideochar"] = AsyncClient(
        ["fal"], options={"fal": {"status": "poll", "image_transport": "data_uri"}}, config=False
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["ideochar"].aclose()


async def character(ctx: dict[str, Any], prompt: str, reference: str, seed: int) -> dict[str, Any]:
    """One job. A task is never retried (``max_tries = 1``): Arq would run it as a new job, which could pay
    twice; a dead worker's journaled jobs are finished by ``resume`` instead (docs/howto/fleet.md)."""
    result = await ctx["ideochar"].generate(prompt, reference, seed=seed)
    return {"job_id": result.job_id, "provider": result.provider, "cost_usd": str(result.cost_usd)}


class WorkerSettings:
    functions = [character]  # noqa: RUF012 - Arq reads these class attributes
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings.from_dsn(os.environ.get("IDEOCHAR_STATE_URL", "redis://localhost:6379/0"))
    max_jobs = 8
    max_tries = 1

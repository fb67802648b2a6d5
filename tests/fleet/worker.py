"""One worker of a fleet: ``python -m fleet.worker '<json>'`` (from tests/), an AsyncClient on shared backends.

Arguments (JSON): ``id``, ``redis``, ``journal`` (PostgreSQL URL), ``emulator`` (root URL), ``out``,
``reference``, ``prefix`` (the Redis keys of this run), ``budget_usd``, ``tasks`` (jobs at once),
``lease_seconds``, ``threshold``, ``cooldown``.

It takes job numbers from the Redis list ``{prefix}:queue`` (moved, one at a time, onto its own
``{prefix}:processing:{id}`` list), runs each as ``generate("fleet job N", seed=N)`` against fal, and
writes the outcome to ``{prefix}:outcomes``. A job the vendor never took and never billed (its circuit
was open, or it answered 503) goes back on the queue after a pause, as a task queue retries such a task;
at most :data:`TRIES` times. It keeps ``{prefix}:alive:{id}`` alive while it runs. When
the queue is empty it finishes what a dead worker left: that worker's numbers whose job the journal does
not hold go back on the queue (nothing of them was sent: the journal records a job before anything is
sent); jobs the journal holds as running are resumed (``JobBusy`` while their owner lives).

Every answer of the shared state's scripts is logged to ``{prefix}:answers`` on Redis's clock (admitted,
with its lease and whether it was the fleet's probe; released, with when the breaker last opened), so the
test can check the breaker against the moments admissions were decided, not when a worker got round to
reporting them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import redis.asyncio

from ideochar import AsyncClient
from ideochar.errors import IdeocharError, JobBusy, ProviderUnavailable
from ideochar.state.redis import RedisState, ScriptAnswer

KEY = "fleet-key"
#: How often one number is run again after the vendor never took it (a task queue's retries).
TRIES = 40
#: The pause before a number the vendor never took goes back on the queue.
RETRY_SECONDS = 0.25


class LoggedState(RedisState):
    """The shared state, logging every script answer (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[str] = []

    def observe(self, provider: str, lease: str, answer: ScriptAnswer) -> None:
        super().observe(provider, lease, answer)
        if answer.status in ("ok", "released"):
            self.log.append(json.dumps([answer.status, answer.at, lease, answer.probe, answer.opened]))


def never_taken(error: IdeocharError) -> bool:
    """The vendor neither took nor billed it (breaker open, no slot, a 503 before admission): run it again."""
    return isinstance(error, ProviderUnavailable) and not error.admitted and error.billed == "no"


async def main(args: dict[str, Any]) -> None:
    prefix, me = args["prefix"], str(args["id"])
    db = redis.asyncio.Redis.from_url(args["redis"])
    state = LoggedState(args["redis"], prefix=prefix, lease_seconds=args["lease_seconds"], name=f"{me}-{os.getpid()}")
    client = AsyncClient(
        ["fal"],
        base_urls=args["base_urls"],
        keys={"fal": KEY},
        options={"fal": {"status": "poll", "image_transport": "data_uri"}},
        journal=args["journal"],
        output_dir=args["out"],
        state=state,
        budget_usd=args["budget_usd"],
        config={"breaker": {"failure_threshold": args["threshold"], "cooldown_seconds": args["cooldown"]}},
        environ={},
        deadline_seconds=120,
        limits={"fal": {"max_images_in_flight": 10, "requests_per_minute": 1_000_000}},
    )
    await db.sadd(f"{prefix}:workers", me)

    async def flush() -> None:
        if state.log:
            batch, state.log[:] = list(state.log), []
            await db.rpush(f"{prefix}:answers", *batch)

    async def heartbeat() -> None:
        while True:
            await db.set(f"{prefix}:alive:{me}", os.getpid(), px=1500)
            await flush()
            await anyio.sleep(0.2)

    async def run(number: int) -> None:
        try:
            result = await client.generate(f"fleet job {number}", args["reference"], seed=number)
            outcome = {"status": "succeeded", "job": result.job_id, "images": len(result.images)}
        except IdeocharError as exc:
            if never_taken(exc) and await db.hincrby(f"{prefix}:tries", str(number), 1) < TRIES:
                await anyio.sleep(RETRY_SECONDS)
                async with db.pipeline(transaction=True) as again:  # back on the queue, atomically
                    await again.rpush(f"{prefix}:queue", number).lrem(f"{prefix}:processing:{me}", 1, str(number))
                    await again.execute()
                return
            outcome = {"status": type(exc).__name__, "job": getattr(exc, "job_id", None)}
        await db.hset(f"{prefix}:outcomes", str(number), json.dumps({**outcome, "worker": me}))
        await db.lrem(f"{prefix}:processing:{me}", 1, str(number))

    async def take() -> None:
        while True:
            item = await db.lmove(f"{prefix}:queue", f"{prefix}:processing:{me}", "LEFT", "RIGHT")
            if item is None:
                return
            await run(int(item))

    async with anyio.create_task_group() as group:
        group.start_soon(heartbeat)
        async with anyio.create_task_group() as takers:
            for _ in range(args["tasks"]):
                takers.start_soon(take)
        await db.set(f"{prefix}:done:{me}", 1)  # its own work is done; it may still help with the dead's
        await finish_the_dead(client, db, prefix, me, take, args)
        group.cancel_scope.cancel()
    await client.aclose()
    await flush()
    await db.aclose()
    print("DONE", flush=True)


async def finish_the_dead(client: AsyncClient, db: Any, prefix: str, me: str, take: Any, args: Any) -> None:
    """Until every other worker is done or dead: requeue a dead worker's unjournaled numbers, resume its jobs."""
    while True:
        others = [w.decode() for w in await db.smembers(f"{prefix}:workers") if w.decode() != me]
        pending = [w for w in others if not await db.exists(f"{prefix}:done:{w}")]
        dead = [w for w in pending if not await db.exists(f"{prefix}:alive:{w}")]
        for worker in dead:
            await recover(client, db, prefix, me, worker)
        if await db.llen(f"{prefix}:queue"):
            async with anyio.create_task_group() as takers:
                for _ in range(args["tasks"]):
                    takers.start_soon(take)
        quiet = not pending or (set(pending) == set(dead) and not await db.llen(f"{prefix}:queue"))
        if quiet and not await resume_running(client, db, prefix, me):
            return
        await anyio.sleep(0.3)


async def recover(client: AsyncClient, db: Any, prefix: str, me: str, dead: str) -> None:
    journal = client.journal
    assert journal is not None
    while True:
        item = await db.lmove(f"{prefix}:processing:{dead}", f"{prefix}:recovering:{me}", "LEFT", "RIGHT")
        if item is None:
            break
        number = int(item)
        prompts = {job.prompt for job in await anyio.to_thread.run_sync(lambda: journal.jobs(limit=None))}
        if f"fleet job {number}" not in prompts:
            await db.rpush(f"{prefix}:queue", number)  # never journaled: nothing of it was sent
        await db.lrem(f"{prefix}:recovering:{me}", 1, item)
    await db.sadd(f"{prefix}:recovered", dead)
    await db.set(f"{prefix}:done:{dead}", "dead")


async def resume_running(client: AsyncClient, db: Any, prefix: str, me: str) -> int:
    """Resume the journal's running jobs whose owner is gone; how many are still held by live owners."""
    journal = client.journal
    assert journal is not None
    busy = 0
    for job in await anyio.to_thread.run_sync(lambda: journal.jobs(limit=None, status="running")):
        try:
            result = await client.resume(job.id)
            outcome = {"status": "succeeded", "job": job.id, "images": len(result.images), "resumed_by": me}
        except JobBusy:
            busy += 1
            continue
        except IdeocharError as exc:
            outcome = {"status": type(exc).__name__, "job": job.id, "resumed_by": me}
        number = job.prompt.rsplit(" ", 1)[-1]
        await db.hset(f"{prefix}:outcomes", number, json.dumps({**outcome, "worker": me}))
        await db.rpush(f"{prefix}:resumed", json.dumps({"job": job.id, "by": me}))
    return busy


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))

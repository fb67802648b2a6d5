"""Figure 7: a fleet. What the shared backends cost per job, and what four processes give over one.

Both parts run against the emulator in its own process and a real Redis and PostgreSQL this script
starts itself (``tests/servers.py``, as the tests do), all on loopback.

**Cost per job.** One process runs fal generations one at a time (no model time, the reference inline)
through four clients, in a shuffled order each round: the state in this process (the default) or in
Redis (:class:`~ideochar.state.redis.RedisState`: every attempt's admission and release is one Lua script
each), each without a journal (the state's cost alone) and with the journal a single process or a fleet
uses (SQLite; PostgreSQL). Every client has a budget and a concurrency limit, so the in-process state does
the same accounting the scripts do. Reported: wall and client CPU time per job, and the per-round
differences (shared minus in-process). What one job asks of Redis is counted by the server itself
(``INFO commandstats``) over a separate run of jobs: the scripts it ran, and every command, those the
scripts run inside included.

**Throughput.** 1,200 jobs through the fleet's configuration (Redis state, PostgreSQL journal, one
budget, fal limited to 32 images in flight fleet-wide), with 32 jobs in flight in all: one process with
32, or four processes with 8 each. Each process builds its client and runs a first job before the clock
starts (as a worker that has been serving does), then all start together. Throughput = jobs / the wall
time from the first start to the last finish. The emulator's in-flight high-water mark is checked
against the limit. On two cores the emulator, Redis, PostgreSQL and the clients share the CPU, so this
measures how much a fleet on one small machine gains, not how far one scales over machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _support import HERE, ROOT, EmulatorProcess, alternate, log, ms, reps, summary, write_result

sys.path.insert(0, str(ROOT / "tests"))  # tests/servers.py: the real servers the tests use

PROMPT = "the character on a night train"
FAL_INLINE = {"fal": {"image_transport": "data_uri"}}
#: Far above what the runs spend: the budget is there so both states do the accounting, not to refuse.
BUDGET_USD = "100000"
FLEET_LIMIT = 32
COST_ARMS = ("in-process", "Redis", "in-process + SQLite journal", "Redis + PostgreSQL journal")
IN_FLIGHT = 32


@contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """A Redis URL and a PostgreSQL URL (a fresh schema), of servers started for this run."""
    from servers import fresh_schema, postgres_server, redis_server

    with redis_server() as redis, postgres_server() as postgres:
        yield redis.url, fresh_schema(postgres.url)


def _reference(folder: Path) -> Path:
    from PIL import Image

    path = folder / "reference.png"
    Image.new("RGB", (128, 128), (90, 120, 200)).save(path, "PNG")
    return path


def _client(url: str, *, state: Any, journal: Any, output_dir: Path, limit: int = FLEET_LIMIT) -> Any:
    import ideochar

    return ideochar.AsyncClient(
        ["fal"],
        emulator=url,
        journal=journal,
        output_dir=output_dir,
        state=state,
        budget_usd=BUDGET_USD,
        options=FAL_INLINE,
        limits={"fal": {"max_images_in_flight": limit, "requests_per_minute": 10_000_000}},
    )


# -- cost per job --------------------------------------------------------------------------------------


def _cost_clients(url: str, redis_url: str, postgres_url: str, folder: Path) -> dict[str, Any]:
    from ideochar.state.redis import RedisState

    def redis_state() -> RedisState:
        return RedisState(redis_url, prefix=f"bench-{uuid.uuid4().hex[:8]}")

    out = folder / "out"
    return {
        "in-process": _client(url, state=None, journal=False, output_dir=out),
        "Redis": _client(url, state=redis_state(), journal=False, output_dir=out),
        "in-process + SQLite journal": _client(url, state=None, journal=folder / "journal.sqlite3", output_dir=out),
        "Redis + PostgreSQL journal": _client(url, state=redis_state(), journal=postgres_url, output_dir=out),
    }


async def _one(client: Any, reference: Path) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = await client.generate(PROMPT, reference, aspect_ratio="1:1")
    assert result.image.data
    return time.perf_counter() - wall, time.process_time() - cpu


def _redis_calls(server: Any) -> tuple[int, int]:
    """Commands the server ran (those inside scripts included) and round trips that ran a script."""
    stats = server.info("commandstats")
    commands = sum(int(v["calls"]) for v in stats.values())
    scripts = sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))
    return commands, scripts


async def _redis_per_job(client: Any, reference: Path, redis_url: str, jobs: int) -> dict[str, float]:
    """Redis's own count of what ``jobs`` sequential jobs asked of it (nothing else uses the server then)."""
    import redis

    server = redis.Redis.from_url(redis_url)
    commands, scripts = _redis_calls(server)
    for _ in range(jobs):
        await _one(client, reference)
    commands_after, scripts_after = _redis_calls(server)
    server.close()
    # The INFO that read "before" is counted in "after".
    return {"commands": (commands_after - commands - 1) / jobs, "scripts": (scripts_after - scripts) / jobs}


async def _cost(url: str, redis_url: str, postgres_url: str) -> dict[str, Any]:
    rounds = reps(150, 10)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        reference = _reference(folder)
        clients = _cost_clients(url, redis_url, postgres_url, folder)
        for client in clients.values():  # plugins, schemas, connections, scripts loaded before the clock
            await _one(client, reference)
        walls: dict[str, list[float]] = {name: [] for name in COST_ARMS}
        cpus: dict[str, list[float]] = {name: [] for name in COST_ARMS}
        for _, name in alternate(COST_ARMS, rounds):
            wall, cpu = await _one(clients[name], reference)
            walls[name].append(ms(wall))
            cpus[name].append(ms(cpu))
        per_job = await _redis_per_job(clients["Redis"], reference, redis_url, reps(50, 5))
        for client in clients.values():
            await client.aclose()
    pairs = {"Redis": "in-process", "Redis + PostgreSQL journal": "in-process + SQLite journal"}
    return {
        "rounds": rounds,
        "wall_ms": {name: summary(values) for name, values in walls.items()},
        "cpu_ms": {name: summary(values) for name, values in cpus.items()},
        "samples": walls,
        "shared_minus_local_ms": {
            shared: summary([a - b for a, b in zip(walls[shared], walls[local], strict=True)])
            for shared, local in pairs.items()
        },
        "shared_minus_local_cpu_ms": {
            shared: summary([a - b for a, b in zip(cpus[shared], cpus[local], strict=True)])
            for shared, local in pairs.items()
        },
        "redis_per_job": per_job,
    }


# -- throughput ----------------------------------------------------------------------------------------


async def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One process of the throughput run: ready, wait for the word, run its jobs ``tasks`` at a time."""
    from ideochar.state.redis import RedisState

    reference = Path(spec["reference"])
    state = RedisState(spec["redis"], prefix=spec["prefix"])
    client = _client(spec["url"], state=state, journal=spec["journal"], output_dir=Path(spec["out"]))
    await _one(client, reference)
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    remaining, errors = spec["jobs"], {}

    async def take() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                await client.generate(PROMPT, reference, aspect_ratio="1:1")
            except Exception as exc:  # counted and reported: a failure must show in the figure
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    start, cpu = time.time(), time.process_time()
    await asyncio.gather(*(take() for _ in range(spec["tasks"])))
    end = time.time()
    await client.aclose()
    return {"start": start, "end": end, "cpu_seconds": time.process_time() - cpu, "errors": errors}


def _fleet_run(processes: int, jobs: int, url: str, redis_url: str, postgres_url: str, folder: Path) -> dict[str, Any]:
    from ideochar.emulator import testing

    prefix = f"bench-fleet-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    common = {
        "url": url,
        "redis": redis_url,
        "journal": postgres_url,
        "prefix": prefix,
        "reference": str(_reference(folder)),
        "out": str(folder / "out"),
        "tasks": IN_FLIGHT // processes,
        "jobs": jobs // processes,
    }
    command = [sys.executable, str(HERE / "bench_fleet.py"), "--worker"]
    workers = [
        subprocess.Popen([*command, json.dumps(common)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "READY"
    billed_before = testing.billed(url, "fal")
    for worker in workers:  # the word, to all at once
        assert worker.stdin is not None
        worker.stdin.write("GO\n")
        worker.stdin.flush()
    reports = []
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        if worker.returncode != 0:
            raise RuntimeError(f"a worker failed with exit code {worker.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    errors: dict[str, int] = {}
    for report in reports:
        for name, count in report["errors"].items():
            errors[name] = errors.get(name, 0) + count
    done = jobs // processes * processes
    result = {
        "processes": processes,
        "jobs": done,
        "in_flight_per_process": IN_FLIGHT // processes,
        "succeeded": done - sum(errors.values()),
        "errors": errors,
        "billed": testing.billed(url, "fal") - billed_before,
        "wall_seconds": wall,
        "jobs_per_second": done / wall,
        "client_cpu_ms_per_job": ms(sum(r["cpu_seconds"] for r in reports)) / done,
    }
    log(f"fleet {processes} process(es): {result['succeeded']}/{done} in {wall:.2f} s, {done / wall:.1f} jobs/s")
    return result


def _throughput(url: str, redis_url: str, postgres_url: str) -> dict[str, Any]:
    from ideochar.emulator import testing

    jobs = reps(1200, 120)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps(3, 1)):  # alternating, so the machine's drift hits both
            for processes in (1, 4):
                runs.append(_fleet_run(processes, jobs, url, redis_url, postgres_url, Path(tmp) / f"{rep}-{processes}"))
    peak = testing.in_flight(url, "fal")["peak"]
    return {"jobs": jobs, "in_flight": IN_FLIGHT, "limit": FLEET_LIMIT, "emulator_peak_in_flight": peak, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", help="run one throughput worker (JSON spec); used by this script")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(_worker(json.loads(args.worker)))), flush=True)
        return
    with servers() as (redis_url, postgres_url), EmulatorProcess(model_seconds=0.0) as emulator:
        cost = asyncio.run(_cost(emulator.url, redis_url, postgres_url))
        log(f"fleet cost: Redis {cost['shared_minus_local_ms']['Redis']['median']:+.2f} ms/job over in-process")
        throughput = _throughput(emulator.url, redis_url, postgres_url)
    write_result("fleet", {"cost": cost, "throughput": throughput, "samples": cost["samples"]})


if __name__ == "__main__":
    main()

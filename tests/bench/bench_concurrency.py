"""Figure 4: 1,000 generations in flight at once through ``AsyncClient``, each taking 2 s of emulated model time.

Each arm runs in a fresh client process (so its peak RSS is its own) against an emulator in another
process. Arms:

* ``ideochar``: ``AsyncClient(["fal"], journal=False)``, 1,000 ``generate`` calls gathered at once (fal
  queue: submit, status stream held open for the model's 2 s, result, image download).
* ``ideochar + journal``: the same with the journal on, as by default (in a temporary folder): every job,
  attempt and image recorded in SQLite and written to disk as it arrives.
* ``raw httpx``: the same four requests per job by hand (``_raw.afal_generate``), same connection limits.
* ``raw httpx, no model time``: raw httpx again with no model time: the fastest this machine serves
  1,000 jobs' requests with an httpx client at all.

The emulator's own limit is its CPU time during the ideochar run (``psutil``): the least wall time it
needs to serve those requests. The target is ``wall < 1.5 x 2 s + that``. Client CPU time is recorded
too; on two cores it shows which side is the bottleneck. One more ideochar run is profiled with
pyinstrument (``docs/benchmarks/concurrency-profile.txt``).

Each job's result is checked (an image arrived) and dropped at once, as a server handling requests would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import HERE, PLOTS, EmulatorProcess, log, peak_rss_bytes, reps, reset_peak_rss, rss_bytes, write_result

JOBS = 1000
MODEL_SECONDS = 2.0
PROMPT = "the character in a crowded market"
#: ideochar's own pool size (client.py), used for raw httpx too so both may open as many connections.
MAX_CONNECTIONS = 1024
MAX_KEEPALIVE = 64


def _reference(folder: Path) -> Path:
    from PIL import Image

    path = folder / "reference.png"
    Image.new("RGB", (128, 128), (200, 120, 60)).save(path, "PNG")
    return path


async def _ideochar(url: str, reference: Path, jobs: int, journal: Path | None) -> list[str | None]:
    import ideochar

    async def one(client: ideochar.AsyncClient) -> str | None:
        try:
            result = await client.generate(PROMPT, reference, aspect_ratio="1:1")
        except ideochar.IdeocharError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if result.image.data else "no image"

    async with ideochar.AsyncClient(
        ["fal"], emulator=url, journal=journal or False, options={"fal": {"image_transport": "data_uri"}}
    ) as client:
        # Load plugins and build schemas before the clock starts, as a long-running server would have.
        client.plan(client.build_request(ideochar.Generate(), PROMPT, reference, aspect_ratio="1:1"))
        return await _timed(lambda: one(client), jobs)


async def _raw(url: str, reference: Path, jobs: int, journal: Path | None) -> list[str | None]:
    import httpx
    from _raw import afal_generate

    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60, connect=10)) as http:

        async def one() -> str | None:
            try:
                data = await afal_generate(http, url, reference, PROMPT)
            except httpx.HTTPError as exc:
                return f"{type(exc).__name__}: {exc}"
            return None if data else "no image"

        return await _timed(one, jobs)


_clock: dict[str, Any] = {}


async def _timed(make: Any, jobs: int) -> list[str | None]:
    reset_peak_rss()
    _clock["baseline_rss"] = rss_bytes()
    _clock["start"], cpu = time.perf_counter(), time.process_time()
    outcomes = await asyncio.gather(*(make() for _ in range(jobs)))
    _clock["wall"] = time.perf_counter() - _clock["start"]
    _clock["cpu"] = time.process_time() - cpu
    _clock["peak_rss"] = peak_rss_bytes()
    return list(outcomes)


def _arm(arm: str, url: str, jobs: int, profile: bool = False) -> None:
    """One arm, in this (fresh) process; prints a JSON line for the parent."""
    with tempfile.TemporaryDirectory() as tmp:
        reference = _reference(Path(tmp))
        runner = _raw if arm == "raw" else _ideochar
        journal = Path(tmp) / "journal.sqlite3" if arm == "ideochar+journal" else None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            profiler.start()
        outcomes = asyncio.run(runner(url, reference, jobs, journal))
        if profile:
            profiler.stop()
            PLOTS.mkdir(parents=True, exist_ok=True)
            (PLOTS / "concurrency-profile.txt").write_text(
                f"# pyinstrument: {jobs} ideochar fal generations gathered at once against the emulator "
                "(its own process), 2 s model time; the profiler slows the run\n"
                + profiler.output_text(unicode=False, color=False, show_all=False)
            )
    errors: dict[str, int] = {}
    for outcome in outcomes:
        if outcome is not None:
            key = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|127\.0\.0\.1:\d+", "…", outcome)[:400]
            errors[key] = errors.get(key, 0) + 1
    print(
        json.dumps(
            {
                "arm": arm,
                "jobs": jobs,
                "succeeded": sum(1 for o in outcomes if o is None),
                "errors": errors,
                "wall_seconds": _clock["wall"],
                "jobs_per_second": jobs / _clock["wall"],
                "client_cpu_seconds": _clock["cpu"],
                "baseline_rss_bytes": _clock["baseline_rss"],
                "peak_rss_bytes": _clock["peak_rss"],
            }
        )
    )


def _run_arm(arm: str, model_seconds: float, jobs: int, *extra: str) -> dict[str, Any]:
    import psutil

    with EmulatorProcess(model_seconds=model_seconds) as emulator:
        server = psutil.Process(emulator.pid)
        cpu_before = server.cpu_times()
        out = subprocess.run(
            [
                sys.executable,
                str(HERE / "bench_concurrency.py"),
                "--arm",
                arm,
                "--url",
                emulator.url,
                "--jobs",
                str(jobs),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        cpu_after = server.cpu_times()
    if out.returncode != 0:
        raise RuntimeError(f"{arm} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["model_seconds"] = model_seconds
    result["emulator_cpu_seconds"] = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    log(
        f"concurrency {arm} (model {model_seconds} s): {result['succeeded']}/{jobs} in {result['wall_seconds']:.2f} s, "
        f"peak RSS {result['peak_rss_bytes'] / 1e6:.0f} MB"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", choices=["ideochar", "ideochar+journal", "raw"])
    parser.add_argument("--url")
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.arm:
        _arm(args.arm, args.url, args.jobs, args.profile)
        return
    jobs = reps(JOBS, 200)
    runs: list[dict[str, Any]] = []
    for rep in range(reps(2, 1)):  # the compared arms twice, alternating: the machine's drift hits both
        runs.append(_run_arm("ideochar", MODEL_SECONDS, jobs) | {"label": "ideochar"})
        runs.append(_run_arm("raw", MODEL_SECONDS, jobs) | {"label": "raw httpx"})
        if rep == 0:  # context, once (the whole figure stays within the run's time budget)
            runs.append(_run_arm("ideochar+journal", MODEL_SECONDS, jobs) | {"label": "ideochar + journal"})
            runs.append(_run_arm("raw", 0.0, jobs) | {"label": "raw httpx, no model time"})
    _run_arm("ideochar", MODEL_SECONDS, jobs, "--profile")
    write_result(
        "concurrency",
        {
            "jobs": jobs,
            "model_seconds": MODEL_SECONDS,
            "runs": runs,
            "target": {"wall_seconds": "< 1.5 x model seconds + emulator CPU seconds", "peak_rss_mb": 200},
        },
    )


if __name__ == "__main__":
    main()

"""Figure 8: a 10,000-row batch against the emulator, every vendor's concurrency limited.

``AsyncClient(["fal", "replicate", "segmind"]).batch(RowSource(rows.jsonl), out=...)`` with the journal on,
each vendor limited to a number of images in flight (:data:`LIMITS`, set as a user would in
``[limits.*]``), and each job held by the emulator (its own process) for :data:`MODEL_SECONDS`. The limits
allow at most ``sum(LIMITS)`` jobs at once, so no run can take less than ``rows x MODEL_SECONDS /
sum(LIMITS)``: the **bound**. Measured, each arm in a fresh client process:

* wall time against that bound, and how the rows spread over the vendors;
* peak RSS of the client process, for 2,000 and 10,000 rows: rows are read as they can be sent and every
  counter has a fixed size, so the peak should not grow with the rows;
* the client's CPU time per row (the emulator's CPU is measured apart, with psutil).

Every row must end done and be paid for once (the emulator's ledger).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import HERE, EmulatorProcess, emulator_admin, log, peak_rss_bytes, reps, reset_peak_rss, write_result

ROWS = 10_000
#: The smaller run that shows whether peak memory grows with the number of rows.
MEMORY_ROWS = (2_000,)
MODEL_SECONDS = 1.0
#: Images in flight per vendor (sum: 16 jobs at once, 16 jobs a second at most). Chosen so that the limits,
#: not this 2-core machine, bind: the emulator (one process) spends ~43 ms of CPU per job and the client
#: ~18 ms, so at 30 jobs a second (15/10/5) the emulator was the limit (1.43x the bound on 1,000 rows).
LIMITS = {"fal": 8, "replicate": 5, "segmind": 3}


def _rows(folder: Path, count: int) -> Path:
    from PIL import Image

    Image.new("RGB", (128, 128), (200, 120, 60)).save(folder / "face.png", "PNG")
    path = folder / "rows.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            out.write(json.dumps({"prompt": f"storyboard panel {i}", "reference": "face.png", "seed": i}) + "\n")
    return path


async def _batch(url: str, rows: Path, folder: Path) -> dict[str, Any]:
    import ideochar
    from ideochar.batch import RowSource

    limits = {name: {"max_images_in_flight": n, "requests_per_minute": 1_000_000} for name, n in LIMITS.items()}
    async with ideochar.AsyncClient(
        list(LIMITS), emulator=url, journal=folder / "journal.sqlite3", config=False, limits=limits
    ) as client:
        client.plan(client.build_request(ideochar.Generate(), "warm up", folder / "face.png"))  # plugins loaded
        reset_peak_rss()
        started, cpu = time.perf_counter(), time.process_time()
        statuses: dict[str, int] = {}
        async with client.batch(RowSource(rows), out=folder / "out") as batch:
            async for row in batch:
                statuses[row.status] = statuses.get(row.status, 0) + 1
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        summary = batch.summary
    return {
        "statuses": statuses,
        "wall_seconds": wall,
        "client_cpu_seconds": cpu,
        "peak_rss_bytes": peak_rss_bytes(),
        "vendors": [v.to_json() for v in summary.vendors],
        "spent_usd": str(summary.spent_usd),
    }


def _arm(url: str, count: int) -> None:
    """One run in this (fresh) process; prints a JSON line for the parent."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = _rows(folder, count)
        result = asyncio.run(_batch(url, rows, folder))
    print(json.dumps({"rows": count, **result}))


def _run(count: int) -> dict[str, Any]:
    import psutil

    # An emulated Segmind key holds $100 (533 rows): enough credit for every row, so all three vendors serve.
    with EmulatorProcess(model_seconds=MODEL_SECONDS, extra_args=("--segmind-credits", "100000")) as emulator:
        server = psutil.Process(emulator.pid)
        before = server.cpu_times()
        out = subprocess.run(
            [sys.executable, str(HERE / "bench_batch.py"), "--arm", "--url", emulator.url, "--rows", str(count)],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        after = server.cpu_times()
        ledger = emulator_admin(emulator.url, "/_emulator/ledger")
    if out.returncode != 0:
        raise RuntimeError(f"the batch of {count} rows failed: {out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["emulator_cpu_seconds"] = (after.user + after.system) - (before.user + before.system)
    result["billed"] = sum(v["billed"] for v in ledger.values())
    result["bound_seconds"] = count * MODEL_SECONDS / sum(LIMITS.values())
    log(
        f"batch {count} rows: {result['statuses']} in {result['wall_seconds']:.1f} s "
        f"(bound {result['bound_seconds']:.1f} s), peak RSS {result['peak_rss_bytes'] / 1e6:.0f} MB, "
        f"client CPU {result['client_cpu_seconds'] / count * 1000:.2f} ms/row"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", action="store_true")
    parser.add_argument("--url")
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    if args.arm:
        _arm(args.url, args.rows)
        return
    sizes = [reps(n, n // 10) for n in (*MEMORY_ROWS, ROWS)]
    runs = [_run(n) for n in sizes]
    write_result(
        "batch",
        {
            "model_seconds": MODEL_SECONDS,
            "limits": LIMITS,
            "runs": runs,
            "target": {"wall_over_bound": 1.25, "peak_rss_growth_bytes": 10_000_000, "all_done_once": True},
        },
    )


if __name__ == "__main__":
    main()

"""The soak: many jobs through the router against the emulator with random faults, then accounting.

The emulator runs in its own process (``ideochar emulator serve``), so the client's memory is measured
alone. Jobs go through one :class:`~ideochar.AsyncClient` with ``CONCURRENCY`` in flight, each to two
vendors in a rotating order (so failover happens), against a fault profile where about 5% of requests
go wrong (errors, 429s, drops after admission, truncated and malformed answers, truncated images).

The emulator's ledger is the truth about what was charged. Every ledger entry is matched to the job
whose events carried its vendor id; Ideogram's entries carry an id the API never returns, so they are
matched by count. The summary (:func:`run`) gives, among others:

* ``unhandled``: exceptions that are not ideochar errors (must be 0);
* ``duplicates``: jobs charged more than once, by one vendor or by two (must be 0);
* ``lost``: jobs charged whose result is neither returned nor reported as possibly billed (must be 0);
* ``rss_growth``: resident memory at the end over resident memory after the warm-up (must be <= 1.10).

Run it alone: ``cd tests && ../.venv/bin/python -m reliability.soak --jobs 10000``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from conftest import CANARY_KEY, make_image
from ideochar import AsyncClient
from ideochar.errors import IdeocharError
from ideochar.events import Event

VENDORS = ("fal", "segmind", "ideogram", "replicate")
CONCURRENCY = 24
DEADLINE_SECONDS = 10.0
#: Per-request fault rates: they add up to about 5% of requests.
FAULTS: dict[str, Any] = {
    "seed": 20261123,
    "*": [
        {"route": "*", "kind": "status", "status": 503, "rate": 0.01},
        {"route": "*", "kind": "status", "status": 500, "rate": 0.005},
        {"route": "*", "kind": "rate_limit", "retry_after": 0, "rate": 0.01},
        {"route": "*", "kind": "drop_after_admit", "rate": 0.005},
        {"route": "*", "kind": "malformed_json", "rate": 0.005},
        {"route": "*", "kind": "truncate", "rate": 0.005},
        {"route": "files", "kind": "truncate", "rate": 0.01},
    ],
}


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process().memory_info().rss)


@dataclass
class Job:
    index: int
    order: tuple[str, str]
    vendor_ids: set[str] = field(default_factory=set)
    outcome: str = ""
    provider: str | None = None
    billed: str | None = None
    images: int = 0
    failures: list[str] = field(default_factory=list)
    """Every failed attempt, as ``provider:ErrorType:billed``."""
    risky: list[str] = field(default_factory=list)
    """Failed attempts before the one that served, whose billing was not "no" (a possible second charge)."""


@dataclass
class Emulator:
    process: subprocess.Popen[str]
    root: str
    base_urls: dict[str, dict[str, str]]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_emulator(model_seconds: float = 0.0) -> Emulator:
    """``ideochar emulator serve`` in a child process; waits for its first line with the port."""
    # The emulated Segmind account starts with $100 per key (about 530 jobs): the soak's is bottomless.
    code = (
        "import sys, decimal; import ideochar_segmind.emulator as segmind; "
        "segmind.STARTING_CREDITS = decimal.Decimal(10**9); from ideochar.cli import main; "
        f"sys.argv = ['ideochar', 'emulator', 'serve', '--port', '0', '--model-seconds', '{model_seconds}']; main()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    root = None
    while time.monotonic() < deadline and root is None:
        line = process.stdout.readline()
        if not line:
            break
        found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if found:
            root = found.group(1)
    if root is None:
        process.kill()
        raise RuntimeError("the emulator did not start")
    # Keep reading what it prints: a full pipe would block the server mid-soak.
    threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()
    from ideochar.emulator import testing

    for _ in range(100):
        try:
            urls = testing.base_urls(root)
            break
        except Exception:
            time.sleep(0.1)
    else:
        raise RuntimeError("the emulator never answered its health check")
    return Emulator(process, root, urls)


async def _jobs(total: int, emulator: Emulator, on_warm: Any, reference: Path) -> list[Job]:
    jobs = [Job(i, (VENDORS[i % 4], VENDORS[(i + 1 + i // 4) % 4 or 1])) for i in range(total)]
    for job in jobs:  # the second vendor must differ from the first
        if job.order[1] == job.order[0]:
            job.order = (job.order[0], VENDORS[(VENDORS.index(job.order[0]) + 1) % 4])
    seen: dict[str, set[str]] = defaultdict(set)
    """Vendor ids by job id, from the events; claimed by the job once it ends and knows its id."""

    def on_event(event: Event) -> None:
        if event.job_id and event.vendor_request_id:
            seen[event.job_id].add(event.vendor_request_id)

    clients: dict[tuple[str, str], AsyncClient] = {}
    for order in {job.order for job in jobs}:
        clients[order] = AsyncClient(
            list(order),
            base_urls=emulator.base_urls,
            keys={v: CANARY_KEY for v in VENDORS},
            journal=False,
            config=False,
            deadline_seconds=DEADLINE_SECONDS,
            on_event=on_event,
            limits={v: {"requests_per_minute": 10**9, "max_images_in_flight": 10**6} for v in VENDORS},
        )
    limiter = anyio.Semaphore(CONCURRENCY)
    warm_at = max(1, total // 10)
    done = 0

    async def one(job: Job) -> None:
        nonlocal done
        async with limiter:
            client = clients[job.order]
            try:
                # One prompt and seed for every job: the emulator renders each image once and serves it
                # from its cache, so the soak measures the client, not Pillow.
                result = await client.generate("a knight in the rain", str(reference), seed=7)
            except IdeocharError as exc:
                job.outcome = type(exc).__name__
                job.billed = getattr(exc, "billed", None)
                job.vendor_ids |= seen.pop(getattr(exc, "job_id", None) or "", set())
                attempts = getattr(exc, "attempts", None) or []
                job.failures = [f"{a.provider}:{a.error_type}:{a.billed}" for a in attempts if a.outcome == "failed"]
                for inner in [exc, *getattr(exc, "errors", [])]:
                    if getattr(inner, "vendor_request_id", None):
                        job.vendor_ids.add(inner.vendor_request_id)
            except Exception as exc:
                job.outcome = f"UNHANDLED {type(exc).__name__}: {exc}"
            else:
                job.outcome = "ok"
                job.provider = result.provider
                job.images = len(result.images)
                job.vendor_ids |= seen.pop(result.job_id or "", set())
                job.failures = [
                    f"{a.provider}:{a.error_type}:{a.billed}" for a in result.attempts if a.outcome == "failed"
                ]
                job.risky = [
                    f"{a.provider}:{a.error_type}:{a.billed}"
                    for a in result.attempts
                    if a.outcome == "failed" and a.billed != "no"
                ]
                if result.vendor_request_id:
                    job.vendor_ids.add(result.vendor_request_id)
            done += 1
            if done == warm_at:
                on_warm()

    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(one, job)
    for client in clients.values():
        await client.aclose()
    return jobs


def account(jobs: list[Job], ledger: list[Any]) -> dict[str, Any]:
    """Match the ledger to the jobs and count what must be zero.

    A charge is matched to a job by the vendor id the job's events or errors carried. Some charges
    cannot be matched: Ideogram returns no id, and an answer lost after admission takes its id with it.
    So double charges are counted two ways, both lower bounds: jobs with two matched charges, and charges
    beyond one per job; and the failovers that followed a possibly billed attempt are counted too (each
    one a double charge if that attempt was in fact billed).
    """
    owner: dict[str, Job] = {}
    for job in jobs:
        for vendor_id in job.vendor_ids:
            owner[vendor_id] = job
    charges: dict[int, list[str]] = defaultdict(list)
    unmatched: Counter[str] = Counter()
    for entry in ledger:
        if entry.voided is not None:
            continue
        charged = owner.get(entry.job_id)
        if charged is None:
            unmatched[entry.vendor] += 1
        else:
            charges[charged.index].append(entry.vendor)
    total_charges = sum(len(v) for v in charges.values()) + sum(unmatched.values())
    lost = set()
    for job in jobs:
        if charges.get(job.index) and job.outcome != "ok" and job.billed not in ("yes", "unknown"):
            lost.add(job.index)  # charged, and told it was not
        if job.outcome == "ok" and job.images < 1:
            lost.add(job.index)
    outcomes = Counter(j.outcome if not j.outcome.startswith("UNHANDLED") else "UNHANDLED" for j in jobs)
    reported = [j for j in jobs if j.outcome != "ok" and j.billed in ("yes", "unknown")]
    return {
        "jobs": len(jobs),
        "outcomes": dict(outcomes),
        "succeeded": outcomes.get("ok", 0),
        "unhandled": outcomes.get("UNHANDLED", 0),
        "unhandled_examples": [j.outcome for j in jobs if j.outcome.startswith("UNHANDLED")][:5],
        "charges": total_charges,
        "charges_unmatched": dict(unmatched),
        "charged_twice_confirmed": sum(1 for v in charges.values() if len(v) > 1),
        "charges_beyond_one_per_job": max(0, total_charges - len(jobs)),
        "failovers_after_a_possible_charge": dict(Counter(r for j in jobs for r in j.risky)),
        "lost": len(lost),
        "reported_possibly_billed": len(reported),
        "reported_possibly_billed_resumable": sum(1 for j in reported if j.vendor_ids),
        "failed_over": sum(1 for j in jobs if j.outcome == "ok" and j.provider != j.order[0]),
        "failed_attempts": dict(Counter(f.split(":", 1)[1] for j in jobs for f in j.failures)),
    }


def run(total: int) -> dict[str, Any]:
    from ideochar.emulator import testing

    emulator = start_emulator()
    try:
        testing.set_faults(emulator.root, FAULTS)
        folder = Path(os.environ.get("TMPDIR", "/tmp"))
        reference = folder / f"ideochar-soak-{os.getpid()}.png"
        reference.write_bytes(make_image(64, 64, "PNG"))
        marks: dict[str, int] = {}

        def on_warm() -> None:
            gc.collect()
            marks["warm"] = rss_bytes()

        started = time.monotonic()
        jobs = anyio.run(_jobs, total, emulator, on_warm, reference)
        elapsed = time.monotonic() - started
        gc.collect()
        end = rss_bytes()
        summary = account(jobs, testing.ledger(emulator.root))
        summary.update(
            seconds=round(elapsed, 1),
            jobs_per_second=round(total / elapsed, 1),
            rss_warm_mb=round(marks.get("warm", end) / 2**20, 1),
            rss_end_mb=round(end / 2**20, 1),
            rss_growth=round(end / marks.get("warm", end), 3),
            fault_rate="about 5% of requests",
            concurrency=CONCURRENCY,
            deadline_seconds=DEADLINE_SECONDS,
        )
        reference.unlink(missing_ok=True)
        return summary
    finally:
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    print(json.dumps(run(args.jobs), indent=2))


if __name__ == "__main__":
    main()

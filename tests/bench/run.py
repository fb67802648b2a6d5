"""Run the benchmarks and write ``docs/benchmarks.md`` with its plots: ``make bench``.

Each ``bench_*.py`` runs in its own interpreter (a figure is never measured in a process another
figure has warmed or filled) and writes ``out/bench/NAME.json``; the report is rendered from those
files, so it can be redone without measuring again (``--report-only``).

    .venv/bin/python tests/bench/run.py                 # everything (about 30 minutes on 2 cores)
    .venv/bin/python tests/bench/run.py --only import,overhead
    .venv/bin/python tests/bench/run.py --quick         # few repetitions: checks the scripts work
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _support import HERE, RESULTS, ROOT, log

BENCHMARKS = ("import", "overhead", "completion", "concurrency", "upload_memory", "failover", "fleet", "batch")
#: Wall-clock bound per benchmark: a stuck one is reported as failed, not waited for.
TIMEOUT_SECONDS = 900
#: The batch figure runs 12,000 rows at 16 jobs a second (its bound alone is 750 s).
TIMEOUTS = {"batch": 1800}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="few repetitions (the report says so)")
    parser.add_argument("--report-only", action="store_true", help="render the report from out/bench/")
    args = parser.parse_args()
    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        # Bytecode as an installed package has it (this environment may set PYTHONDONTWRITEBYTECODE).
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "src", "providers"],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        env = {**os.environ, "IDEOCHAR_BENCH_QUICK": "1" if args.quick else "0"}
        runs = _load_runs()
        for name in chosen:
            log(f"running {name} ...")
            started = time.monotonic()
            try:
                code = subprocess.run(
                    [sys.executable, str(HERE / f"bench_{name}.py")],
                    cwd=ROOT,
                    env=env,
                    timeout=TIMEOUTS.get(name, TIMEOUT_SECONDS),
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
            runs[name] = {"returncode": code, "seconds": round(time.monotonic() - started, 1), "quick": args.quick}
            log(f"{name}: exit {code} after {runs[name]['seconds']} s")
        (RESULTS / "_runs.json").write_text(json.dumps(runs, indent=1))
    from report import render

    path = render()
    log(f"wrote {path.relative_to(ROOT)}")
    runs = _load_runs()
    return 1 if any(r["returncode"] != 0 for n, r in runs.items() if n in chosen) else 0


def _load_runs() -> dict[str, dict[str, object]]:
    path = RESULTS / "_runs.json"
    return json.loads(path.read_text()) if path.exists() else {}


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark shares: statistics, the machine's description, result files, the emulator in its
own process, and peak-memory probes.

Benchmarks are scripts (``bench_*.py``), not pytest modules, so ``make test`` never collects them;
``tests/bench/run.py`` runs them one by one and renders ``docs/benchmarks.md`` from their JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Raw results, one JSON file per benchmark (``out/`` is git-ignored); the report is rendered from them.
RESULTS = ROOT / "out" / "bench"
DOCS = ROOT / "docs"
PLOTS = DOCS / "benchmarks"
#: Set by ``run.py --quick``: fewer repetitions, for checking that the scripts work.
QUICK = os.environ.get("IDEOCHAR_BENCH_QUICK") == "1"


def reps(full: int, quick: int) -> int:
    return quick if QUICK else full


# -- statistics ------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100), as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and spread of a sample: what the report's tables show."""
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p10": percentile(values, 10),
        "p25": percentile(values, 25),
        "p75": percentile(values, 75),
        "p90": percentile(values, 90),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def alternate(names: Sequence[str], rounds: int, *, seed: int = 7) -> Iterator[tuple[int, str]]:
    """Every name once per round, in a shuffled order: slow drifts of the machine hit all alike."""
    rng = random.Random(seed)
    order = list(names)
    for r in range(rounds):
        rng.shuffle(order)
        for name in order:
            yield r, name


# -- the machine and the run ---------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Where the figures were measured; the load average says how busy the machine was at the time."""
    packages = ("ideochar", "httpx", "pydantic", "pluggy", "fal-client", "uvicorn", "starlette")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
        "packages": {p: _version(p) for p in packages},
    }


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {"benchmark": name, "finished_at": time.time(), "machine": machine(), "quick": QUICK, **data}
    path.write_text(json.dumps(document, indent=1, default=str))
    return path


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- the emulator, in its own process -----------------------------------------------------------------


@dataclass
class EmulatorProcess:
    """``tests/bench/_serve.py`` in a subprocess: the server's CPU is not the client's.

    The child prints a JSON line of URLs (``emulator``, ``status_503``, ``hang``, ``refused``) and
    serves until its stdin closes.
    """

    model_seconds: float = 0.0
    extra_args: Sequence[str] = ()
    process: subprocess.Popen[str] | None = None
    urls: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> EmulatorProcess:
        command = [
            sys.executable,
            str(HERE / "_serve.py"),
            "--model-seconds",
            str(self.model_seconds),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        try:
            self.urls = json.loads(line)
        except ValueError:
            self.__exit__()
            raise RuntimeError(f"the emulator did not start (said {line!r})") from None
        return self

    @property
    def url(self) -> str:
        """The emulator's root URL (every vendor under its own prefix)."""
        return self.urls["emulator"]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def emulator_admin(url: str, path: str) -> Any:
    """GET one of the emulator's own JSON endpoints (ledger, job timings)."""
    import httpx

    response = httpx.get(url.rstrip("/") + path, timeout=10)
    response.raise_for_status()
    return response.json()


# -- memory ----------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset this process's high-water mark (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident memory since the last :func:`reset_peak_rss` (or since start)."""
    try:
        return _status_kib("VmHWM") * 1024
    except (OSError, KeyError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_above_baseline(action: Callable[[], object]) -> tuple[int, int, int]:
    """Run ``action`` and return (baseline RSS, peak RSS during it, peak minus baseline), in bytes."""
    import gc

    gc.collect()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS on this system (needs Linux /proc/self/clear_refs)")
    baseline = rss_bytes()
    action()
    peak = peak_rss_bytes()
    return baseline, peak, peak - baseline


def ms(seconds: float) -> float:
    return seconds * 1000.0


def timer() -> Callable[[], float]:
    start = time.perf_counter()
    return lambda: time.perf_counter() - start

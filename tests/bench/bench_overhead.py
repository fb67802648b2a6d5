"""Figure 2: what ideochar adds to each HTTP request, against raw httpx making the same requests.

fal is given its reference inline (``image_transport="data_uri"``), as the raw httpx arm sends it, and
both arms send the same fields (ideochar's explicit defaults included): the same requests on both sides.
The emulator runs in its own process on a loopback port with no model time, so a call's time is the
HTTP round trips plus each client's own work. Per round, in a shuffled order: ideochar's fal generate
(submit, status stream, result, image download: 4 requests), the same 4 requests by hand with raw
httpx, ideochar's Segmind generate (one multipart POST answered with the image), and the same POST
with raw httpx. Both clients keep their connections alive. The overhead per request is the median of
the per-round differences divided by the number of requests.

ideochar runs twice: with the journal off (``journal=False``: the client's own work, which the target
is about) and with its journal on, as by default (in a temporary folder here): that arm adds the
durability work raw httpx does not do (the job and its attempts committed to SQLite before each step,
the images written and fsynced), reported on its own line.

The client process's CPU time per call (``time.process_time``: the emulator's work is in another
process) is recorded too: a steadier view of each client's own work than wall time on a busy machine.

Pyinstrument profiles of the ideochar calls are saved to ``docs/benchmarks/overhead-profile.txt`` (fal)
and ``docs/benchmarks/overhead-segmind-profile.txt``.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _raw import fal_body, fal_generate, segmind_generate
from _support import PLOTS, EmulatorProcess, alternate, log, ms, reps, summary, timer, write_result

import ideochar

PROMPT = "the character reading a map in a lighthouse"
#: Segmind's seed, the one the raw arm sends: ideochar draws one when none is given (so a fan-out's images
#: differ), and the emulator renders each new seed afresh, which would time the emulator, not the client.
SEGMIND_SEED = 377385841


def _reference(folder: Path) -> Path:
    """A 256x256 PNG with some texture (about 200 KB): a small but real character reference."""
    import random

    from PIL import Image

    rng = random.Random(3)
    image = Image.frombytes("RGB", (256, 256), bytes(rng.randrange(256) for _ in range(256 * 256 * 3)))
    path = folder / "reference.png"
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


def _counting_client(counter: list[httpx.Request]) -> httpx.Client:
    return httpx.Client(event_hooks={"request": [counter.append]}, timeout=60)


def _check_same_requests(url: str, reference: Path) -> dict[str, int]:
    """Both clients make the same requests (methods and paths, and the same fal body): else the figure lies."""
    seen: dict[str, list[httpx.Request]] = {"ideochar": [], "raw": []}
    counts: dict[str, int] = {}
    for provider in ("fal", "segmind"):
        seen = {"ideochar": [], "raw": []}
        counting = _counting_client(seen["ideochar"])
        inline = {"fal": {"image_transport": "data_uri"}}
        with ideochar.Client([provider], emulator=url, journal=False, http=counting, options=inline) as client:
            client.generate(PROMPT, reference, aspect_ratio="1:1")
        with _counting_client(seen["raw"]) as http:
            (fal_generate if provider == "fal" else segmind_generate)(http, url, reference, PROMPT)
        shapes = {who: [(r.method, r.url.path) for r in requests] for who, requests in seen.items()}
        if len(shapes["ideochar"]) != len(shapes["raw"]):
            raise AssertionError(f"{provider}: ideochar sent {shapes['ideochar']}, raw httpx {shapes['raw']}")
        if provider == "fal":
            import json

            sent = json.loads(b"".join(seen["ideochar"][0].stream))  # type: ignore[arg-type]
            expected = fal_body(reference, PROMPT)
            if sent != expected:
                raise AssertionError(f"fal bodies differ: {sorted(sent)} vs {sorted(expected)}")
        counts[provider] = len(shapes["ideochar"])
    return counts


def _profile(client: ideochar.Client, reference: Path) -> str:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002)
    profiler.start()
    for _ in range(reps(60, 5)):
        client.generate(PROMPT, reference, aspect_ratio="1:1")
    profiler.stop()
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    rounds = reps(150, 10)
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(model_seconds=0.0) as emulator:
        url = emulator.url
        reference = _reference(Path(tmp))
        counts = _check_same_requests(url, reference)
        fal = ideochar.Client(["fal"], emulator=url, journal=False, options={"fal": {"image_transport": "data_uri"}})
        segmind = ideochar.Client(["segmind"], emulator=url, journal=False)
        journal = Path(tmp) / "journal.sqlite3"
        fal_j = ideochar.Client(
            ["fal"], emulator=url, journal=journal, options={"fal": {"image_transport": "data_uri"}}
        )
        segmind_j = ideochar.Client(["segmind"], emulator=url, journal=journal)
        raw = httpx.Client(timeout=60)
        calls: dict[str, Callable[[], Any]] = {
            "ideochar fal": lambda: fal.generate(PROMPT, reference, aspect_ratio="1:1"),
            "ideochar fal + journal": lambda: fal_j.generate(PROMPT, reference, aspect_ratio="1:1"),
            "raw httpx fal": lambda: fal_generate(raw, url, reference, PROMPT),
            "ideochar segmind": lambda: segmind.generate(PROMPT, reference, aspect_ratio="1:1", seed=SEGMIND_SEED),
            "ideochar segmind + journal": lambda: segmind_j.generate(
                PROMPT, reference, aspect_ratio="1:1", seed=SEGMIND_SEED
            ),
            "raw httpx segmind": lambda: segmind_generate(raw, url, reference, PROMPT),
        }
        for _ in range(reps(20, 2)):  # warm: connections, plugins, pydantic schemas, the emulator's caches
            for call in calls.values():
                call()
        samples: dict[str, list[float]] = {name: [] for name in calls}
        cpu: dict[str, list[float]] = {name: [] for name in calls}
        for _, name in alternate(list(calls), rounds):
            elapsed, cpu_start = timer(), time.process_time()
            calls[name]()
            samples[name].append(ms(elapsed()))
            cpu[name].append(ms(time.process_time() - cpu_start))
        PLOTS.mkdir(parents=True, exist_ok=True)
        (PLOTS / "overhead-profile.txt").write_text(
            "# pyinstrument: ideochar fal generate against the emulator (loopback), repeated\n"
            + _profile(fal, reference)
        )
        # A key of its own: the emulator gives each key a credit balance, and the rounds above used most of one.
        with ideochar.Client(["segmind"], emulator=url, journal=False, keys={"segmind": "profile-key"}) as profiled:
            (PLOTS / "overhead-segmind-profile.txt").write_text(
                "# pyinstrument: ideochar Segmind generate (v1, multipart) against the emulator (loopback), repeated\n"
                + _profile(profiled, reference)
            )
        for client in (fal, segmind, fal_j, segmind_j):
            client.close()
        raw.close()
    # Last: it wraps library functions to time them, in this process.
    from segmind_breakdown import measure

    breakdown = measure(reps(2000, 100))
    per_request: dict[str, dict[str, float]] = {}
    journal_cost: dict[str, dict[str, float]] = {}
    for provider in ("fal", "segmind"):
        ours, theirs = samples[f"ideochar {provider}"], samples[f"raw httpx {provider}"]
        diffs = [(a - b) / counts[provider] for a, b in zip(ours, theirs, strict=True)]
        per_request[provider] = {
            **summary(diffs),
            "median_of_medians": (statistics.median(ours) - statistics.median(theirs)) / counts[provider],
        }
        journaled = samples[f"ideochar {provider} + journal"]
        journal_cost[provider] = summary([a - b for a, b in zip(journaled, ours, strict=True)])
    log("overhead per request: " + ", ".join(f"{p} {v['median']:.3f} ms" for p, v in per_request.items()))
    write_result(
        "overhead",
        {
            "unit": "ms",
            "requests_per_call": counts,
            "samples": samples,
            "cpu_samples": cpu,
            "cpu_summary": {name: summary(values) for name, values in cpu.items()},
            "summary": {name: summary(values) for name, values in samples.items()},
            "overhead_per_request_ms": per_request,
            "journal_per_call_ms": journal_cost,
            "segmind_breakdown_us": breakdown,
            "target": {"overhead_per_request_ms": 0.3},
        },
    )


if __name__ == "__main__":
    main()

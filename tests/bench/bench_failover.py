"""Figure 6: what a failing primary costs before the secondary serves the request, with and without the breaker.

``Client(["fal", "segmind"])``: fal is the primary, pointed (``base_urls``) at a server that fails in one
of three ways; Segmind, on the emulator in its own process, is the secondary (one multipart POST).

* **refused**: nothing listens on fal's port (the connection is refused at once). Nothing was sent,
  so the router retries fal (``FailurePolicy.connect_retries``, with backoff) before failing over.
* **503**: fal's host answers 503 with no fal request id (its edge refusing the request).
* **hang**: fal's host accepts the submit and never answers. The POST may have created a billable job,
  so by default ideochar raises ``OutcomeUnknown`` rather than pay twice; this arm uses
  ``FailurePolicy(on_outcome_unknown="fail_over")`` and so waits for fal's submit read timeout.

Each scenario runs with a fresh breaker (closed: the primary is tried) and with a breaker already opened
by an earlier failure (the primary is skipped at once, nothing is sent to it). *secondary alone* is
``Client(["segmind"])``; it runs in the same rounds as the breaker-open arms, and their cost over it is
the median of the per-round differences.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _support import EmulatorProcess, alternate, log, ms, reps, summary, timer, write_result

import ideochar
from ideochar.breaker import CircuitBreaker
from ideochar.client import EMULATOR_KEY
from ideochar.emulator.testing import base_urls

PROMPT = "the character crossing a bridge"
FAULTS = {"refused": "refused", "503": "status_503", "hang": "hang"}


def _reference(folder: Path) -> Path:
    from PIL import Image

    path = folder / "reference.png"
    Image.new("RGB", (128, 128), (90, 160, 60)).save(path, "PNG")
    return path


def _opened_breaker() -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=3600)
    breaker.record("fal", ideochar.ProviderUnavailable("opened for the benchmark", provider="fal"))
    assert breaker.state("fal") == "open"
    return breaker


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(model_seconds=0.0) as emulator:
        url = emulator.url
        reference = _reference(Path(tmp))
        policy = ideochar.FailurePolicy(on_outcome_unknown="fail_over")
        alone = ideochar.Client(["segmind"], emulator=url, journal=False)
        outcomes: dict[str, str] = {}

        vendors = base_urls(url)  # each vendor's base URLs on the running emulator

        def client(fault: str, breaker: CircuitBreaker) -> ideochar.Client:
            # Not ``emulator=url``: the emulator wins over ``base_urls`` (docs/security.md), and fal must
            # reach the fault. Each vendor is pointed at its place by hand, with the emulator's key.
            bad = emulator.urls[FAULTS[fault]]
            return ideochar.Client(
                ["fal", "segmind"],
                keys={"fal": EMULATOR_KEY, "segmind": EMULATOR_KEY},
                base_urls={"fal": {name: bad for name in vendors["fal"]}, "segmind": vendors["segmind"]},
                options={"fal": {"image_transport": "data_uri"}},  # the fault meets the submit, not an upload
                # Segmind's declared 5 requests a minute would pace the arms (the emulator is exempt from
                # declared limits, these hand-pointed clients are not): as a plan with a higher rate would.
                limits={"segmind": {"requests_per_minute": 100_000}},
                breaker=breaker,
                policy=policy,
                journal=False,
                allow_private_urls=True,
            )

        def run(name: str, c: ideochar.Client, *, close_breaker: bool = False) -> Callable[[], None]:
            """One warm client per arm (as an application keeps one); a closed arm resets its breaker first."""

            def call() -> None:
                if close_breaker:
                    c.breaker.reset("fal")
                result = c.generate(PROMPT, reference, aspect_ratio="1:1")
                if result.provider != "segmind":  # the arm measured something else: stop, do not publish it
                    raise SystemExit(f"failover bench: {name} was served by {result.provider}, not segmind")
                tried = " -> ".join(f"{a.provider} {a.outcome}" for a in result.attempts)
                outcomes[name] = f"served by {result.provider} ({tried})"

            return call

        def timed(call: Callable[[], None]) -> float:
            elapsed = timer()
            call()
            return ms(elapsed())

        clients = [alone]
        arms_fast: dict[str, Callable[[], None]] = {"secondary alone": run("secondary alone", alone)}
        closed: dict[str, Callable[[], None]] = {}
        for fault in FAULTS:
            clients += [client(fault, _opened_breaker()), client(fault, CircuitBreaker())]
            arms_fast[f"{fault}, breaker open"] = run(f"{fault}, breaker open", clients[-2])
            closed[f"{fault}, breaker closed"] = run(f"{fault}, breaker closed", clients[-1], close_breaker=True)
        for call in arms_fast.values():  # warm: connections, plugins, schemas
            call()
        samples: dict[str, list[float]] = {name: [] for name in [*arms_fast, *closed]}
        for _, name in alternate(list(arms_fast), reps(60, 5)):
            samples[name].append(timed(arms_fast[name]))
        for name in ("refused, breaker closed", "503, breaker closed"):
            for _ in range(reps(10, 2)):
                samples[name].append(timed(closed[name]))
        for _ in range(reps(2, 1)):  # each waits out fal's submit read timeout
            samples["hang, breaker closed"].append(timed(closed["hang, breaker closed"]))
        for each in clients:
            each.close()
    paired: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        if name.endswith("breaker open"):
            diffs = [a - b for a, b in zip(values, samples["secondary alone"], strict=True)]
            paired[name] = summary(diffs)
    order = ["secondary alone", *[f"{f}, breaker open" for f in FAULTS], *[f"{f}, breaker closed" for f in FAULTS]]
    samples = {name: samples[name] for name in order}
    log("failover: " + ", ".join(f"{n} {summary(v)['median']:.1f} ms" for n, v in samples.items()))
    from ideochar_fal.provider import SUBMIT_TIMEOUT_SECONDS

    method: Any = (
        '`Client(["fal", "segmind"])`: fal, the primary, is pointed at a server that refuses connections '
        "(nothing listens), answers 503 (no fal request id: its edge), or accepts the submit and never answers; "
        "Segmind on the emulator (its own process, no model time) is the secondary. *breaker closed* uses a fresh "
        "breaker, so fal is tried with the default `FailurePolicy`: a refused connection is retried twice with "
        "backoff (nothing was sent), then the router fails over. A hang is a submit that may have been admitted "
        "and billed: by default ideochar raises `OutcomeUnknown` there instead of paying twice; this arm sets "
        f'`on_outcome_unknown="fail_over"`, so it costs fal\'s submit read timeout ({SUBMIT_TIMEOUT_SECONDS:g} s) '
        "first. *breaker open* uses a breaker opened by an earlier failure: fal is skipped before anything is sent. "
        '*secondary alone* is `Client(["segmind"])`, alternated with the breaker-open arms in the same rounds; '
        "*over secondary alone* is the median of the per-round differences."
    )
    write_result(
        "failover",
        {
            "unit": "ms",
            "samples": samples,
            "summary": {name: summary(values) for name, values in samples.items()},
            "over_secondary_alone": paired,
            "outcomes": outcomes,
            "method": method,
            "target": {"breaker_open_over_secondary_alone_ms": 0.5},
        },
    )


if __name__ == "__main__":
    main()

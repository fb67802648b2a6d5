"""The fault matrix: every vendor x every fault, run through the client against the emulator.

One cell = one job with ``providers=[vendor, fallback]`` (the fallback is another emulated vendor
with no fault), a journal, and a deadline. The fault is set on the vendor through the emulator's fault
profile (``ideochar.emulator.faults``), on the route where it hurts; a refused connection is a real
closed loopback port. What each cell records (:class:`Cell`) is checked by test_fault_matrix.py and
written to docs/reliability.md by report.py.

Where a fault goes, per vendor (the emulators' route names):

* ``admit``: the request that creates the billable job (fal ``submit``, Segmind ``v1``, Ideogram
  ``generate``, Replicate ``create``);
* ``poll``: the status endpoint a queue job is followed on (fal ``status``/``stream``, Replicate
  ``get``); Segmind (v1, the default) and Ideogram answer synchronously and have none;
* ``files``: the output files (every vendor).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conftest import CANARY_KEY, make_image
from ideochar import Client
from ideochar.errors import IdeocharError
from reliability import sockets

VENDORS = ("fal", "segmind", "ideogram", "replicate")
ADMIT = {"fal": "submit", "segmind": "v1", "ideogram": "generate", "replicate": "create"}
POLL: Mapping[str, tuple[str, ...]] = {"fal": ("status", "stream"), "replicate": ("get",)}
#: The job's deadline in every cell; hang and stuck faults must end within it plus SLACK_SECONDS.
DEADLINE_SECONDS = 2.0
SLACK_SECONDS = 1.5
REFERENCE = make_image(64, 64, "PNG")


def _rules(routes: tuple[str, ...], **rule: Any) -> list[dict[str, Any]]:
    return [{"route": route, **rule} for route in routes]


@dataclass(frozen=True)
class Fault:
    id: str
    title: str
    where: str
    """``admit``, ``poll``, ``files`` or ``connection``."""
    rule: dict[str, Any]

    def rules(self, vendor: str) -> list[dict[str, Any]] | None:
        """The profile rules for ``vendor``; None when the vendor has no such step (the cell is n/a)."""
        if self.where == "admit":
            return _rules((ADMIT[vendor],), **self.rule)
        if self.where == "poll":
            return _rules(POLL[vendor], **self.rule) if vendor in POLL else None
        if self.where == "files":
            return _rules(("files",), **self.rule)
        return []


FAULTS: tuple[Fault, ...] = (
    Fault("refused", "connection refused", "connection", {}),
    Fault("reset_mid_body", "reset mid-body (the answer to the billable request)", "admit", {"kind": "truncate"}),
    Fault("hang", "hang past the deadline", "admit", {"kind": "hang"}),
    Fault("http_500", "500", "admit", {"kind": "status", "status": 500}),
    Fault(
        "ingress_502", "ingress 502 without a request id", "admit", {"kind": "status", "status": 502, "ingress": True}
    ),
    Fault("http_503", "503", "admit", {"kind": "status", "status": 503}),
    Fault("rate_limited", "429 with Retry-After", "admit", {"kind": "rate_limit", "retry_after": 0.3, "times": 1}),
    Fault("malformed_json", "malformed JSON (status answer)", "poll", {"kind": "malformed_json", "times": 1}),
    Fault(
        "wrong_content_type", "wrong content type (status answer)", "poll", {"kind": "wrong_content_type", "times": 1}
    ),
    Fault("truncated_image", "truncated image", "files", {"kind": "truncate", "times": 1}),
    Fault("expired", "result URL expired (404)", "files", {"kind": "expire"}),
    Fault("stuck", "job stuck in progress past the deadline", "admit", {"kind": "stuck"}),
    Fault(
        "flapping",
        "status endpoint flapping (503 half the time)",
        "poll",
        {"kind": "status", "status": 503, "rate": 0.5},
    ),
)


@dataclass
class Cell:
    vendor: str
    fault: Fault
    fallback: str
    applicable: bool = True
    outcome: str = ""
    """``ok:<provider>`` for a result, else the error's class name."""
    provider: str | None = None
    images: int = 0
    billed: str | None = None
    vendor_request_id: str | None = None
    elapsed: float = 0.0
    ledger: dict[str, int] = field(default_factory=dict)
    """Billed admissions per vendor, from the emulator's ledger."""
    resumed: str | None = None
    """After a failure of an admitted, resumable job (faults cleared): the outcome of ``Client.resume``."""
    message: str = ""


class Network(httpx.BaseTransport):
    """``emulator.test`` goes to the in-process emulator (if any); anything else to a real socket."""

    def __init__(self, emulator: httpx.BaseTransport | None) -> None:
        self.emulator = emulator
        self.real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.emulator is not None and request.url.host == "emulator.test":
            return self.emulator.handle_request(request)
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


@dataclass
class Target:
    """Where the emulator runs: in-process (``transport`` set) or on a loopback socket (``transport`` None)."""

    emulator: Any
    """The app, or the ``BackgroundServer``."""
    transport: httpx.BaseTransport | None
    name: str


def run_cell(
    vendor: str,
    fault: Fault,
    target: Target,
    folder: Path,
    testing: Any,
    *,
    resume: bool = True,
    deadline: float = DEADLINE_SECONDS,
) -> Cell:
    fallback = next(v for v in VENDORS if v != vendor)
    cell = Cell(vendor, fault, fallback)
    rules = fault.rules(vendor)
    if rules is None:
        cell.applicable = False
        return cell
    emulator = target.emulator
    testing.reset(emulator)
    testing.set_faults(emulator, {"seed": 7, vendor: rules} if rules else None)
    base_urls = testing.base_urls(emulator)
    if fault.id == "refused":
        port = sockets.closed_port()
        base_urls = {**base_urls, vendor: {k: f"http://127.0.0.1:{port}/{vendor}" for k in base_urls[vendor]}}
    network = Network(target.transport)
    client = Client(
        [vendor, fallback],
        http=httpx.Client(transport=network),
        base_urls=base_urls,
        keys={vendor: CANARY_KEY, fallback: CANARY_KEY},
        journal=folder / "journal.sqlite3",
        output_dir=folder / "out",
        config=False,
        deadline_seconds=deadline,
        limits={v: {"requests_per_minute": 1_000_000} for v in VENDORS},
    )
    started = time.monotonic()
    job_id: str | None = None
    try:
        result = client.generate("a knight in the rain", REFERENCE, seed=3)
    except IdeocharError as exc:
        cell.elapsed = time.monotonic() - started
        cell.outcome = type(exc).__name__
        cell.billed = getattr(exc, "billed", None)
        cell.vendor_request_id = getattr(exc, "vendor_request_id", None)
        cell.message = str(exc)[:300]
        job_id = getattr(exc, "job_id", None)
    else:
        cell.elapsed = time.monotonic() - started
        cell.outcome = f"ok:{result.provider}"
        cell.provider = result.provider
        cell.images = len(result.images)
        cell.vendor_request_id = result.vendor_request_id
    cell.ledger = {v: testing.billed(emulator, v) for v in (vendor, fallback)}
    if resume and job_id is not None and cell.ledger[vendor] and fault.id not in ("stuck", "hang"):
        testing.set_faults(emulator, None)
        cell.resumed = _resume(client, job_id)
    client.close()
    network.close()
    return cell


def _resume(client: Client, job_id: str) -> str:
    try:
        result = client.resume(job_id)
    except IdeocharError as exc:
        return type(exc).__name__
    return f"ok:{result.provider}:{len(result.images)}"


Runner = Callable[[str, Fault], Cell]

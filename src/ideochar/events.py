"""Job events: what happened, as it happens.

Exchanges yield them, the drivers hand them to the ``ideochar_event`` hook and to a caller's
``on_event`` callback. Logging, metrics, progress displays and the journal all read the same stream,
so the router knows none of them. ``submitted`` carries the vendor's id and what is needed to resume
the job, and is delivered before the next request is sent: a process killed right after it can resume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from ideochar._secrets import redact, redact_any
from ideochar.errors import Billed

__all__ = ["Event", "EventKind"]

EventKind = Literal[
    "attempt_started",  # a provider is about to be tried
    "submitted",  # the vendor admitted the job: vendor_request_id (and resume data) known
    "progress",  # queued / running; queue_position, message
    "retried",  # a request that provably did not start is sent again
    "failed_over",  # giving up on a provider, trying the next
    "attempt_failed",
    "downloaded",  # one output image is here
    "finished",  # the job is complete (cost known)
    "cost",
]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    provider: str | None = None
    job_id: str | None = None
    vendor_request_id: str | None = None
    status: str | None = None
    """Vendor status in neutral words: queued, running, completed."""
    queue_position: int | None = None
    message: str | None = None
    cost_usd: Decimal | None = None
    resume: dict[str, Any] | None = None
    """For ``submitted``: what the provider needs to pick the job up again (JSON-safe, no keys)."""
    attempt: str | None = None
    """Which attempt (a key per try at one provider); set by the router on every event of an attempt."""
    part: str | None = None
    """Which call of a fanned-out job ("0", "1", ...; "1.0" when a fallback split it further)."""
    try_number: int | None = None
    """For ``attempt_started``: 1 for the first try at this provider, 2 after a retry, ..."""
    billed: Billed | None = None
    """For ``attempt_failed``: whether the vendor charged (the router's ruling, never an adapter's)."""
    error_type: str | None = None
    """For ``attempt_failed``: the ideochar error class that ended the attempt."""
    data: dict[str, Any] = field(default_factory=dict)
    """Provider extras for observers (``downloaded``: the image's index and digest). Nothing in ideochar
    reads these back: what the journal and the router need is a typed field above."""
    at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        # Ids, messages and resume data come from vendors' answers, which may echo anything back, the
        # key included; scrubbed here, every reader (journal, logs, errors, attempts) gets them clean.
        # (A vendor echoing the key as its request id was found by tests/reliability fuzzing.)
        for name in ("vendor_request_id", "message"):
            value = getattr(self, name)
            if value:
                object.__setattr__(self, name, redact(value))
        if self.resume:
            object.__setattr__(self, "resume", redact_any(self.resume))

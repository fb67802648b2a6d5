"""What both vendors' schemes share: the verified event, the limits, headers, time, and key fetching.

A scheme is a generator (:mod:`ideochar.webhooks._fal`, :mod:`ideochar.webhooks._replicate`) that checks
what it can from the bytes alone and yields a :class:`Need` when it wants the vendor's keys, so that one
scheme serves a blocking and an awaiting driver (:mod:`ideochar.webhooks._verify`), as the providers'
exchanges do.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ideochar._secrets import redact
from ideochar.webhooks._errors import MalformedCallback, StaleTimestamp

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_KEYS_BYTES",
    "MAX_TOLERANCE_SECONDS",
    "AsyncFetch",
    "CallbackStatus",
    "Fetch",
    "Need",
    "Scheme",
    "WebhookEvent",
    "check_time",
    "check_tolerance",
    "header_map",
    "json_object",
    "timestamp_of",
]

#: A callback signed more than this far from now (either way) is refused: fal's documented window [T],
#: and the bound the Standard Webhooks library enforces for Replicate.
DEFAULT_TOLERANCE_SECONDS = 300.0
#: The widest tolerance a receiver may choose (a wider one would only widen the replay window).
MAX_TOLERANCE_SECONDS = 300.0
#: A callback body over this is refused unread (413). fal's and Replicate's bodies are a few KB; fal's
#: with ``sync_mode`` carries its images as data URIs and may not fit: polling finishes those jobs.
MAX_BODY_BYTES = 10 * 1024 * 1024
#: fal's key set or Replicate's secret answer is a few hundred bytes; more is refused.
MAX_KEYS_BYTES = 64 * 1024

CallbackStatus = Literal["running", "succeeded", "failed", "canceled"]
"""The job's state the callback reports, in neutral words (``running``: not finished yet)."""

Fetch = Callable[[str], bytes]
"""``url -> body``: how a blocking receiver fetches keys (raises on any failure)."""
AsyncFetch = Callable[[str], Awaitable[bytes]]
"""The awaitable twin of :data:`Fetch`."""


@dataclass(frozen=True)
class WebhookEvent:
    """A callback whose signature, timestamp and shape were checked.

    ``delivery_id`` names the delivery, the same across a vendor's retries of it (Replicate's
    ``webhook-id``; fal's request id, since fal sends one callback per request [I]).
    """

    vendor: str
    vendor_job_id: str
    delivery_id: str
    status: CallbackStatus
    signed_at: float
    """When the vendor signed it (Unix seconds)."""
    payload: Mapping[str, Any] = field(repr=False)
    """The vendor's JSON body, as sent (fal's output or error; Replicate's prediction object)."""

    @property
    def terminal(self) -> bool:
        """Whether the vendor says the job ended (only then is there anything to complete)."""
        return self.status != "running"


@dataclass(frozen=True)
class Need:
    """A scheme's request for the vendor's keys. ``refresh``: the cached ones did not verify; read them
    again (at most once a minute, so forged callbacks cannot turn the receiver into a key-fetching loop)."""

    vendor: str
    refresh: bool = False


Scheme = Generator[Need, Any, WebhookEvent]


def header_map(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers with lower-case names (the first of repeated ones), from a mapping or ``(name, value)`` pairs."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in items:
        found.setdefault(str(name).lower(), str(value))
    return found


def check_tolerance(seconds: float) -> float:
    """The timestamp tolerance, which is mandatory: finite, above zero, at most five minutes."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TOLERANCE_SECONDS):
        raise ValueError(f"tolerance_seconds must be above 0 and at most {MAX_TOLERANCE_SECONDS:g}, not {seconds!r}")
    return float(seconds)


def timestamp_of(text: str, vendor: str) -> int:
    """A signature timestamp: Unix seconds written as decimal digits (both vendors send whole seconds)."""
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise MalformedCallback(f"the {vendor} callback's timestamp header is not Unix seconds", vendor=vendor)
    return int(text)


def check_time(signed_at: int, *, now: float | None, tolerance: float, vendor: str, delivery_id: str | None) -> None:
    """Refuse a signature made outside ``now ± tolerance``: the check that makes a captured callback
    useless to replay later. It comes first, before any key is fetched or any signature computed."""
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance:
        raise StaleTimestamp(
            f"the {vendor} callback was signed {current - signed_at:+.0f} s from now, outside ±{tolerance:g} s",
            vendor=vendor,
            delivery_id=delivery_id,
        )


def json_object(body: bytes, vendor: str, delivery_id: str | None) -> dict[str, Any]:
    """The signed body as a JSON object (read only once its signature was checked)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict):
        raise MalformedCallback(
            f"the {vendor} callback's body is not a JSON object", vendor=vendor, delivery_id=delivery_id
        )
    return document


def text_field(document: Mapping[str, Any], name: str, vendor: str, delivery_id: str | None) -> str:
    """A required string field of the body, redacted (a vendor echoing a key gets no further with it)."""
    value = document.get(name)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise MalformedCallback(
            f"the {vendor} callback's body has no usable {name!r}", vendor=vendor, delivery_id=delivery_id
        )
    return redact(value)

"""``verify`` and ``averify``: one scheme per vendor, driven by a blocking or an awaiting key source."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ideochar.webhooks._common import (
    DEFAULT_TOLERANCE_SECONDS,
    MAX_BODY_BYTES,
    Need,
    Scheme,
    WebhookEvent,
    check_tolerance,
    header_map,
)
from ideochar.webhooks._errors import CallbackTooLarge, MalformedCallback
from ideochar.webhooks._fal import HEADER_SIGNATURE as FAL_SIGNATURE
from ideochar.webhooks._fal import FalKeys, fal_scheme
from ideochar.webhooks._replicate import HEADER_SIGNATURE as REPLICATE_SIGNATURE
from ideochar.webhooks._replicate import ReplicateSecret, replicate_scheme

__all__ = ["VENDORS", "averify", "detect_vendor", "verify"]

#: The vendors whose callbacks ideochar verifies.
VENDORS = ("fal", "replicate")

Headers = Mapping[str, str] | Iterable[tuple[str, str]]

_default_fal_keys: FalKeys | None = None


def _fal_keys(given: FalKeys | None) -> FalKeys:
    """The caller's key source, else one shared by the process (fal's JWKS URL, the guarded fetch)."""
    global _default_fal_keys
    if given is not None:
        return given
    if _default_fal_keys is None:
        _default_fal_keys = FalKeys()
    return _default_fal_keys


def _secret(given: ReplicateSecret | str | None) -> ReplicateSecret:
    if given is None:
        raise ValueError("verifying a Replicate callback needs replicate_secret (the account's whsec_ secret)")
    return given if isinstance(given, ReplicateSecret) else ReplicateSecret(given)


def detect_vendor(headers: Headers) -> str:
    """Which vendor signed a callback, from its signature header (one URL may serve both vendors)."""
    found = header_map(headers)
    if FAL_SIGNATURE in found:
        return "fal"
    if REPLICATE_SIGNATURE in found:
        return "replicate"
    raise MalformedCallback("the callback carries neither fal's nor Replicate's signature header")


def _scheme(
    vendor: str | None, headers: Headers, body: bytes, tolerance: float, max_body_bytes: int, now: float | None
) -> Scheme:
    found = header_map(headers)
    name = vendor or detect_vendor(found)
    if len(body) > max_body_bytes:
        raise CallbackTooLarge(f"the callback's body is over {max_body_bytes:,} bytes", vendor=name)
    tolerance = check_tolerance(tolerance)
    if name == "fal":
        return fal_scheme(found, bytes(body), tolerance=tolerance, now=now)
    if name == "replicate":
        return replicate_scheme(found, bytes(body), tolerance=tolerance, now=now)
    raise ValueError(f"no webhook scheme for {name!r}; ideochar verifies {', '.join(VENDORS)}")


def verify(
    vendor: str | None,
    headers: Headers,
    body: bytes,
    *,
    fal_keys: FalKeys | None = None,
    replicate_secret: ReplicateSecret | str | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    max_body_bytes: int = MAX_BODY_BYTES,
    now: float | None = None,
) -> WebhookEvent:
    """Check a vendor's callback and return what it says, or raise why it is refused.

    ``vendor`` is ``"fal"`` or ``"replicate"`` (None: told by the signature header). ``body`` is the raw
    body, exactly as received. The timestamp must be within ``tolerance_seconds`` of now (at most 300);
    fal's keys come from ``fal_keys`` (default: fal's JWKS, cached), Replicate's secret from
    ``replicate_secret``. Raises a :class:`~ideochar.webhooks.WebhookRefused`, whose ``http_status`` is
    the answer to give.

    Example::

        event = verify("replicate", request.headers, await request.body(), replicate_secret=SECRET)
        if event.terminal:
            client.wait(job_id_for(event.vendor_job_id))
    """
    scheme = _scheme(vendor, headers, body, tolerance_seconds, max_body_bytes, now)
    answer: Any = None
    try:
        while True:
            need: Need = scheme.send(answer)
            if need.vendor == "fal":
                answer = _fal_keys(fal_keys).keys(refresh=need.refresh)
            else:
                answer = _secret(replicate_secret).secret(refresh=need.refresh)
    except StopIteration as done:
        event: WebhookEvent = done.value
        return event
    finally:
        scheme.close()


async def averify(
    vendor: str | None,
    headers: Headers,
    body: bytes,
    *,
    fal_keys: FalKeys | None = None,
    replicate_secret: ReplicateSecret | str | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    max_body_bytes: int = MAX_BODY_BYTES,
    now: float | None = None,
) -> WebhookEvent:
    """:func:`verify` for an event loop: keys are fetched without blocking it."""
    scheme = _scheme(vendor, headers, body, tolerance_seconds, max_body_bytes, now)
    answer: Any = None
    try:
        while True:
            need: Need = scheme.send(answer)
            if need.vendor == "fal":
                answer = await _fal_keys(fal_keys).akeys(refresh=need.refresh)
            else:
                answer = await _secret(replicate_secret).asecret(refresh=need.refresh)
    except StopIteration as done:
        event: WebhookEvent = done.value
        return event
    finally:
        scheme.close()

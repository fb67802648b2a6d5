"""fal's callback signatures: Ed25519 with keys from a JWKS document. **Inferred** [I].

fal's own page says only that callbacks are signed with "public keys"; the scheme below is what several
independent third-party implementations agree on (``reference/fleet.md`` §2, ``reference/fal.md`` §1.7),
and no fal client verifies it. Every piece of it is a constant or a short function here, so a change
at fal is a change in one place:

- headers :data:`HEADER_REQUEST_ID`, :data:`HEADER_USER_ID`, :data:`HEADER_TIMESTAMP` (Unix seconds),
  :data:`HEADER_SIGNATURE` (hex);
- the signed message ``request_id \\n user_id \\n timestamp \\n sha256_hex(body)`` (:func:`signed_message`);
- keys: the JWKS at :data:`FAL_JWKS_URL`, each ``{"kty": "OKP", "crv": "Ed25519", "x": base64url}``;
  the headers name no key, so a signature is tried against every key, and "an unknown key" shows as
  "no cached key verifies": the key set is then read again, once (:class:`FalKeys`);
- a timestamp within ±5 minutes; the key set cached at most 24 hours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ideochar.webhooks._common import (
    MAX_KEYS_BYTES,
    AsyncFetch,
    CallbackStatus,
    Fetch,
    Need,
    Scheme,
    WebhookEvent,
    check_time,
    json_object,
    text_field,
    timestamp_of,
)
from ideochar.webhooks._errors import BadSignature, MalformedCallback, SigningKeysUnavailable, UnknownKey

__all__ = [
    "FAL_JWKS_URL",
    "HEADER_REQUEST_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "HEADER_USER_ID",
    "MAX_KEYS_AGE_SECONDS",
    "MIN_REFRESH_SECONDS",
    "FalKeys",
    "fal_scheme",
    "parse_jwks",
    "signed_message",
]

logger = logging.getLogger("ideochar.webhooks")

VENDOR = "fal"
#: Where fal publishes its webhook keys [T].
FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
HEADER_REQUEST_ID = "x-fal-webhook-request-id"
HEADER_USER_ID = "x-fal-webhook-user-id"
HEADER_TIMESTAMP = "x-fal-webhook-timestamp"
HEADER_SIGNATURE = "x-fal-webhook-signature"
#: The key set is read again after this long at the latest [T: 24 h].
MAX_KEYS_AGE_SECONDS = 24 * 3600.0
#: ...and, when no cached key verifies, not more often than this (forged callbacks cannot force fetches).
MIN_REFRESH_SECONDS = 60.0
#: ``OK`` and ``ERROR`` are the two statuses fal documents [D].
_STATUSES: Mapping[str, CallbackStatus] = {"OK": "succeeded", "ERROR": "failed"}
_SIGNATURE_BYTES = 64


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """What fal signs [T]: the three header values and the body's SHA-256 in hex, one per line."""
    return "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode("utf-8")


def parse_jwks(document: bytes) -> list[Any]:
    """The Ed25519 public keys of a JWKS document (other key types are skipped). Raises ``ValueError``
    when the document is not a key set at all."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = json.loads(document)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys = []
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        try:
            raw = base64.urlsafe_b64decode(str(x) + "=" * (-len(str(x)) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error, TypeError):
            logger.warning("fal's key set holds an Ed25519 key that cannot be read; it is skipped")
    return keys


class FalKeys:
    """fal's public keys, fetched from a JWKS URL and cached (at most 24 h), read again once when no cached
    key verifies a signature (at most once a minute). Thread-safe. Share one per process.

    The fetch is injectable; by default it goes through ideochar's guarded fetch
    (:mod:`ideochar._netguard`: public addresses only, bounded in time and size). A receiver built from a
    client (:func:`ideochar.webhooks.app`) fetches with the client's guarded fetch client, which also
    reaches the client's configured origins (the emulator's keys, on loopback).
    """

    def __init__(
        self,
        url: str = FAL_JWKS_URL,
        *,
        fetch: Fetch | None = None,
        afetch: AsyncFetch | None = None,
        max_age_seconds: float = MAX_KEYS_AGE_SECONDS,
        min_refresh_seconds: float = MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < max_age_seconds <= MAX_KEYS_AGE_SECONDS:
            raise ValueError(f"fal's keys may be cached for at most {MAX_KEYS_AGE_SECONDS:g} s")
        self.url = url
        self._fetch = fetch
        self._afetch = afetch
        self.max_age_seconds = max_age_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self._clock = clock
        self._keys: list[Any] | None = None
        self._fetched_at = -float("inf")
        """When the cached keys were read (they are used for at most ``max_age_seconds`` after)."""
        self._tried_at = -float("inf")
        """When a read was last tried, successful or not (none again within ``min_refresh_seconds``)."""
        self._lock = threading.Lock()
        self.fetches = 0
        """How many times the key set was read (for tests and metrics)."""

    def keys(self, *, refresh: bool = False) -> list[Any]:
        """The keys, read when there are none fresh, or when ``refresh`` asks and a minute has passed."""
        with self._lock:
            cached = self._cached(refresh)
            if cached is not None:
                return cached
            try:
                body = (self._fetch or _guarded_get)(self.url)
            except Exception as exc:
                return self._failed(exc)
            return self._store(body)

    async def akeys(self, *, refresh: bool = False) -> list[Any]:
        """:meth:`keys` for an event loop (the read is awaited; two concurrent misses may both read)."""
        cached = self._cached(refresh)
        if cached is not None:
            return cached
        try:
            body = await (self._afetch or _aguarded_get)(self.url)
        except Exception as exc:
            return self._failed(exc)
        return self._store(body)

    def _cached(self, refresh: bool) -> list[Any] | None:
        """The keys to use without reading the set again, or None to read it now."""
        now = self._clock()
        fresh = self._keys is not None and now - self._fetched_at < self.max_age_seconds
        throttled = now - self._tried_at < self.min_refresh_seconds
        if fresh and (not refresh or throttled):
            return self._keys
        if throttled:  # nothing fresh, and a read just failed: do not try again for every callback
            raise SigningKeysUnavailable("fal's webhook keys could not be read a moment ago", vendor=VENDOR)
        return None

    def _store(self, body: bytes) -> list[Any]:
        try:
            if len(body) > MAX_KEYS_BYTES:
                raise ValueError(f"the key set is over {MAX_KEYS_BYTES} bytes")
            keys = parse_jwks(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._failed(exc)
        now = self._clock()
        self._keys, self._fetched_at, self._tried_at = keys, now, now
        self.fetches += 1
        return keys

    def _failed(self, exc: Exception) -> list[Any]:
        """Keep verifying with keys still within their 24 hours; without any, answer 503 (fal retries)."""
        now = self._clock()
        self._tried_at = now
        if self._keys is not None and now - self._fetched_at < self.max_age_seconds:
            logger.warning("fal's key set could not be read again (%s); the cached keys are used", type(exc).__name__)
            return self._keys
        raise SigningKeysUnavailable(
            f"fal's webhook keys could not be fetched ({type(exc).__name__}); the callback is refused for now",
            vendor=VENDOR,
        ) from exc


def _guarded_get(url: str) -> bytes:
    """A GET through ideochar's guarded fetch (public addresses only), capped at :data:`MAX_KEYS_BYTES`."""
    from ideochar._netguard import fetch_client

    with fetch_client() as http, http.stream("GET", url, timeout=10.0) as response:
        response.raise_for_status()
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_KEYS_BYTES:
                raise ValueError(f"the answer from {url} is over {MAX_KEYS_BYTES} bytes")
        return body


async def _aguarded_get(url: str) -> bytes:
    from ideochar._netguard import async_fetch_client

    async with async_fetch_client() as http, http.stream("GET", url, timeout=10.0) as response:
        response.raise_for_status()
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_KEYS_BYTES:
                raise ValueError(f"the answer from {url} is over {MAX_KEYS_BYTES} bytes")
        return body


# -- the scheme -----------------------------------------------------------------------------------------


def _signature(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != _SIGNATURE_BYTES:
        raise MalformedCallback("the fal callback's signature is not 64 bytes in hex", vendor=VENDOR)
    return raw


def _verifies(keys: Sequence[Any], signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def _headers(headers: Mapping[str, str]) -> tuple[str, str, str, str]:
    values = tuple(headers.get(name, "").strip() for name in (HEADER_REQUEST_ID, HEADER_USER_ID, HEADER_TIMESTAMP))
    request_id, user_id, timestamp = values
    signature = headers.get(HEADER_SIGNATURE, "").strip()
    if not (request_id and user_id and timestamp and signature):
        raise MalformedCallback("a fal callback needs its four X-Fal-Webhook-* headers", vendor=VENDOR)
    if any(not v.isprintable() for v in values):
        raise MalformedCallback("a fal callback header holds control characters", vendor=VENDOR)
    return request_id, user_id, timestamp, signature


def fal_scheme(headers: Mapping[str, str], body: bytes, *, tolerance: float, now: float | None) -> Scheme:
    """Check a fal callback (``headers`` with lower-case names). Yields :class:`Need` for the keys."""
    request_id, user_id, timestamp, signature_hex = _headers(headers)
    signature = _signature(signature_hex)
    check_time(timestamp_of(timestamp, VENDOR), now=now, tolerance=tolerance, vendor=VENDOR, delivery_id=request_id)
    message = signed_message(request_id, user_id, timestamp, body)
    keys = yield Need(VENDOR)
    if not _verifies(keys, signature, message):
        keys = yield Need(VENDOR, refresh=True)
        if not keys:
            raise UnknownKey("fal's key set holds no Ed25519 key to check the callback with", vendor=VENDOR)
        if not _verifies(keys, signature, message):
            raise BadSignature("no fal key verifies the callback's signature", vendor=VENDOR, delivery_id=request_id)
    return _event(request_id, int(timestamp), body)


def _event(request_id: str, signed_at: int, body: bytes) -> WebhookEvent:
    document = json_object(body, VENDOR, request_id)
    if text_field(document, "request_id", VENDOR, request_id) != request_id:
        raise MalformedCallback(
            "the fal callback's body is about another request than its signed header",
            vendor=VENDOR,
            delivery_id=request_id,
        )
    status = _STATUSES.get(str(document.get("status")))
    if status is None:
        raise MalformedCallback(
            "the fal callback's status is neither OK nor ERROR", vendor=VENDOR, delivery_id=request_id
        )
    return WebhookEvent(VENDOR, request_id, request_id, status, float(signed_at), document)

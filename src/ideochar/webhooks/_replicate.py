"""Replicate's callback signatures: the Standard Webhooks HMAC, checked by the ``standardwebhooks`` package.

Replicate signs ``"{webhook-id}.{webhook-timestamp}.{body}"`` with HMAC-SHA256, keyed by the account's
secret (``whsec_<base64>``, from ``GET /v1/webhooks/default/secret``), and sends ``v1,<base64>`` entries
in ``webhook-signature`` [S replicate-python ``webhook.py``]. That is the Standard Webhooks scheme [I:
Replicate does not name it], verified here by the scheme's own Python package. Replicate's client checks
no timestamp unless asked; here the tolerance is mandatory (the package also enforces five minutes).
"""

from __future__ import annotations

import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ideochar._secrets import Secret
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
from ideochar.webhooks._errors import BadSignature, MalformedCallback, SigningKeysUnavailable, StaleTimestamp

__all__ = ["HEADER_ID", "HEADER_SIGNATURE", "HEADER_TIMESTAMP", "SECRET_PATH", "ReplicateSecret", "replicate_scheme"]

logger = logging.getLogger("ideochar.webhooks")

VENDOR = "replicate"
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
#: The account's signing secret, under Replicate's API base URL [S].
SECRET_PATH = "/v1/webhooks/default/secret"  # noqa: S105 - a path, not a secret
#: A secret that does not verify is read again at most this often (it may have been rotated).
MIN_REFRESH_SECONDS = 60.0
#: Prediction statuses [D] in neutral words; ``aborted`` (a deadline before it started) is a cancel.
_STATUSES: Mapping[str, CallbackStatus] = {
    "starting": "running",
    "processing": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
    "aborted": "canceled",
}


class ReplicateSecret:
    """The account's signing secret: given, or read from Replicate (``fetch`` gets ``{"key": "whsec_..."}``
    from :data:`SECRET_PATH` with the account's token) and kept; read again at most once a minute when a
    signature does not verify (the secret may have been rotated). Never logged, never in an error."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        url: str | None = None,
        fetch: Fetch | None = None,
        afetch: AsyncFetch | None = None,
        min_refresh_seconds: float = MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if secret is None and url is None:
            raise ValueError("give the signing secret, or the URL to read it from (with fetch/afetch)")
        if secret is not None:
            Secret(secret)  # known to the redaction of logs and errors from now on
        self._secret = secret
        self._given = secret is not None
        self.url = url
        self._fetch = fetch
        self._afetch = afetch
        self.min_refresh_seconds = min_refresh_seconds
        self._clock = clock
        self._tried_at = -float("inf")
        self._lock = threading.Lock()
        self.fetches = 0

    def __repr__(self) -> str:
        return f"ReplicateSecret(given={self._given}, url={self.url!r})"

    def secret(self, *, refresh: bool = False) -> str:
        """The secret; read from Replicate when unknown, or when ``refresh`` asks and a minute has passed."""
        with self._lock:
            if not self._wants_read(refresh):
                return self._current()
            if self._fetch is None:
                raise SigningKeysUnavailable("no way to read Replicate's signing secret was given", vendor=VENDOR)
            try:
                return self._store(self._fetch(str(self.url)))
            except Exception as exc:
                return self._failed(exc)

    async def asecret(self, *, refresh: bool = False) -> str:
        """:meth:`secret` for an event loop."""
        if not self._wants_read(refresh):
            return self._current()
        if self._afetch is None:
            raise SigningKeysUnavailable("no way to read Replicate's signing secret was given", vendor=VENDOR)
        try:
            return self._store(await self._afetch(str(self.url)))
        except Exception as exc:
            return self._failed(exc)

    def _wants_read(self, refresh: bool) -> bool:
        if self._given or self.url is None:
            return False
        throttled = self._clock() - self._tried_at < self.min_refresh_seconds
        if self._secret is None:
            if throttled:
                raise SigningKeysUnavailable("Replicate's signing secret could not be read a moment ago", vendor=VENDOR)
            return True
        return refresh and not throttled

    def _current(self) -> str:
        assert self._secret is not None
        return self._secret

    def _store(self, body: bytes) -> str:
        self._tried_at = self._clock()
        if len(body) > MAX_KEYS_BYTES:
            raise ValueError("the secret's answer is too large")
        key = json.loads(body).get("key")
        if not isinstance(key, str) or not key.startswith("whsec_"):
            raise ValueError("the answer holds no whsec_ secret")
        Secret(key)
        self._secret = key
        self.fetches += 1
        return key

    def _failed(self, exc: Exception) -> str:
        self._tried_at = self._clock()
        if self._secret is not None:
            logger.warning(
                "Replicate's signing secret could not be read again (%s); the known one is used", type(exc).__name__
            )
            return self._secret
        raise SigningKeysUnavailable(
            f"Replicate's signing secret could not be read ({type(exc).__name__}); the callback is refused for now",
            vendor=VENDOR,
        ) from None  # the cause may quote the answer, which is the secret


# -- the scheme -----------------------------------------------------------------------------------------


def _headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    found = tuple(headers.get(name, "").strip() for name in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE))
    message_id, timestamp, signature = found
    if not (message_id and timestamp and signature):
        raise MalformedCallback("a Replicate callback needs webhook-id, -timestamp and -signature", vendor=VENDOR)
    if len(message_id) > 200 or not message_id.isprintable():
        raise MalformedCallback("the Replicate callback's webhook-id is not an id", vendor=VENDOR)
    entries = signature.split()
    if not entries or any(not entry.startswith("v") or "," not in entry for entry in entries):
        raise MalformedCallback("webhook-signature is not a list of 'v1,<base64>' entries", vendor=VENDOR)
    return message_id, timestamp, signature


def _verifies(secret: str, message_id: str, timestamp: str, signature: str, body: bytes) -> bool:
    """The package's check. Its own errors are one class; a timestamp it finds too old or too new (ours was
    checked first, so only at the very edge) is reported as such, every other refusal as a mismatch."""
    from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

    try:
        hook = Webhook(secret)
    except (binascii.Error, ValueError, EmptyWebhookSecretError, RuntimeError):
        raise SigningKeysUnavailable("the Replicate signing secret is not a whsec_ secret", vendor=VENDOR) from None
    headers = {HEADER_ID: message_id, HEADER_TIMESTAMP: timestamp, HEADER_SIGNATURE: signature}
    try:
        hook.verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        if "timestamp" in str(exc).lower():
            raise StaleTimestamp("the Replicate callback's timestamp is too old or too new", vendor=VENDOR) from None
        return False
    return True


def replicate_scheme(headers: Mapping[str, str], body: bytes, *, tolerance: float, now: float | None) -> Scheme:
    """Check a Replicate callback (``headers`` with lower-case names). Yields :class:`Need` for the secret."""
    message_id, timestamp, signature = _headers(headers)
    check_time(timestamp_of(timestamp, VENDOR), now=now, tolerance=tolerance, vendor=VENDOR, delivery_id=message_id)
    secret: str = yield Need(VENDOR)
    if not _verifies(secret, message_id, timestamp, signature, body):
        fresh: str = yield Need(VENDOR, refresh=True)
        if fresh == secret or not _verifies(fresh, message_id, timestamp, signature, body):
            raise BadSignature(
                "the Replicate callback's signature does not verify", vendor=VENDOR, delivery_id=message_id
            )
    return _event(message_id, int(timestamp), body)


def _event(message_id: str, signed_at: int, body: bytes) -> WebhookEvent:
    document: dict[str, Any] = json_object(body, VENDOR, message_id)
    prediction = text_field(document, "id", VENDOR, message_id)
    status = _STATUSES.get(str(document.get("status")))
    if status is None:
        raise MalformedCallback(
            "the Replicate callback has no known prediction status", vendor=VENDOR, delivery_id=message_id
        )
    return WebhookEvent(VENDOR, prediction, message_id, status, float(signed_at), document)

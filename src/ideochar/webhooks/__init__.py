"""Vendors' callbacks, verified, and the journaled jobs they finish.

fal (``fal_webhook`` on submit) and Replicate (``webhook`` on create) call a URL when a job ends. This
package checks that a callback really comes from the vendor and finishes the job it names::

    from ideochar import webhooks

    event = webhooks.verify("fal", headers, body)          # or raises webhooks.WebhookRefused
    event.vendor_job_id, event.status, event.delivery_id   # fal's request id, "succeeded", ...

    api.mount("/hooks", webhooks.app(client))              # an ASGI app (Starlette) for FastAPI

Schemes, each in a module of its own:

* **fal** (:mod:`ideochar.webhooks._fal`): Ed25519 over ``request_id \\n user_id \\n timestamp \\n
  sha256_hex(body)`` with keys from fal's JWKS, cached at most 24 h, read again once when no cached key
  verifies. **Inferred** from third-party implementations (fal's page only says "public keys").
* **Replicate** (:mod:`ideochar.webhooks._replicate`): the Standard Webhooks HMAC with the account's
  secret, checked by the ``standardwebhooks`` package.

Both refuse a timestamp more than five minutes off (the tolerance is mandatory; it may be narrowed).
The receiver (:class:`WebhookReceiver`, :func:`app`) answers at once and finishes the job afterwards, by
its vendor id as ``client.wait`` does (never from the callback's body); duplicates are acknowledged and
dropped by delivery id; a job whose callback never comes is finished by polling
(:meth:`WebhookReceiver.sweep`). Errors (:class:`WebhookRefused` and its subclasses) carry the HTTP
status to answer.

Needs the ``webhooks`` extra: ``pip install 'ideochar[webhooks]'``.
"""

from __future__ import annotations

from ideochar.webhooks._common import (
    DEFAULT_TOLERANCE_SECONDS,
    MAX_BODY_BYTES,
    MAX_TOLERANCE_SECONDS,
    CallbackStatus,
    WebhookEvent,
)
from ideochar.webhooks._deliveries import DatabaseDeliveries, DeliveryLog, MemoryDeliveries, SqliteDeliveries
from ideochar.webhooks._errors import (
    BadSignature,
    CallbackTooLarge,
    MalformedCallback,
    SigningKeysUnavailable,
    StaleTimestamp,
    UnknownKey,
    WebhookRefused,
)
from ideochar.webhooks._fal import FAL_JWKS_URL, FalKeys, parse_jwks, signed_message
from ideochar.webhooks._receiver import (
    BUSY_RETRY_SECONDS,
    CALLBACK_DEADLINE_SECONDS,
    SWEEP_EVERY_SECONDS,
    WebhookReceiver,
    app,
)
from ideochar.webhooks._replicate import ReplicateSecret
from ideochar.webhooks._verify import VENDORS, averify, detect_vendor, verify

__all__ = [
    "BUSY_RETRY_SECONDS",
    "CALLBACK_DEADLINE_SECONDS",
    "DEFAULT_TOLERANCE_SECONDS",
    "FAL_JWKS_URL",
    "MAX_BODY_BYTES",
    "MAX_TOLERANCE_SECONDS",
    "SWEEP_EVERY_SECONDS",
    "VENDORS",
    "BadSignature",
    "CallbackStatus",
    "CallbackTooLarge",
    "DatabaseDeliveries",
    "DeliveryLog",
    "FalKeys",
    "MalformedCallback",
    "MemoryDeliveries",
    "ReplicateSecret",
    "SigningKeysUnavailable",
    "SqliteDeliveries",
    "StaleTimestamp",
    "UnknownKey",
    "WebhookEvent",
    "WebhookReceiver",
    "WebhookRefused",
    "app",
    "averify",
    "detect_vendor",
    "parse_jwks",
    "signed_message",
    "verify",
]

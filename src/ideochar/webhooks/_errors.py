"""Why a callback was refused, and what to answer the vendor.

::

    IdeocharError
    └── WebhookRefused              http_status: what to answer the sender
        ├── MalformedCallback       400  a header missing or unreadable, a body that is not the vendor's JSON
        ├── BadSignature            401  no known key or secret signed these bytes
        ├── StaleTimestamp          401  signed outside the tolerance: a replay, or a clock minutes off
        ├── UnknownKey              401  nothing to check against (fal's key set holds no usable key)
        ├── CallbackTooLarge        413  the body is over the size limit (never read past it)
        └── SigningKeysUnavailable  503  fal's keys or Replicate's secret could not be fetched: the
                                         vendor retries later, when they may be

Each carries the vendor and, where the headers named one, the delivery id; messages are ours and never
hold the body, a signature or a secret.
"""

from __future__ import annotations

from typing import ClassVar

from ideochar.errors import IdeocharError

__all__ = [
    "BadSignature",
    "CallbackTooLarge",
    "MalformedCallback",
    "SigningKeysUnavailable",
    "StaleTimestamp",
    "UnknownKey",
    "WebhookRefused",
]


class WebhookRefused(IdeocharError):
    """A callback was not accepted. ``http_status`` is the answer the receiver gives the sender."""

    http_status: ClassVar[int] = 400

    def __init__(self, message: str, *, vendor: str | None = None, delivery_id: str | None = None) -> None:
        super().__init__(message)
        self.vendor = vendor
        self.delivery_id = delivery_id


class MalformedCallback(WebhookRefused):
    """A signature header is missing or unreadable, or the signed body is not the vendor's callback."""

    http_status = 400


class BadSignature(WebhookRefused):
    """No key (fal) or secret (Replicate) we know signed these bytes: forged, altered, or another account's."""

    http_status = 401


class StaleTimestamp(WebhookRefused):
    """The signature's timestamp is outside the tolerance: an old delivery replayed, or a clock far off."""

    http_status = 401


class UnknownKey(WebhookRefused):
    """There is no key to check the signature with (the key set, read again, holds no usable key)."""

    http_status = 401


class CallbackTooLarge(WebhookRefused):
    """The body is over the receiver's limit; it was not read past the limit."""

    http_status = 413


class SigningKeysUnavailable(WebhookRefused):
    """fal's public keys or Replicate's signing secret could not be had. Answered 503: the vendor retries."""

    http_status = 503

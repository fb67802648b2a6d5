"""Keys that cannot leak by accident.

A key is held in a :class:`Secret`, whose ``repr`` and ``str`` never show it, and every secret value
ever wrapped is remembered (in this process only) so that :func:`redact` can scrub it from any text
that is about to become an error message, a log line or a cassette: a vendor that echoes the key in an
error body cannot smuggle it out through us.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["REDACTED", "RedactingFilter", "Secret", "redact", "redact_any"]

REDACTED = "[REDACTED]"
_MIN_SECRET_LENGTH = 6  # shorter strings would redact ordinary words

_known: set[str] = set()
_lock = threading.Lock()


class Secret:
    """A credential. Use :meth:`reveal` only where the value goes on the wire."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise ValueError("an empty key is not a key")
        self._value = value
        if len(value) >= _MIN_SECRET_LENGTH:
            with _lock:
                _known.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        # Pickling a client or error must not write the key anywhere.
        return (_unpicklable_secret, ())


def _unpicklable_secret() -> None:
    return None


def redact(text: str) -> str:
    """Replace every known key (and its ``id:secret`` halves) in ``text``."""
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
        if ":" in value:
            for part in value.split(":"):
                if len(part) >= _MIN_SECRET_LENGTH and part in text:
                    text = text.replace(part, REDACTED)
    return text


def redact_any(value: Any) -> Any:
    """Redact strings inside JSON-like data (vendor bodies kept on exceptions)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_any(k): redact_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_any(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Installed on the ``ideochar`` logger: a formatted record never carries a key."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

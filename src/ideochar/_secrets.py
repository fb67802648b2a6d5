"""Keys that cannot leak by accident.

A key is held in a :class:`Secret`, whose ``repr`` and ``str`` never show it, and every secret value
ever wrapped is remembered (in this process only) so that :func:`redact` can scrub it from any text
that is about to become an error message, a log line or a cassette: a vendor that echoes the key in an
error body cannot smuggle it out through us.

Some secrets are never wrapped: a caller's presigned image URL carries its own (a password in
``user:pass@``, a signature in the query string). :func:`redact_url` hides those wherever a URL is shown.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import unquote_plus

__all__ = ["REDACTED", "SECRET_URL_PARAMETERS", "RedactingFilter", "Secret", "redact", "redact_any", "redact_url"]

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


#: Query parameters whose value is a credential, compared without case: AWS SigV4 presigned URLs, GCS V4
#: signed URLs, Azure SAS (``sig``), CloudFront (``Signature``, ``Policy``, ``Key-Pair-Id``) and the usual
#: token and key names. Expiry and date parameters (``X-Amz-Expires``, ``Expires``, ``se``) stay visible:
#: they are not secret, and they explain why a URL answered 403.
SECRET_URL_PARAMETERS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "googleaccessid",
        "sig",
        "signature",
        "policy",
        "key-pair-id",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "auth",
        "key",
        "api_key",
        "apikey",
        "api-key",
        "client_secret",
        "password",
        "secret",
    }
)
#: A parameter whose name contains one of these is a credential too (``upload_token``, ``X-Sas-Signature``).
_SECRET_NAME_PARTS = ("token", "signature", "secret", "password", "credential")
# The authority's userinfo, up to the last "@" before the path (a password may itself contain "@").
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:)?//(?P<userinfo>[^/?#]*)@")
# One name=value pair of a query string or fragment.
_PARAMETER = re.compile(r"(?P<lead>[?&#;])(?P<name>[^=&#;]+)=(?P<value>[^&#;]*)")


def _secret_parameter(name: str) -> bool:
    lowered = unquote_plus(name).strip().lower()
    return lowered in SECRET_URL_PARAMETERS or any(part in lowered for part in _SECRET_NAME_PARTS)


def _hide_value(match: re.Match[str]) -> str:
    if not _secret_parameter(match["name"]) or not match["value"]:
        return match[0]
    return f"{match['lead']}{match['name']}={REDACTED}"


def redact_url(url: str) -> str:
    """``url`` fit to show: userinfo and the values of credential-like parameters replaced, known keys too.

    Works on the text, never re-encoding it, so what stays is exactly what the caller gave and a URL
    that no parser accepts is still cleaned. Example::

        redact_url("https://u:p@bucket.test/a.png?X-Amz-Expires=60&X-Amz-Signature=abc")
        # 'https://[REDACTED]@bucket.test/a.png?X-Amz-Expires=60&X-Amz-Signature=[REDACTED]'
    """
    text = _USERINFO.sub(lambda m: f"{m['scheme'] or ''}//{REDACTED}@", url, count=1)
    return redact(_PARAMETER.sub(_hide_value, text))


class RedactingFilter(logging.Filter):
    """Installed on the ``ideochar`` logger: a formatted record never carries a key."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

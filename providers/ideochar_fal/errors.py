"""fal's refusals -> ideochar errors: one flat table, read top to bottom, first match wins.

fal answers errors in two shapes (reference/fal.md §2.1):

* model and validation errors, usually 422: ``{"detail": [{"loc": ["body", "field"], "msg": "...",
  "type": "image_too_large", "ctx": {...}}]}``. fal says to rely on ``type``, not ``msg``; we use both:
  ``type`` to classify, ``loc: msg`` lines to make a sentence (fal_client's own message is the raw list);
* infrastructure errors: a flat ``{"detail": "Request timed out", "error_type": "request_timeout"}``,
  with the same type in the ``X-Fal-Error-Type`` header.

Bodies are read without assuming JSON (an nginx 502 page is HTML). Choices made here:

* **Ingress errors** -- 502/503/504 *without* an ``x-fal-request-id`` header -- come from fal's edge
  before any app saw the request (fal_client retries exactly these), so they are ``sent=False``: the
  router may send them again, even a submit.
* Other 5xx are ProviderUnavailable, ``billed="no"``: "failed requests that return 5xx are not billed".
* A 504 with ``X-Fal-Request-Timeout-Type: user`` is our own ``X-Fal-Request-Timeout`` expiring before
  the job started: ProviderUnavailable, not billed.
* INFERRED: 403 with words of money ("Exhausted balance", "locked", ...) is InsufficientCredits
  (``CREDIT_WORDS``), and the content-policy types and words in ``CONTENT_POLICY_TYPES`` and
  ``CONTENT_POLICY_WORDS`` mark a safety refusal (ContentFiltered, not billed).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ideochar.errors import (
    AuthenticationFailed,
    Billed,
    ContentFiltered,
    GenerationFailed,
    InsufficientCredits,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UnexpectedResponse,
)
from ideochar.retry import parse_retry_after
from ideochar_fal.wire import HEADER_ERROR_TYPE, HEADER_REQUEST_ID, HEADER_TIMEOUT_TYPE

__all__ = [
    "CONTENT_POLICY_TYPES",
    "CONTENT_POLICY_WORDS",
    "CREDIT_WORDS",
    "RULES",
    "Failure",
    "Rule",
    "completed_error",
    "error_from_response",
    "read_failure",
]

PROVIDER = "fal"
#: ``type``/``error_type`` values naming a safety refusal. INFERRED from fal's error-type list.
CONTENT_POLICY_TYPES: frozenset[str] = frozenset({"content_policy_violation", "nsfw_content_detected"})
#: Words in a message that mark a safety refusal when no type says so. INFERRED.
CONTENT_POLICY_WORDS: tuple[str, ...] = ("content policy", "content_policy", "nsfw", "safety checker", "unsafe content")
#: A 403 naming money rather than permission. INFERRED ("Exhausted balance" is what users report).
CREDIT_WORDS: tuple[str, ...] = ("exhausted balance", "balance", "locked", "billing", "credit", "payment")
#: Error types meaning fal could not get the job started (runner problems, time-to-start deadlines).
UNAVAILABLE_TYPES: frozenset[str] = frozenset(
    {
        "request_timeout",
        "startup_timeout",
        "runner_scheduling_failure",
        "runner_connection_timeout",
        "runner_disconnected",
        "runner_connection_refused",
        "runner_server_error",
        "internal_error",
    }
)

_MAX_DETAIL_CHARS = 600
_MAX_KEPT_BODY = 2000


@dataclass(frozen=True)
class Failure:
    """Everything an error answer says, read once, whatever its shape."""

    status: int
    detail: str
    """A readable summary: the flat ``detail``, or ``loc: msg`` lines joined with ``; ``."""
    problems: tuple[tuple[str, str], ...] = ()
    """``(field, message)`` for each ``detail[]`` item (``loc`` without the leading ``body``)."""
    types: frozenset[str] = frozenset()
    """Every ``type``/``error_type``, from the items, the body and ``X-Fal-Error-Type``."""
    request_id: str | None = None
    """``x-fal-request-id``: present when fal itself (not its edge) answered."""
    timeout_type: str | None = None
    retry_after: float | None = None
    body: Any = field(default=None, repr=False)

    def mentions(self, words: Sequence[str]) -> bool:
        text = self.detail.lower()
        return any(word in text for word in words)


@dataclass(frozen=True)
class Rule:
    """One row of the table: when ``applies`` holds, raise ``error`` with ``message``."""

    name: str
    error: type[ProviderError]
    message: str
    """A sentence; ``{detail}`` is the vendor's message, ``{status}`` the HTTP status."""
    statuses: frozenset[int] | None = None
    """None: any status."""
    when: str = "always"
    """A named condition from ``_CONDITIONS`` (kept as data so the table prints and tests cleanly)."""
    billed: Billed = "no"
    sent: bool = True

    def matches(self, failure: Failure) -> bool:
        if self.statuses is not None and failure.status not in self.statuses:
            return False
        return _CONDITIONS[self.when](failure)


_CONDITIONS: dict[str, Callable[[Failure], bool]] = {
    "always": lambda f: True,
    "content_policy": lambda f: bool(f.types & CONTENT_POLICY_TYPES) or f.mentions(CONTENT_POLICY_WORDS),
    "credit_words": lambda f: f.mentions(CREDIT_WORDS),
    "user_timeout": lambda f: (f.timeout_type or "").lower() == "user",
    "no_request_id": lambda f: f.request_id is None,
    "runner_type": lambda f: bool(f.types & UNAVAILABLE_TYPES),
}

_5XX = frozenset(range(500, 600))
_BUSY = frozenset({408, 409})
_KEY_HINT = "check FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET"

RULES: tuple[Rule, ...] = (
    Rule(
        "content policy",
        ContentFiltered,
        "fal's content checker refused the request: {detail}",
        frozenset({400, 403, 422, 500}),
        "content_policy",
    ),
    Rule("auth", AuthenticationFailed, "fal refused the API key ({hint}): {detail}", frozenset({401})),
    Rule(
        "out of credit",
        InsufficientCredits,
        "the fal account cannot pay for this request (balance exhausted or account locked): {detail}",
        frozenset({402, 403}),
        "credit_words",
    ),
    Rule("payment required", InsufficientCredits, "fal asks for payment (HTTP 402): {detail}", frozenset({402})),
    Rule("forbidden", AuthenticationFailed, "fal refused access to this endpoint ({hint}): {detail}", frozenset({403})),
    Rule("rate limit", RateLimited, "fal's rate limit was reached: {detail}", frozenset({429})),
    Rule(
        "time to start",
        ProviderUnavailable,
        "fal could not start the job within the X-Fal-Request-Timeout given: {detail}",
        frozenset({504}),
        "user_timeout",
    ),
    Rule(
        "ingress",
        ProviderUnavailable,
        "fal's edge answered HTTP {status} before any app saw the request (no x-fal-request-id): {detail}",
        frozenset({502, 503, 504}),
        "no_request_id",
        sent=False,
    ),
    Rule(
        "validation",
        RequestRejected,
        "fal rejected the request (HTTP {status}): {detail}",
        frozenset({400, 413, 422}),
    ),
    Rule(
        "no endpoint",
        ProviderUnavailable,
        "fal has no such endpoint or request (HTTP 404: {detail}); check the base URL",
        frozenset({404, 405}),
    ),
    Rule("busy", ProviderUnavailable, "fal could not take the request (HTTP {status}): {detail}", _BUSY),
    Rule("runner", ProviderUnavailable, "fal could not run the job (HTTP {status}): {detail}", _5XX, "runner_type"),
    Rule("server", ProviderUnavailable, "fal is unavailable (HTTP {status}): {detail}", _5XX),
    Rule("other 4xx", RequestRejected, "fal refused the request (HTTP {status}): {detail}", frozenset(range(400, 500))),
)


# -- reading an error answer ---------------------------------------------------------------------------


def read_failure(response: httpx.Response) -> Failure:
    """A :class:`Failure` from any error answer: JSON (either shape), plain text, HTML, or nothing."""
    text = response.text if response.content else ""
    content_type = response.headers.get("content-type", "").lower()
    body: Any = None
    if "json" in content_type or text.lstrip().startswith(("{", "[")):
        try:
            body = response.json()
        except ValueError:
            body = None
    types: set[str] = set()
    if header_type := response.headers.get(HEADER_ERROR_TYPE):
        types.add(header_type.strip())
    problems: list[tuple[str, str]] = []
    if body is not None:
        detail, problems = _json_detail(body, types)
        kept: Any = body
    elif "html" in content_type or text.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        detail, kept = _html_detail(text), text[:_MAX_KEPT_BODY]
    else:
        detail, kept = (" ".join(text.split())[:_MAX_DETAIL_CHARS] or "no message"), (text[:_MAX_KEPT_BODY] or None)
    return Failure(
        status=response.status_code,
        detail=detail,
        problems=tuple(problems),
        types=frozenset(t for t in types if t),
        request_id=response.headers.get(HEADER_REQUEST_ID) or None,
        timeout_type=response.headers.get(HEADER_TIMEOUT_TYPE) or None,
        retry_after=parse_retry_after(response.headers),
        body=kept,
    )


def _json_detail(body: Any, types: set[str]) -> tuple[str, list[tuple[str, str]]]:
    """The readable detail of a JSON error body; collects every ``type`` into ``types``."""
    if isinstance(body, dict):
        if isinstance(body.get("error_type"), str):
            types.add(body["error_type"])
        detail = body.get("detail", body.get("error", body.get("message")))
    else:
        detail = body
    if isinstance(detail, list):
        problems = [_problem(item, types) for item in detail]
        text = "; ".join(f"{where}: {what}" if where else what for where, what in problems)
        return (text[:_MAX_DETAIL_CHARS] or "no message"), problems
    if isinstance(detail, dict):
        where, what = _problem(detail, types)
        return (f"{where}: {what}" if where else what), [(where, what)]
    if isinstance(detail, (str, int, float)) and str(detail).strip():
        return str(detail).strip()[:_MAX_DETAIL_CHARS], []
    return (" ".join(str(body).split())[:_MAX_DETAIL_CHARS] or "no message"), []


def _problem(item: Any, types: set[str]) -> tuple[str, str]:
    """``(field, message)`` of one ``detail[]`` item: ``loc`` joined with dots, ``body`` dropped."""
    if not isinstance(item, dict):
        return "", " ".join(str(item).split())
    loc = item.get("loc")
    parts = [str(p) for p in loc] if isinstance(loc, list) else ([str(loc)] if loc else [])
    if parts and parts[0] == "body":
        parts = parts[1:]
    kind = item.get("type")
    if isinstance(kind, str):
        types.add(kind)
    message = str(item.get("msg") or item.get("message") or kind or "invalid").strip()
    if isinstance(kind, str) and kind not in message:
        message = f"{message} [{kind}]"
    return ".".join(parts), message


def _html_detail(text: str) -> str:
    match = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    if match and match.group(1).strip():
        return f"an HTML page titled {html.unescape(' '.join(match.group(1).split()))!r}"
    return "an HTML page"


# -- building the error ----------------------------------------------------------------------------------


def error_from_response(response: httpx.Response, *, admitted: bool = False) -> ProviderError:
    """The ideochar error for a non-2xx answer from fal (see ``RULES``)."""
    failure = read_failure(response)
    rule = next((r for r in RULES if r.matches(failure)), None)
    if rule is None:
        error: ProviderError = UnexpectedResponse(
            f"fal answered HTTP {failure.status}, which ideochar does not expect: {failure.detail}",
            provider=PROVIDER,
            status=failure.status,
            vendor_request_id=failure.request_id,
            body=failure.body,
            admitted=admitted,
        )
        return error
    message = rule.message.format(detail=failure.detail, status=failure.status, hint=_KEY_HINT)
    return rule.error(
        message,
        provider=PROVIDER,
        status=failure.status,
        vendor_request_id=failure.request_id,
        billed=rule.billed,
        body=failure.body,
        retry_after=failure.retry_after,
        admitted=admitted,
        sent=rule.sent or admitted,
    )


def completed_error(error: Any, error_type: str | None, *, request_id: str, body: Any = None) -> ProviderError:
    """A job fal reports as ``COMPLETED`` with an ``error``: it ran (or tried to) and failed.

    Billing is unknown: fal does not bill 5xx failures, but a COMPLETED status does not say which it was.
    """
    types: set[str] = {error_type} if error_type else set()
    if isinstance(error, (list, dict)):
        detail, _ = _json_detail({"detail": error}, types)
    else:
        detail = " ".join(str(error).split())[:_MAX_DETAIL_CHARS] or "no message"
    failure = Failure(status=200, detail=detail, types=frozenset(types))
    kind = f" ({error_type})" if error_type else ""
    if _CONDITIONS["content_policy"](failure):
        return ContentFiltered(
            f"fal's content checker stopped job {request_id}{kind}: {detail}",
            provider=PROVIDER,
            vendor_request_id=request_id,
            billed="unknown",
            body=body,
            admitted=True,
        )
    return GenerationFailed(
        f"fal job {request_id} failed{kind}: {detail}",
        provider=PROVIDER,
        vendor_request_id=request_id,
        billed="unknown",
        body=body,
        admitted=True,
    )

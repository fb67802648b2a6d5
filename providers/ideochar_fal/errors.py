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
* ``X-Fal-Retryable`` (or ``X-Fal-Needs-Retry``, as another copy of fal's error page names it) is read
  into ``ProviderError.retryable``: fal's own hint whether the same request may succeed if repeated. It
  is kept as data for the router; nothing here decides a retry or a failover from it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from ideochar._secrets import redact_any
from ideochar.errors import (
    AuthenticationFailed,
    ContentFiltered,
    GenerationFailed,
    InsufficientCredits,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from ideochar.toolkit import (
    CLIENT_ERRORS,
    SERVER_ERRORS,
    Condition,
    ErrorRule,
    Failure,
    clip,
    error_for,
    mentions,
    retryable_hint,
    statuses,
)
from ideochar.toolkit import read_failure as read_any_failure
from ideochar_fal.wire import (
    HEADER_ERROR_TYPE,
    HEADER_NEEDS_RETRY,
    HEADER_REQUEST_ID,
    HEADER_RETRYABLE,
    HEADER_TIMEOUT_TYPE,
)

__all__ = [
    "CONTENT_POLICY_TYPES",
    "CONTENT_POLICY_WORDS",
    "CREDIT_WORDS",
    "RULES",
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

CONTENT_POLICY = Condition(
    "content policy", lambda f: bool(f.codes & CONTENT_POLICY_TYPES) or f.mentions(CONTENT_POLICY_WORDS)
)
USER_TIMEOUT = Condition("user timeout", lambda f: f.headers.get(HEADER_TIMEOUT_TYPE, "").strip().lower() == "user")
NO_REQUEST_ID = Condition("no request id", lambda f: f.request_id is None)
RUNNER_TYPE = Condition("runner type", lambda f: bool(f.codes & UNAVAILABLE_TYPES))

_KEY_HINT = "check FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET"

RULES: tuple[ErrorRule, ...] = (
    ErrorRule(
        "content policy",
        ContentFiltered,
        "fal's content checker refused the request: {detail}",
        statuses(400, 403, 422, 500),
        CONTENT_POLICY,
    ),
    ErrorRule("auth", AuthenticationFailed, "fal refused the API key ({hint}): {detail}", statuses(401)),
    ErrorRule(
        "out of credit",
        InsufficientCredits,
        "the fal account cannot pay for this request (balance exhausted or account locked): {detail}",
        statuses(402, 403),
        mentions("credit words", CREDIT_WORDS),
    ),
    ErrorRule("payment required", InsufficientCredits, "fal asks for payment (HTTP 402): {detail}", statuses(402)),
    ErrorRule(
        "forbidden", AuthenticationFailed, "fal refused access to this endpoint ({hint}): {detail}", statuses(403)
    ),
    ErrorRule("rate limit", RateLimited, "fal's rate limit was reached: {detail}", statuses(429)),
    ErrorRule(
        "time to start",
        ProviderUnavailable,
        "fal could not start the job within the X-Fal-Request-Timeout given: {detail}",
        statuses(504),
        USER_TIMEOUT,
    ),
    ErrorRule(
        "ingress",
        ProviderUnavailable,
        "fal's edge answered HTTP {status} before any app saw the request (no x-fal-request-id): {detail}",
        statuses(502, 503, 504),
        NO_REQUEST_ID,
        sent=False,
    ),
    ErrorRule(
        "validation", RequestRejected, "fal rejected the request (HTTP {status}): {detail}", statuses(400, 413, 422)
    ),
    ErrorRule(
        "no endpoint",
        ProviderUnavailable,
        "fal has no such endpoint or request (HTTP 404: {detail}); check the base URL",
        statuses(404, 405),
    ),
    ErrorRule(
        "busy", ProviderUnavailable, "fal could not take the request (HTTP {status}): {detail}", statuses(408, 409)
    ),
    ErrorRule(
        "runner", ProviderUnavailable, "fal could not run the job (HTTP {status}): {detail}", SERVER_ERRORS, RUNNER_TYPE
    ),
    ErrorRule("server", ProviderUnavailable, "fal is unavailable (HTTP {status}): {detail}", SERVER_ERRORS),
    ErrorRule("other 4xx", RequestRejected, "fal refused the request (HTTP {status}): {detail}", CLIENT_ERRORS),
)


# -- reading an error answer ---------------------------------------------------------------------------


def read_failure(response: httpx.Response) -> Failure:
    """A :class:`~ideochar.toolkit.Failure` from any error answer, with fal's detail lists made into
    ``field: message`` sentences and every ``type`` (items, body, ``X-Fal-Error-Type``) as a code."""
    failure = read_any_failure(response, request_id_header=HEADER_REQUEST_ID)
    types: set[str] = set()
    if header_type := response.headers.get(HEADER_ERROR_TYPE, "").strip():
        types.add(header_type)
    problems: list[tuple[str, str]] = []
    detail = failure.detail
    if isinstance(failure.body, (dict, list)):
        detail, problems = _json_detail(failure.body, types)
    retryable = retryable_hint(response.headers, HEADER_RETRYABLE, HEADER_NEEDS_RETRY)
    return dataclasses.replace(
        failure, detail=detail, problems=tuple(problems), codes=frozenset(types), retryable=retryable
    )


def _json_detail(body: Any, types: set[str]) -> tuple[str, list[tuple[str, str]]]:
    """The readable detail of a JSON error body (already redacted); collects every ``type`` into ``types``."""
    if isinstance(body, dict):
        if isinstance(body.get("error_type"), str):
            types.add(body["error_type"])
        detail = body.get("detail", body.get("error", body.get("message")))
    else:
        detail = body
    if isinstance(detail, list):
        problems = [_problem(item, types) for item in detail]
        text = "; ".join(f"{where}: {what}" if where else what for where, what in problems)
        return (clip(text) or "no message"), problems
    if isinstance(detail, dict):
        where, what = _problem(detail, types)
        return clip(f"{where}: {what}" if where else what), [(where, what)]
    if isinstance(detail, (str, int, float)) and str(detail).strip():
        return clip(str(detail)), []
    return (clip(str(body)) or "no message"), []


def _problem(item: Any, types: set[str]) -> tuple[str, str]:
    """``(field, message)`` of one ``detail[]`` item: ``loc`` joined with dots, ``body`` dropped."""
    if not isinstance(item, dict):
        return "", clip(str(item))
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


# -- building the error ----------------------------------------------------------------------------------


def error_from_response(response: httpx.Response, *, admitted: bool = False) -> ProviderError:
    """The ideochar error for a non-2xx answer from fal (see ``RULES``)."""
    return error_for(read_failure(response), RULES, provider=PROVIDER, title="fal", admitted=admitted, hint=_KEY_HINT)


def completed_error(error: Any, error_type: str | None, *, request_id: str, body: Any = None) -> ProviderError:
    """A job fal reports as ``COMPLETED`` with an ``error``: it ran (or tried to) and failed.

    Billing is unknown: fal does not bill 5xx failures, but a COMPLETED status does not say which it was.
    """
    types: set[str] = {error_type} if error_type else set()
    error = redact_any(error)  # before any cut: a key cut in half would no longer be recognised
    if isinstance(error, (list, dict)):
        detail, _ = _json_detail({"detail": error}, types)
    else:
        detail = clip(str(error)) or "no message"
    kind = f" ({error_type})" if error_type else ""
    if CONTENT_POLICY(Failure(status=200, detail=detail, codes=frozenset(types))):
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

"""Segmind's refusals -> ideochar errors: one flat table, read top to bottom, first match wins.

Segmind has no symbolic error codes: a failure is an HTTP status plus ``{"error": "<sentence>"}``, and
one status can mean unrelated things (406 is a wrong Content-Type *or* too little credit *or* a team
spend limit *or* a refused parameter). So a rule may also require words in the vendor's message. The
405 answer is an HTML page and a 406 may be plain text; every body is read without assuming JSON.

Billing: "only HTTP 200 is billed" (reference/vendors.md §1.4), so every error here says ``billed="no"``.
A v2 job that ran and failed answers 422 with ``{"status": "FAILED", "error": ...}``; it is not charged.

Choices made here:

* 404 and 410 on the model's route mean the endpoint moved or the model was retired: not the caller's
  fault and another vendor may serve, so ProviderUnavailable (fails over), not RequestRejected.
* 405 (HTML) means the base URL does not point at Segmind's API (a proxy, a typo): ProviderUnavailable.
* 406 is documented as "Not enough credits": it is InsufficientCredits (the router fails over) unless its
  body clearly says otherwise — the Content-Type (our bug, RequestRejected) or a parameter
  (``PARAMETER_WORDS``, **inferred**: RequestRejected). An empty or unreadable 406 is out of credit.
* 500 is ProviderUnavailable, though Segmind warns it is often a parameter the model refused; the
  message says so, so a person reading it looks at the request first.
* Messages naming a safety check become ContentFiltered. The words are **inferred** (Segmind documents
  no safety error for this model); see ``SAFETY_WORDS``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx

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
from ideochar.retry import parse_retry_after
from ideochar.toolkit import (
    CLIENT_ERRORS,
    SERVER_ERRORS,
    ErrorRule,
    Failure,
    error_for,
    mentions,
    read_body,
    read_failure,
    statuses,
)
from ideochar_segmind.wire import HEADER_RATE_LIMIT_RESET, HEADER_REQUEST_ID

__all__ = [
    "CONTENT_TYPE_WORDS",
    "CREDIT_WORDS",
    "PARAMETER_WORDS",
    "RULES",
    "SAFETY_WORDS",
    "error_from_response",
    "failed_job_error",
    "retry_after_seconds",
    "vendor_detail",
]

PROVIDER = "segmind"
#: Words that mark a safety refusal in a vendor message. INFERRED: no such error is documented for
#: ideogram-character on Segmind; these are the words other vendors of the same model use.
SAFETY_WORDS: tuple[str, ...] = ("nsfw", "safety", "unsafe", "content policy", "moderation", "inappropriate")
#: A 406 naming money: balance below the model's cost, or a team spend limit [V3 wording].
CREDIT_WORDS: tuple[str, ...] = ("credit", "balance", "spend", "insufficient", "fund")
#: A 406 about the request's Content-Type: a bug on our side, worth a precise message.
CONTENT_TYPE_WORDS: tuple[str, ...] = ("content type", "content-type")
#: A 406 that names a parameter rather than money. INFERRED: Segmind's catalogue mentions 406 for a refused
#: parameter without quoting it; these words mark one. Any other 406 is "Not enough credits", as documented.
PARAMETER_WORDS: tuple[str, ...] = ("parameter", "invalid", "must be", "not supported", "unsupported", "required")
#: Where Segmind's words are in a JSON error body (``{"error"}``, or OAuth's ``{"error", "error_description"}``).
DETAIL_KEYS: tuple[str, ...] = ("error", "error_description", "message", "detail")

SAFETY = mentions("safety words", SAFETY_WORDS)

RULES: tuple[ErrorRule, ...] = (
    ErrorRule(
        "safety",
        ContentFiltered,
        "Segmind's safety check refused the request: {detail}",
        statuses(400, 406, 422, 500),
        SAFETY,
    ),
    ErrorRule(
        "auth",
        AuthenticationFailed,
        "Segmind refused the API key (sent as x-api-key; check SEGMIND_API_KEY): {detail}",
        statuses(401),
    ),
    ErrorRule(
        "forbidden",
        AuthenticationFailed,
        "this Segmind account or team is not allowed to use ideogram-character: {detail}",
        statuses(403),
    ),
    ErrorRule(
        "content type",
        RequestRejected,
        "Segmind refused the request's Content-Type ({detail}); this is a bug in ideochar, please report it",
        statuses(406),
        mentions("content-type words", CONTENT_TYPE_WORDS),
    ),
    ErrorRule(
        "credits",
        InsufficientCredits,
        "the Segmind account cannot pay for this request (credits or spend limit): {detail}",
        statuses(406),
        mentions("credit words", CREDIT_WORDS),
    ),
    ErrorRule(
        "parameter",
        RequestRejected,
        "Segmind refused a parameter value before running the model: {detail}",
        statuses(406),
        mentions("parameter words", PARAMETER_WORDS),
    ),
    ErrorRule(
        "406",
        InsufficientCredits,
        "Segmind answered 406, documented as 'Not enough credits' (its body does not say otherwise): {detail}",
        statuses(406),
    ),
    ErrorRule("invalid", RequestRejected, "Segmind rejected the request as invalid: {detail}", statuses(400, 413, 422)),
    ErrorRule(
        "no route",
        ProviderUnavailable,
        "Segmind has no ideogram-character endpoint here (404: {detail}); check the base URL",
        statuses(404),
    ),
    ErrorRule(
        "not the API",
        ProviderUnavailable,
        "Segmind answered 405 Method Not Allowed ({detail}); the base URL does not seem to point at its API",
        statuses(405),
    ),
    ErrorRule("retired", ProviderUnavailable, "Segmind has retired ideogram-character (410): {detail}", statuses(410)),
    ErrorRule(
        "rate limit",
        RateLimited,
        "Segmind's rate limit was reached (5 requests a minute on the free plan, 50 on Pro): {detail}",
        statuses(429),
    ),
    ErrorRule(
        "500",
        ProviderUnavailable,
        "Segmind failed with HTTP 500 ({detail}); on Segmind this is often a parameter value the model "
        "refused, so check the request before assuming an outage",
        statuses(500),
    ),
    ErrorRule("server", ProviderUnavailable, "Segmind is unavailable (HTTP {status}): {detail}", SERVER_ERRORS),
    ErrorRule("other 4xx", RequestRejected, "Segmind refused the request (HTTP {status}): {detail}", CLIENT_ERRORS),
)


def vendor_detail(response: httpx.Response) -> tuple[str, Any]:
    """``(a short message from the vendor, the body to keep on the error)``, whatever the body is:
    JSON ``{"error": ...}`` (and the OAuth-style ``{"error", "error_description"}``), plain text, an
    HTML page (its title), or nothing. Redacted before it is cut."""
    body = read_body(response)
    return body.summary(DETAIL_KEYS), body.kept()


def _failure(response: httpx.Response) -> Failure:
    """The answer read once: Segmind's request id is in a header or the body, its Retry-After in a reset time."""
    failure = read_failure(response, detail_keys=DETAIL_KEYS, request_id_header=HEADER_REQUEST_ID)
    return dataclasses.replace(
        failure,
        request_id=failure.request_id or _body_request_id(failure.body),
        retry_after=retry_after_seconds(response.headers),
    )


def error_from_response(response: httpx.Response, *, admitted: bool = False) -> ProviderError:
    """The ideochar error for a non-200 answer from Segmind (see ``RULES``)."""
    return error_for(_failure(response), RULES, provider=PROVIDER, title="Segmind", admitted=admitted)


def retry_after_seconds(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds until Segmind's rate limit resets, from ``x-rate-limit-reset-at-utc``.

    The header names a moment, and its format is not documented: an ISO or HTTP date is read by the
    shared parser; a bare number that is plainly a Unix time (seconds or milliseconds) is read as
    one (**inferred**), rather than as a wait of fifty years.
    """
    raw = headers.get(HEADER_RATE_LIMIT_RESET, "").strip()
    current = time.time() if now is None else now
    try:
        number = float(raw)
    except ValueError:
        return parse_retry_after(headers, now=current)
    if number > 1e12:
        number /= 1000.0
    if number > 1e9:
        return max(0.0, number - current)
    return parse_retry_after(headers, now=current)


def failed_job_error(
    detail: str | None, *, request_id: str | None, body: Any = None, status: int | None = None
) -> ProviderError:
    """A v2 job that ran and ended FAILED: a safety refusal or a generation failure, never billed."""
    text = (detail or "no reason given").strip()
    safety = SAFETY(Failure(status=status or 200, detail=text))
    error_type: type[ProviderError] = ContentFiltered if safety else GenerationFailed
    message = (
        f"Segmind's safety check refused job {request_id}: {text}"
        if safety
        else f"Segmind job {request_id} failed: {text}"
    )
    return error_type(
        message,
        provider=PROVIDER,
        status=status,
        vendor_request_id=request_id,
        billed="no",
        body=body,
        admitted=True,
    )


def _body_request_id(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("request_id"), str):
        return str(body["request_id"])
    return None

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
* 500 is ProviderUnavailable, though Segmind warns it is often a parameter the model refused; the
  message says so, so a person reading it looks at the request first.
* Messages naming a safety check become ContentFiltered. The words are **inferred** (Segmind documents
  no safety error for this model); see ``SAFETY_WORDS``.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
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
    UnexpectedResponse,
)
from ideochar.retry import parse_retry_after
from ideochar_segmind.wire import HEADER_RATE_LIMIT_RESET, HEADER_REQUEST_ID

__all__ = [
    "CONTENT_TYPE_WORDS",
    "CREDIT_WORDS",
    "RULES",
    "SAFETY_WORDS",
    "Rule",
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

_MAX_KEPT_BODY = 1000


@dataclass(frozen=True)
class Rule:
    """One row: these statuses (and, if given, one of these words in the message) -> this error."""

    statuses: frozenset[int]
    error: type[ProviderError]
    message: str
    """A sentence; ``{detail}`` is the vendor's message, ``{status}`` the HTTP status."""
    words: tuple[str, ...] = ()

    def matches(self, status: int, detail: str) -> bool:
        if status not in self.statuses:
            return False
        lowered = detail.lower()
        return not self.words or any(word in lowered for word in self.words)


_5XX = frozenset(range(500, 600))

RULES: tuple[Rule, ...] = (
    Rule(
        frozenset({400, 406, 422, 500}),
        ContentFiltered,
        "Segmind's safety check refused the request: {detail}",
        SAFETY_WORDS,
    ),
    Rule(
        frozenset({401}),
        AuthenticationFailed,
        "Segmind refused the API key (sent as x-api-key; check SEGMIND_API_KEY): {detail}",
    ),
    Rule(
        frozenset({403}),
        AuthenticationFailed,
        "this Segmind account or team is not allowed to use ideogram-character: {detail}",
    ),
    Rule(
        frozenset({406}),
        RequestRejected,
        "Segmind refused the request's Content-Type ({detail}); this is a bug in ideochar, please report it",
        CONTENT_TYPE_WORDS,
    ),
    Rule(
        frozenset({406}),
        InsufficientCredits,
        "the Segmind account cannot pay for this request (credits or spend limit): {detail}",
        CREDIT_WORDS,
    ),
    Rule(frozenset({406}), RequestRejected, "Segmind refused a parameter value before running the model: {detail}"),
    Rule(frozenset({400, 413, 422}), RequestRejected, "Segmind rejected the request as invalid: {detail}"),
    Rule(
        frozenset({404}),
        ProviderUnavailable,
        "Segmind has no ideogram-character endpoint here (404: {detail}); check the base URL",
    ),
    Rule(
        frozenset({405}),
        ProviderUnavailable,
        "Segmind answered 405 Method Not Allowed ({detail}); the base URL does not seem to point at its API",
    ),
    Rule(frozenset({410}), ProviderUnavailable, "Segmind has retired ideogram-character (410): {detail}"),
    Rule(
        frozenset({429}),
        RateLimited,
        "Segmind's rate limit was reached (5 requests a minute on the free plan, 50 on Pro): {detail}",
    ),
    Rule(
        frozenset({500}),
        ProviderUnavailable,
        "Segmind failed with HTTP 500 ({detail}); on Segmind this is often a parameter value the model "
        "refused, so check the request before assuming an outage",
    ),
    Rule(_5XX, ProviderUnavailable, "Segmind is unavailable (HTTP {status}): {detail}"),
)


def vendor_detail(response: httpx.Response) -> tuple[str, Any]:
    """``(a short message from the vendor, the body to keep on the error)``, whatever the body is.

    JSON ``{"error": ...}`` (and the OAuth-style ``{"error", "error_description"}``), plain text, an
    HTML page (its title), or nothing.
    """
    text = response.text if response.content else ""
    content_type = response.headers.get("content-type", "").lower()
    stripped = text.lstrip()
    if "json" in content_type or stripped.startswith(("{", "[")):
        try:
            body = response.json()
        except ValueError:
            body = None
        if body is not None:
            return _json_detail(body), body
    if "html" in content_type or stripped[:15].lower().startswith(("<!doctype", "<html")):
        return _html_detail(text), text[:_MAX_KEPT_BODY]
    snippet = " ".join(text.split())[:300]
    return (snippet or "no message"), (text[:_MAX_KEPT_BODY] or None)


def _json_detail(body: Any) -> str:
    if isinstance(body, dict):
        parts = [
            str(body[key]).strip()
            for key in ("error", "error_description", "message", "detail")
            if isinstance(body.get(key), (str, int, float)) and str(body[key]).strip()
        ]
        if parts:
            return " — ".join(dict.fromkeys(parts))[:300]
    return " ".join(str(body).split())[:300] or "no message"


def _html_detail(text: str) -> str:
    match = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    if match and match.group(1).strip():
        return f"an HTML page titled {html.unescape(' '.join(match.group(1).split()))!r}"
    return "an HTML page"


def error_from_response(response: httpx.Response, *, admitted: bool = False) -> ProviderError:
    """The ideochar error for a non-200 answer from Segmind (see ``RULES``)."""
    status = response.status_code
    detail, body = vendor_detail(response)
    request_id = response.headers.get(HEADER_REQUEST_ID) or _body_request_id(body)
    rule = next((r for r in RULES if r.matches(status, detail)), None)
    if rule is None:
        error_type: type[ProviderError]
        if 400 <= status < 500:
            error_type, message = RequestRejected, "Segmind refused the request (HTTP {status}): {detail}"
        else:
            error_type = UnexpectedResponse
            message = "Segmind answered HTTP {status}, which ideochar does not expect: {detail}"
    else:
        error_type, message = rule.error, rule.message
    return _build(
        error_type,
        message.format(detail=detail, status=status),
        status=status,
        request_id=request_id,
        body=body,
        retry_after=retry_after_seconds(response.headers) if error_type is RateLimited else None,
        billed="no" if error_type is not UnexpectedResponse else "unknown",
        admitted=admitted,
    )


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
    lowered = text.lower()
    safety = any(word in lowered for word in SAFETY_WORDS)
    error_type: type[ProviderError] = ContentFiltered if safety else GenerationFailed
    message = (
        f"Segmind's safety check refused job {request_id}: {text}"
        if safety
        else f"Segmind job {request_id} failed: {text}"
    )
    return _build(error_type, message, status=status, request_id=request_id, body=body, billed="no", admitted=True)


def _body_request_id(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("request_id"), str):
        return str(body["request_id"])
    return None


def _build(
    error_type: type[ProviderError],
    message: str,
    *,
    status: int | None,
    request_id: str | None,
    body: Any,
    billed: Any,
    admitted: bool,
    retry_after: float | None = None,
) -> ProviderError:
    return error_type(
        message,
        provider=PROVIDER,
        status=status,
        vendor_request_id=request_id,
        billed=billed,
        body=body,
        retry_after=retry_after,
        admitted=admitted,
    )

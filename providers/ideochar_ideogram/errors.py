"""Ideogram's refusals -> ideochar errors: one flat table, read top to bottom, first match wins.

Sources (reference/vendors.md §2.5): the OpenAPI document lists 400 "Invalid input", 401 (remix: 403)
"Not authorized", 422 ``{"error": "Prompt provided failed safety check..."}`` and 429; the errors page
adds 402 with ``reject_reason`` ``insufficient_funds`` or ``daily_limit`` and says 422 safety refusals
are **not billed**; the rate-limits page gives 429 ``reject_reason: "inflight_limit"`` (10 images in
progress per organisation, rejected requests not billed). Bodies are read without assuming JSON: a
proxy or a load balancer in front of the API answers with HTML or plain text.

What is billed: a refused request is not ("billed": "no"). A request that ran is, even when the
safety check withholds its images; that case is a 200 and is handled by the provider, not here.

Choices made here:

* 404 means the route is not there (a wrong base URL, a retired route): ProviderUnavailable, so
  another vendor may serve.
* 504 and 524 (a gateway gave up waiting for the origin) come from a *synchronous* generation that
  may still be running behind the gateway and be billed: OutcomeUnknown, never a silent retry.
  INFERRED: Ideogram documents no 5xx.
* Any other 5xx is ProviderUnavailable; any other 4xx RequestRejected.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from ideochar.errors import (
    AuthenticationFailed,
    Billed,
    ContentFiltered,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UnexpectedResponse,
)
from ideochar.retry import parse_retry_after
from ideochar_ideogram.wire import ErrorBody

__all__ = ["PROVIDER", "RULES", "Rule", "error_from_response", "vendor_detail"]

PROVIDER = "ideogram"
_MAX_KEPT_BODY = 1000
_ANY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rule:
    """One row: these statuses (and, if given, one of these ``reject_reason`` values) -> this error."""

    statuses: frozenset[int]
    error: type[ProviderError]
    message: str
    """A sentence; ``{detail}`` is the vendor's message, ``{status}`` the HTTP status."""
    reasons: frozenset[str] = _ANY
    billed: Billed = "no"

    def matches(self, status: int, reason: str | None) -> bool:
        return status in self.statuses and (not self.reasons or reason in self.reasons)


def _s(*statuses: int) -> frozenset[int]:
    return frozenset(statuses)


_5XX = frozenset(range(500, 600))

RULES: tuple[Rule, ...] = (
    Rule(_s(400, 413), RequestRejected, "Ideogram rejected the request as invalid (HTTP {status}): {detail}"),
    Rule(
        _s(401),
        AuthenticationFailed,
        "Ideogram refused the API key (sent as Api-Key; check IDEOGRAM_API_KEY): {detail}",
    ),
    Rule(_s(403), AuthenticationFailed, "this Ideogram key may not use this route or model (HTTP 403): {detail}"),
    Rule(
        _s(402),
        InsufficientCredits,
        "the Ideogram account is out of funds; top it up before retrying: {detail}",
        frozenset({"insufficient_funds"}),
    ),
    Rule(
        _s(402),
        InsufficientCredits,
        "the Ideogram account reached its daily spending limit; retrying today will not help: {detail}",
        frozenset({"daily_limit"}),
    ),
    Rule(_s(402), InsufficientCredits, "Ideogram refused to bill the account (HTTP 402): {detail}"),
    Rule(
        _s(422),
        ContentFiltered,
        "Ideogram's safety check refused the prompt or an input image (not billed): {detail}",
    ),
    Rule(
        _s(429),
        RateLimited,
        "Ideogram's limit of images in progress per organisation (10) is reached; "
        "wait for running jobs to finish: {detail}",
        frozenset({"inflight_limit"}),
    ),
    Rule(_s(429), RateLimited, "Ideogram asked to slow down (HTTP 429): {detail}"),
    Rule(_s(404), ProviderUnavailable, "Ideogram has no such route here (HTTP 404: {detail}); check the base URL"),
    Rule(
        _s(504, 524),
        OutcomeUnknown,
        "a gateway in front of Ideogram gave up waiting (HTTP {status}: {detail}); the generation may "
        "still have run and been billed",
        billed="unknown",
    ),
    Rule(_5XX, ProviderUnavailable, "Ideogram is unavailable (HTTP {status}): {detail}"),
)


def vendor_detail(response: httpx.Response) -> tuple[str, Any, str | None]:
    """``(a short message, the body to keep on the error, the reject_reason)``, whatever the body is:
    JSON ``{"error": ..., "reject_reason": ...}``, plain text, an HTML page (its title), or nothing."""
    text = response.text if response.content else ""
    content_type = response.headers.get("content-type", "").lower()
    stripped = text.lstrip()
    if "json" in content_type or stripped.startswith(("{", "[")):
        try:
            body = response.json()
        except ValueError:
            body = None
        if body is not None:
            return _json_detail(body), body, _reject_reason(body)
    if "html" in content_type or stripped[:15].lower().startswith(("<!doctype", "<html")):
        match = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        title = html.unescape(" ".join(match.group(1).split())) if match else ""
        return (f"an HTML page titled {title!r}" if title else "an HTML page"), text[:_MAX_KEPT_BODY], None
    snippet = " ".join(text.split())[:300]
    return (snippet or "no message"), (text[:_MAX_KEPT_BODY] or None), None


def _reject_reason(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    try:
        return ErrorBody.model_validate(body).reject_reason
    except ValidationError:
        return None


def _json_detail(body: Any) -> str:
    if isinstance(body, dict):
        parts = [
            str(body[key]).strip()
            for key in ("error", "message", "detail", "reject_reason")
            if isinstance(body.get(key), (str, int, float)) and str(body[key]).strip()
        ]
        if parts:
            return " — ".join(dict.fromkeys(parts))[:300]
    return " ".join(str(body).split())[:300] or "no message"


def error_from_response(response: httpx.Response) -> ProviderError:
    """The ideochar error for a non-200 answer from an Ideogram v3 route (see ``RULES``)."""
    status = response.status_code
    detail, body, reason = vendor_detail(response)
    rule = next((r for r in RULES if r.matches(status, reason)), None)
    error_type: type[ProviderError]
    billed: Billed
    if rule is not None:
        error_type, message, billed = rule.error, rule.message, rule.billed
    elif 400 <= status < 500:
        error_type, message, billed = RequestRejected, "Ideogram refused the request (HTTP {status}): {detail}", "no"
    else:
        error_type = UnexpectedResponse
        message, billed = "Ideogram answered HTTP {status}, which ideochar does not expect: {detail}", "unknown"
    return error_type(
        message.format(detail=detail, status=status),
        provider=PROVIDER,
        status=status,
        billed=billed,
        body=body,
        retry_after=parse_retry_after(response.headers) if error_type is RateLimited else None,
    )

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

import dataclasses
from typing import Any

import httpx
from pydantic import ValidationError

from ideochar.errors import (
    AuthenticationFailed,
    ContentFiltered,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from ideochar.toolkit import (
    CLIENT_ERRORS,
    SERVER_ERRORS,
    ErrorRule,
    Failure,
    error_for,
    has_code,
    read_body,
    read_failure,
    statuses,
)
from ideochar_ideogram.wire import ErrorBody

__all__ = ["PROVIDER", "RULES", "error_from_response", "vendor_detail"]

PROVIDER = "ideogram"
#: Where Ideogram's words are in a JSON error body.
DETAIL_KEYS: tuple[str, ...] = ("error", "message", "detail", "reject_reason")

RULES: tuple[ErrorRule, ...] = (
    ErrorRule(
        "invalid",
        RequestRejected,
        "Ideogram rejected the request as invalid (HTTP {status}): {detail}",
        statuses(400, 413),
    ),
    ErrorRule(
        "auth",
        AuthenticationFailed,
        "Ideogram refused the API key (sent as Api-Key; check IDEOGRAM_API_KEY): {detail}",
        statuses(401),
    ),
    ErrorRule(
        "forbidden",
        AuthenticationFailed,
        "this Ideogram key may not use this route or model (HTTP 403): {detail}",
        statuses(403),
    ),
    ErrorRule(
        "out of funds",
        InsufficientCredits,
        "the Ideogram account is out of funds; top it up before retrying: {detail}",
        statuses(402),
        has_code("insufficient_funds", ["insufficient_funds"]),
    ),
    ErrorRule(
        "daily limit",
        InsufficientCredits,
        "the Ideogram account reached its daily spending limit; retrying today will not help: {detail}",
        statuses(402),
        has_code("daily_limit", ["daily_limit"]),
    ),
    ErrorRule(
        "payment", InsufficientCredits, "Ideogram refused to bill the account (HTTP 402): {detail}", statuses(402)
    ),
    ErrorRule(
        "safety",
        ContentFiltered,
        "Ideogram's safety check refused the prompt or an input image (not billed): {detail}",
        statuses(422),
    ),
    ErrorRule(
        "in flight",
        RateLimited,
        "Ideogram's limit of images in progress per organisation (10) is reached; "
        "wait for running jobs to finish: {detail}",
        statuses(429),
        has_code("inflight_limit", ["inflight_limit"]),
    ),
    ErrorRule("rate limit", RateLimited, "Ideogram asked to slow down (HTTP 429): {detail}", statuses(429)),
    ErrorRule(
        "no route",
        ProviderUnavailable,
        "Ideogram has no such route here (HTTP 404: {detail}); check the base URL",
        statuses(404),
    ),
    ErrorRule(
        "gateway timeout",
        OutcomeUnknown,
        "a gateway in front of Ideogram gave up waiting (HTTP {status}: {detail}); the generation may "
        "still have run and been billed",
        statuses(504, 524),
        billed="unknown",
    ),
    ErrorRule("server", ProviderUnavailable, "Ideogram is unavailable (HTTP {status}): {detail}", SERVER_ERRORS),
    ErrorRule("other 4xx", RequestRejected, "Ideogram refused the request (HTTP {status}): {detail}", CLIENT_ERRORS),
)


def _failure(response: httpx.Response) -> Failure:
    """The answer read once, its ``reject_reason`` as the code the table looks at."""
    failure = read_failure(response, detail_keys=DETAIL_KEYS)
    reason = _reject_reason(failure.body)
    return dataclasses.replace(failure, codes=frozenset({reason}) if reason else frozenset())


def vendor_detail(response: httpx.Response) -> tuple[str, Any, str | None]:
    """``(a short message, the body to keep on the error, the reject_reason)``, whatever the body is:
    JSON ``{"error": ..., "reject_reason": ...}``, plain text, an HTML page (its title), or nothing."""
    body = read_body(response)
    return body.summary(DETAIL_KEYS), body.kept(), _reject_reason(body.data)


def _reject_reason(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    try:
        return ErrorBody.model_validate(body).reject_reason
    except ValidationError:
        return None


def error_from_response(response: httpx.Response) -> ProviderError:
    """The ideochar error for a non-200 answer from an Ideogram v3 route (see ``RULES``)."""
    return error_for(_failure(response), RULES, provider=PROVIDER, title="Ideogram")

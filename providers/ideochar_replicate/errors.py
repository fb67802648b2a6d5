"""Replicate answers -> ideochar errors: one flat table, read in one place.

HTTP errors come as RFC 7807 problem bodies (``{"title", "detail", "status"}``) from the API, or as
anything at all from a gateway in front of it; the status code decides the class, the body only
adds words. A prediction that *ran* and did not succeed is not an HTTP error: its ``status`` and
``error`` decide (:func:`error_from_prediction`).

What each error says about billing matters as much as its class:

* Any non-2xx answer to the create request means no prediction was returned: ``billed="no"``,
  except 502/504 (below).
* ``aborted``: the ``Cancel-After`` deadline passed before the prediction started. Replicate does not
  charge public models for it [V: changelog 2025-10-16], so another vendor may be tried.
* ``failed`` and ``canceled``: whether an official, per-image-priced model bills them is not
  documented; ``billed="unknown"`` [I].
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from ideochar.errors import (
    AuthenticationFailed,
    Billed,
    ContentFiltered,
    GenerationFailed,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from ideochar.toolkit import (
    SERVER_ERRORS,
    ErrorRule,
    Failure,
    VendorBody,
    error_for,
    on_phase,
    read_body,
    read_failure,
    statuses,
)
from ideochar_replicate.wire import Prediction, Problem

__all__ = [
    "AMBIGUOUS_CREATE_STATUSES",
    "BILLED_BY_OUTCOME",
    "RULES",
    "SAFETY_PATTERN",
    "Phase",
    "error_from_prediction",
    "error_from_response",
    "problem_of",
]

Phase = Literal["create", "upload", "poll", "cancel"]
"""Which request answered: the same status means different things on different routes."""

PROVIDER = "replicate"

#: On the create request, a gateway that gave up waiting (the request is held up to 60 s with
#: ``Prefer: wait``) may answer after the API created the prediction: the job may exist and bill,
#: and its id is lost. Reported as OutcomeUnknown, never as a safe-to-repeat failure [I].
AMBIGUOUS_CREATE_STATUSES: frozenset[int] = frozenset({502, 504})

#: Billing per terminal status that is not ``succeeded`` (see the module docstring).
BILLED_BY_OUTCOME: Mapping[str, Billed] = {
    "aborted": "no",
    "canceled": "unknown",
    "failed": "unknown",
    "content_filtered": "unknown",
}

#: A failed prediction whose error reads like this was refused by a safety check [I]: Replicate's
#: ``error`` is free text. Seen in the wild: "NSFW content detected", "flagged as sensitive (E005)",
#: Ideogram's "failed the safety check", "content policy" refusals.
SAFETY_PATTERN = re.compile(
    r"nsfw|not safe for work|flagged as sensitive|\bE005\b|safety|content[ _-]?polic|moderation|unsafe",
    re.IGNORECASE,
)

# Replicate's 429 detail says when the limit resets: "Your rate limit resets in ~30s." [V: rate-limits page]
_RESETS_IN = re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)

ON_CREATE = on_phase("create")
#: Answers about a prediction that exists (it was created, so it may bill).
ABOUT_A_PREDICTION = on_phase("poll", "cancel")
_ANY_STATUS = frozenset(range(100, 600))
_REFUSED_KEY_MESSAGE = "Replicate refused the API token (check REPLICATE_API_TOKEN) (HTTP {status}): {detail}"
_NO_CREDIT_MESSAGE = "the Replicate account has no credit for this (HTTP {status}): {detail}"
_REJECTED_MESSAGE = "Replicate rejected the request (HTTP {status}): {detail}"

#: Read top to bottom, first match wins. The status decides the class; the route (``phase``) decides
#: what a refusal says about a prediction that may exist.
RULES: tuple[ErrorRule, ...] = (
    ErrorRule(
        "create answer lost",
        OutcomeUnknown,
        "Replicate's gateway answered {status} to the prediction request; the prediction may have been "
        "created and may bill, but its id was not returned ({detail})",
        AMBIGUOUS_CREATE_STATUSES,
        ON_CREATE,
        billed="unknown",
    ),
    ErrorRule("server", ProviderUnavailable, "Replicate is unavailable (HTTP {status}): {detail}", SERVER_ERRORS),
    ErrorRule("rate limit", RateLimited, "Replicate is rate limiting requests: {detail}", statuses(429)),
    ErrorRule(
        "no model route",
        ProviderUnavailable,
        "Replicate has no route for the ideogram-character model here (HTTP 404: {detail}); "
        "the model may have moved, or the base URL is wrong",
        statuses(404),
        ON_CREATE,
    ),
    ErrorRule(
        "unknown prediction",
        RequestRejected,
        "Replicate knows no prediction {prediction} for this key (HTTP 404: {detail}); "
        "was it created with another account's key?",
        statuses(404),
        ABOUT_A_PREDICTION,
        billed="unknown",
    ),
    ErrorRule(
        "token, prediction exists",
        AuthenticationFailed,
        _REFUSED_KEY_MESSAGE,
        statuses(401, 403),
        ABOUT_A_PREDICTION,
        "unknown",
    ),
    ErrorRule("token", AuthenticationFailed, _REFUSED_KEY_MESSAGE, statuses(401, 403)),
    ErrorRule(
        "credit, prediction exists",
        InsufficientCredits,
        _NO_CREDIT_MESSAGE,
        statuses(402),
        ABOUT_A_PREDICTION,
        "unknown",
    ),
    ErrorRule("credit", InsufficientCredits, _NO_CREDIT_MESSAGE, statuses(402)),
    ErrorRule("not found", ProviderUnavailable, "Replicate answered an error (HTTP {status}): {detail}", statuses(404)),
    ErrorRule(
        "refused, prediction exists", RequestRejected, _REJECTED_MESSAGE, _ANY_STATUS, ABOUT_A_PREDICTION, "unknown"
    ),
    ErrorRule("refused", RequestRejected, _REJECTED_MESSAGE, _ANY_STATUS),
)


def problem_of(response: httpx.Response) -> Problem | None:
    """The RFC 7807 body, or None when the body is not one (HTML from a gateway, empty, garbage)."""
    return _problem(read_body(response))


def _problem(body: VendorBody) -> Problem | None:
    if not isinstance(body.data, dict):
        return None
    try:
        return Problem.model_validate(body.data)
    except ValidationError:
        return None


def _describe(response: httpx.Response, problem: Problem | None) -> str:
    """A short text for the message: the problem's title and detail, else what the body was."""
    if problem is not None:
        text = problem.detail or problem.title or ""
        if problem.title and problem.detail and not problem.detail.startswith(problem.title):
            text = f"{problem.title}: {problem.detail}"
        if problem.invalid_fields:
            text += " (fields: " + ", ".join(str(f.get("field", "?")) for f in problem.invalid_fields) + ")"
        if text:
            return text
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    return f"HTTP {response.status_code} with a {kind} body"


def _failure(response: httpx.Response, phase: Phase, vendor_request_id: str | None) -> Failure:
    """The answer read once: a problem body gives the words, the 429 detail a Retry-After if the header does not."""
    body = read_body(response)
    failure = read_failure(response, phase=phase, body=body)
    problem = _problem(body)
    retry_after = failure.retry_after
    if retry_after is None and problem is not None and problem.detail:
        match = _RESETS_IN.search(problem.detail)
        retry_after = float(match.group(1)) if match else None
    return dataclasses.replace(
        failure,
        detail=_describe(response, problem),
        body=problem.model_dump(exclude_none=True) if problem is not None else body.excerpt(),
        request_id=vendor_request_id,
        retry_after=retry_after,
    )


def error_from_response(
    response: httpx.Response, *, phase: Phase, vendor_request_id: str | None = None
) -> ProviderError:
    """The error for a non-2xx answer (see ``RULES``). Never raises: a body it cannot read still gives a class."""
    failure = _failure(response, phase, vendor_request_id)
    return error_for(failure, RULES, provider=PROVIDER, title="Replicate", prediction=vendor_request_id or "")


def error_from_prediction(prediction: Prediction) -> ProviderError:
    """The error for a prediction that ended without success (``failed``/``canceled``/``aborted``)."""
    common: dict[str, Any] = {
        "provider": PROVIDER,
        "vendor_request_id": prediction.id,
        "body": {"status": prediction.status, "error": prediction.error_text or None},
        "admitted": True,
    }
    reason = prediction.error_text.strip() or "no reason given"
    if prediction.status == "aborted":
        return GenerationFailed(
            f"Replicate aborted prediction {prediction.id}: its Cancel-After deadline passed before it started "
            "(not charged)",
            billed=BILLED_BY_OUTCOME["aborted"],
            **common,
        )
    if prediction.status == "canceled":
        return GenerationFailed(
            f"prediction {prediction.id} was canceled before it finished (a Cancel-After deadline or a cancel "
            "request); Replicate may charge for the time it ran",
            billed=BILLED_BY_OUTCOME["canceled"],
            **common,
        )
    if SAFETY_PATTERN.search(reason):
        return ContentFiltered(
            f"Replicate's safety check refused prediction {prediction.id}: {reason}",
            billed=BILLED_BY_OUTCOME["content_filtered"],
            **common,
        )
    return GenerationFailed(
        f"prediction {prediction.id} failed on Replicate: {reason}",
        billed=BILLED_BY_OUTCOME["failed"],
        **common,
    )

"""The answer -> error table, on its own: every documented refusal has a row, and bodies of any shape read."""

from __future__ import annotations

import pickle
from typing import Any

import httpx
import pytest
from ideogram_contract import openapi
from ideogram_support import KEY, context

from ideochar.errors import (
    AuthenticationFailed,
    ContentFiltered,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UnexpectedResponse,
)
from ideochar_ideogram.errors import RULES, error_from_response, vendor_detail

ROUTES = ("/v1/ideogram-v3/generate", "/v1/ideogram-v3/edit", "/v1/ideogram-v3/inpaint", "/v1/ideogram-v3/remix")


def _response(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(
        status, request=httpx.Request("POST", "https://api.ideogram.ai/v1/ideogram-v3/generate"), **kwargs
    )


def test_every_refusal_the_spec_documents_has_a_specific_row() -> None:
    documented = {
        int(status) for route in ROUTES for status in openapi()["paths"][route]["post"]["responses"] if status != "200"
    }
    assert documented == {400, 401, 403, 422, 429}
    for status in documented | {402}:  # 402 is on the errors page, not in the spec
        assert any(status in rule.statuses for rule in RULES), status


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (402, "insufficient_funds", InsufficientCredits),
        (402, "daily_limit", InsufficientCredits),
        (402, None, InsufficientCredits),
        (429, "inflight_limit", RateLimited),
        (429, None, RateLimited),
        (418, None, RequestRejected),
        (302, None, UnexpectedResponse),
        (502, None, ProviderUnavailable),
        (524, None, OutcomeUnknown),
    ],
)
def test_status_and_reject_reason_pick_the_error(status: int, reason: str | None, expected: type) -> None:
    body = {"error": "refused"} | ({"reject_reason": reason} if reason else {})
    assert type(error_from_response(_response(status, json=body))) is expected


def test_reject_reason_chooses_the_message() -> None:
    funds = error_from_response(_response(402, json={"error": "x", "reject_reason": "insufficient_funds"}))
    daily = error_from_response(_response(402, json={"error": "x", "reject_reason": "daily_limit"}))
    assert "top it up" in funds.message and "daily spending limit" in daily.message


def test_a_safety_refusal_is_not_billed_and_does_not_fail_over() -> None:
    error = error_from_response(_response(422, json={"error": "Prompt or Initial Image failed the safety checks."}))
    assert isinstance(error, ContentFiltered) and error.billed == "no" and not error.fail_over
    assert "failed the safety checks" in error.message


def test_auth_errors_fail_over() -> None:
    error = error_from_response(_response(401, json={"error": "Not authorized to generate an image."}))
    assert isinstance(error, AuthenticationFailed) and error.fail_over


@pytest.mark.parametrize(
    ("kwargs", "detail"),
    [
        ({"json": {"error": "Invalid input provided."}}, "Invalid input provided."),
        ({"json": {"detail": [{"loc": ["prompt"], "msg": "field required"}]}}, "field required"),
        ({"json": ["unexpected", "list"]}, "unexpected"),
        ({"text": "upstream connect error", "headers": {"content-type": "text/plain"}}, "upstream connect error"),
        (
            {"text": "<!DOCTYPE html><html><title>Bad &amp; Gateway</title></html>"},
            "an HTML page titled 'Bad & Gateway'",
        ),
        ({"text": "<html><body>no title</body></html>", "headers": {"content-type": "text/html"}}, "an HTML page"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "{not json"),
        ({}, "no message"),
    ],
)
def test_bodies_of_any_shape_give_a_readable_detail(kwargs: dict[str, Any], detail: str) -> None:
    message, _, _ = vendor_detail(_response(400, **kwargs))
    assert detail in message


def test_a_key_echoed_by_the_vendor_never_surfaces() -> None:
    context(key=KEY)  # the key is known to the redactor once a Secret holds it, as in every real call
    error = error_from_response(_response(401, json={"error": f"bad key {KEY}"}))
    for text in (str(error), repr(error), repr(error.body), repr(pickle.loads(pickle.dumps(error)))):
        assert KEY not in text


def test_errors_pickle_with_their_attributes() -> None:
    error = error_from_response(
        _response(429, json={"error": "x", "reject_reason": "inflight_limit"}, headers={"retry-after": "3"})
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RateLimited
    assert (copy.status, copy.retry_after, copy.provider, copy.billed) == (429, 3.0, "ideogram", "no")

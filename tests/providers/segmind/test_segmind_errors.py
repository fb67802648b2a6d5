"""Segmind's refusals, from realistic bodies, become the right ideochar errors (through both drivers)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

import httpx
import pytest
from segmind_support import Recorder, context, exchange_flow, run_flow

from ideochar import CharacterRequest
from ideochar.errors import (
    AuthenticationFailed,
    ContentFiltered,
    InsufficientCredits,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UnexpectedResponse,
)
from ideochar_segmind.errors import RULES, error_from_response, retry_after_seconds, vendor_detail
from ideochar_segmind.provider import SegmindProvider

NGINX_405 = (
    "<html>\r\n<head><title>405 Not Allowed</title></head>\r\n<body>\r\n<center><h1>405 Not Allowed</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
BAD_GATEWAY = "<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>"


def json_answer(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def text_answer(status: int, text: str, content_type: str) -> httpx.Response:
    return httpx.Response(status, text=text, headers={"content-type": content_type})


CASES = [
    pytest.param(
        partial(json_answer, 401, {"error": "Missing Authorization or x-api-key in header"}),
        AuthenticationFailed,
        "x-api-key",
        id="401-missing-key",
    ),
    pytest.param(
        partial(
            json_answer, 401, {"error": "Unauthorized. API key is invalid or may have expired. Generate a new key."}
        ),
        AuthenticationFailed,
        "invalid",
        id="401-invalid-key",
    ),
    pytest.param(
        partial(
            json_answer,
            401,
            {"error": "invalid_token", "error_description": "Token is invalid or expired.", "status_code": 401},
        ),
        AuthenticationFailed,
        "Token is invalid",
        id="401-oauth-envelope",
    ),
    pytest.param(
        partial(json_answer, 403, {"error": "You do not have access to this model. Contact your team admin."}),
        AuthenticationFailed,
        "not allowed",
        id="403-model-not-allowed",
    ),
    pytest.param(
        partial(
            json_answer, 406, {"error": "Insufficient credits. Your balance is $0.04 and this request requires $0.25."}
        ),
        InsufficientCredits,
        "$0.04",
        id="406-credits",
    ),
    pytest.param(
        partial(json_answer, 406, {"error": "Team spend limit reached: $50.00 for the current month"}),
        InsufficientCredits,
        "spend",
        id="406-team-spend-limit",
    ),
    pytest.param(
        partial(text_answer, 406, "Invalid content type", "text/plain"),
        RequestRejected,
        "bug in ideochar",
        id="406-content-type-plain-text",
    ),
    pytest.param(
        partial(json_answer, 406, {"error": "Invalid content type"}),
        RequestRejected,
        "Content-Type",
        id="406-content-type-json",
    ),
    pytest.param(
        partial(json_answer, 406, {"error": "Invalid value for rendering_speed"}),
        RequestRejected,
        "parameter value",
        id="406-parameter",
    ),
    pytest.param(
        partial(json_answer, 406, {"error": "Not enough credits"}),
        InsufficientCredits,
        "Not enough credits",
        id="406-documented-wording",
    ),
    pytest.param(
        partial(text_answer, 406, "", "text/plain"),
        InsufficientCredits,
        "406",
        id="406-empty-body",
    ),
    pytest.param(
        partial(text_answer, 406, "<html><title>406 Not Acceptable</title></html>", "text/html"),
        InsufficientCredits,
        "Not Acceptable",
        id="406-html-page",
    ),
    pytest.param(
        partial(json_answer, 400, {"error": "Prompt is Mandatory and must be string"}),
        RequestRejected,
        "Prompt is Mandatory",
        id="400-bad-body",
    ),
    pytest.param(
        partial(json_answer, 400, {"error": "NSFW content detected in the prompt"}),
        ContentFiltered,
        "NSFW",
        id="400-safety",
    ),
    pytest.param(
        partial(json_answer, 404, {"error": "Model ideogram-character not found"}),
        ProviderUnavailable,
        "base URL",
        id="404-no-endpoint",
    ),
    pytest.param(
        partial(text_answer, 405, NGINX_405, "text/html"),
        ProviderUnavailable,
        "'405 Not Allowed'",
        id="405-html",
    ),
    pytest.param(
        partial(json_answer, 410, {"error": "This model has been deprecated"}),
        ProviderUnavailable,
        "retired",
        id="410-retired",
    ),
    pytest.param(
        partial(json_answer, 429, {"error": "Rate limit exceeded"}),
        RateLimited,
        "5 requests a minute",
        id="429",
    ),
    pytest.param(
        partial(json_answer, 500, {"error": "Server had some issue"}),
        ProviderUnavailable,
        "parameter value",
        id="500",
    ),
    pytest.param(
        partial(text_answer, 502, BAD_GATEWAY, "text/html"),
        ProviderUnavailable,
        "502",
        id="502-html",
    ),
    pytest.param(
        partial(httpx.Response, 503),
        ProviderUnavailable,
        "503",
        id="503-empty",
    ),
]


@pytest.fixture(params=["drive", "adrive"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize(("answer", "error_type", "words"), CASES)
def test_each_refusal_becomes_its_typed_error(
    driver: str, answer: Callable[[], httpx.Response], error_type: type[ProviderError], words: str
) -> None:
    server = Recorder(lambda r: answer())
    provider = SegmindProvider()
    ctx = context()
    request = CharacterRequest(prompt="a knight", reference="https://example.com/hero.png")
    with pytest.raises(ProviderError) as caught:
        run_flow(driver, exchange_flow(provider, request, ctx), server)
    error = caught.value
    assert type(error) is error_type, error.message
    assert words in error.message
    assert (error.provider, error.status, error.billed, error.admitted) == (
        "segmind",
        answer().status_code,
        "no",
        False,
    )
    assert len(server.seen) == 1, "a refused POST is never repeated by the adapter"


def test_rate_limit_reset_header_becomes_retry_after() -> None:
    reset = (datetime.now(timezone.utc) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = json_answer(429, {"error": "Rate limit exceeded"}, **{"x-rate-limit-reset-at-utc": reset})
    error = error_from_response(response)
    assert isinstance(error, RateLimited)
    assert error.retry_after is not None and 25 <= error.retry_after <= 31


def test_the_html_405_is_read_without_assuming_json() -> None:
    detail, body = vendor_detail(text_answer(405, NGINX_405, "text/html"))
    assert detail == "an HTML page titled '405 Not Allowed'"
    assert body.startswith("<html>")


def test_a_406_that_does_not_say_otherwise_is_out_of_credit_so_the_router_fails_over() -> None:
    error = error_from_response(json_answer(406, {"error": "Something went wrong"}))
    assert type(error) is InsufficientCredits and error.fail_over and error.billed == "no"


def test_a_406_about_content_type_is_never_read_as_credits() -> None:
    rejected = error_from_response(json_answer(406, {"error": "Invalid content type; credits were not charged"}))
    assert type(rejected) is RequestRejected


def test_an_unlisted_4xx_is_rejected_and_anything_else_unexpected() -> None:
    assert type(error_from_response(json_answer(418, {"error": "teapot"}))) is RequestRejected
    unexpected = error_from_response(httpx.Response(304))
    assert type(unexpected) is UnexpectedResponse and unexpected.billed == "unknown"


def test_every_rule_names_a_status_and_a_sentence() -> None:
    for rule in RULES:
        assert rule.statuses and all(400 <= s < 600 for s in rule.statuses)
        assert rule.message[0].isalpha()
        assert "{detail}" in rule.message or "{status}" in rule.message


@pytest.mark.parametrize("stamp", ["1700000030", "1700000030000", "2023-11-14T22:13:50Z"])
def test_a_reset_time_given_as_a_unix_time_or_a_date_is_a_wait_in_seconds(stamp: str) -> None:
    headers = httpx.Headers({"x-rate-limit-reset-at-utc": stamp})
    assert retry_after_seconds(headers, now=1_700_000_000.0) == pytest.approx(30.0)

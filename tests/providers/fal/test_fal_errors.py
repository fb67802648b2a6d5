"""fal's error answers -> ideochar errors, from realistic bodies (reference/fal.md §2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

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
from ideochar_fal.errors import RULES, completed_error, error_from_response

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    "\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def answer(status: int, body: Any = None, *, text: str | None = None, **headers: str) -> httpx.Response:
    request = httpx.Request("POST", "https://queue.fal.run/fal-ai/ideogram/character")
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_422_detail_list_becomes_a_sentence_naming_each_field() -> None:
    body = {
        "detail": [
            {"loc": ["body", "reference_image_urls"], "msg": "field required", "type": "missing"},
            {
                "loc": ["body", "image_url"],
                "msg": "Image too large. Max 10 MB.",
                "type": "image_too_large",
                "ctx": {"max_size": 10485760},
            },
        ]
    }
    error = error_from_response(answer(422, body))
    assert isinstance(error, RequestRejected)
    assert str(error) == (
        "fal rejected the request (HTTP 422): reference_image_urls: field required [missing]; "
        "image_url: Image too large. Max 10 MB. [image_too_large]"
    )
    assert error.billed == "no" and error.status == 422 and error.body == body
    assert "[{" not in str(error)  # never the raw list


def test_422_with_a_content_policy_type_is_content_filtered_and_not_billed() -> None:
    body = {
        "detail": [
            {
                "loc": ["body", "prompt"],
                "msg": "The content could not be processed.",
                "type": "content_policy_violation",
            }
        ]
    }
    error = error_from_response(answer(422, body))
    assert isinstance(error, ContentFiltered)
    assert error.billed == "no" and not error.fail_over
    assert "prompt: The content could not be processed." in str(error)


def test_401_is_authentication_failed_with_fal_detail_and_a_hint() -> None:
    error = error_from_response(answer(401, {"detail": "No user found for Key ID and Secret"}))
    assert isinstance(error, AuthenticationFailed)
    assert "No user found for Key ID and Secret" in str(error) and "FAL_KEY" in str(error)


def test_403_exhausted_balance_is_insufficient_credits() -> None:
    body = {"detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."}
    error = error_from_response(answer(403, body))
    assert isinstance(error, InsufficientCredits) and error.fail_over


def test_plain_403_is_authentication_failed() -> None:
    assert isinstance(error_from_response(answer(403, {"detail": "Forbidden"})), AuthenticationFailed)


def test_429_is_rate_limited_with_retry_after() -> None:
    error = error_from_response(answer(429, {"detail": "Too many requests"}, **{"retry-after": "7"}))
    assert isinstance(error, RateLimited) and error.retry_after == 7.0 and error.sent


def test_ingress_502_without_a_fal_request_id_provably_did_not_start() -> None:
    error = error_from_response(answer(502, text=NGINX_502, **{"content-type": "text/html"}))
    assert isinstance(error, ProviderUnavailable)
    assert error.sent is False and error.billed == "no"
    assert "502 Bad Gateway" in str(error) and "<html>" not in str(error)


def test_503_from_fal_itself_may_have_started() -> None:
    body = {"detail": "Runner scheduling failure", "error_type": "runner_scheduling_failure"}
    error = error_from_response(answer(503, body, **{"x-fal-request-id": "req-9"}))
    assert isinstance(error, ProviderUnavailable)
    assert error.sent is True and error.vendor_request_id == "req-9" and error.billed == "no"
    assert "could not run the job" in str(error)


def test_504_user_timeout_says_the_request_timeout_expired() -> None:
    headers = {"x-fal-request-id": "req-1", "x-fal-request-timeout-type": "user", "x-fal-error-type": "request_timeout"}
    error = error_from_response(
        answer(504, {"detail": "Request timed out", "error_type": "request_timeout"}, **headers)
    )
    assert isinstance(error, ProviderUnavailable) and "X-Fal-Request-Timeout" in str(error)


def test_error_type_header_alone_classifies_a_flat_body() -> None:
    error = error_from_response(answer(500, {"detail": "boom"}, **{"x-fal-error-type": "content_policy_violation"}))
    assert isinstance(error, ContentFiltered)


def test_non_json_bodies_are_read_as_text() -> None:
    error = error_from_response(answer(400, text="Bad request: malformed JSON"))
    assert isinstance(error, RequestRejected) and "Bad request: malformed JSON" in str(error)
    empty = error_from_response(answer(418, text=""))
    assert isinstance(empty, RequestRejected) and "no message" in str(empty)


def test_an_unexpected_status_is_unexpected_response() -> None:
    assert isinstance(error_from_response(answer(302, text="moved")), UnexpectedResponse)


def test_admitted_errors_are_marked_sent_and_admitted() -> None:
    error = error_from_response(answer(502, text=NGINX_502), admitted=True)
    assert error.admitted and error.sent


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_every_rule_is_reachable_from_some_answer(rule: Any) -> None:
    """The table has no dead rows: each one is the first match for at least one realistic answer."""
    samples = [
        answer(422, {"detail": [{"loc": ["body", "prompt"], "msg": "x", "type": "content_policy_violation"}]}),
        answer(401, {"detail": "bad key"}),
        answer(403, {"detail": "Exhausted balance"}),
        answer(402, {"detail": "pay"}),
        answer(403, {"detail": "nope"}),
        answer(429, {"detail": "slow"}),
        answer(504, {"detail": "t"}, **{"x-fal-request-timeout-type": "user", "x-fal-request-id": "r"}),
        answer(503, text=NGINX_502),
        answer(422, {"detail": [{"loc": ["body", "x"], "msg": "y", "type": "z"}]}),
        answer(404, {"detail": "Not Found"}),
        answer(409, {"detail": "conflict"}),
        answer(503, {"detail": "d", "error_type": "runner_disconnected"}, **{"x-fal-request-id": "r"}),
        answer(500, {"detail": "internal"}, **{"x-fal-request-id": "r"}),
        answer(451, {"detail": "legal"}),
    ]
    from ideochar_fal.errors import read_failure

    assert any(next(r for r in RULES if r.matches(read_failure(s))) is rule for s in samples)


@pytest.mark.parametrize(
    ("error", "error_type", "expected"),
    [
        ("Internal error while generating", "runner_server_error", GenerationFailed),
        ("NSFW content detected in the output", None, ContentFiltered),
        ([{"loc": ["body", "prompt"], "msg": "flagged", "type": "content_policy_violation"}], None, ContentFiltered),
    ],
)
def test_completed_with_error_maps_by_type_and_words(error: Any, error_type: str | None, expected: type) -> None:
    mapped: ProviderError = completed_error(error, error_type, request_id="req-5")
    assert type(mapped) is expected
    assert mapped.vendor_request_id == "req-5" and mapped.admitted and mapped.billed == "unknown"
    assert "req-5" in str(mapped)

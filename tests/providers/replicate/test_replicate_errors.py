"""Replicate answers -> ideochar errors, without an exchange: the table and the prediction outcomes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from replicate_fakes import PREDICTION_ID, prediction

from ideochar.errors import (
    AuthenticationFailed,
    ContentFiltered,
    GenerationFailed,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from ideochar_replicate.errors import (
    Phase,
    error_from_prediction,
    error_from_response,
    problem_of,
)
from ideochar_replicate.wire import Prediction


def _response(status: int, body: Any = None, **headers: str) -> httpx.Response:
    request = httpx.Request("POST", "https://api.replicate.com/v1/models/ideogram-ai/ideogram-character/predictions")
    if isinstance(body, (dict, list)):
        return httpx.Response(status, json=body, headers=headers, request=request)
    return httpx.Response(status, text=body or "", headers=headers, request=request)


STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: RequestRejected,
    401: AuthenticationFailed,
    402: InsufficientCredits,
    403: AuthenticationFailed,
    404: ProviderUnavailable,
    413: RequestRejected,
    422: RequestRejected,
    429: RateLimited,
}


@pytest.mark.parametrize("status", sorted(STATUS_ERRORS))
def test_every_status_in_the_table_gives_its_class_on_upload(status: int) -> None:
    error = error_from_response(_response(status, {"detail": "x", "status": status}), phase="upload")
    assert isinstance(error, STATUS_ERRORS[status])
    assert error.provider == "replicate" and error.status == status


@pytest.mark.parametrize("status", [400, 409, 413, 418])
def test_unlisted_client_errors_are_rejections_not_failover(status: int) -> None:
    error = error_from_response(_response(status, {"title": "Bad", "detail": "nope", "status": status}), phase="create")
    assert type(error) is RequestRejected
    assert not error.fail_over


@pytest.mark.parametrize(
    ("phase", "status", "expected"),
    [
        ("create", 404, ProviderUnavailable),
        ("poll", 404, RequestRejected),
        ("cancel", 404, RequestRejected),
        ("create", 502, OutcomeUnknown),
        ("create", 504, OutcomeUnknown),
        ("poll", 502, ProviderUnavailable),
        ("upload", 504, ProviderUnavailable),
        ("create", 401, AuthenticationFailed),
        ("poll", 401, AuthenticationFailed),
        ("create", 402, InsufficientCredits),
        ("create", 429, RateLimited),
    ],
)
def test_the_same_status_means_different_things_per_route(
    phase: Phase, status: int, expected: type[ProviderError]
) -> None:
    error = error_from_response(_response(status, "<html>gateway</html>", **{"content-type": "text/html"}), phase=phase)
    assert type(error) is expected
    assert "text/html" in str(error)  # an HTML body still gives a readable sentence


def test_answers_after_admission_are_not_claimed_unbilled() -> None:
    assert error_from_response(_response(401, {"detail": "bad token"}), phase="poll").billed == "unknown"
    assert error_from_response(_response(401, {"detail": "bad token"}), phase="create").billed == "no"


def test_a_json_body_that_is_not_a_problem_is_kept_as_text() -> None:
    response = _response(500, ["not", "an", "object"])
    assert problem_of(response) is None
    error = error_from_response(response, phase="poll")
    assert type(error) is ProviderUnavailable
    assert error.body == '["not","an","object"]'


def test_rate_limit_reads_retry_after_header_before_the_detail_text() -> None:
    detail = {"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429}
    assert error_from_response(_response(429, detail, **{"retry-after": "4"}), phase="create").retry_after == 4.0
    assert error_from_response(_response(429, detail), phase="create").retry_after == 30.0
    assert error_from_response(_response(429, {"status": 429}), phase="create").retry_after is None


@pytest.mark.parametrize(
    "text",
    [
        "NSFW content detected. Try running it again, or try a different prompt.",
        "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
        "Prompt provided failed safety check",
        "Your request was rejected as a result of our safety system.",
        "Content policy violation",
    ],
)
def test_failures_reading_as_safety_refusals_are_content_filtered(text: str) -> None:
    error = error_from_prediction(Prediction.model_validate(prediction("failed", error=text)))
    assert type(error) is ContentFiltered
    assert error.vendor_request_id == PREDICTION_ID and error.admitted


@pytest.mark.parametrize("text", ["CUDA error: out of memory", "Prediction timed out", "", None])
def test_other_failures_are_generation_failed(text: str | None) -> None:
    error = error_from_prediction(Prediction.model_validate(prediction("failed", error=text)))
    assert type(error) is GenerationFailed
    assert ("no reason given" in str(error)) == (not text)


def test_prediction_accepts_a_string_or_a_one_element_list_of_outputs() -> None:
    url = "https://replicate.delivery/x/out.png"
    assert Prediction.model_validate(prediction("succeeded", output=url)).output_urls == [url]
    assert Prediction.model_validate(prediction("succeeded", output=[url])).output_urls == [url]
    assert Prediction.model_validate(prediction("succeeded", output=[])).output_urls == []

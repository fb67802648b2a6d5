"""The v2 exchange (submit, poll, fetch, download) and resuming a job, through ``drive`` and ``adrive``."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from segmind_support import JPEG, KEY, Recorder, exchange_flow, fast_v2, make_image, parse_form, run_flow

import ideochar.toolkit
import ideochar_segmind.provider as segmind_provider
from ideochar import CharacterRequest, InvalidRequest, OutcomeUnknown, UnexpectedResponse
from ideochar.errors import AuthenticationFailed, ContentFiltered, GenerationFailed
from ideochar.events import Event
from ideochar.router import provider_flow
from ideochar_segmind.provider import SegmindProvider

RID = "3f2b8c1e-9d4a-4e6f-8b7a-1c2d3e4f5a6b"
API = "https://api.segmind.com"
STATUS_URL = f"{API}/v2/requests/{RID}/status"
RESULT_URL = f"{API}/v2/requests/{RID}"
OUTPUT_URL = f"https://images.segmind.com/outputs/{RID}.jpeg"
SUBMITTED = {
    "request_id": RID,
    "status": "QUEUED",
    "poll_url": f"{API}/v1/requests/{RID}",
    "status_url": STATUS_URL,
    "response_url": RESULT_URL,
}
METRICS = {"inference_time": 17.9, "queue_time": 0.4, "total_time": 18.3, "cost": 0.1875, "remaining_credits": 4.8125}
COMPLETED = {"status": "COMPLETED", "error": None, "output": OUTPUT_URL, "metrics": METRICS, "request_id": RID}
FAILED = {
    "status": "FAILED",
    "error": "Inference failed: the model could not process the input image",
    "metrics": {"inference_time": 0.007, "queue_time": 0.23, "total_time": 0.24},
    "request_id": RID,
}
REQUEST = CharacterRequest(prompt="a knight", reference="https://example.com/hero.png", seed=11)


@pytest.fixture(params=["drive", "adrive"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retried polls wait ~0 s here; the waiting itself is the driver's business, tested elsewhere."""
    monkeypatch.setattr(ideochar.toolkit, "backoff_seconds", lambda attempt: 0.0)


def fake_segmind(
    statuses: list[Any],
    result: Callable[[], httpx.Response] = lambda: httpx.Response(200, json=COMPLETED),
    submit: Callable[[], httpx.Response] = lambda: httpx.Response(200, json=SUBMITTED),
) -> Recorder:
    """A v2 Segmind: ``statuses`` are answered in turn (the last repeats); each is a status string,
    an ``httpx.Response``, or an exception to raise."""
    queue = list(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v2/ideogram-character":
            return submit()
        if str(request.url) == STATUS_URL:
            item = queue.pop(0) if len(queue) > 1 else queue[0]
            if isinstance(item, Exception):
                raise item
            if isinstance(item, httpx.Response):
                return item
            return httpx.Response(200, json={"status": item, "metrics": {"queue_time": 0.4}})
        if str(request.url) == RESULT_URL:
            return result()
        if str(request.url) == OUTPUT_URL:
            assert "x-api-key" not in request.headers, "the key must not go to the image CDN"
            return httpx.Response(200, content=JPEG, headers={"content-type": "image/jpeg"})
        return httpx.Response(404, json={"error": f"unexpected {request.method} {request.url}"})

    return Recorder(handle)


def go(driver: str, server: Recorder, events: list[Event] | None = None, request: CharacterRequest = REQUEST) -> Any:
    provider = SegmindProvider()
    ctx = fast_v2()
    return run_flow(driver, exchange_flow(provider, request, ctx), server, events)


def test_a_job_is_submitted_polled_fetched_and_downloaded(driver: str) -> None:
    server = fake_segmind(["QUEUED", "PROCESSING", "PROCESSING", "COMPLETED"])
    events: list[Event] = []
    out = go(driver, server, events)
    assert server.paths() == [
        "POST api.segmind.com/v2/ideogram-character",
        *[f"GET api.segmind.com/v2/requests/{RID}/status"] * 4,
        f"GET api.segmind.com/v2/requests/{RID}",
        f"GET images.segmind.com/outputs/{RID}.jpeg",
    ]
    assert all(r.headers["x-api-key"] == KEY for r in server.seen if r.url.host == "api.segmind.com")
    assert json.loads(server.seen[0].content)["seed"] == 11
    (image,) = out.images
    assert (image.data, image.seed, image.vendor_url) == (JPEG, 11, OUTPUT_URL)
    assert (out.vendor_request_id, out.cost_usd) == (RID, Decimal("0.1875"))
    assert out.metadata["remaining_credits"] == Decimal("4.8125") and out.metadata["mode"] == "v2"
    assert [(e.kind, e.status) for e in events] == [
        ("submitted", "queued"),
        ("progress", "queued"),
        ("progress", "running"),
    ]
    resume = events[0].resume
    assert resume == {"mode": "v2", "request_id": RID, "status_url": STATUS_URL, "response_url": RESULT_URL, "seed": 11}
    assert KEY not in json.dumps(resume)


def test_a_failed_job_answered_with_422_is_generation_failed_and_possibly_billed(driver: str) -> None:
    server = fake_segmind(["PROCESSING", httpx.Response(422, json=FAILED)])
    with pytest.raises(GenerationFailed) as caught:
        go(driver, server)
    error = caught.value
    assert "could not process the input image" in error.message
    # Segmind admitted the task (it has an id): whatever happens after, the router never calls it unbilled.
    assert (error.billed, error.admitted, error.vendor_request_id, error.provider) == ("unknown", True, RID, "segmind")
    assert not [r for r in server.seen if str(r.url) == RESULT_URL], "a FAILED status needs no result fetch"


def test_a_failed_job_naming_a_safety_check_is_content_filtered(driver: str) -> None:
    nsfw = {**FAILED, "error": "NSFW content detected in the generated image"}
    with pytest.raises(ContentFiltered) as caught:
        go(driver, fake_segmind([httpx.Response(422, json=nsfw)]))
    assert caught.value.billed == "unknown" and caught.value.admitted  # refused after admission: maybe billed


def test_a_result_served_failed_after_a_completed_status_is_still_read_as_the_answer(driver: str) -> None:
    server = fake_segmind(["COMPLETED"], result=lambda: httpx.Response(422, json=FAILED))
    with pytest.raises(GenerationFailed):
        go(driver, server)


def test_a_job_is_resumed_by_its_id_without_resubmitting(driver: str) -> None:
    first = fake_segmind(["QUEUED", ConnectionResetErrorStandIn()])
    events: list[Event] = []
    with pytest.raises(OutcomeUnknown) as caught:
        go(driver, first, events)
    assert caught.value.vendor_request_id == RID and caught.value.admitted
    state = next(e.resume for e in events if e.kind == "submitted")
    assert state is not None

    later = fake_segmind(["COMPLETED"])
    provider, ctx = SegmindProvider(), fast_v2()
    out = run_flow(driver, provider_flow(provider, provider.resume(state, ctx), ctx, vendor_id="resumed"), later)
    assert out.images[0].data == JPEG and out.vendor_request_id == RID and out.images[0].seed == 11
    assert [r.method for r in later.seen] == ["GET", "GET", "GET"], "resume sends no POST"


class ConnectionResetErrorStandIn(httpx.ReadError):
    """A poll whose connection keeps breaking."""

    def __init__(self) -> None:
        super().__init__("connection reset by peer")


def test_resume_data_that_is_not_a_v2_job_is_refused(driver: str) -> None:
    provider, ctx = SegmindProvider(), fast_v2()
    with pytest.raises(InvalidRequest) as caught:
        run_flow(driver, provider.resume({"vendor_request_id": "abc"}, ctx), fake_segmind(["COMPLETED"]))
    assert "v1 jobs cannot be resumed" in caught.value.message


def test_a_poll_that_fails_once_is_repeated_and_the_post_is_not(driver: str) -> None:
    server = fake_segmind(
        [
            httpx.ConnectError("refused"),
            httpx.Response(503, text="upstream busy"),
            httpx.Response(
                429,
                json={"error": "Rate limit exceeded"},
                headers={"x-rate-limit-reset-at-utc": "2000-01-01T00:00:00Z"},
            ),
            "COMPLETED",
        ]
    )
    out = go(driver, server)
    assert out.images[0].data == JPEG
    assert [r.method for r in server.seen].count("POST") == 1


def test_polls_that_keep_failing_end_in_outcome_unknown_with_the_job_id(driver: str) -> None:
    server = fake_segmind([httpx.Response(503, text="Service Unavailable")])
    with pytest.raises(OutcomeUnknown) as caught:
        go(driver, server)
    error = caught.value
    assert (error.vendor_request_id, error.admitted, error.billed) == (RID, True, "unknown")
    assert "resume" in error.message
    assert [r.method for r in server.seen].count("POST") == 1
    assert 2 <= len(server.seen) <= 1 + 1 + segmind_provider.V2_POLL_RETRIES


def test_a_refused_poll_after_admission_is_possibly_billed_and_never_a_reason_to_resubmit(driver: str) -> None:
    server = fake_segmind([httpx.Response(401, json={"error": "Unauthorized. API key is invalid or may have expired"})])
    with pytest.raises(AuthenticationFailed) as caught:
        go(driver, server)
    # The router's rule (router.settle): Segmind holds the job, so the failure is billed "unknown", carries
    # the id, and is marked admitted, which keeps it from failing over to another vendor.
    assert (caught.value.vendor_request_id, caught.value.admitted, caught.value.billed) == (RID, True, "unknown")


def test_an_expired_job_record_is_outcome_unknown(driver: str) -> None:
    gone = httpx.Response(404, json={"error": f"Request {RID} not found"})
    with pytest.raises(OutcomeUnknown) as caught:
        go(driver, fake_segmind([gone]))
    assert "no longer knows" in caught.value.message


def test_a_job_still_running_past_the_poll_timeout_can_be_resumed_later(driver: str) -> None:
    provider = SegmindProvider()
    ctx = fast_v2(poll_timeout_seconds=0.01)
    events: list[Event] = []
    with pytest.raises(OutcomeUnknown) as caught:
        run_flow(driver, exchange_flow(provider, REQUEST, ctx), fake_segmind(["PROCESSING"]), events)
    assert "still PROCESSING" in caught.value.message
    assert any(e.kind == "submitted" and e.resume for e in events)


def test_the_key_is_never_sent_to_a_poll_url_off_segmind(driver: str) -> None:
    evil = {**SUBMITTED, "status_url": "https://collector.example/steal", "response_url": "https://collector.example/r"}
    server = fake_segmind(["COMPLETED"], submit=lambda: httpx.Response(200, json=evil))
    with pytest.raises(UnexpectedResponse) as caught:
        go(driver, server)
    assert "collector.example" in caught.value.message
    assert (caught.value.vendor_request_id, caught.value.admitted, caught.value.billed) == (RID, True, "unknown")
    assert [r.url.host for r in server.seen] == ["api.segmind.com"]


def test_submit_answer_without_urls_falls_back_to_the_documented_layout(driver: str) -> None:
    server = fake_segmind(
        ["COMPLETED"], submit=lambda: httpx.Response(200, json={"request_id": RID, "status": "QUEUED"})
    )
    assert go(driver, server).images[0].data == JPEG


def test_submit_answer_without_a_request_id_is_unexpected(driver: str) -> None:
    server = fake_segmind(["COMPLETED"], submit=lambda: httpx.Response(200, json={"status": "QUEUED"}))
    with pytest.raises(UnexpectedResponse) as caught:
        go(driver, server)
    assert caught.value.billed == "unknown" and len(server.seen) == 1


def test_a_refused_submit_is_not_admitted(driver: str) -> None:
    server = fake_segmind(
        [], submit=lambda: httpx.Response(401, json={"error": "Missing Authorization or x-api-key in header"})
    )
    with pytest.raises(AuthenticationFailed) as caught:
        go(driver, server)
    assert not caught.value.admitted and len(server.seen) == 1


def test_a_completed_result_without_an_image_is_billed_and_unexpected(driver: str) -> None:
    empty = {"status": "COMPLETED", "output": None, "metrics": METRICS}
    with pytest.raises(UnexpectedResponse) as caught:
        go(driver, fake_segmind(["COMPLETED"], result=lambda: httpx.Response(200, json=empty)))
    assert (caught.value.billed, caught.value.vendor_request_id) == ("yes", RID)


def test_a_local_reference_is_submitted_as_multipart(driver: str) -> None:
    png = make_image(24, 24, "PNG")
    server = fake_segmind(["COMPLETED"])
    go(driver, server, request=CharacterRequest(prompt="p", reference=png))
    post = server.seen[0]
    form = parse_form(post.headers["content-type"], post.content)
    assert form["character_reference_image"].value == png


def test_a_result_lagging_behind_its_completed_status_is_fetched_again(driver: str) -> None:
    answers = [httpx.Response(200, json={"status": "PROCESSING"}), httpx.Response(200, json=COMPLETED)]
    server = fake_segmind(["COMPLETED"], result=lambda: answers.pop(0))
    out = go(driver, server)
    assert out.images[0].data == JPEG
    assert [str(r.url) for r in server.seen].count(RESULT_URL) == 2

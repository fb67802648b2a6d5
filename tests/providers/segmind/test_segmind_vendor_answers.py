"""Segmind's answers are not trusted: a key echoed back is redacted before anything is cut, a job URL
on another port never gets the key, and malformed numbers or fields never lose the request id
(docs/security.md, "Vendor answers")."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from segmind_support import JPEG, KEY, Recorder, context, exchange_flow, fast_v2, run_flow

import ideochar.toolkit
from echoed_keys import error_fragments, straddling
from ideochar import CharacterRequest
from ideochar.errors import OutcomeUnknown, ProviderError, UnexpectedResponse
from ideochar.events import Event
from ideochar.spec import CallContext
from ideochar_segmind.provider import SegmindProvider

RID = "3f2b8c1e-9d4a-4e6f-8b7a-1c2d3e4f5a6b"
API = "https://api.segmind.com"
OUTPUT_URL = f"https://images.segmind.com/outputs/{RID}.jpeg"
REQUEST = CharacterRequest(prompt="a knight", reference="https://example.com/hero.png", seed=11)


@pytest.fixture(params=["drive", "adrive"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ideochar.toolkit, "backoff_seconds", lambda attempt: 0.0)


def go(driver: str, handler: Recorder, ctx: CallContext, events: list[Event] | None = None) -> Any:
    return run_flow(driver, exchange_flow(SegmindProvider(), REQUEST, ctx), handler, events)


def fail(driver: str, handler: Recorder, ctx: CallContext) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        go(driver, handler, ctx)
    return caught.value


def v2(submitted: dict[str, Any]) -> Recorder:
    """A v2 Segmind whose submit answers ``submitted`` and whose job is done at the first look."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json=submitted)
        if request.url.host == "images.segmind.com":
            return httpx.Response(200, content=JPEG, headers={"content-type": "image/jpeg"})
        return httpx.Response(200, json={"status": "COMPLETED", "output": OUTPUT_URL, "request_id": RID})

    return Recorder(handle)


# -- a key echoed back ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        lambda: httpx.Response(401, text=straddling(key=KEY), headers={"content-type": "text/plain"}),
        lambda: httpx.Response(406, json={"error": straddling(key=KEY)}),
        lambda: httpx.Response(200, json={"message": straddling(key=KEY)}),  # a 200 without an image
    ],
    ids=["text-401", "json-406", "json-200"],
)
def test_a_key_echoed_by_segmind_is_redacted_before_it_is_cut(driver: str, answer: Any) -> None:
    error = fail(driver, Recorder(lambda request: answer()), context())
    assert error_fragments(error, key=KEY) == []


# -- where the key goes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status_url",
    [f"https://api.segmind.com:8443/v2/requests/{RID}/status", f"https://images.segmind.com:444/v2/requests/{RID}"],
)
def test_the_key_never_follows_a_job_url_to_another_port(driver: str, status_url: str) -> None:
    server = v2({"request_id": RID, "status": "QUEUED", "status_url": status_url})
    error = fail(driver, server, fast_v2())
    assert "will not send the key" in error.message
    assert [r.method for r in server.seen] == ["POST"]
    assert (error.vendor_request_id, error.admitted, error.billed) == (RID, True, "unknown")


# -- numbers and fields ---------------------------------------------------------------------------------------


def test_a_malformed_optional_field_in_the_submit_answer_never_loses_the_request_id(driver: str) -> None:
    events: list[Event] = []
    server = v2({"request_id": RID, "status": ["QUEUED"], "status_url": 42, "response_url": {"x": 1}})
    output = go(driver, server, fast_v2(), events)
    assert [e.vendor_request_id for e in events if e.kind == "submitted"] == [RID]
    assert output.vendor_request_id == RID and output.images[0].data == JPEG
    assert server.paths()[1] == f"GET api.segmind.com/v2/requests/{RID}/status"  # the documented layout


def test_a_seed_header_beyond_the_journal_is_dropped(driver: str) -> None:
    headers = {"content-type": "image/jpeg", "x-seed-value": "99999999999999999999", "x-request-id": RID}
    output = go(driver, Recorder(lambda request: httpx.Response(200, content=JPEG, headers=headers)), context())
    assert output.images[0].seed == 11  # the seed asked for stands in


def test_malformed_metrics_keep_the_cost_and_the_image(driver: str) -> None:
    metrics = {"inference_time": "1e999", "queue_time": -3, "total_time": True, "cost": 0.1875}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"request_id": RID, "status": "QUEUED"})
        if request.url.host == "images.segmind.com":
            return httpx.Response(200, content=JPEG, headers={"content-type": "image/jpeg"})
        return httpx.Response(200, json={"status": "COMPLETED", "output": OUTPUT_URL, "metrics": metrics})

    output = go(driver, Recorder(handle), fast_v2())
    assert str(output.cost_usd) == "0.1875" and "inference_time_seconds" not in output.metadata


def test_an_unreadable_job_document_echoing_the_key_is_redacted(driver: str) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"request_id": RID, "status": "QUEUED"})
        return httpx.Response(200, text=straddling(key=KEY), headers={"content-type": "text/plain"})

    error = fail(driver, Recorder(handle), fast_v2())
    assert isinstance(error, (UnexpectedResponse, OutcomeUnknown)) and error_fragments(error, key=KEY) == []

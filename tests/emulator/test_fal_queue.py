"""fal's queue as the emulator runs it: submit, status, status stream, result, cancel, and fal.run."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anyio
import httpx
import pytest

import ideochar_fal.emulator as fal_emulator
from ideochar.emulator import testing

from .support import (
    FAL_EDIT,
    FAL_GENERATE,
    FAL_KEY,
    FAL_RUN,
    data_uri,
    decode,
    edit_body,
    fal_body,
    image,
    mask_png,
    pixel_size,
)

pytestmark = pytest.mark.anyio


async def submit(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await http.post(FAL_GENERATE, json=fal_body(**fields), headers=FAL_KEY)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_done(http: httpx.AsyncClient, status_url: str) -> dict[str, Any]:
    with anyio.fail_after(5):
        while True:
            response = await http.get(status_url, headers=FAL_KEY)
            if response.status_code == 200:
                return dict(response.json())
            assert response.status_code == 202
            await anyio.sleep(0.02)


def events(body: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The data documents and the comment lines of a server-sent event stream."""
    documents, comments = [], []
    for block in body.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data:"):
                documents.append(json.loads(line[5:]))
            elif line.startswith(":"):
                comments.append(line)
    return documents, comments


async def test_submit_answers_urls_that_use_only_owner_and_app(http: httpx.AsyncClient) -> None:
    response = await http.post(FAL_EDIT, json=edit_body(), headers=FAL_KEY)
    submitted = response.json()
    request_id = submitted["request_id"]
    base = f"http://emulator.test/fal/fal-ai/ideogram/requests/{request_id}"
    assert submitted["response_url"] == base
    assert submitted["status_url"] == f"{base}/status"
    assert submitted["cancel_url"] == f"{base}/cancel"
    assert submitted["status"] == "IN_QUEUE"
    assert submitted["queue_position"] == 0
    assert response.headers["x-fal-request-id"] == request_id


async def test_a_job_goes_from_queue_to_progress_to_completed(http: httpx.AsyncClient, state: Any) -> None:
    state.set_model_seconds(1.0)
    first = await submit(http)
    second = await submit(http)
    queued = await http.get(second["status_url"], headers=FAL_KEY)
    assert queued.status_code == 202
    assert (queued.json()["status"], queued.json()["queue_position"]) == ("IN_QUEUE", 1)
    await anyio.sleep(0.3)  # past the queue share (20 %), well before the end
    running = await http.get(first["status_url"], params={"logs": "1"}, headers=FAL_KEY)
    assert (running.status_code, running.json()["status"]) == (202, "IN_PROGRESS")
    assert any("started" in log["message"] for log in running.json()["logs"])
    done = await wait_done(http, first["status_url"])
    assert done["status"] == "COMPLETED"
    assert done["logs"] is None  # not asked for
    assert done["metrics"]["inference_time"] > 0


async def test_logs_come_only_when_asked_for(http: httpx.AsyncClient) -> None:
    submitted = await submit(http)
    await wait_done(http, submitted["status_url"])
    for flag, expected in (("1", list), ("true", list), ("0", type(None)), ("false", type(None))):
        document = (await http.get(submitted["status_url"], params={"logs": flag}, headers=FAL_KEY)).json()
        assert isinstance(document["logs"], expected), flag


async def test_result_has_the_documented_fields_and_serves_the_png(http: httpx.AsyncClient) -> None:
    submitted = await submit(http, num_images=2, image_size={"width": 832, "height": 1248})
    await wait_done(http, submitted["status_url"])
    result = await http.get(submitted["response_url"], headers=FAL_KEY)
    assert result.status_code == 200
    output = result.json()
    assert output["seed"] == 7
    assert len(output["images"]) == 2
    for file in output["images"]:
        assert set(file) == {"url", "content_type", "file_name", "file_size"}
        data = (await http.get(file["url"])).content
        assert (file["content_type"], file["file_size"]) == ("image/png", len(data))
        assert pixel_size(data) == (832, 1248)


async def test_a_size_ideogram_cannot_make_is_rendered_at_the_nearest_legal_size(http: httpx.AsyncClient) -> None:
    submitted = await submit(http, image_size="landscape_16_9")
    await wait_done(http, submitted["status_url"])
    file = (await http.get(submitted["response_url"], headers=FAL_KEY)).json()["images"][0]
    assert pixel_size((await http.get(file["url"])).content) == (1312, 736)


async def test_sync_mode_returns_data_uris(http: httpx.AsyncClient) -> None:
    submitted = await submit(http, sync_mode=True)
    await wait_done(http, submitted["status_url"])
    url = (await http.get(submitted["response_url"], headers=FAL_KEY)).json()["images"][0]["url"]
    assert url.startswith("data:image/png;base64,")
    assert pixel_size(base64.b64decode(url.split(",", 1)[1])) == (1024, 1024)


async def test_result_before_completion_is_a_400_and_an_unknown_id_a_404(http: httpx.AsyncClient, state: Any) -> None:
    state.set_model_seconds(5)
    submitted = await submit(http)
    early = await http.get(submitted["response_url"], headers=FAL_KEY)
    assert (early.status_code, early.json()) == (400, {"detail": "Request is still in progress"})
    unknown = await http.get("/fal/fal-ai/ideogram/requests/nope", headers=FAL_KEY)
    assert unknown.status_code == 404


async def test_another_key_cannot_see_a_job(http: httpx.AsyncClient) -> None:
    submitted = await submit(http)
    response = await http.get(submitted["status_url"], headers={"Authorization": "Key someone-else"})
    assert response.status_code == 404


async def test_the_status_stream_sends_each_change_and_ends_after_completed(
    http: httpx.AsyncClient, state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fal_emulator, "KEEPALIVE_SECONDS", 0.05)
    state.set_model_seconds(0.4)
    submitted = await submit(http)
    response = await http.get(submitted["status_url"] + "/stream", params={"logs": "1"}, headers=FAL_KEY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    documents, comments = events(response.text)
    statuses = [d["status"] for d in documents]
    assert statuses[0] in ("IN_QUEUE", "IN_PROGRESS")
    assert "IN_PROGRESS" in statuses
    assert statuses[-1] == "COMPLETED"
    assert statuses.index("COMPLETED") == len(statuses) - 1
    assert comments, "keep-alive comments while the job runs"


async def test_cancelling_a_queued_job_removes_it_and_voids_its_charge(http: httpx.AsyncClient, state: Any) -> None:
    state.set_model_seconds(10)
    submitted = await submit(http)
    cancelled = await http.put(submitted["cancel_url"], headers=FAL_KEY)
    assert (cancelled.status_code, cancelled.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    status = await http.get(submitted["status_url"], headers=FAL_KEY)
    assert (status.status_code, status.json()["status"]) == (200, "COMPLETED")
    assert (await http.get(submitted["response_url"], headers=FAL_KEY)).status_code == 400
    [entry] = state.ledger.entries("fal")
    assert entry.voided == "cancelled while queued"
    assert state.ledger.count("fal") == 0


async def test_cancelling_a_finished_job_or_an_unknown_one_says_so(http: httpx.AsyncClient) -> None:
    submitted = await submit(http)
    await wait_done(http, submitted["status_url"])
    done = await http.put(submitted["cancel_url"], headers=FAL_KEY)
    assert (done.status_code, done.json()) == (400, {"status": "ALREADY_COMPLETED"})
    unknown = await http.put("/fal/fal-ai/ideogram/requests/nope/cancel", headers=FAL_KEY)
    assert (unknown.status_code, unknown.json()) == (404, {"status": "NOT_FOUND"})


async def test_a_content_refusal_completes_with_an_error_and_is_not_billed(http: httpx.AsyncClient, state: Any) -> None:
    submitted = await submit(http, prompt="something [emulator:unsafe]")
    done = await wait_done(http, submitted["status_url"])
    assert done["error_type"] == "content_policy_violation"
    result = await http.get(submitted["response_url"], headers=FAL_KEY)
    assert result.status_code == 422
    assert result.json()["detail"][0]["type"] == "content_policy_violation"
    assert state.ledger.count("fal") == 0


async def test_fal_run_answers_the_output_and_admits_at_request(http: httpx.AsyncClient, state: Any) -> None:
    response = await http.post(FAL_RUN, json=fal_body(), headers=FAL_KEY)
    assert response.status_code == 200
    output = response.json()
    assert output["seed"] == 7 and len(output["images"]) == 1
    [entry] = state.ledger.entries("fal")
    assert entry.job_id == response.headers["x-fal-request-id"]
    assert entry.detail["mode"] == "run"


async def test_an_edit_renders_at_the_input_image_size_with_the_mask_area_marked(http: httpx.AsyncClient) -> None:
    body = edit_body(mask_url=data_uri(mask_png(96, 64, (20, 10, 60, 50))))
    response = await http.post("/fal/run/fal-ai/ideogram/character/edit", json=body, headers=FAL_KEY)
    url = response.json()["images"][0]["url"]
    assert pixel_size((await http.get(url)).content) == (96, 64)


def test_the_status_stream_pushes_completed_within_milliseconds_on_a_socket() -> None:
    model_seconds = 0.3
    with testing.running_emulator(model_seconds=model_seconds) as server, httpx.Client(base_url=server.url) as http:
        submitted = http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY).json()
        admitted_at = time.monotonic()
        with http.stream("GET", submitted["status_url"] + "/stream", headers=FAL_KEY) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and json.loads(line[5:])["status"] == "COMPLETED":
                    notice = time.monotonic() - admitted_at - model_seconds
                    break
            else:
                pytest.fail("the stream ended without COMPLETED")
    # A few ms on an idle machine (the benchmark measures it); the bound only catches a poll-like delay.
    assert notice < 0.25, f"COMPLETED came {notice * 1000:.0f} ms after the job was due"


def test_the_reference_is_visible_in_the_output() -> None:
    app = testing.emulator_app(vendors=["fal"])
    green = (12, 200, 34)
    with testing.sync_client(app) as http:
        body = fal_body(reference_image_urls=[data_uri(image(200, 200, color=green))])
        url = http.post(FAL_RUN, json=body, headers=FAL_KEY).json()["images"][0]["url"]
        picture = decode(http.get(url).content)
    counts = {colour: count for count, colour in picture.getcolors(1 << 24) or []}
    assert counts.get(green, 0) > 10_000


async def test_cancelling_a_running_job_ends_it_cancelled_and_still_billed(http: httpx.AsyncClient, state: Any) -> None:
    state.set_model_seconds(2)
    submitted = await submit(http)
    await anyio.sleep(0.5)  # past the queue share (20 % of 2 s)
    cancelled = await http.put(submitted["cancel_url"], headers=FAL_KEY)
    assert (cancelled.status_code, cancelled.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    status = (await http.get(submitted["status_url"], headers=FAL_KEY)).json()
    assert (status["status"], status["error_type"]) == ("COMPLETED", "request_cancelled")
    assert state.ledger.count("fal") == 1

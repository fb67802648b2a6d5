"""fal's answers are not trusted: a key echoed back is redacted before anything is cut, a job URL on
another scheme or port never gets the key, 300 images named for one asked cost one download, and a
malformed queue position never loses the request id (docs/security.md, "Vendor answers")."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fal_fakes import CDN, RUNNERS, FakeFal, Runner, context

import ideochar.exchange
import ideochar.toolkit
import ideochar_fal.provider
from echoed_keys import error_fragments, straddling
from ideochar.errors import ProviderError, UnexpectedResponse
from ideochar.events import Event
from ideochar.request import CharacterRequest
from ideochar.router import provider_flow
from ideochar_fal.provider import FalOptions, FalProvider

REF_URL = "https://v3.fal.media/files/koala/reference.png"


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Runner:
    return RUNNERS[request.param]


@pytest.fixture(autouse=True)
def fast_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ideochar_fal.provider, "POLL_INITIAL_SECONDS", 0.001)
    monkeypatch.setattr(ideochar_fal.provider, "POLL_MAX_SECONDS", 0.002)
    monkeypatch.setattr(ideochar.toolkit, "backoff_seconds", lambda attempt: 0.001)
    monkeypatch.setattr(ideochar.exchange, "backoff_seconds", lambda attempt: 0.001)


def go(run: Runner, fake: FakeFal, options: FalOptions | None = None, **fields: Any) -> tuple[Any, list[Event]]:
    events: list[Event] = []
    request = CharacterRequest(prompt="a knight", reference=REF_URL, **fields)
    provider, ctx = FalProvider(), context(options)
    # As the router runs it: errors stamped with the job's id and ruled on for billing (router.settle).
    return run(provider_flow(provider, provider.exchange(request, ctx), ctx), fake, events), events


def fail(run: Runner, fake: FakeFal, options: FalOptions | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        go(run, fake, options)
    return caught.value


# -- a key echoed back ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(401, text=straddling(), headers={"content-type": "text/plain"}),
        httpx.Response(502, text=f"<html><title>{straddling()}</title></html>", headers={"content-type": "text/html"}),
        httpx.Response(422, json={"detail": straddling()}),
        httpx.Response(422, json={"detail": [{"loc": ["body", "prompt"], "msg": straddling(), "type": "x"}]}),
    ],
    ids=["text", "html", "flat-json", "detail-list"],
)
def test_a_key_echoed_in_a_refusal_is_redacted_before_it_is_cut(run: Runner, answer: httpx.Response) -> None:
    error = fail(run, FakeFal(submit=answer))
    assert error_fragments(error) == []


def test_a_key_echoed_in_an_unreadable_output_is_redacted_before_it_is_cut(run: Runner) -> None:
    error = fail(run, FakeFal(result=httpx.Response(200, text=straddling())))
    assert isinstance(error, UnexpectedResponse) and error_fragments(error) == []


def test_a_key_echoed_in_an_unreadable_submit_answer_is_redacted_before_it_is_cut(run: Runner) -> None:
    error = fail(run, FakeFal(submit=httpx.Response(200, text=straddling())))
    assert isinstance(error, UnexpectedResponse) and error_fragments(error) == []


# -- where the key goes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status_url",
    [
        "http://queue.fal.run:8080/fal-ai/ideogram/requests/r/status",
        "https://queue.fal.run:8443/fal-ai/ideogram/requests/r/status",
        "http://queue.fal.run/fal-ai/ideogram/requests/r/status",
        "http://rest.fal.ai/fal-ai/ideogram/requests/r/status",
        "https://v3.fal.media.evil.example/r/status",
    ],
)
def test_the_key_never_follows_a_job_url_to_another_scheme_or_port(run: Runner, status_url: str) -> None:
    fake = FakeFal()
    fake.submit = httpx.Response(200, json={**fake.submitted(), "status_url": status_url})
    error = fail(run, fake)
    assert isinstance(error, UnexpectedResponse) and "will not send the key" in error.message
    assert [r.method for r in fake.requests] == ["POST"]
    assert error.vendor_request_id == fake.request_id and error.admitted


# -- as many images as asked ----------------------------------------------------------------------------------


def test_a_vendor_naming_300_images_for_one_asked_costs_one_download(run: Runner) -> None:
    fake = FakeFal(num_images=300)
    output, _ = go(run, fake, num_images=1)
    assert len(fake.sent("GET", CDN)) == 1 and len(output.images) == 1
    assert any("300" in w.message and w.field == "num_images" for w in output.warnings)


# -- numbers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [2**63, 2**64, -1, 3.5, "third", True])
def test_a_malformed_queue_position_never_loses_the_request_id(run: Runner, position: Any) -> None:
    fake = FakeFal(
        stream=[
            {"status": "IN_QUEUE", "queue_position": position},
            {"status": "IN_PROGRESS", "queue_position": position},
            {"status": "COMPLETED"},
        ]
    )
    fake.submit = httpx.Response(200, json={**fake.submitted(), "queue_position": position})
    output, events = go(run, fake)
    submitted = next(e for e in events if e.kind == "submitted")
    assert submitted.vendor_request_id == fake.request_id and submitted.resume is not None
    assert [e.queue_position for e in events if e.kind in ("submitted", "progress")] == [None, None, None]
    assert output.vendor_request_id == fake.request_id and len(output.images) == 1


def test_a_polled_queue_position_beyond_the_journal_is_dropped(run: Runner) -> None:
    fake = FakeFal(
        stream=httpx.Response(404), polls=[httpx.Response(202, json={"status": "IN_QUEUE", "queue_position": 2**70})]
    )
    _, events = go(run, fake)
    assert [(e.status, e.queue_position) for e in events if e.kind == "progress"] == [("queued", None)]


def test_a_seed_beyond_the_journal_is_dropped_and_the_images_kept(run: Runner) -> None:
    fake = FakeFal(result=httpx.Response(200, json={"images": [{"url": f"{CDN}/files/a.png"}], "seed": 2**64}))
    output, _ = go(run, fake, seed=7)
    assert [image.seed for image in output.images] == [7]  # the seed asked for stands in

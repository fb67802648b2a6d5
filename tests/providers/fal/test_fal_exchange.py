"""The whole fal exchange, driven by both drivers against a fake fal (httpx.MockTransport handlers)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fal_fakes import CDN, QUEUE, RUNNERS, BrokenStream, FakeFal, Runner, context, run_sync, sse

import ideochar.exchange
import ideochar.toolkit
import ideochar_fal.provider
from conftest import CANARY_KEY, make_image
from ideochar import Client
from ideochar.errors import (
    AuthenticationFailed,
    ContentFiltered,
    GenerationFailed,
    IdeocharError,
    InvalidRequest,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UnexpectedResponse,
    Unsupported,
)
from ideochar.events import Event
from ideochar.plugins import plugin_manager
from ideochar.request import CharacterRequest, Edit, Remix
from ideochar.router import provider_flow
from ideochar.spec import CallContext, Exchange, Provider, ProviderOutput
from ideochar_fal.provider import INFO, FalOptions, FalProvider

REF_URL = "https://v3.fal.media/files/koala/reference.png"


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Runner:
    return RUNNERS[request.param]


@pytest.fixture(autouse=True)
def fast_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real sleeps, but tiny: the tests exercise the waiting logic, not the clock."""
    monkeypatch.setattr(ideochar_fal.provider, "POLL_INITIAL_SECONDS", 0.001)
    monkeypatch.setattr(ideochar_fal.provider, "POLL_MAX_SECONDS", 0.002)
    monkeypatch.setattr(ideochar.toolkit, "backoff_seconds", lambda attempt: 0.001)
    monkeypatch.setattr(ideochar.exchange, "backoff_seconds", lambda attempt: 0.001)


def generate(**fields: Any) -> CharacterRequest:
    return CharacterRequest(prompt="a knight", reference=fields.pop("reference", REF_URL), **fields)


def go(
    run: Runner, fake: FakeFal, request: CharacterRequest, options: FalOptions | None = None
) -> tuple[Any, list[Event]]:
    events: list[Event] = []
    provider, ctx = FalProvider(), context(options)
    # As the router runs it: errors stamped with the job's id and ruled on for billing (router.settle).
    return run(provider_flow(provider, provider.exchange(request, ctx), ctx), fake, events), events


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


# -- the queue, followed on the status stream -----------------------------------------------------------


def test_queue_happy_path_follows_the_status_stream(run: Runner) -> None:
    fake = FakeFal()
    seen_before_stream: list[list[str]] = []
    events: list[Event] = []
    stream_answer = fake.__call__

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status/stream"):
            seen_before_stream.append(kinds(events))
        return stream_answer(request)

    output = run(FalProvider().exchange(generate(seed=5), context()), handler, events)

    assert isinstance(output, ProviderOutput)
    assert [(r.method, str(r.url)) for r in fake.requests] == [
        ("POST", f"{QUEUE}/fal-ai/ideogram/character"),
        ("GET", f"{fake.job}/status/stream?logs=1"),
        ("GET", fake.job),
        ("GET", f"{CDN}/files/panda/out-0.png"),
    ]
    assert seen_before_stream == [["submitted"]]  # the id is out before anything else is sent
    submitted = events[0]
    assert submitted.vendor_request_id == fake.request_id
    assert submitted.resume == {
        "mode": "queue",
        "request_id": fake.request_id,
        "endpoint": "fal-ai/ideogram/character",
        "status_url": f"{fake.job}/status",
        "response_url": fake.job,
        "cancel_url": f"{fake.job}/cancel",
        "seed": 5,
        "num_images": 1,
    }
    assert CANARY_KEY not in json.dumps(submitted.resume)
    progress = [(e.status, e.queue_position) for e in events if e.kind == "progress"]
    assert progress == [("queued", 2), ("queued", 0), ("running", None)]
    assert kinds(events)[-1] == "downloaded"
    (image,) = output.images
    assert (image.width, image.height, image.seed, image.content_type) == (64, 48, 123456, "image/png")
    assert output.vendor_request_id == fake.request_id
    assert output.metadata["status_via"] == "stream" and output.metadata["inference_seconds"] == 4.2


def test_the_key_goes_to_fal_and_never_to_the_cdn(run: Runner) -> None:
    fake = FakeFal()
    go(run, fake, generate())
    for request in fake.requests:
        if request.url.host == "v3.fal.media":
            assert "authorization" not in request.headers
        else:
            assert request.headers["authorization"] == f"Key {CANARY_KEY}"


# -- polling ------------------------------------------------------------------------------------------------


def test_polling_takes_over_when_the_stream_is_refused(run: Runner) -> None:
    fake = FakeFal(
        stream=httpx.Response(405, text="Method Not Allowed"),
        polls=[
            httpx.Response(202, json={"status": "IN_QUEUE", "queue_position": 1}),
            httpx.Response(202, json={"status": "IN_PROGRESS", "logs": None}),
        ],
    )
    output, events = go(run, fake, generate())
    polls = fake.sent("GET", "/status?")
    assert [str(r.url) for r in polls] == [f"{fake.job}/status?logs=1"] * 3
    assert [(e.status, e.queue_position) for e in events if e.kind == "progress"] == [("queued", 1), ("running", None)]
    assert output.metadata["status_via"] == "poll" and len(output.images) == 1


def test_polling_takes_over_when_the_stream_breaks(run: Runner) -> None:
    first = sse({"status": "IN_QUEUE", "queue_position": 3}, comment=False)
    fake = FakeFal(
        stream=lambda request: httpx.Response(
            200, stream=BrokenStream(first), headers={"content-type": "text/event-stream"}
        ),
        polls=[httpx.Response(202, json={"status": "IN_PROGRESS"})],
    )
    output, events = go(run, fake, generate())
    assert next((e.status, e.queue_position) for e in events if e.kind == "progress") == ("queued", 3)
    assert len(fake.sent("GET", "/status?")) == 2 and len(output.images) == 1


def test_the_poll_option_never_opens_the_stream(run: Runner) -> None:
    fake = FakeFal(polls=[httpx.Response(202, json={"status": "IN_PROGRESS"})])
    go(run, fake, generate(), FalOptions(status="poll"))
    assert not fake.sent("GET", "/stream") and len(fake.sent("GET", "/status?")) == 2


def test_polls_are_repeated_through_5xx_429_and_transport_errors(run: Runner) -> None:
    def connect_error(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    fake = FakeFal(
        stream=httpx.Response(404),
        polls=[
            httpx.Response(503, text="<html><title>503</title></html>", headers={"content-type": "text/html"}),
            httpx.Response(429, json={"detail": "slow down"}, headers={"retry-after": "0"}),
            connect_error,
        ],
    )
    output, _ = go(run, fake, generate())
    assert len(fake.sent("GET", "/status?")) == 4 and len(output.images) == 1


def test_polling_gives_up_after_repeated_failures_naming_the_job(run: Runner) -> None:
    fake = FakeFal(stream=httpx.Response(404), polls=[httpx.Response(500, json={"detail": "down"})] * 20)
    with pytest.raises(OutcomeUnknown) as caught:  # fal holds the job: it may still finish and bill
        go(run, fake, generate())
    assert caught.value.vendor_request_id == fake.request_id and caught.value.admitted
    assert caught.value.billed == "unknown" and isinstance(caught.value.__cause__, ProviderUnavailable)
    assert len(fake.sent("GET", "/status?")) == ideochar_fal.provider.POLL_RETRIES + 1
    assert len(fake.sent("POST")) == 1


# -- failures after admission -------------------------------------------------------------------------------


def test_completed_with_an_error_is_a_failed_generation_carrying_the_job_id(run: Runner) -> None:
    fake = FakeFal()
    fake.stream = [
        {"status": "IN_PROGRESS"},
        fake.completed(error="Internal server error", error_type="runner_server_error"),
    ]
    with pytest.raises(GenerationFailed) as caught:
        go(run, fake, generate())
    error = caught.value
    assert error.vendor_request_id == fake.request_id and error.admitted and error.billed == "unknown"
    assert "Internal server error" in str(error)
    assert [str(r.url) for r in fake.requests][-1].endswith("/status/stream?logs=1")  # no result fetched
    assert len(fake.requests) == 2


def test_a_content_refusal_on_the_result_is_content_filtered(run: Runner) -> None:
    detail = [{"loc": ["body", "prompt"], "msg": "Flagged by the content checker", "type": "content_policy_violation"}]
    fake = FakeFal(result=httpx.Response(422, json={"detail": detail}))
    with pytest.raises(ContentFiltered) as caught:
        go(run, fake, generate())
    assert caught.value.vendor_request_id == fake.request_id and caught.value.admitted


def test_a_result_not_ready_yet_is_fetched_again(run: Runner) -> None:
    answers = iter([httpx.Response(400, json={"detail": "Request is still in progress"})])
    fake = FakeFal()
    fake.result = lambda request: next(answers, None) or httpx.Response(200, json=fake.output())
    output, _ = go(run, fake, generate())
    assert len(fake.sent("GET", fake.job)) == 3 and len(output.images) == 1  # stream + 2 results


# -- failures at submit -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected", "sent"),
    [
        (
            httpx.Response(
                422, json={"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}]}
            ),
            RequestRejected,
            True,
        ),
        (httpx.Response(401, json={"detail": "No user found for Key ID and Secret"}), AuthenticationFailed, True),
        (httpx.Response(429, json={"detail": "Rate limited"}, headers={"retry-after": "3"}), RateLimited, True),
        (httpx.Response(502, text="<html><center>nginx</center></html>"), ProviderUnavailable, False),
    ],
    ids=["422", "401", "429", "ingress-502"],
)
def test_submit_refusals_map_to_typed_errors_and_nothing_is_followed(
    run: Runner, answer: httpx.Response, expected: type, sent: bool
) -> None:
    fake = FakeFal(submit=answer)
    events: list[Event] = []
    with pytest.raises(expected) as caught:
        run(FalProvider().exchange(generate(), context()), fake, events)
    assert caught.value.sent is sent and not caught.value.admitted
    assert events == [] and len(fake.requests) == 1
    if expected is RequestRejected:
        assert "prompt: field required" in str(caught.value)
    if expected is RateLimited:
        assert caught.value.retry_after == 3.0


def test_a_lost_submit_answer_is_outcome_unknown_and_never_resent(run: Runner) -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer")

    fake = FakeFal(submit=timeout)
    with pytest.raises(OutcomeUnknown):
        go(run, fake, generate())
    assert len(fake.sent("POST")) == 1


def test_a_submit_answer_without_request_id_is_unexpected_and_maybe_billed(run: Runner) -> None:
    fake = FakeFal(submit=httpx.Response(200, json={"status": "IN_QUEUE"}))
    with pytest.raises(UnexpectedResponse) as caught:
        go(run, fake, generate())
    assert caught.value.billed == "unknown"


# -- resuming and cancelling -------------------------------------------------------------------------------


def test_resume_from_saved_state_follows_the_job_without_resubmitting(run: Runner) -> None:
    first = FakeFal(request_id="job-1", submit=None)
    events: list[Event] = []
    flow = FalProvider().exchange(generate(operation=Remix(image=REF_URL)), context())
    flow.send(None)  # the submit POST is yielded; pretend the process died while it was in flight...
    state = {
        "request_id": "job-1",
        "endpoint": "fal-ai/ideogram/character/remix",
        "status_url": f"{first.job}/status",
        "response_url": first.job,
        "cancel_url": f"{first.job}/cancel",
        "seed": 9,
    }
    fake = FakeFal(request_id="job-1", seed=77)
    output = run(FalProvider().resume(state, context()), fake, events)
    assert not fake.sent("POST") and len(output.images) == 1 and output.images[0].seed == 77
    assert output.vendor_request_id == "job-1"


def test_resume_from_a_bare_id_rebuilds_owner_and_app_urls(run: Runner) -> None:
    fake = FakeFal(request_id="bare-42")
    output = run(FalProvider().resume({"request_id": "bare-42"}, context()), fake, [])
    assert str(fake.requests[0].url) == f"{QUEUE}/fal-ai/ideogram/requests/bare-42/status/stream?logs=1"
    assert str(fake.requests[1].url) == f"{QUEUE}/fal-ai/ideogram/requests/bare-42"
    assert all("/character" not in str(r.url) for r in fake.requests)
    assert len(output.images) == 1


@pytest.mark.parametrize(
    "state",
    [{}, {"request_id": ""}, {"request_id": "../../etc"}, {"request_id": "x", "mode": "run"}],
    ids=["empty", "blank", "path", "run-mode"],
)
def test_resume_refuses_state_that_is_not_a_queue_job(state: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        run_sync(FalProvider().resume(state, context()), FakeFal(), [])


def test_resume_never_sends_the_key_to_a_host_fal_does_not_own(run: Runner) -> None:
    fake = FakeFal()
    state = {"request_id": "x", "status_url": "https://evil.example/steal", "response_url": "https://evil.example/r"}
    with pytest.raises(UnexpectedResponse, match="will not send the key"):
        run(FalProvider().resume(state, context()), fake, [])
    assert fake.requests == []


def test_cancel_puts_to_the_cancel_url_once(run: Runner) -> None:
    fake = FakeFal(request_id="c-1")
    outcome = run(FalProvider().cancel({"request_id": "c-1"}, context()), fake, [])
    assert outcome == "cancellation_requested"
    assert [(r.method, str(r.url)) for r in fake.requests] == [("PUT", f"{fake.job}/cancel")]


def test_cancel_reports_already_completed_from_an_error_status(run: Runner) -> None:
    fake = FakeFal(cancel=httpx.Response(400, json={"status": "ALREADY_COMPLETED"}))
    assert run(FalProvider().cancel({"request_id": fake.request_id}, context()), fake, []) == "already_completed"


def test_providers_cannot_cancel_unless_they_say_how() -> None:
    class Plain(Provider):
        info = INFO

        def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
            raise NotImplementedError
            yield

    with pytest.raises(Unsupported):
        run_sync(Plain().cancel({"request_id": "x"}, context()), FakeFal(), [])


# -- fal.run ------------------------------------------------------------------------------------------------


def test_run_mode_is_one_blocking_call_to_fal_run(run: Runner) -> None:
    fake = FakeFal(request_id="run-1", num_images=2)
    output, events = go(run, fake, generate(num_images=2), FalOptions(mode="run"))
    assert [(r.method, r.url.host) for r in fake.requests] == [
        ("POST", "fal.run"),
        ("GET", "v3.fal.media"),
        ("GET", "v3.fal.media"),
    ]
    assert str(fake.requests[0].url) == "https://fal.run/fal-ai/ideogram/character"
    assert kinds(events)[0] == "submitted" and events[0].vendor_request_id == "run-1" and events[0].resume is None
    assert len(output.images) == 2 and output.metadata["mode"] == "run"


def test_run_mode_refusals_map_like_the_queue(run: Runner) -> None:
    fake = FakeFal(run=httpx.Response(503, json={"detail": "No runner"}, headers={"x-fal-request-id": "r"}))
    with pytest.raises(ProviderUnavailable) as caught:
        go(run, fake, generate(), FalOptions(mode="run"))
    assert caught.value.sent


# -- bodies, headers, URLs ----------------------------------------------------------------------------------


def test_a_local_reference_is_streamed_as_a_data_uri_that_decodes_back_to_the_file(run: Runner, tmp_path: Path) -> None:
    path = tmp_path / "face.png"
    path.write_bytes(make_image(200, 150, "PNG", color="green"))
    mask = make_image(200, 150, "PNG", color="black")
    fake = FakeFal()
    options = FalOptions(image_transport="data_uri")
    go(run, fake, generate(reference=path, operation=Edit(image=path, mask=mask)), options)
    (post,) = fake.sent("POST")
    assert int(post.headers["content-length"]) == len(post.content)
    body = json.loads(post.content)
    assert str(post.url).endswith("/fal-ai/ideogram/character/edit")
    for field, expected in (("image_url", path.read_bytes()), ("mask_url", mask)):
        prefix, encoded = body[field].split(",", 1)
        assert prefix == "data:image/png;base64" and base64.b64decode(encoded) == expected
    assert base64.b64decode(body["reference_image_urls"][0].split(",", 1)[1]) == path.read_bytes()


def test_url_inputs_go_as_plain_json(run: Runner) -> None:
    fake = FakeFal()
    go(run, fake, generate())
    assert fake.submit_body()["reference_image_urls"] == [REF_URL]


def test_vendor_headers_are_set_from_options(run: Runner) -> None:
    fake = FakeFal()
    options = FalOptions(
        request_timeout=30, priority="low", runner_hint="h1", no_retry=True, object_expiration_seconds=3600
    )
    go(run, fake, generate(), options)
    (post,) = fake.sent("POST")
    assert post.headers["x-fal-request-timeout"] == "30.0"
    assert post.headers["x-fal-queue-priority"] == "low"
    assert post.headers["x-fal-runner-hint"] == "h1"
    assert post.headers["x-fal-no-retry"] == "1"
    assert json.loads(post.headers["x-fal-object-lifecycle-preference"]) == {"expiration_duration_seconds": 3600}
    assert "x-fal-queue-priority" not in fake.sent("GET", "/status")[0].headers


def test_base_urls_are_configurable_at_call_time_scheme_included(run: Runner) -> None:
    base = "http://127.0.0.1:8765/fal"
    fake = FakeFal(queue=base)
    events: list[Event] = []
    output = run(FalProvider().exchange(generate(), context(queue=base)), fake, events)
    assert str(fake.requests[0].url) == f"{base}/fal-ai/ideogram/character"
    assert str(fake.requests[1].url).startswith(f"{base}/fal-ai/ideogram/requests/")
    assert len(output.images) == 1


# -- outputs ------------------------------------------------------------------------------------------------


def test_a_failed_download_keeps_the_paid_images_that_arrived(run: Runner) -> None:
    fake = FakeFal(num_images=3, images={f"{CDN}/files/panda/out-1.png": httpx.Response(404)})
    output, _ = go(run, fake, generate(num_images=3))
    assert len(output.images) == 2
    (failure,) = output.failures
    assert failure.index == 1 and failure.billed == "yes" and "could not fetch the image" in failure.reason


def test_fewer_images_than_asked_are_reported_not_dropped(run: Runner) -> None:
    fake = FakeFal(num_images=1)
    output, _ = go(run, fake, generate(num_images=2))
    assert len(output.images) == 1 and [f.index for f in output.failures] == [1]


def test_when_no_image_can_be_downloaded_the_error_says_it_was_billed(run: Runner) -> None:
    fake = FakeFal(images={f"{CDN}/files/panda/out-0.png": httpx.Response(410)})
    with pytest.raises(UnexpectedResponse) as caught:
        go(run, fake, generate())
    assert caught.value.billed == "yes" and caught.value.vendor_request_id == fake.request_id


def test_data_url_outputs_are_decoded_without_a_download(run: Runner) -> None:
    inline = "data:image/png;base64," + base64.b64encode(make_image(30, 20, "PNG")).decode()
    fake = FakeFal()
    fake.result = httpx.Response(200, json={"images": [{"url": inline}], "seed": 1})
    output, _ = go(run, fake, generate(), FalOptions(sync_mode=True))
    assert fake.submit_body()["sync_mode"] is True
    assert not [r for r in fake.requests if r.url.host == "v3.fal.media"]
    assert (output.images[0].width, output.images[0].height) == (30, 20)


def test_an_unreadable_output_is_unexpected_and_billed(run: Runner) -> None:
    fake = FakeFal(result=httpx.Response(200, json={"images": "not a list"}))
    with pytest.raises(UnexpectedResponse, match="unreadable"):
        go(run, fake, generate())


# -- through the client ---------------------------------------------------------------------------------------


def test_the_client_serves_a_fal_job_and_prices_it_per_image() -> None:
    fake = FakeFal(num_images=2)
    events: list[Event] = []
    pm = plugin_manager(load_entrypoints=False, plugins=[_FalOnly()])
    with Client(
        ["fal"],
        plugin_manager=pm,
        keys={"fal": CANARY_KEY},
        http=httpx.Client(transport=httpx.MockTransport(fake)),
        fetch_http=httpx.Client(transport=httpx.MockTransport(fake)),
        on_event=events.append,
    ) as client:
        result = client.generate("a knight", REF_URL, num_images=2, speed="turbo")
    assert result.provider == "fal" and result.vendor_request_id == fake.request_id
    assert result.cost_usd == Decimal("0.20") and len(result.images) == 2
    assert "submitted" in kinds(events)


def test_errors_through_the_client_never_show_the_key() -> None:
    fake = FakeFal(submit=httpx.Response(401, json={"detail": f"No user found for Key {CANARY_KEY}"}))
    pm = plugin_manager(load_entrypoints=False, plugins=[_FalOnly()])
    with (
        Client(
            ["fal"], plugin_manager=pm, keys={"fal": CANARY_KEY}, http=httpx.Client(transport=httpx.MockTransport(fake))
        ) as client,
        pytest.raises(IdeocharError) as caught,
    ):
        client.generate("a knight", REF_URL)
    text = f"{caught.value} {caught.value!r} {getattr(caught.value, 'errors', '')}"
    assert CANARY_KEY not in text and CANARY_KEY[:12] not in text


class _FalOnly:
    from ideochar import hookimpl

    @hookimpl
    def ideochar_register_providers(self, register: Any) -> None:
        register(FalProvider())


def test_a_job_still_running_at_the_deadline_stops_polling_and_names_the_job() -> None:
    import time

    from ideochar.exchange import drive

    fake = FakeFal(
        stream=[{"status": "IN_PROGRESS"}], polls=[httpx.Response(202, json={"status": "IN_PROGRESS"})] * 500
    )
    provider, ctx = FalProvider(), context()
    flow = provider_flow(provider, provider.exchange(generate(), ctx), ctx)
    with httpx.Client(transport=httpx.MockTransport(fake)) as http, pytest.raises(OutcomeUnknown) as caught:
        drive(flow, http, deadline=time.monotonic() + 0.2, fetch=http)
    assert caught.value.vendor_request_id == fake.request_id and caught.value.admitted
    assert len(fake.sent("POST")) == 1 and not [r for r in fake.requests if str(r.url) == fake.job]

"""fal, faithfully: local images through fal's storage (CDN token, then upload; the initiate-and-PUT
fallback; lifecycle headers; reuse while the upload lives), one seed per call reported for the call,
downloads checked against fal's ``file_size`` and ``content_type``, ``X-Fal-Retryable`` kept, queue
logs passed on, and the live price read from fal's platform API. Both drivers, against a fake fal."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fal_fakes import CDN, PLATFORM, QUEUE, REST, RUNNERS, SIGNED, FakeFal, Runner, context

import ideochar.exchange
import ideochar.toolkit
import ideochar_fal.provider
from conftest import CANARY_KEY, make_image
from ideochar.errors import AuthenticationFailed, ProviderUnavailable, UnexpectedResponse
from ideochar.events import Event
from ideochar.request import CharacterRequest, Edit
from ideochar.router import provider_flow
from ideochar.spec import CallContext
from ideochar.uploads import REUSE_MARGIN_SECONDS, UploadCache
from ideochar_fal.provider import FalOptions, FalProvider

REF_URL = "https://v3.fal.media/files/koala/reference.png"
LIFECYCLE = '{"expiration_duration_seconds":86400}'


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Runner:
    return RUNNERS[request.param]


@pytest.fixture(autouse=True)
def fast_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ideochar_fal.provider, "POLL_INITIAL_SECONDS", 0.001)
    monkeypatch.setattr(ideochar_fal.provider, "POLL_MAX_SECONDS", 0.002)
    monkeypatch.setattr(ideochar.toolkit, "backoff_seconds", lambda attempt: 0.001)
    monkeypatch.setattr(ideochar.exchange, "backoff_seconds", lambda attempt: 0.001)


def with_cache(cache: UploadCache, options: FalOptions | None = None) -> CallContext:
    ctx = context(options)
    return CallContext(
        ctx.provider, ctx.credentials, ctx.base_urls, ctx.options, user_agent=ctx.user_agent, uploads=cache
    )


def go(
    run: Runner, fake: FakeFal, request: CharacterRequest, ctx: CallContext | None = None
) -> tuple[Any, list[Event]]:
    events: list[Event] = []
    provider, ctx = FalProvider(), ctx or context()
    return run(provider_flow(provider, provider.exchange(request, ctx), ctx), fake, events), events


def local(tmp_path: Path, name: str = "face.png", color: str = "green") -> Path:
    path = tmp_path / name
    path.write_bytes(make_image(120, 90, "PNG", color=color))
    return path


# -- local images through fal's storage ----------------------------------------------------------------------


def test_local_images_are_uploaded_to_fals_cdn_first_and_sent_by_url(run: Runner, tmp_path: Path) -> None:
    face = local(tmp_path)
    mask = make_image(120, 90, "PNG", color="black")
    fake = FakeFal()
    go(run, fake, CharacterRequest(prompt="p", reference=face, operation=Edit(image=face, mask=mask)))

    token, first, second, submit = fake.requests[:4]
    assert (token.method, str(token.url)) == ("POST", f"{REST}/storage/auth/token?storage_type=fal-cdn-v3")
    assert token.headers["authorization"] == f"Key {CANARY_KEY}" and json.loads(token.content) == {}
    for upload in (first, second):
        assert (upload.method, str(upload.url)) == ("POST", f"{CDN}/files/upload")
        assert upload.headers["authorization"] == "Bearer cdn-token-7d1e"  # the token, never the key
        assert upload.headers["content-type"] == "image/png"
        assert upload.headers["x-fal-object-lifecycle"] == upload.headers["x-fal-object-lifecycle-preference"]
        assert upload.headers["x-fal-object-lifecycle"] == LIFECYCLE
    assert first.headers["x-fal-file-name"] == "reference.png"  # not the caller's file name
    assert fake.uploaded == [face.read_bytes(), mask]  # the face given twice is uploaded once
    assert str(submit.url) == f"{QUEUE}/fal-ai/ideogram/character/edit"
    body = fake.submit_body()
    assert body["reference_image_urls"] == [f"{CDN}/files/upload-1.png"]
    assert (body["image_url"], body["mask_url"]) == (f"{CDN}/files/upload-1.png", f"{CDN}/files/upload-2.png")
    assert all(
        CANARY_KEY not in r.headers.get("authorization", "") for r in fake.requests if r.url.host == "v3.fal.media"
    )


def test_the_cdn_path_failing_falls_back_to_initiate_and_a_signed_put(run: Runner, tmp_path: Path) -> None:
    face = local(tmp_path)
    fake = FakeFal(token=httpx.Response(503, text="<html>nginx</html>"))
    go(run, fake, CharacterRequest(prompt="p", reference=face))
    initiate = next(r for r in fake.requests if r.url.path == "/storage/upload/initiate")
    assert str(initiate.url) == f"{REST}/storage/upload/initiate?storage_type=gcs"
    assert initiate.headers["authorization"] == f"Key {CANARY_KEY}"
    assert initiate.headers["x-fal-object-lifecycle"] == LIFECYCLE
    assert json.loads(initiate.content) == {"file_name": "reference.png", "content_type": "image/png"}
    put = next(r for r in fake.requests if r.method == "PUT")
    assert str(put.url).startswith(f"{SIGNED}/put/1") and "authorization" not in put.headers
    assert fake.uploaded == [face.read_bytes()]
    assert fake.submit_body()["reference_image_urls"] == [f"{CDN}/files/initiated-1.png"]


def test_a_refused_key_stops_before_anything_billable_is_sent(run: Runner, tmp_path: Path) -> None:
    fake = FakeFal(token=httpx.Response(401, json={"detail": "No user found for Key ID and Secret"}))
    with pytest.raises(AuthenticationFailed) as caught:
        go(run, fake, CharacterRequest(prompt="p", reference=local(tmp_path)))
    assert caught.value.billed == "no" and not caught.value.admitted
    assert not [r for r in fake.requests if r.url.host == "queue.fal.run"]


def test_both_paths_failing_is_unavailable_and_unbilled(run: Runner, tmp_path: Path) -> None:
    fake = FakeFal(cdn_upload=httpx.Response(500), put=httpx.Response(403, text="SignatureDoesNotMatch"))
    with pytest.raises(ProviderUnavailable) as caught:
        go(run, fake, CharacterRequest(prompt="p", reference=local(tmp_path)))
    assert caught.value.billed == "no"
    assert not [r for r in fake.requests if r.url.host == "queue.fal.run"]


def test_the_data_uri_transport_uploads_nothing(run: Runner, tmp_path: Path) -> None:
    fake = FakeFal()
    go(
        run,
        fake,
        CharacterRequest(prompt="p", reference=local(tmp_path)),
        context(FalOptions(image_transport="data_uri")),
    )
    assert fake.uploaded == [] and fake.submit_body()["reference_image_urls"][0].startswith("data:image/png;base64,")


def test_an_upload_is_reused_while_it_lives_and_never_after(run: Runner, tmp_path: Path) -> None:
    now = [1_000_000.0]
    cache = UploadCache(clock=lambda: now[0])
    fake = FakeFal()
    request = CharacterRequest(prompt="p", reference=local(tmp_path))
    for _ in range(3):
        go(run, fake, request, with_cache(cache))
    assert len(fake.uploaded) == 1
    assert sum(r.url.path == "/storage/auth/token" for r in fake.requests) == 1
    now[0] += 86400 - REUSE_MARGIN_SECONDS + 1  # less than the margin left: not handed to fal again
    go(run, fake, request, with_cache(cache))
    assert len(fake.uploaded) == 2
    bodies = [json.loads(r.content) for r in fake.requests if r.url.host == "queue.fal.run" and r.method == "POST"]
    urls = [b["reference_image_urls"][0] for b in bodies]
    assert urls == [f"{CDN}/files/upload-1.png"] * 3 + [f"{CDN}/files/upload-2.png"]


def test_the_cdn_token_is_held_for_the_next_upload(run: Runner, tmp_path: Path) -> None:
    cache, fake = UploadCache(), FakeFal()
    go(run, fake, CharacterRequest(prompt="p", reference=local(tmp_path)), with_cache(cache))
    go(run, fake, CharacterRequest(prompt="p", reference=local(tmp_path, "other.png", "blue")), with_cache(cache))
    assert len(fake.uploaded) == 2
    assert sum(r.url.path == "/storage/auth/token" for r in fake.requests) == 1


def test_a_refused_token_is_dropped_and_the_upload_falls_back(run: Runner, tmp_path: Path) -> None:
    cache = UploadCache()
    fake = FakeFal(cdn_upload=httpx.Response(401, json={"detail": "token expired"}))
    go(run, fake, CharacterRequest(prompt="p", reference=local(tmp_path)), with_cache(cache))
    assert fake.submit_body()["reference_image_urls"] == [f"{CDN}/files/initiated-1.png"]
    assert cache._tokens == {}  # dropped: the next upload asks for a new one


# -- results, honestly per image --------------------------------------------------------------------------------


def test_one_image_carries_the_calls_seed(run: Runner) -> None:
    output, _ = go(run, FakeFal(seed=777), CharacterRequest(prompt="p", reference=REF_URL))
    assert output.images[0].seed == 777 and output.metadata["seed"] == 777


def test_several_images_report_the_calls_seed_for_the_call_not_for_each_image(run: Runner) -> None:
    output, _ = go(run, FakeFal(seed=777, num_images=3), CharacterRequest(prompt="p", reference=REF_URL, num_images=3))
    assert [image.seed for image in output.images] == [None, None, None]
    assert output.metadata["seed"] == 777


def _output_with(fake: FakeFal, **file: Any) -> httpx.Response:
    document = fake.output()
    document["images"][0].update(file)
    return httpx.Response(200, json=document)


def test_a_download_of_another_size_than_fal_states_is_fetched_again_then_refused(run: Runner) -> None:
    fake = FakeFal()
    fake.result = _output_with(fake, file_size=999_999)
    with pytest.raises(UnexpectedResponse) as caught:
        go(run, fake, CharacterRequest(prompt="p", reference=REF_URL))
    assert "999,999" in str(caught.value.__cause__ or caught.value) or "could be downloaded" in str(caught.value)
    assert len([r for r in fake.requests if r.url.path.startswith("/files/panda")]) == 2


def test_a_download_of_the_stated_size_is_kept(run: Runner) -> None:
    fake = FakeFal()
    size = len(make_image(64, 48, "PNG"))
    fake.result = _output_with(fake, file_size=size)
    output, _ = go(run, fake, CharacterRequest(prompt="p", reference=REF_URL))
    assert len(output.images[0].data) == size and not output.warnings


def test_bytes_of_another_format_than_fal_states_are_kept_under_their_real_type_with_a_warning(run: Runner) -> None:
    fake = FakeFal()
    fake.result = _output_with(fake, content_type="image/jpeg")
    output, _ = go(run, fake, CharacterRequest(prompt="p", reference=REF_URL))
    assert output.images[0].content_type == "image/png"
    assert any("image/jpeg" in w.message for w in output.warnings)


@pytest.mark.parametrize(
    ("header", "value", "hint"),
    [("X-Fal-Retryable", "true", True), ("X-Fal-Retryable", "false", False), ("X-Fal-Needs-Retry", "1", True)],
)
def test_falls_retry_hint_is_kept_on_the_error_for_the_router(run: Runner, header: str, value: str, hint: bool) -> None:
    fake = FakeFal(
        submit=httpx.Response(
            503,
            json={"detail": "busy", "error_type": "runner_scheduling_failure"},
            headers={"x-fal-request-id": "r1", header: value},
        )
    )
    with pytest.raises(ProviderUnavailable) as caught:
        go(run, fake, CharacterRequest(prompt="p", reference=REF_URL))
    assert caught.value.retryable is hint


def test_no_retry_hint_is_none(run: Runner) -> None:
    fake = FakeFal(submit=httpx.Response(503, json={"detail": "busy"}, headers={"x-fal-request-id": "r1"}))
    with pytest.raises(ProviderUnavailable) as caught:
        go(run, fake, CharacterRequest(prompt="p", reference=REF_URL))
    assert caught.value.retryable is None


# -- queue logs as progress events ---------------------------------------------------------------------------


def _log(message: str) -> dict[str, str]:
    return {"message": message, "level": "INFO", "source": "user", "timestamp": "2026-01-01T00:00:00Z"}


def test_queue_logs_on_the_stream_become_progress_events_once_each(run: Runner) -> None:
    fake = FakeFal()
    fake.stream = [
        {"status": "IN_PROGRESS", "logs": [_log("loading weights")], "response_url": fake.job},
        {"status": "IN_PROGRESS", "logs": [_log("loading weights"), _log("step 1/4")], "response_url": fake.job},
        fake.completed(logs=[_log("loading weights"), _log("step 1/4"), _log("done")]),
    ]
    _, events = go(run, fake, CharacterRequest(prompt="p", reference=REF_URL))
    logs = [e.message for e in events if e.kind == "progress" and e.message and e.message.startswith("fal log:")]
    assert logs == ["fal log: loading weights", "fal log: step 1/4", "fal log: done"]
    first = next(e for e in events if e.message == "fal log: loading weights")
    assert first.data == {"level": "INFO", "source": "user", "timestamp": "2026-01-01T00:00:00Z"}


def test_queue_logs_while_polling_become_progress_events(run: Runner) -> None:
    fake = FakeFal(
        stream=httpx.Response(404),
        polls=[
            httpx.Response(202, json={"status": "IN_PROGRESS", "logs": [_log("a")]}),
            httpx.Response(202, json={"status": "IN_PROGRESS", "logs": [_log("a"), _log("b")]}),
        ],
    )
    _, events = go(run, fake, CharacterRequest(prompt="p", reference=REF_URL))
    assert [e.message for e in events if e.message and e.message.startswith("fal log:")] == ["fal log: a", "fal log: b"]
    assert all("logs=1" in str(r.url) for r in fake.sent("GET", "/status?"))


def test_a_flood_of_log_lines_is_capped(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ideochar_fal.provider, "MAX_LOG_EVENTS", 3)
    fake = FakeFal()
    fake.stream = [fake.completed(logs=[_log(f"line {i}") for i in range(50)])]
    _, events = go(run, fake, CharacterRequest(prompt="p", reference=REF_URL))
    assert len([e for e in events if e.message and e.message.startswith("fal log:")]) == 3


# -- live prices ------------------------------------------------------------------------------------------


def _price(run: Runner, fake: FakeFal, speed: str = "default") -> Any:
    provider, ctx = FalProvider(), context()
    request = CharacterRequest(prompt="p", reference=REF_URL, speed=speed)
    return run(provider.live_price(request, ctx), fake, [])


def test_the_live_price_is_read_from_fals_platform_api(run: Runner) -> None:
    fake = FakeFal()
    assert _price(run, fake) == Decimal("0.12")
    (asked,) = fake.requests
    assert str(asked.url) == f"{PLATFORM}/v1/models/pricing?endpoint_id=fal-ai%2Fideogram%2Fcharacter"
    assert asked.headers["authorization"] == f"Key {CANARY_KEY}"
    assert _price(run, fake, "turbo") == Decimal("0.0800")


def test_no_per_image_usd_price_for_the_endpoint_is_none(run: Runner) -> None:
    fake = FakeFal(pricing=httpx.Response(200, json={"prices": [{"endpoint_id": "fal-ai/other", "unit_price": 1}]}))
    assert _price(run, fake) is None


def test_a_live_quote_that_cannot_be_had_is_the_declared_price_with_a_warning(run: Runner) -> None:
    provider = FalProvider()
    request = CharacterRequest(prompt="p", reference=REF_URL, num_images=2)
    fake = FakeFal(pricing=httpx.Response(500, json={"detail": "down"}, headers={"x-fal-request-id": "x"}))
    quote = run(provider.live_quote(request, context), fake, [])
    assert quote.price_source == "declared" and quote.unit_price_usd == Decimal("0.15")
    assert any("live price could not be read" in w.message for w in quote.warnings)
    live = run(provider.live_quote(request, context), FakeFal(), [])
    assert (live.price_source, live.unit_price_usd, live.total_usd) == ("live", Decimal("0.12"), Decimal("0.24"))


# -- where the upload's secrets and bytes may go ---------------------------------------------------------------


def test_a_cdn_token_naming_another_host_is_never_used_there(run: Runner, tmp_path: Path) -> None:
    token = {"token": "t-123456", "token_type": "Bearer", "base_url": "https://evil.example", "expires_at": None}
    fake = FakeFal(token=httpx.Response(200, json=token))
    go(run, fake, CharacterRequest(prompt="p", reference=local(tmp_path)))
    assert not [r for r in fake.requests if r.url.host == "evil.example"]
    assert fake.submit_body()["reference_image_urls"] == [f"{CDN}/files/initiated-1.png"]  # the fallback path


def test_the_signed_put_goes_through_the_guarded_fetch_client_never_with_the_key(tmp_path: Path) -> None:
    from ideochar.exchange import drive

    fake = FakeFal(token=httpx.Response(503))
    provider, ctx = FalProvider(), context()
    request = CharacterRequest(prompt="p", reference=local(tmp_path))
    with httpx.Client(transport=httpx.MockTransport(fake)) as http, pytest.raises(ProviderUnavailable):
        drive(provider_flow(provider, provider.exchange(request, ctx), ctx), http)  # no fetch client given
    assert not [r for r in fake.requests if r.method == "PUT"]  # refused by the driver: never sent via `http`
    assert not [r for r in fake.requests if r.url.host == "queue.fal.run"]

"""The Replicate exchange over httpx.MockTransport, through both ``drive`` and ``adrive``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from replicate_fakes import (
    API,
    CREATE_URL,
    DRIVERS,
    OUTPUT_URL,
    PREDICTION_ID,
    TOKEN,
    Driver,
    FakeReplicate,
    context,
    noisy_png,
    png_bytes,
    prediction,
    run,
)
from requests_toolbelt.multipart.decoder import MultipartDecoder

import ideochar.toolkit
from ideochar import Client
from ideochar._constants import POLL_INITIAL_SECONDS, POLL_MAX_SECONDS
from ideochar.errors import (
    ContentFiltered,
    GenerationFailed,
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    RequestRejected,
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.exchange import Send, Sleep
from ideochar.hookspecs import hookimpl
from ideochar.plugins import plugin_manager
from ideochar.request import CharacterRequest, Edit
from ideochar.router import provider_flow
from ideochar.toolkit import PollSchedule
from ideochar_replicate import provider as provider_module
from ideochar_replicate import reconcile
from ideochar_replicate.provider import POLL_FAILURES_TOLERATED, ReplicateProvider

REF_URL = "https://example.com/face.png"


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    """Every exchange test runs through the blocking and the async driver."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _no_poll_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll spacing is tested on its own below, and the looks at the list after a lost answer in
    test_replicate_reconcile.py; here they would only slow the suite down."""
    monkeypatch.setattr(provider_module, "POLL_SCHEDULE", PollSchedule(0.0, 0.0, failures=POLL_FAILURES_TOLERATED))
    monkeypatch.setattr(ideochar.toolkit, "backoff_seconds", lambda failures: 0.0)
    monkeypatch.setattr(reconcile, "LOST_ANSWER_LOOKS_SECONDS", (0.0, 0.0))


def _generate(fake: FakeReplicate, driver: Driver, events: list[Event] | None = None, **fields: Any) -> Any:
    options = fields.pop("options", {})
    request = CharacterRequest(prompt="a knight in the rain", reference=fields.pop("reference", png_bytes()), **fields)
    return run(driver, ReplicateProvider().exchange(request, context(**options)), fake, events)


def _fail(fake: FakeReplicate, driver: Driver, **options: Any) -> ProviderError:
    request = CharacterRequest(prompt="a knight", reference=REF_URL)
    with pytest.raises(ProviderError) as caught:
        run(driver, ReplicateProvider().exchange(request, context(**options)), fake)
    return caught.value


def test_terminal_answer_to_prefer_wait_needs_no_poll(driver: Driver) -> None:
    fake = FakeReplicate(image=png_bytes(64, 32))
    events: list[Event] = []
    output = _generate(fake, driver, events, options={"wait": 5})

    (create,) = fake.creates
    assert str(create.url) == CREATE_URL
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.headers["prefer"] == "wait=5"
    assert "cancel-after" not in create.headers
    assert fake.sent("GET", f"/v1/predictions/{PREDICTION_ID}") == []
    assert [str(r.url) for r in fake.sent("GET")] == [OUTPUT_URL]
    # The output lives on the CDN, not under the API: the token is not sent there.
    assert "authorization" not in fake.sent("GET")[0].headers

    (image,) = output.images
    assert (image.width, image.height, image.content_type) == (64, 32, "image/png")
    assert image.seed == 144578042
    assert image.prompt == "A striking fashion photograph of a woman"
    assert output.vendor_request_id == PREDICTION_ID
    assert output.metadata["predict_time_seconds"] == 14.48
    submitted = [e for e in events if e.kind == "submitted"]
    assert submitted[0].vendor_request_id == PREDICTION_ID
    assert submitted[0].resume == {
        "id": PREDICTION_ID,
        "get_url": f"{API}/v1/predictions/{PREDICTION_ID}",
        "cancel_url": f"{API}/v1/predictions/{PREDICTION_ID}/cancel",
    }


def test_unfinished_prediction_is_polled_until_it_succeeds(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("starting")),
        polls=[
            httpx.Response(200, json=prediction("starting")),
            httpx.Response(200, json=prediction("processing")),
            httpx.Response(200, json=prediction("succeeded", output=[OUTPUT_URL])),  # a one-element list
        ],
    )
    events: list[Event] = []
    output = _generate(fake, driver, events, options={"wait": 0, "cancel_after": "5m"})

    (create,) = fake.creates
    assert "prefer" not in create.headers
    assert create.headers["cancel-after"] == "5m"
    polls = fake.sent("GET", f"/v1/predictions/{PREDICTION_ID}")
    assert len(polls) == 3
    assert all(p.headers["authorization"] == f"Bearer {TOKEN}" for p in polls)
    assert len(output.images) == 1
    kinds = [(e.kind, e.status) for e in events]
    assert kinds == [("submitted", "queued"), ("progress", "running")]


def test_failed_prediction_reading_as_nsfw_is_content_filtered(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("processing")),
        polls=[httpx.Response(200, json=prediction("failed", error="NSFW content detected. Try a different prompt."))],
    )
    error = _fail(fake, driver)
    assert type(error) is ContentFiltered
    assert error.vendor_request_id == PREDICTION_ID
    assert error.admitted and error.billed == "unknown"
    assert "NSFW content detected" in str(error)
    assert not error.fail_over
    assert fake.sent("GET", ".png") == []


def test_failed_prediction_for_another_reason_is_generation_failed(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("failed", error="CUDA error: out of memory")),
    )
    error = _fail(fake, driver)
    assert type(error) is GenerationFailed
    assert "out of memory" in str(error)
    assert error.vendor_request_id == PREDICTION_ID and error.fail_over


def test_aborted_prediction_is_not_billed_and_may_fail_over(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("starting")),
        polls=[httpx.Response(200, json=prediction("aborted"))],
    )
    error = _fail(fake, driver, cancel_after="30s")
    assert type(error) is GenerationFailed
    assert error.billed == "no" and error.fail_over
    assert "aborted" in str(error)
    assert fake.creates[0].headers["cancel-after"] == "30s"


def test_canceled_prediction_may_have_been_billed(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("processing")),
        polls=[httpx.Response(200, json=prediction("canceled"))],
    )
    error = _fail(fake, driver)
    assert type(error) is GenerationFailed
    assert error.billed == "unknown"
    assert "canceled" in str(error)


def test_small_local_reference_travels_as_a_data_uri(driver: Driver) -> None:
    reference = png_bytes(40, 40, "green")
    fake = FakeReplicate()
    _generate(fake, driver, reference=reference)
    sent = fake.create_body()["input"]["character_reference_image"]
    assert sent.startswith("data:image/png;base64,")
    assert fake.sent("POST", "/v1/files") == []


def test_url_reference_passes_through_without_being_fetched(driver: Driver) -> None:
    fake = FakeReplicate()
    _generate(fake, driver, reference=REF_URL)
    assert fake.create_body()["input"]["character_reference_image"] == REF_URL
    assert [r for r in fake.requests if r.url.host == "example.com"] == []


def test_large_local_reference_is_streamed_to_files_and_its_url_used(driver: Driver, tmp_path: Path) -> None:
    data = noisy_png(1_200_000)
    path = tmp_path / "hero reference.png"
    path.write_bytes(data)
    fake = FakeReplicate()
    _generate(fake, driver, reference=path)

    (upload,) = fake.sent("POST", "/v1/files")
    assert upload.headers["authorization"] == f"Bearer {TOKEN}"
    assert int(upload.headers["content-length"]) == len(upload.content)
    (part,) = MultipartDecoder(upload.content, upload.headers["content-type"]).parts
    disposition = part.headers[b"Content-Disposition"].decode()
    assert 'name="content"' in disposition and 'filename="hero reference.png"' in disposition
    assert part.headers[b"Content-Type"] == b"image/png"
    assert part.content == data
    # The upload came first, and the prediction points at the uploaded file.
    assert fake.requests.index(upload) < fake.requests.index(fake.creates[0])
    assert fake.create_body()["input"]["character_reference_image"] == f"{API}/v1/files/ZjA0N2Q5ZGItNmNhNS00ZTM2"


def test_edit_uploads_a_large_image_and_inlines_a_small_mask(driver: Driver) -> None:
    base = noisy_png(1_100_000)
    side = int((1_100_000 / 3) ** 0.5) + 16
    mask = png_bytes(side, side, "black")
    fake = FakeReplicate()
    request = CharacterRequest(prompt="in a cafe", reference=REF_URL, operation=Edit(image=base, mask=mask))
    run(driver, ReplicateProvider().exchange(request, context()), fake)
    body = fake.create_body()["input"]
    assert body["image"].startswith(f"{API}/v1/files/")
    assert body["mask"].startswith("data:image/png;base64,")
    assert len(fake.sent("POST", "/v1/files")) == 1


def test_failed_upload_is_not_repeated_and_nothing_is_created(driver: Driver) -> None:
    fake = FakeReplicate(upload=httpx.ReadTimeout("upload answer lost"))
    request = CharacterRequest(prompt="p", reference=png_bytes(), extra={})
    with pytest.raises(ProviderUnavailable) as caught:
        run(driver, ReplicateProvider().exchange(request, context(data_uri_max_bytes=0)), fake)
    assert caught.value.sent  # it left: the router will not repeat it blindly
    assert len(fake.sent("POST", "/v1/files")) == 1
    assert fake.creates == []


def _case(
    status: int,
    body: Any,
    expected: str,
    billed: str = "no",
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    return pytest.param(status, body, headers or {}, expected, billed, retry_after, id=f"{status}-{expected}")


_THROTTLED = "Request was throttled. Your rate limit resets in ~30s."
_HTML = {"content-type": "text/html"}

#: Bodies shaped like Replicate's RFC 7807 problems. The 429 detail is quoted from its rate-limit docs; the other
#: wordings are plausible, not captured: the class must follow from the status, whatever the words.
CREATE_ERRORS = [
    _case(
        401,
        {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401},
        "AuthenticationFailed",
    ),
    _case(
        402,
        {
            "title": "Insufficient credit",
            "status": 402,
            "detail": "You have insufficient credit to run this model. Go to "
            "https://replicate.com/account/billing#billing to purchase credit.",
        },
        "InsufficientCredits",
    ),
    _case(
        403,
        {"title": "Forbidden", "detail": "You do not have permission to perform this action.", "status": 403},
        "AuthenticationFailed",
    ),
    _case(
        404,
        {"title": "Not found", "detail": "The requested resource could not be found.", "status": 404},
        "ProviderUnavailable",
    ),
    _case(
        422,
        {
            "title": "Input validation failed",
            "status": 422,
            "detail": '- input.aspect_ratio: aspect_ratio must be one of the following: "1:1", ...',
            "invalid_fields": [{"type": "enum", "field": "input.aspect_ratio", "description": "..."}],
        },
        "RequestRejected",
    ),
    _case(
        429,
        {"title": "Request was throttled", "status": 429, "detail": _THROTTLED},
        "RateLimited",
        retry_after=12.0,
        headers={"retry-after": "12"},
    ),
    _case(429, {"detail": _THROTTLED, "status": 429}, "RateLimited", retry_after=30.0),
    _case(
        500, {"title": "Internal Server Error", "detail": "Something went wrong", "status": 500}, "ProviderUnavailable"
    ),
    _case(503, "<html><body><h1>503 Service Unavailable</h1></body></html>", "ProviderUnavailable", headers=_HTML),
    _case(502, "<html><body>Bad gateway</body></html>", "OutcomeUnknown", "unknown", headers=_HTML),
    _case(504, "", "OutcomeUnknown", "unknown"),
]


@pytest.mark.parametrize(("status", "body", "headers", "expected", "billed", "retry_after"), CREATE_ERRORS)
def test_error_answers_to_the_create_request_map_to_one_class_each(
    driver: Driver,
    status: int,
    body: Any,
    headers: dict[str, str],
    expected: str,
    billed: str,
    retry_after: float | None,
) -> None:
    answer = (
        httpx.Response(status, json=body, headers=headers)
        if isinstance(body, dict)
        else httpx.Response(status, text=body, headers=headers)
    )
    events: list[Event] = []
    request = CharacterRequest(prompt="p", reference=REF_URL)
    fake = FakeReplicate(create=answer)
    with pytest.raises(ProviderError) as caught:
        run(driver, ReplicateProvider().exchange(request, context()), fake, events)
    error = caught.value
    assert type(error).__name__ == expected
    assert error.status == status and error.billed == billed and error.retry_after == retry_after
    assert [e for e in events if e.kind == "submitted"] == []
    assert len(fake.creates) == 1
    if isinstance(body, dict) and body.get("detail"):
        assert body["detail"][:30] in str(error)
    if "invalid_fields" in (body if isinstance(body, dict) else {}):
        assert "input.aspect_ratio" in str(error)


def test_lost_answer_to_the_create_request_is_outcome_unknown_and_never_resent(driver: Driver) -> None:
    fake = FakeReplicate(create=httpx.ReadTimeout("the connection dropped"))
    error = _fail(fake, driver)
    assert type(error) is OutcomeUnknown
    assert "did not show it" in str(error)  # it was looked for in the list, twice here
    assert len(fake.creates) == 1 and len(fake.lists) == 2


def test_unreadable_created_prediction_is_outcome_unknown(driver: Driver) -> None:
    fake = FakeReplicate(create=httpx.Response(201, json={"status": "starting"}))
    error = _fail(fake, driver)
    assert type(error) is OutcomeUnknown and error.billed == "unknown"


def test_polls_are_repeated_through_transient_failures(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("processing")),
        polls=[
            httpx.Response(503, text="upstream connect error", headers={"content-type": "text/plain"}),
            httpx.ConnectError("refused"),
            httpx.Response(429, json={"detail": "Request was throttled.", "status": 429}, headers={"retry-after": "0"}),
            httpx.Response(200, text="<html>oops</html>"),
            httpx.Response(200, json=prediction("succeeded")),
        ],
    )
    output = _generate(fake, driver, reference=REF_URL)
    assert len(output.images) == 1
    assert len(fake.creates) == 1
    assert len(fake.sent("GET", f"/v1/predictions/{PREDICTION_ID}")) == 5


def test_a_status_answer_about_another_prediction_is_not_taken_for_ours(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("processing")),
        polls=[
            httpx.Response(200, json=prediction("succeeded", prediction_id="someoneelse0000000000000")),
            httpx.Response(200, json=prediction("succeeded")),
        ],
    )
    output = _generate(fake, driver, reference=REF_URL)
    assert output.vendor_request_id == PREDICTION_ID
    assert len(fake.sent("GET", f"/v1/predictions/{PREDICTION_ID}")) == 2


def test_polls_that_keep_failing_end_in_outcome_unknown_with_the_id(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("processing")),
        polls=[httpx.ConnectError("refused")],
    )
    provider, ctx = ReplicateProvider(), context()
    request = CharacterRequest(prompt="p", reference=REF_URL)
    with pytest.raises(OutcomeUnknown) as caught:
        run(driver, provider_flow(provider, provider.exchange(request, ctx), ctx), fake)
    assert caught.value.vendor_request_id == PREDICTION_ID and caught.value.admitted
    polls = fake.sent("GET", f"/v1/predictions/{PREDICTION_ID}")
    assert len(polls) == provider_module.POLL_FAILURES_TOLERATED + 1
    assert len(fake.creates) == 1


def test_a_poll_refused_as_unknown_prediction_is_not_repeated(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("processing")),
        polls=[httpx.Response(404, json={"detail": "Not found.", "status": 404})],
    )
    error = _fail(fake, driver)
    assert type(error) is RequestRejected and error.vendor_request_id == PREDICTION_ID
    assert len(fake.sent("GET", f"/v1/predictions/{PREDICTION_ID}")) == 1


def test_succeeded_without_output_is_never_an_empty_result(driver: Driver) -> None:
    fake = FakeReplicate(create=httpx.Response(201, json=prediction("succeeded", output=None, data_removed=True)))
    error = _fail(fake, driver)
    assert type(error) is UnexpectedResponse and error.billed == "yes"
    assert "removed" in str(error)


def test_token_goes_only_to_the_api_base_even_when_a_reply_points_elsewhere(driver: Driver) -> None:
    evil = "https://collector.example.net/v1/predictions/" + PREDICTION_ID
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("processing", urls={"get": evil, "cancel": evil + "/cancel"})),
        polls=[httpx.Response(200, json=prediction("succeeded"))],
    )
    _generate(fake, driver, reference=REF_URL)
    assert [r for r in fake.requests if r.url.host == "collector.example.net"] == []
    assert all(
        TOKEN not in r.headers.get("authorization", "") for r in fake.requests if r.url.host != "api.replicate.com"
    )


def test_resume_from_a_saved_id_polls_and_downloads(driver: Driver) -> None:
    fake = FakeReplicate(
        polls=[
            httpx.Response(200, json=prediction("processing")),
            httpx.Response(200, json=prediction("succeeded", logs="", input={"seed": 99})),
        ],
    )
    state = {"id": PREDICTION_ID, "get_url": f"{API}/v1/predictions/{PREDICTION_ID}", "cancel_url": "x"}
    output = run(driver, ReplicateProvider().resume(state, context()), fake)
    assert fake.creates == []
    assert len(fake.sent("GET", f"/v1/predictions/{PREDICTION_ID}")) == 2
    assert output.vendor_request_id == PREDICTION_ID
    assert output.images[0].seed == 99  # no seed in the logs: the prediction's input says


def test_resume_with_only_an_id_rebuilds_the_url_from_the_base(driver: Driver) -> None:
    fake = FakeReplicate(polls=[httpx.Response(200, json=prediction("succeeded"))])
    run(driver, ReplicateProvider().resume({"id": PREDICTION_ID}, context()), fake)
    assert str(fake.sent("GET", PREDICTION_ID)[0].url) == f"{API}/v1/predictions/{PREDICTION_ID}"


def test_resume_refuses_a_state_without_a_usable_id() -> None:
    fake = FakeReplicate()
    with pytest.raises(InvalidRequest):
        run("sync", ReplicateProvider().resume({"id": "../../v1/account"}, context()), fake)
    assert fake.requests == []


def test_cancel_posts_to_the_cancel_url(driver: Driver) -> None:
    fake = FakeReplicate()
    state = {"id": PREDICTION_ID, "cancel_url": f"{API}/v1/predictions/{PREDICTION_ID}/cancel"}
    assert run(driver, ReplicateProvider().cancel(state, context()), fake) == "canceled"
    (request,) = fake.requests
    assert request.method == "POST" and str(request.url) == state["cancel_url"]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_cancel_of_a_finished_prediction_reports_how_it_ended(driver: Driver) -> None:
    fake = FakeReplicate(cancel=httpx.Response(200, json=prediction("succeeded")))
    assert run(driver, ReplicateProvider().cancel({"id": PREDICTION_ID}, context()), fake) == "succeeded"
    assert str(fake.requests[0].url) == f"{API}/v1/predictions/{PREDICTION_ID}/cancel"


def test_cancel_of_an_unknown_prediction_says_so(driver: Driver) -> None:
    fake = FakeReplicate(cancel=httpx.Response(404, json={"detail": "Not found.", "status": 404}))
    with pytest.raises(RequestRejected):
        run(driver, ReplicateProvider().cancel({"id": PREDICTION_ID}, context()), fake)


def test_error_bodies_that_echo_the_token_do_not_leak_it(driver: Driver) -> None:
    echo = {"title": "Unauthenticated", "detail": f"Invalid token {TOKEN}", "status": 401}
    error = _fail(FakeReplicate(create=httpx.Response(401, json=echo)), driver)
    for text in (str(error), repr(error), json.dumps(error.body)):
        assert TOKEN not in text


def test_client_end_to_end_prices_and_names_the_result(driver: Driver) -> None:
    class Plugin:
        @hookimpl
        def ideochar_register_providers(self, register: Any) -> None:
            register(ReplicateProvider())

    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("starting")),
        polls=[httpx.Response(200, json=prediction("succeeded"))],
    )
    pm = plugin_manager(load_entrypoints=False, plugins=[Plugin()])
    if driver == "sync":
        with Client(
            ["replicate"],
            plugin_manager=pm,
            keys={"replicate": TOKEN},
            http=httpx.Client(transport=httpx.MockTransport(fake)),
            fetch_http=httpx.Client(transport=httpx.MockTransport(fake)),
        ) as client:
            result = client.generate("a knight", REF_URL, speed="quality", reference_mask=png_bytes())
    else:
        import anyio

        from ideochar import AsyncClient

        async def main() -> Any:
            async with AsyncClient(
                ["replicate"],
                plugin_manager=pm,
                keys={"replicate": TOKEN},
                http=httpx.AsyncClient(transport=httpx.MockTransport(fake)),
                fetch_http=httpx.AsyncClient(transport=httpx.MockTransport(fake)),
            ) as client:
                return await client.generate("a knight", REF_URL, speed="quality", reference_mask=png_bytes())

        result = anyio.run(main)
    assert result.provider == "replicate"
    assert result.vendor_request_id == PREDICTION_ID
    assert result.cost_usd == Decimal("0.20") and result.cost_source == "price_table"
    assert [w.field for w in result.warnings] == ["reference_mask"]
    assert result.image.seed == 144578042
    assert fake.create_body()["input"]["rendering_speed"] == "Quality"


def test_poll_spacing_starts_fast_and_backs_off_to_a_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real schedule
    flow = ReplicateProvider().exchange(CharacterRequest(prompt="p", reference=REF_URL), context())
    step = next(flow)
    assert isinstance(step, Send) and step.admits and step.request.method == "POST"
    created = httpx.Response(201, json=prediction("processing"), request=step.request)
    sleeps: list[float] = []
    step = flow.send(created)
    polls = 0
    while polls < 12:
        if isinstance(step, Sleep):
            sleeps.append(step.seconds)
            step = flow.send(None)
        elif isinstance(step, Send):
            assert step.request.method == "GET" and not step.admits
            polls += 1
            step = flow.send(httpx.Response(200, json=prediction("processing"), request=step.request))
        else:
            step = flow.send(None)
    flow.close()
    assert sleeps[0] == pytest.approx(POLL_INITIAL_SECONDS)
    assert sleeps == sorted(sleeps)
    assert max(sleeps) == pytest.approx(POLL_MAX_SECONDS)
    assert sleeps[1] > sleeps[0]

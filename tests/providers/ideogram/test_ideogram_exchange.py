"""The Ideogram exchange over httpx.MockTransport, through both ``drive`` and ``adrive``."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import httpx
import pytest
from ideogram_support import (
    DRIVERS,
    IMAGE_URL,
    KEY,
    Driver,
    FakeIdeogram,
    context,
    exchange_flow,
    form_of,
    generation,
    image_object,
    make_image,
    run,
)

from ideochar import Client
from ideochar._constants import MAX_REDIRECTS, MAX_REFERENCE_BYTES
from ideochar.errors import (
    AuthenticationFailed,
    ContentFiltered,
    InsufficientCredits,
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.exchange import Send
from ideochar.request import CharacterRequest, Edit, Remix
from ideochar_ideogram.provider import GENERATE_TIMEOUT_SECONDS, IdeogramProvider

URL_2 = IMAGE_URL.replace("xtdZiqPwRxqY1Y7NExFmzB", "second")
URL_3 = IMAGE_URL.replace("xtdZiqPwRxqY1Y7NExFmzB", "third")
REF_URL = "https://cdn.example.com/people/face.png"
PNG = make_image(64, 48)


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    """Every exchange test runs through the blocking and the async driver."""
    return request.param  # type: ignore[no-any-return]


def _request(**fields: Any) -> CharacterRequest:
    return CharacterRequest(
        prompt=fields.pop("prompt", "a knight in the rain"), reference=fields.pop("reference", PNG), **fields
    )


def _fail(fake: FakeIdeogram, driver: Driver, request: CharacterRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run(driver, exchange_flow(request or _request()), fake)
    return caught.value


def _no_key(error: BaseException) -> None:
    for text in (str(error), repr(error), repr(getattr(error, "body", None)), repr(pickle.loads(pickle.dumps(error)))):
        assert KEY not in text and KEY[:20] not in text


# -- the happy path ------------------------------------------------------------------------------------


def test_images_are_downloaded_at_once_with_their_seed_and_prompt(driver: Driver) -> None:
    fake = FakeIdeogram(
        answer=generation(
            image_object(IMAGE_URL, seed=11, prompt="magic one", resolution="1312x736"),
            image_object(URL_2, seed=22, prompt="magic two", resolution="1312x736"),
        ),
        images={IMAGE_URL: make_image(131, 73), URL_2: make_image(131, 73, color="red")},
    )
    events: list[Event] = []
    output = run(driver, exchange_flow(_request(num_images=2, aspect_ratio="16:9")), fake, events)
    assert [(i.seed, i.prompt, i.width, i.height) for i in output.images] == [
        (11, "magic one", 131, 73),
        (22, "magic two", 131, 73),
    ]
    assert [i.vendor_url for i in output.images] == [IMAGE_URL, URL_2]
    assert output.images[1].data == make_image(131, 73, color="red")
    assert output.failures == [] and output.warnings == []
    assert [f"{r.method} {r.url.path}" for r in fake.seen] == [
        "POST /v1/ideogram-v3/generate",
        "GET /api/images/ephemeral/xtdZiqPwRxqY1Y7NExFmzB.png",
        "GET /api/images/ephemeral/second.png",
    ]
    # No job id; the answer itself is journaled (before the first download) so a crash loses no image.
    [submitted] = [e for e in events if e.kind == "submitted"]
    assert submitted.vendor_request_id is None and submitted.resume is not None
    assert [i["url"] for i in submitted.resume["answer"]["data"]] == [IMAGE_URL, URL_2]
    assert output.vendor_request_id is None
    assert output.metadata["images"][0] == {
        "index": 0, "seed": 11, "resolution": "1312x736", "is_image_safe": True, "style_type": "AUTO"
    }  # fmt: skip
    assert IMAGE_URL not in repr(output.metadata)


def test_images_are_downloaded_without_the_key(driver: Driver) -> None:
    fake = FakeIdeogram(images={IMAGE_URL: make_image()})
    run(driver, exchange_flow(_request()), fake)
    post, download = fake.seen
    assert post.headers["api-key"] == KEY
    assert "api-key" not in download.headers and "authorization" not in download.headers


def test_the_post_admits_and_waits_long() -> None:
    flow = IdeogramProvider().exchange(_request(), context())
    step = next(flow)
    assert isinstance(step, Send) and step.admits and step.timeout == GENERATE_TIMEOUT_SECONDS == 180.0
    flow.close()
    flow = IdeogramProvider().exchange(_request(extra={"ideogram": {"timeout_seconds": 30}}), context())
    step = next(flow)
    assert isinstance(step, Send) and step.timeout == 30
    flow.close()


# -- withheld images ----------------------------------------------------------------------------------


def test_one_withheld_image_is_reported_not_dropped(driver: Driver) -> None:
    fake = FakeIdeogram(
        answer=generation(
            image_object(IMAGE_URL, seed=1), image_object(None, seed=2, safe=False), image_object(URL_3, seed=3)
        ),
        images={IMAGE_URL: make_image(), URL_3: make_image()},
    )
    output = run(driver, exchange_flow(_request(num_images=3)), fake)
    assert [i.seed for i in output.images] == [1, 3]
    (failure,) = output.failures
    assert (failure.index, failure.billed, failure.provider, failure.error_type) == (
        1,
        "yes",
        "ideogram",
        "ContentFiltered",
    )
    assert "safety" in failure.reason
    (warning,) = output.warnings
    assert warning.kind == "withheld" and warning.provider == "ideogram" and "image 2" in warning.message
    assert len(fake.seen) == 3  # no download was tried for the withheld image


def test_an_unsafe_flag_withholds_even_with_a_url(driver: Driver) -> None:
    fake = FakeIdeogram(
        answer=generation(image_object(IMAGE_URL, seed=1), image_object(URL_2, seed=2, safe=False)),
        images={IMAGE_URL: make_image(), URL_2: make_image()},
    )
    output = run(driver, exchange_flow(_request(num_images=2)), fake)
    assert [i.seed for i in output.images] == [1]
    assert [f.index for f in output.failures] == [1]
    assert [r.url for r in fake.seen if r.method == "GET"] == [httpx.URL(IMAGE_URL)]


def test_all_withheld_raises_content_filtered_marked_billed(driver: Driver) -> None:
    fake = FakeIdeogram(answer=generation(image_object(None, safe=False), image_object("", safe=False, seed=9)))
    error = _fail(fake, driver, _request(num_images=2))
    assert isinstance(error, ContentFiltered)
    assert error.billed == "yes" and error.admitted and error.provider == "ideogram" and error.status == 200
    assert "2 image(s)" in error.message and "billed" in error.message
    assert [r.method for r in fake.seen] == ["POST"]


def test_withheld_images_still_cost_money_through_the_client() -> None:
    fake = FakeIdeogram(
        answer=generation(image_object(IMAGE_URL), image_object(None, safe=False)), images={IMAGE_URL: make_image()}
    )
    http = httpx.Client(transport=httpx.MockTransport(fake))
    with Client(["ideogram"], keys={"ideogram": KEY}, http=http, fetch_http=http) as client:
        result = client.generate("a knight", PNG, num_images=2, speed="quality")
    assert len(result.images) == 1 and len(result.failures) == 1
    assert result.cost_usd == Decimal("0.40") and result.cost_source == "price_table"
    assert any(w.kind == "withheld" for w in result.warnings)


# -- downloads ----------------------------------------------------------------------------------------


def test_a_failed_download_keeps_the_other_paid_images(driver: Driver) -> None:
    fake = FakeIdeogram(
        answer=generation(image_object(IMAGE_URL, seed=1), image_object(URL_2, seed=2)),
        images={IMAGE_URL: make_image()},  # URL_2 answers 404: expired
    )
    output = run(driver, exchange_flow(_request(num_images=2)), fake)
    assert [i.seed for i in output.images] == [1]
    (failure,) = output.failures
    assert failure.index == 1 and failure.billed == "yes" and failure.error_type == "UnexpectedResponse"
    assert "could not fetch the image" in failure.reason and "404" not in failure.reason  # one message for all


def test_every_download_failing_raises_billed_and_admitted(driver: Driver) -> None:
    fake = FakeIdeogram(answer=generation(image_object(IMAGE_URL), image_object(None, safe=False)))
    error = _fail(fake, driver, _request(num_images=2))
    assert isinstance(error, UnexpectedResponse)
    assert error.billed == "yes" and error.admitted and error.provider == "ideogram"
    assert "1 more withheld" in error.message


# -- refusals -----------------------------------------------------------------------------------------

SAFETY = {"error": "Prompt provided failed safety check due to the inclusion of prohibited content."}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "billed", "words"),
    [
        (400, {"error": "Invalid input provided."}, {}, RequestRejected, "no", "Invalid input"),
        (401, {"error": "Not authorized to generate an image."}, {}, AuthenticationFailed, "no", "IDEOGRAM_API_KEY"),
        (403, "Forbidden", {"content-type": "text/plain"}, AuthenticationFailed, "no", "Forbidden"),
        (402, {"error": "Insufficient funds", "reject_reason": "insufficient_funds"}, {}, InsufficientCredits, "no",
         "out of funds"),
        (402, {"error": "Daily limit reached", "reject_reason": "daily_limit"}, {}, InsufficientCredits, "no",
         "daily spending limit"),
        (422, SAFETY, {}, ContentFiltered, "no", "prohibited content"),
        (429, {"error": "Too many requests in flight", "reject_reason": "inflight_limit", "max_inflight_requests": 10},
         {"retry-after": "7"}, RateLimited, "no", "in progress"),
        (429, "Too many requests.", {"content-type": "text/plain"}, RateLimited, "no", "slow down"),
        (404, {"detail": "Not Found"}, {}, ProviderUnavailable, "no", "base URL"),
        (500, "<html><head><title>500 Internal Server Error</title></head></html>", {"content-type": "text/html"},
         ProviderUnavailable, "no", "500 Internal Server Error"),
        (503, "", {}, ProviderUnavailable, "no", "no message"),
        (504, "<html><title>504 Gateway Time-out</title></html>", {"content-type": "text/html"}, OutcomeUnknown,
         "unknown", "may still have run"),
    ],
)  # fmt: skip
def test_refusals_map_to_typed_errors(
    driver: Driver,
    status: int,
    body: Any,
    headers: dict[str, str],
    expected: type[ProviderError],
    billed: str,
    words: str,
) -> None:
    fake = FakeIdeogram(answer=body, status=status, headers=headers)
    error = _fail(fake, driver)
    assert type(error) is expected
    assert error.status == status and error.billed == billed and error.provider == "ideogram"
    assert words in error.message
    _no_key(error)
    assert [r.method for r in fake.seen] == ["POST"]  # nothing repeated, nothing downloaded


def test_inflight_limit_carries_retry_after(driver: Driver) -> None:
    fake = FakeIdeogram(
        answer={"error": "Too many requests", "reject_reason": "inflight_limit"},
        status=429,
        headers={"retry-after": "7"},
    )
    error = _fail(fake, driver)
    assert isinstance(error, RateLimited) and error.retry_after == 7.0
    assert error.body == {"error": "Too many requests", "reject_reason": "inflight_limit"}


def test_a_lost_answer_is_outcome_unknown(driver: Driver) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("the answer never came", request=request)

    with pytest.raises(OutcomeUnknown) as caught:
        run(driver, exchange_flow(_request()), handler)
    assert caught.value.billed == "unknown" and caught.value.provider == "ideogram"


def test_a_refused_connection_was_not_sent(driver: Driver) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ProviderUnavailable) as caught:
        run(driver, exchange_flow(_request()), handler)
    assert caught.value.sent is False


@pytest.mark.parametrize(
    ("body", "words"),
    [(b"<html>oops</html>", "not JSON"), (b'{"created": "x", "data": []}', "data"), (b'{"images": []}', "data")],
)
def test_an_unreadable_success_may_have_been_billed(driver: Driver, body: bytes, words: str) -> None:
    error = _fail(FakeIdeogram(answer=body), driver)
    assert isinstance(error, UnexpectedResponse)
    assert error.billed == "unknown" and error.admitted and words in error.message


# -- URL inputs ----------------------------------------------------------------------------------------


def _serve(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    return lambda request: httpx.Response(status, content=body, headers=headers or {})


def _redirect(to: str) -> Any:
    return lambda request: httpx.Response(302, headers={"location": to})


def test_a_url_reference_is_fetched_through_a_redirect_and_uploaded(driver: Driver) -> None:
    face = make_image(50, 50, "JPEG")
    fake = FakeIdeogram(
        images={IMAGE_URL: make_image()},
        extra={
            REF_URL: _redirect("/people/face-final.jpg"),
            "https://cdn.example.com/people/face-final.jpg": _serve(face),
        },
    )
    run(driver, exchange_flow(_request(reference=REF_URL)), fake)
    assert [f"{r.method} {r.url.host}{r.url.path}" for r in fake.seen] == [
        "GET cdn.example.com/people/face.png",
        "GET cdn.example.com/people/face-final.jpg",
        "POST api.ideogram.ai/v1/ideogram-v3/generate",
        "GET ideogram.ai/api/images/ephemeral/xtdZiqPwRxqY1Y7NExFmzB.png",
    ]
    part = form_of(fake.posts()[0]).one("character_reference_images")
    assert part.value == face and part.content_type == "image/jpeg" and part.filename == "character_reference.jpg"
    assert "api-key" not in fake.seen[0].headers  # the key never goes to the reference's host


def _input_refusal(driver: Driver, fake: FakeIdeogram, request: CharacterRequest) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        run(driver, exchange_flow(request), fake)
    assert fake.posts() == [], "nothing may be sent to Ideogram before the inputs are known good"
    return caught.value


def _detail(error: BaseException) -> str:
    """What a failed fetch keeps for debugging, on the cause chain (its message is the same for all)."""
    texts, cause = [], error.__cause__
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__
    return " / ".join(texts)


def test_too_many_redirects_refuse_the_reference(driver: Driver) -> None:
    hops = {
        f"https://cdn.example.com/{i}": _redirect(f"https://cdn.example.com/{i + 1}") for i in range(MAX_REDIRECTS + 2)
    }
    error = _input_refusal(driver, FakeIdeogram(extra=hops), _request(reference="https://cdn.example.com/0"))
    assert error.field == "reference" and "redirects" in _detail(error)


def test_an_oversized_reference_is_refused(driver: Driver) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * MAX_REFERENCE_BYTES
    error = _input_refusal(driver, FakeIdeogram(extra={REF_URL: _serve(big)}), _request(reference=REF_URL))
    assert error.field == "reference" and "bytes" in _detail(error)


def test_a_reference_that_is_not_an_image_is_refused(driver: Driver) -> None:
    page = b"<html><body>Sign in to view this photo</body></html>"
    fake = FakeIdeogram(extra={REF_URL: _serve(page, headers={"content-type": "image/png"})})
    error = _input_refusal(driver, fake, _request(reference=REF_URL))
    assert error.field == "reference" and "JPEG, PNG or WebP" in error.message


def test_a_redirect_off_http_is_refused(driver: Driver) -> None:
    fake = FakeIdeogram(extra={REF_URL: _redirect("ftp://files.example.com/face.png")})
    error = _input_refusal(driver, fake, _request(reference=REF_URL))
    assert error.field == "reference" and "non-http" in _detail(error)


def test_a_missing_reference_url_is_refused(driver: Driver) -> None:
    error = _input_refusal(driver, FakeIdeogram(), _request(reference=REF_URL))  # the fake answers 404
    assert error.field == "reference" and "404" in _detail(error) and "404" not in error.message


def test_a_fetched_reference_that_only_starts_like_a_png_is_refused(driver: Driver) -> None:
    fake = FakeIdeogram(extra={REF_URL: _serve(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)})
    error = _input_refusal(driver, fake, _request(reference=REF_URL))
    assert error.field == "reference" and "cannot be read" in error.message


def test_a_fetched_reference_mask_must_match_the_reference(driver: Driver) -> None:
    fake = FakeIdeogram(extra={REF_URL: _serve(make_image(30, 30))})
    error = _input_refusal(driver, fake, _request(reference=REF_URL, reference_mask=make_image(64, 48, color="white")))
    assert error.field == "reference_mask" and "64x48" in error.message and "30x30" in error.message


def test_a_fetched_edit_image_must_match_its_mask(driver: Driver) -> None:
    scene_url = "https://cdn.example.com/scene.png"
    fake = FakeIdeogram(extra={scene_url: _serve(make_image(100, 80))})
    request = _request(operation=Edit(image=scene_url, mask=make_image(64, 48, color="black")))
    error = _input_refusal(driver, fake, request)
    assert error.field == "operation.mask"


def test_a_fetched_style_reference_names_its_index(driver: Driver) -> None:
    fake = FakeIdeogram(extra={REF_URL: _serve(b"not an image at all")})
    error = _input_refusal(driver, fake, _request(style_references=[PNG, REF_URL]))
    assert error.field == "style_references.1"


def test_a_remix_image_url_is_fetched_then_uploaded(driver: Driver) -> None:
    scene = make_image(90, 60, "WEBP")
    scene_url = "https://cdn.example.com/scene.webp"
    fake = FakeIdeogram(images={IMAGE_URL: make_image()}, extra={scene_url: _serve(scene)})
    run(driver, exchange_flow(_request(operation=Remix(image=scene_url, strength=0.6))), fake)
    form = form_of(fake.posts()[0])
    assert form.one("image").value == scene and form.text("image_weight") == "60"


# -- through the client ----------------------------------------------------------------------------------


def test_edit_negative_prompt_becomes_a_warning_not_a_field() -> None:
    fake = FakeIdeogram(images={IMAGE_URL: make_image()})
    http = httpx.Client(transport=httpx.MockTransport(fake))
    with Client(["ideogram"], keys={"ideogram": KEY}, http=http, fetch_http=http) as client:
        result = client.edit("p", PNG, image=PNG, mask=make_image(64, 48, color="black"), negative_prompt="blur")
    assert [(w.kind, w.field) for w in result.warnings] == [("unsupported", "negative_prompt")]
    assert "negative_prompt" not in form_of(fake.posts()[0]).names()


def test_unknown_extra_options_are_refused_before_sending() -> None:
    fake = FakeIdeogram()
    with pytest.raises(InvalidRequest) as caught:
        run("drive", exchange_flow(_request(extra={"ideogram": {"style_type": "GENERAL"}})), fake)
    assert caught.value.field == "extra.ideogram.style_type"
    assert fake.seen == []


def test_resume_downloads_the_journaled_answer_without_posting_again(driver: Driver) -> None:
    """Killed while downloading: the images come from the answer's URLs; the paid POST is not sent again."""
    answer = generation(
        image_object(IMAGE_URL, seed=11, prompt="magic one"), image_object(URL_2, seed=22, is_image_safe=False)
    )
    fake = FakeIdeogram(answer=answer, images={IMAGE_URL: make_image(131, 73), URL_2: make_image(131, 73)})
    events: list[Event] = []
    run(driver, exchange_flow(_request(num_images=2)), fake, events)
    [submitted] = [e for e in events if e.kind == "submitted"]
    fake.seen.clear()
    provider = IdeogramProvider()
    output = run(driver, provider.resume(submitted.resume or {}, context()), fake)
    assert [f"{r.method} {r.url.path}" for r in fake.seen] == ["GET /api/images/ephemeral/xtdZiqPwRxqY1Y7NExFmzB.png"]
    assert [(i.seed, i.prompt) for i in output.images] == [(11, "magic one")]
    assert [(f.index, f.billed) for f in output.failures] == [(1, "yes")]  # still withheld, still billed


def test_an_unreadable_journaled_answer_is_reported_as_billed() -> None:
    from ideochar.exchange import drive

    with (
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as http,
        pytest.raises(UnexpectedResponse, match="cannot be read") as caught,
    ):
        drive(IdeogramProvider().resume({"mode": "answer", "answer": {"data": []}}, context()), http, fetch=http)
    assert caught.value.billed == "yes"

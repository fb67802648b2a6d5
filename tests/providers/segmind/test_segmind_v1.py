"""The v1 exchange (one blocking POST returning the image), driven by ``drive`` and ``adrive``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from segmind_support import JPEG, KEY, Recorder, context, exchange_flow, make_image, parse_form, run_flow

from ideochar import CharacterRequest, OutcomeUnknown, UnexpectedResponse
from ideochar.errors import AuthenticationFailed, ProviderError
from ideochar.events import Event
from ideochar.request import Edit
from ideochar_segmind.mapping import to_wire
from ideochar_segmind.provider import SegmindProvider, _post

REF_URL = "https://example.com/hero.png"
V1 = "/v1/ideogram-character"

HEADERS = {
    "content-type": "image/jpeg",
    "x-cost": "0.125",
    "x-remaining-credits": "9.875",
    "x-seed-value": "1234567",
    "x-request-id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    "x-generation-time": "18.4",
}


@pytest.fixture(params=["drive", "adrive"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def go(driver: str, req: CharacterRequest, handler: Any, events: list[Event] | None = None, **options: Any) -> Any:
    provider = SegmindProvider()
    ctx = context(**options)
    return run_flow(driver, exchange_flow(provider, req, ctx), handler, events)


def jpeg_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=JPEG, headers=HEADERS)


def test_jpeg_answer_becomes_a_result_with_cost_seed_and_request_id(driver: str) -> None:
    server = Recorder(jpeg_answer)
    events: list[Event] = []
    out = go(driver, CharacterRequest(prompt="p", reference=REF_URL, speed="turbo"), server, events)
    assert server.paths() == ["POST api.segmind.com" + V1]
    (image,) = out.images
    assert (image.data, image.content_type, image.width, image.height) == (JPEG, "image/jpeg", 64, 48)
    assert image.seed == 1234567
    assert out.cost_usd == Decimal("0.125")
    assert out.vendor_request_id == "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert out.metadata == {"mode": "v1", "remaining_credits": Decimal("9.875"), "generation_seconds": 18.4}
    submitted = [e for e in events if e.kind == "submitted"]
    assert [(e.vendor_request_id, e.provider, e.resume) for e in submitted] == [
        ("7c9e6679-7425-40de-944b-e07fc1f90ae7", "segmind", None)
    ]


def test_answer_without_accounting_headers_still_returns_the_image_with_the_asked_seed(driver: str) -> None:
    bare = Recorder(lambda r: httpx.Response(200, content=JPEG, headers={"content-type": "image/jpeg"}))
    events: list[Event] = []
    out = go(driver, CharacterRequest(prompt="p", reference=REF_URL, seed=9), bare, events)
    assert (out.cost_usd, out.vendor_request_id, out.images[0].seed) == (None, None, 9)
    assert not [e for e in events if e.kind == "submitted"]


def test_the_key_goes_in_x_api_key_and_nowhere_else(driver: str) -> None:
    server = Recorder(jpeg_answer)
    go(driver, CharacterRequest(prompt="p", reference=make_image()), server)
    (sent,) = server.seen
    assert sent.headers["x-api-key"] == KEY
    assert "authorization" not in sent.headers
    assert KEY.encode() not in sent.content


def test_a_json_body_with_200_is_an_unexpected_response_not_an_image(driver: str) -> None:
    body = {"status": "success", "message": "Image generated"}
    server = Recorder(lambda r: httpx.Response(200, json=body, headers={"x-request-id": "r-json"}))
    with pytest.raises(UnexpectedResponse) as caught:
        go(driver, CharacterRequest(prompt="p", reference=REF_URL), server)
    error = caught.value
    assert error.status == 200 and error.provider == "segmind"
    assert "JSON and no image" in error.message and "Image generated" in error.message
    assert error.body == body
    assert error.vendor_request_id == "r-json" and error.admitted  # the vendor ran it: never resubmit blindly


def test_a_json_body_carrying_a_base64_image_is_kept(driver: str) -> None:
    encoded = base64.b64encode(JPEG).decode()
    server = Recorder(lambda r: httpx.Response(200, json={"image": encoded}))
    out = go(driver, CharacterRequest(prompt="p", reference=REF_URL, seed=4), server)
    assert out.images[0].data == JPEG and out.images[0].seed == 4


@pytest.mark.parametrize(
    ("content_type", "content", "words"),
    [
        ("text/html; charset=utf-8", b"<html><title>Oops</title></html>", "text/html instead of an image"),
        ("image/jpeg", b"GIF89a" + b"\0" * 40, "not JPEG, PNG or WebP"),
        ("image/jpeg", JPEG[: len(JPEG) // 2], "truncated"),
    ],
)
def test_a_200_that_is_not_a_whole_image_is_a_typed_error(
    driver: str, content_type: str, content: bytes, words: str
) -> None:
    server = Recorder(lambda r: httpx.Response(200, content=content, headers={"content-type": content_type}))
    with pytest.raises(UnexpectedResponse) as caught:
        go(driver, CharacterRequest(prompt="p", reference=REF_URL), server)
    assert words in caught.value.message


def test_an_image_is_checked_by_its_bytes_not_its_declared_type(driver: str) -> None:
    png = make_image(20, 10, "PNG")
    server = Recorder(lambda r: httpx.Response(200, content=png, headers={"content-type": "image/jpeg"}))
    out = go(driver, CharacterRequest(prompt="p", reference=REF_URL), server)
    assert (out.images[0].content_type, out.images[0].width) == ("image/png", 20)


def test_a_lost_answer_is_outcome_unknown_and_is_not_repeated(driver: str) -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    server = Recorder(timeout)
    with pytest.raises(OutcomeUnknown) as caught:
        go(driver, CharacterRequest(prompt="p", reference=REF_URL), server)
    assert len(server.seen) == 1
    assert caught.value.billed == "unknown"


def test_a_refused_key_is_authentication_failed_and_never_shows_the_key(driver: str) -> None:
    # A vendor that echoes the key back must not leak it through our error.
    body = {"error": f"Unauthorized. API key {KEY} is invalid or may have expired"}
    server = Recorder(lambda r: httpx.Response(401, json=body, headers={"x-request-id": "r-401"}))
    with pytest.raises(AuthenticationFailed) as caught:
        go(driver, CharacterRequest(prompt="p", reference=REF_URL), server)
    error = caught.value
    assert (error.status, error.billed, error.admitted, error.vendor_request_id) == (401, "no", False, "r-401")
    for text in (str(error), repr(error), json.dumps(error.body)):
        assert KEY not in text


# -- streamed uploads ----------------------------------------------------------------------------------


def big_image(path: Path, megabytes: int) -> bytes:
    """A real PNG followed by random padding (decoders stop at IEND): a large upload in little time."""
    data = make_image(16, 16, "PNG") + os.urandom(megabytes * 1024 * 1024)
    path.write_bytes(data)
    return data


def test_a_large_local_reference_arrives_intact_through_a_streamed_multipart_upload(
    driver: str, tmp_path: Path
) -> None:
    data = big_image(tmp_path / "face.png", 6)

    def check(request: httpx.Request) -> httpx.Response:
        assert int(request.headers["content-length"]) == len(request.content)
        form = parse_form(request.headers["content-type"], request.content)
        part = form["character_reference_image"]
        assert hashlib.sha256(part.value).hexdigest() == hashlib.sha256(data).hexdigest()
        assert (part.filename, part.content_type) == ("face.png", "image/png")
        return httpx.Response(200, content=JPEG, headers=HEADERS)

    server = Recorder(check)
    out = go(driver, CharacterRequest(prompt="p", reference=tmp_path / "face.png"), server)
    assert len(server.seen) == 1 and out.images[0].data == JPEG


def test_a_multipart_upload_is_read_in_chunks_never_whole(tmp_path: Path) -> None:
    size = len(big_image(tmp_path / "face.png", 8))
    sent = _post(
        "https://api.segmind.com" + "/v1/ideogram-character",
        to_wire(CharacterRequest(prompt="p", reference=tmp_path / "face.png"), seed=1),
        context(),
    )
    total, largest = 0, 0
    tracemalloc.start()
    try:
        for chunk in sent.stream:  # type: ignore[union-attr]
            total += len(chunk)
            largest = max(largest, len(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == int(sent.headers["content-length"]) > size
    assert largest <= 128 * 1024
    assert peak < 2 * 1024 * 1024, f"streaming an 8 MB file peaked at {peak:,} bytes"


def test_an_edit_with_local_image_and_mask_sends_three_file_parts(driver: str) -> None:
    scene, mask, face = make_image(30, 30, "JPEG"), make_image(30, 30, "PNG", "white"), make_image(20, 20, "WEBP")

    def check(request: httpx.Request) -> httpx.Response:
        form = parse_form(request.headers["content-type"], request.content)
        assert {k: v.value for k, v in form.items() if v.filename} == {
            "character_reference_image": face,
            "image": scene,
            "mask": mask,
        }
        assert form["character_reference_image"].content_type == "image/webp"
        return httpx.Response(200, content=JPEG, headers=HEADERS)

    go(driver, CharacterRequest(prompt="p", reference=face, operation=Edit(image=scene, mask=mask)), Recorder(check))


def test_a_status_the_table_does_not_list_is_still_a_provider_error_with_a_sentence(driver: str) -> None:
    server = Recorder(lambda r: httpx.Response(302, headers={"location": "https://elsewhere.example"}))
    with pytest.raises(ProviderError) as caught:
        go(driver, CharacterRequest(prompt="p", reference=REF_URL), server)
    assert "302" in caught.value.message

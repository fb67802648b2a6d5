"""Docs-origin cassettes: Ideogram's documented example exchanges, replayed through both drivers.

The cassettes under ``cassettes/ideogram/docs/`` were written from the handlers in ``ideogram_docs.py``,
which answer with the example bodies of Ideogram's OpenAPI document. The requests are the documented
example requests, expressed as neutral requests, plus the character reference (a file in ``data/``)
that the character feature needs. Rewrite them with::

    IDEOCHAR_RECORD=docs .venv/bin/pytest tests/providers/ideogram -k cassette

Replays never reach a network: a request the cassette does not hold, or one whose multipart body differs
in any part (or image digest), fails the test, and so does an interaction left unplayed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from ideogram_contract import NO_FULL_DOCUMENT, SHARED, openapi
from ideogram_docs import (
    DATA,
    DOCS_IMAGE_URL,
    EDIT_EXAMPLE,
    GENERATE_EXAMPLE,
    REMIX_EXAMPLE,
    SAFETY_ERROR_EXAMPLE,
    handler_for,
)
from ideogram_support import DRIVERS, context, exchange_flow

from ideochar.errors import ContentFiltered, ProviderError
from ideochar.exchange import adrive, drive
from ideochar.request import CharacterRequest, Edit, Remix
from ideochar.spec import ProviderOutput
from vcr_support import acassette, cassette, cassette_path

REFERENCE = DATA / "reference.png"
SCENE = DATA / "scene.jpg"
MASK = DATA / "mask.png"


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def replay(
    driver: str,
    name: str,
    handler: Callable[[httpx.Request], httpx.Response],
    request: CharacterRequest,
    **options: Any,
) -> ProviderOutput | ProviderError:
    """The exchange's output, or the vendor error it raised (caught inside the cassette, so an error
    exchange is recorded and its playback checked like any other)."""
    flow = exchange_flow(request, context(**options))
    if driver == "drive":
        with cassette("ideogram", "docs", name, handler=handler) as http:
            try:
                return drive(flow, http, fetch=http)
            except ProviderError as exc:
                return exc

    async def main() -> Any:
        async with acassette("ideogram", "docs", name, handler=handler) as http:
            try:
                return await adrive(flow, http, fetch=http)
            except ProviderError as exc:
                return exc

    return anyio.run(main)  # type: ignore[no-any-return]


def replay_output(*args: Any, **kwargs: Any) -> ProviderOutput:
    out = replay(*args, **kwargs)
    assert isinstance(out, ProviderOutput), f"the exchange failed: {out!r}"
    return out


def test_cassette_documented_generate_replays_to_its_image(driver: str) -> None:
    request = CharacterRequest(
        prompt="A photo of a cat sleeping on a couch.",
        reference=REFERENCE,
        speed="turbo",
        aspect_ratio="1:1",
        style="auto",
    )
    out = replay_output(driver, "generate", handler_for(GENERATE_EXAMPLE, "/v1/ideogram-v3/generate"), request)
    (image,) = out.images
    assert (image.content_type, image.width, image.height, image.seed) == ("image/png", 1024, 1024, 12345)
    assert image.prompt == "A photo of a cat sleeping on a couch." and image.vendor_url == DOCS_IMAGE_URL
    assert out.metadata["images"][0]["style_type"] == "GENERAL"


def test_cassette_documented_edit_replays_with_image_and_mask_files(driver: str) -> None:
    request = CharacterRequest(
        prompt="A photo of a cat wearing a hat.",
        reference=REFERENCE,
        operation=Edit(image=SCENE, mask=MASK),
        style="auto",
    )
    out = replay_output(driver, "edit", handler_for(EDIT_EXAMPLE, "/v1/ideogram-v3/edit"), request)
    (image,) = out.images
    assert (image.width, image.height, image.seed, image.prompt) == (
        1024,
        1024,
        12345,
        "A photo of a cat wearing a hat.",
    )


def test_cassette_documented_remix_replays_with_its_image_weight(driver: str) -> None:
    request = CharacterRequest(
        prompt="A photo of a cat",
        reference=REFERENCE,
        operation=Remix(image=SCENE, strength=0.5),  # image_weight 50, as in the example
        aspect_ratio="1:2",
        style="auto",
    )
    out = replay_output(driver, "remix", handler_for(REMIX_EXAMPLE, "/v1/ideogram-v3/remix"), request)
    (image,) = out.images
    assert (image.width, image.height, image.seed) == (1280, 800, 12345)


def test_cassette_documented_safety_refusal_replays_as_content_filtered(driver: str) -> None:
    request = CharacterRequest(prompt="A photo of a cat sleeping on a couch.", reference=REFERENCE, speed="turbo")
    handler = handler_for(SAFETY_ERROR_EXAMPLE, "/v1/ideogram-v3/generate", status=422)
    error = replay(driver, "generate_safety_refused", handler, request)
    assert isinstance(error, ContentFiltered)
    assert error.billed == "no" and error.status == 422 and error.provider == "ideogram"
    assert "prohibited content" in error.message


def test_cassettes_hold_the_documented_request_fields() -> None:
    """Each docs cassette's request carries the documented example's fields and values (and no key)."""
    import yaml

    for name, example in (("generate", GENERATE_EXAMPLE), ("edit", EDIT_EXAMPLE), ("remix", REMIX_EXAMPLE)):
        text = cassette_path("ideogram", "docs", name).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        request = data["interactions"][0]["request"]
        assert request["headers"]["api-key"] == ["REDACTED"]
        parts = {p["name"]: p["value"] for p in request["parsed_body"]["multipart/form-data"]}
        for field, value in example["request"].items():
            assert parts[field] == str(value), (name, field)


@pytest.mark.skipif(not SHARED.exists(), reason=NO_FULL_DOCUMENT)
@pytest.mark.parametrize(
    ("route", "example"),
    [("/v1/ideogram-v3/generate", GENERATE_EXAMPLE), ("/v1/ideogram-v3/edit", EDIT_EXAMPLE),
     ("/v1/ideogram-v3/remix", REMIX_EXAMPLE)],
)  # fmt: skip
def test_the_docs_bodies_are_the_documented_examples(route: str, example: dict[str, Any]) -> None:
    (documented,) = openapi()["paths"][route]["post"]["x-fern-examples"]
    assert example["request"] == documented["request"]
    assert example["response"] == documented["response"]


@pytest.mark.skipif(not SHARED.exists(), reason=NO_FULL_DOCUMENT)
def test_the_safety_body_is_the_documented_example() -> None:
    assert openapi()["components"]["schemas"]["GenerateImageSafetyError"]["example"] == SAFETY_ERROR_EXAMPLE

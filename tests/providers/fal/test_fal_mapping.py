"""Neutral request -> fal wire: golden payloads per endpoint, the size and palette tables, data URIs
streamed into the JSON body, options and the provider's declared facts."""

from __future__ import annotations

import base64
import json
import os
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_image
from ideochar.errors import InvalidRequest
from ideochar.request import ASPECT_RATIOS, RESOLUTIONS, CharacterRequest, Edit, Remix
from ideochar_fal.mapping import RATIO_SIZES, hex_to_rgb, to_payload
from ideochar_fal.provider import INFO, FalOptions, FalProvider

REF_URL = "https://v3.fal.media/files/koala/reference.png"
SCENE_URL = "https://example.com/scene.jpg"
MASK_URL = "https://example.com/scene-mask.png"


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def wire(request: CharacterRequest) -> dict[str, object]:
    """The body exactly as it goes on the wire (streamed bodies rendered and parsed back)."""
    payload = to_payload(request)
    return json.loads(payload.streamed().render()) if payload.inline else payload.document()


# -- golden payloads ---------------------------------------------------------------------------------------


def test_generate_golden_payload_with_every_field() -> None:
    request = CharacterRequest(
        prompt="a knight in the rain",
        reference=REF_URL,
        reference_mask=MASK_URL,
        aspect_ratio="16:9",
        speed="turbo",
        magic_prompt="off",
        style="realistic",
        seed=42,
        num_images=2,
        negative_prompt="blurry",
        color_palette=["#FF0000", ("#0f8", 0.3)],
        style_references=["https://example.com/style.png"],
    )
    assert to_payload(request).endpoint == "fal-ai/ideogram/character"
    assert wire(request) == {
        "prompt": "a knight in the rain",
        "reference_image_urls": [REF_URL],
        "reference_mask_urls": [MASK_URL],
        "image_urls": ["https://example.com/style.png"],
        "rendering_speed": "TURBO",
        "color_palette": {
            "members": [
                {"rgb": {"r": 255, "g": 0, "b": 0}},
                {"rgb": {"r": 0, "g": 255, "b": 136}, "color_weight": 0.3},
            ]
        },
        "expand_prompt": False,
        "num_images": 2,
        "seed": 42,
        "style": "REALISTIC",
        "image_size": {"width": 1312, "height": 736},
        "negative_prompt": "blurry",
    }


def test_generate_golden_defaults_every_unset_setting_is_explicit(png: bytes) -> None:
    body = wire(CharacterRequest(prompt="hello", reference=png))
    assert body == {
        "prompt": "hello",
        "reference_image_urls": [data_uri(png)],
        "rendering_speed": "BALANCED",
        "num_images": 1,
        "expand_prompt": True,  # fal has no "auto"; true is its documented default, sent
        "style": "AUTO",
        "image_size": {"width": 1024, "height": 1024},  # fal's square_hd, sent
    }


def test_edit_golden_defaults_send_style_but_no_size() -> None:
    request = CharacterRequest(prompt="p", reference=REF_URL, operation=Edit(image=SCENE_URL, mask=MASK_URL))
    assert wire(request) == {
        "prompt": "p",
        "reference_image_urls": [REF_URL],
        "rendering_speed": "BALANCED",
        "num_images": 1,
        "expand_prompt": True,
        "style": "AUTO",
        "image_url": SCENE_URL,
        "mask_url": MASK_URL,
    }


def test_remix_golden_defaults_send_the_square_size_and_the_neutral_strength() -> None:
    request = CharacterRequest(prompt="p", reference=REF_URL, operation=Remix(image=SCENE_URL))
    assert wire(request) == {
        "prompt": "p",
        "reference_image_urls": [REF_URL],
        "rendering_speed": "BALANCED",
        "num_images": 1,
        "expand_prompt": True,
        "style": "AUTO",
        "image_size": {"width": 1024, "height": 1024},
        "image_url": SCENE_URL,
        "strength": 0.8,
    }


def test_edit_follows_fals_edit_schema_and_sends_the_style_asked() -> None:
    request = CharacterRequest(
        prompt="p", reference=REF_URL, operation=Edit(image=SCENE_URL, mask=MASK_URL), style="fiction"
    )
    assert wire(request)["style"] == "FICTION"
    assert FalProvider().check(request) == []


def test_uploaded_local_images_are_sent_by_their_storage_url(png: bytes) -> None:
    request = CharacterRequest(prompt="p", reference=png, operation=Edit(image=png, mask=MASK_URL))
    uploaded = {"reference": "https://v3.fal.media/files/a/ref.png", "operation.image": "https://v3.fal.media/b.png"}
    body = to_payload(request, uploaded=uploaded).document()
    assert body["reference_image_urls"] == [uploaded["reference"]]
    assert (body["image_url"], body["mask_url"]) == (uploaded["operation.image"], MASK_URL)
    assert not to_payload(request, uploaded=uploaded).inline


@pytest.mark.parametrize(
    ("listed", "speed", "price"),
    [("0.15", "default", "0.15"), ("0.15", "turbo", "0.1000"), ("0.30", "quality", "0.4000")],
)
def test_the_live_unit_price_is_balanceds_and_other_speeds_keep_their_ratio(
    listed: str, speed: str, price: str
) -> None:
    from ideochar_fal.mapping import live_unit_price
    from ideochar_fal.provider import PRICES_USD

    assert live_unit_price(Decimal(listed), speed, PRICES_USD) == Decimal(price)  # type: ignore[arg-type]


def test_edit_golden_payload_has_no_style_size_or_negative_prompt(png: bytes) -> None:
    request = CharacterRequest(
        prompt="change the shirt to red",
        reference=png,
        operation=Edit(image=SCENE_URL, mask=MASK_URL),
        speed="quality",
        magic_prompt="on",
        style_codes=["a1b2c3d4"],
        color_palette="ember",
        negative_prompt="ignored by the edit endpoint",
        seed=7,
    )
    payload = to_payload(request)
    assert payload.endpoint == "fal-ai/ideogram/character/edit"
    assert wire(request) == {
        "prompt": "change the shirt to red",
        "reference_image_urls": [data_uri(png)],
        "rendering_speed": "QUALITY",
        "color_palette": {"name": "EMBER"},
        "style_codes": ["A1B2C3D4"],
        "expand_prompt": True,
        "num_images": 1,
        "seed": 7,
        "image_url": SCENE_URL,
        "mask_url": MASK_URL,
    }
    warned = {w.field for w in FalProvider().check(request)}
    assert warned == {"negative_prompt"}


def test_remix_golden_payload_with_local_image_and_exact_resolution(tmp_path: Path) -> None:
    scene = tmp_path / "scene.jpg"
    scene.write_bytes(make_image(40, 30, "JPEG"))
    style = make_image(8, 8, "PNG", color="blue")
    request = CharacterRequest(
        prompt="as a watercolour",
        reference=REF_URL,
        operation=Remix(image=scene, strength=0.35),
        resolution="896x1152",
        style_references=["https://example.com/style.png", style],
        style="fiction",
    )
    assert to_payload(request).endpoint == "fal-ai/ideogram/character/remix"
    assert wire(request) == {
        "prompt": "as a watercolour",
        "reference_image_urls": [REF_URL],
        "image_urls": ["https://example.com/style.png", data_uri(style)],
        "rendering_speed": "BALANCED",
        "num_images": 1,
        "expand_prompt": True,
        "style": "FICTION",
        "image_size": {"width": 896, "height": 1152},
        "image_url": data_uri(scene.read_bytes(), "image/jpeg"),
        "strength": 0.35,
    }


@pytest.mark.parametrize(("speed", "wire_speed"), [("turbo", "TURBO"), ("default", "BALANCED"), ("quality", "QUALITY")])
def test_every_speed_is_sent_explicitly(speed: str, wire_speed: str) -> None:
    assert wire(CharacterRequest(prompt="p", reference=REF_URL, speed=speed))["rendering_speed"] == wire_speed


def test_sync_mode_option_is_sent_only_when_asked() -> None:
    request = CharacterRequest(prompt="p", reference=REF_URL)
    assert "sync_mode" not in to_payload(request).document()
    assert to_payload(request, sync_mode=True).document()["sync_mode"] is True


# -- tables ----------------------------------------------------------------------------------------------


def test_every_aspect_ratio_maps_to_a_legal_resolution_of_that_ratio() -> None:
    assert set(RATIO_SIZES) == set(ASPECT_RATIOS)
    for ratio, (width, height) in RATIO_SIZES.items():
        a, b = (int(x) for x in ratio.split(":"))
        assert f"{width}x{height}" in RESOLUTIONS, ratio
        assert abs((width / height) / (a / b) - 1) < 0.005, ratio


@pytest.mark.parametrize("ratio", ["1:3", "4:5", "9:16"])
def test_aspect_ratio_becomes_width_and_height_never_a_preset(ratio: str) -> None:
    size = wire(CharacterRequest(prompt="p", reference=REF_URL, aspect_ratio=ratio))["image_size"]
    assert size == dict(zip(("width", "height"), RATIO_SIZES[ratio], strict=True))


@pytest.mark.parametrize(
    ("colour", "rgb"), [("#000000", (0, 0, 0)), ("#FFFFFF", (255, 255, 255)), ("#1A2B3C", (26, 43, 60))]
)
def test_palette_hex_colour_becomes_rgb_members(colour: str, rgb: tuple[int, int, int]) -> None:
    converted = hex_to_rgb(colour)
    assert (converted.r, converted.g, converted.b) == rgb


# -- streamed data URIs ----------------------------------------------------------------------------------


def test_streamed_body_decodes_back_to_the_files_and_its_length_is_exact(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3)).save(big)  # incompressible: ~270 KB
    mask = make_image(300, 300, "PNG", color="white")
    request = CharacterRequest(prompt='quote " and \\ and ünïcode', reference=big, reference_mask=mask)
    body = to_payload(request).streamed()
    chunks = list(body.iter_bytes())
    raw = b"".join(chunks)
    assert len(raw) == body.content_length
    assert max(len(c) for c in chunks) <= 66_000  # never the whole image at once
    parsed = json.loads(raw)
    assert parsed["prompt"] == 'quote " and \\ and ünïcode'
    assert base64.b64decode(parsed["reference_image_urls"][0].split(",", 1)[1]) == big.read_bytes()
    assert parsed["reference_mask_urls"] == [data_uri(mask)]


def test_streaming_a_10mb_path_holds_a_small_fraction_of_it_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "ten.png"
    head = make_image(8, 8, "PNG")
    path.write_bytes(head + os.urandom(10 * 1024 * 1024 - 4096 - len(head)))  # only the head is sniffed
    request = CharacterRequest(prompt="p", reference=path)
    body = to_payload(request).streamed()
    tracemalloc.start()
    try:
        total = sum(len(chunk) for chunk in body.iter_bytes())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == body.content_length > path.stat().st_size
    assert peak < 0.1 * path.stat().st_size  # far under the 1.5x target: chunks, not a string


def test_url_only_payload_has_no_inline_images() -> None:
    payload = to_payload(CharacterRequest(prompt="p", reference=REF_URL))
    assert payload.inline == ()


def test_a_prompt_equal_to_an_inline_marker_is_not_mistaken_for_one(png: bytes) -> None:
    payload = to_payload(CharacterRequest(prompt="x", reference=png))
    marker = payload.inline[0][0]
    request = CharacterRequest(prompt=marker, reference=png, negative_prompt=marker)
    parsed = json.loads(to_payload(request).streamed().render())
    assert parsed["prompt"] == parsed["negative_prompt"] == marker
    assert parsed["reference_image_urls"] == [data_uri(png)]


# -- options and declared facts --------------------------------------------------------------------------


def test_options_validate_the_fal_namespace() -> None:
    provider = FalProvider()
    request = CharacterRequest(
        prompt="p", reference=REF_URL, extra={"fal": {"request_timeout": 30, "priority": "low", "no_retry": True}}
    )
    options = provider.options(request)
    assert isinstance(options, FalOptions)
    assert (options.request_timeout, options.priority, options.no_retry, options.mode) == (30.0, "low", True, "queue")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"request_timeout": 1}, "extra.fal.request_timeout"),
        ({"priority": "urgent"}, "extra.fal.priority"),
        ({"mode": "run", "priority": "low"}, "extra.fal"),
        ({"webhook": "https://x"}, "extra.fal.webhook"),
    ],
)
def test_bad_fal_options_name_the_field(extra: dict[str, object], field: str) -> None:
    request = CharacterRequest(prompt="p", reference=REF_URL, extra={"fal": extra})
    with pytest.raises(InvalidRequest) as caught:
        FalProvider().options(request)
    assert caught.value.field is not None and caught.value.field.startswith(field)


def test_provider_info_declares_prices_fields_and_what_is_inferred() -> None:
    assert INFO.name == "fal" and INFO.max_images_per_call == 8 and INFO.can_resume
    assert INFO.price("generate", "turbo") == Decimal("0.10")
    assert INFO.price("remix", "default") == Decimal("0.15")
    assert INFO.price("edit", "quality") == Decimal("0.20")
    assert {"price_edit", "price_per_image"} <= set(INFO.inferred)
    assert INFO.supports("edit", "style") and not INFO.supports("edit", "aspect_ratio")
    assert INFO.supports("remix", "negative_prompt") and INFO.supports("edit", "color_palette")
    assert INFO.credential_variables == (("FAL_KEY",), ("FAL_KEY_ID", "FAL_KEY_SECRET"))
    assert INFO.base_urls == {
        "queue": "https://queue.fal.run",
        "run": "https://fal.run",
        "rest": "https://rest.fal.ai",
        "cdn": "https://v3.fal.media",
        "platform": "https://api.fal.ai",
    }
    assert set(INFO.defaults) == {"speed", "style", "magic_prompt", "size", "seed"}
    assert "`expand_prompt` true" in INFO.defaults["magic_prompt"]


def test_credentials_come_from_fal_key_or_the_id_and_secret_pair() -> None:
    provider = FalProvider()
    assert provider.credentials({"FAL_KEY": "abc:def"}).reveal() == "abc:def"  # type: ignore[union-attr]
    pair = provider.credentials({"FAL_KEY_ID": "id-123", "FAL_KEY_SECRET": "secret-456"})
    assert pair is not None and pair.reveal() == "id-123:secret-456"
    assert provider.credentials({"FAL_KEY_ID": "only-the-id"}) is None


def test_quote_prices_per_image_and_flags_the_price_as_inferred() -> None:
    quote = FalProvider().quote(CharacterRequest(prompt="p", reference=REF_URL, num_images=3, speed="turbo"))
    assert quote.supported and quote.total_usd == Decimal("0.30") and quote.price_inferred and quote.calls == 1

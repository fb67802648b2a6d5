"""Neutral request -> Segmind body: golden payloads, enum casing, size rules, capability checks."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from segmind_support import context, make_image, parse_form

from ideochar import CharacterRequest, InvalidRequest, Unsupported
from ideochar.exchange import ReaderStream
from ideochar.request import RESOLUTIONS, Edit, Remix
from ideochar.toolkit import RATIO_SIZES
from ideochar_segmind.mapping import ENUMS, enum_value, size_fields, to_wire
from ideochar_segmind.provider import INFO, SegmindOptions, SegmindProvider, _post

REF_URL = "https://example.com/hero.png"
IMAGE_URL = "https://example.com/scene.png"
MASK_URL = "https://example.com/mask.png"


def request(**fields: object) -> CharacterRequest:
    return CharacterRequest(**{"prompt": "a knight in the rain", "reference": REF_URL, **fields})


# -- golden payloads: every field explicit ---------------------------------------------------------------


def test_generate_with_url_reference_is_one_json_body_in_segmind_words() -> None:
    sent = _post(
        "https://api.segmind.com/v1/ideogram-character",
        to_wire(request(style="fiction", speed="quality", magic_prompt="off", aspect_ratio="9:16", seed=77)),
        context(),
    )
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-api-key"] == "SG_5f3a9c1e7b2d4068"
    assert json.loads(sent.read()) == {
        "prompt": "a knight in the rain",
        "character_reference_image": REF_URL,
        "seed": 77,
        "resolution": "736x1312",
        "style_type": "Fiction",
        "rendering_speed": "Quality",
        "magic_prompt_option": "Off",
    }


def test_generate_golden_defaults_every_unset_field_is_sent_explicitly() -> None:
    """Segmind's page defaults (512x1536, Realistic, Quality, Off, seed 1) are none of what unset means."""
    assert to_wire(request(), seed=1234).json_body() == {
        "prompt": "a knight in the rain",
        "character_reference_image": REF_URL,
        "seed": 1234,
        "resolution": "1024x1024",
        "style_type": "Auto",
        "rendering_speed": "Default",
        "magic_prompt_option": "Auto",
    }


def test_edit_golden_defaults_send_image_mask_and_every_setting_but_no_size() -> None:
    wire = to_wire(request(operation=Edit(image=IMAGE_URL, mask=MASK_URL)), seed=9)
    assert wire.json_body() == {
        "prompt": "a knight in the rain",
        "character_reference_image": REF_URL,
        "image": IMAGE_URL,
        "mask": MASK_URL,
        "seed": 9,
        "style_type": "Auto",
        "rendering_speed": "Default",
        "magic_prompt_option": "Auto",
    }


def test_edit_with_urls_keeps_the_callers_settings() -> None:
    wire = to_wire(request(operation=Edit(image=IMAGE_URL, mask=MASK_URL), style="realistic", seed=3))
    assert wire.json_body() == {
        "prompt": "a knight in the rain",
        "character_reference_image": REF_URL,
        "image": IMAGE_URL,
        "mask": MASK_URL,
        "seed": 3,
        "style_type": "Realistic",
        "rendering_speed": "Default",
        "magic_prompt_option": "Auto",
    }


def test_a_request_without_a_seed_cannot_be_built_without_a_drawn_one() -> None:
    with pytest.raises(ValueError, match="seed"):
        to_wire(request())
    assert to_wire(request(seed=5), seed=6).seed == 5  # the caller's seed wins


def test_every_unset_default_is_declared_for_the_matrix() -> None:
    assert set(INFO.defaults) == {"speed", "style", "magic_prompt", "size", "seed"}
    assert "512x1536" in INFO.defaults["size"] and "Auto" in INFO.defaults["style"]


def test_generate_with_local_reference_is_multipart_with_a_file_part() -> None:
    png = make_image(40, 30, "PNG")
    sent = _post(
        "https://api.segmind.com/v1/ideogram-character",
        to_wire(request(reference=png, resolution="1024x1024", speed="turbo", magic_prompt="on"), seed=8),
        context(),
    )
    assert isinstance(sent.stream, ReaderStream), "a local file must be streamed, not buffered"
    body = sent.read()
    assert int(sent.headers["content-length"]) == len(body)
    form = parse_form(sent.headers["content-type"], body)
    assert list(form) == [
        "prompt",
        "character_reference_image",
        "seed",
        "resolution",
        "style_type",
        "rendering_speed",
        "magic_prompt_option",
    ]
    assert form["prompt"].text == "a knight in the rain"
    assert form["resolution"].text == "1024x1024"
    assert form["rendering_speed"].text == "Turbo"
    assert form["magic_prompt_option"].text == "On"
    reference = form["character_reference_image"]
    assert (reference.value, reference.content_type, reference.filename) == (png, "image/png", "image.png")


def test_edit_with_local_files_keeps_url_inputs_as_text_and_mask_bytes_untouched(tmp_path: Path) -> None:
    scene, mask = make_image(32, 32, "JPEG"), make_image(32, 32, "PNG", color="black")
    (tmp_path / "scene.jpg").write_bytes(scene)
    wire = to_wire(request(operation=Edit(image=tmp_path / "scene.jpg", mask=mask), seed=5))
    sent = _post("https://api.segmind.com/v1/ideogram-character", wire, context())
    form = parse_form(sent.headers["content-type"], sent.read())
    assert list(form) == [
        "prompt",
        "character_reference_image",
        "image",
        "mask",
        "seed",
        "style_type",
        "rendering_speed",
        "magic_prompt_option",
    ]
    assert form["character_reference_image"].text == REF_URL
    assert form["character_reference_image"].filename is None
    assert (form["image"].value, form["image"].filename, form["image"].content_type) == (
        scene,
        "scene.jpg",
        "image/jpeg",
    )
    # Neutral polarity (black = repaint) is Segmind's too (inferred): the mask goes out byte for byte.
    assert form["mask"].value == mask
    assert form["seed"].text == "5"


def test_multipart_body_is_the_same_each_time_it_is_read() -> None:
    wire = to_wire(request(reference=make_image()), seed=1)
    sent = _post("https://api.segmind.com/v1/ideogram-character", wire, context())
    assert isinstance(sent.stream, ReaderStream)
    assert b"".join(sent.stream) == b"".join(sent.stream)


# -- enums and sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire_field", "neutral", "segmind"),
    [
        ("style_type", "auto", "Auto"),
        ("style_type", "realistic", "Realistic"),
        ("style_type", "fiction", "Fiction"),
        ("rendering_speed", "turbo", "Turbo"),
        ("rendering_speed", "default", "Default"),
        ("rendering_speed", "quality", "Quality"),
        ("magic_prompt_option", "auto", "Auto"),
        ("magic_prompt_option", "on", "On"),
        ("magic_prompt_option", "off", "Off"),
    ],
)
def test_enums_are_title_case(wire_field: str, neutral: str, segmind: str) -> None:
    assert enum_value(wire_field, neutral) == segmind


def test_enum_table_covers_every_neutral_value_and_nothing_is_upper_case() -> None:
    from typing import get_args

    from ideochar.request import MagicPrompt, Speed, Style

    assert set(ENUMS["style_type"]) == set(get_args(Style))
    assert set(ENUMS["rendering_speed"]) == set(get_args(Speed))
    assert set(ENUMS["magic_prompt_option"]) == set(get_args(MagicPrompt))
    for table in ENUMS.values():
        for value in table.values():
            assert value == value.title() and not value.isupper()


def test_magic_prompt_auto_is_sent_as_auto_not_left_to_segmind_whose_default_is_off() -> None:
    assert to_wire(request(magic_prompt="auto"), seed=1).json_body()["magic_prompt_option"] == "Auto"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"aspect_ratio": "16:9"}, {"resolution": "1312x736"}),
        ({"aspect_ratio": "1:3"}, {"resolution": "512x1536"}),
        ({"resolution": "512x1536"}, {"resolution": "512x1536"}),
        ({}, {"resolution": "1024x1024"}),
    ],
)
def test_size_is_always_one_explicit_resolution(fields: dict[str, str], expected: dict[str, str]) -> None:
    assert size_fields(request(**fields)) == expected
    body = to_wire(request(**fields), seed=1).json_body()
    assert "aspect_ratio" not in body
    assert {k: body[k] for k in ("aspect_ratio", "resolution") if k in body} == expected


@pytest.mark.parametrize("ratio", sorted(RATIO_SIZES))
def test_every_aspect_ratio_becomes_a_legal_resolution_of_its_shape(ratio: str) -> None:
    width, height = (int(v) for v in size_fields(request(aspect_ratio=ratio))["resolution"].split("x"))
    w, h = (int(v) for v in ratio.split(":"))
    assert f"{width}x{height}" in RESOLUTIONS
    assert abs(width / height - w / h) / (w / h) < 0.01


def test_both_sizes_are_refused_before_anything_is_built() -> None:
    with pytest.raises(InvalidRequest) as caught:
        request(aspect_ratio="16:9", resolution="512x1536")
    assert caught.value.field == "resolution"


# -- capabilities: check and quote ---------------------------------------------------------------------


def test_remix_is_unsupported_at_check_time() -> None:
    remix = request(operation=Remix(image=IMAGE_URL, strength=0.5))
    provider = SegmindProvider()
    with pytest.raises(Unsupported) as caught:
        provider.check(remix)
    assert "segmind" in caught.value.reasons
    quote = provider.quote(remix)
    assert not quote.supported and quote.reason
    with pytest.raises(Unsupported):
        to_wire(remix)


def test_three_images_warn_of_fan_out_and_are_refused_without_it() -> None:
    provider = SegmindProvider()
    warnings = provider.check(request(num_images=3))
    assert [(w.kind, w.field) for w in warnings] == [("fanned_out", "num_images")]
    assert "3 calls" in warnings[0].message
    quote = provider.quote(request(num_images=3, speed="turbo"))
    assert (quote.calls, quote.total_usd) == (3, Decimal("0.375"))
    with pytest.raises(Unsupported):
        provider.check(request(num_images=3), fan_out=False)


def test_fields_segmind_lacks_become_warnings_naming_them() -> None:
    warnings = SegmindProvider().check(
        request(negative_prompt="blur", color_palette="ember", style_references=[make_image()])
    )
    assert {w.field for w in warnings if w.kind == "unsupported"} == {
        "negative_prompt",
        "color_palette",
        "style_references",
    }


def test_supported_fields_raise_no_warning() -> None:
    full = request(style="realistic", aspect_ratio="1:1", seed=1, magic_prompt="on", speed="turbo")
    assert SegmindProvider().check(full) == []
    edit = request(operation=Edit(image=IMAGE_URL, mask=MASK_URL), style="fiction", seed=2, magic_prompt="off")
    assert SegmindProvider().check(edit) == []


def test_prices_are_per_image_by_speed_and_marked_inferred() -> None:
    provider = SegmindProvider()
    assert [provider.quote(request(speed=s)).unit_price_usd for s in ("turbo", "default", "quality")] == [
        Decimal("0.125"),
        Decimal("0.1875"),
        Decimal("0.25"),
    ]
    assert provider.quote(request()).price_inferred
    assert INFO.credential_variables == (("SEGMIND_API_KEY",),)
    assert INFO.max_images_per_call == 1


# -- options -------------------------------------------------------------------------------------------


def test_options_default_to_v1_and_accept_v2() -> None:
    provider = SegmindProvider()
    assert provider.options(request()) == SegmindOptions(mode="v1")
    options = provider.options(request(extra={"segmind": {"mode": "v2"}}))
    assert isinstance(options, SegmindOptions) and options.mode == "v2"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"mode": "v3"}, "extra.segmind.mode"),
        ({"modes": "v2"}, "extra.segmind.modes"),
        ({"poll_interval_seconds": 0}, "extra.segmind.poll_interval_seconds"),
    ],
)
def test_bad_options_are_refused_naming_the_field(extra: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        SegmindProvider().check(request(extra={"segmind": extra}))
    assert caught.value.field == field


def test_importing_the_provider_does_not_import_requests() -> None:
    code = "import sys, ideochar_segmind.provider; print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"

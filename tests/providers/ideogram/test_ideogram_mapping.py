"""The pure neutral -> Ideogram mapping: tables, the ``x`` aspect ratios, image_weight, the form's parts."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from ideogram_support import make_image

from ideochar.request import ASPECT_RATIOS, CharacterRequest, Edit, Remix
from ideochar_ideogram import mapping
from ideochar_ideogram.mapping import (
    MAGIC_PROMPT,
    SPEED,
    STYLE,
    aspect_ratio_to_wire,
    color_palette_to_wire,
    image_weight_from_strength,
    route_path,
    to_form,
)
from ideochar_ideogram.wire import FilePart, TextPart, WireAspectRatio

PNG = make_image(64, 48)


def _texts(parts: tuple[TextPart | FilePart, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in parts:
        if isinstance(part, TextPart):
            out.setdefault(part.name, []).append(part.value)
    return out


@pytest.mark.parametrize(("neutral", "wire"), [("16:9", "16x9"), ("1:1", "1x1"), ("10:16", "10x16"), ("4:5", "4x5")])
def test_aspect_ratio_is_written_with_an_x(neutral: str, wire: str) -> None:
    assert aspect_ratio_to_wire(neutral) == wire


def test_every_neutral_aspect_ratio_maps_onto_ideograms_enum() -> None:
    assert sorted(aspect_ratio_to_wire(r) for r in ASPECT_RATIOS) == sorted(get_args(WireAspectRatio))


@pytest.mark.parametrize(
    ("strength", "weight"),
    [
        (0.5, 50),  # Ideogram's default weight is the middle of the neutral scale
        (0.8, 80),  # the neutral default: the input weighs strongly
        (1.0, 100),  # the most the input can weigh
        (0.01, 1),  # the least the neutral request allows: the weight's floor, never 0
        (0.015, 2),  # 1.5 rounds half up, not to even and not by float noise
        (0.125, 13),  # 12.5 -> 13
        (0.29, 29),  # 0.29 * 100 is 28.999... in floats
        (0.333, 33),
    ],
)
def test_remix_strength_maps_to_image_weight(strength: float, weight: int) -> None:
    assert image_weight_from_strength(strength) == weight


def test_image_weight_rises_with_strength_and_stays_in_range() -> None:
    weights = [image_weight_from_strength(s / 100) for s in range(1, 101)]
    assert all(1 <= w <= 100 for w in weights)
    assert weights == sorted(weights)
    assert weights == list(range(1, 101))


def test_remix_form_carries_the_mapped_image_weight() -> None:
    request = CharacterRequest(prompt="p", reference=PNG, operation=Remix(image=PNG, strength=0.3))
    assert _texts(to_form(request))["image_weight"] == ["30"]


def test_enum_tables_cover_every_neutral_value_in_upper_case() -> None:
    assert dict(SPEED) == {"turbo": "TURBO", "default": "DEFAULT", "quality": "QUALITY"}
    assert "BALANCED" not in SPEED.values() and "FLASH" not in SPEED.values()
    assert dict(STYLE) == {"auto": "AUTO", "realistic": "REALISTIC", "fiction": "FICTION"}
    assert dict(MAGIC_PROMPT) == {"auto": "AUTO", "on": "ON", "off": "OFF"}


def test_default_speed_is_sent_as_default_not_the_legacy_balanced() -> None:
    request = CharacterRequest(prompt="p", reference=PNG)
    assert _texts(to_form(request))["rendering_speed"] == ["DEFAULT"]


@pytest.mark.parametrize("operation", ["generate", "edit", "remix", "edit-inpaint"])
def test_route_path_per_operation(operation: str) -> None:
    expected = {
        "generate": "/v1/ideogram-v3/generate",
        "edit": "/v1/ideogram-v3/edit",
        "edit-inpaint": "/v1/ideogram-v3/inpaint",
        "remix": "/v1/ideogram-v3/remix",
    }[operation]
    op, _, path = operation.partition("-")
    assert route_path(op, path or "edit") == expected  # type: ignore[arg-type]


def test_palette_preset_is_an_upper_case_name() -> None:
    request = CharacterRequest(prompt="p", reference=PNG, color_palette="pastel")
    assert request.color_palette is not None
    assert json.loads(color_palette_to_wire(request.color_palette).to_json()) == {"name": "PASTEL"}


def test_palette_members_carry_hex_and_only_given_weights() -> None:
    request = CharacterRequest(prompt="p", reference=PNG, color_palette=["#abc", ("#102030", 0.4)])
    assert request.color_palette is not None
    assert json.loads(color_palette_to_wire(request.color_palette).to_json()) == {
        "members": [{"color_hex": "#AABBCC"}, {"color_hex": "#102030", "color_weight": 0.4}]
    }


def test_unset_style_is_sent_as_auto() -> None:
    request = CharacterRequest(prompt="p", reference=PNG)
    assert _texts(to_form(request))["style_type"] == [mapping.STYLE_TYPE_WHEN_UNSET] == ["AUTO"]


def test_style_codes_replace_style_type() -> None:
    request = CharacterRequest(prompt="p", reference=PNG, style_codes=["aaff5733", "0133FF57"])
    texts = _texts(to_form(request))
    assert "style_type" not in texts
    assert texts["style_codes"] == ["AAFF5733", "0133FF57"]


def test_edit_form_drops_negative_prompt() -> None:
    request = CharacterRequest(
        prompt="p",
        reference=PNG,
        negative_prompt="blur",
        operation=Edit(image=PNG, mask=make_image(64, 48, color="black")),
    )
    texts = _texts(to_form(request))
    assert "negative_prompt" not in texts and "aspect_ratio" not in texts and "resolution" not in texts


def test_resolution_is_sent_alone() -> None:
    request = CharacterRequest(prompt="p", reference=PNG, resolution=(1280, 800))
    texts = _texts(to_form(request))
    assert texts["resolution"] == ["1280x800"] and "aspect_ratio" not in texts


def test_file_parts_hide_the_callers_file_name(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "jane-doe-passport.jpg"
    path.write_bytes(make_image(32, 32, "PNG"))  # a PNG under a .jpg name
    request = CharacterRequest(prompt="p", reference=path)
    (part,) = [p for p in to_form(request) if isinstance(p, FilePart)]
    assert part.filename == "character_reference.png"
    assert part.image.content_type == "image/png"


def test_mask_polarity_is_not_inverted() -> None:
    """Neutral and Ideogram both paint where the mask is black: the mask's bytes go out unchanged."""
    mask = make_image(64, 48, color="black")
    request = CharacterRequest(prompt="p", reference=PNG, operation=Edit(image=PNG, mask=mask))
    (mask_part,) = [p for p in to_form(request) if isinstance(p, FilePart) and p.name == "mask"]
    assert mask_part.image.read() == mask


# -- golden defaults: nothing left to a vendor default the caller did not choose -------------------------------


def _all_texts(request: CharacterRequest) -> dict[str, list[str]]:
    return _texts(to_form(request))


def test_generate_golden_defaults_send_every_setting() -> None:
    assert _all_texts(CharacterRequest(prompt="p", reference=PNG)) == {
        "prompt": ["p"],
        "aspect_ratio": ["1x1"],
        "rendering_speed": ["DEFAULT"],
        "magic_prompt": ["AUTO"],
        "style_type": ["AUTO"],
        "num_images": ["1"],
    }


def test_remix_golden_defaults_send_every_setting_and_the_neutral_strength() -> None:
    request = CharacterRequest(prompt="p", reference=PNG, operation=Remix(image=PNG))
    assert _all_texts(request) == {
        "prompt": ["p"],
        "image_weight": ["80"],
        "aspect_ratio": ["1x1"],
        "rendering_speed": ["DEFAULT"],
        "magic_prompt": ["AUTO"],
        "style_type": ["AUTO"],
        "num_images": ["1"],
    }


def test_edit_golden_defaults_send_every_setting_but_a_size() -> None:
    request = CharacterRequest(
        prompt="p", reference=PNG, operation=Edit(image=PNG, mask=make_image(64, 48, color="black"))
    )
    assert _all_texts(request) == {
        "prompt": ["p"],
        "rendering_speed": ["DEFAULT"],
        "magic_prompt": ["AUTO"],
        "style_type": ["AUTO"],
        "num_images": ["1"],
    }


def test_the_unset_defaults_are_declared_for_the_matrix() -> None:
    from ideochar_ideogram.provider import INFO

    assert set(INFO.defaults) == {"speed", "style", "magic_prompt", "size", "seed"}
    assert "1x1" in INFO.defaults["size"] and "AUTO" in INFO.defaults["style"]

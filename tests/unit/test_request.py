"""Local validation: every invalid request raises InvalidRequest naming the field, before any I/O."""

from __future__ import annotations

import base64

import pytest

from conftest import make_image
from ideochar import CharacterRequest, Edit, InvalidRequest, Remix
from ideochar._constants import MAX_REFERENCE_BYTES
from ideochar.request import ASPECT_RATIOS, NEUTRAL_FIELDS, RESOLUTIONS

PNG = make_image(32, 32)


def invalid(**fields: object) -> InvalidRequest:
    fields.setdefault("prompt", "a knight")
    fields.setdefault("reference", PNG)
    with pytest.raises(InvalidRequest) as caught:
        CharacterRequest(**fields)  # type: ignore[arg-type]
    return caught.value


def test_the_vendor_tables_have_the_documented_sizes() -> None:
    assert len(ASPECT_RATIOS) == 15
    assert len(RESOLUTIONS) == 69
    assert len(set(RESOLUTIONS)) == 69


def test_defaults_mean_generate_at_default_speed() -> None:
    request = CharacterRequest(prompt="a knight", reference=PNG)
    assert request.operation_name == "generate"
    assert request.speed == "default"
    assert request.fields_used() == frozenset()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"style": "anime"}, "style"),
        ({"speed": "BALANCED"}, "speed"),
        ({"magic_prompt": "maybe"}, "magic_prompt"),
        ({"num_images": 0}, "num_images"),
        ({"num_images": 9}, "num_images"),
        ({"aspect_ratio": "7:5"}, "aspect_ratio"),
        ({"resolution": "1000x1000"}, "resolution"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**31}, "seed"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": " \n\t"}, "prompt"),
        ({"negative_prompt": "   "}, "negative_prompt"),
        ({"style_codes": ["12345"]}, "style_codes.0"),
        ({"color_palette": "neon"}, "color_palette.preset"),
        ({"color_palette": ["#GGGGGG"]}, "color_palette.members.0.color"),
        ({"color_palette": [("#FF0000", 0.01)]}, "color_palette.members.0.weight"),
        ({"color_palette": ["#FF0000"] * 9}, "color_palette.members"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_each_bad_value_names_its_field(fields: dict[str, object], field: str) -> None:
    error = invalid(**fields)
    assert error.field == field
    assert str(error).startswith(f"invalid request: {field}:")


@pytest.mark.parametrize("strength", [0.0, 1.01, -1])
def test_remix_strength_out_of_range_names_operation_strength(strength: float) -> None:
    error = invalid(operation={"operation": "remix", "image": PNG, "strength": strength})
    assert error.field == "operation.strength"


def test_remix_strength_bounds_are_inclusive() -> None:
    for strength in (0.01, 1.0):
        assert Remix(image=PNG, strength=strength).strength == strength


def test_aspect_ratio_and_resolution_are_exclusive() -> None:
    assert invalid(aspect_ratio="16:9", resolution="1024x1024").field == "resolution"


def test_style_codes_exclude_style_and_style_references() -> None:
    assert invalid(style_codes=["0A1B2C3D"], style="realistic").field == "style_codes"
    assert invalid(style_codes=["0A1B2C3D"], style_references=[PNG]).field == "style_codes"


def test_palette_preset_xor_members() -> None:
    error = invalid(color_palette={"preset": "ember", "members": [{"color": "#fff"}]})
    assert error.field == "color_palette"


def test_palette_shorthands_normalise() -> None:
    request = CharacterRequest(prompt="p", reference=PNG, color_palette=["#abc", ("#102030", 0.3)])
    assert request.color_palette is not None and request.color_palette.members is not None
    assert [m.color for m in request.color_palette.members] == ["#AABBCC", "#102030"]
    assert request.color_palette.members[1].weight == 0.3
    assert CharacterRequest(prompt="p", reference=PNG, color_palette="EMBER").color_palette.preset == "ember"  # type: ignore[union-attr]


def test_resolution_accepts_a_pair() -> None:
    assert CharacterRequest(prompt="p", reference=PNG, resolution=(1024, 1024)).resolution == "1024x1024"  # type: ignore[arg-type]


def test_edit_image_and_mask_must_match_in_pixels() -> None:
    error = invalid(operation={"operation": "edit", "image": make_image(32, 32), "mask": make_image(16, 32)})
    assert error.field == "operation.mask"
    assert "16x32" in str(error) and "32x32" in str(error)
    with pytest.raises(InvalidRequest) as caught:
        Edit(image=make_image(32, 32), mask=make_image(16, 32))
    assert caught.value.field == "mask"


def test_edit_keeps_its_size() -> None:
    error = invalid(operation=Edit(image=PNG, mask=PNG), aspect_ratio="1:1")
    assert error.field == "aspect_ratio"


def test_reference_mask_must_match_the_reference() -> None:
    assert invalid(reference_mask=make_image(8, 8)).field == "reference_mask"


def test_reference_over_ten_megabytes_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\0" * (MAX_REFERENCE_BYTES + 1 - len(PNG)))
    error = invalid(reference=big)
    assert error.field == "reference"
    assert "10 MB" in str(error)


def test_style_references_total_is_limited(tmp_path) -> None:  # type: ignore[no-untyped-def]
    half = tmp_path / "half.png"
    half.write_bytes(PNG + b"\0" * (MAX_REFERENCE_BYTES // 2 + 10))
    assert invalid(style_references=[half, half]).field == "style_references"


@pytest.mark.parametrize(
    "reference",
    [b"GIF89a....", b"", "/no/such/file.png", "ftp://example.com/a.png", "https://", 42],
)
def test_unusable_references_name_the_field(reference: object) -> None:
    assert invalid(reference=reference).field == "reference"


def test_a_data_uri_that_lies_about_its_type_is_refused() -> None:
    uri = "data:image/jpeg;base64," + base64.b64encode(PNG).decode()
    error = invalid(reference=uri)
    assert "image/jpeg" in str(error) and "image/png" in str(error)


def test_fields_used_reports_what_a_provider_must_support() -> None:
    request = CharacterRequest(
        prompt="p",
        reference=PNG,
        aspect_ratio="16:9",
        negative_prompt="blur",
        num_images=2,
        magic_prompt="off",
        seed=1,
    )
    assert request.fields_used() == {"aspect_ratio", "negative_prompt", "num_images", "magic_prompt", "seed"}
    assert request.fields_used() <= NEUTRAL_FIELDS


def test_images_lists_every_input_with_its_path() -> None:
    request = CharacterRequest(prompt="p", reference=PNG, operation=Edit(image=PNG, mask=PNG), style_references=[PNG])
    assert [path for path, _ in request.images()] == [
        "reference",
        "operation.image",
        "operation.mask",
        "style_references.0",
    ]


def test_requests_are_frozen_and_serialise_without_bytes() -> None:
    request = CharacterRequest(prompt="p", reference=PNG)
    with pytest.raises(Exception):
        request.prompt = "q"  # type: ignore[misc]
    dumped = request.model_dump_json()
    assert "sha256:" in dumped and "iVBOR" not in dumped


def test_model_validate_also_raises_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as caught:
        CharacterRequest.model_validate({"prompt": "p", "reference": PNG, "num_images": 10})
    assert caught.value.field == "num_images"


def test_client_convenience_methods_report_the_full_field_path() -> None:
    import httpx

    from ideochar import Client

    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500))
    with Client(["fal"], keys={"fal": "k" * 12}, http=httpx.Client(transport=transport), journal=False) as client:
        with pytest.raises(InvalidRequest) as caught:
            client.remix("p", PNG, image=PNG, strength=2)
        assert caught.value.field == "operation.strength"
        with pytest.raises(InvalidRequest) as caught:
            client.edit("p", PNG, image=PNG, mask=make_image(8, 8))
        assert caught.value.field == "operation.mask"
    assert sent == []

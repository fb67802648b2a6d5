"""Neutral request -> Replicate wire: golden payloads, the enum table, image routes, options."""

from __future__ import annotations

import base64
from typing import get_args

import pytest
from replicate_fakes import png_bytes

from ideochar.errors import InvalidRequest, Unsupported
from ideochar.media import ImageInput
from ideochar.request import CharacterRequest, Edit, MagicPrompt, Remix, Speed, Style
from ideochar_replicate import mapping
from ideochar_replicate.mapping import (
    TITLE_CASE,
    ReplicateOptions,
    create_body,
    create_headers,
    image_route,
    prompt_from_logs,
    request_images,
    seed_from_logs,
)
from ideochar_replicate.provider import ReplicateProvider
from ideochar_replicate.wire import MagicPromptOption, RenderingSpeed, StyleType

REF_URL = "https://replicate.delivery/pbxt/NUKxQppU8C2sCfleK0lGVI0vt9P3swKz3MnKs1z9fnHkdAV2/0_1.webp"


def _body(request: CharacterRequest, options: ReplicateOptions | None = None) -> dict[str, object]:
    """The create body as the provider would build it for inline/URL images (no upload)."""
    images = {field: image.url or image.data_uri() for field, _, image in request_images(request)}
    return create_body(request, images, options or ReplicateOptions())


def test_generate_payload_is_exactly_the_documented_input_shape() -> None:
    request = CharacterRequest(
        prompt="a close up photo of a woman in a fashion magazine photoshoot",
        reference=REF_URL,
        style="realistic",
        speed="turbo",
        magic_prompt="off",
        aspect_ratio="16:9",
        seed=1234,
    )
    assert _body(request) == {
        "input": {
            "prompt": "a close up photo of a woman in a fashion magazine photoshoot",
            "character_reference_image": REF_URL,
            "rendering_speed": "Turbo",
            "style_type": "Realistic",
            "magic_prompt_option": "Off",
            "aspect_ratio": "16:9",
            "seed": 1234,
        }
    }


def test_generate_golden_defaults_every_unset_setting_is_explicit(pinned_seed: int) -> None:
    request = CharacterRequest(prompt="a knight", reference=REF_URL)
    assert _body(request) == {
        "input": {
            "prompt": "a knight",
            "character_reference_image": REF_URL,
            "rendering_speed": "Default",
            "style_type": "Auto",
            "magic_prompt_option": "Auto",
            "aspect_ratio": "1:1",
            "seed": pinned_seed,
        }
    }


def test_edit_golden_defaults_every_unset_setting_is_explicit_and_no_size(pinned_seed: int) -> None:
    image, mask = png_bytes(64, 64, "blue"), png_bytes(64, 64, "black")
    request = CharacterRequest(prompt="p", reference=REF_URL, operation=Edit(image=image, mask=mask))
    body = _body(request)["input"]
    assert isinstance(body, dict)
    assert {k: v for k, v in body.items() if k not in ("image", "mask")} == {
        "prompt": "p",
        "character_reference_image": REF_URL,
        "rendering_speed": "Default",
        "style_type": "Auto",
        "magic_prompt_option": "Auto",
        "seed": pinned_seed,
    }


def test_the_seed_is_drawn_by_the_one_shared_toolkit_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    import ideochar.toolkit

    assert mapping.draw_seed is ideochar.toolkit.draw_seed
    monkeypatch.setattr(mapping, "draw_seed", lambda: 90210)
    assert _body(CharacterRequest(prompt="a knight", reference=REF_URL))["input"]["seed"] == 90210  # type: ignore[index]


def test_each_create_without_a_seed_gets_its_own_so_siblings_differ_in_the_list() -> None:
    request = CharacterRequest(prompt="a knight", reference=REF_URL)
    seeds = {_body(request)["input"]["seed"] for _ in range(20)}  # type: ignore[index]
    assert len(seeds) == 20
    assert all(0 <= seed <= mapping.MAX_SEED for seed in seeds)  # type: ignore[operator]


def test_the_callers_seed_is_sent_as_given() -> None:
    request = CharacterRequest(prompt="a knight", reference=REF_URL, seed=0)
    assert {_body(request)["input"]["seed"] for _ in range(5)} == {0}  # type: ignore[index]


def test_resolution_is_sent_as_wxh_without_an_aspect_ratio() -> None:
    request = CharacterRequest(prompt="p", reference=REF_URL, resolution=(1152, 864), speed="quality")
    payload = _body(request)["input"]
    assert isinstance(payload, dict)
    assert payload["resolution"] == "1152x864"
    assert "aspect_ratio" not in payload
    assert payload["rendering_speed"] == "Quality"


def test_unset_size_is_the_square_ratio_never_the_string_none() -> None:
    payload = _body(CharacterRequest(prompt="p", reference=REF_URL))["input"]
    assert isinstance(payload, dict)
    assert "resolution" not in payload and payload["aspect_ratio"] == "1:1"
    assert "None" not in payload.values()


def test_edit_payload_carries_image_and_mask_and_no_size() -> None:
    image, mask = png_bytes(64, 64, "blue"), png_bytes(64, 64, "black")
    request = CharacterRequest(
        prompt="put her in a cafe",
        reference=REF_URL,
        operation=Edit(image=image, mask=mask),
        style="fiction",
        seed=7,
    )
    assert _body(request) == {
        "input": {
            "prompt": "put her in a cafe",
            "character_reference_image": REF_URL,
            "rendering_speed": "Default",
            "style_type": "Fiction",
            "magic_prompt_option": "Auto",
            "seed": 7,
            "image": "data:image/png;base64," + base64.b64encode(image).decode(),
            "mask": "data:image/png;base64," + base64.b64encode(mask).decode(),
        }
    }


def test_webhook_option_goes_into_the_body_next_to_input() -> None:
    options = ReplicateOptions(webhook="https://hooks.example.com/r8", webhook_events_filter=["completed"])
    body = _body(CharacterRequest(prompt="p", reference=REF_URL), options)
    assert body["webhook"] == "https://hooks.example.com/r8"
    assert body["webhook_events_filter"] == ["completed"]


@pytest.mark.parametrize(
    ("wire_field", "neutral", "wire"),
    [
        ("rendering_speed", Speed, RenderingSpeed),
        ("style_type", Style, StyleType),
        ("magic_prompt_option", MagicPrompt, MagicPromptOption),
    ],
)
def test_title_case_table_maps_every_neutral_value_onto_the_wire_enum(
    wire_field: str, neutral: object, wire: object
) -> None:
    table = TITLE_CASE[wire_field]
    assert set(table) == set(get_args(neutral))
    assert set(table.values()) == set(get_args(wire))


def test_small_local_image_goes_inline_and_large_one_is_uploaded() -> None:
    limit = mapping.DATA_URI_MAX_BYTES
    assert limit == 1_000_000
    just_under = ImageInput.of(png_bytes() + b"\0" * (limit - 1 - len(png_bytes())))
    at_limit = ImageInput.of(png_bytes() + b"\0" * (limit - len(png_bytes())))
    assert just_under.size == limit - 1 and at_limit.size == limit
    assert image_route(just_under) == "data_uri"
    assert image_route(at_limit) == "upload"
    assert image_route(ImageInput.of(REF_URL)) == "url"
    assert image_route(ImageInput.of(png_bytes()), data_uri_max_bytes=0) == "upload"


def test_only_fields_replicate_takes_are_collected_as_images() -> None:
    request = CharacterRequest(
        prompt="p", reference=png_bytes(), reference_mask=png_bytes(), style_references=[REF_URL]
    )
    assert [wire for wire, _, _ in request_images(request)] == ["character_reference_image"]


@pytest.mark.parametrize(
    ("given", "sent"),
    [("5m", "5m"), ("30s", "30s"), ("1h30m", "1h30m"), (" 2m ", "2m"), (90, "90s"), (1.5, "1.5s")],
)
def test_cancel_after_accepts_durations_and_seconds(given: object, sent: str) -> None:
    assert create_headers(ReplicateOptions(cancel_after=given))["Cancel-After"] == sent


@pytest.mark.parametrize("given", ["soon", "5 minutes", "-5m", "0s", 0, "m5", "", "2M", "5 m"])
def test_cancel_after_rejects_what_is_not_a_positive_duration(given: object) -> None:
    request = CharacterRequest(prompt="p", reference=REF_URL, extra={"replicate": {"cancel_after": given}})
    with pytest.raises(InvalidRequest) as caught:
        ReplicateProvider().options(request)
    assert caught.value.field == "extra.replicate.cancel_after"


def test_prefer_header_follows_the_wait_option_and_zero_means_no_hold() -> None:
    assert create_headers(ReplicateOptions()) == {}  # not held: the id comes back at once
    assert create_headers(ReplicateOptions(wait=5)) == {"Prefer": "wait=5"}
    assert create_headers(ReplicateOptions(wait=60)) == {"Prefer": "wait=60"}
    assert create_headers(ReplicateOptions(wait=0)) == {}


@pytest.mark.parametrize("bad", [{"wait": 61}, {"wait": -1}, {"unknown": 1}, {"webhook": "http://plain.example"}])
def test_bad_vendor_options_are_refused_before_anything_is_sent(bad: dict[str, object]) -> None:
    request = CharacterRequest(prompt="p", reference=REF_URL, extra={"replicate": bad})
    with pytest.raises(InvalidRequest) as caught:
        ReplicateProvider().check(request)
    assert caught.value.field is not None and caught.value.field.startswith("extra.replicate.")


def test_seed_and_used_prompt_are_read_from_the_logs() -> None:
    logs = "Using seed: 144578042\nGenerating...\nPrompt used: A striking fashion photograph.\nDone\n"
    assert seed_from_logs(logs) == 144578042
    assert prompt_from_logs(logs) == "A striking fashion photograph."
    assert seed_from_logs("Generating...") is None
    assert seed_from_logs(None) is None
    assert prompt_from_logs("") is None


def test_provider_declares_generate_and_edit_only_and_warns_about_what_it_ignores() -> None:
    provider = ReplicateProvider()
    assert provider.info.operations == {"generate", "edit"}
    with pytest.raises(Unsupported):
        provider.check(CharacterRequest(prompt="p", reference=REF_URL, operation=Remix(image=REF_URL)))
    warnings = provider.check(CharacterRequest(prompt="p", reference=REF_URL, negative_prompt="blur", seed=3))
    assert [w.field for w in warnings] == ["negative_prompt"]


def test_quote_uses_the_inferred_price_per_speed_and_fans_out_counts() -> None:
    quote = ReplicateProvider().quote(CharacterRequest(prompt="p", reference=REF_URL, speed="turbo", num_images=3))
    assert quote.supported
    assert str(quote.unit_price_usd) == "0.10"
    assert (quote.calls, quote.images) == (3, 3)
    assert quote.price_inferred

"""Golden multipart bodies: what goes out for generate, edit (both paths) and remix, parsed back with
the stdlib's MIME parser, part by part, value by value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from ideogram_support import API, IMAGE_URL, KEY, FakeIdeogram, Form, context, form_of, make_image, run

from ideochar.exchange import ReaderStream, Send
from ideochar.request import CharacterRequest, Edit, Remix
from ideochar_ideogram.provider import IdeogramProvider

REFERENCE = make_image(64, 48, "PNG", "navy")
REFERENCE_MASK = make_image(64, 48, "PNG", "white")
STYLE_REF = make_image(40, 40, "JPEG", "orange")
SCENE = make_image(80, 60, "WEBP", "green")
SCENE_MASK = make_image(80, 60, "PNG", "black")


def _sent(request: CharacterRequest, **options: Any) -> tuple[httpx.Request, Form]:
    fake = FakeIdeogram(images={IMAGE_URL: make_image(32, 32)})
    run("drive", IdeogramProvider().exchange(request, context(**options)), fake)
    (post,) = fake.posts()
    return post, form_of(post)


def _layout(form: Form) -> list[tuple[str, str | None, str | None]]:
    """(name, text value or file name, declared content type) per part, in order."""
    return [(p.name, p.text if p.filename is None else p.filename, p.content_type) for p in form.parts]


def test_generate_golden_form() -> None:
    request = CharacterRequest(
        prompt="a knight in the rain",
        reference=REFERENCE,
        reference_mask=REFERENCE_MASK,
        style="fiction",
        speed="quality",
        magic_prompt="off",
        aspect_ratio="16:9",
        seed=42,
        num_images=3,
        negative_prompt="blurry",
        color_palette=[("#FF0000", 0.6), "#00ff00"],
        style_references=[STYLE_REF],
    )
    post, form = _sent(request)
    assert post.url == f"{API}/v1/ideogram-v3/generate"
    assert _layout(form) == [
        ("prompt", "a knight in the rain", None),
        ("aspect_ratio", "16x9", None),
        ("rendering_speed", "QUALITY", None),
        ("magic_prompt", "OFF", None),
        ("style_type", "FICTION", None),
        ("seed", "42", None),
        ("num_images", "3", None),
        ("negative_prompt", "blurry", None),
        ("color_palette", '{"members":[{"color_hex":"#FF0000","color_weight":0.6},{"color_hex":"#00FF00"}]}',
         "application/json"),
        ("character_reference_images", "character_reference.png", "image/png"),
        ("character_reference_images_mask", "character_reference_mask.png", "image/png"),
        ("style_reference_images", "style_references_0.jpg", "image/jpeg"),
    ]  # fmt: skip
    assert form.one("character_reference_images").value == REFERENCE
    assert form.one("character_reference_images_mask").value == REFERENCE_MASK
    assert form.one("style_reference_images").value == STYLE_REF


def test_generate_sends_style_codes_as_repeated_fields_and_a_preset_palette_as_json() -> None:
    request = CharacterRequest(
        prompt="p", reference=REFERENCE, style_codes=["AAFF5733", "0133ff57", "DE3357FF"], color_palette="ember"
    )
    _, form = _sent(request)
    assert [p.text for p in form.all("style_codes")] == ["AAFF5733", "0133FF57", "DE3357FF"]
    palette = form.one("color_palette")
    assert palette.filename is None and palette.content_type == "application/json"
    assert json.loads(palette.text) == {"name": "EMBER"}
    assert "style_type" not in form.names()


def test_generate_sends_resolution_instead_of_aspect_ratio() -> None:
    _, form = _sent(CharacterRequest(prompt="p", reference=REFERENCE, resolution="1280x800"))
    assert form.text("resolution") == "1280x800"
    assert "aspect_ratio" not in form.names()


@pytest.mark.parametrize(
    ("edit_path", "route"), [("edit", "/v1/ideogram-v3/edit"), ("inpaint", "/v1/ideogram-v3/inpaint")]
)
def test_edit_golden_form(edit_path: str, route: str) -> None:
    request = CharacterRequest(
        prompt="a hat on the character",
        reference=REFERENCE,
        operation=Edit(image=SCENE, mask=SCENE_MASK),
        speed="turbo",
        seed=7,
        num_images=2,
    )
    post, form = _sent(request, edit_path=edit_path)
    assert post.url.path == route
    assert _layout(form) == [
        ("prompt", "a hat on the character", None),
        ("rendering_speed", "TURBO", None),
        ("magic_prompt", "AUTO", None),
        ("style_type", "AUTO", None),
        ("seed", "7", None),
        ("num_images", "2", None),
        ("image", "image.webp", "image/webp"),
        ("mask", "mask.png", "image/png"),
        ("character_reference_images", "character_reference.png", "image/png"),
    ]
    assert form.one("image").value == SCENE
    assert form.one("mask").value == SCENE_MASK


def test_edit_path_can_come_from_the_request_extra() -> None:
    request = CharacterRequest(
        prompt="p",
        reference=REFERENCE,
        operation=Edit(image=SCENE, mask=SCENE_MASK),
        extra={"ideogram": {"edit_path": "inpaint"}},
    )
    post, _ = _sent(request)
    assert post.url.path == "/v1/ideogram-v3/inpaint"


def test_edit_sends_neither_size_nor_negative_prompt() -> None:
    request = CharacterRequest(
        prompt="p", reference=REFERENCE, operation=Edit(image=SCENE, mask=SCENE_MASK), negative_prompt="blurry"
    )
    _, form = _sent(request)
    assert {"negative_prompt", "aspect_ratio", "resolution"}.isdisjoint(form.names())


def test_remix_golden_form() -> None:
    request = CharacterRequest(
        prompt="the character as a painting",
        reference=REFERENCE,
        operation=Remix(image=SCENE, strength=0.25),
        aspect_ratio="2:3",
        style="realistic",
        magic_prompt="on",
        negative_prompt="text",
    )
    post, form = _sent(request)
    assert post.url.path == "/v1/ideogram-v3/remix"
    assert _layout(form) == [
        ("prompt", "the character as a painting", None),
        ("image_weight", "25", None),
        ("aspect_ratio", "2x3", None),
        ("rendering_speed", "DEFAULT", None),
        ("magic_prompt", "ON", None),
        ("style_type", "REALISTIC", None),
        ("num_images", "1", None),
        ("negative_prompt", "text", None),
        ("image", "image.webp", "image/webp"),
        ("character_reference_images", "character_reference.png", "image/png"),
    ]


def test_headers_carry_the_key_and_a_true_length() -> None:
    post, _ = _sent(CharacterRequest(prompt="p", reference=REFERENCE))
    assert post.headers["api-key"] == KEY
    assert "authorization" not in post.headers
    assert post.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert int(post.headers["content-length"]) == len(post.read())
    assert post.headers["accept"] == "application/json"


def test_body_is_streamed_and_rereadable(tmp_path: Path) -> None:
    """A local file is read in chunks by the driver, not loaded into the request; every pass is identical."""
    path = tmp_path / "face.png"
    path.write_bytes(REFERENCE)
    flow = IdeogramProvider().exchange(CharacterRequest(prompt="p", reference=path), context())
    step = next(flow)
    assert isinstance(step, Send) and step.admits
    assert isinstance(step.request.stream, ReaderStream)
    first = b"".join(step.request.stream)
    second = b"".join(step.request.stream)
    assert first == second
    assert len(first) == int(step.request.headers["content-length"])
    assert REFERENCE in first
    flow.close()

"""The helpers vendor routes share: strict multipart parsing, data URIs, image probing, legal sizes."""

from __future__ import annotations

import pytest
from requests_toolbelt.multipart.encoder import MultipartEncoder

from ideochar.emulator.inputs import MultipartError, decode_data_uri, parse_multipart, probe_image
from ideochar.emulator.kit import ASPECT_RATIOS, RESOLUTIONS, nearest_resolution, size_for_aspect_ratio

from .support import data_uri, image


def encoded(fields: list[tuple[str, object]]) -> tuple[bytes, str]:
    encoder = MultipartEncoder(fields)
    return encoder.to_string(), encoder.content_type


def test_multipart_parts_keep_their_names_files_and_bytes() -> None:
    png = image()
    body, content_type = encoded([("prompt", "a knight"), ("image", ("scene.png", png, "image/png"))])
    prompt, picture = parse_multipart(body, content_type)
    assert (prompt.name, prompt.is_file, prompt.text()) == ("prompt", False, "a knight")
    assert (picture.name, picture.filename, picture.content_type, picture.data) == (
        "image",
        "scene.png",
        "image/png",
        png,
    )


@pytest.mark.parametrize(
    ("cut", "content_type"),
    [
        (lambda body: body[:-10], None),
        (lambda body: body.replace(b"form-data; ", b""), None),
        (lambda body: body, "multipart/form-data"),
        (lambda body: body, "application/json"),
    ],
)
def test_malformed_multipart_bodies_are_refused(cut: object, content_type: str | None) -> None:
    body, declared = encoded([("prompt", "p")])
    with pytest.raises(MultipartError):
        parse_multipart(cut(body), content_type or declared)  # type: ignore[operator]


def test_data_uris_decode_or_are_refused() -> None:
    png = image()
    assert decode_data_uri(data_uri(png)) == ("image/png", png)
    assert decode_data_uri("data:image/png;base64,@@@") is None
    assert decode_data_uri("https://example.com/x.png") is None


def test_probing_reads_format_and_size_and_refuses_the_rest() -> None:
    info = probe_image(image(30, 20, fmt="WEBP"))
    assert info is not None and (info.format, info.width, info.height) == ("webp", 30, 20)
    assert probe_image(image(fmt="GIF")) is None
    assert probe_image(b"\x89PNG\r\n\x1a\n broken") is None


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_every_aspect_ratio_maps_to_a_legal_size_of_that_shape(ratio: str) -> None:
    width, height = size_for_aspect_ratio(ratio)
    assert f"{width}x{height}" in RESOLUTIONS
    w, h = (int(v) for v in ratio.split(":"))
    assert abs((width / height) / (w / h) - 1) < 0.03


def test_known_sizes_match_ideograms() -> None:
    assert size_for_aspect_ratio("16:9") == (1312, 736)
    assert size_for_aspect_ratio("1:1") == (1024, 1024)
    assert nearest_resolution(1024, 576) == (1312, 736)
    assert nearest_resolution(512, 512) == (1024, 1024)

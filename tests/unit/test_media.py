"""ImageInput: formats from the bytes, sizes from the header, lazy reading."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from conftest import make_image
from ideochar import ImageInput, InvalidRequest
from ideochar.media import sniff_format


@pytest.mark.parametrize(("fmt", "expected"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_format_is_sniffed_from_the_bytes(fmt: str, expected: str) -> None:
    data = make_image(20, 10, fmt)
    image = ImageInput.of(data)
    assert image.format == expected
    assert image.content_type == f"image/{expected}"
    assert image.dimensions == (20, 10)
    assert image.size == len(data)


def test_a_misnamed_file_is_judged_by_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(make_image(8, 8, "JPEG"))
    image = ImageInput.of(path)
    assert image.format == "jpeg"
    assert image.filename == "photo.png"


def test_gif_and_text_are_refused() -> None:
    for data in (b"GIF89a" + b"\0" * 20, b"hello"):
        with pytest.raises(InvalidRequest):
            ImageInput.of(data)
    assert sniff_format(b"RIFF\0\0\0\0WAVE") is None


def test_path_input_reads_only_the_head_until_asked(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    data = make_image(40, 30)
    path.write_bytes(data)
    image = ImageInput.of(str(path))
    assert image.kind == "path" and image.is_local
    assert image.dimensions == (40, 30)
    assert image.read() == data
    assert b"".join(image.iter_chunks(7)) == data


def test_bytes_are_not_copied() -> None:
    data = make_image()
    assert ImageInput.of(data).read() is data


def test_url_input_is_not_fetched_and_has_no_local_facts() -> None:
    image = ImageInput.of("https://example.com/face.jpg?x=1")
    assert image.kind == "url" and not image.is_local
    assert image.format is None and image.size is None and image.dimensions is None
    assert image.url == "https://example.com/face.jpg?x=1"
    assert image.filename == "face.jpg"
    with pytest.raises(InvalidRequest):
        image.read()


def test_data_uri_round_trip() -> None:
    data = make_image(5, 5)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    image = ImageInput.of(uri)
    assert image.kind == "data_uri" and image.read() == data
    assert image.data_uri() == uri


@pytest.mark.parametrize("uri", ["data:image/png;base64,!!!", "data:", "data:image/png,plain"])
def test_bad_data_uris_are_refused(uri: str) -> None:
    with pytest.raises(InvalidRequest):
        ImageInput.of(uri)


def test_equality_is_by_content() -> None:
    data = make_image()
    assert ImageInput.of(data) == ImageInput.of(bytes(bytearray(data)))
    assert ImageInput.of("https://a.test/x.png") != ImageInput.of("https://a.test/y.png")


def test_describe_never_contains_the_bytes() -> None:
    text = ImageInput.of(make_image()).describe()
    assert "sha256:" in text and len(text) < 100


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_dimensions_behind_more_metadata_than_the_first_bytes_hold(tmp_path: Path, fmt: str) -> None:
    """The size is read from the first bytes when it is there, else from the file: never wrong, never refused."""
    import io
    import os

    from PIL import Image, PngImagePlugin

    from ideochar._constants import SNIFF_BYTES

    noise = os.urandom(SNIFF_BYTES).hex()  # metadata larger than the bytes read to sniff the format
    buffer = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("comment", noise)
        Image.new("RGB", (37, 23)).save(buffer, fmt, pnginfo=info)
    else:
        Image.new("RGB", (37, 23)).save(buffer, fmt, icc_profile=os.urandom(2 * SNIFF_BYTES))
    path = tmp_path / f"face.{fmt.lower()}"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(Exception):  # the first bytes alone do not hold the size
        _ = Image.open(io.BytesIO(buffer.getvalue()[:SNIFF_BYTES])).size
    assert ImageInput.of(path).dimensions == (37, 23)
    assert ImageInput.of(buffer.getvalue()).dimensions == (37, 23)


def test_a_broken_header_is_refused_by_name(tmp_path: Path) -> None:
    data = make_image(20, 10)
    path = tmp_path / "face.png"
    path.write_bytes(data[:40])  # the signature and a cut IHDR
    with pytest.raises(InvalidRequest, match="cannot be read"):
        _ = ImageInput.of(path).dimensions

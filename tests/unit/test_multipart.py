"""The shared streamed multipart body: sized without reading, the same bytes on every pass, honest lengths."""

from __future__ import annotations

import email.parser
import email.policy
from pathlib import Path

import pytest

from conftest import make_image
from ideochar import ImageInput, InvalidRequest
from ideochar.multipart import FilePart, MultipartBody, TextPart


def _parse(body: MultipartBody) -> list[tuple[str | None, str | None, bytes]]:
    raw = b"".join(body.iter_bytes(1000))
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {body.content_type}\r\n\r\n".encode() + raw
    )
    return [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_payload(decode=True))
            for p in message.iter_parts()]  # fmt: skip


def test_parts_round_trip_with_the_declared_length(tmp_path: Path) -> None:
    data = make_image(50, 40, "JPEG")
    path = tmp_path / "face.jpg"
    path.write_bytes(data)
    body = MultipartBody(
        [TextPart("prompt", "a knight"), TextPart("palette", '{"name":"EMBER"}', "application/json"),
         FilePart("image", ImageInput.of(path)), FilePart("mask", ImageInput.of(data), filename="mask.jpg")]
    )  # fmt: skip
    assert body.length == len(b"".join(body.iter_bytes()))
    assert b"".join(body.iter_bytes()) == b"".join(body.iter_bytes())  # every pass is identical
    assert _parse(body) == [
        ("prompt", None, b"a knight"),
        ("palette", None, b'{"name":"EMBER"}'),
        ("image", "face.jpg", data),
        ("mask", "mask.jpg", data),
    ]


def test_a_small_file_that_changes_size_after_checking_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "face.png"
    path.write_bytes(make_image())
    body = MultipartBody([FilePart("image", ImageInput.of(path))])
    length = body.length  # sized from the recorded size: nothing read yet
    path.write_bytes(make_image(200, 200))
    with pytest.raises(InvalidRequest, match="longer"):
        b"".join(body.iter_bytes())
    assert length < path.stat().st_size


def test_a_large_file_that_changes_size_while_streamed_is_refused(tmp_path: Path) -> None:
    from ideochar._constants import INLINE_READ_BYTES

    path = tmp_path / "face.png"
    path.write_bytes(make_image() + b"\0" * INLINE_READ_BYTES)  # over the size read at once: streamed
    body = MultipartBody([FilePart("image", ImageInput.of(path))])
    length = body.length
    path.write_bytes(path.read_bytes() + b"\0" * 1000)
    with pytest.raises(InvalidRequest, match="longer"):
        b"".join(body.iter_bytes())
    assert length < path.stat().st_size


def test_a_url_cannot_be_a_file_part() -> None:
    with pytest.raises(InvalidRequest, match="not local"):
        _ = MultipartBody([FilePart("image", ImageInput.of("https://example.com/a.png"))]).length

"""Reading what clients send to the emulator: multipart bodies, data URIs, image bytes.

Vendor routes are strict, so these helpers see bodies exactly as a strict server does: a multipart
body is parsed by hand (every part's headers are kept, so a text field sent as a file part or a part
without a name is visible), a data URI must be well formed base64, an image is identified by its bytes
(JPEG, PNG or WebP) and its pixel size read from its header without decoding it.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Literal

__all__ = [
    "ImageInfo",
    "MultipartError",
    "Part",
    "decode_data_uri",
    "media_type",
    "parse_multipart",
    "probe_image",
]

ImageKind = Literal["jpeg", "png", "webp"]

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)


class MultipartError(ValueError):
    """A multipart/form-data body that is not well formed."""


@dataclass(frozen=True)
class Part:
    """One form part: a text field (``filename`` None) or a file."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass(frozen=True)
class ImageInfo:
    format: ImageKind
    width: int
    height: int
    mode: str


def media_type(header: str | None, *, name: str = "content-type") -> tuple[str, dict[str, str]]:
    """``("multipart/form-data", {"boundary": "..."})`` from a Content-Type header (lower-cased type);
    ``name="content-disposition"`` reads a part's disposition the same way."""
    if not header:
        return "", {}
    message = Message()
    message[name] = header
    params = message.get_params(header=name) or []
    main = str(params[0][0]).strip().lower() if params else ""
    return main, {str(k).lower(): collapse_rfc2231_value(v) for k, v in params[1:]}


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """The parts of a multipart/form-data body (RFC 7578); :class:`MultipartError` when malformed.

    A body cut short (no closing delimiter) is malformed: a truncated upload must not pass as a shorter one.
    """
    kind, params = media_type(content_type)
    boundary = params.get("boundary")
    if kind != "multipart/form-data" or not boundary:
        raise MultipartError("Content-Type must be multipart/form-data with a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise MultipartError("the body has no boundary delimiter")
    parts: list[Part] = []
    position = start + len(delimiter)
    while True:
        if body[position : position + 2] == b"--":
            return parts
        if body[position : position + 2] != b"\r\n":
            raise MultipartError("malformed delimiter line")
        head_end = body.find(b"\r\n\r\n", position + 2)
        if head_end < 0:
            raise MultipartError("a part has no end of headers")
        headers = _part_headers(body[position + 2 : head_end])
        data_start = head_end + 4
        data_end = body.find(b"\r\n" + delimiter, data_start)
        if data_end < 0:
            raise MultipartError("the body ends inside a part (truncated?)")
        disposition, disposition_params = media_type(headers.get("content-disposition"), name="content-disposition")
        if disposition != "form-data" or "name" not in disposition_params:
            raise MultipartError("a part has no Content-Disposition: form-data with a name")
        parts.append(
            Part(
                name=disposition_params["name"],
                filename=disposition_params.get("filename"),
                content_type=headers.get("content-type"),
                data=body[data_start:data_end],
            )
        )
        position = data_end + 2 + len(delimiter)


def _part_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError(f"malformed part header {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def decode_data_uri(text: str) -> tuple[str | None, bytes] | None:
    """``(declared media type, bytes)`` of a ``data:`` URI; None when it is not one or is malformed."""
    match = _DATA_URI.match(text)
    if match is None:
        return None
    payload = text[match.end() :]
    if match.group("b64"):
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        from urllib.parse import unquote_to_bytes

        data = unquote_to_bytes(payload)
    mime = match.group("mime")
    return (mime.lower() if mime else None), data


def probe_image(data: bytes) -> ImageInfo | None:
    """Format and pixel size of a JPEG, PNG or WebP image (header only); None for anything else."""
    kind: ImageKind
    if data.startswith(b"\xff\xd8\xff"):
        kind = "jpeg"
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        kind = "png"
    elif len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "webp"
    else:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return ImageInfo(kind, image.width, image.height, image.mode)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None

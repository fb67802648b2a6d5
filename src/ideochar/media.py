"""Images going in: one type, :class:`ImageInput`, for a path, bytes, an http(s) URL or a data URI.

Why one type: each vendor wants images differently (fal a URL or data URI, Segmind a URL or a file
part, Ideogram a file part, Replicate a URL, data URI or upload). The caller should not care, and every
check that needs no network (format from the bytes, size, pixel dimensions) should happen before any
money is spent.

Reading is lazy. A path is stat'ed and its first bytes sniffed; the whole file is read only when a
vendor needs it, and a multipart upload streams it in chunks. Pixel dimensions come from the image
header (Pillow parses headers without decoding pixels), and Pillow is imported only when asked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import unquote_to_bytes, urlsplit

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from ideochar._constants import READ_CHUNK_BYTES, SNIFF_BYTES
from ideochar.errors import InvalidRequest

__all__ = ["CONTENT_TYPES", "ImageFormat", "ImageInput", "SourceKind", "sniff_format"]

ImageFormat = Literal["jpeg", "png", "webp"]
SourceKind = Literal["path", "bytes", "url", "data_uri"]

CONTENT_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)


def sniff_format(head: bytes) -> ImageFormat | None:
    """The real format from the first bytes; a file's name or a declared type proves nothing."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


class ImageInput:
    """An image given by the caller. Construct with :meth:`of` (accepts what the caller has).

    Example::

        ImageInput.of("face.png")                       # a path
        ImageInput.of(Path("face.png").read_bytes())    # bytes
        ImageInput.of("https://example.com/face.jpg")   # fetched by the vendor, or by us if it needs bytes
        ImageInput.of("data:image/png;base64,iVBOR...")
    """

    __slots__ = ("__dict__", "_bytes", "_path", "_url", "kind")

    def __init__(
        self,
        *,
        kind: SourceKind,
        path: Path | None = None,
        data: bytes | None = None,
        url: str | None = None,
    ) -> None:
        self.kind: SourceKind = kind
        self._path = path
        self._bytes = data
        self._url = url

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def of(cls, value: Any) -> ImageInput:
        """Make an input from a path, ``bytes``, an http(s) URL, a data URI, or an ``ImageInput``."""
        if isinstance(value, ImageInput):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value) if not isinstance(value, bytes) else value
            image = cls(kind="bytes", data=data)
            image._require_image()
            return image
        if isinstance(value, os.PathLike):
            return cls._from_path(Path(value))
        if isinstance(value, str):
            text = value.strip()
            lowered = text[:8].lower()
            if lowered.startswith(("http://", "https://")):
                return cls._from_url(text)
            if lowered.startswith("data:"):
                return cls._from_data_uri(text)
            if "://" in text[:16]:
                scheme = text.split("://", 1)[0]
                raise InvalidRequest(f"only http(s) URLs are accepted, not {scheme}://")
            return cls._from_path(Path(text).expanduser())
        raise InvalidRequest(
            f"an image must be a path, bytes, an http(s) URL or a data URI, not {type(value).__name__}"
        )

    @classmethod
    def _from_path(cls, path: Path) -> ImageInput:
        try:
            if not path.is_file():
                raise InvalidRequest(f"no such image file: {path}")
        except OSError as exc:
            raise InvalidRequest(f"cannot read image file {path}: {exc.strerror or exc}") from None
        image = cls(kind="path", path=path)
        image._require_image()
        return image

    @classmethod
    def _from_url(cls, url: str) -> ImageInput:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(f"not a usable http(s) URL: {url!r}")
        return cls(kind="url", url=url)

    @classmethod
    def _from_data_uri(cls, uri: str) -> ImageInput:
        match = _DATA_URI.match(uri)
        if not match:
            raise InvalidRequest("malformed data URI: expected data:<type>;base64,<data>")
        payload = uri[match.end() :]
        try:
            data = base64.b64decode(payload, validate=True) if match["b64"] else unquote_to_bytes(payload)
        except (binascii.Error, ValueError):
            raise InvalidRequest("the data URI's base64 payload is not valid base64") from None
        image = cls(kind="data_uri", data=data)
        image._require_image()
        declared = (match["mime"] or "").lower()
        actual = image.content_type
        if declared and declared != actual and not (declared == "image/jpg" and actual == "image/jpeg"):
            raise InvalidRequest(f"the data URI says {declared} but its bytes are {actual}")
        return image

    def _require_image(self) -> None:
        if self.format is None:
            where = f" ({self._path})" if self._path else ""
            raise InvalidRequest(f"not a JPEG, PNG or WebP image{where}: the first bytes match none of them")

    # -- pydantic integration -------------------------------------------------------------------

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.of,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.describe()),
            json_schema_input_schema=core_schema.str_schema(),
        )

    # -- what is known ---------------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """The http(s) URL, for URL inputs only."""
        return self._url

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def is_local(self) -> bool:
        """True when the bytes are here (path, bytes, data URI); False for a URL."""
        return self.kind != "url"

    @cached_property
    def head(self) -> bytes:
        """The first bytes, enough to sniff the format and usually the pixel size."""
        if self._bytes is not None:
            return self._bytes[:SNIFF_BYTES]
        if self._path is not None:
            with self._path.open("rb") as handle:
                return handle.read(SNIFF_BYTES)
        return b""

    @cached_property
    def format(self) -> ImageFormat | None:
        """Sniffed from the bytes; None for a URL (unknown until fetched)."""
        return sniff_format(self.head) if self.is_local else None

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.format or "", "application/octet-stream")

    @cached_property
    def size(self) -> int | None:
        """Size in bytes; None for a URL."""
        if self._bytes is not None:
            return len(self._bytes)
        if self._path is not None:
            return self._path.stat().st_size
        return None

    @cached_property
    def dimensions(self) -> tuple[int, int] | None:
        """``(width, height)`` in pixels from the image header; None for a URL."""
        if not self.is_local:
            return None
        from PIL import Image, UnidentifiedImageError  # deferred: Pillow is only needed here

        # Pillow told which format to expect, and first given the bytes already read: the header is
        # nearly always in them, and opening the file again costs more than parsing it.
        formats = [self.format.upper()] if self.format else None
        broken = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
        whole = self.size is not None and len(self.head) >= self.size
        try:
            with Image.open(io.BytesIO(self.head), formats=formats) as img:
                return (int(img.width), int(img.height))
        except broken as exc:
            if whole:
                raise InvalidRequest(f"the {self.format} image cannot be read: {exc}") from None
        try:  # a header larger than the first bytes (big metadata): read the file itself
            with self.open() as handle, Image.open(handle, formats=formats) as img:
                return (int(img.width), int(img.height))
        except broken as exc:
            raise InvalidRequest(f"the {self.format} image cannot be read: {exc}") from None

    @property
    def filename(self) -> str:
        """A file name for multipart parts: the path's own name, else ``image.<ext>``."""
        if self._path is not None:
            return self._path.name
        if self._url is not None:
            name = urlsplit(self._url).path.rsplit("/", 1)[-1]
            return name or "image"
        return f"image.{_EXTENSIONS.get(self.format or '', 'bin')}"

    @cached_property
    def sha256(self) -> str:
        """Hex digest of the bytes (for cassettes and the journal); streams a path."""
        digest = hashlib.sha256()
        for chunk in self.iter_chunks():
            digest.update(chunk)
        return digest.hexdigest()

    # -- reading ---------------------------------------------------------------------------------

    def open(self) -> BinaryIO:
        """A fresh binary file object over the bytes; the caller closes it."""
        if self._bytes is not None:
            return io.BytesIO(self._bytes)
        if self._path is not None:
            return self._path.open("rb")
        raise InvalidRequest(f"{self._url} is a URL: its bytes are not here")

    def read(self) -> bytes:
        """All the bytes. Holds them once: bytes inputs are returned without a copy."""
        if self._bytes is not None:
            return self._bytes
        with self.open() as handle:
            return handle.read()

    def iter_chunks(self, size: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
        with self.open() as handle:
            while chunk := handle.read(size):
                yield chunk

    def data_uri(self) -> str:
        """``data:<type>;base64,...``. Built in one pass (base64 of the bytes, no extra copies kept)."""
        encoded = base64.b64encode(self.read()).decode("ascii")
        return f"data:{self.content_type};base64,{encoded}"

    def describe(self) -> str:
        """A short, key-free description for logs, the journal and JSON output."""
        if self._url is not None:
            return self._url
        if self._path is not None:
            return str(self._path)
        return f"<{self.kind} {self.content_type}, {self.size} bytes, sha256:{self.sha256[:12]}>"

    def __repr__(self) -> str:
        return f"ImageInput({self.describe()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageInput):
            return NotImplemented
        if self.kind == "url" or other.kind == "url":
            return self._url == other._url
        return self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash(self._url) if self.kind == "url" else hash(self.sha256)

"""Streamed multipart/form-data bodies, for the vendors that take files as form parts.

Built on requests-toolbelt's ``MultipartEncoder`` (imported only when a body is built: it imports
``requests``, which ``import ideochar`` must not pay for), over readers that open each image on first
read and hand it over in chunks. So a 10 MB reference is never held whole in memory, the body's length
is known before sending (from the sizes recorded when the inputs were checked, without opening them),
and every :meth:`MultipartBody.open` yields the same bytes with the same boundary, so a recorder or a
driver may read the body more than once.

Example::

    body = MultipartBody([TextPart("prompt", "a knight"), FilePart("image", ImageInput.of("face.png"))])
    httpx.Request("POST", url, stream=body.stream(),
                  headers={"content-type": body.content_type, "content-length": str(body.length)})
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ideochar._constants import READ_CHUNK_BYTES
from ideochar.errors import InvalidRequest
from ideochar.media import ImageInput

if TYPE_CHECKING:
    from ideochar.exchange import ReaderStream

__all__ = ["FilePart", "MultipartBody", "Part", "TextPart"]


@dataclass(frozen=True)
class TextPart:
    """A form field. ``content_type`` is set only for a part with a body of its own type (JSON)."""

    name: str
    value: str
    content_type: str | None = None


@dataclass(frozen=True)
class FilePart:
    """An image file part. ``filename`` defaults to the input's own (``ImageInput.filename``)."""

    name: str
    image: ImageInput
    filename: str | None = None


Part = TextPart | FilePart


class _ImageReader:
    """A file part's body for ``MultipartEncoder``: opens the image on first read, reads in chunks.

    ``len`` (what the encoder asks to size the body and to know when a part is done) is the number of
    bytes still to come, from the size recorded when the input was checked, so sizing the body opens
    nothing. A file that changed size since then is refused rather than sent under a
    ``Content-Length`` that lies.
    """

    def __init__(self, image: ImageInput) -> None:
        if image.size is None:
            raise InvalidRequest(f"{image.describe()} is not local: it cannot be a file part")
        self._image = image
        self._remaining = image.size
        self._handle: BinaryIO | None = None

    @property
    def len(self) -> int:
        return self._remaining

    def read(self, size: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        if self._handle is None:
            self._handle = self._image.open()
        want = self._remaining if size is None or size < 0 else min(size, self._remaining)
        data = self._handle.read(want)
        if not data:
            raise InvalidRequest(f"{self._image.describe()} became shorter while it was being uploaded")
        self._remaining -= len(data)
        if self._remaining == 0 and self._handle.read(1):
            raise InvalidRequest(f"{self._image.describe()} became longer while it was being uploaded")
        return data

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class _EncoderReader:
    """What :class:`~ideochar.exchange.ReaderStream` reads: the encoder, plus closing its files."""

    def __init__(self, encoder: Any, readers: Sequence[_ImageReader]) -> None:
        self._encoder = encoder
        self._readers = readers

    def read(self, size: int = -1, /) -> bytes:
        return bytes(self._encoder.read(size))

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


class MultipartBody:
    """A multipart/form-data body, sized up front and streamed on demand."""

    def __init__(self, parts: Sequence[Part], *, boundary: str | None = None) -> None:
        self.parts = tuple(parts)
        self.boundary = boundary or uuid.uuid4().hex

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @functools.cached_property
    def length(self) -> int:
        """The exact byte count, worked out once: the Content-Length header and the stream both need it."""
        encoder, readers = self._encoder()
        try:
            return int(encoder.len)
        finally:
            for reader in readers:
                reader.close()

    def open(self) -> _EncoderReader:
        return _EncoderReader(*self._encoder())

    def stream(self) -> ReaderStream:
        from ideochar.exchange import ReaderStream

        return ReaderStream(self.open, size=self.length)

    def iter_bytes(self, chunk_size: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
        reader = self.open()
        try:
            while chunk := reader.read(chunk_size):
                yield chunk
        finally:
            reader.close()

    def _encoder(self) -> tuple[Any, list[_ImageReader]]:
        from requests_toolbelt.multipart.encoder import MultipartEncoder

        fields: list[tuple[str, Any]] = []
        readers: list[_ImageReader] = []
        for part in self.parts:
            if isinstance(part, FilePart):
                reader = _ImageReader(part.image)
                readers.append(reader)
                fields.append((part.name, (part.filename or part.image.filename, reader, part.image.content_type)))
            elif part.content_type is not None:
                fields.append((part.name, (None, part.value, part.content_type)))
            else:
                fields.append((part.name, part.value))
        return MultipartEncoder(fields, boundary=self.boundary), readers

"""Streamed multipart/form-data bodies, for the vendors that take files as form parts.

Encoded by httpx's own multipart support (``httpx.Request(files=...)``), over readers that open each
image on first read and hand it over in chunks. So a 10 MB reference is never held whole in memory, the
body's length is known before sending (from the sizes recorded when the inputs were checked, without
opening them), and every :meth:`MultipartBody.open` yields the same bytes with the same boundary, so a
recorder or a driver may read the body more than once.

httpx rather than requests-toolbelt's ``MultipartEncoder``: the same streamed, sized bodies at a
quarter of the CPU (sizing and reading a 200 KB reference took 0.43 ms with the encoder, 0.11 ms here;
``docs/benchmarks.md``, figure 2), and no ``requests`` and ``urllib3`` underneath.

Example::

    body = MultipartBody([TextPart("prompt", "a knight"), FilePart("image", ImageInput.of("face.png"))])
    httpx.Request("POST", url, stream=body.stream(),
                  headers={"content-type": body.content_type, "content-length": str(body.length)})
"""

from __future__ import annotations

import functools
import io
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from ideochar._constants import INLINE_READ_BYTES, READ_CHUNK_BYTES
from ideochar.errors import InvalidRequest
from ideochar.media import ImageInput

if TYPE_CHECKING:
    from ideochar.exchange import ChunkReader, ReaderStream

__all__ = ["FilePart", "MultipartBody", "Part", "TextPart"]

#: The request httpx encodes a body for is never sent; its URL is parsed once.
_NOWHERE = httpx.URL("http://multipart.invalid/")


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


def _small_file(image: ImageInput) -> bytes:
    """A small image's bytes, checked against the size recorded when it was validated."""
    data = image.read()
    if len(data) != image.size:
        change = "longer" if len(data) > (image.size or 0) else "shorter"
        raise InvalidRequest(f"{image.describe()} became {change} since it was checked")
    return data


class _ImageReader:
    """A file part's body for httpx: opens the image on first read, reads in chunks.

    httpx sizes a file part by seeking to its end and back, and rewinds it before each pass: both are
    answered from the size recorded when the input was checked, so sizing the body opens nothing. A
    file that changed size since then is refused rather than sent under a ``Content-Length`` that lies.
    """

    def __init__(self, image: ImageInput) -> None:
        if image.size is None:
            raise InvalidRequest(f"{image.describe()} is not local: it cannot be a file part")
        self._image = image
        self._size = image.size
        self._position = 0
        self._handle: BinaryIO | None = None

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = self._size + offset if whence == os.SEEK_END else offset
        if whence not in (os.SEEK_SET, os.SEEK_END) or target not in (0, self._size):
            raise io.UnsupportedOperation("a file part seeks only to its start or its end")
        if target == 0:
            self.close()  # read again from the start on the next read
        self._position = target
        return target

    def read(self, size: int | None = -1) -> bytes:
        remaining = self._size - self._position
        if remaining <= 0:
            return b""
        if self._handle is None:
            self._handle = self._image.open()
        want = remaining if size is None or size < 0 else min(size, remaining)
        data = self._handle.read(want)
        if not data:
            raise InvalidRequest(f"{self._image.describe()} became shorter while it was being uploaded")
        self._position += len(data)
        if self._position == self._size and self._handle.read(1):
            raise InvalidRequest(f"{self._image.describe()} became longer while it was being uploaded")
        return data

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


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
        request, _ = self._request(read_small=False)  # sized from the recorded sizes: nothing is read
        return int(request.headers["Content-Length"])

    def open(self) -> ChunkReader:
        """A reader of the whole body from its start; closing it closes the files it opened."""
        from ideochar.exchange import ChunkReader

        request, readers = self._request(read_small=True)
        assert isinstance(request.stream, httpx.SyncByteStream)
        return ChunkReader(iter(request.stream), closing=readers)

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

    def _request(self, *, read_small: bool) -> tuple[httpx.Request, list[_ImageReader]]:
        """httpx encodes the parts, in order, with this body's boundary; the readers open nothing yet.

        With ``read_small`` (a pass that sends), a file part of at most :data:`INLINE_READ_BYTES` is read
        at once, which costs less than streaming it in pieces; sizing the body reads nothing.
        """
        files: list[tuple[str, Any]] = []
        readers: list[_ImageReader] = []
        for part in self.parts:
            if isinstance(part, FilePart):
                content: bytes | _ImageReader
                if read_small and part.image.size is not None and part.image.size <= INLINE_READ_BYTES:
                    content = _small_file(part.image)
                else:
                    content = _ImageReader(part.image)
                    readers.append(content)
                files.append((part.name, (part.filename or part.image.filename, content, part.image.content_type)))
            else:  # no file name: a plain form field (with its own type when it has one, as JSON)
                files.append((part.name, (None, part.value.encode(), part.content_type)))
        request = httpx.Request("POST", _NOWHERE, files=files, headers={"Content-Type": self.content_type})
        if "Content-Length" not in request.headers:  # httpx could not size a part: never send chunked
            raise AssertionError("the multipart body has no length")
        return request, readers

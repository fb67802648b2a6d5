"""Ideogram's wire shapes for the v3 routes: the multipart form going out, the JSON coming back.

The contract is Ideogram's OpenAPI document (``reference/ideogram-openapi.json``: schemas
``GenerateImageRequestV3``, ``EditImageRequestV3``, ``RemixImageRequestV3`` and
``ImageGenerationResponseV3``). In short:

* ``POST /v1/ideogram-v3/generate``, ``/edit`` (``/inpaint`` takes the same schema) and ``/remix``,
  all ``multipart/form-data``, authenticated by an ``Api-Key`` header.
* Arrays (``style_codes``, ``*_images``) are repeated form fields; ``color_palette`` is **one** part
  whose content type is ``application/json`` (the spec's ``encoding`` for that property).
* The answer is synchronous: ``{"created", "data": [{"url", "prompt", "resolution", "seed",
  "is_image_safe", "style_type"?}]}``. ``url`` is null when the safety check withheld the image,
  which is billed all the same. URLs expire (24 h per the docs): download them at once.

The multipart body is produced by ``requests_toolbelt``'s ``MultipartEncoder`` (imported only when a
body is built: it imports ``requests``) over readers that open each image on first read and hand it
over in chunks, so a 10 MB reference is never held whole, and the body's exact length is known
before any file is read (``Content-Length`` comes from the sizes recorded when the inputs were checked).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ideochar.errors import InvalidRequest
from ideochar.media import ImageInput

if TYPE_CHECKING:
    from ideochar.exchange import ReaderStream

__all__ = [
    "EDIT_PATHS",
    "GENERATE_PATH",
    "HEADER_KEY",
    "REMIX_PATH",
    "EditPath",
    "ErrorBody",
    "FilePart",
    "GenerationResponse",
    "ImageObject",
    "MultipartBody",
    "Part",
    "TextPart",
    "WireAspectRatio",
    "WireColorPalette",
    "WireMagicPrompt",
    "WirePaletteMember",
    "WirePalettePreset",
    "WireSpeed",
    "WireStyle",
]

HEADER_KEY = "Api-Key"
GENERATE_PATH = "/v1/ideogram-v3/generate"
REMIX_PATH = "/v1/ideogram-v3/remix"
EditPath = Literal["edit", "inpaint"]
#: Both routes take ``EditImageRequestV3``; ``/edit`` is the one documented with examples, ``/inpaint``
#: the one a later integration calls current (reference/vendors.md §2.2).
EDIT_PATHS: dict[EditPath, str] = {"edit": "/v1/ideogram-v3/edit", "inpaint": "/v1/ideogram-v3/inpaint"}

# The enums we send (subsets of the spec's: FLASH/BALANCED speeds and GENERAL/DESIGN/... styles are
# never produced from a neutral request).
WireSpeed = Literal["TURBO", "DEFAULT", "QUALITY"]
WireStyle = Literal["AUTO", "REALISTIC", "FICTION"]
WireMagicPrompt = Literal["AUTO", "ON", "OFF"]
WirePalettePreset = Literal["EMBER", "FRESH", "JUNGLE", "MAGIC", "MELON", "MOSAIC", "PASTEL", "ULTRAMARINE"]
WireAspectRatio = Literal[
    "1x3", "3x1", "1x2", "2x1", "9x16", "16x9", "10x16", "16x10", "2x3", "3x2", "3x4", "4x3", "4x5", "5x4", "1x1"
]


# -- the colour palette part ---------------------------------------------------------------------------


class WirePaletteMember(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    color_hex: str
    color_weight: float | None = None


class WireColorPalette(BaseModel):
    """``ColorPaletteWithPresetNameOrMembers``: a preset ``name`` or ``members``, never both."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: WirePalettePreset | None = None
    members: list[WirePaletteMember] | None = None

    def to_json(self) -> str:
        """The part's body: compact JSON, unset keys left out (an absent weight is Ideogram's default)."""
        return self.model_dump_json(exclude_none=True)


# -- form parts -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextPart:
    """A form field. ``content_type`` is set only for the JSON ``color_palette`` part."""

    name: str
    value: str
    content_type: str | None = None


@dataclass(frozen=True)
class FilePart:
    """An image file part. ``filename`` is chosen by the mapping (the caller's own file name is not sent)."""

    name: str
    image: ImageInput
    filename: str


Part = TextPart | FilePart


class _ImageReader:
    """A file part's body for ``MultipartEncoder``: opens the image on first read, reads in chunks.

    ``len`` (what the encoder asks to size the body and to know when a part is done) is the number
    of bytes still to come, from the size recorded when the input was checked, so sizing the body
    opens nothing. A file that changed size since then is refused rather than sent under a
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
    """A multipart/form-data body, sized up front and streamed on demand.

    Each :meth:`open` builds a fresh encoder with the same boundary, so the body can be read again (a
    driver or a recorder may iterate it more than once) and is byte-for-byte the same each time.
    """

    def __init__(self, parts: Sequence[Part], *, boundary: str | None = None) -> None:
        self.parts = tuple(parts)
        self.boundary = boundary or uuid.uuid4().hex

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int:
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

        return ReaderStream(self.open)

    def iter_bytes(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        reader = self.open()
        try:
            while chunk := reader.read(chunk_size):
                yield chunk
        finally:
            reader.close()

    def _encoder(self) -> tuple[Any, list[_ImageReader]]:
        # Deferred: requests_toolbelt imports requests, which `import ideochar` must not pay for.
        from requests_toolbelt.multipart.encoder import MultipartEncoder

        fields: list[tuple[str, Any]] = []
        readers: list[_ImageReader] = []
        for part in self.parts:
            if isinstance(part, FilePart):
                reader = _ImageReader(part.image)
                readers.append(reader)
                fields.append((part.name, (part.filename, reader, part.image.content_type)))
            elif part.content_type is not None:
                fields.append((part.name, (None, part.value, part.content_type)))
            else:
                fields.append((part.name, part.value))
        return MultipartEncoder(fields, boundary=self.boundary), readers


# -- the answer -----------------------------------------------------------------------------------------


class _Lenient(BaseModel):
    """Vendor documents: unknown keys are kept (Ideogram adds fields), known ones are typed. Built on
    first use, not when the plugin loads."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)


class ImageObject(_Lenient):
    """``ImageGenerationObjectV3``. Only ``url`` and ``is_image_safe`` decide what happens to an image;
    the rest is kept when present, so a missing ``prompt`` never costs a paid image."""

    url: str | None = None
    is_image_safe: bool | None = None
    """None when absent: then the presence of ``url`` decides."""
    prompt: str | None = None
    """The prompt Ideogram used (after MagicPrompt)."""
    resolution: str | None = None
    seed: int | None = None
    style_type: str | None = None

    @field_validator("url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def withheld(self) -> bool:
        """True when the safety check kept the image back (``is_image_safe: false`` or no URL)."""
        return self.is_image_safe is False or self.url is None


class GenerationResponse(_Lenient):
    """``ImageGenerationResponseV3``."""

    created: str | None = None
    data: list[ImageObject] = Field(min_length=1)


class ErrorBody(_Lenient):
    """An error answer: ``{"error": "..."}`` (422 safety), plus ``reject_reason`` on 402 and 429."""

    error: str | None = None
    message: str | None = None
    detail: Any = None
    reject_reason: str | None = None

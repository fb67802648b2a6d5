"""fal's wire shapes for the Ideogram V3 Character endpoints: request bodies, queue documents, outputs.

Facts and sources are in ``reference/fal.md`` (§1 queue protocol, §4 schemas). In short:

* the three endpoints take a bare JSON body (no envelope) of the model's arguments;
  ``POST {queue}/{endpoint}`` answers ``{request_id, response_url, status_url, cancel_url}``;
* ``GET status_url`` answers 202 with ``IN_QUEUE``/``IN_PROGRESS`` and 200 with ``COMPLETED``, which can
  still carry ``error``/``error_type``; ``{status_url}/stream`` sends the same documents as server-sent
  events; ``GET response_url`` is the output ``{images: [File], seed}``; ``PUT cancel_url`` cancels;
* outputs are ``File`` objects: ``url`` (a CDN URL, or a ``data:`` URI with ``sync_mode``) and optional
  ``content_type``, ``file_name``, ``file_size``; there is no width/height.

Replies are parsed leniently (``extra="ignore"``, optional fields) so that an added field never breaks a
paid job; the request models are strict (``extra="forbid"``) so that a typo in our mapping fails a test.

Local images travel inside the JSON as data URIs. :class:`InlineImagesBody` streams such a body: the
JSON text around each image is written as is and the image's base64 is produced chunk by chunk from the
file, so a 10 MB reference is never held as one 13 MB string (nor as a 13 MB JSON document).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ideochar.media import ImageInput
from ideochar.toolkit import Count, QueuePosition, Seed, VendorModel

__all__ = [
    "APP_ID",
    "ENDPOINTS",
    "HEADER_ERROR_TYPE",
    "HEADER_LIFECYCLE",
    "HEADER_NO_RETRY",
    "HEADER_PRIORITY",
    "HEADER_REQUEST_ID",
    "HEADER_REQUEST_TIMEOUT",
    "HEADER_RETRYABLE",
    "HEADER_RUNNER_HINT",
    "HEADER_TIMEOUT_TYPE",
    "ColorPaletteWire",
    "EditInput",
    "FalFile",
    "GenerateInput",
    "ImageSize",
    "InlineImagesBody",
    "Output",
    "PaletteMemberWire",
    "QueueStatus",
    "RemixInput",
    "ResumeState",
    "Rgb",
    "Submitted",
    "request_urls",
]

#: Endpoint ids per neutral operation; each is also the path under the queue and run base URLs.
ENDPOINTS: Mapping[str, str] = {
    "generate": "fal-ai/ideogram/character",
    "edit": "fal-ai/ideogram/character/edit",
    "remix": "fal-ai/ideogram/character/remix",
}
#: Status, result and cancel URLs use only the owner and app, never the ``/edit`` or ``/remix`` subpath
#: (fal_client ``from_request_id``; the docs: "The status, result, and cancel URLs use only the owner and
#: the app").
APP_ID = "fal-ai/ideogram"

HEADER_REQUEST_TIMEOUT = "X-Fal-Request-Timeout"
HEADER_PRIORITY = "X-Fal-Queue-Priority"
HEADER_RUNNER_HINT = "X-Fal-Runner-Hint"
HEADER_NO_RETRY = "X-Fal-No-Retry"
HEADER_LIFECYCLE = "X-Fal-Object-Lifecycle-Preference"
HEADER_REQUEST_ID = "x-fal-request-id"
HEADER_ERROR_TYPE = "x-fal-error-type"
HEADER_TIMEOUT_TYPE = "x-fal-request-timeout-type"
HEADER_RETRYABLE = "x-fal-retryable"


def request_urls(queue_base: str, request_id: str) -> tuple[str, str, str]:
    """``(status_url, response_url, cancel_url)`` rebuilt from a bare request id.

    Only for resuming from an id alone: the URLs fal returns on submit are always preferred.
    """
    base = f"{queue_base.rstrip('/')}/{APP_ID}/requests/{request_id}"
    return f"{base}/status", base, f"{base}/cancel"


# -- request bodies ----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rgb(_Strict):
    r: Annotated[int, Field(ge=0, le=255)]
    g: Annotated[int, Field(ge=0, le=255)]
    b: Annotated[int, Field(ge=0, le=255)]


class PaletteMemberWire(_Strict):
    rgb: Rgb
    color_weight: float | None = None
    """fal's default is 0.5 when omitted."""


class ColorPaletteWire(_Strict):
    """``{"name": "EMBER"}`` or ``{"members": [{"rgb": {...}, "color_weight": 0.5}]}``."""

    name: Literal["EMBER", "FRESH", "JUNGLE", "MAGIC", "MELON", "MOSAIC", "PASTEL", "ULTRAMARINE"] | None = None
    members: list[PaletteMemberWire] | None = None


class ImageSize(_Strict):
    width: int
    height: int


RenderingSpeed = Literal["TURBO", "BALANCED", "QUALITY"]
StyleWire = Literal["AUTO", "REALISTIC", "FICTION"]


class _Common(_Strict):
    """Fields of all three endpoints. Image fields hold URLs, data URIs or inline-image sentinels."""

    prompt: str
    reference_image_urls: list[str]
    reference_mask_urls: list[str] | None = None
    image_urls: list[str] | None = None
    """Style reference images."""
    rendering_speed: RenderingSpeed
    """Always sent: fal's default (BALANCED) costs more than TURBO, and a silent default is a silent price."""
    color_palette: ColorPaletteWire | None = None
    style_codes: list[str] | None = None
    expand_prompt: bool | None = None
    num_images: Annotated[int, Field(ge=1, le=8)] = 1
    seed: int | None = None
    sync_mode: bool | None = None


class GenerateInput(_Common):
    style: StyleWire | None = None
    image_size: ImageSize | None = None
    negative_prompt: str | None = None


class EditInput(_Common):
    """No ``style``, ``image_size`` or ``negative_prompt`` on the edit endpoint (docs and fal-js agree)."""

    image_url: str
    mask_url: str


class RemixInput(GenerateInput):
    image_url: str
    strength: Annotated[float, Field(ge=0.01, le=1.0)]


# -- replies -----------------------------------------------------------------------------------------


class _Lenient(VendorModel):
    """fal's documents: unknown keys ignored, a malformed optional field dropped (never the request id)."""


class Submitted(_Lenient):
    """The submit answer. fal_client requires all four; we require only the id and rebuild the rest."""

    request_id: Annotated[str, Field(min_length=1)]
    response_url: str | None = None
    status_url: str | None = None
    cancel_url: str | None = None
    status: str | None = None
    queue_position: QueuePosition | None = None


class QueueStatus(_Lenient):
    """One status document (a poll's body, or one server-sent event's data)."""

    status: str
    queue_position: QueuePosition | None = None
    response_url: str | None = None
    logs: list[Any] | None = None
    metrics: dict[str, Any] | None = None
    error: Any = None
    """Set on a COMPLETED job that failed (a message, or a structure)."""
    error_type: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class FalFile(_Lenient):
    url: Annotated[str, Field(min_length=1)]
    content_type: str | None = None
    file_name: str | None = None
    file_size: Count | None = None


class Output(_Lenient):
    images: list[FalFile]
    seed: Seed | None = None


class ResumeState(_Lenient):
    """What a ``submitted`` event carries so a queue job can be followed again (JSON-safe, no key).

    Only ``request_id`` is required: the URLs are rebuilt from it (:func:`request_urls`) when missing.
    """

    mode: Literal["queue"] = "queue"
    request_id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")]
    endpoint: str | None = None
    status_url: str | None = None
    response_url: str | None = None
    cancel_url: str | None = None
    seed: Seed | None = None
    num_images: Annotated[int, Field(ge=1, le=8)] | None = None


# -- the streamed JSON body ----------------------------------------------------------------------------

#: Bytes read from a file per base64 step: a multiple of 3, so chunks encode without padding in between.
_B64_READ_BYTES = 3 * 16 * 1024


@dataclass(frozen=True)
class InlineImagesBody:
    """A JSON document whose some string values are images, sent as data URIs without building them.

    ``document`` holds a sentinel string (see :data:`inline`) where each image goes; the JSON text is
    rendered once, split at the sentinels, and streamed as text, ``data:<type>;base64,``, base64 chunks
    from the image's file, text... Its exact length is known up front, so no chunked encoding is needed.
    """

    document: Mapping[str, Any]
    inline: Sequence[tuple[str, ImageInput]]
    """``(sentinel, image)`` pairs; each sentinel occurs exactly once, as a whole JSON string value."""

    @functools.cached_property
    def _segments(self) -> list[bytes | ImageInput]:
        # Rendered once: the length (for Content-Length) and the stream both walk it.
        text = json.dumps(self.document, separators=(",", ":"), ensure_ascii=False)
        segments: list[bytes | ImageInput] = []
        for sentinel, image in self.inline:
            quoted = json.dumps(sentinel)
            if text.count(quoted) != 1:
                raise ValueError(f"inline image marker {sentinel!r} must occur exactly once in the body")
            before, text = text.split(quoted, 1)
            segments += [before.encode() + b'"', image, b'"']
        segments.append(text.encode())
        return segments

    @staticmethod
    def _prefix(image: ImageInput) -> bytes:
        return f"data:{image.content_type};base64,".encode("ascii")

    @property
    def content_length(self) -> int:
        total = 0
        for segment in self._segments:
            if isinstance(segment, bytes):
                total += len(segment)
            else:
                total += len(self._prefix(segment)) + 4 * -(-(segment.size or 0) // 3)
        return total

    def iter_bytes(self) -> Iterator[bytes]:
        """The body, in pieces of at most ~64 KB; files are opened one at a time and closed after."""
        for segment in self._segments:
            if isinstance(segment, bytes):
                yield segment
                continue
            yield self._prefix(segment)
            with segment.open() as handle:
                carry = b""
                while chunk := handle.read(_B64_READ_BYTES):
                    data = carry + chunk if carry else chunk
                    cut = len(data) - len(data) % 3
                    if cut:
                        yield base64.b64encode(data[:cut])
                    carry = data[cut:]
                if carry:
                    yield base64.b64encode(carry)

    def render(self) -> bytes:
        """The whole body at once: for tests and small payloads only."""
        return b"".join(self.iter_bytes())

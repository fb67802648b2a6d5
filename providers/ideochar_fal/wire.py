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

Local images go through fal's storage (§3), as fal's own clients upload them: a CDN token
(``POST {rest}/storage/auth/token?storage_type=fal-cdn-v3`` -> :class:`CdnToken`), then the bytes
(``POST {token.base_url}/files/upload`` -> :class:`CdnUpload`); or, as fal_client falls back, an initiated
upload (``POST {rest}/storage/upload/initiate`` -> :class:`InitiatedUpload`) and a ``PUT`` of the bytes to
its ``upload_url``. Lifecycle headers (:data:`HEADER_OBJECT_LIFECYCLE`, :data:`HEADER_LIFECYCLE`) say how
long fal keeps the file.

Or, as an option, local images travel inside the JSON as data URIs. :class:`InlineImagesBody` streams such
a body: the JSON text around each image is written as is and the image's base64 is produced chunk by
chunk from the file, so a 10 MB reference is never held as one 13 MB string (nor as a 13 MB JSON document).

The platform API's pricing endpoint (``GET {platform}/v1/models/pricing?endpoint_id=...``) answers a
:class:`PriceList` (fal's platform API docs, "Pricing").
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ideochar.media import ImageInput
from ideochar.toolkit import Count, QueuePosition, Seed, VendorModel

__all__ = [
    "APP_ID",
    "CDN_TOKEN_PATH",
    "CDN_UPLOAD_PATH",
    "ENDPOINTS",
    "HEADER_ERROR_TYPE",
    "HEADER_FILE_NAME",
    "HEADER_LIFECYCLE",
    "HEADER_NEEDS_RETRY",
    "HEADER_NO_RETRY",
    "HEADER_OBJECT_LIFECYCLE",
    "HEADER_PRIORITY",
    "HEADER_REQUEST_ID",
    "HEADER_REQUEST_TIMEOUT",
    "HEADER_RETRYABLE",
    "HEADER_RUNNER_HINT",
    "HEADER_TIMEOUT_TYPE",
    "INITIATE_PATH",
    "PRICING_PATH",
    "CdnToken",
    "CdnUpload",
    "ColorPaletteWire",
    "EditInput",
    "FalFile",
    "GenerateInput",
    "ImageSize",
    "InitiatedUpload",
    "InlineImagesBody",
    "LogLine",
    "Output",
    "PaletteMemberWire",
    "Price",
    "PriceList",
    "QueueStatus",
    "RemixInput",
    "ResumeState",
    "Rgb",
    "Submitted",
    "lifecycle",
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
#: The same hint under the name another copy of fal's error docs gives it.
HEADER_NEEDS_RETRY = "x-fal-needs-retry"
#: On an upload, with the preference header: how long fal's storage keeps the file (fal_client sends both).
HEADER_OBJECT_LIFECYCLE = "X-Fal-Object-Lifecycle"
HEADER_FILE_NAME = "X-Fal-File-Name"

#: Storage and platform paths, under the ``rest``, token ``base_url`` (``cdn``) and ``platform`` base URLs.
CDN_TOKEN_PATH = "/storage/auth/token"  # noqa: S105 (a path, not a secret)
CDN_UPLOAD_PATH = "/files/upload"
INITIATE_PATH = "/storage/upload/initiate"
PRICING_PATH = "/v1/models/pricing"


def lifecycle(expiration_seconds: int) -> str:
    """The lifecycle headers' JSON: ``{"expiration_duration_seconds": N}``."""
    return json.dumps({"expiration_duration_seconds": expiration_seconds}, separators=(",", ":"))


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
    """No ``image_size`` or ``negative_prompt`` on the edit endpoint. ``style`` is there: fal's
    ``CharacterEditInputV3`` lists it (AUTO/REALISTIC/FICTION), though an older docs tab and fal-js did not."""

    style: StyleWire | None = None
    image_url: str
    mask_url: str


class RemixInput(GenerateInput):
    image_url: str
    strength: Annotated[float, Field(ge=0.01, le=1.0)]


# -- replies -----------------------------------------------------------------------------------------


class _Lenient(VendorModel):
    """fal's documents: unknown keys ignored, a malformed optional field dropped (never the request id)."""


class LogLine(_Lenient):
    """One item of a status document's ``logs``: ``{timestamp, level, source, message}``."""

    message: str
    level: str | None = None
    source: str | None = None
    timestamp: str | None = None


class CdnToken(_Lenient):
    """The answer to ``POST {rest}/storage/auth/token``: a short-lived upload token for fal's CDN."""

    token: Annotated[str, Field(min_length=1)]
    token_type: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]
    base_url: str | None = None
    expires_at: str | None = None
    """ISO 8601; fal_client caches the token until then."""


class CdnUpload(_Lenient):
    """The answer to ``POST {cdn}/files/upload``."""

    access_url: Annotated[str, Field(min_length=1)]


class InitiatedUpload(_Lenient):
    """The answer to ``POST {rest}/storage/upload/initiate``: where to PUT the bytes, and the file's URL."""

    upload_url: Annotated[str, Field(min_length=1)]
    file_url: Annotated[str, Field(min_length=1)]


class Price(_Lenient):
    endpoint_id: str
    unit_price: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
    unit: str | None = None
    currency: str | None = None


class PriceList(_Lenient):
    """The answer to ``GET {platform}/v1/models/pricing``."""

    prices: list[Price]
    next_cursor: str | None = None
    has_more: bool | None = None


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

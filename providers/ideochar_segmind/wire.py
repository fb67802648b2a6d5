"""Segmind's wire shapes for ``ideogram-character``: the request body, the v2 job documents, and the
multipart encoding.

Facts and their sources are in ``reference/vendors.md`` §1. In short:

* ``POST /v1/ideogram-character`` answers with the raw image (``image/jpeg``) and accounting headers;
  ``POST /v2/ideogram-character`` answers ``{"request_id", "status": "QUEUED", "status_url",
  "response_url", "poll_url"}`` and the job is followed with GETs.
* The body is JSON when every image is a URL, multipart/form-data when one is local ("for parameter
  ``mask``/``image``/``character_reference_image``, you can send a raw file or a URI").
* Image fields stay :class:`~ideochar.media.ImageInput` in :class:`CharacterInput` until encoding, so the
  choice between a URL string and a file part is made in one place (:meth:`CharacterInput.needs_multipart`).

The multipart body is :class:`ideochar.multipart.MultipartBody` (httpx's encoder) over readers that open
the file on first read and hand it over in chunks, so a 10 MB reference is never held whole, and the
body's exact length is known before anything is read (``Content-Length`` comes from file sizes, not from
the bytes).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ideochar.errors import InvalidRequest
from ideochar.media import ImageInput
from ideochar.multipart import FilePart as FilePart  # the shared streamed body, re-exported
from ideochar.multipart import MultipartBody as MultipartBody
from ideochar.multipart import Part as Part
from ideochar.multipart import TextPart as TextPart
from ideochar.toolkit import Seconds, Seed, VendorModel

if TYPE_CHECKING:
    pass

__all__ = [
    "HEADER_COST",
    "HEADER_GENERATION_TIME",
    "HEADER_KEY",
    "HEADER_RATE_LIMIT_RESET",
    "HEADER_REMAINING_CREDITS",
    "HEADER_REQUEST_ID",
    "HEADER_SEED",
    "TERMINAL_STATUSES",
    "V1_PATH",
    "V2_PATH",
    "V2_RESULT_PATH",
    "V2_STATUS_PATH",
    "CharacterInput",
    "FilePart",
    "JobStatus",
    "MultipartBody",
    "ResumeState",
    "Submitted",
    "TextPart",
    "V2Metrics",
    "V2Status",
    "decimal_or_none",
    "output_reference",
]

V1_PATH = "/v1/ideogram-character"
V2_PATH = "/v2/ideogram-character"
#: Where a v2 job lives when the submit answer omits its URLs (the documented layout; the answer's own
#: ``status_url``/``response_url`` are preferred and used verbatim).
V2_STATUS_PATH = "/v2/requests/{request_id}/status"
V2_RESULT_PATH = "/v2/requests/{request_id}"

HEADER_KEY = "x-api-key"
HEADER_REQUEST_ID = "x-request-id"
HEADER_COST = "x-cost"
HEADER_REMAINING_CREDITS = "x-remaining-credits"
HEADER_SEED = "x-seed-value"
HEADER_GENERATION_TIME = "x-generation-time"
HEADER_RATE_LIMIT_RESET = "x-rate-limit-reset-at-utc"

JobStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]
#: A body announcing one of these is the job's answer whatever the HTTP status (FAILED comes with 422).
TERMINAL_STATUSES: frozenset[str] = frozenset({"COMPLETED", "FAILED"})


# -- the request ---------------------------------------------------------------------------------------


class CharacterInput(BaseModel):
    """The body of ``POST /v{1,2}/ideogram-character`` in Segmind's own field names.

    The mapping fills every field (``mapping.to_wire``): Segmind's defaults are not what an unset neutral
    field means. A None here is left out. Field order is the order of the multipart parts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str
    character_reference_image: ImageInput
    image: ImageInput | None = None
    """The picture to inpaint (edit only)."""
    mask: ImageInput | None = None
    """Same size as ``image``; passed through unchanged (polarity: see ``mapping.py``)."""
    seed: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    style_type: str | None = None
    rendering_speed: str | None = None
    magic_prompt_option: str | None = None

    def image_fields(self) -> dict[str, ImageInput]:
        return {name: value for name in _IMAGE_FIELDS if (value := getattr(self, name)) is not None}

    def scalar_fields(self) -> dict[str, str | int]:
        return {
            name: value
            for name in type(self).model_fields
            if name not in _IMAGE_FIELDS and (value := getattr(self, name)) is not None
        }

    @property
    def needs_multipart(self) -> bool:
        """True when an image's bytes are here (path, bytes, data URI): they go as file parts."""
        return any(image.is_local for image in self.image_fields().values())

    def json_body(self) -> dict[str, Any]:
        """The JSON body, for requests whose images are all URLs."""
        body: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, ImageInput):
                if value.url is None:
                    raise InvalidRequest(f"{name} is a local image: it must go in a multipart body")
                value = value.url
            body[name] = value
        return body

    def multipart_parts(self) -> list[TextPart | FilePart]:
        """The form parts: local images as files, URL images and scalars as text fields."""
        parts: list[TextPart | FilePart] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, ImageInput):
                parts.append(FilePart(name, value) if value.is_local else TextPart(name, value.url or ""))
            else:
                parts.append(TextPart(name, str(value)))
        return parts


_IMAGE_FIELDS = ("character_reference_image", "image", "mask")


# -- the v2 job documents ---------------------------------------------------------------------------------


def decimal_or_none(value: Any) -> Decimal | None:
    """A non-negative finite amount from a header or JSON value; None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and amount >= 0 else None


class _Lenient(VendorModel):
    """Vendor documents: unknown keys are kept (Segmind adds fields), known ones are typed, a malformed
    optional one is dropped (never the request id)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Submitted(_Lenient):
    """The answer to ``POST /v2/ideogram-character``."""

    request_id: str = Field(min_length=1)
    status: str | None = None
    status_url: str | None = None
    response_url: str | None = None
    poll_url: str | None = None
    """The v1-compatible poll address; not used."""


class V2Metrics(_Lenient):
    cost: Decimal | None = None
    """USD (inferred: Segmind's credits are dollars); absent on failures, which are not charged."""
    remaining_credits: Decimal | None = None
    inference_time: Seconds | None = None
    queue_time: Seconds | None = None
    total_time: Seconds | None = None

    @field_validator("cost", "remaining_credits", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Decimal | None:
        return decimal_or_none(value)


class V2Status(_Lenient):
    """A status (``/v2/requests/{id}/status``) or result (``/v2/requests/{id}``) document."""

    status: str | None = None
    error: str | None = None
    output: Any = None
    """The image: a URL (documented), or a list of them; ``images`` is read as a fallback."""
    images: Any = None
    metrics: V2Metrics | None = None
    request_id: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("error", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, str) else str(value)

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


_OUTPUT_KEYS = ("output", "image", "images", "image_url", "url")


def output_reference(document: Any) -> str | None:
    """Where the image is in a JSON document: a URL, a data URI or base64, as the first string found
    under ``output`` (documented for v2), then ``image``, ``images``, ``image_url``, ``url``; lists
    and ``{"url": ...}`` objects are looked into. None when there is no image."""
    if isinstance(document, BaseModel):
        document = document.model_dump()  # extra="allow" keeps unknown keys in the dump
    if not isinstance(document, dict):
        return None
    for key in _OUTPUT_KEYS:
        found = _first_string(document.get(key), depth=0)
        if found:
            return found
    return None


def _first_string(value: Any, *, depth: int) -> str | None:
    if depth > 3:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        for item in value:
            if found := _first_string(item, depth=depth + 1):
                return found
    if isinstance(value, dict):
        for key in _OUTPUT_KEYS:
            if found := _first_string(value.get(key), depth=depth + 1):
                return found
    return None


class ResumeState(VendorModel):
    """What a ``submitted`` event carries so a v2 job can be followed again (JSON-safe, no key)."""

    mode: Literal["v2"] = "v2"
    request_id: str = Field(min_length=1)
    status_url: str = Field(min_length=1)
    response_url: str = Field(min_length=1)
    seed: Seed | None = None
    """The seed sent (the caller's, or the one ideochar drew): v2 documents do not report the one used."""

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

The multipart body is the shared streamed one of :mod:`ideochar.multipart`: a 10 MB reference is
never held whole, and the body's exact length is known before any file is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ideochar.multipart import FilePart as FilePart  # the shared streamed body, re-exported
from ideochar.multipart import MultipartBody as MultipartBody
from ideochar.multipart import Part as Part
from ideochar.multipart import TextPart as TextPart
from ideochar.toolkit import Seed, VendorModel

if TYPE_CHECKING:
    pass

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


# -- the answer -----------------------------------------------------------------------------------------


class _Lenient(VendorModel):
    """Vendor documents: unknown keys are kept (Ideogram adds fields), known ones are typed, a malformed
    optional one is dropped (never a paid image's URL). Built on first use, not when the plugin loads."""

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
    seed: Seed | None = None
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

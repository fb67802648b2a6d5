"""Neutral request -> fal body: pure, table-driven functions (no I/O; tested without HTTP).

Decisions, each in one place:

* **Speed is always sent** (``SPEEDS``): fal's default ``BALANCED`` costs $0.15 where ``TURBO`` costs $0.10,
  so leaving it out would silently choose a price.
* **MagicPrompt** ``auto`` leaves ``expand_prompt`` out (fal decides; its default is on), ``on``/``off``
  send ``true``/``false`` (``EXPAND_PROMPT``).
* **Size is always ``{width, height}``**, never a preset string. fal's presets (``square_hd``,
  ``portrait_4_3``...) are toolkit sizes such as 768x1024, of which only 1024x1024 is a legal Ideogram
  size, and a fal user reports black bands with preset strings but clean output with explicit sizes
  (reference/vendors.md §4). An aspect ratio becomes the legal Ideogram resolution of that ratio nearest
  one megapixel (``RATIO_SIZES``, the same table as reference/vendors.md §4); a resolution is sent as is.
* **Palette members** are hex colours in the neutral request and ``{"rgb": {r, g, b}}`` on fal.
* **Images** that are URLs are passed through for fal to fetch; local ones (path, bytes, data URI) become
  data URIs, streamed into the body by :class:`~ideochar_fal.wire.InlineImagesBody`. INFERRED: fal's docs
  say "some models" accept data URIs; these endpoints are believed to.
* **Edit masks** are sent unchanged. INFERRED (``MASK_POLARITY_INFERRED``): fal's edit mask is taken to use
  Ideogram's polarity, black = repaint, which is the neutral one; unverified on fal.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ideochar.media import ImageInput
from ideochar.request import CharacterRequest, ColorPalette, Edit, MagicPrompt, Remix, Speed, Style
from ideochar_fal.wire import (
    ENDPOINTS,
    ColorPaletteWire,
    EditInput,
    GenerateInput,
    ImageSize,
    InlineImagesBody,
    PaletteMemberWire,
    RemixInput,
    Rgb,
)

__all__ = [
    "EXPAND_PROMPT",
    "INLINE_MARKER",
    "MASK_POLARITY_INFERRED",
    "RATIO_SIZES",
    "SPEEDS",
    "STYLES",
    "Payload",
    "color_palette",
    "hex_to_rgb",
    "image_size",
    "to_payload",
]

SPEEDS: Mapping[Speed, str] = MappingProxyType({"turbo": "TURBO", "default": "BALANCED", "quality": "QUALITY"})
STYLES: Mapping[Style, str] = MappingProxyType({"auto": "AUTO", "realistic": "REALISTIC", "fiction": "FICTION"})
EXPAND_PROMPT: Mapping[MagicPrompt, bool | None] = MappingProxyType({"auto": None, "on": True, "off": False})

#: Each of the 15 neutral aspect ratios as the legal Ideogram resolution of that ratio nearest 1 MP.
#: 16:9 and 9:16 have no exact legal size: 1312x736 is within 0.3 %.
RATIO_SIZES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "1:1": (1024, 1024),
        "1:3": (512, 1536),
        "3:1": (1536, 512),
        "1:2": (704, 1408),
        "2:1": (1408, 704),
        "9:16": (736, 1312),
        "16:9": (1312, 736),
        "10:16": (800, 1280),
        "16:10": (1280, 800),
        "2:3": (832, 1248),
        "3:2": (1248, 832),
        "3:4": (864, 1152),
        "4:3": (1152, 864),
        "4:5": (896, 1120),
        "5:4": (1120, 896),
    }
)

MASK_POLARITY_INFERRED = "edit masks are sent unchanged: fal is taken to repaint the black area, like Ideogram"

#: A local image's place in the JSON before it is streamed in as a data URI. The nonce (random per
#: payload) keeps a caller's text from ever being taken for a marker.
INLINE_MARKER = "ideochar:inline-image:{nonce}:{index}"


def hex_to_rgb(colour: str) -> Rgb:
    """``#1A2B3C`` -> ``{"r": 26, "g": 43, "b": 60}`` (the neutral model has already expanded ``#RGB``)."""
    digits = colour.lstrip("#")
    return Rgb(r=int(digits[0:2], 16), g=int(digits[2:4], 16), b=int(digits[4:6], 16))


def color_palette(palette: ColorPalette) -> ColorPaletteWire:
    if palette.preset is not None:
        return ColorPaletteWire.model_validate({"name": palette.preset.upper()})
    members = palette.members or []
    return ColorPaletteWire(
        members=[PaletteMemberWire(rgb=hex_to_rgb(m.color), color_weight=m.weight) for m in members]
    )


def image_size(request: CharacterRequest) -> ImageSize | None:
    """Explicit pixels for a ratio or a resolution; None leaves fal's default (square, 1024x1024)."""
    if request.resolution is not None:
        width, height = (int(v) for v in request.resolution.split("x"))
        return ImageSize(width=width, height=height)
    if request.aspect_ratio is not None:
        width, height = RATIO_SIZES[request.aspect_ratio]
        return ImageSize(width=width, height=height)
    return None


@dataclass
class _Images:
    """Turns each image into the string the body holds: its URL, or a marker for a streamed data URI."""

    inline: list[tuple[str, ImageInput]] = field(default_factory=list)
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)

    def ref(self, image: ImageInput) -> str:
        if not image.is_local and image.url is not None:
            return image.url
        marker = INLINE_MARKER.format(nonce=self.nonce, index=len(self.inline))
        self.inline.append((marker, image))
        return marker


@dataclass(frozen=True)
class Payload:
    """One fal call: which endpoint, the validated body, and the local images to stream into it."""

    endpoint: str
    body: GenerateInput | EditInput | RemixInput
    inline: tuple[tuple[str, ImageInput], ...] = ()

    def document(self) -> dict[str, Any]:
        """The JSON object, unset fields left out (markers where local images go)."""
        return self.body.model_dump(mode="json", exclude_none=True)

    def streamed(self) -> InlineImagesBody:
        return InlineImagesBody(self.document(), self.inline)


def to_payload(request: CharacterRequest, *, sync_mode: bool = False) -> Payload:
    """The fal body for ``request``. Fields an endpoint lacks are not sent (``check`` warned about them)."""
    images = _Images()
    operation = request.operation
    common: dict[str, Any] = {
        "prompt": request.prompt,
        "reference_image_urls": [images.ref(request.reference)],
        "rendering_speed": SPEEDS[request.speed],
        "num_images": request.num_images,
        "expand_prompt": EXPAND_PROMPT[request.magic_prompt],
        "seed": request.seed,
        "style_codes": request.style_codes,
        "sync_mode": True if sync_mode else None,
    }
    if request.reference_mask is not None:
        common["reference_mask_urls"] = [images.ref(request.reference_mask)]
    if request.style_references:
        common["image_urls"] = [images.ref(image) for image in request.style_references]
    if request.color_palette is not None:
        common["color_palette"] = color_palette(request.color_palette)
    body: GenerateInput | EditInput | RemixInput
    if isinstance(operation, Edit):
        body = EditInput(**common, image_url=images.ref(operation.image), mask_url=images.ref(operation.mask))
    else:
        common["style"] = STYLES[request.style] if request.style is not None else None
        common["image_size"] = image_size(request)
        common["negative_prompt"] = request.negative_prompt
        if isinstance(operation, Remix):
            body = RemixInput(**common, image_url=images.ref(operation.image), strength=operation.strength)
        else:
            body = GenerateInput(**common)
    return Payload(ENDPOINTS[request.operation_name], body, tuple(images.inline))

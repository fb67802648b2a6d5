"""Neutral request -> fal body: pure, table-driven functions (no I/O; tested without HTTP).

Decisions, each in one place. Nothing is left to a fal default the caller did not choose (:data:`UNSET`):

* **Speed is always sent** (``SPEEDS``): fal's default ``BALANCED`` costs $0.15 where ``TURBO`` costs $0.10,
  so leaving it out would silently choose a price.
* **Style is always sent** (``STYLES``; ``AUTO`` when unset) on all three endpoints: fal's
  ``CharacterEditInputV3`` lists ``style`` too. Not with style codes (fal: "not with style_codes").
* **MagicPrompt**: fal has no "auto"; its documented default is ``expand_prompt: true``, so "auto" sends
  ``true`` (``EXPAND_PROMPT``), and ``on``/``off`` send ``true``/``false``. "auto" means "on" at fal.
* **Size is always ``{width, height}``**, never a preset string, and always sent on generate and remix: an
  unset size is 1:1, 1024x1024 (fal's ``square_hd``). fal's presets (``square_hd``, ``portrait_4_3``...)
  are toolkit sizes such as 768x1024, of which only 1024x1024 is a legal Ideogram size, and a fal user
  reports black bands with preset strings but clean output with explicit sizes (reference/vendors.md §4).
  An aspect ratio becomes the legal Ideogram resolution of that ratio nearest one megapixel
  (:data:`~ideochar.toolkit.RATIO_SIZES`); a resolution is sent as is.
* **The seed** is left out when unset: fal draws one per call and reports it with the output.
* **Palette members** are hex colours in the neutral request and ``{"rgb": {r, g, b}}`` on fal.
* **Images** that are URLs are passed through for fal to fetch; local ones (path, bytes, data URI) are
  uploaded to fal's storage first by the provider (their URLs come in ``uploaded``), or, with the
  ``data_uri`` transport, become data URIs streamed into the body by
  :class:`~ideochar_fal.wire.InlineImagesBody`. INFERRED: fal's docs say "some models" accept data URIs;
  these endpoints are believed to.
* **Edit masks** are sent unchanged. INFERRED (``MASK_POLARITY_INFERRED``): fal's edit mask is taken to use
  Ideogram's polarity, black = repaint, which is the neutral one; unverified on fal.
* **Live prices** (:func:`live_unit_price`): fal's pricing endpoint gives one unit price per endpoint,
  taken to be the price at fal's default speed (BALANCED); other speeds keep the declared ratio to it.
  INFERRED.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from ideochar.media import ImageInput
from ideochar.request import CharacterRequest, ColorPalette, Edit, MagicPrompt, Remix, Speed, Style
from ideochar.toolkit import RATIO_SIZES, output_size
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
    "UNSET",
    "Payload",
    "color_palette",
    "hex_to_rgb",
    "image_size",
    "live_unit_price",
    "to_payload",
]

SPEEDS: Mapping[Speed, str] = MappingProxyType({"turbo": "TURBO", "default": "BALANCED", "quality": "QUALITY"})
STYLES: Mapping[Style, str] = MappingProxyType({"auto": "AUTO", "realistic": "REALISTIC", "fiction": "FICTION"})
#: fal has no "auto": its documented default for ``expand_prompt`` is true, and that is what "auto" sends.
EXPAND_PROMPT: Mapping[MagicPrompt, bool] = MappingProxyType({"auto": True, "on": True, "off": False})

#: What goes on the wire for a neutral setting left unset (``ProviderInfo.defaults`` and the docs say it).
UNSET: Mapping[str, str] = MappingProxyType(
    {
        "speed": "`rendering_speed` always sent; default: BALANCED",
        "style": "`style` AUTO, on every endpoint (none with style codes)",
        "magic_prompt": "auto: `expand_prompt` true (fal has no auto; true is its default)",
        "size": "`image_size` 1024x1024 (fal's square_hd); edit: the image's size",
        "seed": "left out: fal draws one, reported for the call",
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
    """Explicit pixels on generate and remix: the resolution, the aspect ratio's size, or 1024x1024 unset
    (what fal's ``square_hd`` default is, sent all the same); None on an edit (the image's size)."""
    size = output_size(request)
    return None if size is None else ImageSize(width=size[0], height=size[1])


def live_unit_price(listed: Decimal, speed: Speed, declared: Mapping[Speed, Decimal]) -> Decimal:
    """The price per image at ``speed`` from fal's one listed unit price for the endpoint. INFERRED: the
    listed price is BALANCED's (fal's default speed); other speeds keep their declared ratio to it."""
    base = declared["default"]
    return listed if speed == "default" or not base else (listed * declared[speed] / base).quantize(Decimal("0.0001"))


@dataclass
class _Images:
    """Turns each image into the string the body holds: its URL, the URL of its upload, or a marker for a
    streamed data URI."""

    uploaded: Mapping[str, str] = field(default_factory=dict)
    """Neutral field path -> the URL of the local image uploaded to fal's storage."""
    inline: list[tuple[str, ImageInput]] = field(default_factory=list)
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)

    def ref(self, image: ImageInput, path: str) -> str:
        if not image.is_local and image.url is not None:
            return image.url
        if path in self.uploaded:
            return self.uploaded[path]
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


def to_payload(
    request: CharacterRequest, *, sync_mode: bool = False, uploaded: Mapping[str, str] | None = None
) -> Payload:
    """The fal body for ``request``, every setting explicit (module docstring). ``uploaded`` maps a local
    image's field path (``reference``, ``operation.image``...) to its URL in fal's storage; a local image
    not in it goes inline as a data URI. Fields an endpoint lacks are not sent (``check`` warned)."""
    images = _Images(uploaded=dict(uploaded or {}))
    operation = request.operation
    common: dict[str, Any] = {
        "prompt": request.prompt,
        "reference_image_urls": [images.ref(request.reference, "reference")],
        "rendering_speed": SPEEDS[request.speed],
        "num_images": request.num_images,
        "expand_prompt": EXPAND_PROMPT[request.magic_prompt],
        "seed": request.seed,
        "style_codes": request.style_codes,
        "style": None if request.style_codes else STYLES[request.style or "auto"],
        "sync_mode": True if sync_mode else None,
    }
    if request.reference_mask is not None:
        common["reference_mask_urls"] = [images.ref(request.reference_mask, "reference_mask")]
    if request.style_references:
        common["image_urls"] = [
            images.ref(image, f"style_references.{i}") for i, image in enumerate(request.style_references)
        ]
    if request.color_palette is not None:
        common["color_palette"] = color_palette(request.color_palette)
    body: GenerateInput | EditInput | RemixInput
    if isinstance(operation, Edit):
        body = EditInput(
            **common,
            image_url=images.ref(operation.image, "operation.image"),
            mask_url=images.ref(operation.mask, "operation.mask"),
        )
    else:
        common["image_size"] = image_size(request)
        common["negative_prompt"] = request.negative_prompt
        if isinstance(operation, Remix):
            image_url = images.ref(operation.image, "operation.image")
            body = RemixInput(**common, image_url=image_url, strength=operation.strength)
        else:
            body = GenerateInput(**common)
    return Payload(ENDPOINTS[request.operation_name], body, tuple(images.inline))

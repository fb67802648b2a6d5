"""Neutral request -> Ideogram's v3 multipart form: pure functions and tables, no I/O.

What changes on the way (reference/vendors.md §2 and §4):

* enums are upper case: speed ``TURBO|DEFAULT|QUALITY`` (never the legacy ``BALANCED``, never
  ``FLASH``, which has no character-reference price), style ``AUTO|REALISTIC|FICTION`` (the only
  three the character feature offers), ``magic_prompt`` ``AUTO|ON|OFF``;
* aspect ratios are written with an ``x``: neutral ``16:9`` -> ``16x9``; ``resolution`` is already
  ``WIDTHxHEIGHT``; never both (the neutral request forbids it);
* the colour palette is one JSON part, ``{"name": "EMBER"}`` or ``{"members": [{"color_hex",
  "color_weight"}]}``; style codes are repeated fields;
* the reference goes as ``character_reference_images`` (exactly one) and its mask as
  ``character_reference_images_mask`` (as many as references: zero or one);
* an edit sends ``image`` + ``mask`` and neither a size nor a negative prompt (its schema has none:
  the output keeps the image's size); a remix sends ``image`` + ``image_weight``.

**Mask polarity.** The neutral edit mask is black = area to repaint, white = keep. Ideogram's edit
mask is the same ("Black regions in the mask should match up with the regions of the image that you
would like to edit"), so the mask is sent unchanged: no inversion. The character reference mask's
polarity is not documented by Ideogram; it is passed through unchanged as well.

**Nothing is left to a default the caller did not choose** (:data:`UNSET`): speed, magic prompt,
style (``AUTO`` when unset; the schema's default, ``GENERAL``, is not a character style), the number of
images and, on generate and remix, the size (``aspect_ratio`` ``1x1`` when none is given: Ideogram's
documented default, sent all the same) always go. The seed is left out when unset: Ideogram draws one
per image and reports it with each image.

**Inferred** (easy to change, each in one place): :func:`image_weight_from_strength` and
:data:`STYLE_TYPE_WHEN_UNSET`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Final

from ideochar.media import ImageInput
from ideochar.request import CharacterRequest, ColorPalette, Edit, MagicPrompt, OperationName, Remix, Speed, Style
from ideochar.toolkit import DEFAULT_ASPECT_RATIO
from ideochar_ideogram.wire import (
    EDIT_PATHS,
    GENERATE_PATH,
    REMIX_PATH,
    EditPath,
    FilePart,
    Part,
    TextPart,
    WireAspectRatio,
    WireColorPalette,
    WireMagicPrompt,
    WirePaletteMember,
    WirePalettePreset,
    WireSpeed,
    WireStyle,
)

__all__ = [
    "FILE_STEMS",
    "MAGIC_PROMPT",
    "SPEED",
    "STYLE",
    "STYLE_TYPE_WHEN_UNSET",
    "UNSET",
    "aspect_ratio_to_wire",
    "color_palette_to_wire",
    "image_weight_from_strength",
    "request_images",
    "route_path",
    "to_form",
]

SPEED: Final[Mapping[Speed, WireSpeed]] = MappingProxyType(
    {"turbo": "TURBO", "default": "DEFAULT", "quality": "QUALITY"}
)
STYLE: Final[Mapping[Style, WireStyle]] = MappingProxyType(
    {"auto": "AUTO", "realistic": "REALISTIC", "fiction": "FICTION"}
)
MAGIC_PROMPT: Final[Mapping[MagicPrompt, WireMagicPrompt]] = MappingProxyType(
    {"auto": "AUTO", "on": "ON", "off": "OFF"}
)
_PALETTE_PRESET: Final[Mapping[str, WirePalettePreset]] = MappingProxyType(
    {
        "ember": "EMBER",
        "fresh": "FRESH",
        "jungle": "JUNGLE",
        "magic": "MAGIC",
        "melon": "MELON",
        "mosaic": "MOSAIC",
        "pastel": "PASTEL",
        "ultramarine": "ULTRAMARINE",
    }
)

#: ``style_type`` sent when the caller leaves ``style`` unset. INFERRED: Ideogram's schema default is
#: ``GENERAL``, which the character feature does not offer (the app shows Auto/Realistic/Fiction, and
#: every reseller of the character model defaults to Auto); whether the API refuses GENERAL with a
#: character reference is unknown, so "let the model decide" is said explicitly. ``None`` would send
#: nothing. Never sent with ``style_codes`` (the spec forbids combining them).
STYLE_TYPE_WHEN_UNSET: Final[WireStyle | None] = "AUTO"

#: What goes on the wire for a neutral setting left unset (``ProviderInfo.defaults`` and the docs say it).
UNSET: Final[Mapping[str, str]] = MappingProxyType(
    {
        "speed": "`rendering_speed` always sent; default: DEFAULT",
        "style": "`style_type` AUTO (Ideogram's own GENERAL is no character style; none with style codes)",
        "magic_prompt": "auto: `magic_prompt` AUTO",
        "size": "`aspect_ratio` 1x1 (a resolution as given); edit: the image's size",
        "seed": "left out: Ideogram draws one per image and reports it",
    }
)

#: File names given to file parts, by neutral field: the caller's own file name (which may say who is
#: in the picture) is not sent; the extension always matches the sniffed bytes.
FILE_STEMS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "reference": "character_reference",
        "reference_mask": "character_reference_mask",
        "operation.image": "image",
        "operation.mask": "mask",
    }
)
_EXTENSIONS: Final[Mapping[str, str]] = MappingProxyType({"jpeg": "jpg", "png": "png", "webp": "webp"})


def aspect_ratio_to_wire(ratio: str) -> WireAspectRatio:
    """``"16:9"`` -> ``"16x9"``. The neutral type already limits ``ratio`` to Ideogram's 15 ratios."""
    wire = ratio.replace(":", "x")
    return wire  # type: ignore[return-value]


def image_weight_from_strength(strength: float) -> int:
    """Remix ``image_weight`` (int 1-100) from the neutral ``strength`` (0.01-1). INFERRED.

    Both point the same way: the neutral ``strength`` is how strongly the input image shapes the result
    (fal's ``strength``, "strength of the input image", passed through by the fal adapter), and
    Ideogram's ``image_weight`` is how much of the input survives (higher = closer to the input;
    default 50). So, as the vendor reference's mapping table reads them::

        image_weight = clamp(round_half_up(strength * 100), 1, 100)

    strength 0.5 -> 50 (Ideogram's default), 0.8 (the neutral default) -> 80, 1.0 -> 100, 0.01 -> 1.
    A linear scale is our reading; neither vendor documents a formula. To take another reading, change
    this function only: nothing else computes ``image_weight``.
    """
    # Decimal of the shortest repr: 0.015 is exactly 1.5 -> 2, with no float noise deciding the rounding.
    kept = Decimal(repr(float(strength))) * 100
    weight = int(kept.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return max(1, min(100, weight))


def color_palette_to_wire(palette: ColorPalette) -> WireColorPalette:
    """A preset by upper-case name, or members as ``color_hex`` (``#RRGGBB``) + optional ``color_weight``."""
    if palette.preset is not None:
        return WireColorPalette(name=_PALETTE_PRESET[palette.preset])
    members = [WirePaletteMember(color_hex=m.color, color_weight=m.weight) for m in palette.members or ()]
    return WireColorPalette(members=members)


def route_path(operation: OperationName, edit_path: EditPath = "edit") -> str:
    """The route for an operation; ``edit_path`` picks ``/edit`` or ``/inpaint`` (same schema)."""
    if operation == "edit":
        return EDIT_PATHS[edit_path]
    if operation == "remix":
        return REMIX_PATH
    return GENERATE_PATH


def request_images(request: CharacterRequest) -> dict[str, ImageInput]:
    """Every image of the request by neutral field path (``reference``, ``operation.mask``,
    ``style_references.0``): what must be local before the form can be built."""
    return dict(request.images())


def _file(name: str, field: str, image: ImageInput) -> FilePart:
    stem = FILE_STEMS.get(field) or field.replace(".", "_")
    return FilePart(name, image, f"{stem}.{_EXTENSIONS.get(image.format or '', 'bin')}")


def to_form(request: CharacterRequest, images: Mapping[str, ImageInput] | None = None) -> tuple[Part, ...]:
    """The multipart parts for ``request``, in a stable order: text fields, then files.

    ``images`` replaces the request's images by field path (URL inputs fetched by the exchange);
    by default the request's own are used, which must then be local.
    """
    source = dict(request.images())
    if images is not None:
        source.update(images)
    operation = request.operation
    op = request.operation_name
    parts: list[Part] = [TextPart("prompt", request.prompt)]
    if isinstance(operation, Remix):
        parts.append(TextPart("image_weight", str(image_weight_from_strength(operation.strength))))
    if op != "edit":
        if request.resolution is not None:
            parts.append(TextPart("resolution", request.resolution))
        else:
            parts.append(TextPart("aspect_ratio", aspect_ratio_to_wire(request.aspect_ratio or DEFAULT_ASPECT_RATIO)))
    parts.append(TextPart("rendering_speed", SPEED[request.speed]))
    parts.append(TextPart("magic_prompt", MAGIC_PROMPT[request.magic_prompt]))
    style = STYLE[request.style] if request.style is not None else STYLE_TYPE_WHEN_UNSET
    if style is not None and not request.style_codes:
        parts.append(TextPart("style_type", style))
    if request.seed is not None:
        parts.append(TextPart("seed", str(request.seed)))
    parts.append(TextPart("num_images", str(request.num_images)))
    if request.negative_prompt is not None and op != "edit":
        parts.append(TextPart("negative_prompt", request.negative_prompt))
    if request.color_palette is not None:
        palette = color_palette_to_wire(request.color_palette)
        parts.append(TextPart("color_palette", palette.to_json(), content_type="application/json"))
    parts.extend(TextPart("style_codes", code) for code in request.style_codes or ())

    if isinstance(operation, Edit):
        parts.append(_file("image", "operation.image", source["operation.image"]))
        parts.append(_file("mask", "operation.mask", source["operation.mask"]))
    elif isinstance(operation, Remix):
        parts.append(_file("image", "operation.image", source["operation.image"]))
    parts.append(_file("character_reference_images", "reference", source["reference"]))
    if request.reference_mask is not None:
        parts.append(_file("character_reference_images_mask", "reference_mask", source["reference_mask"]))
    for i in range(len(request.style_references)):
        field = f"style_references.{i}"
        parts.append(_file("style_reference_images", field, source[field]))
    return tuple(parts)

"""Neutral request -> Segmind's ``ideogram-character`` fields: pure functions over small tables.

What maps where (``reference/vendors.md`` §1.3 and §4):

====================  ============================  ====================================================
neutral               Segmind                       note
====================  ============================  ====================================================
prompt                ``prompt``
reference             ``character_reference_image``  URL string in JSON, or a file part when local
operation=edit        ``image`` + ``mask``          the same endpoint; no size fields on an edit
style                 ``style_type``                title case (table below); unset -> ``Auto``
speed                 ``rendering_speed``           always sent: it sets the price
magic_prompt          ``magic_prompt_option``       always sent; "auto" -> ``Auto``
aspect_ratio          ``resolution``                the ratio's size (``RATIO_SIZES``), never ``aspect_ratio``
resolution            ``resolution``                ``"1024x1024"``, sent as is
seed                  ``seed``                      always sent: the caller's, else one ideochar drew
====================  ============================  ====================================================

**Nothing is left to Segmind's defaults**, because they are not what an unset neutral field means: the
page gives ``resolution`` 512x1536, ``aspect_ratio`` 16:9, ``style_type`` Realistic, ``rendering_speed``
Quality, ``magic_prompt_option`` Off and ``seed`` 1. So every field is sent (:data:`UNSET`): the size
always as a ``resolution`` (an aspect ratio becomes its size, an unset size 1:1), since a missing
``resolution`` would fall back to 512x1536 and override the ratio; ``Auto`` for an unset style and
for magic prompt "auto"; and a seed drawn by the provider (:func:`ideochar.toolkit.draw_seed`) when the
caller gives none, or every unseeded image would be the same.

Not mapped, so :meth:`~ideochar.spec.Provider.check` warns (or refuses under ``strict``): remix,
``num_images`` > 1 (the router fans out), ``negative_prompt``, ``color_palette``, ``style_codes``,
``style_references``, ``reference_mask`` — none exists on Segmind's parameter list.

Mask polarity is passed through unchanged: ideochar's neutral mask is black = repaint, white = keep.
Segmind does not say which it uses; Replicate's schema for the same model says black is inpainted,
so the two are assumed to agree (**inferred**, ``MASK_POLARITY_INFERRED``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ideochar.errors import Unsupported
from ideochar.request import CharacterRequest, Edit, Remix
from ideochar.toolkit import output_size
from ideochar_segmind.wire import CharacterInput

__all__ = [
    "ENUMS",
    "MASK_POLARITY_INFERRED",
    "NEUTRAL_TO_WIRE",
    "SEGMIND_DEFAULTS",
    "UNSET",
    "enum_value",
    "size_fields",
    "to_wire",
]

#: Segmind's spelling of each neutral enum value, per wire field. INFERRED: the ideogram-character API
#: page shows only "Realistic"/"Fiction", "Turbo"/"Quality" and "Off" as examples; the full sets and the
#: title case of the rest come from Replicate's schema for the same model (reference/vendors.md §1.3).
#: Segmind's *other* Ideogram models use "AUTO"/"ON"/"OFF" — do not borrow those. If the live API
#: disagrees, change this table only.
ENUMS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "style_type": MappingProxyType({"auto": "Auto", "realistic": "Realistic", "fiction": "Fiction"}),
        "rendering_speed": MappingProxyType({"turbo": "Turbo", "default": "Default", "quality": "Quality"}),
        "magic_prompt_option": MappingProxyType({"auto": "Auto", "on": "On", "off": "Off"}),
    }
)

#: Which Segmind field carries each neutral field (for docs and checks; the functions below use it).
NEUTRAL_TO_WIRE: Mapping[str, str] = MappingProxyType(
    {
        "prompt": "prompt",
        "reference": "character_reference_image",
        "operation.image": "image",
        "operation.mask": "mask",
        "style": "style_type",
        "speed": "rendering_speed",
        "magic_prompt": "magic_prompt_option",
        "aspect_ratio": "resolution",
        "resolution": "resolution",
        "seed": "seed",
    }
)

#: Segmind's documented defaults for a missing field (its API page) — none of them what an unset neutral
#: field means, which is why every field is sent. The emulator applies the same table.
SEGMIND_DEFAULTS: Mapping[str, str | int] = MappingProxyType(
    {
        "resolution": "512x1536",
        "aspect_ratio": "16:9",
        "style_type": "Realistic",
        "rendering_speed": "Quality",
        "magic_prompt_option": "Off",
        "seed": 1,
    }
)

#: What goes on the wire for a neutral setting left unset (``ProviderInfo.defaults`` and the docs say it).
UNSET: Mapping[str, str] = MappingProxyType(
    {
        "speed": "`rendering_speed` always sent; default: Default (Segmind's own: Quality)",
        "style": "`style_type` Auto (Segmind's own default: Realistic)",
        "magic_prompt": "auto: `magic_prompt_option` Auto (Segmind's own default: Off)",
        "size": "always `resolution`: 1024x1024, or the aspect ratio's size (Segmind's own default: "
        "512x1536); edit: the image's size",
        "seed": "drawn by ideochar, sent, reported on each image (Segmind's own default: 1)",
    }
)

MASK_POLARITY_INFERRED = "black = repaint, white = keep (Replicate's schema for the same model; Segmind is silent)"


def enum_value(wire_field: str, neutral: str) -> str:
    """Segmind's spelling of a neutral enum value, e.g. ``enum_value("rendering_speed", "turbo") == "Turbo"``."""
    return ENUMS[wire_field][neutral]


def size_fields(request: CharacterRequest) -> dict[str, str]:
    """The size as Segmind takes it: always one ``resolution`` (never ``aspect_ratio``); none on an edit.

    A missing ``resolution`` falls back to Segmind's 512x1536 and overrides an ``aspect_ratio`` (Segmind's
    own example sends both and resolution wins: a 16:9 request comes back portrait), so an aspect ratio
    is sent as its size and an unset size as 1:1's.
    """
    size = output_size(request)
    return {} if size is None else {"resolution": f"{size[0]}x{size[1]}"}


def to_wire(request: CharacterRequest, *, seed: int | None = None) -> CharacterInput:
    """Segmind's body for ``request``, every field explicit. ``seed`` is the one the provider drew for a
    request that names none (required then: Segmind's default seed is 1). Unsupported neutral fields are
    left out (``check`` warned about them)."""
    if isinstance(request.operation, Remix):
        raise Unsupported("Segmind cannot remix", reasons={"segmind": "no remix (image-to-image strength) field"})
    chosen = request.seed if request.seed is not None else seed
    if chosen is None:
        raise ValueError("a request without a seed needs one drawn for it (Segmind's default seed is 1)")
    edit = request.operation if isinstance(request.operation, Edit) else None
    return CharacterInput(
        prompt=request.prompt,
        character_reference_image=request.reference,
        image=edit.image if edit else None,
        mask=edit.mask if edit else None,
        seed=chosen,
        style_type=enum_value("style_type", request.style or "auto"),
        rendering_speed=enum_value("rendering_speed", request.speed),
        magic_prompt_option=enum_value("magic_prompt_option", request.magic_prompt),
        **size_fields(request),
    )

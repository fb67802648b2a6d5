"""Neutral request -> Segmind's ``ideogram-character`` fields: pure functions over small tables.

What maps where (``reference/vendors.md`` §1.3 and §4):

====================  ============================  ====================================================
neutral               Segmind                       note
====================  ============================  ====================================================
prompt                ``prompt``
reference             ``character_reference_image``  URL string in JSON, or a file part when local
operation=edit        ``image`` + ``mask``          the same endpoint; no size fields on an edit
style                 ``style_type``                title case (table below)
speed                 ``rendering_speed``           always sent: it sets the price
magic_prompt          ``magic_prompt_option``       "auto" is not sent (the vendor decides)
aspect_ratio          ``aspect_ratio``              ``"16:9"``, sent as is
resolution            ``resolution``                ``"1024x1024"``, sent as is; never with aspect_ratio
seed                  ``seed``
====================  ============================  ====================================================

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
from ideochar_segmind.wire import CharacterInput

__all__ = [
    "ENUMS",
    "MASK_POLARITY_INFERRED",
    "NEUTRAL_TO_WIRE",
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
        "aspect_ratio": "aspect_ratio",
        "resolution": "resolution",
        "seed": "seed",
    }
)

MASK_POLARITY_INFERRED = "black = repaint, white = keep (Replicate's schema for the same model; Segmind is silent)"


def enum_value(wire_field: str, neutral: str) -> str:
    """Segmind's spelling of a neutral enum value, e.g. ``enum_value("rendering_speed", "turbo") == "Turbo"``."""
    return ENUMS[wire_field][neutral]


def size_fields(request: CharacterRequest) -> dict[str, str]:
    """The size as Segmind takes it: ``aspect_ratio`` or ``resolution``, never both.

    Segmind's own example sends both, and resolution then wins silently (a 16:9 request comes back
    portrait). The neutral request already forbids both; this refuses them again so no path can send them.
    """
    if request.aspect_ratio is not None and request.resolution is not None:
        raise ValueError("aspect_ratio and resolution are exclusive")
    if request.resolution is not None:
        return {"resolution": request.resolution}
    if request.aspect_ratio is not None:
        return {"aspect_ratio": request.aspect_ratio}
    return {}


def to_wire(request: CharacterRequest) -> CharacterInput:
    """Segmind's body for ``request``. Unsupported neutral fields are left out (``check`` warned about them)."""
    if isinstance(request.operation, Remix):
        raise Unsupported("Segmind cannot remix", reasons={"segmind": "no remix (image-to-image strength) field"})
    edit = request.operation if isinstance(request.operation, Edit) else None
    return CharacterInput(
        prompt=request.prompt,
        character_reference_image=request.reference,
        image=edit.image if edit else None,
        mask=edit.mask if edit else None,
        seed=request.seed,
        style_type=enum_value("style_type", request.style) if request.style is not None else None,
        rendering_speed=enum_value("rendering_speed", request.speed),
        magic_prompt_option=(
            enum_value("magic_prompt_option", request.magic_prompt) if request.magic_prompt != "auto" else None
        ),
        **(size_fields(request) if edit is None else {}),
    )

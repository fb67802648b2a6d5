"""The provider-neutral request: what the caller means, in neutral words, never a vendor's.

One :class:`CharacterRequest` describes a job; its ``operation`` says which: :class:`Generate` (a new
scene with the character), :class:`Edit` (repaint the black area of ``mask`` on ``image``, keeping the
character) or :class:`Remix` (image-to-image, the input weighted by ``strength``). Everything checkable without a
network is checked here, and a failure raises :class:`~ideochar.errors.InvalidRequest` naming the field
path (``operation.strength``), never a raw ``ValidationError``.

Example::

    CharacterRequest(prompt="a knight in the rain", reference="face.png", aspect_ratio="16:9")
    CharacterRequest(prompt="...", reference="face.png", operation=Remix(image="scene.png", strength=0.4))
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from typing_extensions import Self

from ideochar._constants import MAX_REFERENCE_BYTES
from ideochar.errors import InvalidRequest
from ideochar.media import ImageInput, InputKinds, accepting

__all__ = [
    "ASPECT_RATIOS",
    "RESOLUTIONS",
    "AspectRatio",
    "CharacterRequest",
    "ColorPalette",
    "Edit",
    "Generate",
    "MagicPrompt",
    "Operation",
    "OperationName",
    "PaletteMember",
    "PalettePreset",
    "Remix",
    "Resolution",
    "Speed",
    "Style",
    "is_visible",
]

Style = Literal["auto", "realistic", "fiction"]
Speed = Literal["turbo", "default", "quality"]
MagicPrompt = Literal["auto", "on", "off"]
OperationName = Literal["generate", "edit", "remix"]
PalettePreset = Literal["ember", "fresh", "jungle", "magic", "melon", "mosaic", "pastel", "ultramarine"]

#: The 15 aspect ratios Ideogram V3 accepts, written width:height.
AspectRatio = Literal[
    "1:3", "3:1", "1:2", "2:1", "9:16", "16:9", "10:16", "16:10",
    "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "1:1",
]  # fmt: skip
#: The 69 exact output sizes Ideogram V3 accepts, written WIDTHxHEIGHT.
Resolution = Literal[
    "512x1536", "576x1408", "576x1472", "576x1536", "640x1344", "640x1408", "640x1472", "640x1536",
    "704x1152", "704x1216", "704x1280", "704x1344", "704x1408", "704x1472", "736x1312", "768x1088",
    "768x1216", "768x1280", "768x1344", "800x1280", "832x960", "832x1024", "832x1088", "832x1152",
    "832x1216", "832x1248", "864x1152", "896x960", "896x1024", "896x1088", "896x1120", "896x1152",
    "960x832", "960x896", "960x1024", "960x1088", "1024x832", "1024x896", "1024x960", "1024x1024",
    "1088x768", "1088x832", "1088x896", "1088x960", "1120x896", "1152x704", "1152x832", "1152x864",
    "1152x896", "1216x704", "1216x768", "1216x832", "1248x832", "1280x704", "1280x768", "1280x800",
    "1312x736", "1344x640", "1344x704", "1344x768", "1408x576", "1408x640", "1408x704", "1472x576",
    "1472x640", "1472x704", "1536x512", "1536x576", "1536x640",
]  # fmt: skip
ASPECT_RATIOS: tuple[str, ...] = get_args(AspectRatio)
RESOLUTIONS: tuple[str, ...] = get_args(Resolution)

# Used with fullmatch: "$" also matches before a final newline, which then went to the vendor.
_HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
_STYLE_CODE = re.compile(r"[0-9a-fA-F]{8}")
#: Characters Unicode files as letters or symbols that draw nothing (Hangul fillers, the braille blank).
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_OPERATION_TAGS = frozenset(get_args(OperationName))


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _resolution(value: Any) -> Any:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{int(value[0])}x{int(value[1])}"
    return value.strip().lower().replace("×", "x") if isinstance(value, str) else value


def _within_reference_limit(image: ImageInput) -> ImageInput:
    if image.size is not None and image.size > MAX_REFERENCE_BYTES:
        raise ValueError(f"is {image.size:,} bytes; the limit is {MAX_REFERENCE_BYTES:,} bytes (10 MB)")
    # A header Pillow cannot read (a bare PNG signature sniffs as PNG), a cut-short file, a bomb: each
    # would be refused by the vendor after the network call, or cost us its memory. The check is cheap
    # (no pixels decoded; found by tests/reliability and issue 13). Raises InvalidRequest, a ValueError
    # pydantic reports on the field.
    image.check()
    return image


def _draws_something(char: str) -> bool:
    # Not a control or format character (C*), a separator (Z*) or a mark with nothing to sit on (M*).
    return unicodedata.category(char)[0] not in "CZM" and char not in _BLANK_LETTERS


def is_visible(text: str) -> bool:
    """True when ``text`` draws something, as ``prompt`` and ``negative_prompt`` must: not only white
    space, control or format characters (NUL, zero-width space and joiner, BOM), lone combining marks
    or blank letters (U+3164). Lets a server check its users' text the way the request will."""
    return any(_draws_something(c) for c in text)


def _visible_text(value: str) -> str:
    # Every vendor refuses a prompt of only spaces, after the request was sent: refuse it here instead,
    # with the invisible characters that look like nothing too (NUL, zero-width space and joiner, BOM).
    # A control character anywhere (other than tab and line breaks) is never meant, and cuts some backends.
    control = next((c for c in value if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None)
    if control is not None:
        raise ValueError(f"contains the control character U+{ord(control):04X}")
    if not is_visible(value):
        raise ValueError("must contain something visible, not only white space or invisible characters")
    return value


def _not_bool(value: Any) -> Any:
    # pydantic reads True as 1 for a number: a flag passed in the wrong place would become a seed of 1.
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {value}")
    return value


#: For every numeric field: a boolean is refused, not read as 0 or 1.
_NOT_BOOL = BeforeValidator(_not_bool)


def _hex_colour(value: str) -> str:
    if not _HEX_COLOUR.fullmatch(value):
        raise ValueError(f"{value!r} is not a hex colour like #1A2B3C")
    digits = value[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits.upper()


def _style_code(value: str) -> str:
    if not _STYLE_CODE.fullmatch(value):
        raise ValueError(f"{value!r} is not a style code of 8 hex digits")
    return value.upper()


Image = Annotated[ImageInput, AfterValidator(_within_reference_limit)]


def _check_same_size(name: str, image: ImageInput, other_name: str, other: ImageInput) -> None:
    a, b = image.dimensions, other.dimensions
    if a is not None and b is not None and a != b:
        raise _FieldError(name, f"is {a[0]}x{a[1]} but {other_name} is {b[0]}x{b[1]}; they must be the same size")


def invalid_request_from(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> InvalidRequest:
    """Turn pydantic's report into sentences naming field paths (``operation.strength: ...``)."""
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        loc = list(prefix) + list(item["loc"])
        # Drop the union tag pydantic inserts after a discriminated field (operation.remix.strength).
        loc = [
            part for i, part in enumerate(loc) if not (i > 0 and loc[i - 1] == "operation" and part in _OPERATION_TAGS)
        ]
        path = ".".join(str(p) for p in loc) or "request"
        message = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        problems.append((path, message))
    text = "; ".join(f"{path}: {message}" for path, message in problems)
    return InvalidRequest(f"invalid request: {text}", problems=problems)


class _FieldError(Exception):
    """A cross-field rule broken, naming its field. Not a ValueError, so pydantic lets it through
    unchanged, and the wrap validator on ``operation`` can prefix the path of a nested model."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field, self.problem = field, problem


# Depth of model construction in progress: only the outermost converts errors (pydantic calls a
# custom __init__ for nested models too, and must see their ValidationError to prefix its path).
_depth: ContextVar[int] = ContextVar("ideochar_request_depth", default=0)


@contextmanager
def _as_invalid_request() -> Iterator[None]:
    outermost = _depth.get() == 0
    token = _depth.set(_depth.get() + 1)
    try:
        yield
    except ValidationError as exc:
        if not outermost:
            raise
        raise invalid_request_from(exc) from None
    except _FieldError as exc:
        if not outermost:
            raise
        problems = [(exc.field, exc.problem)]
        raise InvalidRequest(f"invalid request: {exc.field}: {exc.problem}", problems=problems) from None
    finally:
        _depth.reset(token)


def attribute_docstrings(klass: type) -> dict[str, str]:
    """``{field: docstring}`` from the string literal under each annotated field in ``klass``'s own source.

    Empty when there is no source (a frozen app, the REPL). Shared with the docs generator.
    """
    import ast
    import inspect
    import itertools
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    return {
        node.target.id: inspect.cleandoc(after.value.value)
        for node, after in itertools.pairwise(body)
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
        and isinstance(after.value.value, str)
    }


def _docstring_descriptions(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Give the JSON schema each field's attribute docstring as its description.

    pydantic's ``use_attribute_docstrings`` reads every model's source when the class is created; on
    Python < 3.13 that scans every loaded module and cost ``import ideochar`` ~30 ms. The schema is the
    only consumer of the descriptions, so they are read here, when a schema is generated.
    """
    properties = schema.get("properties", {})
    for name, text in attribute_docstrings(model).items():
        if name in properties:
            properties[name].setdefault("description", text)


class _Model(BaseModel):
    """Frozen, strict about unknown fields, and raising InvalidRequest instead of ValidationError."""

    # Built on first use rather than at import (docs/benchmarks.md); descriptions come from the
    # attribute docstrings when a JSON schema is asked for.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        arbitrary_types_allowed=True,
        defer_build=True,
        json_schema_extra=_docstring_descriptions,
    )

    if not TYPE_CHECKING:  # keep the typed __init__ the pydantic mypy plugin synthesises

        def __init__(self, /, **data: Any) -> None:
            with _as_invalid_request():
                super().__init__(**data)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """As pydantic's; a ``context`` naming the input kinds accepted (:meth:`InputKinds.context`)
        holds for every image in ``obj``, nested ones too."""
        with _as_invalid_request(), accepting(InputKinds.from_context(kwargs.get("context"))):
            return super().model_validate(obj, *args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover


class PaletteMember(_Model):
    color: Annotated[str, AfterValidator(_hex_colour)]
    """A hex colour, ``#RRGGBB`` (``#RGB`` is expanded)."""
    weight: Annotated[float, _NOT_BOOL, Field(ge=0.05, le=1.0)] | None = None
    """How strongly the colour is used, 0.05-1; the vendor's default when omitted."""


class ColorPalette(_Model):
    """A named preset **or** up to 8 weighted colours, never both."""

    preset: Annotated[PalettePreset, BeforeValidator(_lower)] | None = None
    members: Annotated[list[PaletteMember], Field(min_length=1, max_length=8)] | None = None

    @model_validator(mode="after")
    def _preset_xor_members(self) -> Self:
        if (self.preset is None) == (self.members is None):
            raise ValueError("give a preset or members, exactly one of them")
        return self


def _palette(value: Any) -> Any:
    """Accept the shorthand ``"ember"`` and ``["#FF0000", ("#00FF00", 0.3)]``."""
    if isinstance(value, str):
        return {"preset": value}
    if isinstance(value, (list, tuple)):
        members = []
        for item in value:
            if isinstance(item, str):
                members.append({"color": item})
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                members.append({"color": item[0], "weight": item[1]})
            else:
                members.append(item)
        return {"members": members}
    return value


class Generate(_Model):
    """A new image of the character, from the prompt."""

    operation: Literal["generate"] = "generate"


class Edit(_Model):
    """Repaint the area of ``image`` that is **black** in ``mask`` (white is kept), keeping the character."""

    operation: Literal["edit"] = "edit"
    image: Image
    mask: Image

    @model_validator(mode="after")
    def _same_size(self) -> Self:
        _check_same_size("mask", self.mask, "image", self.image)
        return self


class Remix(_Model):
    """Image-to-image: a new image from ``image``, which shapes it as strongly as ``strength`` says."""

    operation: Literal["remix"] = "remix"
    image: Image
    strength: Annotated[float, _NOT_BOOL, Field(ge=0.01, le=1.0)] = 0.8
    """How strongly ``image`` shapes the result, 0.01 (barely) to 1 (most); fal's default 0.8.

    This is fal's ``strength`` ("strength of the input image"); Ideogram's ``image_weight`` is taken to be
    ``strength * 100``. Both readings are inferred: neither vendor documents the scale."""


Operation = Annotated[Generate | Edit | Remix, Field(discriminator="operation")]


class CharacterRequest(_Model):
    """One job for any vendor. An unset field means what ideochar documents per vendor (the provider matrix
    shows what each sends), never a vendor default the caller did not choose."""

    prompt: Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(_visible_text)]
    """What to draw."""
    reference: Image
    """One photo of the character (JPEG, PNG or WebP, at most 10 MB)."""
    reference_mask: Image | None = None
    """Grayscale mask of the reference, same pixel size, marking the character."""
    operation: Operation = Field(default_factory=Generate)
    """Generate (default), Edit or Remix."""

    style: Annotated[Style, BeforeValidator(_lower)] | None = None
    speed: Annotated[Speed, BeforeValidator(_lower)] = "default"
    """Rendering speed; sets the price (turbo is cheapest)."""
    magic_prompt: Annotated[MagicPrompt, BeforeValidator(_lower)] = "auto"
    """Let the vendor rewrite the prompt ("on"), not ("off"), or decide ("auto")."""
    aspect_ratio: AspectRatio | None = None
    resolution: Annotated[Resolution, BeforeValidator(_resolution)] | None = None
    seed: Annotated[int, _NOT_BOOL, Field(ge=0, le=2_147_483_647)] | None = None
    num_images: Annotated[int, _NOT_BOOL, Field(ge=1, le=8)] = 1
    negative_prompt: Annotated[str, Field(min_length=1), AfterValidator(_visible_text)] | None = None
    color_palette: Annotated[ColorPalette, BeforeValidator(_palette)] | None = None
    style_codes: Annotated[list[Annotated[str, AfterValidator(_style_code)]], Field(min_length=1)] | None = None
    style_references: list[Image] = Field(default_factory=list)
    extra: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Vendor-only options by provider name, e.g. ``{"fal": {"sync_mode": True}}``; each provider validates its own."""

    @field_validator("operation", mode="wrap")
    @classmethod
    def _operation_path(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except _FieldError as exc:
            raise _FieldError(f"operation.{exc.field}", exc.problem) from None

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        if self.aspect_ratio is not None and self.resolution is not None:
            raise _FieldError("resolution", "give aspect_ratio or resolution, not both")
        if self.style_codes and self.style is not None:
            raise _FieldError("style_codes", "cannot be combined with style")
        if self.style_codes and self.style_references:
            raise _FieldError("style_codes", "cannot be combined with style_references")
        if isinstance(self.operation, Edit) and (self.aspect_ratio or self.resolution):
            field = "aspect_ratio" if self.aspect_ratio else "resolution"
            raise _FieldError(field, "an edit keeps the size of its image; leave the size unset")
        total = sum(image.size or 0 for image in self.style_references)
        if total > MAX_REFERENCE_BYTES:
            raise _FieldError(
                "style_references", f"total {total:,} bytes; the limit is {MAX_REFERENCE_BYTES:,} bytes (10 MB)"
            )
        if self.reference_mask is not None:
            _check_same_size("reference_mask", self.reference_mask, "reference", self.reference)
        return self

    @property
    def operation_name(self) -> OperationName:
        return self.operation.operation

    def fields_used(self) -> frozenset[str]:
        """Neutral names of the optional features this request asks for (what a provider must support)."""
        used = {name for name in _OPTIONAL_FIELDS if getattr(self, name) not in (None, [], {})}
        if self.num_images > 1:
            used.add("num_images")
        if self.magic_prompt != "auto":
            used.add("magic_prompt")
        return frozenset(used)

    def images(self) -> Iterable[tuple[str, ImageInput]]:
        """Every image in the request with its field path (for uploads, checks and the journal)."""
        yield "reference", self.reference
        if self.reference_mask is not None:
            yield "reference_mask", self.reference_mask
        if isinstance(self.operation, Edit):
            yield "operation.image", self.operation.image
            yield "operation.mask", self.operation.mask
        elif isinstance(self.operation, Remix):
            yield "operation.image", self.operation.image
        for i, image in enumerate(self.style_references):
            yield f"style_references.{i}", image


#: Fields whose use a provider must declare support for (speed and prompt every vendor takes).
_OPTIONAL_FIELDS: tuple[str, ...] = (
    "reference_mask",
    "style",
    "aspect_ratio",
    "resolution",
    "seed",
    "negative_prompt",
    "color_palette",
    "style_codes",
    "style_references",
)
#: Every field name a provider can list in ``supported_fields``.
NEUTRAL_FIELDS: frozenset[str] = frozenset((*_OPTIONAL_FIELDS, "num_images", "magic_prompt"))

"""Issue 13: request fields a vendor would misread are refused locally, naming the field.

* Patterns hold to the true end of the value: ``$`` also matched before a final newline, which then
  went to the vendor.
* A prompt made only of invisible characters (NUL, zero-width space and joiner, BOM, white space) is
  refused, and so is a control character anywhere in one.
* A boolean is never read as a number (``seed=True`` was a seed of 1), in every numeric field.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from conftest import make_image
from ideochar import CharacterRequest, InvalidRequest
from ideochar.request import ColorPalette, Edit, Generate, PaletteMember, Remix

PNG = make_image(16, 16)


def _refused(**fields: Any) -> InvalidRequest:
    fields.setdefault("prompt", "a knight")
    fields.setdefault("reference", PNG)
    with pytest.raises(InvalidRequest) as caught:
        CharacterRequest(**fields)
    return caught.value


# -- patterns anchored at the true end -------------------------------------------------------------------------

COLOURS = st.from_regex(r"\A#(?:[0-9a-fA-F]{3}){1,2}\Z")
STYLE_CODES = st.from_regex(r"\A[0-9a-fA-F]{8}\Z")
#: What can trail or lead a value pasted from a file or a form.
AROUND = st.sampled_from(["\n", "\r\n", "\r", " ", "\t", "\x00", "\u200b", "\ufeff", "\x0b", "\x0c"])


@given(colour=COLOURS, extra=AROUND, before=st.booleans())
def test_a_colour_with_anything_around_it_is_refused(colour: str, extra: str, before: bool) -> None:
    value = extra + colour if before else colour + extra
    assert _refused(color_palette=[value]).field == "color_palette.members.0.color"
    assert CharacterRequest(prompt="p", reference=PNG, color_palette=[colour]).color_palette is not None


@given(code=STYLE_CODES, extra=AROUND, before=st.booleans())
def test_a_style_code_with_anything_around_it_is_refused(code: str, extra: str, before: bool) -> None:
    value = extra + code if before else code + extra
    assert _refused(style_codes=[value]).field == "style_codes.0"
    assert CharacterRequest(prompt="p", reference=PNG, style_codes=[code]).style_codes == [code.upper()]


@pytest.mark.parametrize(("field", "value"), [("color_palette", ["#FFFFFF\n"]), ("style_codes", ["0123ABCD\n"])])
def test_a_trailing_newline_is_refused(field: str, value: list[str]) -> None:
    assert _refused(**{field: value}).field.startswith(field)  # type: ignore[union-attr]


# -- prompts that say nothing ------------------------------------------------------------------------------

#: Characters that draw nothing: white space, controls, format characters, marks with nothing to sit on,
#: and the letters and symbols Unicode files as such that are blank.
INVISIBLE = st.sampled_from(
    [
        " ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u3000", "\u2028", "\u2029",
        "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u202e", "\U000e0041",
        "\u0301", "\ufe0f", "\u115f", "\u1160", "\u3164", "\uffa0", "\u2800",
    ]
)  # fmt: skip
CONTROLS = st.characters(categories=["Cc"]).filter(lambda c: c not in "\t\n\r")


@given(text=st.lists(INVISIBLE, min_size=1, max_size=12).map("".join))
def test_a_prompt_of_only_invisible_characters_is_refused(text: str) -> None:
    assert _refused(prompt=text).field == "prompt"
    assert _refused(negative_prompt=text).field == "negative_prompt"


@given(control=CONTROLS, where=st.integers(min_value=0, max_value=8))
def test_a_control_character_anywhere_in_a_prompt_is_refused(control: str, where: int) -> None:
    text = "a knight"
    value = text[:where] + control + text[where:]
    error = _refused(prompt=value)
    assert error.field == "prompt" and f"U+{ord(control):04X}" in str(error)
    assert _refused(negative_prompt=value).field == "negative_prompt"


@pytest.mark.parametrize("prompt", ["\x00", "\u200b", "\u200d", "\ufeff", "\x00\u200b \ufeff\n"])
def test_nul_and_zero_width_prompts_are_refused(prompt: str) -> None:
    assert _refused(prompt=prompt).field == "prompt"


@pytest.mark.parametrize("prompt", ["a knight\n\tin the rain", "騎士", "🗡", "7", "…", "a\u200dknight", "e\u0301"])
def test_visible_prompts_keep_their_invisible_companions(prompt: str) -> None:
    assert CharacterRequest(prompt=prompt, reference=PNG, negative_prompt=prompt).prompt == prompt


# -- booleans are not numbers ------------------------------------------------------------------------------

#: How to put a value into each model's field inside a request, and the field path an error names.
PLACES: dict[type[BaseModel], Callable[[str, Any], tuple[dict[str, Any], str]]] = {
    CharacterRequest: lambda name, value: ({name: value}, name),
    Remix: lambda name, value: (
        {"operation": {"operation": "remix", "image": PNG, name: value}},
        f"operation.{name}",
    ),
    PaletteMember: lambda name, value: (
        {"color_palette": {"members": [{"color": "#FFFFFF", name: value}]}},
        f"color_palette.members.0.{name}",
    ),
}
MODELS: tuple[type[BaseModel], ...] = (CharacterRequest, Generate, Edit, Remix, ColorPalette, PaletteMember)


def _is_number(annotation: Any) -> bool:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_number(arg) for arg in typing.get_args(annotation))
    return annotation in (int, float)


def _numeric_fields() -> list[tuple[type[BaseModel], str]]:
    for model in MODELS:
        model.model_rebuild()
    return [
        (model, name) for model in MODELS for name, info in model.model_fields.items() if _is_number(info.annotation)
    ]


NUMERIC_FIELDS = _numeric_fields()


def test_every_numeric_field_of_the_request_is_covered() -> None:
    """A numeric field added to a model must be placed in PLACES, so the property below covers it."""
    assert {(CharacterRequest, "seed"), (CharacterRequest, "num_images"), (Remix, "strength")} <= set(NUMERIC_FIELDS)
    assert {model for model, _ in NUMERIC_FIELDS} <= set(PLACES)


@given(field=st.sampled_from(NUMERIC_FIELDS), value=st.booleans())
def test_a_boolean_is_refused_in_every_numeric_field(field: tuple[type[BaseModel], str], value: bool) -> None:
    model, name = field
    fields, path = PLACES[model](name, value)
    error = _refused(**fields)
    assert error.field == path
    assert "must be a number" in str(error)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"seed": 1}, ("seed", 1)),
        ({"num_images": 2}, ("num_images", 2)),
        ({"seed": "7"}, ("seed", 7)),  # command lines and forms give numbers as text
    ],
)
def test_numbers_still_pass(fields: dict[str, Any], expected: tuple[str, Any]) -> None:
    request = CharacterRequest(prompt="a knight", reference=PNG, **fields)
    assert getattr(request, expected[0]) == expected[1]
    remix = CharacterRequest(
        prompt="a knight", reference=PNG, operation={"operation": "remix", "image": PNG, "strength": 1}
    )
    assert isinstance(remix.operation, Remix) and remix.operation.strength == 1.0

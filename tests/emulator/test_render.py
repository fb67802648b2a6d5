"""Emulated images: exact size, deterministic for a seed, the reference visibly in them, labelled."""

from __future__ import annotations

import io
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from ideochar.emulator.render import Recipe, RenderCache, adler32_combine, is_cheap, prepare, render, render_recipe

from .support import decode, image, mask_png

GREEN = (12, 200, 34)


def colours(data: bytes) -> dict[tuple[int, int, int], int]:
    return {colour: count for count, colour in decode(data).getcolors(1 << 24) or []}


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes(fmt: str) -> None:
    first = render(image(), "a knight", width=640, height=1344, seed=1, fmt=fmt, cache=RenderCache())  # type: ignore[arg-type]
    again = render(image(), "a knight", width=640, height=1344, seed=1, fmt=fmt, cache=RenderCache())  # type: ignore[arg-type]
    other = render(image(), "a knight", width=640, height=1344, seed=2, fmt=fmt, cache=RenderCache())  # type: ignore[arg-type]
    assert first == again
    assert first != other
    with Image.open(io.BytesIO(first)) as opened:
        assert (opened.format, opened.size) == ({"png": "PNG", "jpeg": "JPEG"}[fmt], (640, 1344))


def test_the_hand_assembled_png_is_valid_and_lossless() -> None:
    data = render(image(100, 100, color=GREEN), "p", width=300, height=200, seed=9, cache=RenderCache())
    with Image.open(io.BytesIO(data)) as opened:
        opened.verify()  # checks every chunk's CRC
    assert colours(data).get(GREEN, 0) > 5_000, "the reference's exact pixels are in the output"


def test_the_seed_only_changes_the_band_at_the_bottom() -> None:
    cache = RenderCache()
    one = decode(render(image(), "p", width=400, height=400, seed=1, cache=cache))
    two = decode(render(image(), "p", width=400, height=400, seed=2, cache=cache))
    band_top = next(y for y in range(400) if one.getpixel((200, y)) != two.getpixel((200, y)) or y == 399)
    assert band_top > 300
    assert one.crop((0, 0, 400, band_top)).tobytes() == two.crop((0, 0, 400, band_top)).tobytes()


def test_the_label_bar_is_drawn_across_the_top() -> None:
    picture = decode(render(image(), "p", width=512, height=512, seed=1, cache=RenderCache()))
    assert picture.getpixel((511, 2)) == (170, 20, 40)


def test_an_edit_hatches_the_repaint_area_and_keeps_the_rest() -> None:
    blue = (30, 60, 200)
    base = image(400, 400, color=blue)
    mask = mask_png(400, 400, (0, 200, 399, 399))  # repaint the lower half
    picture = decode(
        render(image(color=GREEN), "p", width=400, height=400, seed=1, base=base, mask=mask, cache=RenderCache())
    )
    upper = picture.crop((0, 60, 400, 180))
    lower = picture.crop((0, 300, 400, 320))
    assert colours_of(upper).get(blue, 0) > 0.8 * upper.width * upper.height  # (letterboxed: stripes at the sides)
    assert colours_of(lower).get(blue, 0) < 0.1 * lower.width * lower.height


def colours_of(picture: Image.Image) -> dict[tuple[int, int, int], int]:
    return {colour: count for count, colour in picture.getcolors(1 << 24) or []}


def test_an_unreadable_reference_still_renders() -> None:
    data = render(b"not an image", "p", width=64, height=64, seed=0, cache=RenderCache())
    assert decode(data).size == (64, 64)


def test_a_recipe_is_cheap_once_its_canvas_is_prepared() -> None:
    cache = RenderCache()
    recipe = Recipe(image(), "p", 1024, 1024, 5)
    assert not is_cheap(recipe, cache)
    prepare(recipe, cache)
    assert is_cheap(recipe, cache)
    assert is_cheap(Recipe(image(), "p", 1024, 1024, 6), cache), "another seed shares the canvas"
    assert render_recipe(recipe, cache) == render(image(), "p", width=1024, height=1024, seed=5, cache=RenderCache())


def test_a_size_below_one_pixel_is_refused() -> None:
    with pytest.raises(ValueError, match="0x10"):
        Recipe(image(), "p", 0, 10, 1)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_adler32_combine_matches_zlib(first: bytes, second: bytes) -> None:
    assert adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second)) == zlib.adler32(first + second)

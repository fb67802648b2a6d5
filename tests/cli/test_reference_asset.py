"""The shipped reference character: packaged, small, and what its script draws."""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageStat

from ideochar.assets import reference_bytes, reference_path
from ideochar.assets.make_reference import PALETTE, SIZE, draw_reference
from ideochar.media import ImageInput


def test_the_reference_ships_inside_the_package_as_a_small_png() -> None:
    data = reference_bytes()
    image = ImageInput.of(data)
    assert image.format == "png"
    assert image.dimensions == (SIZE, SIZE) == (512, 512)
    assert len(data) < 120_000
    with reference_path() as path:
        assert path.read_bytes() == data


def test_the_committed_file_is_what_the_script_draws() -> None:
    committed = Image.open(io.BytesIO(reference_bytes())).convert("RGB")
    drawn = draw_reference()
    # Pixels, not bytes: another Pillow may anti-alias a font edge differently.
    mean_difference = sum(ImageStat.Stat(ImageChops.difference(committed, drawn)).mean) / 3
    assert mean_difference < 2.0


def test_the_character_keeps_its_distinct_colours() -> None:
    image = Image.open(io.BytesIO(reference_bytes())).convert("RGB")
    colours = {colour for _, colour in image.getcolors(maxcolors=SIZE * SIZE) or []}
    for name in ("background", "hair", "hoodie", "tag_band", "star"):
        hex_code = PALETTE[name].lstrip("#")
        assert tuple(int(hex_code[i : i + 2], 16) for i in (0, 2, 4)) in colours, name

"""Draw ``reference.png``, the project's own reference character, with Pillow only.

Why drawn and not photographed: the demo and the docs need a character anyone may copy, that no vendor
could confuse with a real person, and that is easy to spot in an output image (flat, distinct colours and
a name tag). Run ``python -m ideochar.assets.make_reference`` to redraw it; the output is deterministic for a
given Pillow version, so the committed file only changes when this script does.

The drawing is made at twice the size and scaled down, which is a cheap way to get smooth edges.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["PALETTE", "draw_reference", "main"]

SIZE = 512
_SCALE = 2

#: The character's colours: distinct, saturated and few, so they survive any restyling.
PALETTE: dict[str, str] = {
    "background": "#2BB3A3",
    "halo": "#86DDD0",
    "skin": "#F6C9A2",
    "skin_shade": "#E4A883",
    "hair": "#E8553E",
    "hair_shade": "#C23E2B",
    "streak": "#FFF4E0",
    "eye": "#2A2840",
    "cheek": "#F59AA0",
    "hoodie": "#F2B134",
    "hoodie_shade": "#D99620",
    "tag": "#FFFFFF",
    "tag_band": "#D7263D",
    "ink": "#1E1E2E",
    "star": "#FFE14D",
}


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _star(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: str) -> None:
    import math

    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.45
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    draw.polygon(points, fill=fill, outline=PALETTE["ink"], width=4)


def _fringe() -> list[tuple[float, float]]:
    """The fringe outline: the top of the head, then a scalloped edge of four bangs, right to left."""
    import math

    cx, cy, rx, ry = 256.0, 226.0, 110.0, 128.0
    top = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in (math.pi * (1 + i / 40) for i in range(41))]
    left, right = 152.0, 360.0
    bangs, edge = 4, []
    for i in range(bangs * 10, -1, -1):
        t = i / (bangs * 10)
        x = left + (right - left) * t
        y = 176.0 + 26.0 * abs(math.sin(math.pi * bangs * t))
        edge.append((x, y))
    return [(x * _SCALE, y * _SCALE) for x, y in top + edge]


def _streak() -> list[tuple[float, float]]:
    """A cream lock following the second bang, from the crown to its tip."""
    import math

    path = [(236.0 + 14 * math.sin(t * 1.2), 104.0 + 92.0 * t) for t in (i / 12 for i in range(13))]
    widths = [3.0 + 7.0 * math.sin(math.pi * min(1.0, (i / 12) * 1.15)) for i in range(13)]
    left = [(x - w, y) for (x, y), w in zip(path, widths, strict=True)]
    right = [(x + w, y) for (x, y), w in zip(path, widths, strict=True)]
    return [(x * _SCALE, y * _SCALE) for x, y in left + right[::-1]]


def draw_reference(name: str = "Juno") -> Image.Image:
    """The character as an RGB image of ``SIZE`` x ``SIZE`` pixels."""
    s = _SCALE
    w = SIZE * s
    p = PALETTE

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return (x0 * s, y0 * s, x1 * s, y1 * s)

    image = Image.new("RGB", (w, w), p["background"])
    draw = ImageDraw.Draw(image, "RGBA")

    draw.ellipse(box(56, 40, 456, 440), fill=p["halo"])

    # Shoulders in a mustard hoodie, with the hood's collar behind the neck.
    draw.ellipse(box(70, 380, 442, 700), fill=p["hoodie"], outline=p["ink"], width=5 * s)
    draw.ellipse(box(172, 356, 340, 424), fill=p["hoodie_shade"], outline=p["ink"], width=4 * s)
    draw.rounded_rectangle(box(224, 318, 288, 396), radius=24 * s, fill=p["skin_shade"])

    # Hair behind the head: a round coral bob.
    draw.rounded_rectangle(box(122, 88, 390, 362), radius=118 * s, fill=p["hair"], outline=p["ink"], width=5 * s)

    # Ears and face.
    draw.ellipse(box(148, 214, 188, 268), fill=p["skin"], outline=p["ink"], width=4 * s)
    draw.ellipse(box(324, 214, 364, 268), fill=p["skin"], outline=p["ink"], width=4 * s)
    draw.ellipse(box(164, 130, 348, 344), fill=p["skin"], outline=p["ink"], width=5 * s)

    # Fringe: four rounded bangs, one of them a cream streak (her most distinctive feature).
    draw.polygon(_fringe(), fill=p["hair"], outline=p["ink"], width=5 * s)
    draw.polygon(_streak(), fill=p["streak"])

    # A yellow star hair clip.
    _star(draw, 330 * s, 150 * s, 26 * s, p["star"])

    # Eyes: big, round, with highlights.
    for cx in (218, 294):
        draw.ellipse(box(cx - 20, 222, cx + 20, 266), fill=p["eye"])
        draw.ellipse(box(cx - 9, 230, cx + 3, 242), fill="#FFFFFF")
        draw.ellipse(box(cx + 5, 248, cx + 11, 254), fill="#FFFFFF")
    # Brows.
    draw.arc(box(192, 200, 240, 224), start=200, end=330, fill=p["ink"], width=5 * s)
    draw.arc(box(272, 200, 320, 224), start=210, end=340, fill=p["ink"], width=5 * s)
    # Cheeks, nose, smile.
    draw.ellipse(box(178, 270, 212, 292), fill=p["cheek"])
    draw.ellipse(box(300, 270, 334, 292), fill=p["cheek"])
    draw.arc(box(246, 262, 266, 282), start=20, end=160, fill=p["skin_shade"], width=4 * s)
    draw.chord(box(226, 282, 286, 322), start=0, end=180, fill="#8C2B3A", outline=p["ink"], width=4 * s)
    draw.chord(box(240, 304, 272, 322), start=180, end=360, fill="#F27B86")

    # The name tag: a "HELLO my name is" sticker on the hoodie.
    draw.rounded_rectangle(box(176, 420, 336, 500), radius=12 * s, fill=p["tag"], outline=p["ink"], width=4 * s)
    draw.rounded_rectangle(box(178, 422, 334, 448), radius=10 * s, fill=p["tag_band"])
    draw.rectangle(box(178, 440, 334, 448), fill=p["tag_band"])
    draw.text((256 * s, 436 * s), "HELLO", font=_font(18 * s), fill="#FFFFFF", anchor="mm")
    draw.text(
        (256 * s, 474 * s),
        name.upper(),
        font=_font(34 * s),
        fill=p["ink"],
        anchor="mm",
        stroke_width=1 * s,
        stroke_fill=p["ink"],
    )

    return image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=Path(__file__).with_name("reference.png"))
    args = parser.parse_args(argv)
    draw_reference().save(args.output, "PNG", optimize=True)
    print(f"{args.output} ({args.output.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

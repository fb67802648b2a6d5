"""Issue 13: a mask's pixels are checked in bounded memory.

A 490 KB all-black mask once took 1.8 GB to check, decoded whole and converted. ``pixel_strips`` reads
an 8-bit PNG strip by strip (exactly: every PNG row filter, every strip size), a JPEG at a reduced
scale, anything else whole only within a budget; ``is_grayscale`` answers from them. A subprocess
measures the peak memory of checking a 50-megapixel mask.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ideochar import InvalidRequest
from ideochar.media import ImageInput, is_grayscale, pixel_strips

#: PNG colour type -> (Pillow mode, bytes per pixel), for the forms read strip by strip.
LAYOUTS = {0: ("L", 1), 2: ("RGB", 3), 3: ("P", 1), 4: ("LA", 2), 6: ("RGBA", 4)}
#: Peak memory a 50-megapixel mask check may add (checking it whole took over 500 MiB).
MEMORY_BOUND_MIB = 64


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(row: bytes, above: bytes, kind: int, step: int) -> bytes:
    """``row`` filtered with PNG filter ``kind`` (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth)."""
    out = bytearray()
    for i, x in enumerate(row):
        a = row[i - step] if i >= step else 0
        b = above[i]
        c = above[i - step] if i >= step else 0
        predictor = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
        out.append((x - predictor) % 256)
    return bytes([kind]) + bytes(out)


def _png(raw: bytes, width: int, height: int, colour: int, filters: list[int], palette: bytes = b"") -> bytes:
    """A PNG of ``raw`` 8-bit pixels, each row filtered as ``filters`` says (Pillow picks its own)."""
    step = LAYOUTS[colour][1]
    line = width * step
    above = bytes(line)
    body = bytearray()
    for y in range(height):
        row = raw[y * line : (y + 1) * line]
        body += _filtered(row, above, filters[y], step)
        above = row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    chunks = [_chunk(b"IHDR", ihdr)]
    if palette:
        chunks.append(_chunk(b"PLTE", palette))
    data = zlib.compress(bytes(body))
    chunks += [_chunk(b"IDAT", data[:7]), _chunk(b"IDAT", data[7:]), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _joined(strips: Iterator[Image.Image]) -> Image.Image:
    parts = list(strips)
    whole = Image.new(parts[0].mode, (parts[0].width, sum(p.height for p in parts)))
    top = 0
    for part in parts:
        whole.paste(part, (0, top))
        top += part.height
    return whole


@st.composite
def filtered_pngs(draw: st.DrawFn) -> tuple[bytes, int]:
    colour = draw(st.sampled_from(sorted(LAYOUTS)))
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    raw = draw(st.binary(min_size=width * height * LAYOUTS[colour][1], max_size=width * height * LAYOUTS[colour][1]))
    if colour == 3:
        raw = bytes(b % 16 for b in raw)
    filters = draw(st.lists(st.integers(0, 4), min_size=height, max_size=height))
    palette = draw(st.binary(min_size=48, max_size=48)) if colour == 3 else b""
    return _png(raw, width, height, colour, filters, palette), colour


@settings(max_examples=150, deadline=None)
@given(png=filtered_pngs(), strip_bytes=st.integers(1, 200))
def test_png_strips_are_exactly_the_image_for_every_filter_and_strip_size(
    png: tuple[bytes, int], strip_bytes: int
) -> None:
    data, colour = png
    image = ImageInput.of(data)
    with mock.patch("ideochar.media.PIXEL_STRIP_BYTES", strip_bytes):
        strips = list(pixel_strips(image))
    whole = Image.open(io.BytesIO(data))
    rows_per_strip = max(1, strip_bytes // (1 + whole.width * LAYOUTS[colour][1]))
    assert len(strips) == -(-whole.height // rows_per_strip)
    joined = _joined(iter(strips))
    assert joined.mode == LAYOUTS[colour][0]
    assert joined.size == whole.size
    assert joined.tobytes() == whole.tobytes()
    if colour == 3:
        assert strips[-1].getpalette("RGB") == whole.getpalette("RGB")
        assert is_grayscale(image) == _naive_grayscale(whole)


@settings(max_examples=60, deadline=None)
@given(
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    mode=st.sampled_from(["RGB", "RGBA", "P", "L", "LA"]),
    speck=st.one_of(st.none(), st.tuples(st.integers(0, 39), st.integers(0, 39))),
    fmt=st.sampled_from(["PNG", "WEBP"]),
    strip_bytes=st.integers(1, 400),
)
def test_is_grayscale_agrees_with_a_check_of_every_pixel(
    size: tuple[int, int], mode: str, speck: tuple[int, int] | None, fmt: str, strip_bytes: int
) -> None:
    if fmt == "WEBP" and mode in ("P", "LA"):
        mode = "RGB"
    source = Image.linear_gradient("L").resize(size).convert(mode)
    if speck is not None and mode not in ("L", "LA"):
        source = source.convert("RGB") if mode == "P" else source
        source.putpixel((speck[0] % size[0], speck[1] % size[1]), (255, 0, 0, 255)[: len(source.getbands())])
    buffer = io.BytesIO()
    source.save(buffer, fmt, lossless=True) if fmt == "WEBP" else source.save(buffer, fmt)
    data = buffer.getvalue()
    with mock.patch("ideochar.media.PIXEL_STRIP_BYTES", strip_bytes):
        verdict = is_grayscale(ImageInput.of(data))
    assert verdict == _naive_grayscale(Image.open(io.BytesIO(data)))


def _naive_grayscale(image: Image.Image) -> bool:
    pixels = image.convert("RGB").tobytes()
    return all(pixels[i] == pixels[i + 1] == pixels[i + 2] for i in range(0, len(pixels), 3))


def _png_bytes(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **save)
    return buffer.getvalue()


def test_a_palette_with_colours_it_never_uses_is_grey() -> None:
    image = Image.new("P", (20, 10), 1)
    image.putpalette([255, 0, 0] + [128, 128, 128] * 255)
    assert is_grayscale(ImageInput.of(_png_bytes(image)))
    image.putpixel((19, 9), 0)
    assert not is_grayscale(ImageInput.of(_png_bytes(image)))


#: Adam7's passes: (first column, first row, column step, row step).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _unusual_png(form: str, width: int, height: int, pixel: Callable[[int, int], bytes]) -> bytes:
    """A PNG in a form Pillow cannot write: 16-bit RGB, or 8-bit RGB interlaced (filter 0 rows)."""
    if form == "16-bit":
        rows = [bytes(b for x in range(width) for b in pixel(x, y) for _ in range(2)) for y in range(height)]
        body = b"".join(b"\x00" + row for row in rows)
        depth, interlace = 16, 0
    else:
        body = b""
        for x0, y0, dx, dy in ADAM7:
            columns = range(x0, width, dx)
            for y in range(y0, height, dy):
                if columns:
                    body += b"\x00" + b"".join(pixel(x, y) for x in columns)
        depth, interlace = 8, 1
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, interlace)
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(body)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


@pytest.mark.parametrize("form", ["16-bit", "interlaced"])
def test_a_png_not_read_in_strips_is_checked_within_the_budget_and_refused_above_it(form: str) -> None:
    def blue_corner(x: int, y: int) -> bytes:
        return b"\x00\x00\xff" if (x, y) == (29, 19) else b"\x80\x80\x80"

    coloured = ImageInput.of(_unusual_png(form, 30, 20, blue_corner))
    grey = ImageInput.of(_unusual_png(form, 30, 20, lambda x, y: bytes([x * 8] * 3)))
    assert Image.open(io.BytesIO(coloured.read())).getpixel((29, 19))[:3] == (0, 0, 255)  # a true PNG of its form
    assert not is_grayscale(coloured)
    assert is_grayscale(grey)
    with mock.patch("ideochar.media.MAX_MASK_DECODE_PIXELS", 599), pytest.raises(InvalidRequest) as caught:
        is_grayscale(coloured)
    assert "too many to check at once" in str(caught.value)


@pytest.mark.parametrize(("budget", "scale"), [(10_000, 1), (2_500, 2), (625, 4), (100, 8)])
def test_a_large_jpeg_mask_is_decoded_at_the_largest_scale_within_the_budget(budget: int, scale: int) -> None:
    image = Image.new("RGB", (96, 64), "white")
    image.paste((255, 0, 0), (40, 24, 64, 48))  # a red block larger than 1/8 of the image
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    red = ImageInput.of(buffer.getvalue())
    grey = io.BytesIO()
    image.convert("L").convert("RGB").save(grey, "JPEG", quality=95)
    with mock.patch("ideochar.media.MAX_MASK_DECODE_PIXELS", budget):
        widths = {strip.width for strip in pixel_strips(red)}
        assert widths == {96 // scale}
        assert not is_grayscale(red)
        assert is_grayscale(ImageInput.of(grey.getvalue()))


def test_a_url_or_a_cut_short_mask_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="fetch it"):
        is_grayscale(ImageInput.of("https://img.test/mask.png"))
    data = _png_bytes(Image.new("RGB", (64, 64), "red"))
    with pytest.raises(InvalidRequest):
        is_grayscale(ImageInput.of(data[: len(data) - 20]))


def test_png_image_data_that_ends_early_is_an_invalid_request() -> None:
    """Chunks intact (CRCs good) but the compressed rows stop short: caught by the strip reader."""
    rows = zlib.compress(b"\x00" + b"\xff\x00\x00" * 8)  # one row of eight
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    with pytest.raises(InvalidRequest, match="ends after 1 of its 8 rows"):
        is_grayscale(ImageInput.of(data))


# -- memory ---------------------------------------------------------------------------------------------


def _write_black_png(path: Path, width: int, height: int, *, speck: bool) -> None:
    """An all-black RGB PNG, written a row at a time (the test never holds its pixels either)."""
    deflate = zlib.compressobj(9)
    black = b"\x00" + bytes(3 * width)
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        pending = bytearray()
        for y in range(height):
            row = black if not (speck and y == height - 1) else black[:-3] + b"\xff\x00\x00"
            pending += deflate.compress(row)
            if len(pending) > 1 << 16:
                out.write(_chunk(b"IDAT", bytes(pending)))
                pending.clear()
        out.write(_chunk(b"IDAT", bytes(pending + deflate.flush())) + _chunk(b"IEND", b""))


_MEASURE = """
import json, resource, sys
from ideochar.media import ImageInput, is_grayscale
from PIL import Image, ImageChops  # imported before measuring: only the check itself counts
image = ImageInput.from_path(sys.argv[1])
image.check()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
verdict = is_grayscale(image)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"verdict": verdict, "pixels": image.dimensions, "peak_kib": after - before}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
@pytest.mark.parametrize("speck", [False, True], ids=["all-black", "red-pixel-in-the-last-row"])
def test_checking_a_50_megapixel_mask_stays_within_a_memory_bound(tmp_path: Path, speck: bool) -> None:
    path = tmp_path / "mask.png"
    _write_black_png(path, 10_000, 5_000, speck=speck)
    assert path.stat().st_size < 1_000_000  # small on disk, 150 MB of pixels
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["pixels"] == [10_000, 5_000]
    assert report["verdict"] is (not speck)
    assert report["peak_kib"] < MEMORY_BOUND_MIB * 1024, report

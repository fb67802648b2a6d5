"""The emulator's images: real pictures a person can check, never mistaken for a model's output.

Every image is a canvas of the requested size showing the character reference (scaled in, so its
pixels are visibly in the output), the prompt, a bar reading "EMULATED - not a model output" and a
band with the seed and a pattern of colours drawn from it. Edits and remixes show the input image
(the area an edit repaints hatched, with the reference placed in it). The same inputs and seed always
give the same bytes.

Why it is built the way it is: a concurrency benchmark renders a thousand images at once, usually with
one reference and one prompt and a different seed each. Everything but the seed band is therefore
rendered once per (vendor, reference, size, prompt, input image, mask) and kept, and the seed band is
the last rows of the picture:

* PNG is assembled by hand: the cached rows are kept as a finished deflate stream (flushed to a byte
  boundary), the band is compressed on its own, and the two are joined with their Adler-32 checksums
  combined (:func:`adler32_combine`). A new seed costs a few milliseconds instead of a full encode.
* JPEG (Segmind) is cheap to encode whole, so the cached canvas is copied and the band pasted in.

Rendering is CPU work: the emulator calls :func:`render` from a worker thread, never on its event loop.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import textwrap
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "LABEL",
    "Recipe",
    "RenderCache",
    "adler32_combine",
    "is_cheap",
    "prepare",
    "render",
    "render_cache",
    "render_recipe",
]

LABEL = "EMULATED - not a model output"
#: Rendered images kept whole, by total size; evicted ones are rendered again (same bytes) when asked for.
RENDER_CACHE_BYTES = 64 * 1024 * 1024
#: Canvases kept without their seed band (one per reference, size, prompt and input image).
BASE_CACHE_ENTRIES = 16
#: zlib levels: the shared rows are compressed once (worth a better ratio), the seed band per image.
BASE_ZLIB_LEVEL = 6
BAND_ZLIB_LEVEL = 1
JPEG_QUALITY = 90

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ADLER_BASE = 65521

Fmt = Literal["png", "jpeg"]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


# -- caches ---------------------------------------------------------------------------------------------


class _Lru(Generic[K, V]):
    """A thread-safe LRU map bounded by a weight (entries, or bytes)."""

    def __init__(self, limit: int, weigh: Callable[[V], int] = lambda _: 1) -> None:
        self._limit = limit
        self._weigh = weigh
        self._items: OrderedDict[K, V] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(value)
        if weight > self._limit:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._weight -= self._weigh(old)
            self._items[key] = value
            self._weight += weight
            while self._weight > self._limit and self._items:
                _, evicted = self._items.popitem(last=False)
                self._weight -= self._weigh(evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._weight = 0

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class _PngBase:
    deflate: bytes
    """Raw deflate of the shared rows (filter byte 0 each), ending on a full flush."""
    adler: int
    raw_length: int


@dataclass(frozen=True)
class _Base:
    width: int
    height: int
    band_height: int
    png: _PngBase | None
    image: Image.Image | None
    """The whole canvas (band area blank), for JPEG."""


class RenderCache:
    """Renders and the seedless canvases they are made from; one per emulator (cleared on reset)."""

    def __init__(self, render_bytes: int = RENDER_CACHE_BYTES, base_entries: int = BASE_CACHE_ENTRIES) -> None:
        self.images: _Lru[tuple[object, ...], bytes] = _Lru(render_bytes, len)
        self.bases: _Lru[tuple[object, ...], _Base] = _Lru(base_entries)
        self._building: dict[tuple[object, ...], threading.Lock] = {}
        self._lock = threading.Lock()

    def base(self, key: tuple[object, ...], build: Callable[[], _Base]) -> _Base:
        """The canvas for ``key``, built once even when many threads ask at the same time."""
        found = self.bases.get(key)
        if found is not None:
            return found
        with self._lock:
            lock = self._building.setdefault(key, threading.Lock())
        with lock:
            found = self.bases.get(key)
            if found is None:
                found = build()
                self.bases.put(key, found)
        with self._lock:
            self._building.pop(key, None)
        return found

    def clear(self) -> None:
        self.images.clear()
        self.bases.clear()


_DEFAULT_CACHE = RenderCache()


def render_cache() -> RenderCache:
    """The process-wide cache :func:`render` uses when none is given."""
    return _DEFAULT_CACHE


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.blake2b(data, digest_size=16).hexdigest()


# -- what to render ------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Recipe:
    """Everything an emulated image is made from; rendering it again gives the same bytes.

    Output files keep their recipe rather than their bytes. ``base`` alone is a remix input, ``base``
    with ``mask`` an edit; ``reference`` may be empty or unreadable (a URL the emulator could not
    fetch), and the canvas then says so where the character would be.
    """

    reference: bytes
    prompt: str
    width: int
    height: int
    seed: int
    fmt: Fmt = "png"
    base: bytes | None = None
    mask: bytes | None = None
    vendor: str = ""

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"cannot render a {self.width}x{self.height} image")

    @cached_property
    def base_key(self) -> tuple[object, ...]:
        """What the seedless canvas depends on (digests, not bytes: keys stay small)."""
        return (
            self.vendor, _digest(self.reference), self.width, self.height, self.prompt, _digest(self.base),
            _digest(self.mask), self.fmt,
        )  # fmt: skip

    @property
    def key(self) -> tuple[object, ...]:
        return (*self.base_key, self.seed)

    @property
    def content_type(self) -> str:
        return f"image/{self.fmt}"


def prepare(recipe: Recipe, cache: RenderCache | None = None) -> None:
    """Build the recipe's seedless canvas (the slow part, tens of milliseconds): worker-thread work."""
    cache = cache or _DEFAULT_CACHE
    cache.base(recipe.base_key, lambda: _build_base(recipe))


def is_cheap(recipe: Recipe, cache: RenderCache | None = None) -> bool:
    """True when rendering ``recipe`` now takes about a millisecond (its canvas or image is cached):
    cheap enough to do on the event loop, where a worker thread would only fight it for the GIL."""
    cache = cache or _DEFAULT_CACHE
    return cache.images.get(recipe.key) is not None or cache.bases.get(recipe.base_key) is not None


def render_recipe(recipe: Recipe, cache: RenderCache | None = None) -> bytes:
    """The recipe's image bytes (PNG or JPEG)."""
    cache = cache or _DEFAULT_CACHE
    key = recipe.key
    found = cache.images.get(key)
    if found is not None:
        return found
    canvas = cache.base(recipe.base_key, lambda: _build_base(recipe))
    band = _band(recipe.width, canvas.band_height, recipe.seed)
    data = _png_with_band(canvas, band) if recipe.fmt == "png" else _jpeg_with_band(canvas, band)
    cache.images.put(key, data)
    return data


def render(
    reference: bytes,
    prompt: str,
    *,
    width: int,
    height: int,
    seed: int,
    fmt: Fmt = "png",
    base: bytes | None = None,
    mask: bytes | None = None,
    vendor: str = "",
    cache: RenderCache | None = None,
) -> bytes:
    """An emulated output image (PNG or JPEG bytes) of exactly ``width`` x ``height`` (see :class:`Recipe`)."""
    recipe = Recipe(reference, prompt, width, height, seed, fmt, base, mask, vendor)
    return render_recipe(recipe, cache)


# -- composition -----------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _band_height(height: int) -> int:
    return max(1, min(96, max(18, height // 12), height // 4))


def _colour(rng: random.Random, low: int = 40, high: int = 215) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _open(data: bytes | None) -> Image.Image | None:
    if not data:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            opened: Image.Image = image.convert("RGB") if image.mode != "RGB" else image.copy()
            return opened
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _fit(image: Image.Image, box_w: int, box_h: int) -> Image.Image:
    from PIL import Image

    scale = min(box_w / image.width, box_h / image.height)
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR) if size != image.size else image


def _build_base(recipe: Recipe) -> _Base:
    from PIL import Image, ImageDraw

    reference, prompt, width, height = recipe.reference, recipe.prompt, recipe.width, recipe.height
    fmt, base, mask, vendor = recipe.fmt, recipe.base, recipe.mask, recipe.vendor

    band_h = _band_height(height)
    top_h = height - band_h
    rng = random.Random(hashlib.sha256(prompt.encode("utf-8")).digest())
    back, stripe = _colour(rng, 30, 90), _colour(rng, 60, 140)
    canvas = Image.new("RGB", (width, height), back)
    draw = ImageDraw.Draw(canvas)
    step = max(8, min(width, height) // 16)
    for x in range(-height, width, step * 2):
        draw.polygon([(x, 0), (x + step, 0), (x + step + height, height), (x + height, height)], fill=stripe)

    label_h = max(1, min(top_h // 6, max(12, height // 20)))
    unit = max(6, min(width, height) // 40)
    content = (0, label_h, width, top_h)
    ref_image = _open(reference)
    base_image = _open(base)
    if base_image is not None:
        _draw_input(canvas, draw, base_image, _open(mask), ref_image, content, unit)
    else:
        _draw_generate(canvas, draw, ref_image, prompt, content, unit)
    if base_image is not None:
        _caption(draw, prompt, content, unit)

    draw.rectangle((0, 0, width, label_h), fill=(170, 20, 40))
    title = f"{LABEL} | ideochar emulator{f' ({vendor})' if vendor else ''}"
    _text_line(draw, title, (unit // 2, 0, width - unit // 2, label_h), (255, 255, 255))

    if fmt == "png":
        top = canvas.crop((0, 0, width, top_h)) if band_h else canvas
        return _Base(width, height, band_h, _deflate_rows(top), None)
    return _Base(width, height, band_h, None, canvas)


def _draw_generate(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    ref_image: Image.Image | None,
    prompt: str,
    content: tuple[int, int, int, int],
    unit: int,
) -> None:
    left, top, right, bottom = content
    w, h = right - left, bottom - top
    pad = unit
    if w >= h:  # landscape: reference left, prompt right
        ref_box = (left + pad, top + pad, left + w * 11 // 20, bottom - pad)
        text_box = (ref_box[2] + pad, top + pad, right - pad, bottom - pad)
    else:  # portrait: reference above, prompt below
        ref_box = (left + pad, top + pad, right - pad, top + h * 3 // 5)
        text_box = (left + pad, ref_box[3] + pad, right - pad, bottom - pad)
    _place_reference(canvas, draw, ref_image, ref_box, unit)
    _paragraph(draw, prompt, text_box, unit, shade=True)


def _draw_input(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    base_image: Image.Image,
    mask_image: Image.Image | None,
    ref_image: Image.Image | None,
    content: tuple[int, int, int, int],
    unit: int,
) -> None:
    """An edit (input image, repaint area hatched, the reference inside it) or a remix (input, reference inset)."""
    from PIL import Image

    left, top, right, bottom = content
    shown = _fit(base_image, right - left, bottom - top)
    x0 = left + (right - left - shown.width) // 2
    y0 = top + (bottom - top - shown.height) // 2
    canvas.paste(shown, (x0, y0))
    if mask_image is None:
        inset = (right - (right - left) // 3, top + unit, right - unit, top + (bottom - top) // 3)
        _place_reference(canvas, draw, ref_image, inset, unit)
        return
    area = mask_image.convert("L").resize(shown.size, Image.Resampling.NEAREST).point(lambda v: 255 if v < 128 else 0)
    hatch = Image.new("RGB", shown.size, (230, 0, 200))
    hatch_draw = _draw_for(hatch)
    for x in range(-shown.height, shown.width, unit * 2):
        hatch_draw.line([(x, 0), (x + shown.height, shown.height)], fill=(255, 255, 255), width=max(1, unit // 3))
    region = canvas.crop((x0, y0, x0 + shown.width, y0 + shown.height))
    canvas.paste(Image.blend(region, hatch, 0.45), (x0, y0), area)
    bbox = area.getbbox()
    if bbox is not None:
        box = (x0 + bbox[0], y0 + bbox[1], x0 + bbox[2], y0 + bbox[3])
        draw.rectangle(box, outline=(255, 255, 0), width=max(1, unit // 4))
        inner = (box[0] + unit // 2, box[1] + unit // 2, box[2] - unit // 2, box[3] - unit // 2)
        if inner[2] - inner[0] > 4 and inner[3] - inner[1] > 4:
            _place_reference(canvas, draw, ref_image, inner, unit)


def _draw_for(image: Image.Image) -> ImageDraw.ImageDraw:
    from PIL import ImageDraw

    return ImageDraw.Draw(image)


def _place_reference(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    ref_image: Image.Image | None,
    box: tuple[int, int, int, int],
    unit: int,
) -> None:
    left, top, right, bottom = box
    if right - left < 2 or bottom - top < 2:
        return
    if ref_image is None:
        draw.rectangle(box, fill=(90, 90, 90), outline=(255, 255, 255))
        _paragraph(draw, "reference not available to the emulator", box, unit, shade=False)
        return
    border = max(1, unit // 4)
    shown = _fit(ref_image, right - left - 2 * border, bottom - top - 2 * border)
    x = left + (right - left - shown.width) // 2
    y = top + (bottom - top - shown.height) // 2
    draw.rectangle(
        (x - border, y - border, x + shown.width + border - 1, y + shown.height + border - 1), fill=(255, 255, 255)
    )
    canvas.paste(shown, (x, y))


def _wrap(
    draw: ImageDraw.ImageDraw, text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont
) -> list[str]:
    average = max(1.0, draw.textlength("abcdefghijklmnopqrstuvwxyz ", font=font) / 27)
    return textwrap.wrap(text, width=max(1, int(width / average))) or [""]


def _paragraph(draw: ImageDraw.ImageDraw, text: str, box: tuple[int, int, int, int], unit: int, *, shade: bool) -> None:
    left, top, right, bottom = box
    if right - left < 8 or bottom - top < 8:
        return
    size = max(8, min(unit * 2, (bottom - top) // 3))
    font = _font(size)
    lines = _wrap(draw, text, right - left - size, font)
    line_h = int(size * 1.25)
    fit = max(1, (bottom - top - size // 2) // line_h)
    if len(lines) > fit:
        lines = [*lines[: fit - 1], lines[fit - 1][: max(1, len(lines[fit - 1]) - 3)] + "..."]
    height = len(lines) * line_h + size // 2
    if shade:
        draw.rectangle((left, top, right, min(bottom, top + height)), fill=(20, 20, 28))
    for index, line in enumerate(lines):
        draw.text((left + size // 2, top + size // 4 + index * line_h), line, font=font, fill=(245, 245, 245))


def _caption(draw: ImageDraw.ImageDraw, prompt: str, content: tuple[int, int, int, int], unit: int) -> None:
    left, top, right, bottom = content
    height = max(unit * 3, (bottom - top) // 6)
    _paragraph(draw, prompt, (left, bottom - height, right, bottom), unit, shade=True)


def _text_line(
    draw: ImageDraw.ImageDraw, text: str, box: tuple[int, int, int, int], fill: tuple[int, int, int]
) -> None:
    left, top, right, bottom = box
    size = max(6, (bottom - top) * 3 // 4)
    font = _font(size)
    while size > 6 and draw.textlength(text, font=font) > right - left:
        size -= 1
        font = _font(size)
    draw.text((left, top + (bottom - top - size) // 2), text, font=font, fill=fill)


def _band(width: int, height: int, seed: int) -> Image.Image:
    """The seed's band: tiles in colours drawn from the seed, and the seed written out."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    band = Image.new("RGB", (width, height), _colour(rng, 10, 60))
    draw = ImageDraw.Draw(band)
    tiles = 16
    for index in range(tiles):
        x0, x1 = width * index // tiles, width * (index + 1) // tiles
        inset = max(0, height // 8)
        draw.rectangle(
            (x0 + inset // 2, inset, max(x0 + inset // 2, x1 - inset // 2 - 1), height - inset - 1), fill=_colour(rng)
        )
    text = f"seed {seed}"
    size = max(6, height * 3 // 5)
    font = _font(size)
    text_w = int(draw.textlength(text, font=font))
    draw.rectangle((0, 0, min(width, text_w + size), height), fill=(0, 0, 0))
    draw.text((size // 2, (height - size) // 2), text, font=font, fill=(255, 255, 255))
    return band


# -- encoding --------------------------------------------------------------------------------------------


def adler32_combine(adler1: int, adler2: int, length2: int) -> int:
    """The Adler-32 of ``a + b`` from ``adler32(a)``, ``adler32(b)`` and ``len(b)`` (zlib's adler32_combine)."""
    remainder = length2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (remainder * sum1) % _ADLER_BASE
    sum1 += (adler2 & 0xFFFF) + _ADLER_BASE - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _ADLER_BASE - remainder
    if sum1 >= _ADLER_BASE:
        sum1 -= _ADLER_BASE
    if sum1 >= _ADLER_BASE:
        sum1 -= _ADLER_BASE
    if sum2 >= _ADLER_BASE << 1:
        sum2 -= _ADLER_BASE << 1
    if sum2 >= _ADLER_BASE:
        sum2 -= _ADLER_BASE
    return sum1 | (sum2 << 16)


def _scanlines(image: Image.Image) -> bytes:
    """PNG scanlines with filter type 0 (none): the pixel rows, each prefixed by a zero byte."""
    raw = memoryview(image.tobytes())
    stride = image.width * 3
    zero = b"\x00"
    parts: list[bytes | memoryview] = []
    for offset in range(0, len(raw), stride):
        parts.append(zero)
        parts.append(raw[offset : offset + stride])
    return b"".join(parts)


def _deflate_rows(image: Image.Image) -> _PngBase:
    rows = _scanlines(image)
    compressor = zlib.compressobj(BASE_ZLIB_LEVEL, zlib.DEFLATED, -15)
    deflate = compressor.compress(rows) + compressor.flush(zlib.Z_FULL_FLUSH)
    return _PngBase(deflate, zlib.adler32(rows), len(rows))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with_band(canvas: _Base, band: Image.Image) -> bytes:
    assert canvas.png is not None
    rows = _scanlines(band)
    compressor = zlib.compressobj(BAND_ZLIB_LEVEL, zlib.DEFLATED, -15)
    tail = compressor.compress(rows) + compressor.flush(zlib.Z_FINISH)
    adler = adler32_combine(canvas.png.adler, zlib.adler32(rows), len(rows))
    stream = b"\x78\x01" + canvas.png.deflate + tail + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def _jpeg_with_band(canvas: _Base, band: Image.Image) -> bytes:
    assert canvas.image is not None
    image = canvas.image.copy()
    image.paste(band, (0, canvas.height - canvas.band_height))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()

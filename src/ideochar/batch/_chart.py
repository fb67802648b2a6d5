"""The batch's chart: cost by vendor, and each vendor's latency distribution, as one PNG.

Drawn with Pillow, which ideochar needs anyway: the chart costs no extra to install and is always
written, where matplotlib (only in the ``bench`` extra) would make it optional. Left: a bar per vendor,
its cost and rows. Right: per vendor, seconds per row as a box from the 25th to the 75th percentile,
the median across it and whiskers from the 10th to the 90th (from the batch's fixed-size histograms).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ideochar.batch._stats import BatchSummary

__all__ = ["draw_summary"]

_WIDTH, _ROW, _TOP, _BOTTOM = 960, 44, 56, 40
_PANEL = 470
_COLOURS = [(66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188), (0, 172, 193)]
_INK, _GRID, _BACK = (40, 40, 40), (220, 220, 220), (255, 255, 255)


def draw_summary(summary: BatchSummary, path: Path) -> Path | None:
    """Write the chart to ``path``; None when no vendor served anything (nothing to draw)."""
    from PIL import Image, ImageDraw, ImageFont

    vendors = [v for v in summary.vendors if v.rows or v.failed]
    if not vendors:
        return None
    height = _TOP + _ROW * len(vendors) + _BOTTOM
    image = Image.new("RGB", (_WIDTH, height), _BACK)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    emulated = " (emulated: nothing was charged)" if summary.emulated else ""
    title = f"batch: {summary.rows:,} rows, {summary.spent_usd} USD this run{emulated}"
    draw.text((12, 8), title, fill=_INK, font=font)
    _costs(draw, font, vendors, summary)
    _latencies(draw, font, vendors)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG")
    return path


def _costs(draw: Any, font: Any, vendors: list[Any], summary: BatchSummary) -> None:
    left, width = 110, _PANEL - 220
    draw.text((12, 32), "cost by vendor (USD)", fill=_INK, font=font)
    most = max((float(v.cost_usd) for v in vendors), default=0.0) or 1.0
    for i, vendor in enumerate(vendors):
        y = _TOP + i * _ROW
        draw.text((12, y + 12), vendor.provider, fill=_INK, font=font)
        length = int(width * float(vendor.cost_usd) / most)
        draw.rectangle((left, y + 8, left + max(length, 1), y + 30), fill=_COLOURS[i % len(_COLOURS)])
        label = f"${vendor.cost_usd:,.2f}  {vendor.rows:,} rows"
        if vendor.failed:
            label += f", {vendor.failed:,} failed"
        draw.text((left + length + 6, y + 12), label, fill=_INK, font=font)


def _latencies(draw: Any, font: Any, vendors: list[Any]) -> None:
    left, right = _PANEL + 110, _WIDTH - 30
    draw.text((_PANEL + 12, 32), "seconds per row: p10, p25, median, p75, p90", fill=_INK, font=font)
    top = max((v.latency.percentile(90) or 0.0 for v in vendors), default=0.0) * 1.1 or 1.0
    bottom_y = _TOP + _ROW * len(vendors)

    def x(seconds: float) -> int:
        return left + int((right - left) * seconds / top)

    for tick in range(5):
        value = top * tick / 4
        draw.line((x(value), _TOP - 4, x(value), bottom_y), fill=_GRID)
        draw.text((x(value) - 10, bottom_y + 6), f"{value:.2g}", fill=_INK, font=font)
    for i, vendor in enumerate(vendors):
        y = _TOP + i * _ROW + 19
        draw.text((_PANEL + 12, y - 7), vendor.provider, fill=_INK, font=font)
        marks = [vendor.latency.percentile(q) for q in (10, 25, 50, 75, 90)]
        if any(m is None for m in marks):
            draw.text((left, y - 7), "no row served", fill=_INK, font=font)
            continue
        p10, p25, p50, p75, p90 = (float(m) for m in marks if m is not None)
        colour = _COLOURS[i % len(_COLOURS)]
        draw.line((x(p10), y, x(p90), y), fill=_INK, width=1)
        draw.line((x(p10), y - 6, x(p10), y + 6), fill=_INK)
        draw.line((x(p90), y - 6, x(p90), y + 6), fill=_INK)
        draw.rectangle((x(p25), y - 10, max(x(p75), x(p25) + 1), y + 10), fill=colour, outline=_INK)
        draw.line((x(p50), y - 12, x(p50), y + 12), fill=_INK, width=2)

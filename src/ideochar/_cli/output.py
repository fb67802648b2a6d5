"""What a finished job leaves behind: image files, a JSON sidecar, and a summary for a person.

File names are ours, never a vendor's: ``ideochar-<UTC time>-<job id>-<n>.<ext>`` and ``...json`` beside
them, created exclusively (an existing file is never overwritten; a counter is added instead). The
extension comes from the sniffed bytes, not from a vendor's content type or URL. The sidecar is the
result without image bytes: provider, vendor id, cost, warnings, failures, attempts, and each image's
path and SHA-256, so a later reader can check the files and knows what was paid and where.

``--out`` is checked before anything is sent (a folder, writable), so a paid image never meets a folder
that cannot take it; ``--open`` shows the saved images with the platform's viewer where there is one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from ideochar._secrets import redact_any
from ideochar.media import sniff_format
from ideochar.request import CharacterRequest
from ideochar.result import CharacterResult, GeneratedImage

__all__ = [
    "SavedResult",
    "check_out_dir",
    "money",
    "open_images",
    "result_document",
    "save_result",
    "summary_lines",
]

_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
#: Suffixes that make ``--out`` look like an image's file name rather than a folder.
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
_UNSAFE = re.compile(r"[^a-z0-9]+")


def money(value: Decimal | None) -> str:
    """``$0.06``; sub-cent prices keep their digits (``$0.035``); unknown is ``?``."""
    if value is None:
        return "?"
    exponent = value.normalize().as_tuple().exponent
    digits = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"${value:.{digits}f}"


@dataclass(frozen=True)
class SavedResult:
    result: CharacterResult
    images: list[Path]
    sidecar: Path
    document: dict[str, Any]


def _stem(result: CharacterResult, now: datetime) -> str:
    job = _UNSAFE.sub("", (result.job_id or "").lower())[:8] or "job"
    return f"ideochar-{now:%Y%m%d-%H%M%S}-{job}"


def _extension(image: GeneratedImage) -> str:
    found = sniff_format(image.data[:16])
    return _EXTENSIONS[found] if found else "bin"


def _write_new(path: Path, data: bytes) -> Path:
    """Create ``path`` (or ``name-2.ext``, ``name-3.ext``...) without ever replacing an existing file."""
    candidate, n = path, 1
    while True:
        try:
            with candidate.open("xb") as handle:
                handle.write(data)
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.stem}~{n}{path.suffix}")


def result_document(
    result: CharacterResult, images: Sequence[Path] = (), request: CharacterRequest | None = None
) -> dict[str, Any]:
    """The result as JSON-safe data without image bytes (what ``--json`` prints and the sidecar holds)."""
    doc = result.model_dump(mode="json", exclude={"images"})
    doc["cost_usd"] = None if result.cost_usd is None else str(result.cost_usd)
    for attempt, original in zip(doc.get("attempts", []), result.attempts, strict=True):
        attempt["cost_usd"] = None if original.cost_usd is None else str(original.cost_usd)
    entries = []
    for i, image in enumerate(result.images):
        entry: dict[str, Any] = {
            "path": str(images[i]) if i < len(images) else None,
            "sha256": image.sha256 or hashlib.sha256(image.data).hexdigest(),
            "bytes": len(image.data),
            "content_type": image.content_type,
            "width": image.width,
            "height": image.height,
            "seed": image.seed,
            "prompt": image.prompt,
        }
        entries.append(entry)
    doc["images"] = entries
    if request is not None:
        doc["request"] = request.model_dump(mode="json", exclude_none=True)
    first = ("job_id", "provider", "vendor_request_id", "cost_usd", "cost_source")
    ordered: dict[str, Any] = {k: doc[k] for k in first if k in doc}
    ordered.update((k, v) for k, v in doc.items() if k not in ordered)
    return redact_any(json.loads(json.dumps(ordered, default=str)))  # type: ignore[no-any-return]


def check_out_dir(out_dir: Path) -> Path:
    """``--out`` as a folder that exists and takes files, checked before anything is sent.

    An image's extension follows its bytes (a vendor may answer JPEG where another answers PNG), so
    ``--out knight.png`` is refused rather than made a folder named like a file.
    """
    if out_dir.suffix.lower() in _IMAGE_SUFFIXES and not out_dir.is_dir():
        raise click.BadParameter(
            f"{str(out_dir)!r} looks like an image file name, but --out is the folder the images go in (each "
            "named for you, with the extension its bytes call for: a vendor may answer JPEG). Give a folder, "
            "e.g. --out out/",
            param_hint="'--out'",
        )
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder is made when the images are saved, not before
    problem = None
    if not existing.is_dir():
        problem = f"{str(existing)!r} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{str(existing)!r} is not writable"
    if problem is not None:
        raise click.BadParameter(f"cannot save images in {str(out_dir)!r}: {problem}", param_hint="'--out'")
    return out_dir


def _has_display() -> bool:
    """Whether a viewer can be shown: always on macOS and Windows, elsewhere only under X11 or Wayland."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_images(paths: Sequence[Path]) -> list[str]:
    """Open each image with the platform's viewer (``--open``); the lines to show about it, if any."""
    if not paths:
        return []
    if not _has_display():
        return [f"--open: no display here; the images are in {paths[0].parent}"]
    failed = [path for path in paths if click.launch(str(path)) != 0]
    return [f"--open: could not open {path} (no viewer found)" for path in failed]


def save_result(
    result: CharacterResult, out_dir: Path, request: CharacterRequest | None = None, *, now: datetime | None = None
) -> SavedResult:
    """Write every image and the sidecar into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _stem(result, now or datetime.now(timezone.utc))
    paths = [
        _write_new(out_dir / f"{stem}-{i}.{_extension(image)}", image.data)
        for i, image in enumerate(result.images, start=1)
    ]
    document = result_document(result, paths, request)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    sidecar = _write_new(out_dir / f"{stem}.json", text.encode("utf-8"))
    document["sidecar"] = str(sidecar)
    return SavedResult(result, paths, sidecar, document)


def _cost(result: CharacterResult, *, emulated: bool, note: str | None) -> str:
    if emulated:
        return f"emulated: nothing charged ({result.provider} would charge {money(result.cost_usd)})"
    source = {"vendor": "reported by the vendor", "price_table": "from the price table"}.get(result.cost_source, "")
    details = [d for d in (source, note) if d]
    return money(result.cost_usd) + (f" ({'; '.join(details)})" if details else "")


def _failed_attempts(result: CharacterResult) -> list[str]:
    """One line per provider and outcome that failed on the way, however many tries and calls it took."""
    counts = Counter((a.provider, a.error_type or "failed", a.billed) for a in result.attempts if a.outcome == "failed")
    lines = []
    for (provider, error, billed), count in counts.items():
        times = f", {count} times" if count > 1 else ""
        lines.append(f"tried {provider} first{times}: {error} (billed: {billed})")
    return lines


def summary_lines(saved: SavedResult, *, emulated: bool = False, cost_note: str | None = None) -> list[str]:
    """A short human summary: where the files are, who served it, what it cost, what to know.

    ``emulated``: the emulator served it (nothing was charged); ``cost_note``: what to add to the cost
    (a resumed job's cost was charged when it first ran).
    """
    result = saved.result
    lines = []
    for path, image in zip(saved.images, result.images, strict=True):
        size = f"{image.width}x{image.height}" if image.width and image.height else "size unknown"
        lines.append(f"saved {path}  ({size})")
    lines.append(f"sidecar {saved.sidecar}")
    vendor_id = f", vendor id {result.vendor_request_id}" if result.vendor_request_id else ""
    cost = _cost(result, emulated=emulated, note=cost_note)
    lines.append(f"provider {result.provider}{vendor_id}, {cost if emulated else 'cost ' + cost}")
    lines += _failed_attempts(result)
    for warning in result.warnings:
        lines.append(f"warning: {warning}")
    for failure in result.failures:
        which = f"image {failure.index + 1}" if failure.index is not None else "an image"
        lines.append(f"missing: {which}: {failure.reason} (billed: {failure.billed})")
    return lines

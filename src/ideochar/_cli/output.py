"""What a finished job leaves behind: image files, a JSON sidecar, and a summary for a person.

File names are ours, never a vendor's: ``ideochar-<UTC time>-<job id>-<n>.<ext>`` and ``...json`` beside
them, created exclusively (an existing file is never overwritten; a counter is added instead). The
extension comes from the sniffed bytes, not from a vendor's content type or URL. The sidecar is the
result without image bytes: provider, vendor id, cost, warnings, failures, attempts, and each image's
path and SHA-256, so a later reader can check the files and knows what was paid and where.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from ideochar._secrets import redact_any
from ideochar.media import sniff_format
from ideochar.request import CharacterRequest
from ideochar.result import CharacterResult, GeneratedImage

__all__ = ["SavedResult", "money", "result_document", "save_result", "summary_lines"]

_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
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


def summary_lines(saved: SavedResult) -> list[str]:
    """A short human summary: where the files are, who served it, what it cost, what to know."""
    result = saved.result
    lines = []
    for path, image in zip(saved.images, result.images, strict=True):
        size = f"{image.width}x{image.height}" if image.width and image.height else "size unknown"
        lines.append(f"saved {path}  ({size})")
    lines.append(f"sidecar {saved.sidecar}")
    source = {"vendor": "reported by the vendor", "price_table": "from the price table"}.get(result.cost_source, "")
    cost = money(result.cost_usd) + (f" ({source})" if source else "")
    vendor_id = f", vendor id {result.vendor_request_id}" if result.vendor_request_id else ""
    lines.append(f"provider {result.provider}{vendor_id}, cost {cost}")
    failed = [a for a in result.attempts if a.outcome == "failed"]
    for attempt in failed:
        lines.append(f"tried {attempt.provider} first: {attempt.error_type or 'failed'} (billed: {attempt.billed})")
    for warning in result.warnings:
        lines.append(f"warning: {warning}")
    for failure in result.failures:
        which = f"image {failure.index + 1}" if failure.index is not None else "an image"
        lines.append(f"missing: {which}: {failure.reason} (billed: {failure.billed})")
    return lines

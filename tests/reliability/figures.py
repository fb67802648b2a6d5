"""Where the reliability tests leave their figures for docs/reliability.md.

When ``IDEOCHAR_RELIABILITY_RESULTS`` names a folder (``make reliability`` sets it), each figure is
written there as ``<name>.json``; ``python -m reliability.report`` turns the folder into the report.
Without it nothing is written, so ``make test`` leaves no files behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "IDEOCHAR_RELIABILITY_RESULTS"


def folder() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def record(name: str, data: Any) -> None:
    """Write (or replace) figure ``name``; merged by key when both the old and new are dicts."""
    where = folder()
    if where is None:
        return
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.json"
    if path.exists() and isinstance(data, dict):
        old = json.loads(path.read_text())
        if isinstance(old, dict):
            data = {**old, **data}
    path.write_text(json.dumps(data, indent=2, default=str, sort_keys=True) + "\n")

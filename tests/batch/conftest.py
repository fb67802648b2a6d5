"""What the batch tests share: the emulator on a loopback socket (one per module, reset per test), a
reference image, and clients pointed at the emulator with a journal of the test's own.

The emulator's ledger is the truth about money: "charged once" is asserted against it, per row, by the
prompt each admitted job carried.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from conftest import make_image

testing = pytest.importorskip("ideochar.emulator.testing")

#: Each vendor's price per image at the default speed (the emulators charge what the vendors list).
PRICE = {"fal": "0.15", "segmind": "0.1875", "replicate": "0.15", "ideogram": "0.15"}


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with testing.running_emulator(model_seconds=0.2) as running:
        yield running


@pytest.fixture
def emulator(server: Any) -> Any:
    testing.reset(server)
    testing.state_of(server).set_model_seconds(0.2)
    return server


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "face.png"
    path.write_bytes(make_image(64, 64, "PNG", "orange"))
    return path


def rows_file(folder: Path, rows: Sequence[Mapping[str, Any]], name: str = "rows.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def charges_by_prompt(server: Any, vendors: Sequence[str] | None = None) -> Counter[str]:
    """How many billed admissions each prompt has at the emulator (a prompt is a row in these tests)."""
    counts: Counter[str] = Counter()
    for entry in testing.ledger(server):
        if entry.billed and (vendors is None or entry.vendor in vendors):
            inputs = dict(entry.detail.get("inputs") or {})
            counts[str(inputs.get("prompt"))] += 1
    return counts


def client_limits(**in_flight: int) -> dict[str, dict[str, int]]:
    """Per-provider images in flight (and a rate far above what a test sends)."""
    return {name: {"max_images_in_flight": n, "requests_per_minute": 100_000} for name, n in in_flight.items()}

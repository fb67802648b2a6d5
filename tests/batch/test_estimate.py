"""The dry run's estimate: the batch's own placement rule replayed on a clock, so its duration is the
bound the limits allow, spilling shows, and the cap leaves rows unsent in the estimate as in the run."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from ideochar import Client
from ideochar.batch import RowSource, plan


@pytest.fixture
def rows(tmp_path: Path, reference: Path) -> RowSource:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"scene {i}", "reference": "face.png"}) + "\n" for i in range(100)))
    return RowSource(path)


def _client(**limits: int) -> Client:
    """Images in flight per provider; Segmind's declared 5 requests a minute (a free plan) lifted."""
    configured = {name: {"max_images_in_flight": n, "requests_per_minute": 100_000} for name, n in limits.items()}
    return Client(["fal", "segmind"], config=False, journal=False, limits=configured)


SECONDS = {"fal": (2.0, "seen"), "segmind": (2.0, "seen")}


def test_the_duration_is_the_bound_the_limits_allow(rows: RowSource) -> None:
    with _client(fal=10, segmind=10) as client:
        planned = plan(client, rows, seconds=SECONDS)
    estimate = planned.chosen
    assert estimate is not None and planned.valid == 100
    # 100 rows over 20 slots of 2 s each: 5 rounds.
    assert estimate.seconds == pytest.approx(10.0)
    assert estimate.rows_by_vendor == {"fal": 50, "segmind": 50}


def test_without_spill_every_row_waits_for_its_first_choice(rows: RowSource) -> None:
    with _client(fal=10, segmind=10) as client:
        planned = plan(client, rows, spill=False, seconds=SECONDS)
    estimate = planned.chosen
    assert estimate is not None
    assert estimate.rows_by_vendor == {"fal": 100}
    assert estimate.seconds == pytest.approx(20.0)


def test_the_cap_leaves_rows_unsent_and_prices_are_per_vendor(rows: RowSource) -> None:
    with _client(fal=10, segmind=10) as client:
        planned = plan(client, rows, cap=Decimal("3.00"), seconds=SECONDS)
    by_vendor = {v.provider: v for v in planned.vendors}
    assert by_vendor["fal"].total_usd == Decimal("15.00") and by_vendor["segmind"].total_usd == Decimal("18.7500")
    cheapest = next(e for e in planned.estimates if e.strategy == "cheapest")
    assert cheapest.cost_usd is not None and cheapest.cost_usd <= Decimal("3.00")
    assert cheapest.over_cap == 100 - sum(cheapest.rows_by_vendor.values())
    assert cheapest.over_cap > 0


def test_a_rate_limit_spaces_the_starts(rows: RowSource) -> None:
    with Client(
        ["segmind"],
        config=False,
        journal=False,
        limits={"segmind": {"requests_per_minute": 50, "max_images_in_flight": 100}},
    ) as client:
        planned = plan(client, rows, seconds={"segmind": (2.0, "seen")})
    estimate = planned.chosen
    assert estimate is not None
    # 50 starts in the first minute, 50 more when the window opens again at 60 s, each 2 s long.
    assert estimate.seconds == pytest.approx(62.0)

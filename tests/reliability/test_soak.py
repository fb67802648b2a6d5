"""Issue 7.6: the soak. 10,000 jobs (``make reliability``; 300 in ``make test``) through the router
against the emulator with about 5% of requests faulted. See soak.py for the accounting.
"""

from __future__ import annotations

from typing import Any

import pytest

from reliability import figures
from reliability.profile import RELIABILITY
from reliability.soak import run

pytest.importorskip("ideochar.emulator.testing")

JOBS = 10_000 if RELIABILITY else 300
#: RSS at the end over RSS after the warm-up (the first tenth of the jobs).
MAX_RSS_GROWTH = 1.10


@pytest.fixture(scope="module")
def soak() -> dict[str, Any]:
    summary = run(JOBS)
    figures.record("soak", summary)
    return summary


@pytest.mark.socket
def test_the_soak_raises_nothing_but_ideochar_errors(soak: dict[str, Any]) -> None:
    assert soak["unhandled"] == 0, soak["unhandled_examples"]
    assert soak["jobs"] == JOBS
    assert soak["succeeded"] >= 0.9 * JOBS, soak["outcomes"]


@pytest.mark.socket
def test_the_soak_loses_no_result(soak: dict[str, Any]) -> None:
    """No job was charged while being told it was not, and every success holds its image."""
    assert soak["lost"] == 0


@pytest.mark.socket
def test_the_soak_charges_no_job_twice_by_vendor_id(soak: dict[str, Any]) -> None:
    assert soak["charged_twice_confirmed"] == 0


@pytest.mark.socket
def test_the_soak_makes_no_more_charges_than_jobs(soak: dict[str, Any]) -> None:
    assert soak["charges_beyond_one_per_job"] == 0
    assert soak["failovers_after_a_possible_charge"] == {}


@pytest.mark.socket
def test_the_soak_keeps_memory_flat(soak: dict[str, Any]) -> None:
    if not RELIABILITY:
        pytest.skip("300 jobs are too few to judge memory; `make reliability` runs 10,000")
    assert soak["rss_growth"] <= MAX_RSS_GROWTH, f"{soak['rss_warm_mb']} MB -> {soak['rss_end_mb']} MB"

"""What a batch shows while it runs: the progress line's facts (done, failed, in flight, money against the
cap, rate per vendor), the same facts as JSON, and the summary a person reads at the end."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from ideochar._cli.batch_progress import status_line, summary_lines
from ideochar.batch import BatchProgress


def _progress() -> BatchProgress:
    """Ten rows, a $2 cap: two done at fal, one failed at segmind, one in flight at each."""
    progress = BatchProgress(total=10, cap=Decimal("2.00"))
    for provider in ("fal", "fal", "fal", "segmind", "segmind"):
        progress.started_on(provider)
    for _ in range(2):
        progress.ended_on("fal")
        progress.settled("done", provider="fal", images=1, cost=Decimal("0.15"), seconds=1.5)
    progress.ended_on("segmind")
    progress.settled("failed", provider="segmind", cost=Decimal(0), seconds=0.4)
    progress.committed = Decimal("0.6750")
    return progress


def test_the_progress_line_shows_rows_failures_jobs_in_flight_money_and_rates() -> None:
    line = status_line(_progress().snapshot(), bar=False, unicode=False)
    parts = line.split(", ")
    assert parts[:4] == ["3/10 rows", "1 failed", "2 in flight", "$0.675 of $2.00"], line
    assert parts[4] == "fal 2/min", "a vendor's rate counts the rows it finished in the last minute"
    assert parts[5].endswith(" left"), "the time left at the rate so far"


def test_the_bar_fills_with_the_rows_settled() -> None:
    line = status_line(_progress().snapshot(), bar=True, unicode=False)
    assert line.startswith("[" + "#" * 7 + "-" * 17 + "] 3/10"), line


def test_the_json_progress_carries_the_same_facts() -> None:
    document = _progress().snapshot().to_json()
    assert {k: document[k] for k in ("total", "settled", "done", "failed", "in_flight")} == {
        "total": 10,
        "settled": 3,
        "done": 2,
        "failed": 1,
        "in_flight": 2,
    }
    assert (document["committed_usd"], document["cap_usd"], document["spent_usd"]) == ("0.6750", "2.00", "0.30")
    assert document["in_flight_by_vendor"] == {"fal": 1, "segmind": 1}
    assert document["rows_per_minute_by_vendor"] == {"fal": 2.0, "segmind": 0.0}


def test_the_summary_has_a_row_per_vendor_with_cost_and_latency(tmp_path: Path) -> None:
    summary = _progress().summary("storyboard", emulated=True, stopped=None)
    lines = list(summary_lines(summary, out=tmp_path, chart=tmp_path / "batch-summary.png"))
    assert lines[0].startswith("batch storyboard: 3 rows in ") and lines[0].endswith("2 done, 1 failed")
    table = "\n".join(lines)
    fal = next(line for line in table.splitlines() if line.startswith("fal "))
    assert fal.split()[:5] == ["fal", "2", "2", "0", "$0.30"], fal
    assert "p50" in table and "p90" in table
    assert "spent $0.30 in this run (emulated: nothing was charged); $0.675 committed over all runs" in table
    assert "the batch's cap is $2.00" in table

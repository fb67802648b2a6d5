"""What ``ideochar batch`` shows on stderr: a progress bar while it runs, a summary and a plan in words.

On a terminal one line is redrawn in place: a bar, rows done of all, failures, jobs in flight, the money
committed against the cap, the rate per vendor over the last minute, and the time left at that rate.
Elsewhere the same facts come as a plain line every few seconds; with ``--json`` as a JSON object a
second (:meth:`~ideochar.batch.Snapshot.to_json`, plus ``"event": "progress"``). Failures are printed as
permanent lines (the first few; the manifest has every one). stdout is never written here: it is the
manifest's.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ideochar._cli.output import money
from ideochar._cli.tables import render

if TYPE_CHECKING:
    from ideochar.batch import BatchPlan, BatchProgress, BatchSummary, RowResult, Snapshot

__all__ = ["BatchDisplay", "plan_lines", "summary_lines"]

_ERASE_LINE = "\r\x1b[2K"
_LIVE_SECONDS = 0.2
_PLAIN_SECONDS = 5.0
_JSON_SECONDS = 1.0
_BAR_WIDTH = 24
#: Failures printed as their own lines before the rest are left to the manifest.
_FAILURES_SHOWN = 20


def duration(seconds: float) -> str:
    """``42 s``, ``3m12s``, ``2h05m``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _count(value: int) -> str:
    return f"{value:,}"


class BatchDisplay:
    """Progress of one batch on ``stream`` (``live``, ``plain``, ``off``; ``auto``: live on a terminal)."""

    def __init__(self, stream: TextIO, mode: str, *, as_json: bool = False) -> None:
        if mode == "auto":
            mode = "live" if _is_tty(stream) else "plain"
        self.mode = "json" if as_json and mode != "off" else mode
        self.stream = stream
        self._progress: BatchProgress | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False
        self._failures = 0
        self._unicode = "utf" in (getattr(stream, "encoding", None) or "ascii").lower()

    def watch(self, progress: BatchProgress) -> None:
        self._progress = progress

    def __enter__(self) -> BatchDisplay:
        if self.mode != "off":
            every = {"live": _LIVE_SECONDS, "plain": _PLAIN_SECONDS, "json": _JSON_SECONDS}[self.mode]
            self._thread = threading.Thread(target=self._tick, args=(every,), name="ideochar-batch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            self._clear()
            if self.mode in ("plain", "json"):
                self._draw()  # the last figures

    def row(self, result: RowResult) -> None:
        """A permanent line for a failure (the first few); nothing for a success."""
        if self.mode in ("off", "json") or result.ok or result.earlier:
            return
        self._failures += 1
        if self._failures > _FAILURES_SHOWN:
            return
        text = f"row {result.row}: {result.status}"
        if result.error:
            text += f": {result.error}"
        if self._failures == _FAILURES_SHOWN:
            text += " (further failures are in the manifest only)"
        with self._lock:
            self._clear()
            self.stream.write(text + "\n")
            self.stream.flush()

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        if self._progress is None:
            return
        snap = self._progress.snapshot()
        if self.mode == "json":
            self.stream.write(json.dumps({"event": "progress", **snap.to_json()}) + "\n")
        elif self.mode == "plain":
            self.stream.write(status_line(snap, bar=False, unicode=self._unicode) + "\n")
        else:
            text = status_line(snap, bar=True, unicode=self._unicode)
            width = shutil.get_terminal_size((120, 24)).columns - 1
            self.stream.write(_ERASE_LINE + text[:width])
            self._shown = True
        self.stream.flush()

    def _clear(self) -> None:
        if self._shown:
            self.stream.write(_ERASE_LINE)
            self.stream.flush()
            self._shown = False


def status_line(snap: Snapshot, *, bar: bool, unicode: bool) -> str:
    """``[####----] 4,210/10,000 · 12 failed · 57 in flight · $631.50 of $2,000 · fal 240/min · 3m12s left``."""
    dot = " · " if unicode else ", "
    parts = []
    done = snap.settled
    if snap.total:
        if bar:
            filled = int(_BAR_WIDTH * min(1.0, done / snap.total))
            full, empty = ("█", "░") if unicode else ("#", "-")
            parts.append(f"[{full * filled}{empty * (_BAR_WIDTH - filled)}] {_count(done)}/{_count(snap.total)}")
        else:
            parts.append(f"{_count(done)}/{_count(snap.total)} rows")
    else:
        parts.append(f"{_count(done)} rows")
    parts.append(f"{_count(snap.failed)} failed")
    parts.append(f"{_count(snap.in_flight)} in flight")
    spend = money(snap.committed_usd)
    parts.append(f"{spend} of {money(snap.cap_usd)}" if snap.cap_usd is not None else f"{spend} committed")
    rates = [f"{name} {rate:.0f}/min" for name, rate in snap.rate_by_vendor.items() if rate]
    if rates:
        parts.append(" ".join(rates))
    total_rate = sum(snap.rate_by_vendor.values())
    if snap.total and total_rate > 0 and done < snap.total:
        parts.append(f"{duration((snap.total - done) * 60 / total_rate)} left")
    else:
        parts.append(duration(snap.elapsed_seconds))
    return dot.join(parts)


def summary_lines(summary: BatchSummary, *, out: Path, chart: Path | None) -> Iterator[str]:
    """The summary a person reads at the end (stderr)."""
    statuses = ", ".join(f"{count:,} {status}" for status, count in summary.statuses.items()) or "no rows"
    yield f"batch {summary.name}: {summary.rows:,} rows in {duration(summary.wall_seconds)}: {statuses}"
    if summary.vendors:
        headers = ("provider", "rows", "images", "failed", "cost", "p50", "p90", "rows/min")
        rows = [
            [
                v.provider,
                f"{v.rows:,}",
                f"{v.images:,}",
                f"{v.failed:,}",
                money(v.cost_usd),
                "-" if v.p50_seconds is None else f"{v.p50_seconds:.2f} s",
                "-" if v.p90_seconds is None else f"{v.p90_seconds:.2f} s",
                f"{v.rows * 60 / summary.wall_seconds:,.0f}" if summary.wall_seconds > 0 else "-",
            ]
            for v in summary.vendors
        ]
        yield ""
        yield render(headers, rows, right=(1, 2, 3, 4, 5, 6, 7))
        yield ""
    note = " (emulated: nothing was charged)" if summary.emulated else ""
    cap = f"; the batch's cap is {money(summary.cap_usd)}" if summary.cap_usd is not None else ""
    yield (
        f"spent {money(summary.spent_usd)} in this run{note}; {money(summary.committed_usd)} committed over all "
        f"runs{cap}"
    )
    if summary.stopped:
        yield f"stopped early: {summary.stopped}; run the same command again to go on"
    elif not summary.complete:
        yield "some rows are not done: run the same command again to retry what can be (nothing is sent twice)"
    yield f"manifest: {out / 'manifest.jsonl'}" + (f"; chart: {chart}" if chart else "")


def plan_lines(planned: BatchPlan) -> Iterator[str]:
    """What ``--dry-run`` prints: rows, prices per provider, and each strategy's cost and time."""
    yield f"{planned.rows:,} rows: {planned.valid:,} valid, {planned.invalid:,} invalid"
    yield ""
    vendor_headers = ("provider", "rows", "images", "total", "in flight", "per min", "time per job", "cannot serve")
    rows = [
        [
            v.provider,
            f"{v.rows:,}",
            f"{v.images:,}",
            money(v.total_usd),
            f"{v.in_flight:,}",
            "-" if v.requests_per_minute is None else f"{v.requests_per_minute:,}",
            f"{v.seconds:g} s ({v.seconds_source})",
            f"{v.refused:,}" + (f" ({v.reason})" if v.reason else ""),
        ]
        for v in planned.vendors
    ]
    yield render(vendor_headers, rows, right=(1, 2, 3, 4, 5))
    yield ""
    spill = "overflow to the next provider with room" if planned.spill else "each row waits for its first choice"
    yield f"by strategy ({spill}):"
    headers = ("strategy", "cost", "time", "rows per provider", "over the cap")
    rows = [
        [
            e.strategy + (" *" if e.strategy == planned.strategy else ""),
            money(e.cost_usd),
            duration(e.seconds),
            ", ".join(f"{k} {v:,}" for k, v in e.rows_by_vendor.items()) or "-",
            f"{e.over_cap:,}",
        ]
        for e in planned.estimates
    ]
    yield render(headers, rows, right=(1, 2, 4))
    cap = planned.cap_usd
    chosen = planned.chosen
    yield ""
    yield "* the strategy this batch runs with. Times assume each job takes the time shown per provider."
    if cap is not None and chosen is not None:
        fits = "fits within" if chosen.over_cap == 0 else f"leaves {chosen.over_cap:,} rows unsent under"
        yield f"the batch {fits} its cap of {money(cap)}"
    yield "Nothing was sent."


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

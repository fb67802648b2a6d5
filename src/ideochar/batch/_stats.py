"""What a batch has done so far, in memory that does not grow with the number of rows.

Counters by status, and per vendor: rows and images served, cost, the rate of the last minute (a window
of finish times, bounded by the rate, not the rows) and the latency distribution as a histogram with
logarithmic bins (percentiles within a few percent; its size is fixed). The progress display reads a
:meth:`BatchProgress.snapshot`; the summary at the end is built from the same numbers.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["BatchProgress", "BatchSummary", "LatencyHistogram", "Snapshot", "VendorSummary"]

#: The rate per vendor is counted over this window.
RATE_WINDOW_SECONDS = 60.0
_BINS_PER_DECADE = 40
_LOWEST_SECONDS = 0.01
_DECADES = 6  # 10 ms .. 10,000 s


class LatencyHistogram:
    """Seconds per row in fixed logarithmic bins (2.5 % wide): percentiles without keeping every value."""

    def __init__(self) -> None:
        self.counts = [0] * (_BINS_PER_DECADE * _DECADES + 2)
        self.total = 0
        self.smallest = math.inf
        self.largest = 0.0

    def add(self, seconds: float) -> None:
        self.counts[self._bin(seconds)] += 1
        self.total += 1
        self.smallest = min(self.smallest, seconds)
        self.largest = max(self.largest, seconds)

    @staticmethod
    def _bin(seconds: float) -> int:
        if seconds <= _LOWEST_SECONDS:
            return 0
        index = 1 + int(math.log10(seconds / _LOWEST_SECONDS) * _BINS_PER_DECADE)
        return min(index, _BINS_PER_DECADE * _DECADES + 1)

    @staticmethod
    def edge(index: int) -> float:
        """The upper edge of bin ``index`` in seconds."""
        return float(_LOWEST_SECONDS * 10 ** (index / _BINS_PER_DECADE))

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0..100), to within a bin, clamped to the values seen."""
        if not self.total:
            return None
        rank = max(1, math.ceil(self.total * q / 100))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(max(self.edge(index), self.smallest), self.largest)
        return self.largest

    def merged(self, other: LatencyHistogram) -> LatencyHistogram:
        both = LatencyHistogram()
        both.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        both.total = self.total + other.total
        both.smallest = min(self.smallest, other.smallest)
        both.largest = max(self.largest, other.largest)
        return both


@dataclass
class _Vendor:
    in_flight: int = 0
    rows: int = 0
    images: int = 0
    failed: int = 0
    cost: Decimal = field(default_factory=Decimal)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    finished_at: deque[float] = field(default_factory=deque)

    def rate(self, now: float) -> float:
        """Rows finished per minute over the last window."""
        while self.finished_at and now - self.finished_at[0] > RATE_WINDOW_SECONDS:
            self.finished_at.popleft()
        return len(self.finished_at) * 60.0 / RATE_WINDOW_SECONDS


@dataclass(frozen=True)
class Snapshot:
    """The batch at one moment, for a progress display (``--json`` prints it as it is)."""

    total: int | None
    settled: int
    done: int
    failed: int
    in_flight: int
    skipped: int
    """Rows settled in an earlier run (nothing to do now), or held by another live process."""
    spent_usd: Decimal
    committed_usd: Decimal
    cap_usd: Decimal | None
    elapsed_seconds: float
    in_flight_by_vendor: Mapping[str, int]
    rate_by_vendor: Mapping[str, float]
    """Rows finished per minute over the last minute."""

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "settled": self.settled,
            "done": self.done,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "skipped": self.skipped,
            "spent_usd": str(self.spent_usd),
            "committed_usd": str(self.committed_usd),
            "cap_usd": None if self.cap_usd is None else str(self.cap_usd),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "in_flight_by_vendor": dict(self.in_flight_by_vendor),
            "rows_per_minute_by_vendor": {k: round(v, 1) for k, v in self.rate_by_vendor.items()},
        }


@dataclass(frozen=True)
class VendorSummary:
    provider: str
    rows: int
    images: int
    failed: int
    cost_usd: Decimal
    p50_seconds: float | None
    p90_seconds: float | None
    latency: LatencyHistogram = field(repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "rows": self.rows,
            "images": self.images,
            "failed": self.failed,
            "cost_usd": str(self.cost_usd),
            "p50_seconds": self.p50_seconds,
            "p90_seconds": self.p90_seconds,
        }


@dataclass(frozen=True)
class BatchSummary:
    """How a batch run ended: rows by status, vendors, money, time."""

    name: str
    statuses: Mapping[str, int]
    vendors: list[VendorSummary]
    spent_usd: Decimal
    """What the rows settled in this run cost (what a vendor would charge, under the emulator)."""
    committed_usd: Decimal
    """The batch's money over all its runs: spent, possibly billed, and held for jobs a vendor may still run."""
    cap_usd: Decimal | None
    wall_seconds: float
    emulated: bool
    stopped: str | None = None
    """Why the run stopped before every row was settled (None: it did not)."""

    @property
    def rows(self) -> int:
        return sum(self.statuses.values())

    @property
    def complete(self) -> bool:
        """Every row done (no failure, nothing left for a later run)."""
        return self.stopped is None and all(status in ("done", "partial") for status in self.statuses)

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.name,
            "rows": self.rows,
            "statuses": dict(self.statuses),
            "vendors": [v.to_json() for v in self.vendors],
            "spent_usd": str(self.spent_usd),
            "committed_usd": str(self.committed_usd),
            "cap_usd": None if self.cap_usd is None else str(self.cap_usd),
            "wall_seconds": round(self.wall_seconds, 3),
            "emulated": self.emulated,
            "stopped": self.stopped,
        }


class BatchProgress:
    """Live counters of one batch run (read by displays; written by the batch's own loop)."""

    def __init__(self, *, total: int | None, cap: Decimal | None, committed: Decimal = Decimal(0)) -> None:
        self.total = total
        self.cap = cap
        self.committed = committed
        self.spent = Decimal(0)
        self.started = time.monotonic()
        self.statuses: dict[str, int] = {}
        self.skipped = 0
        self.in_flight = 0
        self._vendors: dict[str, _Vendor] = {}

    def vendor(self, name: str) -> _Vendor:
        found = self._vendors.get(name)
        if found is None:
            found = self._vendors[name] = _Vendor()
        return found

    def started_on(self, provider: str | None) -> None:
        self.in_flight += 1
        if provider is not None:
            self.vendor(provider).in_flight += 1

    def ended_on(self, provider: str | None) -> None:
        self.in_flight -= 1
        if provider is not None:
            self.vendor(provider).in_flight -= 1

    def settled(
        self,
        status: str,
        *,
        provider: str | None = None,
        images: int = 0,
        cost: Decimal | None = None,
        seconds: float | None = None,
        earlier: bool = False,
    ) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if earlier:
            self.skipped += 1
            return
        if cost is not None:
            self.spent += cost
        if provider is None:
            return
        vendor = self.vendor(provider)
        if status in ("done", "partial"):
            vendor.rows += 1
            vendor.images += images
            vendor.finished_at.append(time.monotonic())
            if seconds is not None:
                vendor.latency.add(seconds)
        else:
            vendor.failed += 1
        if cost is not None:
            vendor.cost += cost

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        settled = sum(self.statuses.values())
        done = self.statuses.get("done", 0) + self.statuses.get("partial", 0)
        failed = settled - done - self.statuses.get("held", 0)
        return Snapshot(
            total=self.total,
            settled=settled,
            done=done,
            failed=failed,
            in_flight=self.in_flight,
            skipped=self.skipped,
            spent_usd=self.spent,
            committed_usd=self.committed,
            cap_usd=self.cap,
            elapsed_seconds=now - self.started,
            in_flight_by_vendor={k: v.in_flight for k, v in sorted(self._vendors.items())},
            rate_by_vendor={k: v.rate(now) for k, v in sorted(self._vendors.items())},
        )

    def summary(self, name: str, *, emulated: bool, stopped: str | None) -> BatchSummary:
        vendors = [
            VendorSummary(
                provider=k,
                rows=v.rows,
                images=v.images,
                failed=v.failed,
                cost_usd=v.cost,
                p50_seconds=v.latency.percentile(50),
                p90_seconds=v.latency.percentile(90),
                latency=v.latency,
            )
            for k, v in sorted(self._vendors.items())
        ]
        return BatchSummary(
            name=name,
            statuses=dict(sorted(self.statuses.items())),
            vendors=vendors,
            spent_usd=self.spent,
            committed_usd=self.committed,
            cap_usd=self.cap,
            wall_seconds=time.monotonic() - self.started,
            emulated=emulated,
            stopped=stopped,
        )

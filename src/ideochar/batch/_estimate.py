"""Planning a batch before spending: every row checked, the batch priced per vendor and per strategy, and
its duration estimated from each vendor's limits. Nothing is sent; no key is needed.

The duration comes from replaying the batch's own placement rule (:mod:`ideochar.batch._core`) on a
clock: each row, in order, goes to the first of its providers (in the strategy's order) that has room,
within its images in flight (:attr:`~ideochar.spec.ProviderInfo.max_images_in_flight`, or the
configured limit, or the batch's default) and its requests per minute; each job takes the provider's
time (:attr:`~ideochar.spec.ProviderInfo.typical_seconds`, or what the caller has seen, else an assumed
:data:`ASSUMED_SECONDS`, said so). The replay holds only the jobs in flight, so it is flat in memory too.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from ideochar.batch._core import DEFAULT_IN_FLIGHT
from ideochar.batch._rows import Row, RowError
from ideochar.limits import RATE_WINDOW_SECONDS
from ideochar.router import Strategy
from ideochar.spec import Quote

__all__ = ["ASSUMED_SECONDS", "BatchPlan", "StrategyEstimate", "VendorPrice", "plan"]

#: A job's time at a vendor that documents none and that the caller has not seen.
ASSUMED_SECONDS = 30.0
#: Invalid rows kept with their problems (the count goes on past it).
MAX_ERRORS_KEPT = 1000
STRATEGIES: tuple[Strategy, ...] = ("as_listed", "cheapest", "fastest")
SecondsSource = Literal["declared", "seen", "assumed"]


@dataclass
class VendorPrice:
    """One provider's part of the plan: what it would charge for every valid row it can serve."""

    provider: str
    rows: int = 0
    images: int = 0
    total_usd: Decimal | None = field(default_factory=Decimal)
    refused: int = 0
    """Valid rows it cannot serve (or, with strict, would serve with a warning, or above the job budget)."""
    reason: str | None = None
    """Why, for the first of them."""
    in_flight: int = DEFAULT_IN_FLIGHT
    requests_per_minute: int | None = None
    seconds: float = ASSUMED_SECONDS
    seconds_source: SecondsSource = "assumed"

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "rows": self.rows,
            "images": self.images,
            "total_usd": None if self.total_usd is None else str(self.total_usd),
            "refused": self.refused,
            "reason": self.reason,
            "in_flight": self.in_flight,
            "requests_per_minute": self.requests_per_minute,
            "seconds": self.seconds,
            "seconds_source": self.seconds_source,
        }


@dataclass
class StrategyEstimate:
    """The batch routed by one strategy, overflow spilling by capacity: cost, duration, rows per vendor."""

    strategy: Strategy
    cost_usd: Decimal | None
    seconds: float
    rows_by_vendor: dict[str, int]
    over_cap: int = 0
    """Rows that would not be sent: their quote would pass the cap."""
    unserved: int = 0
    """Valid rows no provider can serve."""

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "seconds": round(self.seconds, 1),
            "rows_by_vendor": dict(self.rows_by_vendor),
            "over_cap": self.over_cap,
            "unserved": self.unserved,
        }


@dataclass
class BatchPlan:
    """What ``ideochar batch --dry-run`` reports."""

    rows: int = 0
    valid: int = 0
    invalid: int = 0
    errors: list[tuple[int, RowError]] = field(default_factory=list)
    """``(row number, problem)`` for every problem of every invalid row (the first :data:`MAX_ERRORS_KEPT`)."""
    vendors: list[VendorPrice] = field(default_factory=list)
    estimates: list[StrategyEstimate] = field(default_factory=list)
    strategy: Strategy = "as_listed"
    spill: bool = True
    cap_usd: Decimal | None = None

    @property
    def chosen(self) -> StrategyEstimate | None:
        """The estimate for the strategy the batch would run with."""
        return next((e for e in self.estimates if e.strategy == self.strategy), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "valid": self.valid,
            "invalid": self.invalid,
            "errors": [{"row": n, "field": e.field, "problem": e.problem} for n, e in self.errors],
            "vendors": [v.to_json() for v in self.vendors],
            "estimates": [e.to_json() for e in self.estimates],
            "strategy": self.strategy,
            "spill": self.spill,
            "cap_usd": None if self.cap_usd is None else str(self.cap_usd),
        }


# -- the replay ----------------------------------------------------------------------------------------


@dataclass
class _Lane:
    """One provider on the replay's clock: jobs in flight (finish time, images) and recent starts."""

    ceiling: int
    per_minute: int | None
    seconds: float
    window: float = RATE_WINDOW_SECONDS
    running: list[tuple[float, int]] = field(default_factory=list)
    images: int = 0
    starts: deque[float] = field(default_factory=deque)
    last_finish: float = 0.0

    def settle(self, now: float) -> None:
        while self.running and self.running[0][0] <= now:
            self.images -= heapq.heappop(self.running)[1]
        while self.starts and now - self.starts[0] >= self.window:
            self.starts.popleft()

    def room(self, now: float, images: int) -> bool:
        self.settle(now)
        fits = self.images == 0 or self.images + images <= self.ceiling
        return fits and (self.per_minute is None or len(self.starts) < self.per_minute)

    def start(self, now: float, images: int) -> None:
        finish = now + self.seconds
        heapq.heappush(self.running, (finish, images))
        self.images += images
        self.starts.append(now)
        self.last_finish = max(self.last_finish, finish)

    def next_change(self) -> float:
        times = [self.running[0][0]] if self.running else []
        if self.per_minute is not None and len(self.starts) >= self.per_minute:
            times.append(self.starts[0] + self.window)
        return min(times, default=float("inf"))


class _Replay:
    def __init__(self, strategy: Strategy, lanes: Mapping[str, _Lane], *, spill: bool, cap: Decimal | None) -> None:
        self.lanes = lanes
        self.spill = spill
        self.cap = cap
        self.now = 0.0
        self.estimate = StrategyEstimate(strategy, Decimal(0), 0.0, {})

    def place(self, choices: Sequence[tuple[str, Decimal | None]], images: int) -> None:
        estimate = self.estimate
        if not choices:
            estimate.unserved += 1
            return
        spent = estimate.cost_usd or Decimal(0)
        fits = [(n, q) for n, q in choices if self.cap is None or (q is not None and spent + q <= self.cap)]
        if not fits:
            estimate.over_cap += 1
            return
        offered = fits if self.spill else fits[:1]
        while True:
            for name, quote in offered:
                lane = self.lanes[name]
                if lane.room(self.now, images):
                    lane.start(self.now, images)
                    estimate.rows_by_vendor[name] = estimate.rows_by_vendor.get(name, 0) + 1
                    if estimate.cost_usd is not None:
                        estimate.cost_usd = None if quote is None else estimate.cost_usd + quote
                    return
            self.now = max(self.now, min(self.lanes[n].next_change() for n, _ in offered))

    def finish(self) -> StrategyEstimate:
        self.estimate.seconds = max((lane.last_finish for lane in self.lanes.values()), default=0.0)
        return self.estimate


# -- planning ------------------------------------------------------------------------------------------


def plan(
    client: Any,
    rows: Iterable[Row],
    *,
    spill: bool = True,
    cap: Decimal | None = None,
    in_flight: int = DEFAULT_IN_FLIGHT,
    seconds: Mapping[str, tuple[float, SecondsSource]] | None = None,
) -> BatchPlan:
    """Check and price every row of a batch for ``client``'s providers, and estimate each strategy.

    ``client`` is a :class:`~ideochar.client.Client` or :class:`~ideochar.client.AsyncClient` (only its
    configuration is read); ``seconds`` the time per job the caller has seen, by provider.
    """
    providers = client.providers
    limits = client._provider_limits()
    result = BatchPlan(strategy=client.strategy, spill=spill, cap_usd=cap)
    prices = {p.info.name: _price(p, limits.get(p.info.name), in_flight, seconds or {}) for p in providers}
    result.vendors = list(prices.values())
    replays = {s: _Replay(s, _lanes(prices), spill=spill, cap=cap) for s in STRATEGIES}
    speed = {name: price.seconds for name, price in prices.items()}
    for row in rows:
        result.rows += 1
        if row.request is None:
            result.invalid += 1
            for error in row.errors:
                if len(result.errors) < MAX_ERRORS_KEPT:
                    result.errors.append((row.number, error))
            continue
        result.valid += 1
        quotes = [_usable(p.quote(row.request, fan_out=client.fan_out), client) for p in providers]
        for quote, why in quotes:
            _count(prices[quote.provider], quote, why, row.request.num_images)
        served = [q for q, why in quotes if why is None]
        for strategy, replay in replays.items():
            replay.place(_ordered(served, strategy, speed), row.request.num_images)
    result.estimates = [replay.finish() for replay in replays.values()]
    return result


def _usable(quote: Quote, client: Any) -> tuple[Quote, str | None]:
    """The quote, and why its provider would not be tried for the row (None: it would)."""
    if not quote.supported:
        return quote, quote.reason or "cannot serve this request"
    if client.strict and quote.warnings:
        return quote, "strict: " + "; ".join(w.message for w in quote.warnings)
    budget = client.max_cost_usd
    if budget is not None and quote.total_usd is not None and quote.total_usd > budget:
        return quote, f"quote ${quote.total_usd} is over the job budget of ${budget}"
    return quote, None


def _count(price: VendorPrice, quote: Quote, why: str | None, images: int) -> None:
    if why is not None:
        price.refused += 1
        price.reason = price.reason or why
        return
    price.rows += 1
    price.images += images
    if price.total_usd is not None:
        price.total_usd = None if quote.total_usd is None else price.total_usd + quote.total_usd


def _ordered(quotes: list[Quote], strategy: Strategy, speed: Mapping[str, float]) -> list[tuple[str, Decimal | None]]:
    if strategy == "cheapest":
        quotes = sorted(quotes, key=lambda q: q.total_usd if q.total_usd is not None else Decimal("Infinity"))
    elif strategy == "fastest":
        quotes = sorted(quotes, key=lambda q: speed.get(q.provider, ASSUMED_SECONDS))
    return [(q.provider, q.total_usd) for q in quotes]


def _price(provider: Any, limits: Any, in_flight: int, seen: Mapping[str, tuple[float, SecondsSource]]) -> VendorPrice:
    info = provider.info
    price = VendorPrice(info.name)
    price.in_flight = (limits.max_images_in_flight if limits is not None else None) or in_flight
    price.requests_per_minute = limits.requests_per_minute if limits is not None else None
    if info.name in seen:
        price.seconds, price.seconds_source = seen[info.name]
    elif info.typical_seconds is not None:
        price.seconds, price.seconds_source = info.typical_seconds, "declared"
    return price


def _lanes(prices: Mapping[str, VendorPrice]) -> dict[str, _Lane]:
    return {name: _Lane(p.in_flight, p.requests_per_minute, p.seconds) for name, p in prices.items()}

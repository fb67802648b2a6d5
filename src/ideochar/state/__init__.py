"""The state the router shares: in this process by default, in Redis when a fleet shares it.

Four things are shared, each answering a step the router already takes, so the router does not know
where they live:

* **concurrency leases** per vendor, weighted by images (``max_images_in_flight``); each lease expires
  unless its holder renews it, so a killed worker's slots come back within the lease's life;
* **request-rate windows** (``requests_per_minute``), counting attempts;
* **breaker state**: one record per vendor (:mod:`ideochar.breaker`), so one worker's faults open it for
  every worker, and one worker's probe decides for all;
* **spend reservations** against the budget (``budget_usd``): the quote reserved before sending and
  settled with the actual cost, so the cap holds fleet-wide even when workers race.

All four are one :class:`~ideochar.limits.Acquire` step: the client answers it through the limiter a
backend builds (:meth:`StateBackend.limiter`, :meth:`StateBackend.async_limiter`), and the router releases
the :class:`~ideochar.limits.Permit` with how the attempt ended. :class:`MemoryState` is today's
per-process limiters and breaker; :class:`~ideochar.state.redis.RedisState` does the same in one Lua
script per step, so a slot, a rate window entry, a probe and a reservation are taken together or not at all.

**Job ownership is not here**: it stays in the journal, which a fleet shares through PostgreSQL. A claim
and the job's records must change in one transaction (``SELECT ... FOR UPDATE`` on the job's row), and a
second store would open a window between them.

Example::

    from ideochar.state import open_state

    state = open_state("redis://redis.internal:6379/0")   # or None / "memory": this process only
    client = AsyncClient(state=state, journal="postgresql://db.internal/ideochar")
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Literal, Protocol

from ideochar.breaker import CircuitBreaker
from ideochar.limits import AnyioLimiter, AsyncLimiter, Budget, Limiter, ProviderLimits, SpendLedger, ThreadLimiter

__all__ = ["Fallback", "MemoryState", "StateBackend", "open_state"]

Fallback = Literal["fail_closed", "local"]
"""What a shared backend does when its server cannot be reached: admit nothing (``StateUnavailable``),
or fall back to this process's own limits (the budget never falls back: money fails closed)."""


class StateBackend(Protocol):
    """Where the router's shared state lives. One per client, or one shared by several clients of a process."""

    @property
    def shared(self) -> bool:
        """True when other processes see the same state."""
        ...

    def breaker(self, failure_threshold: int, cooldown_seconds: float) -> CircuitBreaker:
        """The breaker the router consults (a shared backend's is a view of the shared records)."""
        ...

    def limiter(
        self,
        limits: Mapping[str, ProviderLimits],
        *,
        providers: Collection[str],
        budget: Budget | None,
        breaker: CircuitBreaker,
    ) -> Limiter:
        """The blocking client's answer to :class:`~ideochar.limits.Acquire`."""
        ...

    def async_limiter(
        self,
        limits: Mapping[str, ProviderLimits],
        *,
        providers: Collection[str],
        budget: Budget | None,
        breaker: CircuitBreaker,
    ) -> AsyncLimiter:
        """The async client's answer (one event loop)."""
        ...

    def spent(self, budget: Budget) -> tuple[Decimal, Decimal]:
        """``(spent, reserved)`` against ``budget`` as this backend counts it."""
        ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class MemoryState:
    """Everything in this process: the thread and anyio limiters, an in-process breaker, one spend ledger
    per budget name (shared by every client given this object)."""

    shared = False

    def __init__(self) -> None:
        self._ledgers: dict[str, SpendLedger] = {}

    def _ledger(self, budget: Budget | None) -> SpendLedger | None:
        if budget is None:
            return None
        ledger = self._ledgers.get(budget.name)
        if ledger is None or ledger.budget.cap_usd != budget.cap_usd:
            ledger = self._ledgers[budget.name] = SpendLedger(budget)
        return ledger

    def breaker(self, failure_threshold: int, cooldown_seconds: float) -> CircuitBreaker:
        return CircuitBreaker(failure_threshold, cooldown_seconds)

    def limiter(
        self,
        limits: Mapping[str, ProviderLimits],
        *,
        providers: Collection[str],
        budget: Budget | None,
        breaker: CircuitBreaker,
    ) -> ThreadLimiter:
        return ThreadLimiter(limits, budget=self._ledger(budget), providers=providers, breaker=breaker)

    def async_limiter(
        self,
        limits: Mapping[str, ProviderLimits],
        *,
        providers: Collection[str],
        budget: Budget | None,
        breaker: CircuitBreaker,
    ) -> AnyioLimiter:
        return AnyioLimiter(limits, budget=self._ledger(budget), providers=providers, breaker=breaker)

    def spent(self, budget: Budget) -> tuple[Decimal, Decimal]:
        ledger = self._ledgers.get(budget.name)
        return (ledger.spent, ledger.reserved) if ledger is not None else (Decimal(0), Decimal(0))

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def __repr__(self) -> str:
        return "MemoryState()"


def open_state(url: str | None, *, fallback: Fallback = "fail_closed") -> StateBackend:
    """The backend a URL names: None or ``memory`` for this process, ``redis://``/``rediss://``/``unix://``
    for Redis (``pip install 'ideochar[redis]'``)."""
    if url is None or url.strip().lower() in ("", "memory", "memory://"):
        return MemoryState()
    from ideochar.state.redis import RedisState

    return RedisState(url, fallback=fallback)

"""Per-provider concurrency and request-rate limits, enforced where the waiting happens: in the drivers.

A vendor caps how much one account may do at once (Ideogram: 10 images in flight per organisation) or
per minute (Segmind: by plan). Going over costs a 429 at best. So before each attempt the router yields
an :class:`Acquire` step; the client answers it with a :class:`Permit` once a slot is free, waiting with
``threading`` primitives in :class:`~ideochar.client.Client` (:class:`ThreadLimiter`) and with ``anyio``
in :class:`~ideochar.client.AsyncClient` (:class:`AnyioLimiter`). The router releases the permit when
the attempt ends, whatever the outcome (``Permit.release`` is synchronous, so it is safe in a
``finally`` of a closing generator).

Waiting counts against the job's deadline: a slot not free in time raises
:class:`~ideochar.errors.ProviderUnavailable` with ``sent=False`` (nothing left), and the router
fails over. A single call asking for more images than the whole capacity waits for the whole capacity
instead of forever. The router asked the breaker before the step; a step that had to wait asks again
when its slot comes (``breaker=``), so an attempt queued behind others is not sent to a provider whose
breaker opened meanwhile.

Limits are per limiter, which is per client by default; pass one limiter to several clients of the
same account to share it. The rate window counts attempts (job-creating calls), not status polls:
that vendors count only job-creating calls is **inferred**.

**The budget** (:class:`Budget`, ``budget_usd``): the same step reserves the attempt's quote
(``Acquire.quote_usd``) in a :class:`SpendLedger` before it is sent, or refuses at once with
:class:`~ideochar.errors.OverBudget` when the spent and reserved money plus the quote would pass the cap
(the router then tries a cheaper provider, or none). The router settles it when the attempt ends
(:class:`Ended`): at the cost of a served attempt, at nothing when nothing was billed, and at the whole
quote when the attempt was billed at no known cost, may have been billed, or was interrupted. So money
that may have been spent is never handed back: the cap is never passed, as long as vendors charge
what they quote.

These limiters keep everything in this process. :mod:`ideochar.state` shares the same steps across
processes and machines (Redis), with the same rules.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from ideochar.breaker import CircuitBreaker
from ideochar.errors import OverBudget, ProviderUnavailable
from ideochar.spec import ProviderInfo

__all__ = [
    "RATE_WINDOW_SECONDS",
    "Acquire",
    "AnyioLimiter",
    "AsyncLimiter",
    "Budget",
    "Ended",
    "Limiter",
    "Permit",
    "ProviderLimits",
    "SpendLedger",
    "ThreadLimiter",
    "limits_for",
]

#: The window a requests-per-minute limit is counted over.
RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class ProviderLimits:
    """How much one provider may be asked at once, and how often."""

    max_images_in_flight: int | None = None
    requests_per_minute: int | None = None
    window_seconds: float = RATE_WINDOW_SECONDS
    """The rate window (60 s for "per minute"; shorter only in tests)."""

    @property
    def active(self) -> bool:
        return self.max_images_in_flight is not None or self.requests_per_minute is not None


def limits_for(info: ProviderInfo, override: Mapping[str, Any] | None = None) -> ProviderLimits | None:
    """The provider's declared limits, overridden by configuration (a paid plan allows more)."""
    override = override or {}
    limits = ProviderLimits(
        max_images_in_flight=override.get("max_images_in_flight", info.max_images_in_flight),
        requests_per_minute=override.get("requests_per_minute", info.requests_per_minute),
        window_seconds=float(override.get("window_seconds", RATE_WINDOW_SECONDS)),
    )
    return limits if limits.active else None


@dataclass(frozen=True)
class Acquire:
    """A router step: wait for room to send ``images`` images to ``provider``, until ``deadline``, and
    reserve ``quote_usd`` in the budget (when there is one)."""

    provider: str
    images: int
    deadline: float | None
    """A ``time.monotonic()`` value, or None for no bound."""
    quote_usd: Decimal | None = None
    """What the attempt will cost at the price table (None: no price known)."""


@dataclass(frozen=True)
class Ended:
    """How the attempt a permit admitted ended, for the budget and a shared breaker."""

    spent_usd: Decimal | None
    """What it cost (0: billed nothing); None: the whole reservation stays spent (billed or maybe billed
    at no known cost)."""
    fault: bool
    """The provider's own fault (:func:`ideochar.breaker.counts_as_fault`)."""


@dataclass(frozen=True)
class Budget:
    """A cap on what every job together may spend (``budget_usd``), counted under ``name``."""

    cap_usd: Decimal
    name: str = "default"


class Permit:
    """Room taken at a provider; :meth:`release` gives it back (idempotent, synchronous).

    ``release(ended)`` also settles the budget reservation: with None (the attempt was interrupted) the
    whole reservation stays spent."""

    def __init__(self, release: Callable[[Ended | None], None] | None = None) -> None:
        self._release = release

    def release(self, ended: Ended | None = None) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(ended)


class Limiter(Protocol):
    """What the blocking client asks: which providers need an :class:`Acquire`, and the answer to one."""

    @property
    def providers(self) -> frozenset[str]: ...

    def acquire(self, step: Acquire) -> Permit: ...


class AsyncLimiter(Protocol):
    """What the async client asks (the same, awaited)."""

    @property
    def providers(self) -> frozenset[str]: ...

    async def acquire(self, step: Acquire) -> Permit: ...


class SpendLedger:
    """Spent and reserved money against one :class:`Budget`, in this process (thread-safe)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.spent = Decimal(0)
        self.reserved = Decimal(0)
        self._lock = threading.Lock()

    def refusal(self, step: Acquire) -> OverBudget | None:
        """Why the quote does not fit now (None: it does). Changes nothing."""
        with self._lock:
            return _over(self.budget, step, self.spent + self.reserved)

    def reserve(self, step: Acquire) -> Decimal:
        """Reserve the step's quote, or raise OverBudget; returns what was reserved."""
        with self._lock:
            refused = _over(self.budget, step, self.spent + self.reserved)
            if refused is not None:
                raise refused
            amount = step.quote_usd or Decimal(0)
            self.reserved += amount
            return amount

    def settle(self, reserved: Decimal, ended: Ended | None) -> None:
        spent = reserved if ended is None or ended.spent_usd is None else ended.spent_usd
        with self._lock:
            self.reserved -= reserved
            self.spent += spent


def _over(budget: Budget, step: Acquire, committed: Decimal) -> OverBudget | None:
    if step.quote_usd is None:
        return OverBudget(
            f"{step.provider} has no price to reserve against the budget {budget.name!r}; nothing was sent"
        )
    if committed + step.quote_usd > budget.cap_usd:
        return OverBudget(
            f"${step.quote_usd} more would pass the budget {budget.name!r} of ${budget.cap_usd} "
            f"(${committed} spent or reserved); nothing was sent"
        )
    return None


def _reserving(ledger: SpendLedger | None, step: Acquire, release: Callable[[], None] | None) -> Permit:
    """A permit that frees the slot (``release``) and settles the step's reservation in ``ledger``."""
    reserved = ledger.reserve(step) if ledger is not None else Decimal(0)

    def done(ended: Ended | None) -> None:
        if release is not None:
            release()
        if ledger is not None:
            ledger.settle(reserved, ended)

    return Permit(done) if ledger is not None or release is not None else Permit()


def _timeout(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _no_slot(step: Acquire, what: str) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"no free slot at {step.provider} ({what}) before the job's deadline; nothing was sent",
        provider=step.provider,
        sent=False,
    )


def _opened_meanwhile(breaker: CircuitBreaker | None, step: Acquire, since: float) -> ProviderUnavailable | None:
    """The refusal for a step that waited while the provider's breaker opened (None: it may go)."""
    if breaker is None or not breaker.opened_since(step.provider, since):
        return None
    return ProviderUnavailable(
        f"{step.provider}'s circuit opened while this attempt waited for a slot; nothing was sent",
        provider=step.provider,
        sent=False,
    )


class _Window:
    """Start times of recent requests; answers how long until one more fits."""

    def __init__(self, per_window: int, seconds: float) -> None:
        self.per_window, self.seconds = per_window, seconds
        self.starts: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self.starts and now - self.starts[0] >= self.seconds:
            self.starts.popleft()
        if len(self.starts) < self.per_window:
            return 0.0
        return self.starts[0] + self.seconds - now


# -- blocking --------------------------------------------------------------------------------------------


class _ThreadProvider:
    def __init__(self, limits: ProviderLimits) -> None:
        self.limits = limits
        self.cond = threading.Condition()
        self.in_flight = 0
        self.window = _Window(limits.requests_per_minute, limits.window_seconds) if limits.requests_per_minute else None

    def acquire(self, step: Acquire, ledger: SpendLedger | None, breaker: CircuitBreaker | None) -> Permit:
        capacity = self.limits.max_images_in_flight
        images = min(step.images, capacity) if capacity else 0
        asked = breaker.clock() if breaker is not None else 0.0
        waited = False
        with self.cond:
            while True:
                now = time.monotonic()
                wait = self.window.wait(now) if self.window is not None else 0.0
                room = capacity is None or self.in_flight + images <= capacity
                if wait <= 0 and room:
                    opened = _opened_meanwhile(breaker, step, asked) if waited else None
                    if opened is not None:
                        raise opened
                    break
                waited = True
                refused = ledger.refusal(step) if ledger is not None else None
                if refused is not None:  # no point waiting for a slot the budget would refuse
                    raise refused
                remaining = _timeout(step.deadline)
                if remaining is not None and remaining <= 0:
                    raise _no_slot(step, "rate limit" if wait > 0 else "images in flight")
                pause = wait if wait > 0 else None
                if remaining is not None:
                    pause = remaining if pause is None else min(pause, remaining)
                self.cond.wait(pause)

            def release() -> None:
                with self.cond:
                    self.in_flight -= images
                    self.cond.notify_all()

            permit = _reserving(ledger, step, release if images else None)  # raises OverBudget: nothing taken
            if self.window is not None:
                self.window.starts.append(now)
            self.in_flight += images
        return permit


class ThreadLimiter:
    """Limits for the blocking client: ``perform(Acquire(...))`` blocks until a slot is free.

    With a ``budget``, every provider in ``providers`` is asked through it (to reserve each quote). With
    the router's ``breaker``, a step that waited is refused if the provider's breaker opened meanwhile."""

    def __init__(
        self,
        limits: Mapping[str, ProviderLimits],
        *,
        budget: Budget | SpendLedger | None = None,
        providers: Collection[str] = (),
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._providers = {name: _ThreadProvider(lim) for name, lim in limits.items() if lim.active}
        self.breaker = breaker
        self.ledger = SpendLedger(budget) if isinstance(budget, Budget) else budget
        self._names = frozenset(self._providers) | (frozenset(providers) if self.ledger is not None else frozenset())

    @property
    def providers(self) -> frozenset[str]:
        return self._names

    def acquire(self, step: Acquire) -> Permit:
        entry = self._providers.get(step.provider)
        if entry is None:
            return _reserving(self.ledger, step, None)
        return entry.acquire(step, self.ledger, self.breaker)


# -- async -----------------------------------------------------------------------------------------------


class _AnyioProvider:
    """The same rules with anyio: waiters park on an Event that every release (and a timer) sets."""

    def __init__(self, limits: ProviderLimits) -> None:
        self.limits = limits
        self.in_flight = 0
        self.waiters: list[Any] = []
        self.window = _Window(limits.requests_per_minute, limits.window_seconds) if limits.requests_per_minute else None

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for event in waiters:
            event.set()

    async def acquire(self, step: Acquire, ledger: SpendLedger | None, breaker: CircuitBreaker | None) -> Permit:
        import anyio

        capacity = self.limits.max_images_in_flight
        images = min(step.images, capacity) if capacity else 0
        asked = breaker.clock() if breaker is not None else 0.0
        waited = False
        while True:
            now = time.monotonic()
            wait = self.window.wait(now) if self.window is not None else 0.0
            room = capacity is None or self.in_flight + images <= capacity
            if wait <= 0 and room:
                opened = _opened_meanwhile(breaker, step, asked) if waited else None
                if opened is not None:
                    raise opened
                break
            waited = True
            refused = ledger.refusal(step) if ledger is not None else None
            if refused is not None:
                raise refused
            remaining = _timeout(step.deadline)
            if remaining is not None and remaining <= 0:
                raise _no_slot(step, "rate limit" if wait > 0 else "images in flight")
            pause = wait if wait > 0 else None
            if remaining is not None:
                pause = remaining if pause is None else min(pause, remaining)
            event = anyio.Event()
            self.waiters.append(event)
            with anyio.move_on_after(pause):
                await event.wait()

        def release() -> None:
            self.in_flight -= images
            self._wake()

        permit = _reserving(ledger, step, release if images else None)
        if self.window is not None:
            self.window.starts.append(now)
        self.in_flight += images
        return permit


class AnyioLimiter:
    """Limits for the async client: ``await acquire(Acquire(...))`` parks the task until a slot is free.

    Use it from one event loop (its state is not guarded by a lock, as anyio tasks do not preempt).
    ``breaker`` as for :class:`ThreadLimiter`.
    """

    def __init__(
        self,
        limits: Mapping[str, ProviderLimits],
        *,
        budget: Budget | SpendLedger | None = None,
        providers: Collection[str] = (),
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._providers = {name: _AnyioProvider(lim) for name, lim in limits.items() if lim.active}
        self.breaker = breaker
        self.ledger = SpendLedger(budget) if isinstance(budget, Budget) else budget
        self._names = frozenset(self._providers) | (frozenset(providers) if self.ledger is not None else frozenset())

    @property
    def providers(self) -> frozenset[str]:
        return self._names

    async def acquire(self, step: Acquire) -> Permit:
        entry = self._providers.get(step.provider)
        if entry is None:
            return _reserving(self.ledger, step, None)
        return await entry.acquire(step, self.ledger, self.breaker)

"""A circuit breaker per provider: stop paying latency for a vendor that keeps failing, probe it later.

States, per provider::

    closed ──(N consecutive faults)──> open ──(cooldown passes)──> half-open
      ^                                  ^                             │ one probe is let through
      └────────── probe succeeds ────────┴───── probe fails ───────────┘

While open the router skips the provider at once, without any network cost, and says why in the plan.
After the cooldown exactly one request is let through as a probe; the others keep skipping until it
answers. A probe that never reports (its process died, the job was cancelled) frees the slot again after
another cooldown, so a lost probe cannot keep a provider closed for good.

**Only the probe closes an open breaker.** Attempts let through before it opened may still be running
when it does; one of them succeeding says the vendor served a job sent earlier, not that it serves new
ones, and letting it close the breaker would send everyone back at once (``record(..., admitted_at=)``
tells which is which). Their faults still count: they keep it open a cooldown longer.

Only the provider's own faults count (:func:`counts_as_fault`): unavailability, lost answers and
unreadable replies. A content filter, a rejected request or a rate limit says the vendor is up and
answering, so it counts as a success. The breaker never decides about money; it only orders and skips.

State lives behind :class:`BreakerStore` (``load``/``update`` of one small record per provider); the
default :class:`MemoryBreakerStore` is per process. A fleet shares its breakers through
:mod:`ideochar.state`, whose store is a view of the shared records: there the shared state's own
release records each outcome, and :meth:`CircuitBreaker.record` leaves the view alone
(:attr:`BreakerStore.records_outcomes`). The clock is injectable for tests; records hold its values.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from ideochar.errors import OutcomeUnknown, ProviderError, ProviderUnavailable, UnexpectedResponse

__all__ = [
    "BREAKER_FAULTS",
    "DEFAULT_COOLDOWN_SECONDS",
    "DEFAULT_FAILURE_THRESHOLD",
    "BreakerRecord",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "MemoryBreakerStore",
    "counts_as_fault",
]

#: Consecutive faults that open a provider's breaker.
DEFAULT_FAILURE_THRESHOLD = 5
#: How long an open breaker skips its provider before one probe is let through.
DEFAULT_COOLDOWN_SECONDS = 30.0

#: Errors that are the provider's fault (its availability), as opposed to the request's or the account's.
BREAKER_FAULTS: tuple[type[ProviderError], ...] = (ProviderUnavailable, OutcomeUnknown, UnexpectedResponse)

BreakerState = Literal["closed", "open", "half_open"]


def counts_as_fault(error: BaseException) -> bool:
    """True when ``error`` says the provider is unhealthy (not the request, the key or the account)."""
    return isinstance(error, BREAKER_FAULTS)


@dataclass(frozen=True)
class BreakerRecord:
    """What the store keeps for one provider. Times are values of the breaker's clock."""

    failures: int = 0
    """Consecutive faults since the last success."""
    opened_at: float | None = None
    """When the breaker last opened (None: closed)."""
    probe_until: float | None = None
    """While set and in the future, a probe is in flight and everyone else keeps skipping."""


class BreakerStore(Protocol):
    """Where breaker records live. ``update`` must be atomic for one provider."""

    @property
    def records_outcomes(self) -> bool:
        """False for a view of records someone else keeps (a fleet's: its state records each outcome
        where the attempt's permit is released, and counting it here again would count it twice)."""
        ...

    def load(self, provider: str) -> BreakerRecord: ...

    def update(self, provider: str, change: Callable[[BreakerRecord], BreakerRecord]) -> BreakerRecord:
        """Apply ``change`` to the current record atomically and return the new one."""
        ...


class MemoryBreakerStore:
    """The in-process store: a dict and a lock."""

    records_outcomes = True

    def __init__(self) -> None:
        self._records: dict[str, BreakerRecord] = {}
        self._lock = threading.Lock()

    def load(self, provider: str) -> BreakerRecord:
        with self._lock:
            return self._records.get(provider, BreakerRecord())

    def update(self, provider: str, change: Callable[[BreakerRecord], BreakerRecord]) -> BreakerRecord:
        with self._lock:
            record = change(self._records.get(provider, BreakerRecord()))
            self._records[provider] = record
            return record


class CircuitBreaker:
    """Per-provider breakers sharing one threshold and cooldown.

    Example::

        breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=10)
        allowed, why = breaker.acquire("fal")      # the router asks before each attempt
        ...
        breaker.record("fal", error)               # None for a success
    """

    def __init__(
        self,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
        *,
        store: BreakerStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds < 0:
            raise ValueError("cooldown_seconds must not be negative")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.store: BreakerStore = store or MemoryBreakerStore()
        self.clock = clock

    def state(self, provider: str) -> BreakerState:
        return self._state(self.store.load(provider), self.clock())

    def _state(self, record: BreakerRecord, now: float) -> BreakerState:
        if record.opened_at is None:
            return "closed"
        if now - record.opened_at < self.cooldown_seconds:
            return "open"
        return "half_open"

    def why_skipped(self, provider: str) -> str | None:
        """Why ``provider`` would be skipped now, or None if it may be tried. Changes nothing."""
        record, now = self.store.load(provider), self.clock()
        return self._reason(record, now)

    def _reason(self, record: BreakerRecord, now: float) -> str | None:
        state = self._state(record, now)
        if state == "open":
            assert record.opened_at is not None
            wait = self.cooldown_seconds - (now - record.opened_at)
            return (
                f"circuit open after {record.failures} consecutive failures; "
                f"one probe will be let through in {wait:.1f}s"
            )
        if state == "half_open" and record.probe_until is not None and now < record.probe_until:
            return "circuit half-open: a probe request is in flight"
        return None

    def acquire(self, provider: str) -> tuple[bool, str | None]:
        """May ``provider`` be tried now? In half-open state this takes the single probe slot."""
        reason: str | None = None

        def change(record: BreakerRecord) -> BreakerRecord:
            nonlocal reason
            now = self.clock()
            reason = self._reason(record, now)
            if reason is None and self._state(record, now) == "half_open":
                return replace(record, probe_until=now + max(self.cooldown_seconds, 1e-9))
            return record

        self.store.update(provider, change)
        return reason is None, reason

    def opened_since(self, provider: str, since: float) -> bool:
        """Has ``provider``'s breaker opened (or opened again) at or after ``since`` (a clock value)?

        For an attempt let through at ``since`` that then waited (for a slot): it must not go out now."""
        opened = self.store.load(provider).opened_at
        return opened is not None and opened >= since

    def record(self, provider: str, error: BaseException | None, *, admitted_at: float | None = None) -> BreakerState:
        """Report how an attempt ended (None: success). Returns the provider's state afterwards.

        ``admitted_at`` is when the breaker let the attempt through (a clock value). A success of an
        attempt let through before the breaker last opened leaves it open: only the probe closes it
        (module docstring). Without it, a success is taken for the probe's."""
        fault = error is not None and counts_as_fault(error)
        if not self.store.records_outcomes:
            return self.state(provider)

        def change(record: BreakerRecord) -> BreakerRecord:
            now = self.clock()
            if not fault:
                earlier = record.opened_at is not None and admitted_at is not None and admitted_at < record.opened_at
                return record if earlier else BreakerRecord()
            failures = record.failures + 1
            if record.opened_at is not None or failures >= self.failure_threshold:
                return BreakerRecord(failures=failures, opened_at=now, probe_until=None)
            return BreakerRecord(failures=failures)

        return self._state(self.store.update(provider, change), self.clock())

    def reset(self, provider: str) -> None:
        """Close ``provider``'s breaker by hand (an operator knows the vendor is back)."""
        self.store.update(provider, lambda _: BreakerRecord())

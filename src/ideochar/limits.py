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
instead of forever.

Limits are per limiter, which is per client by default; pass one limiter to several clients of the
same account to share it. The rate window counts attempts (job-creating calls), not status polls:
that vendors count only job-creating calls is **inferred**.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ideochar.errors import ProviderUnavailable
from ideochar.spec import ProviderInfo

__all__ = [
    "RATE_WINDOW_SECONDS",
    "Acquire",
    "AnyioLimiter",
    "Permit",
    "ProviderLimits",
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
    """A router step: wait for room to send ``images`` images to ``provider``, until ``deadline``."""

    provider: str
    images: int
    deadline: float | None
    """A ``time.monotonic()`` value, or None for no bound."""


class Permit:
    """Room taken at a provider; :meth:`release` gives it back (idempotent, synchronous)."""

    def __init__(self, release: Callable[[], None] | None = None) -> None:
        self._release = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def _timeout(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _no_slot(step: Acquire, what: str) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"no free slot at {step.provider} ({what}) before the job's deadline; nothing was sent",
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

    def acquire(self, step: Acquire) -> Permit:
        capacity = self.limits.max_images_in_flight
        images = min(step.images, capacity) if capacity else 0
        with self.cond:
            while True:
                now = time.monotonic()
                wait = self.window.wait(now) if self.window is not None else 0.0
                room = capacity is None or self.in_flight + images <= capacity
                if wait <= 0 and room:
                    break
                remaining = _timeout(step.deadline)
                if remaining is not None and remaining <= 0:
                    raise _no_slot(step, "rate limit" if wait > 0 else "images in flight")
                pause = wait if wait > 0 else None
                if remaining is not None:
                    pause = remaining if pause is None else min(pause, remaining)
                self.cond.wait(pause)
            if self.window is not None:
                self.window.starts.append(now)
            self.in_flight += images

        def release() -> None:
            with self.cond:
                self.in_flight -= images
                self.cond.notify_all()

        return Permit(release) if images else Permit()


class ThreadLimiter:
    """Limits for the blocking client: ``perform(Acquire(...))`` blocks until a slot is free."""

    def __init__(self, limits: Mapping[str, ProviderLimits]) -> None:
        self._providers = {name: _ThreadProvider(lim) for name, lim in limits.items() if lim.active}

    @property
    def providers(self) -> frozenset[str]:
        return frozenset(self._providers)

    def acquire(self, step: Acquire) -> Permit:
        entry = self._providers.get(step.provider)
        return Permit() if entry is None else entry.acquire(step)


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

    async def acquire(self, step: Acquire) -> Permit:
        import anyio

        capacity = self.limits.max_images_in_flight
        images = min(step.images, capacity) if capacity else 0
        while True:
            now = time.monotonic()
            wait = self.window.wait(now) if self.window is not None else 0.0
            room = capacity is None or self.in_flight + images <= capacity
            if wait <= 0 and room:
                break
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
        if self.window is not None:
            self.window.starts.append(now)
        self.in_flight += images

        def release() -> None:
            self.in_flight -= images
            self._wake()

        return Permit(release) if images else Permit()


class AnyioLimiter:
    """Limits for the async client: ``await acquire(Acquire(...))`` parks the task until a slot is free.

    Use it from one event loop (its state is not guarded by a lock, as anyio tasks do not preempt).
    """

    def __init__(self, limits: Mapping[str, ProviderLimits]) -> None:
        self._providers = {name: _AnyioProvider(lim) for name, lim in limits.items() if lim.active}

    @property
    def providers(self) -> frozenset[str]:
        return frozenset(self._providers)

    async def acquire(self, step: Acquire) -> Permit:
        entry = self._providers.get(step.provider)
        return Permit() if entry is None else await entry.acquire(step)

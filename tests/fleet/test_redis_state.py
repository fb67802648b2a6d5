"""The shared state on a real Redis: two RedisState objects stand for two workers of a fleet."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import anyio
import pytest

from ideochar.breaker import CircuitBreaker
from ideochar.errors import OverBudget, ProviderUnavailable, StateUnavailable
from ideochar.limits import Acquire, Budget, Ended, ProviderLimits
from ideochar.state import MemoryState, open_state
from ideochar.state.redis import RedisState, ScriptAnswer

TEN = {"ideogram": ProviderLimits(max_images_in_flight=10)}


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def workers(redis_url: str, prefix: str) -> Iterator[tuple[RedisState, RedisState]]:
    first = RedisState(redis_url, prefix=prefix, lease_seconds=0.6)
    second = RedisState(redis_url, prefix=prefix, lease_seconds=0.6)
    yield first, second
    first.close()
    second.close()


def step(images: int = 1, *, quote: str | None = None, wait: float = 0.0) -> Acquire:
    return Acquire("ideogram", images, time.monotonic() + wait, quote_usd=None if quote is None else Decimal(quote))


def limiter(state: RedisState, budget: Budget | None = None, threshold: int = 3, cooldown: float = 30.0) -> object:
    return state.limiter(TEN, providers=["ideogram"], budget=budget, breaker=state.breaker(threshold, cooldown))


def test_images_in_flight_are_counted_across_workers(workers: tuple[RedisState, RedisState]) -> None:
    a, b = (limiter(w) for w in workers)
    held = [a.acquire(step(4)), a.acquire(step(4))]  # type: ignore[attr-defined]
    with pytest.raises(ProviderUnavailable, match="no free slot"):
        b.acquire(step(4, wait=0.05))  # type: ignore[attr-defined]
    assert sum(workers[1].leases("ideogram").values()) == 8
    b.acquire(step(2))  # type: ignore[attr-defined]  # exactly the two images left
    held[0].release(Ended(Decimal(0), fault=False))
    b.acquire(step(4, wait=1.0))  # type: ignore[attr-defined]


def test_a_killed_workers_leases_lapse_within_their_life(workers: tuple[RedisState, RedisState]) -> None:
    dead, alive = workers
    for _ in range(10):
        limiter(dead).acquire(step(1))  # type: ignore[attr-defined]
    dead._closed.set()  # the renewer stops, as when the process is killed
    started = time.monotonic()
    limiter(alive).acquire(step(10, wait=5.0))  # type: ignore[attr-defined]
    waited = time.monotonic() - started
    assert 0.3 < waited < 0.6 + 0.3, f"the dead worker's slots came back after {waited:.2f} s (lease 0.6 s)"


def test_a_renewed_lease_outlives_its_first_life(workers: tuple[RedisState, RedisState]) -> None:
    holder, other = workers
    limiter(holder).acquire(step(10))  # type: ignore[attr-defined]
    time.sleep(1.5)  # two and a half lives, renewed every 0.2 s
    with pytest.raises(ProviderUnavailable):
        limiter(other).acquire(step(1, wait=0.05))  # type: ignore[attr-defined]


def test_the_budget_is_never_passed_when_workers_race(workers: tuple[RedisState, RedisState]) -> None:
    budget = Budget(Decimal("1.50"), "race")
    limiters = [
        w.limiter({}, providers=["ideogram"], budget=budget, breaker=w.breaker(5, 30))
        for w in workers
        for _ in range(4)
    ]
    admitted: list[int] = []
    refused: list[int] = []

    def worker(index: int) -> None:
        for _ in range(10):
            try:
                permit = limiters[index].acquire(step(1, quote="0.10"))
            except OverBudget:
                refused.append(index)
                continue
            admitted.append(index)
            permit.release(Ended(Decimal("0.10"), fault=False))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(limiters))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 15 and len(refused) == 65
    assert workers[0].spent(budget) == (Decimal("1.5"), Decimal(0))


def test_a_reservation_billed_nothing_comes_back_and_an_interrupted_one_stays_spent(
    workers: tuple[RedisState, RedisState],
) -> None:
    budget = Budget(Decimal("0.30"), "settle")
    a = workers[0].limiter({}, providers=["ideogram"], budget=budget, breaker=workers[0].breaker(5, 30))
    a.acquire(step(1, quote="0.20")).release(Ended(Decimal(0), fault=True))  # refused by the vendor: nothing
    a.acquire(step(1, quote="0.20")).release(None)  # interrupted: may have been billed
    assert workers[1].spent(budget) == (Decimal("0.2"), Decimal(0))
    with pytest.raises(OverBudget, match="fleet's budget"):
        a.acquire(step(1, quote="0.20"))


def test_one_workers_faults_open_the_breaker_for_every_worker_and_one_probe_decides(
    workers: tuple[RedisState, RedisState],
) -> None:
    a, b = limiter(workers[0], threshold=3, cooldown=0.3), limiter(workers[1], threshold=3, cooldown=0.3)
    for _ in range(3):
        a.acquire(step(1)).release(Ended(Decimal(0), fault=True))  # type: ignore[attr-defined]
    with pytest.raises(ProviderUnavailable, match="open for the whole fleet"):
        b.acquire(step(1))  # type: ignore[attr-defined]
    assert workers[1].breaker(3, 0.3).why_skipped("ideogram") is not None  # b's view learnt it
    time.sleep(0.35)
    probe = b.acquire(step(1))  # type: ignore[attr-defined]  # half-open: b's attempt is the fleet's probe
    with pytest.raises(ProviderUnavailable, match="probe is in flight"):
        a.acquire(step(1))  # type: ignore[attr-defined]
    probe.release(Ended(Decimal(0), fault=False))
    a.acquire(step(1)).release(Ended(Decimal(0), fault=False))  # type: ignore[attr-defined]  # closed for all


def test_only_the_fleets_probe_closes_its_breaker_not_an_attempt_admitted_before_it_opened(
    workers: tuple[RedisState, RedisState],
) -> None:
    a, b = limiter(workers[0], threshold=2, cooldown=0.3), limiter(workers[1], threshold=2, cooldown=0.3)
    early = a.acquire(step(1))  # type: ignore[attr-defined]  # sent while the breaker was closed
    for _ in range(2):
        b.acquire(step(1)).release(Ended(Decimal(0), fault=True))  # type: ignore[attr-defined]
    early.release(Ended(Decimal(0), fault=False))  # it succeeds after the breaker opened
    with pytest.raises(ProviderUnavailable, match="open for the whole fleet"):
        b.acquire(step(1))  # type: ignore[attr-defined]
    time.sleep(0.35)
    late = a.acquire(step(1))  # type: ignore[attr-defined]  # the probe
    with pytest.raises(ProviderUnavailable, match="probe is in flight"):
        b.acquire(step(1))  # type: ignore[attr-defined]
    late.release(Ended(Decimal(0), fault=False))
    b.acquire(step(1)).release(Ended(Decimal(0), fault=False))  # type: ignore[attr-defined]  # closed for all


def test_the_routers_view_counts_no_outcome_twice(workers: tuple[RedisState, RedisState]) -> None:
    """The release script records each outcome; the router's own ``record`` must not count it again."""
    breaker = workers[0].breaker(3, 30.0)
    shared = workers[0].limiter(TEN, providers=["ideogram"], budget=None, breaker=breaker)
    for _ in range(2):
        shared.acquire(step(1)).release(Ended(Decimal(0), fault=True))
        breaker.record("ideogram", ProviderUnavailable("down"))  # as the router does after each attempt
    assert breaker.why_skipped("ideogram") is None and breaker.state("ideogram") == "closed"
    shared.acquire(step(1)).release(Ended(Decimal(0), fault=True))
    assert breaker.state("ideogram") == "open"


def test_the_routers_view_reads_redis_times_on_this_machines_clock() -> None:
    """Redis's clock may be far from ours: the view keeps how long ago, not Redis's own time."""
    reply = [b"open", 1200, 3, 999_700, -1, 1_000_000, 0]  # opened 300 ms before Redis's "now"
    answer = ScriptAnswer.of(reply, clock=lambda: 5000.0)
    assert answer.record.opened_at == pytest.approx(4999.7) and answer.record.probe_until is None
    assert answer.at == 1000.0 and answer.opened == pytest.approx(999.7) and not answer.probe


def test_the_shared_breaker_follows_the_in_process_rules(workers: tuple[RedisState, RedisState]) -> None:
    """The same outcomes, fed to the script and to the in-process breaker, open and close them alike."""
    outcomes = [True, True, False, True, True, True, False, True, True, True]
    local = CircuitBreaker(3, 30.0)
    shared = limiter(workers[0], threshold=3, cooldown=30.0)
    for fault in outcomes:
        shared_open = False
        try:
            shared.acquire(step(1)).release(Ended(Decimal(0), fault=fault))  # type: ignore[attr-defined]
        except ProviderUnavailable:
            shared_open = True
        assert shared_open == (local.state("ideogram") == "open")
        if not shared_open:
            local.record("ideogram", ProviderUnavailable("down") if fault else None)


def test_an_unreachable_redis_admits_nothing_unless_told_to_fall_back() -> None:
    down = "redis://127.0.0.1:9/0"  # the discard port: nothing answers
    closed = RedisState(down, socket_timeout_seconds=0.5)
    with pytest.raises(StateUnavailable, match="nothing was sent"):
        limiter(closed).acquire(step(1))  # type: ignore[attr-defined]
    local = RedisState(down, fallback="local", socket_timeout_seconds=0.5)
    permit = limiter(local).acquire(step(1))  # type: ignore[attr-defined]
    permit.release(Ended(Decimal(0), fault=False))
    with pytest.raises(StateUnavailable):  # money never falls back
        limiter(local, Budget(Decimal(1))).acquire(step(1, quote="0.1"))  # type: ignore[attr-defined]


def test_the_async_limiter_shares_the_same_state(workers: tuple[RedisState, RedisState]) -> None:
    async def main() -> list[int]:
        shared = workers[0].async_limiter(TEN, providers=["ideogram"], budget=None, breaker=workers[0].breaker(5, 30))
        permits = [await shared.acquire(step(5)) for _ in range(2)]
        blocked = workers[1].limiter(TEN, providers=["ideogram"], budget=None, breaker=workers[1].breaker(5, 30))
        with pytest.raises(ProviderUnavailable):
            blocked.acquire(step(1, wait=0.05))
        for permit in permits:
            permit.release(Ended(Decimal(0), fault=False))
        await workers[0].aclose()
        return list(workers[1].leases("ideogram").values())

    assert anyio.run(main) == []


def test_open_state_chooses_the_backend(redis_url: str) -> None:
    assert isinstance(open_state(None), MemoryState) and isinstance(open_state("memory"), MemoryState)
    state = open_state(redis_url)
    assert isinstance(state, RedisState) and state.shared
    state.close()

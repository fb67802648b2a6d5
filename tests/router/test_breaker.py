"""The circuit breaker: consecutive faults open it, a cooldown passes, one probe closes it again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from ideochar import ContentFiltered, Generate, ProviderUnavailable, RateLimited
from ideochar.breaker import CircuitBreaker
from ideochar.limits import Acquire, ProviderLimits, ThreadLimiter

from .conftest import MakeClient
from .fakes import FakeProvider, FakeVendors


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unavailable() -> ProviderUnavailable:
    return ProviderUnavailable("down", provider="alpha")


def test_consecutive_faults_open_the_breaker_and_a_success_resets_the_count() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=10, clock=clock)
    breaker.record("alpha", unavailable())
    breaker.record("alpha", unavailable())
    breaker.record("alpha", None)
    breaker.record("alpha", unavailable())
    breaker.record("alpha", unavailable())
    assert breaker.state("alpha") == "closed"
    assert breaker.record("alpha", unavailable()) == "open"
    allowed, why = breaker.acquire("alpha")
    assert not allowed and why is not None and "3 consecutive failures" in why
    assert breaker.state("beta") == "closed"


def test_after_the_cooldown_one_probe_goes_through_and_its_success_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, clock=clock)
    breaker.record("alpha", unavailable())
    clock.now += 9.9
    assert breaker.acquire("alpha")[0] is False
    clock.now += 0.2
    assert breaker.state("alpha") == "half_open"
    assert breaker.acquire("alpha") == (True, None)
    allowed, why = breaker.acquire("alpha")  # a second caller while the probe is out
    assert not allowed and why is not None and "probe" in why
    assert breaker.record("alpha", None) == "closed"
    assert breaker.acquire("alpha") == (True, None)


def test_a_failed_probe_opens_the_breaker_for_another_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=5, clock=clock)
    breaker.record("alpha", unavailable())
    breaker.record("alpha", unavailable())
    clock.now += 6
    assert breaker.acquire("alpha")[0]
    assert breaker.record("alpha", unavailable()) == "open"
    clock.now += 4
    assert not breaker.acquire("alpha")[0]
    clock.now += 2
    assert breaker.acquire("alpha")[0]


def test_a_success_of_an_attempt_let_through_before_the_breaker_opened_leaves_it_open() -> None:
    """An attempt sent while the breaker was closed may finish after it opened: only the probe closes it."""
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, clock=clock)
    early = clock()
    clock.now += 1
    breaker.record("alpha", unavailable())
    breaker.record("alpha", unavailable())
    assert breaker.record("alpha", None, admitted_at=early) == "open"
    assert not breaker.acquire("alpha")[0]
    clock.now += 10
    probe = clock()
    assert breaker.acquire("alpha") == (True, None)
    assert breaker.record("alpha", None, admitted_at=early) == "half_open"  # still: the probe decides
    assert not breaker.acquire("alpha")[0]
    assert breaker.record("alpha", None, admitted_at=probe) == "closed"


def test_a_step_that_waited_for_a_slot_is_not_sent_once_the_breaker_opened() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=30)
    limiter = ThreadLimiter({"alpha": ProviderLimits(max_images_in_flight=1)}, breaker=breaker)
    held = limiter.acquire(Acquire("alpha", 1, None))
    refused: list[ProviderUnavailable] = []

    def queued() -> None:
        try:
            limiter.acquire(Acquire("alpha", 1, time.monotonic() + 5)).release()
        except ProviderUnavailable as exc:
            refused.append(exc)

    waiter = threading.Thread(target=queued)
    waiter.start()
    time.sleep(0.05)
    breaker.record("alpha", unavailable())  # the attempt holding the slot fails: open
    held.release()
    waiter.join(5)
    assert len(refused) == 1 and "opened while this attempt waited" in str(refused[0]) and not refused[0].sent
    limiter.acquire(Acquire("alpha", 1, None)).release()  # a step that did not wait: the router asked already


def test_a_lost_probe_frees_the_slot_after_a_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=5, clock=clock)
    breaker.record("alpha", unavailable())
    clock.now += 5
    assert breaker.acquire("alpha")[0]
    clock.now += 5  # the probe never reported back
    assert breaker.acquire("alpha")[0]


@pytest.mark.parametrize("error", [ContentFiltered("no"), RateLimited("slow down")])
def test_errors_that_are_not_the_providers_fault_do_not_count(error: Exception) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=5, clock=Clock())
    breaker.record("alpha", error)
    assert breaker.state("alpha") == "closed"


def test_the_router_skips_an_open_provider_without_sending_and_probes_after_the_cooldown(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=30, clock=clock)
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"), breaker=breaker)
    down = httpx.Response(503, headers={"x-request-id": "r"})
    vendors["alpha"].submits = [down, down]
    assert client.generate("one", reference).provider == "beta"
    assert client.generate("two", reference).provider == "beta"
    assert vendors["alpha"].posts == 2 and breaker.state("alpha") == "open"

    request = client.build_request(Generate(), "three", reference)
    chosen = client.plan(request)
    assert [c.name for c in chosen.candidates] == ["beta"]
    assert "circuit open" in chosen.skipped["alpha"]
    assert client.generate("three", reference).provider == "beta"
    assert vendors["alpha"].posts == 2  # skipped: no network cost

    clock.now += 31  # alpha is back; the next request probes it and closes the breaker
    assert client.generate("four", reference).provider == "alpha"
    assert breaker.state("alpha") == "closed" and vendors["alpha"].posts == 3


def test_when_every_breaker_is_open_nothing_is_sent(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=60, clock=Clock())
    breaker.record("alpha", unavailable())
    client = make_client(FakeProvider("alpha"), breaker=breaker)
    with pytest.raises(ProviderUnavailable) as caught:
        client.generate("x", reference)
    assert "circuit breaker" in str(caught.value) and not caught.value.sent
    assert vendors.calls == 0

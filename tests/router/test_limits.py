"""Per-provider limits: images in flight and requests per minute, in both drivers' worlds."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest

from ideochar import ProviderUnavailable
from ideochar.limits import Acquire, AnyioLimiter, ProviderLimits, ThreadLimiter, limits_for

from .conftest import MakeAsyncClient, MakeClient
from .fakes import FakeProvider, FakeVendors


def test_declared_limits_are_overridden_by_configuration() -> None:
    info = FakeProvider("alpha", in_flight=10, rpm=5).info
    assert limits_for(info) == ProviderLimits(max_images_in_flight=10, requests_per_minute=5)
    assert limits_for(info, {"requests_per_minute": 60}) == ProviderLimits(10, 60)
    assert limits_for(FakeProvider("beta").info) is None


def test_a_rate_window_makes_the_next_request_wait() -> None:
    limiter = ThreadLimiter({"alpha": ProviderLimits(requests_per_minute=2, window_seconds=0.3)})
    started = time.monotonic()
    for _ in range(3):
        limiter.acquire(Acquire("alpha", 1, None)).release()
    assert time.monotonic() - started >= 0.29


def test_waiting_for_a_slot_counts_against_the_deadline() -> None:
    limiter = ThreadLimiter({"alpha": ProviderLimits(max_images_in_flight=1)})
    held = limiter.acquire(Acquire("alpha", 1, None))
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as caught:
        limiter.acquire(Acquire("alpha", 1, time.monotonic() + 0.2))
    assert 0.15 <= time.monotonic() - started < 1.0
    assert caught.value.sent is False and caught.value.provider == "alpha"
    held.release()
    limiter.acquire(Acquire("alpha", 1, time.monotonic() + 0.2)).release()


def test_a_call_larger_than_the_capacity_waits_for_all_of_it_instead_of_forever() -> None:
    limiter = ThreadLimiter({"alpha": ProviderLimits(max_images_in_flight=4)})
    permit = limiter.acquire(Acquire("alpha", 8, time.monotonic() + 1))
    with pytest.raises(ProviderUnavailable):
        limiter.acquire(Acquire("alpha", 1, time.monotonic() + 0.05))
    permit.release()
    permit.release()  # idempotent
    limiter.acquire(Acquire("alpha", 4, time.monotonic() + 0.05)).release()


@pytest.mark.anyio
async def test_the_async_limiter_parks_tasks_until_a_slot_is_free() -> None:
    limiter = AnyioLimiter({"alpha": ProviderLimits(max_images_in_flight=2)})
    busy, peak = 0, 0

    async def job() -> None:
        nonlocal busy, peak
        permit = await limiter.acquire(Acquire("alpha", 1, time.monotonic() + 5))
        busy += 1
        peak = max(peak, busy)
        await anyio.sleep(0.02)
        busy -= 1
        permit.release()

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(job)
    assert peak == 2


def test_threads_sharing_a_client_keep_to_the_images_in_flight_limit(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].delay_seconds = 0.03
    vendors["alpha"].running_polls = 2
    client = make_client(FakeProvider("alpha", in_flight=2))
    results = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(client.generate("x", reference))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 5
    assert vendors.max_in_flight == 2


@pytest.mark.anyio
async def test_a_concurrent_fan_out_keeps_to_the_images_in_flight_limit(
    make_async_client: MakeAsyncClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].delay_seconds = 0.02
    vendors["alpha"].running_polls = 2
    async with make_async_client(FakeProvider("alpha", in_flight=3)) as client:
        result = await client.generate("x", reference, num_images=7, seed=1)
    assert len(result.images) == 7 and not result.failures
    assert vendors.max_in_flight == 3


def test_declared_limits_do_not_apply_against_the_emulator_but_configured_ones_do(make_client: MakeClient) -> None:
    provider = FakeProvider("alpha", rpm=5)
    assert make_client(provider).limiter.providers == {"alpha"}
    assert make_client(provider, emulator="http://127.0.0.1:9").limiter.providers == frozenset()
    configured = make_client(provider, emulator="http://127.0.0.1:9", limits={"alpha": {"requests_per_minute": 50}})
    assert configured.limiter.providers == {"alpha"}

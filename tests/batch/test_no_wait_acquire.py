"""What a batch relies on to ask "is there a slot now?": an ``Acquire`` whose deadline has already passed
is answered at once by both limiters, with a slot or a refusal (never a wait); a rate window counts the
same way."""

from __future__ import annotations

import time

import anyio
import pytest

from ideochar.errors import ProviderUnavailable
from ideochar.limits import Acquire, AnyioLimiter, ProviderLimits, ThreadLimiter


def test_the_blocking_limiter_answers_at_once_when_full() -> None:
    limiter = ThreadLimiter({"fal": ProviderLimits(max_images_in_flight=2)})
    first = limiter.acquire(Acquire("fal", 2, time.monotonic()))
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="no free slot at fal") as caught:
        limiter.acquire(Acquire("fal", 1, time.monotonic()))
    assert time.monotonic() - started < 0.5
    assert caught.value.sent is False
    first.release()
    limiter.acquire(Acquire("fal", 1, time.monotonic())).release()


def test_the_async_limiter_answers_at_once_when_full_and_counts_the_rate_window() -> None:
    async def main() -> None:
        limiter = AnyioLimiter({"segmind": ProviderLimits(requests_per_minute=2, window_seconds=60)})
        for _ in range(2):
            (await limiter.acquire(Acquire("segmind", 1, time.monotonic()))).release()
        with anyio.fail_after(0.5), pytest.raises(ProviderUnavailable, match="rate limit"):
            await limiter.acquire(Acquire("segmind", 1, time.monotonic()))

    anyio.run(main)


def test_an_unlimited_provider_always_has_room() -> None:
    limiter = ThreadLimiter({"fal": ProviderLimits(max_images_in_flight=1)})
    permits = [limiter.acquire(Acquire("replicate", 8, time.monotonic())) for _ in range(10)]
    assert len(permits) == 10

"""When to wait and for how long. Deciding *whether* to repeat lives in the router and exchanges:
only what provably did not start (connect errors, 429 before admission) is ever sent again."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping

from ideochar._constants import INITIAL_RETRY_DELAY_SECONDS, MAX_RETRY_DELAY_SECONDS

__all__ = ["backoff_seconds", "parse_retry_after"]


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or HTTP date), or Segmind's
    ``x-rate-limit-reset-at-utc``; None when absent or unreadable. Never negative."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    for name in ("retry-after", "x-rate-limit-reset-at-utc"):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            try:
                from datetime import datetime, timezone

                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                when = parsed.timestamp()
            except ValueError:
                continue
        return max(0.0, when - (time.time() if now is None else now))
    return None


def backoff_seconds(
    attempt: int, *, initial: float = INITIAL_RETRY_DELAY_SECONDS, cap: float = MAX_RETRY_DELAY_SECONDS
) -> float:
    """Jittered exponential backoff for the ``attempt``-th retry (1-based): within [75%, 100%] of the step."""
    step = min(initial * (2.0 ** max(0, attempt - 1)), cap)
    return step * (1.0 - 0.25 * random.random())

"""Hypothesis settings for this suite, applied per test (``@fuzz_settings``), never loaded globally:
other folders' property tests keep their own settings.

``fast`` (``make test``): few examples, derandomised, so CI is reproducible. ``thorough`` (``make
reliability``, ``IDEOCHAR_RELIABILITY=1``): many random examples. ``IDEOCHAR_HYPOTHESIS_PROFILE``
picks one explicitly, and ``IDEOCHAR_FUZZ_EXAMPLES`` overrides the count (the report records both).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: Set (to anything but "" or "0") by ``make reliability``.
RELIABILITY = os.environ.get("IDEOCHAR_RELIABILITY", "") not in ("", "0")
PROFILE = os.environ.get("IDEOCHAR_HYPOTHESIS_PROFILE", "thorough" if RELIABILITY else "fast")

_EXAMPLES = {"fast": 40, "thorough": 500}
EXAMPLES = int(os.environ.get("IDEOCHAR_FUZZ_EXAMPLES", "0") or 0) or _EXAMPLES.get(PROFILE, 40)

fuzz_settings = settings(
    max_examples=EXAMPLES,
    derandomize=PROFILE == "fast",
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree; a failure prints its reproducer
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)


def scaled(n: int) -> settings:
    """The suite's settings with ``n`` times fewer examples (for tests that are slow per example)."""
    return settings(fuzz_settings, max_examples=max(5, EXAMPLES // n))

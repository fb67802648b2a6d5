"""How long a request would take at each provider, for ``ideochar quote``: seen, else declared.

What your own journal has seen is the best guess (your network, your region, the vendor's load this
month): the median time of the provider's last successful calls, submission to downloaded image, from
jobs run against the vendors (emulated ones are not the vendor's time). A provider with no history
falls back to the time its vendor documents (:attr:`~ideochar.spec.ProviderInfo.typical_seconds`);
with neither, the time is unknown and shown as such. Reading the journal sends nothing.

A fanned-out request runs its calls together, so it takes about one call's time, more only when the
provider's declared concurrency makes the calls wait for each other.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ideochar.request import CharacterRequest
from ideochar.spec import Provider, Quote

if TYPE_CHECKING:
    from ideochar.journal import JobRecord, Journal

logger = logging.getLogger("ideochar.cli")

__all__ = ["Estimate", "estimates", "observed_seconds"]

#: How many of a provider's recent successful calls the median is taken over.
_RECENT_CALLS = 20
#: How many recent jobs are read to find them.
_RECENT_JOBS = 200


@dataclass(frozen=True)
class Estimate:
    seconds: float
    source: Literal["seen", "declared"]
    """``seen``: the median of your journal's recent calls; ``declared``: the vendor's documented time."""
    samples: int = 0


def observed_seconds(journal_at: str | Path | None, request: CharacterRequest) -> dict[str, tuple[float, int]]:
    """Per provider, the median seconds of its recent successful calls and how many there were.

    ``journal_at`` is the configured journal: a SQLite file (none yet: nothing seen), or a PostgreSQL URL
    (a database that cannot be read now only costs the estimate: the quote goes on without it). Calls of
    the same operation and speed are preferred; a provider with none of those uses all its calls.
    """
    if journal_at is None or (isinstance(journal_at, Path) and not journal_at.is_file()):
        return {}
    from ideochar.journal import Journal

    try:
        jobs = _recent_jobs(Journal(journal_at))
    except Exception:  # the shared database is down or refuses us: no history, not a failed quote
        logger.warning("could not read the journal at %s for the times seen", journal_at, exc_info=True)
        return {}
    same: dict[str, list[float]] = {}
    other: dict[str, list[float]] = {}
    for job in jobs:
        if job.emulated:
            continue
        alike = job.operation == request.operation_name and job.request.get("speed") == request.speed
        for attempt in job.attempts:
            if attempt.status != "succeeded" or attempt.finished_at is None:
                continue
            took = (attempt.finished_at - attempt.started_at).total_seconds()
            (same if alike else other).setdefault(attempt.provider, []).append(took)
    found: dict[str, tuple[float, int]] = {}
    for provider in set(same) | set(other):
        times = (same.get(provider) or other.get(provider) or [])[:_RECENT_CALLS]
        if times:
            found[provider] = (statistics.median(times), len(times))
    return found


def _recent_jobs(journal: Journal) -> list[JobRecord]:
    with journal:
        return journal.jobs(limit=_RECENT_JOBS)


def _waves(quote: Quote, provider: Provider) -> int:
    """How many rounds the calls need when the provider caps the images in flight (1: all together)."""
    cap = provider.info.max_images_in_flight
    if quote.calls <= 1 or not cap:
        return 1
    per_call = max(1, math.ceil(quote.images / quote.calls))
    at_once = max(1, cap // per_call)
    return math.ceil(quote.calls / at_once)


def estimates(
    quotes: Sequence[Quote], providers: Sequence[Provider], journal_at: str | Path | None, request: CharacterRequest
) -> dict[str, Estimate]:
    """The expected time of each quoted request, by provider; a provider with nothing to go on is absent."""
    seen = observed_seconds(journal_at, request)
    by_name: Mapping[str, Provider] = {p.info.name: p for p in providers}
    found: dict[str, Estimate] = {}
    for quote in quotes:
        provider = by_name.get(quote.provider)
        if provider is None or not quote.supported:
            continue
        waves = _waves(quote, provider)
        if quote.provider in seen:
            seconds, samples = seen[quote.provider]
            found[quote.provider] = Estimate(seconds * waves, "seen", samples)
        elif provider.info.typical_seconds is not None:
            found[quote.provider] = Estimate(provider.info.typical_seconds * waves, "declared")
    return found

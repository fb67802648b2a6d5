"""What the two batch drivers share beyond the pure decisions of :mod:`ideochar.batch._core`: the run's
bookkeeping (rows to place again, providers stopped, images in flight per provider, the stall clock) and
the results that need no waiting (held, settled earlier).

:class:`~ideochar.batch._async.AsyncBatch` and :class:`~ideochar.batch._sync.Batch` are the same loop
written twice, once with ``await`` (tasks on one event loop) and once blocking (a dispatcher thread and
a thread per job); every decision they make is taken here or in ``_core``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from ideochar.batch._core import BatchOptions, Placement, RowResult
from ideochar.batch._manifest import Manifest
from ideochar.batch._rows import Row
from ideochar.batch._state import RowState, State
from ideochar.batch._stats import BatchProgress, BatchSummary
from ideochar.errors import IdeocharError, JournalUnavailable, MissingCredentials, ProviderUnavailable
from ideochar.limits import Acquire, Ended
from ideochar.result import CharacterResult

__all__ = ["NOTHING_SENT", "POLL_SECONDS", "BatchBase", "NothingBilled"]

#: How a permit ends when its row's job was never started (another run claimed the row, the cap refused it).
NOTHING_SENT = Ended(spent_usd=Decimal(0), fault=False)
#: Longest pause before offering a row again when no provider had room (a rate window may open sooner
#: than any job ends; a limiter shared with other work frees room this batch does not hear of).
POLL_SECONDS = 0.25


class NothingBilled(ProviderUnavailable):
    """A picked-up job that ended with nothing and cost nothing (its journal says so): placed again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=False, billed="no")


class BatchBase:
    """The state of one batch run that both drivers keep the same way."""

    def __init__(
        self,
        client: Any,
        rows: Iterable[Row],
        options: BatchOptions,
        *,
        total: int | None = None,
        compact: Iterable[Row] | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.progress = BatchProgress(total=total, cap=options.max_cost_usd)
        self._rows: Iterator[Row] = iter(rows)
        self._compact = compact
        self._retry: deque[tuple[Row, int]] = deque()
        self._stopped: dict[str, str] = {}
        """Providers this batch no longer sends to (a refused key, no credit), with why."""
        self._images: dict[str, int] = {}
        """Images this batch has in flight per provider."""
        self._ceilings: dict[str, int] = {}
        self._active = 0
        """Jobs (and pick-ups) of this run in flight."""
        self._stop: str | None = None
        self._last_progress = time.monotonic()
        self._state: State | None = None
        self._manifest = Manifest(options.out) if options.out is not None else None
        self._summary: BatchSummary | None = None
        self._in_flight_keys: set[str] = set()
        """Rows this run is serving now: an identical row met meanwhile waits for it (two identical rows
        are one row). As many as there are jobs in flight."""
        self._duplicates: dict[str, list[Row]] = {}

    @property
    def summary(self) -> BatchSummary:
        """How the run ended (so far, while it runs)."""
        if self._summary is not None:
            return self._summary
        return self.progress.summary(self.options.name, emulated=self._emulated, stopped=self._stop)

    def _finish_summary(self) -> None:
        self._summary = self.progress.summary(self.options.name, emulated=self._emulated, stopped=self._stop)

    @property
    def _emulated(self) -> bool:
        return bool(self.client._emulator)

    def _next(self) -> tuple[Row, int] | None:
        """The next row to place: one to place again first, then the file's next."""
        if self._retry:
            return self._retry.popleft()
        row = next(self._rows, None)
        return None if row is None else (row, 0)

    def _open_state(self) -> State:
        from ideochar._owner import Owner
        from ideochar.errors import InvalidRequest

        journal = self.client.journal
        if journal is None:
            raise InvalidRequest.for_field(
                "journal", "a batch needs the journal: it is how a stopped batch picks up where it stopped"
            )
        self._ceilings = self._limits()
        self._state = State(journal.url or journal.path, self.options.name, Owner.current())
        self.progress.committed = self._state.committed()
        return self._state

    def _close(self) -> None:
        if self._manifest is not None:
            self._manifest.close()
        if self._state is not None:
            self._state.close()

    def _compact_manifest(self) -> None:
        if self._manifest is not None and self._compact is not None and self._state is not None:
            self._manifest.compact(self._compact, self._state)

    # -- room, money, stalls ---------------------------------------------------------------------------

    @staticmethod
    def _asking(placement: Placement, images: int) -> Acquire:
        """ "Is there a slot at the placement's provider now?": an :class:`~ideochar.limits.Acquire` whose
        deadline has already passed, so every limiter (this process's, or a fleet's shared state) answers
        at once with a slot or a refusal; with the job's quote, which the client's own budget (when it has
        one) reserves as it does for the router's attempts."""
        return Acquire(placement.name, images, time.monotonic(), quote_usd=placement.chosen.quote.total_usd)

    def _room(self, provider: str, images: int) -> bool:
        """Within this batch's ceiling of images in flight at ``provider`` (one job always fits alone)."""
        busy = self._images.get(provider, 0)
        return not busy or busy + images <= self._ceilings.get(provider, self.options.in_flight)

    def _remaining(self, existing: RowState | None) -> Decimal | None:
        """What is left of the cap (None: no cap); for a claim made earlier, what it reserved."""
        cap = self.options.max_cost_usd
        if cap is None:
            return None
        if existing is not None:
            return existing.reserved_usd
        return max(Decimal(0), cap - self.progress.committed)

    def _holding(self) -> bool:
        """Whether jobs of this run hold reservations that may yet come back (they cost less, or nothing)."""
        return self._active > 0

    def _stalled(self, why: str) -> bool:
        """Stop the batch (rows left for the next run) when nothing could be sent for too long."""
        if self._active == 0 and time.monotonic() - self._last_progress > self.options.max_stall_seconds:
            self._stop = f"nothing could be sent for {self.options.max_stall_seconds:.0f} s ({why})"
            return True
        return False

    def _breaker_wait(self) -> float:
        """Seconds until the first paused provider lets a probe through (at least a short pause)."""
        breaker = self.client.breaker
        now = breaker.clock()
        waits = []
        for provider in self.client.providers:
            record = breaker.store.load(provider.info.name)
            if record.opened_at is not None:
                waits.append(record.opened_at + breaker.cooldown_seconds - now)
        return max(0.05, min(waits, default=POLL_SECONDS))

    def _limits(self) -> dict[str, int]:
        """Each provider's ceiling of images in flight: its limit (declared or configured), else the batch's."""
        limits = self.client._provider_limits()
        ceilings: dict[str, int] = {}
        for provider in self.client.providers:
            found = limits.get(provider.info.name)
            cap = found.max_images_in_flight if found is not None else None
            ceilings[provider.info.name] = cap or self.options.in_flight
        return ceilings

    def _started(self, provider: str | None, images: int) -> None:
        self._active += 1
        self._last_progress = time.monotonic()
        self.progress.started_on(provider)
        if provider is not None:
            self._images[provider] = self._images.get(provider, 0) + images

    def _ended(self, provider: str | None, images: int) -> None:
        self._active -= 1
        self._last_progress = time.monotonic()
        self.progress.ended_on(provider)
        if provider is not None:
            self._images[provider] -= images

    def _priced(self, job_id: str, result: CharacterResult) -> CharacterResult:
        """A picked-up job's result with its cost: images read back from the output folder carry none, and
        the journal has what each of the job's attempts cost (what a vendor would charge, emulated)."""
        if result.cost_usd is not None:
            return result
        journal = self.client.journal
        assert journal is not None
        record = journal.job(job_id)
        cost = record.emulated_cost_usd if record.emulated else record.spent_usd
        return result.model_copy(update={"cost_usd": cost, "cost_source": "price_table"})

    def _maybe_billed(self, job_id: str) -> bool:
        """Whether any attempt of the job may have cost money (its journal record)."""
        journal = self.client.journal
        assert journal is not None
        record = journal.job(job_id)
        return any(a.status == "succeeded" or a.billed in ("yes", "unknown") for a in record.attempts)

    @staticmethod
    def _fatal(error: IdeocharError) -> bool:
        """Not the row's fault: every row would meet it (no key at all, a refused configuration, a journal
        that cannot write), so the batch stops instead of failing each row alike."""
        from ideochar.config import ConfigError

        return isinstance(error, (MissingCredentials, JournalUnavailable, ConfigError))

    # -- identical rows ------------------------------------------------------------------------------

    def _duplicate(self, row: Row) -> bool:
        """Park ``row`` when an identical one is being served by this run (it is reported with it)."""
        if row.key not in self._in_flight_keys:
            return False
        self._duplicates.setdefault(row.key, []).append(row)
        return True

    def _serving(self, row: Row) -> None:
        self._in_flight_keys.add(row.key)

    def _served(self, outcome: RowResult) -> list[RowResult]:
        """The row is reported: the identical rows that waited for it, reported with its outcome."""
        self._in_flight_keys.discard(outcome.key)
        record = outcome.to_json()
        return [
            RowResult.from_json({**record, "id": twin.label}, row=twin.number, earlier=True)
            for twin in self._duplicates.pop(outcome.key, [])
        ]

    # -- results that need no waiting ------------------------------------------------------------------

    def _held(self, row: Row, found: RowState, why: str | None = None) -> RowResult:
        return RowResult(
            row=row.number,
            key=row.key,
            status="held",
            label=row.label,
            job_id=found.job_id,
            error=why or f"{found.holder} runs this row now; it is not sent twice",
            error_type="JobBusy",
            earlier=True,
            emulated=self._emulated,
        )

    @staticmethod
    def _earlier(row: Row, found: RowState) -> RowResult:
        if found.record is None:
            return RowResult(row=row.number, key=row.key, status="failed", label=row.label, earlier=True)
        return RowResult.from_json(found.record, row=row.number, earlier=True)

    def _count(self, outcome: RowResult, cost: Decimal | None) -> None:
        self.progress.settled(
            outcome.status,
            provider=outcome.provider,
            images=len(outcome.files),
            cost=cost if cost is not None else outcome.cost_usd,
            seconds=outcome.seconds,
            earlier=outcome.earlier,
        )

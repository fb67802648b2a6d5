"""The batch driven by the blocking :class:`~ideochar.client.Client`: the same loop as the async driver
(:mod:`ideochar.batch._async`), on a dispatcher thread, with each job on a thread of its own.

Only the dispatcher touches the batch's bookkeeping, its state and its manifest: a job's thread runs the
job (``Client._drive_job``, or ``Client.resume`` for a pick-up), writes its images and posts how it ended
to the dispatcher's inbox; the dispatcher settles it, reports it, and, while it waits for room, reads the
inbox (a job ending is what frees room). The caller's thread iterates the results as they come.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ideochar.batch._base import NOTHING_SENT, POLL_SECONDS, BatchBase, NothingBilled
from ideochar.batch._core import (
    BatchOptions,
    Placement,
    RowResult,
    SavedFile,
    ended,
    failed,
    options_for,
    permit_end,
    refusal,
    shape,
    state_status,
    stops_provider,
    worth_retrying,
    write_images,
)
from ideochar.batch._manifest import invalid_result
from ideochar.batch._rows import Row
from ideochar.batch._state import RowState
from ideochar.errors import IdeocharError, JobBusy, OverBudget, ProviderUnavailable
from ideochar.limits import Ended, Permit
from ideochar.result import CharacterResult

if TYPE_CHECKING:
    from types import TracebackType

    from ideochar.batch._stats import BatchSummary
    from ideochar.client import Client

__all__ = ["Batch"]

_BUFFER = 256
_END = object()


@dataclass
class _Done:
    """A job's thread's report: the row, how the job went, and what the dispatcher needs to settle it."""

    row: Row
    tries: int
    job_id: str
    reserve: Decimal
    seconds: float
    provider: str | None
    images: int
    pickup: RowState | None = None
    result: CharacterResult | None = None
    files: tuple[SavedFile, ...] = ()
    error: IdeocharError | None = None
    crash: BaseException | None = None


class Batch(BatchBase):
    """Rows served as :class:`~ideochar.client.Client` jobs on threads; results as they finish.

    Build it with :meth:`Client.batch <ideochar.client.Client.batch>`::

        with client.batch(rows, out="out/", max_cost_usd=20) as batch:
            for row in batch:
                print(row.row, row.status, row.provider, row.cost_usd)
        print(batch.summary)

    Leaving the block early stops sending: the jobs in flight run to their end on their threads (a
    blocking job cannot be cut short) and are settled; running the batch again picks up any that were not.
    """

    client: Client

    def __init__(
        self,
        client: Client,
        rows: Iterable[Row],
        options: BatchOptions,
        *,
        total: int | None = None,
        compact: Iterable[Row] | None = None,
    ) -> None:
        super().__init__(client, rows, options, total=total, compact=compact)
        self._results: queue.Queue[Any] = queue.Queue(_BUFFER)
        self._inbox: queue.Queue[_Done] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._leaving = threading.Event()
        self._pickups = 0

    # -- the caller's side ---------------------------------------------------------------------------

    def __enter__(self) -> Batch:
        self._thread = threading.Thread(target=self._main, name="ideochar-batch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._leaving.set()
        if kind is None and self._thread is not None:
            for _ in self:  # a caller that stopped reading early: let the dispatcher finish
                pass
            self._thread.join()

    def __iter__(self) -> Iterator[RowResult]:
        while True:
            item = self._results.get()
            if item is _END:
                self._results.put(_END)  # a second iteration ends at once too
                return
            if isinstance(item, BaseException):
                self._results.put(_END)
                raise item
            yield item

    def run(self) -> BatchSummary:
        """Run every row, discarding the results (the manifest has them); the summary."""
        with self:
            for _ in self:
                pass
        return self.summary

    # -- the dispatcher thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._open_state()
            try:
                self._loop()
                self._compact_manifest()
            finally:
                while self._active:  # jobs in flight are settled before the rows they hold are let go
                    self._receive(None)
                self._finish_summary()
                self._close()
        except BaseException as exc:
            self._results.put(exc)
        self._results.put(_END)

    def _loop(self) -> None:
        while self._stop is None and not self._leaving.is_set():
            self._drain()
            item = self._next()
            if item is None:
                if self._active == 0:
                    return
                self._receive(None)
                continue
            self._dispatch(*item)

    def _dispatch(self, row: Row, tries: int) -> None:
        if not row.valid:
            self._emit(invalid_result(row))
            return
        if tries == 0 and self._duplicate(row):
            return
        assert self._state is not None
        found = self._state.look(row.key)
        if found is not None and found.holder is not None:
            self._emit(self._held(row, found))
        elif found is not None and found.settled(retry_failed=self.options.retry_failed):
            self._emit(self._earlier(row, found))
        elif found is not None and found.open:
            self._pick_up(row, found)
        else:
            self._place(row, tries)

    def _place(self, row: Row, tries: int, existing: RowState | None = None) -> None:
        """Offer the row to its providers until one has room now; claim it and start its job."""
        assert row.request is not None
        while self._stop is None and not self._leaving.is_set():
            try:
                plan = self.client.plan(row.request, strict=self.options.strict)
            except ProviderUnavailable as exc:  # every provider that could serve it is paused by its breaker
                if not self._stalled(str(exc)):
                    self._receive(self._breaker_wait())
                continue
            except IdeocharError as exc:
                if self._fatal(exc):
                    raise
                self._refuse(row, exc, existing)
                return
            remaining = self._remaining(existing)
            placements, why = options_for(plan, spill=self.options.spill, remaining=remaining, stopped=self._stopped)
            if why is not None and why.startswith("over_budget") and existing is None and self._holding():
                self._receive(None)
                continue
            if why is not None:
                self._refuse(row, refusal(why), existing)
                return
            taken = self._take_slot(placements, row.request.num_images)
            if isinstance(taken, OverBudget):  # the client's own budget (``budget_usd``) has no room for it
                if existing is None and self._holding():
                    self._receive(None)
                    continue
                self._refuse(row, taken, existing)
                return
            if taken is None:
                if not self._stalled("no provider had a free slot"):
                    self._receive(POLL_SECONDS)
                continue
            if self._claim_and_start(row, tries, *taken, existing):
                return
            self._receive(None)

    def _take_slot(self, placements: list[Placement], images: int) -> tuple[Placement, Permit] | OverBudget | None:
        refused: OverBudget | None = None
        for placement in placements:
            if not self._room(placement.name, images):
                continue
            try:
                permit = self.client.limiter.acquire(self._asking(placement, images))
            except ProviderUnavailable:
                continue
            except OverBudget as exc:
                refused = exc
                continue
            return placement, permit
        return refused

    def _claim_and_start(
        self, row: Row, tries: int, placement: Placement, permit: Permit, existing: RowState | None
    ) -> bool:
        assert self._state is not None and row.request is not None
        if existing is None:
            claim = self._state.claim(
                row.key,
                number=row.number,
                label=row.label,
                job_id=uuid.uuid4().hex,
                reserve=placement.reserve,
                cap=self.options.max_cost_usd,
                retry_failed=self.options.retry_failed,
            )
            self.progress.committed = claim.committed_usd
            if claim.outcome != "claimed" or claim.state is None:
                permit.release(NOTHING_SENT)
                if claim.outcome == "over_budget" and self._holding():
                    return False
                self._claim_refused(row, claim.outcome, claim.state, placement)
                return True
            job_id, reserve = claim.state.job_id, claim.state.reserved_usd
        else:
            job_id, reserve = existing.job_id, existing.reserved_usd
        self._serving(row)
        self._started(placement.name, row.request.num_images)
        self._spawn(self._serve, row, tries, placement, permit, job_id, reserve)
        return True

    def _claim_refused(self, row: Row, outcome: str, found: RowState | None, placement: Placement) -> None:
        if outcome == "over_budget":
            left = self._remaining(None)
            why = f"over_budget: its quote (${placement.reserve}) is more than the ${left} left of the cap"
            self._refuse(row, refusal(why))
        elif outcome == "held" and found is not None:
            self._emit(self._held(row, found))
        elif outcome == "open" and found is not None:
            self._pick_up(row, found)
        elif found is not None:
            self._emit(self._earlier(row, found))

    def _pick_up(self, row: Row, found: RowState) -> None:
        assert self._state is not None
        while self._pickups >= self.options.pickups:
            self._receive(None)
        claim = self._state.take_over(row.key)
        if claim.outcome == "held" and claim.state is not None:
            self._emit(self._held(row, claim.state))
            return
        self._pickups += 1
        self._serving(row)
        self._started(None, 0)
        self._spawn(self._resume, row, found)

    # -- on a job's thread (nothing of the batch's bookkeeping is touched here) ---------------------------

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        threading.Thread(target=target, args=args, name="ideochar-batch-job", daemon=True).start()

    def _serve(self, row: Row, tries: int, placement: Placement, permit: Permit, job_id: str, reserve: Decimal) -> None:
        assert row.request is not None
        started = time.monotonic()
        done = _Done(row, tries, job_id, reserve, 0.0, placement.name, row.request.num_images)
        settled: Ended | None = None  # interrupted: the permit's whole reservation stays spent
        try:
            shaped = shape(placement, capped=self.options.max_cost_usd is not None)
            job = self.client._new_job(row.request, self.options.strict, job_id=job_id, shape=shaped)
            done.result = self.client._drive_job(job)
            settled = permit_end(placement.name, done.result.attempts)
            done.files = write_images(self.options.out, row.key, done.result.images, row.label)
        except IdeocharError as exc:
            done.error = exc
            settled = settled or permit_end(placement.name, exc.attempts)
        except BaseException as exc:  # a bug: the dispatcher raises it to the caller
            done.crash = exc
        finally:
            permit.release(settled)
            done.seconds = time.monotonic() - started
            self._inbox.put(done)

    def _resume(self, row: Row, found: RowState) -> None:
        started = time.monotonic()
        done = _Done(row, 0, found.job_id, found.reserved_usd, 0.0, None, 0, pickup=found)
        try:
            done.result = self._priced(found.job_id, self.client.resume(found.job_id))
            done.files = write_images(self.options.out, row.key, done.result.images, row.label)
        except IdeocharError as exc:
            done.error = exc
        except BaseException as exc:
            done.crash = exc
        finally:
            done.seconds = time.monotonic() - started
            self._inbox.put(done)

    # -- back on the dispatcher ----------------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            try:
                done = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._settle_done(done)

    def _receive(self, timeout: float | None) -> None:
        """Wait for a job to end (up to ``timeout``), then settle every job that has."""
        try:
            done = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self._settle_done(done)
        self._drain()

    def _settle_done(self, done: _Done) -> None:
        from ideochar.journal import JobNotFound

        self._ended(done.provider, done.images)
        if done.pickup is not None:
            self._pickups -= 1
        if done.crash is not None:
            raise done.crash
        if done.error is None:
            assert done.result is not None
            outcome, cost = ended(
                done.row.number,
                done.row.key,
                done.row.label,
                done.job_id,
                done.result,
                done.files,
                seconds=done.seconds,
                reserve=done.reserve,
                emulated=self._emulated,
            )
            self._settle(outcome, cost)
        elif done.pickup is not None and isinstance(done.error, JobNotFound):
            self._place(done.row, 0, existing=done.pickup)  # never begun: sent now under its id (see _async)
        elif done.pickup is not None and isinstance(done.error, JobBusy):
            self._emit(self._held(done.row, done.pickup, str(done.error)))
        elif done.pickup is not None:
            self._unfinished(done)
        else:
            self._failed(done.row, done.tries, done.job_id, done.error, done.seconds, done.reserve)

    def _unfinished(self, done: _Done) -> None:
        from ideochar.job import JobNotResumable

        error = done.error
        assert error is not None
        if isinstance(error, JobNotResumable) and not self._maybe_billed(done.job_id):
            error = NothingBilled(f"job {done.job_id} ended without images and without a charge: {error.message}")
            self._failed(done.row, 0, done.job_id, error, done.seconds, done.reserve)
            return
        self._failed(done.row, self.options.tries, done.job_id, error, done.seconds, done.reserve)

    def _failed(
        self, row: Row, tries: int, job_id: str, error: IdeocharError, seconds: float | None, reserve: Decimal
    ) -> None:
        stop = stops_provider(error)
        if stop is not None:
            self._stopped.setdefault(*stop)
        outcome, cost = failed(
            row.number, row.key, row.label, job_id, error, seconds=seconds, reserve=reserve, emulated=self._emulated
        )
        retry = worth_retrying(error) and tries + 1 < self.options.tries
        self._settle(outcome, cost, report=not retry)
        if retry:
            self._retry.append((row, tries + 1))

    def _settle(self, outcome: RowResult, cost: Decimal, *, report: bool = True) -> None:
        assert self._state is not None
        self.progress.committed = self._state.settle(
            outcome.key, status=state_status(outcome), billed=outcome.billed, cost=cost, record=outcome.to_json()
        )
        if report:
            self._emit(outcome, cost=cost)

    def _refuse(self, row: Row, error: IdeocharError, existing: RowState | None = None) -> None:
        assert self._state is not None
        job_id = existing.job_id if existing is not None else None
        outcome, _ = failed(
            row.number, row.key, row.label, job_id, error, seconds=None, reserve=Decimal(0), emulated=self._emulated
        )
        if existing is not None:  # its job never began (the journal has none): nothing was billed
            self._settle(outcome, Decimal(0))
            return
        self._state.refuse(
            row.key, number=row.number, label=row.label, status=state_status(outcome), record=outcome.to_json()
        )
        self._emit(outcome)

    def _emit(self, outcome: RowResult, *, cost: Decimal | None = None) -> None:
        for each in [outcome, *self._served(outcome)]:
            self._count(each, cost if each is outcome else None)
            if self._manifest is not None:
                self._manifest.append(each)
            self._put(each)

    def _put(self, outcome: RowResult) -> None:
        while True:  # a reader that left (an exception in its block) no longer takes results: the manifest has them
            try:
                self._results.put(outcome, timeout=POLL_SECONDS)
                return
            except queue.Full:
                if self._leaving.is_set():
                    return

"""The batch driven by :class:`~ideochar.client.AsyncClient`: rows placed one by one, jobs run together.

One loop reads rows in order (a row placed again after a failure that sent nothing goes first) and for
each asks the batch's state what to do (:mod:`ideochar.batch._state`): report it (settled earlier, held
by another live process, invalid), pick its job up by id (a run that stopped left it), or place it
(:func:`~ideochar.batch._core.options_for`): the row is offered to its providers in order and the first
with a free slot now takes it (an ``Acquire`` whose deadline has already passed: the client's own
limiter answers at once with a slot or a refusal, and every job of this client, or of the fleet sharing
its state, counts), its quote reserved against the cap in the state before its job exists. Then the job
runs in a task of its own (``AsyncClient._drive_job``), and the loop goes on to the next row. When no
provider has room, the loop waits for a job to end (or a rate window or a breaker's cooldown to pass):
rows are read only as fast as they can be sent, so memory stays flat however long the file is. Writes
to the state, the manifest and the images happen on a worker thread, never on the event loop.
"""

from __future__ import annotations

import functools
import math
import time
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from ideochar.batch._base import NOTHING_SENT, POLL_SECONDS, BatchBase, NothingBilled
from ideochar.batch._core import (
    BatchOptions,
    Placement,
    RowResult,
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

if TYPE_CHECKING:
    from types import TracebackType

    from ideochar.batch._stats import BatchSummary
    from ideochar.client import AsyncClient

__all__ = ["AsyncBatch"]

T = TypeVar("T")
#: Results waiting for a slow reader before the batch pauses (it does not run ahead of its reader).
_BUFFER = 256


class AsyncBatch(BatchBase):
    """Rows served as :class:`~ideochar.client.AsyncClient` jobs; results as they finish.

    Build it with :meth:`AsyncClient.batch <ideochar.client.AsyncClient.batch>`; use it as an async
    context manager and iterate::

        async with client.batch(rows, out="out/", max_cost_usd=20) as batch:
            async for row in batch:
                print(row.row, row.status, row.provider, row.cost_usd)
        print(batch.summary)

    or ``summary = await client.batch(rows).run()``. Leaving the block early stops the batch: jobs in
    flight are released in the journal, and running the batch again picks them up.
    """

    client: AsyncClient

    def __init__(
        self,
        client: AsyncClient,
        rows: Iterable[Row],
        options: BatchOptions,
        *,
        total: int | None = None,
        compact: Iterable[Row] | None = None,
    ) -> None:
        super().__init__(client, rows, options, total=total, compact=compact)
        self._group: Any = None
        self._changed: Any = None
        self._send: Any = None
        self._receive: Any = None
        self._writer: Any = None
        self._pickup_slots: Any = None
        self._finished = False

    # -- the caller's side ---------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncBatch:
        import anyio

        self._send, self._receive = anyio.create_memory_object_stream[RowResult](_BUFFER)
        self._changed = anyio.Event()
        self._writer = anyio.CapacityLimiter(1)
        self._pickup_slots = anyio.Semaphore(max(1, self.options.pickups))
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._main)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        if not self._finished:
            self._group.cancel_scope.cancel()
        try:
            return await self._group.__aexit__(kind, exc, tb)  # type: ignore[no-any-return]
        finally:
            self._receive.close()

    def __aiter__(self) -> AsyncBatch:
        return self

    async def __anext__(self) -> RowResult:
        import anyio

        if self._receive is None:
            raise RuntimeError("use the batch as a context manager: async with client.batch(...) as batch")
        try:
            result: RowResult = await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        return result

    async def run(self) -> BatchSummary:
        """Run every row, discarding the results (the manifest has them); the summary."""
        async with self:
            async for _ in self:
                pass
        return self.summary

    # -- the loop --------------------------------------------------------------------------------------

    async def _main(self) -> None:
        import anyio

        async with self._send:
            await self.client._open_journal()
            try:
                await self._io(self._open_state)
                await self._loop()
                await self._io(self._compact_manifest)
            finally:
                self._finish_summary()
                with anyio.CancelScope(shield=True):  # the rows this run holds are let go, however it ends
                    await self._io(self._close)
                self._finished = True

    async def _loop(self) -> None:
        import anyio

        async with anyio.create_task_group() as jobs:
            while self._stop is None:
                item = self._next()
                if item is None:
                    if self._active == 0:
                        break
                    await self._wait(math.inf)
                    continue
                await self._dispatch(jobs, *item)

    async def _dispatch(self, jobs: Any, row: Row, tries: int) -> None:
        if not row.valid:
            await self._emit(invalid_result(row))
            return
        if tries == 0 and self._duplicate(row):
            return
        assert self._state is not None
        found = await self._io(self._state.look, row.key)
        if found is not None and found.holder is not None:
            await self._emit(self._held(row, found))
        elif found is not None and found.settled(retry_failed=self.options.retry_failed):
            await self._emit(self._earlier(row, found))
        elif found is not None and found.open:
            await self._pick_up(jobs, row, found)
        else:
            await self._place(jobs, row, tries)

    # -- placing a row ---------------------------------------------------------------------------------

    async def _place(self, jobs: Any, row: Row, tries: int, existing: RowState | None = None) -> None:
        """Offer the row to its providers until one has room now; claim it and start its job."""
        assert row.request is not None
        while self._stop is None:
            try:
                plan = self.client.plan(row.request, strict=self.options.strict)
            except ProviderUnavailable as exc:  # every provider that could serve it is paused by its breaker
                if not self._stalled(str(exc)):
                    await self._wait(self._breaker_wait())
                continue
            except IdeocharError as exc:
                if self._fatal(exc):
                    raise
                await self._refuse(row, exc, existing)
                return
            remaining = self._remaining(existing)
            placements, why = options_for(plan, spill=self.options.spill, remaining=remaining, stopped=self._stopped)
            if why is not None and why.startswith("over_budget") and existing is None and self._holding():
                await self._wait(math.inf)  # jobs in flight hold reservations above what they may cost
                continue
            if why is not None:
                await self._refuse(row, refusal(why), existing)
                return
            taken = await self._take_slot(placements, row.request.num_images)
            if isinstance(taken, OverBudget):  # the client's own budget (``budget_usd``) has no room for it
                if existing is None and self._holding():
                    await self._wait(math.inf)
                    continue
                await self._refuse(row, taken, existing)
                return
            if taken is None:
                if not self._stalled("no provider had a free slot"):
                    await self._wait(POLL_SECONDS)
                continue
            if await self._claim_and_start(jobs, row, tries, *taken, existing):
                return
            await self._wait(math.inf)  # over the cap while jobs in flight still hold reservations

    async def _take_slot(
        self, placements: list[Placement], images: int
    ) -> tuple[Placement, Permit] | OverBudget | None:
        """The first placement whose provider has room now (within this batch's ceiling, then the client's
        limiter, which also reserves the quote in the client's own budget when it has one); else the
        budget's refusal when that was the only obstacle, else None."""
        refused: OverBudget | None = None
        for placement in placements:
            if not self._room(placement.name, images):
                continue
            try:
                permit = await self.client.limiter.acquire(self._asking(placement, images))
            except ProviderUnavailable:
                continue
            except OverBudget as exc:
                refused = exc
                continue
            return placement, permit
        return refused

    async def _claim_and_start(
        self, jobs: Any, row: Row, tries: int, placement: Placement, permit: Permit, existing: RowState | None
    ) -> bool:
        """Claim the row and start its job; False when the cap refused it for now (jobs in flight may give
        reservations back: the caller waits and places it again)."""
        assert self._state is not None and row.request is not None
        if existing is None:
            claim = await self._io(
                self._state.claim,
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
                await self._claim_refused(jobs, row, claim.outcome, claim.state, placement)
                return True
            job_id, reserve = claim.state.job_id, claim.state.reserved_usd
        else:
            job_id, reserve = existing.job_id, existing.reserved_usd
        self._serving(row)
        self._started(placement.name, row.request.num_images)
        jobs.start_soon(self._serve, row, tries, placement, permit, job_id, reserve)
        return True

    async def _claim_refused(
        self, jobs: Any, row: Row, outcome: str, found: RowState | None, placement: Placement
    ) -> None:
        """Another run got to the row between the look and the claim, or the cap is reached."""
        if outcome == "over_budget":
            left = self._remaining(None)
            why = f"over_budget: its quote (${placement.reserve}) is more than the ${left} left of the cap"
            await self._refuse(row, refusal(why))
        elif outcome == "held" and found is not None:
            await self._emit(self._held(row, found))
        elif outcome == "open" and found is not None:
            await self._pick_up(jobs, row, found)
        elif found is not None:
            await self._emit(self._earlier(row, found))

    # -- running a job -----------------------------------------------------------------------------

    async def _serve(
        self, row: Row, tries: int, placement: Placement, permit: Permit, job_id: str, reserve: Decimal
    ) -> None:
        assert row.request is not None
        started = time.monotonic()
        settled: Ended | None = None  # interrupted: the permit's whole reservation stays spent
        try:
            shaped = shape(placement, capped=self.options.max_cost_usd is not None)
            job = self.client._new_job(row.request, self.options.strict, job_id=job_id, shape=shaped)
            result = await self.client._drive_job(job)
        except IdeocharError as exc:
            error: IdeocharError | None = exc
            settled = permit_end(placement.name, exc.attempts)
        else:
            error = None
            settled = permit_end(placement.name, result.attempts)
        finally:
            permit.release(settled)
            self._ended(placement.name, row.request.num_images)
            self._signal()
        seconds = time.monotonic() - started
        if error is not None:
            await self._failed(row, tries, job_id, error, seconds, reserve)
            return
        files = await self._io(write_images, self.options.out, row.key, result.images, row.label)
        outcome, cost = ended(
            row.number,
            row.key,
            row.label,
            job_id,
            result,
            files,
            seconds=seconds,
            reserve=reserve,
            emulated=self._emulated,
        )
        await self._settle(outcome, cost)

    async def _failed(
        self, row: Row, tries: int, job_id: str, error: IdeocharError, seconds: float | None, reserve: Decimal
    ) -> None:
        stop = stops_provider(error)
        if stop is not None:
            self._stopped.setdefault(*stop)
        outcome, cost = failed(
            row.number, row.key, row.label, job_id, error, seconds=seconds, reserve=reserve, emulated=self._emulated
        )
        retry = worth_retrying(error) and tries + 1 < self.options.tries
        await self._settle(outcome, cost, report=not retry)
        if retry:
            self._retry.append((row, tries + 1))
            self._signal()

    async def _settle(self, outcome: RowResult, cost: Decimal, *, report: bool = True) -> None:
        assert self._state is not None
        self.progress.committed = await self._io(
            self._state.settle,
            outcome.key,
            status=state_status(outcome),
            billed=outcome.billed,
            cost=cost,
            record=outcome.to_json(),
        )
        if report:
            await self._emit(outcome, cost=cost)

    # -- picking up a row an earlier run left -----------------------------------------------------------

    async def _pick_up(self, jobs: Any, row: Row, found: RowState) -> None:
        assert self._state is not None
        await self._pickup_slots.acquire()
        claim = await self._io(self._state.take_over, row.key)
        if claim.outcome == "held" and claim.state is not None:
            self._pickup_slots.release()
            await self._emit(self._held(row, claim.state))
            return
        self._serving(row)
        self._started(None, 0)
        jobs.start_soon(self._picked_up, jobs, row, found)

    async def _picked_up(self, jobs: Any, row: Row, found: RowState) -> None:
        """Finish the row's job by its id: admitted calls fetched, never sent again (``client.resume``)."""
        from ideochar.journal import JobNotFound

        started = time.monotonic()
        try:
            result = await self.client.resume(found.job_id)
        except IdeocharError as exc:
            error: IdeocharError | None = exc
        else:
            error = None
        finally:
            self._ended(None, 0)
            self._pickup_slots.release()
            self._signal()
        seconds = time.monotonic() - started
        if isinstance(error, JobNotFound):
            # The claim names a job the journal never began (it records a job before sending any of it):
            # nothing of it was sent, so it is sent now, under the same id and reservation.
            await self._place(jobs, row, 0, existing=found)
        elif isinstance(error, JobBusy):
            await self._emit(self._held(row, found, str(error)))
        elif error is not None:
            await self._unfinished(row, found, error, seconds)
        else:
            result = await self._io(self._priced, found.job_id, result)
            files = await self._io(write_images, self.options.out, row.key, result.images, row.label)
            outcome, cost = ended(
                row.number,
                row.key,
                row.label,
                found.job_id,
                result,
                files,
                seconds=seconds,
                reserve=found.reserved_usd,
                emulated=self._emulated,
            )
            await self._settle(outcome, cost)

    async def _unfinished(self, row: Row, found: RowState, error: IdeocharError, seconds: float) -> None:
        """A picked-up job that brought nothing: unknown stays unknown; one that provably cost nothing
        (every attempt billed "no", as its journal says) is placed again."""
        from ideochar.job import JobNotResumable

        if isinstance(error, JobNotResumable) and not await self._io(self._maybe_billed, found.job_id):
            error = NothingBilled(f"job {found.job_id} ended without images and without a charge: {error.message}")
            await self._failed(row, 0, found.job_id, error, seconds, found.reserved_usd)
            return
        await self._failed(row, self.options.tries, found.job_id, error, seconds, found.reserved_usd)

    # -- reporting -----------------------------------------------------------------------------------

    async def _refuse(self, row: Row, error: IdeocharError, existing: RowState | None = None) -> None:
        """Report a row that is not sent, and record why; a claim made earlier gives its reservation back."""
        assert self._state is not None
        job_id = existing.job_id if existing is not None else None
        outcome, _ = failed(
            row.number, row.key, row.label, job_id, error, seconds=None, reserve=Decimal(0), emulated=self._emulated
        )
        if existing is not None:  # its job never began (the journal has none): nothing was billed
            await self._settle(outcome, Decimal(0))
            return
        await self._io(
            self._state.refuse,
            row.key,
            number=row.number,
            label=row.label,
            status=state_status(outcome),
            record=outcome.to_json(),
        )
        await self._emit(outcome)

    async def _emit(self, outcome: RowResult, *, cost: Decimal | None = None) -> None:
        for each in [outcome, *self._served(outcome)]:
            self._count(each, cost if each is outcome else None)
            if self._manifest is not None:
                await self._io(self._manifest.append, each)
            await self._send.send(each)

    # -- waiting -------------------------------------------------------------------------------------

    def _signal(self) -> None:
        import anyio

        self._changed.set()
        self._changed = anyio.Event()

    async def _wait(self, seconds: float) -> None:
        import anyio

        event = self._changed
        with anyio.move_on_after(seconds):
            await event.wait()

    async def _io(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking write (state, manifest, images) on the batch's writer thread, in order."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs), limiter=self._writer)

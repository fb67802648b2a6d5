"""The job: one request's whole life, planned once and driven by either client.

A :class:`Job` is sans-IO, like a provider's exchange one level down. It is planned before anything is
sent, split into calls (fan-out), and each call is a flow the client drives with its own driver
(:func:`~ideochar.exchange.drive` or :func:`~ideochar.exchange.adrive`). The router serves a call and
reports facts (:mod:`ideochar.router`); the job turns each fact into a journal write (a :class:`Record`
step the client performs: inline in ``Client``, on a worker thread in ``AsyncClient``, never on the event
loop) and into the events observers see. It merges what the calls produced into the one
:class:`~ideochar.result.CharacterResult` (:func:`merge`: the only place a result is assembled) and
resumes a journaled job (:meth:`Job.resuming`). So ``Client`` and ``AsyncClient`` differ only in how
they wait::

    job = Job.new(request, plan, route, journal=journal)
    drive(job.begin(), ...)                     # the job and its parts journaled, or nothing is sent
    for call in job.calls():                    # fan-out calls (run concurrently by AsyncClient)
        drive(call, ...)
    result = drive(job.end(), ...)              # merged, journaled; an error is raised here

**The journal fails closed.** The writes that guard a send (the job, an attempt's start, its intent to
send the billable request) are ``required``: when one cannot be committed the step raises
:class:`~ideochar.errors.JournalUnavailable` into the flow and the request is not sent. Later writes (the
vendor's id, progress, the outcome) are best effort: the request has left, the job goes on, and a
failure is logged loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from ideochar._owner import Owner
from ideochar.errors import (
    AllProvidersFailed,
    Billed,
    IdeocharError,
    InvalidRequest,
    ProviderError,
)
from ideochar.events import Event
from ideochar.exchange import relay
from ideochar.request import CharacterRequest
from ideochar.result import (
    Attempt,
    CharacterResult,
    CostSource,
    GeneratedImage,
    ImageFailure,
    JobHandle,
    RequestWarning,
)
from ideochar.router import (
    AttemptEnded,
    AttemptStarted,
    Outcome,
    Part,
    PartSplit,
    Plan,
    RouteContext,
    SendIntent,
    VendorAdmitted,
    route_part,
    split_request,
    stops_fan_out,
)
from ideochar.spec import CallContext, Provider

if TYPE_CHECKING:
    from ideochar.journal import JobRecord, Journal

__all__ = ["Job", "JobNotResumable", "Piece", "Record", "merge"]

logger = logging.getLogger("ideochar")

T = TypeVar("T")
Flow = Generator[Any, Any, T]


class JobNotResumable(InvalidRequest):
    """The job has nothing left to pick up (it failed before any vendor admitted it, or it is unknown)."""


class _Detached(BaseException):
    """Raised through a call's flows once its vendor admitted the job, when the caller only submits.

    Not an ``Exception``: no provider or router code may take it for a failure. The provider's flow is
    closed where it stands (mid-poll); the journal holds the vendor's id, so ``wait`` picks it up.
    """


@dataclass(frozen=True)
class Record:
    """A journal write, performed by the client before the flow goes on.

    ``required`` writes guard a send: when one fails the client raises
    :class:`~ideochar.errors.JournalUnavailable` into the flow. Others are logged and skipped.
    """

    write: Callable[[], Any]
    required: bool = False
    what: str = "journal write"


# -- what the calls produced --------------------------------------------------------------------------------


@dataclass
class Piece:
    """What one call (or one resumed attempt, or a part's saved images) contributes to the result."""

    label: str
    num_images: int
    seed: int | None = None
    images: list[GeneratedImage] = field(default_factory=list)
    failures: list[ImageFailure] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    provider: str | None = None
    vendor_request_id: str | None = None
    cost_usd: Decimal | None = None
    cost_source: CostSource = "unknown"
    warnings: list[RequestWarning] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    error: IdeocharError | None = None
    """Why the piece produced nothing (None with no images: it was not sent)."""

    @classmethod
    def of(cls, outcome: Outcome) -> Piece:
        piece = cls(outcome.part.label, outcome.part.num_images, outcome.part.seed, attempts=list(outcome.attempts))
        served = outcome.served
        if served is not None:
            piece.images = list(served.output.images)
            piece.failures = list(served.output.failures)
            piece.provider = served.provider
            piece.vendor_request_id = served.output.vendor_request_id
            piece.cost_usd, piece.cost_source = served.cost_usd, served.cost_source
            piece.warnings = list(served.warnings)
            piece.metadata = dict(served.output.metadata)
        piece.error = outcome.error
        return piece

    def missing(self, why: str | None) -> list[ImageFailure]:
        """Typed failures for the images this piece owes and did not bring (never silently dropped)."""
        count = self.num_images - len(self.images) - len(self.failures)
        if count <= 0:
            return []
        if self.error is not None:
            failure = ImageFailure(
                reason=str(self.error),
                billed=_billed(self.error),
                provider=_provider(self.error),
                error_type=type(self.error).__name__,
            )
        elif self.images:
            failure = ImageFailure(
                reason=f"{self.provider} returned fewer images than asked for", billed="unknown", provider=self.provider
            )
        else:
            failure = ImageFailure(reason=f"not sent: {why}" if why else "not sent", billed="no")
        return [failure] * count


def _billed(error: IdeocharError) -> Billed:
    if isinstance(error, (ProviderError, AllProvidersFailed)):
        return error.billed
    return "no"  # refused before anything that bills was sent (an invalid request, the journal)


def _provider(error: IdeocharError) -> str | None:
    return error.provider if isinstance(error, ProviderError) else None


def _label_key(label: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in label.split("."))


def merge(
    pieces: Sequence[Piece], *, job_id: str | None, fanned_out: bool, metadata: Mapping[str, Any] | None = None
) -> CharacterResult:
    """The one result of a job, from its pieces in call order: every image that arrived, a typed failure for
    each one that did not. Raises only when no image arrived (the pieces' error, or AllProvidersFailed)."""
    ordered = sorted(pieces, key=lambda p: _label_key(p.label))
    images: list[GeneratedImage] = []
    failures: list[ImageFailure] = []
    attempts: list[Attempt] = []
    warnings: list[RequestWarning] = []
    served: list[Piece] = []
    stopped: str | None = None
    offset = 0
    for piece in ordered:
        attempts.extend(piece.attempts)
        if piece.images:
            served.append(piece)
            images.extend(piece.images)
            warnings.extend(piece.warnings)
        own = [f.model_copy(update={"index": offset + (f.index or 0)}) for f in piece.failures]
        rest = piece.missing(stopped)
        start = offset + len(piece.images) + len(own)
        failures.extend([*own, *(f.model_copy(update={"index": start + k}) for k, f in enumerate(rest))])
        stopped = stopped or (str(piece.error) if piece.error is not None else None)
        offset += piece.num_images
    if not served:
        raise _nothing_served(ordered, attempts)
    cost, source = _total_cost(served)
    first = served[0]
    extra = dict(metadata or {})
    if fanned_out:
        warnings.append(_fan_out_note(ordered, offset, first.provider))
        extra["calls"] = [_call_summary(i, p) for i, p in enumerate(ordered)]
    return CharacterResult(
        images=images,
        provider=first.provider or "?",
        vendor_request_id=first.vendor_request_id,
        cost_usd=cost,
        cost_source=source,
        warnings=_unique(warnings),
        failures=failures,
        attempts=attempts,
        job_id=job_id,
        vendor_metadata={**first.metadata, **extra},
    )


def _nothing_served(pieces: Sequence[Piece], attempts: list[Attempt]) -> IdeocharError:
    errors = [p.error for p in pieces if p.error is not None]
    if not errors:
        return JobNotResumable.for_field("job_id", "no image could be recovered and nothing is left to send")
    if len(errors) == 1:
        errors[0].attempts = attempts
        return errors[0]
    flat: list[IdeocharError] = []
    for error in errors:
        flat.extend(error.errors if isinstance(error, AllProvidersFailed) else [error])
    return AllProvidersFailed(f"every call of the job failed: {errors[0]}", errors=flat, attempts=attempts)


def _total_cost(served: Sequence[Piece]) -> tuple[Decimal | None, CostSource]:
    if any(p.cost_usd is None for p in served):
        return None, "unknown"
    total = sum((p.cost_usd for p in served if p.cost_usd is not None), Decimal(0))
    return total, "vendor" if all(p.cost_source == "vendor" for p in served) else "price_table"


def _fan_out_note(pieces: Sequence[Piece], total: int, provider: str | None) -> RequestWarning:
    seeds = [p.seed for p in pieces]
    note = f" (seeds {seeds[0]}..{seeds[-1]})" if seeds[0] is not None else ""
    return RequestWarning(
        kind="fanned_out",
        field="num_images",
        message=f"{total} images were asked for in {len(pieces)} calls{note}",
        provider=provider,
    )


def _call_summary(index: int, piece: Piece) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "call": index,
        "provider": piece.provider,
        "images": len(piece.images),
        "seed": piece.seed,
    }
    if piece.images:
        summary["vendor_request_id"] = piece.vendor_request_id
        summary["cost_usd"] = None if piece.cost_usd is None else str(piece.cost_usd)
    else:
        summary["error"] = type(piece.error).__name__ if piece.error is not None else "not sent"
    return summary


def _unique(warnings: Iterable[RequestWarning]) -> list[RequestWarning]:
    seen: set[tuple[Any, ...]] = set()
    out: list[RequestWarning] = []
    for warning in warnings:
        key = (warning.kind, warning.field, warning.message, warning.provider)
        if key not in seen:
            seen.add(key)
            out.append(warning)
    return out


# -- the job --------------------------------------------------------------------------------------------------


CallFlow = Callable[[], Flow[list[Outcome]]]


@dataclass
class _Unit:
    """One call to run: a fresh route of a part, or the pickup of an attempt admitted earlier."""

    part: Part
    start: CallFlow


class Job:
    """One request's life: plan, journal, calls, merge (module docstring). Build with :meth:`new` or
    :meth:`resuming`; drive :meth:`begin`, each of :meth:`calls`, then :meth:`end`."""

    def __init__(
        self,
        job_id: str,
        route: RouteContext,
        *,
        journal: Journal | None,
        owner: Owner,
        units: list[_Unit],
        pieces: list[Piece] | None = None,
        fanned_out: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = job_id
        self.route = route
        self.journal = journal
        self.owner = owner
        self._units = units
        self._pieces: list[Piece] = list(pieces or [])
        self._fanned_out = fanned_out
        self._metadata = dict(metadata or {})
        self._stopped: IdeocharError | None = None
        self._begun: list[Record] = []
        self.detach = False
        """Submit mode: stop driving each call as soon as its vendor admitted it (:meth:`handle`)."""
        self._admissions: list[VendorAdmitted] = []
        self._quotes: dict[str, Decimal | None] = {}
        """Attempt key -> its quote (what an admitted attempt will cost at the price table)."""

    @property
    def deadline(self) -> float | None:
        return self.route.deadline

    # -- building ------------------------------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        job_id: str,
        request: CharacterRequest,
        plan: Plan,
        route: RouteContext,
        *,
        journal: Journal | None,
        max_cost_usd: Decimal | None = None,
        emulated: bool = False,
    ) -> Job:
        """A job for ``request``, split by the first candidate (the calls it needs). ``emulated``: the client
        sends it to the emulator; the journal marks it so (its cost is never counted as spent)."""
        per_call = plan.candidates[0].provider.info.max_images_per_call if plan.candidates else request.num_images
        parts = [Part.of(str(i), r) for i, r in enumerate(split_request(request, per_call))]
        units = [_Unit(p, partial(route_part, p, plan.candidates, route)) for p in parts]
        job = cls(job_id, route, journal=journal, owner=Owner.current(), units=units, fanned_out=len(parts) > 1)
        if journal is not None:
            rows = [(p.label, p.num_images, p.seed) for p in parts]
            create = partial(
                journal.create_job,
                job_id,
                request,
                owner=job.owner,
                parts=rows,
                plan=plan.to_dict(),
                max_cost_usd=max_cost_usd,
                emulated=emulated,
            )
            job._begun = [Record(create, required=True, what="the job")]
        return job

    @classmethod
    def resuming(
        cls,
        record: JobRecord,
        route: RouteContext,
        *,
        journal: Journal,
        owner: Owner,
        providers: Mapping[str, Provider],
        context_for: Callable[[Provider], CallContext],
        planner: Callable[[CharacterRequest], Plan],
        emulated: bool | None = None,
    ) -> Job:
        """Finish a journaled job that ``owner`` has claimed (:meth:`claim`); see :mod:`ideochar._pickup`.

        ``emulated``: whether the resuming client sends to the emulator (None: not checked). A job is
        resumed where it ran: an emulated job's vendor ids mean nothing to a vendor, and a vendor's job
        cannot be fetched from the emulator.
        """
        from ideochar._pickup import pickup

        if emulated is not None and emulated != record.emulated:
            raise _resumed_elsewhere(record, emulated=emulated)
        units, pieces = pickup(record, route, providers=providers, context_for=context_for, planner=planner)
        resumed = [a.vendor_request_id for a in record.attempts if a.resumable]
        return cls(
            record.id, route, journal=journal, owner=owner, units=units, pieces=pieces, metadata={"resumed": resumed}
        )

    @staticmethod
    def claim(journal: Journal, job_id: str, owner: Owner) -> Flow[JobRecord]:
        """Take a journaled job over for ``owner`` (JobBusy while a live process runs it), then read it."""
        yield Record(partial(journal.claim, job_id, owner), required=True, what="the claim")
        record: JobRecord = yield Record(partial(journal.job, job_id), required=True, what="the job record")
        return record

    # -- driving -------------------------------------------------------------------------------------------

    def begin(self) -> Flow[None]:
        """Journal the job before anything is sent (fails closed)."""
        yield from self._begun

    @property
    def calls_count(self) -> int:
        return len(self._units)

    def calls(self) -> list[Flow[None]]:
        """One flow per call. ``Client`` runs them in order, ``AsyncClient`` concurrently; after a stopping
        error (content filter, a rejected request, a journal that cannot record) the calls not yet
        started are not sent."""
        return [self._call(unit) for unit in self._units]

    def _call(self, unit: _Unit) -> Flow[None]:
        if self._stopped is not None:
            self._pieces.append(Piece(unit.part.label, unit.part.num_images, unit.part.seed))
            return
        try:
            outcomes: list[Outcome] = yield from relay(unit.start(), self._take)
        except IdeocharError as exc:  # a required write failed before the attempt began
            outcomes = [Outcome(unit.part, error=exc)]
        except _Detached:
            return  # admitted: the journal holds the id, wait() finishes it
        self._fanned_out = self._fanned_out or len(outcomes) > 1  # a fallback split the part again
        for outcome in outcomes:
            self._pieces.append(Piece.of(outcome))
            if outcome.error is not None and stops_fan_out(outcome.error):
                self._stopped = self._stopped or outcome.error

    def whole(self) -> Flow[Any]:
        """The job as one flow, its calls one after another: what ``Client`` drives (and ``AsyncClient`` for
        a job of one call). Ends with :meth:`end`'s result, or :meth:`handle` when submitting."""
        yield from self.begin()
        for call in self.calls():
            yield from call
        return (yield from (self.handle() if self.detach else self.end()))

    def end(self) -> Flow[CharacterResult]:
        """Merge the calls into the result (or raise the job's error) and journal how the job ended."""
        try:
            result = merge(self._pieces, job_id=self.id, fanned_out=self._fanned_out, metadata=self._metadata)
        except IdeocharError as exc:
            exc.job_id = self.id
            if self.journal is not None:
                yield Record(partial(self.journal.finish_job, self.id, error=exc), what="the job's end")
            raise
        if self.journal is not None:
            yield Record(partial(self.journal.finish_job, self.id, result=result), what="the job's end")
        return result

    def handle(self) -> Flow[JobHandle]:
        """Submit mode's end: what was admitted (and what failed before that). The job stays ``running`` in
        the journal for :meth:`~ideochar.client.Client.wait`; raises when no call was admitted or finished."""
        done = [p for p in self._pieces if p.images]
        if not self._admissions and not done:
            result = yield from self.end()  # nothing admitted: the job's error, journaled as its end
            return JobHandle(job_id=self.id, provider=result.provider, finished=True, attempts=result.attempts)
        ids = [fact.event.vendor_request_id for fact in self._admissions if fact.event.vendor_request_id]
        first = self._admissions[0].event.provider if self._admissions else done[0].provider
        failures = [f for p in self._pieces if p.error is not None for f in p.missing(None)]
        quotes = [self._quotes.get(fact.key) for fact in self._admissions]
        quote = None if None in quotes else sum((q for q in quotes if q is not None), Decimal(0))
        return JobHandle(
            job_id=self.id,
            provider=first or "?",
            vendor_request_ids=ids,
            quote_usd=quote,
            finished=not self._admissions,
            attempts=[a for p in self._pieces for a in p.attempts],
            failures=failures,
        )

    def release(self) -> Flow[None]:
        """Let the job go (it ended, or the run was interrupted): another process may now resume it."""
        if self.journal is not None:
            yield Record(partial(self.journal.release, self.id, self.owner), what="the job's release")

    # -- facts -> journal and events -----------------------------------------------------------------------

    def _take(self, step: Any) -> Flow[Any] | None:
        if isinstance(step, AttemptStarted):
            return self._started(step)
        if isinstance(step, SendIntent):
            return self._intent(step)
        if isinstance(step, VendorAdmitted):
            return self._admitted(step)
        if isinstance(step, AttemptEnded):
            return self._ended(step)
        if isinstance(step, PartSplit):
            return self._split(step)
        if isinstance(step, Event):
            return self._event(step)
        return None

    def _started(self, fact: AttemptStarted) -> Flow[None]:
        self._quotes[fact.key] = fact.quote_usd
        if self.journal is not None:
            part = (fact.part.label, fact.part.num_images, fact.part.seed)
            write = partial(
                self.journal.start_attempt,
                self.id,
                fact.key,
                provider=fact.provider,
                part=part,
                try_number=fact.try_number,
                quote_usd=fact.quote_usd,
                resumed=fact.resumed,
            )
            yield Record(write, required=True, what="the attempt's start")
        yield Event(
            "attempt_started",
            provider=fact.provider,
            job_id=self.id,
            attempt=fact.key,
            part=fact.part.label,
            try_number=fact.try_number,
            data={"num_images": fact.part.num_images, "seed": fact.part.seed, "resumed": fact.resumed},
        )

    def _split(self, fact: PartSplit) -> Flow[None]:
        if self.journal is not None:
            pieces = [(p.label, p.num_images, p.seed) for p in fact.pieces]
            write = partial(self.journal.split_part, self.id, fact.part.label, pieces)
            yield Record(write, required=True, what="the split")

    def _intent(self, fact: SendIntent) -> Flow[None]:
        if self.journal is not None:
            write = partial(
                self.journal.intend, self.id, fact.key, part=fact.part.label, marker=fact.marker, at=fact.at
            )
            yield Record(write, required=True, what="the intent to send")

    def _admitted(self, fact: VendorAdmitted) -> Flow[None]:
        event = fact.event
        if self.journal is not None:
            write = partial(
                self.journal.admitted,
                fact.key,
                vendor_request_id=event.vendor_request_id,
                resume=event.resume,
                status=event.status,
                queue_position=event.queue_position,
            )
            yield Record(write, what="the vendor's id")
        yield event
        if self.detach:
            self._admissions.append(fact)
            raise _Detached

    def _ended(self, fact: AttemptEnded) -> Flow[None]:
        attempt = fact.attempt
        output = fact.output
        if self.journal is not None:
            if output is not None and output.images:  # images on disk before the attempt says "succeeded"
                save = partial(
                    self.journal.record_outputs,
                    self.id,
                    output.images,
                    part=fact.part.label,
                    attempt=fact.key,
                    provider=attempt.provider,
                    vendor_request_id=output.vendor_request_id,
                )
                yield Record(save, what="the images")
            yield Record(
                partial(self.journal.end_attempt, fact.key, attempt, admitted=fact.admitted), what="the outcome"
            )
        yield _ending_event(fact, self.id)

    def _event(self, event: Event) -> Flow[None]:
        if event.job_id is None:
            from dataclasses import replace

            event = replace(event, job_id=self.id)
        if self.journal is not None and event.kind == "progress" and event.attempt is not None:
            write = partial(
                self.journal.progress,
                event.attempt,
                status=event.status,
                queue_position=event.queue_position,
                vendor_request_id=event.vendor_request_id,
            )
            yield Record(write, what="progress")
        yield event


def _resumed_elsewhere(record: JobRecord, *, emulated: bool) -> JobNotResumable:
    if record.emulated:
        where = (
            "job {id} ran against the emulator: resume it against the emulator that admitted it "
            "(emulator=URL, or --emulator-url URL on the command line), never against a vendor"
        )
    else:
        where = "job {id} ran against the vendors: resume it without the emulator (the emulator never saw it)"
    problem = where.format(id=record.id[:12])
    return JobNotResumable(f"job_id: {problem}", problems=[("job_id", problem)])


def _ending_event(fact: AttemptEnded, job_id: str) -> Event:
    attempt = fact.attempt
    if fact.error is None:
        images = len(fact.output.images) if fact.output is not None else 0
        return Event(
            "finished",
            provider=attempt.provider,
            job_id=job_id,
            attempt=fact.key,
            part=fact.part.label,
            vendor_request_id=attempt.vendor_request_id,
            cost_usd=attempt.cost_usd,
            data={"images": images},
        )
    return Event(
        "attempt_failed",
        provider=attempt.provider,
        job_id=job_id,
        attempt=fact.key,
        part=fact.part.label,
        vendor_request_id=attempt.vendor_request_id,
        message=fact.error.message,
        billed=attempt.billed,
        error_type=type(fact.error).__name__,
    )

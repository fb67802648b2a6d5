"""Deciding how to finish a journaled job, from positive records only; shared by both clients.

:func:`pickup` reads a :class:`~ideochar.journal.JobRecord` and decides, part by part, without any I/O:

* images already saved are read back from the output folder (checked against their hash);
* an attempt a vendor admitted whose outcome is not recorded (it has resume data: the vendor's id, or the
  vendor's answer) is **picked up by that id**: its paid result is fetched, never sent again. So is a
  succeeded attempt whose images never reached the output folder;
* an attempt whose intent to send was recorded but whose id never came back (the answer was lost, the
  process was killed while the vendor admitted it) is **reconciled**: found in the vendor's listing by
  its marker where the vendor has one (:meth:`~ideochar.spec.Provider.reconcile`), else reported as
  possibly billed and **never** sent again;
* a part still ``planned`` is a positive record that nothing of it was sent (the state changes in the same
  transaction as the first intent), so it is **routed afresh**. Its inputs must still be where they were
  (paths with the same hash, or URLs); inputs given as bytes were never stored. A part that was sent and
  failed stays failed, as recorded. Nothing is ever inferred from a missing row: a job written by an older
  ideochar, without parts, has no such record, so nothing of it is sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import partial

from ideochar.errors import Billed, IdeocharError, OutcomeUnknown
from ideochar.job import JobNotResumable, Piece, _Unit
from ideochar.journal import AttemptRecord, JobRecord, OutputRecord, PartRecord, rebuild_request
from ideochar.request import CharacterRequest
from ideochar.result import Attempt, GeneratedImage, ImageFailure
from ideochar.router import Part, Plan, RouteContext, reconcile_attempt, resume_attempt, route_part
from ideochar.spec import CallContext, Provider

__all__ = ["pickup"]


class _Context:
    """What deciding needs besides the record: the installed providers, their contexts, a planner."""

    def __init__(
        self,
        record: JobRecord,
        route: RouteContext,
        providers: Mapping[str, Provider],
        context_for: Callable[[Provider], CallContext],
        planner: Callable[[CharacterRequest], Plan],
    ) -> None:
        self.record = record
        self.route = route
        self.providers = providers
        self.context_for = context_for
        self.planner = planner
        self._request: CharacterRequest | IdeocharError | None = None

    def request(self) -> CharacterRequest | IdeocharError:
        """The job's request rebuilt from the journal (its local inputs must be unchanged), once."""
        if self._request is None:
            try:
                self._request = rebuild_request(self.record.request)
            except IdeocharError as exc:
                self._request = exc
        return self._request

    def unit_price(self, provider: Provider) -> Decimal | None:
        speed = str(self.record.request.get("speed", "default"))
        return provider.info.price(self.record.operation, speed)  # type: ignore[arg-type]


def pickup(
    record: JobRecord,
    route: RouteContext,
    *,
    providers: Mapping[str, Provider],
    context_for: Callable[[Provider], CallContext],
    planner: Callable[[CharacterRequest], Plan],
) -> tuple[list[_Unit], list[Piece]]:
    """The calls to run and the pieces already known, for every part of ``record`` (module docstring)."""
    ctx = _Context(record, route, providers, context_for, planner)
    units: list[_Unit] = []
    pieces: list[Piece] = []
    for part in record.parts or _parts_of_older_journal(record):
        part_units, part_pieces = _part(part, ctx)
        units.extend(part_units)
        pieces.extend(part_pieces)
    if not units and not any(p.images for p in pieces):
        raise _nothing_to_do(record, pieces)
    return units, pieces


def _part(part: PartRecord, ctx: _Context) -> tuple[list[_Unit], list[Piece]]:
    record = ctx.record
    attempts = [a for a in record.attempts if a.part == part.label]
    history = Piece(part.label, 0, part.seed, attempts=[_history(a) for a in attempts if not _picked_up(a, record)])
    if part.state == "split":  # its own attempts are history; its pieces are parts of their own
        return [], [history]
    units: list[_Unit] = []
    pieces = [history, *_saved(part, record.outputs)]
    remaining = part.num_images - sum(p.num_images for p in pieces)
    for attempt in attempts:
        if remaining <= 0 or not _picked_up(attempt, record):
            continue
        unit_or_piece = _pick_up(attempt, part, ctx)
        (units if isinstance(unit_or_piece, _Unit) else pieces).append(unit_or_piece)  # type: ignore[arg-type]
        remaining -= attempt.num_images
    if remaining > 0:
        pieces_or_unit = _rest(part, attempts, remaining, ctx)
        (units if isinstance(pieces_or_unit, _Unit) else pieces).append(pieces_or_unit)  # type: ignore[arg-type]
    return units, pieces


def _picked_up(attempt: AttemptRecord, record: JobRecord) -> bool:
    """Open (the vendor may hold it), or succeeded with images that never reached the output folder."""
    if attempt.open:
        return True
    saved = any(o.attempt == attempt.key for o in record.outputs)
    return attempt.status == "succeeded" and attempt.resume is not None and not saved


def _pick_up(attempt: AttemptRecord, part: PartRecord, ctx: _Context) -> _Unit | Piece:
    provider = ctx.providers.get(attempt.provider)
    here = Part(part.label, attempt.num_images, attempt.seed)
    if provider is not None and attempt.resume is not None and provider.info.can_resume:
        start = partial(
            resume_attempt,
            provider,
            _context(ctx, provider),
            attempt.resume,
            here,
            ctx.route,
            key=attempt.key,
            vendor_request_id=attempt.vendor_request_id,
            unit_price_usd=ctx.unit_price(provider),
        )
        return _Unit(here, start)
    if provider is not None and attempt.lost and attempt.marker and attempt.intent_at and provider.info.can_reconcile:
        start = partial(
            reconcile_attempt,
            provider,
            _context(ctx, provider),
            attempt.marker,
            here,
            ctx.route,
            key=attempt.key,
            sent_at=attempt.intent_at.timestamp(),
            unit_price_usd=ctx.unit_price(provider),
        )
        return _Unit(here, start)
    return Piece(
        part.label, attempt.num_images, attempt.seed, attempts=[_history(attempt)], error=_in_doubt(attempt, provider)
    )


def _context(ctx: _Context, provider: Provider) -> CallContext:
    base = ctx.context_for(provider)
    return CallContext(
        provider=base.provider,
        credentials=base.credentials,
        base_urls=base.base_urls,
        options=base.options,
        job_id=ctx.record.id,
        user_agent=base.user_agent,
    )


def _in_doubt(attempt: AttemptRecord, provider: Provider | None) -> OutcomeUnknown:
    if provider is None:
        why = f"{attempt.provider} is not installed, so its job cannot be picked up"
    elif attempt.resume is None:
        why = f"the attempt at {attempt.provider} may have been sent but left no vendor id"
        if provider.info.can_reconcile:
            why += " and no marker to find it by"
    else:
        why = f"{attempt.provider} jobs cannot be picked up again"
    return OutcomeUnknown(
        f"{why}; it was not sent again (check the vendor's dashboard)",
        provider=attempt.provider,
        vendor_request_id=attempt.vendor_request_id,
        admitted=True,
    )


def _rest(part: PartRecord, attempts: list[AttemptRecord], count: int, ctx: _Context) -> _Unit | Piece:
    """The part's images nobody holds: sent afresh when the part is positively unsent, else failed as recorded."""
    if part.state == "planned":
        request = ctx.request()
        if isinstance(request, IdeocharError):
            return Piece(part.label, count, part.seed, error=request)
        fresh = Part.of(part.label, request.model_copy(update={"num_images": count, "seed": part.seed}))
        try:
            plan = ctx.planner(fresh.request)  # type: ignore[arg-type]
        except IdeocharError as exc:
            return Piece(part.label, count, part.seed, error=exc)
        return _Unit(fresh, partial(route_part, fresh, plan.candidates, ctx.route))
    failed = [a for a in attempts if a.status == "failed"]
    last = failed[-1] if failed else None
    reason = f"{last.provider} failed: {last.message}" if last is not None else "sent before the process stopped"
    failure = ImageFailure(
        reason=reason,
        billed=_billed(last.billed) if last is not None else "unknown",
        provider=last.provider if last is not None else None,
        error_type=last.error_type if last is not None else None,
    )
    return Piece(part.label, count, part.seed, failures=[failure] * count)


def _saved(part: PartRecord, outputs: list[OutputRecord]) -> list[Piece]:
    mine = [o for o in outputs if o.part == part.label]
    if not mine:
        return []
    images: list[GeneratedImage] = []
    failures: list[ImageFailure] = []
    for output in mine:
        try:
            images.append(output.read())
        except OSError as exc:
            failures.append(ImageFailure(reason=f"saved image unreadable: {exc.strerror or exc}", billed="yes"))
    first = mine[0]
    return [
        Piece(
            part.label,
            len(mine),
            part.seed,
            images=images,
            failures=failures,
            provider=first.provider,
            vendor_request_id=first.vendor_request_id,
        )
    ]


def _billed(value: str | None) -> Billed:
    return value if value in ("yes", "no", "unknown") else "unknown"  # type: ignore[return-value]


def _history(attempt: AttemptRecord) -> Attempt:
    return Attempt(
        provider=attempt.provider,
        outcome="succeeded" if attempt.status == "succeeded" else "failed",
        billed="yes" if attempt.status == "succeeded" else _billed(attempt.billed) if attempt.billed else "no",
        vendor_request_id=attempt.vendor_request_id,
        error_type=attempt.error_type,
        message=attempt.message,
        started_at=attempt.started_at,
        elapsed_seconds=0.0
        if attempt.finished_at is None
        else (attempt.finished_at - attempt.started_at).total_seconds(),
        cost_usd=attempt.cost_usd,
    )


def _parts_of_older_journal(record: JobRecord) -> list[PartRecord]:
    """A job written before parts were journaled: one part per attempted call, none provably unsent."""
    labels: dict[str, AttemptRecord] = {}
    for attempt in record.attempts:
        labels.setdefault(attempt.part, attempt)
    if not labels:
        return [PartRecord("0", None, record.num_images, None, "sent")]
    return [PartRecord(label, None, a.num_images, a.seed, "sent") for label, a in labels.items()]


def _nothing_to_do(record: JobRecord, pieces: list[Piece]) -> IdeocharError:
    doubt = next((p.error for p in pieces if isinstance(p.error, OutcomeUnknown)), None)
    if doubt is not None:
        return OutcomeUnknown(
            f"job {record.id}: {doubt.message}",
            provider=doubt.provider,
            vendor_request_id=doubt.vendor_request_id,
            admitted=True,
        )
    reason = f"{record.error_type}: {record.error_message}" if record.error_type else f"status {record.status}"
    return JobNotResumable.for_field(
        "job_id", f"job {record.id} has nothing to resume ({reason}); no vendor holds a job of it"
    )

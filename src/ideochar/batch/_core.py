"""What both batch drivers share: the options, a row's result, where a row goes, and how it ended.

The drivers (:mod:`ideochar.batch._async` and :mod:`ideochar.batch._sync`) differ only in how they wait;
the decisions are made here, without I/O:

* **where a row goes** (:func:`options_for`): the row's own plan (:meth:`~ideochar.client.Client.plan`:
  the providers that can serve it, in the strategy's order, without those paused by their breaker or
  quoting above the per-job budget), less the providers this batch stopped using (a refused key, no
  credit), less those whose quote would pass what is left of the batch's cap. With ``spill`` the
  driver offers the row to each in turn and the first with a free slot *now* takes it (a saturated
  provider is passed over, not queued behind); without, only the first, and the row waits for it;
* **what the job may spend** (:class:`Placement`): the chosen provider's quote, raised to cover the
  failover candidates kept (those that fit the cap); the job's own budget is set to it, so the router
  never lets the job go past what was reserved (:func:`shape`);
* **how a row ended** (:func:`ended`, :func:`failed`): done, partial, failed (billed yes, no or
  unknown), unknown (a vendor may hold it: picked up next run); whether a failure that provably sent
  nothing is worth placing again in this run (:func:`worth_retrying`), and what it committed.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ideochar.breaker import BREAKER_FAULTS
from ideochar.errors import (
    AllProvidersFailed,
    AuthenticationFailed,
    Billed,
    IdeocharError,
    InsufficientCredits,
    OutcomeUnknown,
    OverBudget,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from ideochar.limits import Ended
from ideochar.result import Attempt, CharacterResult, GeneratedImage
from ideochar.router import Candidate, Plan, RouteContext

if TYPE_CHECKING:
    from ideochar.batch._state import RowStatus as StateStatus

__all__ = [
    "DEFAULT_IN_FLIGHT",
    "BatchOptions",
    "Placement",
    "RowResult",
    "RowStatus",
    "SavedFile",
    "ended",
    "failed",
    "options_for",
    "permit_end",
    "refusal",
    "shape",
    "state_status",
    "worth_retrying",
    "write_images",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
RowStatus = Literal["done", "partial", "failed", "unknown", "over_budget", "invalid", "held"]
#: Images in flight at once per provider whose vendor declares no concurrency limit (and none is
#: configured): a batch must not send ten thousand jobs at once because nobody said how many.
DEFAULT_IN_FLIGHT = 16
#: How often a row is placed again in one run after failures that provably sent nothing.
DEFAULT_TRIES = 3


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs (the command's flags; ``client.batch(...)``'s keyword arguments)."""

    name: str
    """The batch's identity in the journal: its rows' state and its money are kept under it."""
    out: Path | None = None
    """Where images and the manifest are written; None: images stay in the journal's output folder."""
    max_cost_usd: Decimal | None = None
    """The cap on the whole batch, over all its runs: a job is sent only when its quote still fits."""
    spill: bool = True
    """Send a row to the next provider (within the price cap) when the preferred one is saturated."""
    retry_failed: bool = False
    """Send again the rows that failed after a vendor may have charged for them (by default they are not)."""
    in_flight: int = DEFAULT_IN_FLIGHT
    """Images in flight per provider where neither the vendor nor the configuration sets a limit."""
    tries: int = DEFAULT_TRIES
    strict: bool | None = None
    pickups: int = 32
    """Jobs of earlier runs picked up by their vendor ids at once."""
    max_stall_seconds: float = 300.0
    """Stop (rows left for the next run) when no provider could take work for this long."""


@dataclass(frozen=True)
class SavedFile:
    """One image of a row: where it was written, and what it is."""

    path: str | None
    sha256: str
    bytes: int
    content_type: str
    width: int | None = None
    height: int | None = None
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SavedFile:
        return cls(
            path=data.get("path"),
            sha256=str(data.get("sha256", "")),
            bytes=int(data.get("bytes", 0)),
            content_type=str(data.get("content_type", "")),
            width=data.get("width"),
            height=data.get("height"),
            seed=data.get("seed"),
        )


@dataclass(frozen=True)
class RowResult:
    """How one row ended; :meth:`to_json` is its line in the manifest.

    ``earlier`` is True for a row settled by an earlier run (or another process): nothing was done for it
    now, and ``result`` is None. ``result`` holds this run's :class:`~ideochar.result.CharacterResult`
    (images in memory) for a row served now.
    """

    row: int
    key: str
    status: RowStatus
    label: str | None = None
    job_id: str | None = None
    provider: str | None = None
    vendor_request_id: str | None = None
    cost_usd: Decimal | None = None
    billed: Billed | None = None
    files: tuple[SavedFile, ...] = ()
    error: str | None = None
    error_type: str | None = None
    problems: tuple[tuple[str, str], ...] = ()
    """For an invalid row: ``(field, problem)`` for every problem found."""
    seconds: float | None = None
    earlier: bool = False
    emulated: bool = False
    result: CharacterResult | None = field(default=None, repr=False, compare=False)

    @property
    def seed(self) -> int | None:
        """The first image's seed (each file has its own)."""
        return self.files[0].seed if self.files else None

    @property
    def ok(self) -> bool:
        return self.status in ("done", "partial")

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "row": self.row,
            "key": self.key,
            "id": self.label,
            "status": self.status,
            "provider": self.provider,
            "vendor_request_id": self.vendor_request_id,
            "job_id": self.job_id,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "billed": self.billed,
            "seed": self.seed,
            "files": [f.to_json() for f in self.files],
            "error": None if self.error is None else {"type": self.error_type, "message": self.error},
            "seconds": None if self.seconds is None else round(self.seconds, 3),
        }
        if self.problems:
            document["error"]["problems"] = [{"field": f, "problem": p} for f, p in self.problems]
        if self.earlier:
            document["earlier"] = True
        if self.emulated:
            document["emulated"] = True
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, row: int, earlier: bool) -> RowResult:
        """A manifest line read back (from the batch's state), renumbered for the file as it is now."""
        error = data.get("error") or {}
        return cls(
            row=row,
            key=str(data["key"]),
            status=data["status"],
            label=data.get("id"),
            job_id=data.get("job_id"),
            provider=data.get("provider"),
            vendor_request_id=data.get("vendor_request_id"),
            cost_usd=None if data.get("cost_usd") is None else Decimal(str(data["cost_usd"])),
            billed=data.get("billed"),
            files=tuple(SavedFile.from_json(f) for f in data.get("files") or ()),
            error=error.get("message"),
            error_type=error.get("type"),
            seconds=data.get("seconds"),
            earlier=earlier,
            emulated=bool(data.get("emulated")),
        )


# -- where a row goes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """A row offered to ``chosen``: the failover candidates kept, and the money the job may commit."""

    chosen: Candidate
    others: tuple[Candidate, ...]
    reserve: Decimal

    @property
    def name(self) -> str:
        return self.chosen.name


def options_for(
    plan: Plan,
    *,
    spill: bool,
    remaining: Decimal | None,
    stopped: Mapping[str, str],
) -> tuple[list[Placement], str | None]:
    """The placements to offer, in order, or why none can be (``over_budget:`` or ``stopped:`` first).

    ``remaining`` is what is left of the batch's cap (None: no cap); ``stopped`` the providers this batch
    no longer sends to, with why.
    """
    usable = [c for c in plan.candidates if c.name not in stopped]
    if not usable:
        reasons = "; ".join(f"{c.name}: {stopped[c.name]}" for c in plan.candidates)
        return [], f"stopped: every provider that can serve this row stopped taking work ({reasons})"
    fits = [c for c in usable if _fits(c.quote.total_usd, remaining)]
    if not fits:
        cheapest = min((c.quote.total_usd for c in usable if c.quote.total_usd is not None), default=None)
        price = "an unknown price" if cheapest is None else f"${cheapest}"
        return [], f"over_budget: its cheapest quote ({price}) is more than the ${remaining} left of the cap"
    chosen = fits if spill else fits[:1]
    return [_placement(c, usable, remaining) for c in chosen], None


def _fits(quote: Decimal | None, remaining: Decimal | None) -> bool:
    if remaining is None:
        return True
    return quote is not None and quote <= remaining


def _placement(chosen: Candidate, usable: Sequence[Candidate], remaining: Decimal | None) -> Placement:
    reserve = chosen.quote.total_usd or Decimal(0)
    others: list[Candidate] = []
    for candidate in usable:
        if candidate.name == chosen.name:
            continue
        quote = candidate.quote.total_usd
        if remaining is None:
            others.append(candidate)
            reserve = max(reserve, quote or Decimal(0))
        elif quote is not None and max(reserve, quote) <= remaining:
            others.append(candidate)
            reserve = max(reserve, quote)
    return Placement(chosen, tuple(others), reserve)


def shape(placement: Placement, *, capped: bool) -> Any:
    """The job's last word on its plan (``Client._new_job(shape=...)``): the chosen provider first, then
    the failover candidates kept; its budget the reservation (with a cap); the chosen provider's slot
    not taken again (the batch holds it for the job's whole life)."""
    keep = [placement.name, *(c.name for c in placement.others)]

    def reshape(plan: Plan, route: RouteContext) -> Plan:
        by_name = {c.name: c for c in plan.candidates}
        ordered = [by_name[name] for name in keep if name in by_name]
        if placement.name in by_name:
            route.limited = frozenset(route.limited) - {placement.name}
        if capped:
            budget = placement.reserve
            route.max_cost_usd = budget if route.max_cost_usd is None else min(budget, route.max_cost_usd)
        return replace(plan, candidates=ordered or plan.candidates)

    return reshape


# -- how a row ended ---------------------------------------------------------------------------------------


def ended(
    row: int,
    key: str,
    label: str | None,
    job_id: str,
    result: CharacterResult,
    files: tuple[SavedFile, ...],
    *,
    seconds: float,
    reserve: Decimal,
    emulated: bool,
) -> tuple[RowResult, Decimal]:
    """A row whose job brought images, and the money it committed (at least what it cost; all of its
    reservation when one of its attempts failed after a vendor may have charged)."""
    possibly = any(a.outcome == "failed" and a.billed != "no" for a in result.attempts)
    cost = result.cost_usd
    committed = max(cost or Decimal(0), reserve) if possibly or cost is None else cost
    outcome = RowResult(
        row=row,
        key=key,
        status="partial" if result.failures else "done",
        label=label,
        job_id=job_id,
        provider=result.provider,
        vendor_request_id=result.vendor_request_id,
        cost_usd=cost,
        billed="yes",
        files=files,
        seconds=seconds,
        emulated=emulated,
        result=result,
    )
    return outcome, committed


def state_status(outcome: RowResult) -> StateStatus:
    """The status a row's outcome is kept under in the batch's state (invalid and held rows never are)."""
    if outcome.status in ("done", "partial", "unknown", "over_budget"):
        return outcome.status
    return "failed"


def billed_of(error: IdeocharError) -> Billed:
    if isinstance(error, (ProviderError, AllProvidersFailed)):
        return error.billed
    return "no"  # refused before anything that bills was sent (the request, the journal, the budget)


def failed(
    row: int,
    key: str,
    label: str | None,
    job_id: str | None,
    error: IdeocharError,
    *,
    seconds: float | None,
    reserve: Decimal,
    emulated: bool,
) -> tuple[RowResult, Decimal]:
    """A row whose job raised, and the money it committed (its reservation unless nothing was billed)."""
    billed = billed_of(error)
    status: RowStatus = "unknown" if isinstance(error, OutcomeUnknown) else "failed"
    if isinstance(error, OverBudget) and billed == "no":
        status = "over_budget"
    outcome = RowResult(
        row=row,
        key=key,
        status=status,
        label=label,
        job_id=job_id,
        provider=getattr(error, "provider", None),
        vendor_request_id=getattr(error, "vendor_request_id", None),
        cost_usd=Decimal(0) if billed == "no" else None,
        billed=billed,
        error=error.message,
        error_type=type(error).__name__,
        seconds=seconds,
        emulated=emulated,
    )
    return outcome, (Decimal(0) if billed == "no" else reserve)


class Stopped(IdeocharError):
    """A row not sent: every provider that could serve it stopped taking work from this batch."""

    exit_code = 4


def refusal(why: str) -> IdeocharError:
    """The error for a row :func:`options_for` could not place (its ``why``: ``over_budget: ...`` or
    ``stopped: ...``)."""
    kind, _, text = why.partition(": ")
    return OverBudget(text) if kind == "over_budget" else Stopped(text)


def worth_retrying(error: IdeocharError) -> bool:
    """Place the row again in this run: nothing was billed, and another moment (or provider) may do
    better (a vendor unavailable or rate limiting, no slot in time, a budget a failover could not meet)."""
    if billed_of(error) != "no":
        return False
    if isinstance(error, AllProvidersFailed):
        return all(worth_retrying(e) for e in error.errors)
    if isinstance(error, OutcomeUnknown):
        return False
    return isinstance(error, (ProviderUnavailable, RateLimited, OverBudget))


def stops_provider(error: IdeocharError) -> tuple[str, str] | None:
    """A provider this batch should stop sending to, and why: its key was refused, or its credit ran out
    (every later row would meet the same refusal). A breaker takes care of a vendor that is down."""
    errors = error.errors if isinstance(error, AllProvidersFailed) else [error]
    for each in errors:
        if isinstance(each, (AuthenticationFailed, InsufficientCredits)) and each.provider:
            return each.provider, f"{type(each).__name__}: {each.message}"
    return None


def permit_end(provider: str, attempts: Sequence[Attempt]) -> Ended:
    """How the batch's permit at ``provider`` ends, from the job's attempts there: what they cost (nothing
    when none was sent; the whole reservation, None, when one may have been billed at no known cost), and
    whether the last was the vendor's fault, for the client's budget and a fleet's shared breaker
    (:class:`~ideochar.limits.Ended`, as the router settles its own permits)."""
    mine = [a for a in attempts if a.provider == provider and a.outcome != "skipped"]
    if not mine:
        return Ended(spent_usd=Decimal(0), fault=False)
    fault = mine[-1].outcome == "failed" and mine[-1].error_type in _FAULTS
    costs = [a.cost_usd for a in mine if a.outcome == "succeeded"]
    unknown = any(a.outcome == "failed" and a.billed != "no" for a in mine) or any(c is None for c in costs)
    spent = None if unknown else sum((c for c in costs if c is not None), Decimal(0))
    return Ended(spent_usd=spent, fault=fault)


#: The errors that count against a vendor's breaker, by name (an attempt records its error's class name).
_FAULTS = frozenset(kind.__name__ for kind in BREAKER_FAULTS)


# -- images ----------------------------------------------------------------------------------------------


def file_stem(key: str, label: str | None) -> str:
    """A row's images are named for its ``id`` when it has one (``panel-01-43a6ccbd-1.png``), else for its key;
    the key's digits keep two rows with the same ``id`` apart."""
    safe = _UNSAFE.sub("-", label or "").strip("-.")[:48]
    return f"{safe}-{key[:8]}" if safe else key[:12]


def write_images(
    out: Path | None, key: str, images: Sequence[GeneratedImage], label: str | None = None
) -> tuple[SavedFile, ...]:
    """Write a row's images under ``out`` as ``<stem>-<n>.<ext>`` (atomically: a temporary name, then a
    rename, so a killed run leaves no half image under a final name); only their records when ``out``
    is None."""
    saved = []
    stem = file_stem(key, label)
    for n, image in enumerate(images, start=1):
        path: str | None = None
        if out is not None:
            target = out / f"{stem}-{n}.{image.extension}"
            _write_atomic(target, image.data)
            path = str(target)
        saved.append(
            SavedFile(
                path=path,
                sha256=image.sha256,
                bytes=len(image.data),
                content_type=image.content_type,
                width=image.width,
                height=image.height,
                seed=image.seed,
            )
        )
    return tuple(saved)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise

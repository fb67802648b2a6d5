"""Choosing providers and trying them, without knowing any vendor; and the billing rule, written once.

:func:`plan` filters the configured providers by what they can do (saying why one is skipped), quotes
each, applies the budget and the breakers, and orders them (as listed, cheapest, or fastest observed).
Nothing is sent: an invalid request, one over budget, or one nobody can serve costs nothing.

:func:`route_part` is an exchange that serves one call of a job (a :class:`Part`), trying the candidates
in order. It yields the providers' steps, the client's steps (:class:`~ideochar.limits.Acquire`) and
**facts** (:class:`AttemptStarted`, :class:`SendIntent`, :class:`VendorAdmitted`, :class:`AttemptEnded`),
which the job (:mod:`ideochar.job`) turns into journal writes and events. The router itself writes
nothing and tells no one.

**The billing rule** (:func:`settle`). Providers only report what happened on the wire: a request sent
with ``admits=True`` (it may create a billable job), the answer's status, a ``submitted`` event with the
vendor's id. :func:`run_provider` watches exactly that as it passes (:class:`Wire`) and :func:`settle`
decides from it, for every vendor and every path (a first try, a resume, a reconciliation):

* Once a billable admission may have happened (a vendor id came back; the answer to the admitting
  request was a 2xx; it was sent and no answer came; the adapter or the driver said so), every failure
  of the attempt is billed ``"yes"`` or ``"unknown"``, never ``"no"``, carries the vendor id, and does
  **not** fail over unless :attr:`FailurePolicy.after_admission` says so: running it elsewhere could
  charge twice. A lost connection after admission becomes :class:`~ideochar.errors.OutcomeUnknown`.
* Before any admitting request was sent, nothing can have been billed: ``"no"``.
* The vendor answered the admitting request with a refusal (non-2xx): the vendor's own word stands (the
  adapter's error table says whether such a refusal bills).

What happens next (:func:`next_move`) also reads only that ruling: retry the same provider only when the
request provably did not start there (a connect error, a vendor's ingress refusal, a 429 whose Retry-After
is at most ``FailurePolicy.max_retry_after_seconds``); fail over on unavailability, auth and credit
errors; never on an invalid request or a content filter; never after admission (by default).

Before each attempt: a provider whose breaker is open is skipped at once (:mod:`ideochar.breaker`); one
that would take the job over budget, counting what failed attempts may already have cost, is skipped;
where the provider has limits the router yields :class:`~ideochar.limits.Acquire` and waits for a slot
(the wait counts against the deadline; no slot in time fails over). A fallback that makes fewer images
per call than the part needs serves it in several calls of its own (:func:`split_request`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal, TypeVar

from ideochar._constants import MAX_RETRY_AFTER_SECONDS
from ideochar.breaker import CircuitBreaker, counts_as_fault
from ideochar.errors import (
    AllProvidersFailed,
    Billed,
    IdeocharError,
    InvalidRequest,
    MissingCredentials,
    OutcomeUnknown,
    OverBudget,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
    Unsupported,
)
from ideochar.events import Event
from ideochar.exchange import Send, Sleep, relay
from ideochar.limits import Acquire, Ended, Permit
from ideochar.request import CharacterRequest
from ideochar.result import Attempt, CostSource, RequestWarning
from ideochar.retry import backoff_seconds
from ideochar.spec import CallContext, Exchange, Provider, ProviderOutput, Quote

__all__ = [
    "MAX_SEED",
    "AttemptEnded",
    "AttemptStarted",
    "Candidate",
    "Fact",
    "FailurePolicy",
    "ObservedLatency",
    "Outcome",
    "Part",
    "PartSplit",
    "Plan",
    "RouteContext",
    "SendIntent",
    "Served",
    "Spend",
    "Strategy",
    "VendorAdmitted",
    "Wire",
    "next_move",
    "plan",
    "provider_flow",
    "reconcile_attempt",
    "resume_attempt",
    "route_part",
    "run_provider",
    "settle",
    "split_request",
]

Strategy = Literal["as_listed", "cheapest", "fastest"]

T = TypeVar("T")
#: The router's exchange: a provider's steps, the client's Acquire steps, and facts for the job.
RouteExchange = Generator[Any, Any, T]

#: The largest seed every vendor accepts (Ideogram's range); fanned-out seeds wrap around past it.
MAX_SEED = 2_147_483_647
#: Weight of the newest observation in the average latency per provider (``strategy="fastest"``).
LATENCY_SMOOTHING = 0.3


@dataclass(frozen=True)
class FailurePolicy:
    connect_retries: int = 2
    """Extra tries at one provider after connect errors (the request never left)."""
    rate_limit_retries: int = 2
    max_retry_after_seconds: float = MAX_RETRY_AFTER_SECONDS
    """A 429 asking for a longer wait than this fails over instead of waiting."""
    after_admission: Literal["raise", "fail_over"] = "raise"
    """When an attempt fails after the vendor may have admitted (and billed) it: raise with its vendor id
    (default: it may still finish, resume it by id) or try the next provider, which may charge again."""
    on_outcome_unknown: Literal["raise", "fail_over"] | None = None
    """The former name of ``after_admission``; when given, it wins."""

    def __post_init__(self) -> None:
        if self.on_outcome_unknown is not None:
            object.__setattr__(self, "after_admission", self.on_outcome_unknown)


@dataclass
class Candidate:
    provider: Provider
    ctx: CallContext
    quote: Quote
    warnings: list[RequestWarning] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.provider.info.name


@dataclass
class Plan:
    candidates: list[Candidate]
    skipped: dict[str, str]
    """Provider -> why it will not be tried."""
    quotes: list[Quote]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the journal keeps it with the job)."""
        return {
            "candidates": [
                {
                    "provider": c.name,
                    "unit_price_usd": None if c.quote.unit_price_usd is None else str(c.quote.unit_price_usd),
                    "total_usd": None if c.quote.total_usd is None else str(c.quote.total_usd),
                    "calls": c.quote.calls,
                    "warnings": [str(w) for w in c.warnings],
                }
                for c in self.candidates
            ],
            "skipped": dict(self.skipped),
        }


class ObservedLatency:
    """Exponentially weighted average of successful attempts' time per provider (thread-safe)."""

    def __init__(self, smoothing: float = LATENCY_SMOOTHING) -> None:
        self.smoothing = smoothing
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(self, provider: str, seconds: float) -> None:
        with self._lock:
            old = self._values.get(provider)
            self._values[provider] = seconds if old is None else old + self.smoothing * (seconds - old)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)


class Spend:
    """Money one job has committed so far, shared by its calls so failover respects the budget."""

    def __init__(self) -> None:
        self.succeeded = Decimal(0)
        self.at_risk = Decimal(0)
        """Failed attempts that were, or may have been, billed (at their quote)."""

    @property
    def total(self) -> Decimal:
        return self.succeeded + self.at_risk


# -- planning (no I/O) ------------------------------------------------------------------------------------


def plan(
    request: CharacterRequest,
    providers: Sequence[Provider],
    *,
    context_for: Callable[[Provider], CallContext],
    strict: bool = False,
    fan_out: bool = True,
    max_cost_usd: Decimal | None = None,
    strategy: Strategy = "as_listed",
    latency: Mapping[str, float] | None = None,
    known_providers: Sequence[str] = (),
    breaker: CircuitBreaker | None = None,
) -> Plan:
    """Decide who may serve ``request`` and in which order. Raises before any I/O when nobody can."""
    names = {p.info.name for p in providers} | set(known_providers)
    unknown = sorted(set(request.extra) - names)
    if unknown:
        raise InvalidRequest.for_field(f"extra.{unknown[0]}", f"no provider named {unknown[0]!r} is installed")
    candidates: list[Candidate] = []
    skipped: dict[str, str] = {}
    quotes: list[Quote] = []
    missing: list[MissingCredentials] = []
    paused: list[str] = []
    over_budget: list[str] = []
    for provider in providers:
        name = provider.info.name
        quote = provider.quote(request, fan_out=fan_out)
        quotes.append(quote)
        why, kind = _unplannable(quote, strict, max_cost_usd, breaker)
        if why is not None:
            skipped[name] = why
            {"budget": over_budget, "breaker": paused}.get(kind, []).append(name)
            continue
        try:
            ctx = context_for(provider)
        except MissingCredentials as exc:
            missing.append(exc)
            skipped[name] = str(exc)
            continue
        candidates.append(Candidate(provider, ctx, quote, list(quote.warnings)))
    if not candidates:
        raise _nobody(skipped, quotes, missing, paused, over_budget)
    if strategy == "cheapest":
        candidates.sort(key=lambda c: c.quote.total_usd if c.quote.total_usd is not None else Decimal("Infinity"))
    elif strategy == "fastest" and latency:
        candidates.sort(key=lambda c: latency.get(c.name, float("inf")))
    return Plan(candidates, skipped, quotes)


def _unplannable(
    quote: Quote, strict: bool, max_cost_usd: Decimal | None, breaker: CircuitBreaker | None
) -> tuple[str | None, str]:
    """Why a provider will not be tried, and which kind of reason that is (None when it will be)."""
    if not quote.supported:
        return quote.reason or "cannot serve this request", "unsupported"
    if strict and quote.warnings:
        return "strict: " + "; ".join(w.message for w in quote.warnings), "strict"
    if max_cost_usd is not None and quote.total_usd is not None and quote.total_usd > max_cost_usd:
        return f"quote ${quote.total_usd} is over the budget of ${max_cost_usd}", "budget"
    paused = breaker.why_skipped(quote.provider) if breaker is not None else None
    return paused, "breaker"


def _nobody(
    skipped: dict[str, str],
    quotes: list[Quote],
    missing: list[MissingCredentials],
    paused: list[str],
    over_budget: list[str],
) -> IdeocharError:
    reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
    if missing and len(missing) == len(skipped):
        if len(missing) == 1:
            return missing[0]
        return MissingCredentials.combine(missing)
    if paused:
        return ProviderUnavailable(
            f"every provider that could serve this request is paused by its circuit breaker: {reasons}", sent=False
        )
    if over_budget:
        return OverBudget(
            f"every provider that can serve this request is over the budget: {reasons}",
            quotes={q.provider: str(q.total_usd) for q in quotes},
        )
    return Unsupported(f"no configured provider can serve this request: {reasons}", reasons=skipped)


def split_request(request: CharacterRequest, per_call: int) -> list[CharacterRequest]:
    """``request`` as calls of at most ``per_call`` images; each seed is the seed plus the images before it."""
    if request.num_images <= per_call:
        return [request]
    parts: list[CharacterRequest] = []
    offset = 0
    while offset < request.num_images:
        count = min(per_call, request.num_images - offset)
        seed = None if request.seed is None else (request.seed + offset) % (MAX_SEED + 1)
        parts.append(request.model_copy(update={"num_images": count, "seed": seed}))
        offset += count
    return parts


# -- what the router hands to the job ---------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One call of a job: ``label`` is "0", "1", ... (and "1.0", "1.1" when a fallback split "1" again)."""

    label: str
    num_images: int
    seed: int | None
    request: CharacterRequest | None = None
    """What to send; None for a part whose attempt is picked up by its vendor id (nothing is sent)."""

    @classmethod
    def of(cls, label: str, request: CharacterRequest) -> Part:
        return cls(label, request.num_images, request.seed, request)

    def split(self, per_call: int) -> list[Part]:
        assert self.request is not None
        return [Part.of(f"{self.label}.{i}", r) for i, r in enumerate(split_request(self.request, per_call))]


@dataclass(frozen=True)
class AttemptStarted:
    """A provider is about to be tried for a part (nothing is sent before the job has recorded this)."""

    key: str
    provider: str
    part: Part
    try_number: int
    quote_usd: Decimal | None
    resumed: bool = False


@dataclass(frozen=True)
class SendIntent:
    """An admitting request is about to leave. The job must record it durably first, or stop the attempt:
    a journal that cannot say "this may have been sent" must not let it be sent."""

    key: str
    provider: str
    part: Part
    marker: Mapping[str, Any] | None
    at: float


@dataclass(frozen=True)
class VendorAdmitted:
    """The vendor gave the job an id (the provider's ``submitted`` event, stamped)."""

    key: str
    part: Part
    event: Event


@dataclass(frozen=True)
class AttemptEnded:
    """How an attempt ended, billing settled. ``output`` on success; ``error`` otherwise."""

    key: str
    part: Part
    attempt: Attempt
    admitted: bool
    output: ProviderOutput | None = None
    error: IdeocharError | None = None


@dataclass(frozen=True)
class PartSplit:
    """A fallback makes fewer images per call: ``part`` is served as ``pieces`` (journaled before any is sent)."""

    part: Part
    pieces: tuple[Part, ...]


Fact = AttemptStarted | SendIntent | VendorAdmitted | AttemptEnded | PartSplit


@dataclass(frozen=True)
class Served:
    """A part served by one provider, priced."""

    provider: str
    output: ProviderOutput
    cost_usd: Decimal | None
    cost_source: CostSource
    warnings: list[RequestWarning]
    attempt: Attempt


@dataclass
class Outcome:
    """What became of one part: served, failed (``error``), or neither (not sent)."""

    part: Part
    served: Served | None = None
    error: IdeocharError | None = None
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class RouteContext:
    """What the calls of one job share while the router works."""

    policy: FailurePolicy = field(default_factory=FailurePolicy)
    job_id: str | None = None
    deadline: float | None = None
    breaker: CircuitBreaker | None = None
    latency: ObservedLatency | None = None
    limited: Collection[str] = ()
    max_cost_usd: Decimal | None = None
    spend: Spend = field(default_factory=Spend)


# -- the billing rule ---------------------------------------------------------------------------------------


@dataclass
class Wire:
    """What one attempt did on the wire, as the router saw it pass: the only input to the billing rule."""

    intent: bool = False
    """A request that may create a billable job (``Send(admits=True)``) was handed to the driver."""
    answer_status: int | None = None
    """The HTTP status of the answer to that request, when one came."""
    vendor_id: str | None = None
    """The vendor's id for the job, from a ``submitted`` event (or the journal, when resuming)."""
    resumed: bool = False
    """The attempt picks up a job admitted earlier (or one that may have been)."""

    def may_have_admitted(self, error: IdeocharError | None = None) -> bool:
        """Could the vendor hold a billable job of this attempt now?"""
        if self.vendor_id is not None or self.resumed:
            return True
        if isinstance(error, ProviderError) and (error.admitted or isinstance(error, OutcomeUnknown)):
            return True
        if not self.intent:
            return False
        if self.answer_status is None:  # sent, and no answer came: only a connect error proves it did not start
            return not (isinstance(error, ProviderError) and not error.sent)
        return 200 <= self.answer_status < 300


def settle(error: IdeocharError, wire: Wire, provider: str) -> IdeocharError:
    """Rule on an attempt's failure from its wire facts: who, which job, billed or not (module docstring)."""
    if not isinstance(error, ProviderError):
        return error
    error.provider = error.provider or provider
    if wire.may_have_admitted(error):
        if type(error) is ProviderUnavailable:
            error = _lost_after_admission(error, provider, wire.vendor_id)
        error.admitted = True
        # The job's id is the one the vendor gave when it admitted it; an id on a later answer (a status
        # route's own request id) names that answer, not the job to resume.
        error.vendor_request_id = wire.vendor_id or error.vendor_request_id
        error.billed = "yes" if error.billed == "yes" else "unknown"
    elif not wire.intent:
        error.billed = "no"  # nothing that could bill has left
    return error


def billed_of(error: IdeocharError, wire: Wire) -> Billed:
    """The attempt's billing after :func:`settle` (errors that are not the vendor's follow the wire)."""
    if isinstance(error, ProviderError):
        return error.billed
    return "unknown" if wire.may_have_admitted(error) else "no"


def _lost_after_admission(error: ProviderUnavailable, provider: str, vendor_id: str | None) -> OutcomeUnknown:
    job = f"job {vendor_id}" if vendor_id else "the job"
    unknown = OutcomeUnknown(
        f"{provider} admitted {job} and then could not be reached: {error.message}. "
        "It may still finish and be billed; resume it by its id.",
        provider=provider,
        vendor_request_id=vendor_id,
        status=error.status,
        admitted=True,
    )
    unknown.__cause__ = error
    return unknown


Move = Literal["retry", "fail_over", "stop"]


def next_move(error: IdeocharError, tries: int, policy: FailurePolicy, deadline: float | None) -> tuple[Move, float]:
    """After a settled failure: retry here (after the wait), try the next provider, or stop the part."""
    if not isinstance(error, ProviderError):
        return "stop", 0.0  # an invalid request, a journal that cannot record: no provider would do better
    if error.admitted:
        return ("fail_over" if policy.after_admission == "fail_over" and error.fail_over else "stop"), 0.0
    wait = _retry_wait(error, tries, policy)
    if wait is not None and (deadline is None or time.monotonic() + wait < deadline):
        return "retry", wait
    return ("fail_over" if error.fail_over else "stop"), 0.0


def _retry_wait(error: ProviderError, tries: int, policy: FailurePolicy) -> float | None:
    if not error.sent and tries <= policy.connect_retries:
        return backoff_seconds(tries)
    if (
        isinstance(error, RateLimited)
        and tries <= policy.rate_limit_retries
        and error.retry_after is not None
        and error.retry_after <= policy.max_retry_after_seconds
    ):
        return error.retry_after
    return None


# -- running one provider --------------------------------------------------------------------------------


def run_provider(
    provider: Provider, flow: Exchange[ProviderOutput], ctx: CallContext, *, key: str, part: Part, wire: Wire
) -> RouteExchange[ProviderOutput]:
    """Run one provider's exchange, watching its wire and stamping its events with who, which job and attempt.

    Before an admitting request leaves, a :class:`SendIntent` fact goes out (the job journals it or stops
    the attempt); a ``submitted`` event becomes a :class:`VendorAdmitted` fact. Anything an adapter
    raises that is not an ideochar error is reported as UnexpectedResponse.
    """
    name = provider.info.name

    def take(step: Any) -> Generator[Any, Any, Any] | None:
        if isinstance(step, Send) and step.admits:
            return _send_admitting(step, SendIntent(key, name, part, step.marker, time.time()), wire)
        if isinstance(step, Event):
            return _stamped_event(step, name, ctx.job_id, key, part, wire)
        return None

    try:
        output: ProviderOutput = yield from relay(flow, take)
    except IdeocharError:
        raise
    except Exception as exc:
        problem = f"the {name} adapter could not handle the vendor's answer: {type(exc).__name__}: {exc}"
        raise UnexpectedResponse(problem, provider=name) from exc
    if output.vendor_request_id is None:
        output.vendor_request_id = wire.vendor_id
    return output


def provider_flow(
    provider: Provider, flow: Exchange[ProviderOutput], ctx: CallContext, *, vendor_id: str | None = None
) -> Exchange[ProviderOutput]:
    """One provider's exchange as the router runs it, outside a job: events stamped, facts turned into
    plain events (there is no journal to write), the billing rule applied to its errors.

    For picking a vendor job up by hand (``Client.resume_vendor``: pass its ``vendor_id``) and for tests
    that drive an adapter alone.
    """
    wire = Wire(vendor_id=vendor_id, resumed=vendor_id is not None)
    watched = run_provider(provider, flow, ctx, key="-", part=Part("0", 1, None), wire=wire)
    try:
        output: ProviderOutput = yield from relay(watched, _facts_as_events)
    except IdeocharError as exc:
        settled = settle(exc, wire, provider.info.name)
        if settled is exc:
            raise
        raise settled from exc
    return output


def _facts_as_events(step: Any) -> Generator[Any, Any, Any] | None:
    if isinstance(step, VendorAdmitted):
        return _just(step.event)
    if isinstance(step, SendIntent):
        return _just(None)
    return None


def _just(step: Any) -> Generator[Any, Any, None]:
    if step is not None:
        yield step


def _send_admitting(step: Send, intent: SendIntent, wire: Wire) -> RouteExchange[Any]:
    yield intent  # raises (JournalUnavailable) when it cannot be recorded: then nothing is sent
    wire.intent = True
    response = yield step
    wire.answer_status = response.status_code
    return response


def _stamped_event(
    event: Event, provider: str, job_id: str | None, key: str, part: Part, wire: Wire
) -> RouteExchange[None]:
    stamped = replace(
        event, provider=event.provider or provider, job_id=event.job_id or job_id, attempt=key, part=part.label
    )
    if stamped.kind == "submitted" and (stamped.vendor_request_id or stamped.resume):
        # An id, or only what a resume needs (Ideogram's answer: its image URLs, no id): journal either.
        wire.vendor_id = stamped.vendor_request_id or wire.vendor_id
        yield VendorAdmitted(key, part, stamped)
    else:
        yield stamped


def _attempt_key() -> str:
    return uuid.uuid4().hex[:16]


def _attempt_record(
    provider: str, started: float, t0: float, *, billed: Billed, error: IdeocharError | None = None, **fields: Any
) -> Attempt:
    return Attempt(
        provider=provider,
        outcome="failed" if error is not None else "succeeded",
        billed=billed,
        error_type=type(error).__name__ if error is not None else None,
        message=error.message if error is not None else None,
        started_at=datetime.fromtimestamp(started, timezone.utc),
        elapsed_seconds=time.monotonic() - t0,
        **fields,
    )


def _cost(output: ProviderOutput, unit: Decimal | None, images: int) -> tuple[Decimal | None, CostSource]:
    if output.cost_usd is not None:
        return output.cost_usd, "vendor"
    if unit is not None:
        return unit * images, "price_table"
    return None, "unknown"


@dataclass(frozen=True)
class _Try:
    """One attempt's inputs: which provider, its flow, and what the wire already knows (a resume)."""

    provider: Provider
    ctx: CallContext
    flow: Exchange[ProviderOutput]
    wire: Wire
    unit_price_usd: Decimal | None
    try_number: int = 1
    key: str = field(default_factory=_attempt_key)


def _attempt(attempt: _Try, part: Part, route: RouteContext) -> RouteExchange[Served | IdeocharError]:
    """Run one attempt to its end and settle it. Every path (first try, resume, reconcile) passes here."""
    name = attempt.provider.info.name
    quote = None if attempt.unit_price_usd is None else attempt.unit_price_usd * part.num_images
    started, t0 = time.time(), time.monotonic()
    yield AttemptStarted(attempt.key, name, part, attempt.try_number, quote, resumed=attempt.wire.resumed)
    try:
        output = yield from run_provider(
            attempt.provider, attempt.flow, attempt.ctx, key=attempt.key, part=part, wire=attempt.wire
        )
    except IdeocharError as exc:
        error = settle(exc, attempt.wire, name)
        billed = billed_of(error, attempt.wire)
        if billed != "no" and quote is not None:
            route.spend.at_risk += quote
        vendor_id = error.vendor_request_id if isinstance(error, ProviderError) else attempt.wire.vendor_id
        record = _attempt_record(name, started, t0, billed=billed, error=error, vendor_request_id=vendor_id)
        error.attempts = [record]
        yield AttemptEnded(attempt.key, part, record, attempt.wire.may_have_admitted(error), error=error)
        return error
    cost, source = _cost(output, attempt.unit_price_usd, part.num_images)
    if cost is not None:
        route.spend.succeeded += cost
    record = _attempt_record(name, started, t0, billed="yes", vendor_request_id=output.vendor_request_id, cost_usd=cost)
    yield AttemptEnded(attempt.key, part, record, True, output=output)
    if route.latency is not None and not attempt.wire.resumed:
        route.latency.observe(name, time.monotonic() - t0)
    return Served(name, output, cost, source, list(output.warnings), record)


# -- routing one part --------------------------------------------------------------------------------------


def route_part(part: Part, candidates: Sequence[Candidate], route: RouteContext) -> RouteExchange[list[Outcome]]:
    """Serve ``part`` with the candidates in order, failing over per :func:`next_move`.

    Returns one :class:`Outcome` per call made (usually one; several when a fallback that makes fewer
    images per call split the part). A failure is returned, not raised; only what is not an ideochar
    error (a bug, a cancellation, an interrupt) propagates.
    """
    attempts: list[Attempt] = []
    errors: list[IdeocharError] = []
    skipped: dict[str, str] = {}
    over_budget: set[str] = set()
    for position, candidate in enumerate(candidates):
        if route.deadline is not None and time.monotonic() >= route.deadline and (attempts or errors):
            skipped[candidate.name] = "the job's deadline passed"
            break
        if part.num_images > candidate.provider.info.max_images_per_call:
            return (yield from _resplit(part, candidates[position:], route, attempts))
        reason, budget = _skip_reason(candidate, part, route)
        if reason is not None:
            attempts.append(Attempt(provider=candidate.name, outcome="skipped", billed="no", message=reason))
            skipped[candidate.name] = reason
            if budget:
                over_budget.add(candidate.name)
            continue
        try:
            served, failure, move = yield from _serve_with(candidate, part, route, attempts)
        except IdeocharError as exc:  # the journal could not record the next attempt: stop, keeping the others
            return [Outcome(part, error=_with_attempts(exc, attempts), attempts=attempts)]
        if served is not None:
            return [Outcome(part, served=served, attempts=attempts)]
        if failure is None:  # no slot in time, or no room in the shared budget: skipped (the attempt list says why)
            skipped[candidate.name] = attempts[-1].message or "no free slot in time"
            if attempts[-1].error_type == OverBudget.__name__:
                over_budget.add(candidate.name)
            continue
        errors.append(failure)
        if move == "stop":
            return [Outcome(part, error=_with_attempts(failure, attempts), attempts=attempts)]
        yield Event(
            "failed_over", provider=candidate.name, job_id=route.job_id, message=failure.message, part=part.label
        )
    return [Outcome(part, error=_all_failed(errors, skipped, over_budget, attempts), attempts=attempts)]


def _serve_with(
    candidate: Candidate, part: Part, route: RouteContext, attempts: list[Attempt]
) -> RouteExchange[tuple[Served | None, IdeocharError | None, Move]]:
    """Try one candidate, retrying what provably did not start; the served part, or the last failure."""
    name = candidate.name
    tries = 0
    while True:
        tries += 1
        # When the breaker let this try through (route_part asked it; a retry asks below, after its wait):
        # a success of a try let through before the breaker opened must not close it.
        admitted_at = route.breaker.clock() if route.breaker is not None else None
        permit: Permit | None = None
        if name in route.limited:
            unit = candidate.quote.unit_price_usd
            quote = None if unit is None else unit * part.num_images
            try:  # a slot, and the quote reserved in the shared budget (settled below with what it cost)
                permit = yield Acquire(name, part.num_images, route.deadline, quote_usd=quote)
            except (ProviderUnavailable, OverBudget) as exc:
                kind = type(exc).__name__ if isinstance(exc, OverBudget) else None
                attempts.append(
                    Attempt(provider=name, outcome="skipped", billed="no", message=exc.message, error_type=kind)
                )
                return None, None, "fail_over"
        assert part.request is not None, "a part picked up by vendor id is never routed"
        flow = candidate.provider.exchange(part.request, candidate.ctx)
        attempt = _Try(candidate.provider, candidate.ctx, flow, Wire(), candidate.quote.unit_price_usd, tries)
        outcome: Served | IdeocharError | None = None
        try:
            outcome = yield from _attempt(attempt, part, route)
        finally:
            if permit is not None:
                permit.release(_ended(outcome))
        if route.breaker is not None:
            route.breaker.record(name, None if isinstance(outcome, Served) else outcome, admitted_at=admitted_at)
        if isinstance(outcome, Served):
            attempts.append(outcome.attempt)
            return replace(outcome, warnings=[*_call_warnings(candidate), *outcome.warnings]), None, "stop"
        attempts.extend(outcome.attempts)
        move, wait = next_move(outcome, tries, route.policy, route.deadline)
        if move == "retry" and route.breaker is not None and route.breaker.state(name) == "open":
            move = _instead_of_retry(outcome)
        if move != "retry":
            return None, outcome, move
        yield Event(
            "retried",
            provider=name,
            job_id=route.job_id,
            message=f"retrying in {wait:.2f}s: {outcome}",
            part=part.label,
        )
        yield Sleep(wait)
        if route.breaker is not None and not route.breaker.acquire(name)[0]:  # it opened while we waited
            return None, outcome, _instead_of_retry(outcome)


def _instead_of_retry(error: IdeocharError) -> Move:
    """The move for a retryable failure that may not be retried (the provider's breaker is open)."""
    return "fail_over" if isinstance(error, ProviderError) and error.fail_over else "stop"


def _ended(outcome: Served | IdeocharError | None) -> Ended | None:
    """What a permit's reservation settles at: the cost of a served attempt, nothing for one billed "no",
    the whole quote otherwise (None: interrupted, or billed yes or unknown at no known cost)."""
    if outcome is None:
        return None
    if isinstance(outcome, Served):
        return Ended(spent_usd=outcome.cost_usd, fault=False)
    billed = outcome.attempts[-1].billed if outcome.attempts else "unknown"
    return Ended(spent_usd=Decimal(0) if billed == "no" else None, fault=counts_as_fault(outcome))


def _call_warnings(candidate: Candidate) -> list[RequestWarning]:
    # The quote's fan-out note was about the whole request; a fan-out that happens says so itself.
    return [w for w in candidate.warnings if w.kind != "fanned_out"]


def _skip_reason(candidate: Candidate, part: Part, route: RouteContext) -> tuple[str | None, bool]:
    """Why not to try ``candidate`` now (None: try it), and whether the reason is the budget."""
    unit = candidate.quote.unit_price_usd
    quote = None if unit is None else unit * part.num_images
    if route.max_cost_usd is not None and quote is not None and route.spend.total + quote > route.max_cost_usd:
        return (
            f"${quote} more would take this request over its budget of ${route.max_cost_usd} "
            f"(${route.spend.total} already spent or possibly billed)"
        ), True
    if route.breaker is not None:
        allowed, why = route.breaker.acquire(candidate.name)
        return (None if allowed else why), False
    return None, False


def _resplit(
    part: Part, candidates: Sequence[Candidate], route: RouteContext, attempts: list[Attempt]
) -> RouteExchange[list[Outcome]]:
    """A fallback makes fewer images per call than ``part`` needs: serve it in several calls, in order."""
    outcomes: list[Outcome] = []
    stopped: IdeocharError | None = None
    pieces = part.split(candidates[0].provider.info.max_images_per_call)
    yield PartSplit(part, tuple(pieces))
    for piece in pieces:
        if stopped is not None:
            outcomes.append(Outcome(piece))
            continue
        for outcome in (yield from route_part(piece, candidates, route)):
            outcomes.append(outcome)
            if outcome.error is not None and stops_fan_out(outcome.error):
                stopped = outcome.error
    if outcomes:
        outcomes[0].attempts[:0] = attempts
    return outcomes


def stops_fan_out(error: IdeocharError) -> bool:
    """After this error the remaining calls of a job are not sent (they would be refused alike, or the
    journal cannot record them)."""
    if isinstance(error, AllProvidersFailed):
        return any(stops_fan_out(e) for e in error.errors)
    if isinstance(error, ProviderError):
        return not error.fail_over and not error.admitted
    return True


def _with_attempts(error: IdeocharError, attempts: list[Attempt]) -> IdeocharError:
    error.attempts = list(attempts)
    return error


def _all_failed(
    errors: list[IdeocharError], skipped: dict[str, str], over_budget: set[str], attempts: list[Attempt]
) -> IdeocharError:
    if not errors:
        summary = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no candidates"
        error: IdeocharError
        if skipped and set(skipped) == over_budget:
            error = OverBudget(f"no provider could be tried within the budget: {summary}")
        else:
            error = ProviderUnavailable(f"no provider could be tried: {summary}", sent=False)
        return _with_attempts(error, attempts)
    if len(errors) == 1:
        return _with_attempts(errors[0], attempts)
    return AllProvidersFailed(
        "every provider failed: " + "; ".join(f"{getattr(e, 'provider', '?')}: {e.message}" for e in errors),
        errors=errors,
        attempts=attempts,
    )


# -- picking up what a vendor admitted earlier -------------------------------------------------------------


def resume_attempt(
    provider: Provider,
    ctx: CallContext,
    state: Mapping[str, Any],
    part: Part,
    route: RouteContext,
    *,
    key: str,
    vendor_request_id: str | None,
    unit_price_usd: Decimal | None,
) -> RouteExchange[list[Outcome]]:
    """Fetch the result of an attempt a vendor admitted earlier, by its resume data; never sends it again.

    ``key`` is the original attempt's, so the journal updates the same row (one vendor job, one row).
    """
    wire = Wire(vendor_id=vendor_request_id, resumed=True)
    attempt = _Try(provider, ctx, provider.resume(state, ctx), wire, unit_price_usd, key=key)
    return (yield from _resumed(attempt, part, route))


def reconcile_attempt(
    provider: Provider,
    ctx: CallContext,
    marker: Mapping[str, Any],
    part: Part,
    route: RouteContext,
    *,
    key: str,
    sent_at: float,
    unit_price_usd: Decimal | None,
) -> RouteExchange[list[Outcome]]:
    """Find, in the vendor's listing, the job an attempt's admitting request may have created (its answer
    was lost with its id), then pick it up by that id. Sends nothing that could create a job."""
    wire = Wire(resumed=True)
    flow = _reconciled(provider, ctx, marker, sent_at)
    attempt = _Try(provider, ctx, flow, wire, unit_price_usd, key=key)
    return (yield from _resumed(attempt, part, route))


def _resumed(attempt: _Try, part: Part, route: RouteContext) -> RouteExchange[list[Outcome]]:
    outcome = yield from _attempt(attempt, part, route)
    if isinstance(outcome, Served):
        return [Outcome(part, served=outcome, attempts=[outcome.attempt])]
    return [Outcome(part, error=outcome, attempts=list(outcome.attempts))]


def _reconciled(
    provider: Provider, ctx: CallContext, marker: Mapping[str, Any], sent_at: float
) -> Exchange[ProviderOutput]:
    state = yield from provider.reconcile(marker, ctx, sent_at=sent_at)
    name = provider.info.name
    if state is None:
        raise OutcomeUnknown(
            f"{name}'s listing shows no job matching the request sent at "
            f"{datetime.fromtimestamp(sent_at, timezone.utc):%Y-%m-%d %H:%M:%S} UTC whose answer was lost; "
            "it was probably never created, but nothing proves it, so it is not sent again",
            provider=name,
        )
    vendor_id = str(state.get("id") or state.get("request_id") or "") or None
    yield Event("submitted", vendor_request_id=vendor_id, resume=dict(state), message="found in the vendor's listing")
    return (yield from provider.resume(state, ctx))

"""Choosing providers and trying them, without knowing any vendor.

:func:`plan` filters the configured providers by what they can do (saying why one is skipped), quotes
each, applies the budget and the breakers, and orders them (as listed, cheapest, or fastest observed).
Nothing is sent: an invalid request, one over budget, or one nobody can serve costs nothing.

:func:`route` is an exchange that tries the candidates in order and decides, per error, between
*retry here*, *fail over* and *stop*:

* Retry the same provider only when the request provably did not start there: a connect error or a
  vendor's ingress refusal (``sent=False``), or a 429 whose Retry-After is at most
  ``FailurePolicy.max_retry_after_seconds`` (a longer one fails over instead of waiting).
* Fail over on unavailability, timeouts before admission, auth and credit errors; never on an invalid
  request or a content filter (another vendor would refuse it too, or charge again), and never after a
  failure the vendor billed (the image was made but could not be fetched: running it elsewhere would
  charge twice; the error carries the vendor id).
* Once a vendor admitted the job (a ``submitted`` event gave its id), nothing is resubmitted there.
  A lost answer after sending is :class:`~ideochar.errors.OutcomeUnknown` (possibly billed, carrying
  the vendor id when known); the policy says whether to raise it (default: the job may still finish
  and be billed, resume it by id) or fail over to the next provider.
* Before each attempt: a provider whose breaker is open is skipped at once (:mod:`ideochar.breaker`);
  one that would take the request over budget, counting what failed attempts may already have cost,
  is skipped; where the provider has limits the router yields :class:`~ideochar.limits.Acquire` and
  waits for a slot (the wait counts against the deadline; no slot in time fails over).

**Fan-out.** A count a provider cannot make in one call is split into several calls (seeds ``seed``,
``seed+1``, ...: each call's seed is the request's seed plus the number of images asked for before it;
a seedless request stays seedless). Every call fails over on its own; the images that arrived are kept
and the rest come back as typed :class:`~ideochar.result.ImageFailure` s, with a ``fanned_out``
warning. The clients split the request by the first candidate (:func:`fan_out_parts`) and run the calls
one after another (``Client``) or concurrently (``AsyncClient``), merging with :func:`merge_parts`; a
fallback provider that makes fewer images per call than its part needs splits that part again itself.
After a stopping error (content filter, rejected request) the remaining calls are not sent.

Events carry ``data["attempt"]`` (a key per attempt), ``data["part"]`` (which call), and on
``attempt_started`` the call's ``num_images``, ``seed`` and ``quote_usd``, which is what the journal
records.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ideochar._constants import MAX_RETRY_AFTER_SECONDS
from ideochar.breaker import CircuitBreaker
from ideochar.errors import (
    AllProvidersFailed,
    GenerationFailed,
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
from ideochar.exchange import Sleep
from ideochar.limits import Acquire, Permit
from ideochar.request import CharacterRequest
from ideochar.result import Attempt, CharacterResult, CostSource, ImageFailure, RequestWarning
from ideochar.retry import backoff_seconds
from ideochar.spec import CallContext, Exchange, Provider, ProviderOutput, Quote

if TYPE_CHECKING:
    from ideochar.exchange import Step

__all__ = [
    "MAX_SEED",
    "Candidate",
    "FailurePolicy",
    "ObservedLatency",
    "Plan",
    "Spend",
    "Strategy",
    "fan_out_parts",
    "merge_parts",
    "plan",
    "resume_attempt",
    "route",
    "run_provider",
    "split_request",
    "stops_fan_out",
]

Strategy = Literal["as_listed", "cheapest", "fastest"]

T = TypeVar("T")
#: The router's own exchange: a provider's steps plus :class:`~ideochar.limits.Acquire`, which the clients answer.
RouteExchange = Generator["Step | Acquire", Any, T]

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
    on_outcome_unknown: Literal["raise", "fail_over"] = "raise"
    """After a lost answer the job may still run and bill: raise (default) or try the next provider."""


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
    """Money one request has committed so far, shared by its calls so failover respects the budget."""

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
        if not quote.supported:
            skipped[name] = quote.reason or "cannot serve this request"
            continue
        if strict and quote.warnings:
            skipped[name] = "strict: " + "; ".join(w.message for w in quote.warnings)
            continue
        if max_cost_usd is not None and quote.total_usd is not None and quote.total_usd > max_cost_usd:
            skipped[name] = f"quote ${quote.total_usd} is over the budget of ${max_cost_usd}"
            over_budget.append(name)
            continue
        why = breaker.why_skipped(name) if breaker is not None else None
        if why is not None:
            skipped[name] = why
            paused.append(name)
            continue
        try:
            ctx = context_for(provider)
        except MissingCredentials as exc:
            missing.append(exc)
            skipped[name] = str(exc)
            continue
        candidates.append(Candidate(provider, ctx, quote, list(quote.warnings)))
    if not candidates:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        if missing and len(missing) == len(skipped):
            raise (
                missing[0]
                if len(missing) == 1
                else MissingCredentials(
                    ", ".join(m.provider or "" for m in missing), [v for m in missing for v in m.variables]
                )
            )
        if paused:
            raise ProviderUnavailable(
                f"every provider that could serve this request is paused by its circuit breaker: {reasons}",
                sent=False,
            )
        if over_budget:
            raise OverBudget(
                f"every provider that can serve this request is over the budget: {reasons}",
                quotes={q.provider: str(q.total_usd) for q in quotes},
            )
        raise Unsupported(f"no configured provider can serve this request: {reasons}", reasons=skipped)
    if strategy == "cheapest":
        candidates.sort(key=lambda c: c.quote.total_usd if c.quote.total_usd is not None else Decimal("Infinity"))
    elif strategy == "fastest" and latency:
        candidates.sort(key=lambda c: latency.get(c.name, float("inf")))
    return Plan(candidates, skipped, quotes)


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


def fan_out_parts(request: CharacterRequest, candidates: Sequence[Candidate]) -> list[CharacterRequest]:
    """The calls the first candidate needs for ``request`` (one, unless it must fan out)."""
    if not candidates:
        return [request]
    return split_request(request, candidates[0].provider.info.max_images_per_call)


def stops_fan_out(error: BaseException) -> bool:
    """After this error the remaining calls of a fan-out are not sent (they would be refused alike)."""
    if isinstance(error, AllProvidersFailed):
        return any(stops_fan_out(e) for e in error.errors)
    return isinstance(error, ProviderError) and not error.fail_over and not isinstance(error, OutcomeUnknown)


# -- running one provider --------------------------------------------------------------------------------


def run_provider(
    provider: Provider,
    flow: Exchange[ProviderOutput],
    ctx: CallContext,
    *,
    attempt: str | None = None,
    vendor_id: str | None = None,
) -> Exchange[ProviderOutput]:
    """Run one provider's exchange, stamping its events and errors with who, which job and which attempt.

    After a ``submitted`` event (or from the start, when resuming a known ``vendor_id``) every error
    carries the vendor id and ``admitted=True``, and a transport-level failure becomes OutcomeUnknown:
    from then on the job exists at the vendor. Anything an adapter raises that is not an ideochar error
    is reported as UnexpectedResponse.
    """
    name = provider.info.name
    answer: Any = None
    failure: BaseException | None = None
    try:
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(answer)
            except StopIteration as stop:
                output: ProviderOutput = stop.value
                if output.vendor_request_id is None:
                    output.vendor_request_id = vendor_id
                return output
            except ProviderError as exc:
                raise _stamped(exc, name, vendor_id) from exc.__cause__
            except IdeocharError:
                raise
            except Exception as exc:
                problem = f"the {name} adapter could not handle the vendor's answer: {type(exc).__name__}: {exc}"
                raise _stamped(UnexpectedResponse(problem), name, vendor_id) from exc
            if isinstance(step, Event):
                if step.kind == "submitted" and step.vendor_request_id:
                    vendor_id = step.vendor_request_id
                data = {**step.data, "attempt": attempt} if attempt is not None else step.data
                step = replace(step, provider=step.provider or name, job_id=step.job_id or ctx.job_id, data=data)
            answer, failure = None, None
            try:
                answer = yield step
            except BaseException as exc:  # thrown in by the driver: hand it to the provider
                failure = exc
    finally:
        flow.close()


def _stamped(exc: ProviderError, name: str, vendor_id: str | None) -> ProviderError:
    exc.provider = exc.provider or name
    if vendor_id is None:
        return exc
    exc.vendor_request_id = exc.vendor_request_id or vendor_id
    exc.admitted = True
    if type(exc) is ProviderUnavailable:
        unknown = OutcomeUnknown(
            f"{name} admitted job {vendor_id} and then could not be reached: {exc.message}. "
            "It may still finish and be billed; resume it by its id.",
            provider=name,
            vendor_request_id=vendor_id,
            status=exc.status,
            admitted=True,
        )
        unknown.__cause__ = exc
        return unknown
    return exc


def _retry_wait(exc: ProviderError, tries: int, policy: FailurePolicy, deadline: float | None) -> float | None:
    """Seconds to wait before trying the same provider again, or None to move on."""
    if exc.admitted:
        return None
    wait: float | None = None
    if not exc.sent and tries <= policy.connect_retries:
        wait = backoff_seconds(tries)
    elif (
        isinstance(exc, RateLimited)
        and tries <= policy.rate_limit_retries
        and exc.retry_after is not None
        and exc.retry_after <= policy.max_retry_after_seconds
    ):
        wait = exc.retry_after
    if wait is not None and deadline is not None and time.monotonic() + wait >= deadline:
        return None
    return wait


def _may_fail_over(exc: ProviderError, policy: FailurePolicy) -> bool:
    if exc.billed == "yes":
        # The vendor was paid (e.g. the image was made but could not be downloaded): running it again
        # elsewhere would charge twice, so the caller sees this error with its vendor id instead.
        return False
    if isinstance(exc, OutcomeUnknown):
        return policy.on_outcome_unknown == "fail_over"
    if exc.billed == "unknown" and not isinstance(exc, GenerationFailed):
        # The vendor may have taken the job and we could not read how it ended (an unreadable answer to
        # the billable request or to a poll): it may have charged. Like a lost answer, the policy decides;
        # by default the caller gets the error (with the vendor id when there is one) instead of a second
        # charge elsewhere. A failure the vendor itself reported (GenerationFailed) may still fail over.
        return policy.on_outcome_unknown == "fail_over"
    return exc.fail_over


# -- routing ---------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What the calls of one request share while the router works."""

    policy: FailurePolicy
    job_id: str | None
    deadline: float | None
    breaker: CircuitBreaker | None
    latency: ObservedLatency | None
    limited: Collection[str]
    max_cost_usd: Decimal | None
    spend: Spend


def route(
    request: CharacterRequest,
    candidates: Sequence[Candidate],
    *,
    policy: FailurePolicy = FailurePolicy(),
    job_id: str | None = None,
    deadline: float | None = None,
    breaker: CircuitBreaker | None = None,
    latency: ObservedLatency | None = None,
    limited: Collection[str] = (),
    max_cost_usd: Decimal | None = None,
    spend: Spend | None = None,
    part: str = "0",
) -> RouteExchange[CharacterResult]:
    """Serve ``request`` with the candidates in order (see the module docstring).

    ``limited`` names the providers whose attempts first wait for a slot (an ``Acquire`` step, answered
    by the client's limiter). ``spend`` is shared by the calls of one fanned-out request; ``part``
    labels this call in events and in the journal.
    """
    run = _Run(policy, job_id, deadline, breaker, latency, limited, max_cost_usd, spend or Spend())
    return (yield from _serve(request, list(candidates), run, part))


def _serve(
    request: CharacterRequest, candidates: list[Candidate], run: _Run, label: str
) -> RouteExchange[CharacterResult]:
    parts = fan_out_parts(request, candidates)
    if len(parts) == 1:
        return (yield from _one_call(request, candidates, run, label))
    outcomes: list[CharacterResult | IdeocharError | None] = []
    stop = False
    for index, part in enumerate(parts):
        if stop:
            outcomes.append(None)
            continue
        try:
            outcomes.append((yield from _one_call(part, candidates, run, f"{label}.{index}")))
        except IdeocharError as exc:
            outcomes.append(exc)
            stop = stops_fan_out(exc)
    return merge_parts(request, parts, outcomes, job_id=run.job_id)


def _skipped(name: str, reason: str) -> Attempt:
    return Attempt(provider=name, outcome="skipped", billed="no", message=reason)


def _attempt_key() -> str:
    return uuid.uuid4().hex[:16]


def _part_quote(candidate: Candidate, request: CharacterRequest) -> Decimal | None:
    unit = candidate.quote.unit_price_usd
    return None if unit is None else unit * request.num_images


def _over_budget(candidate: Candidate, request: CharacterRequest, run: _Run) -> str | None:
    quote = _part_quote(candidate, request)
    if run.max_cost_usd is None or quote is None:
        return None
    if run.spend.total + quote <= run.max_cost_usd:
        return None
    return (
        f"${quote} more would take this request over its budget of ${run.max_cost_usd} "
        f"(${run.spend.total} already spent or possibly billed)"
    )


def _one_call(
    request: CharacterRequest, candidates: list[Candidate], run: _Run, label: str
) -> RouteExchange[CharacterResult]:
    """One call's worth of images, failing over along ``candidates``."""
    attempts: list[Attempt] = []
    errors: list[ProviderError] = []
    skipped_reasons: dict[str, str] = {}
    over_budget: set[str] = set()
    for position, candidate in enumerate(candidates):
        name = candidate.name
        if run.deadline is not None and time.monotonic() >= run.deadline and (attempts or errors):
            skipped_reasons[name] = "the job's deadline passed"
            break
        if request.num_images > candidate.provider.info.max_images_per_call:
            # A fallback that makes fewer images per call: it serves this call in several of its own.
            try:
                result = yield from _serve(request, candidates[position:], run, label)
            except IdeocharError as exc:
                _prepend_attempts(exc, attempts)
                raise
            return result.model_copy(update={"attempts": [*attempts, *result.attempts]})
        reason = _over_budget(candidate, request, run)
        if reason is not None:
            over_budget.add(name)
        elif run.breaker is not None:
            allowed, why = run.breaker.acquire(name)
            reason = None if allowed else why
        if reason is not None:
            attempts.append(_skipped(name, reason))
            skipped_reasons[name] = reason
            continue
        tries = 0
        while True:
            tries += 1
            permit: Permit | None = None
            if name in run.limited:
                try:
                    permit = yield Acquire(name, request.num_images, run.deadline)
                except ProviderUnavailable as exc:
                    attempts.append(_skipped(name, exc.message))
                    skipped_reasons[name] = exc.message
                    break
            key = _attempt_key()
            quote = _part_quote(candidate, request)
            started, t0 = time.time(), time.monotonic()
            yield Event(
                "attempt_started",
                provider=name,
                job_id=run.job_id,
                data={
                    "try": tries,
                    "attempt": key,
                    "part": label,
                    "num_images": request.num_images,
                    "seed": request.seed,
                    "quote_usd": None if quote is None else str(quote),
                },
            )
            try:
                output = yield from run_provider(
                    candidate.provider, candidate.provider.exchange(request, candidate.ctx), candidate.ctx, attempt=key
                )
            except ProviderError as exc:
                attempts.append(_attempt(name, started, t0, error=exc))
                if run.breaker is not None:
                    run.breaker.record(name, exc)
                if exc.billed != "no" and quote is not None:
                    run.spend.at_risk += quote
                yield Event(
                    "attempt_failed",
                    provider=name,
                    job_id=run.job_id,
                    vendor_request_id=exc.vendor_request_id,
                    message=exc.message,
                    data={
                        "attempt": key,
                        "part": label,
                        "error": type(exc).__name__,
                        "billed": exc.billed,
                        "admitted": exc.admitted,
                        "sent": exc.sent,
                    },
                )
                wait = _retry_wait(exc, tries, run.policy, run.deadline)
                if wait is not None and run.breaker is not None and run.breaker.state(name) == "open":
                    wait = None
                if wait is not None:
                    yield Event(
                        "retried",
                        provider=name,
                        job_id=run.job_id,
                        message=f"retrying in {wait:.2f}s: {exc.message}",
                        data={"part": label},
                    )
                    yield Sleep(wait)
                    continue
                errors.append(exc)
                if not _may_fail_over(exc, run.policy):
                    _prepend_attempts(exc, attempts, replace_all=True)
                    raise
                yield Event("failed_over", provider=name, job_id=run.job_id, message=exc.message, data={"part": label})
                break
            finally:
                if permit is not None:
                    permit.release()
            elapsed = time.monotonic() - t0
            if run.breaker is not None:
                run.breaker.record(name, None)
            if run.latency is not None:
                run.latency.observe(name, elapsed)
            result = _result(request, candidate, output, attempts, started, t0, run.job_id)
            if result.cost_usd is not None:
                run.spend.succeeded += result.cost_usd
            yield Event(
                "finished",
                provider=name,
                job_id=run.job_id,
                vendor_request_id=result.vendor_request_id,
                cost_usd=result.cost_usd,
                data={"attempt": key, "part": label, "images": len(result.images)},
            )
            return result
    if not errors:
        summary = "; ".join(f"{k}: {v}" for k, v in skipped_reasons.items()) or "no candidates"
        skipped_error: IdeocharError
        if skipped_reasons and set(skipped_reasons) == over_budget:
            skipped_error = OverBudget(f"no provider could be tried within the budget: {summary}")
        else:
            skipped_error = ProviderUnavailable(f"no provider could be tried: {summary}", sent=False)
        _prepend_attempts(skipped_error, attempts, replace_all=True)
        raise skipped_error
    if len(errors) == 1:
        _prepend_attempts(errors[0], attempts, replace_all=True)
        raise errors[0]
    raise AllProvidersFailed(
        "every provider failed: " + "; ".join(f"{e.provider}: {e.message}" for e in errors),
        errors=errors,
        attempts=attempts,
    )


def _prepend_attempts(exc: BaseException, attempts: list[Attempt], *, replace_all: bool = False) -> None:
    """Carry the attempts made so far on the error (``exc.attempts``), before those it already has."""
    if isinstance(exc, IdeocharError):
        exc.attempts = [*attempts, *([] if replace_all else exc.attempts)]


def _attempt(
    name: str,
    started: float,
    t0: float,
    *,
    error: ProviderError | None = None,
    output: ProviderOutput | None = None,
    cost: Decimal | None = None,
) -> Attempt:
    return Attempt(
        provider=name,
        outcome="failed" if error else "succeeded",
        billed=error.billed if error else "yes",
        vendor_request_id=(error.vendor_request_id if error else output.vendor_request_id if output else None),
        error_type=type(error).__name__ if error else None,
        message=error.message if error else None,
        started_at=datetime.fromtimestamp(started, timezone.utc),
        elapsed_seconds=time.monotonic() - t0,
        cost_usd=cost,
    )


def _cost(output: ProviderOutput, unit: Decimal | None, images: int) -> tuple[Decimal | None, CostSource]:
    if output.cost_usd is not None:
        return output.cost_usd, "vendor"
    if unit is not None:
        return unit * images, "price_table"
    return None, "unknown"


def _result(
    request: CharacterRequest,
    candidate: Candidate,
    output: ProviderOutput,
    attempts: list[Attempt],
    started: float,
    t0: float,
    job_id: str | None,
) -> CharacterResult:
    cost, source = _cost(output, candidate.quote.unit_price_usd, request.num_images)
    attempts = [*attempts, _attempt(candidate.name, started, t0, output=output, cost=cost)]
    return CharacterResult(
        images=output.images,
        provider=candidate.name,
        vendor_request_id=output.vendor_request_id,
        cost_usd=cost,
        cost_source=source,
        # The quote's fan-out note was about the whole request; a fan-out that happens says so itself.
        warnings=[*(w for w in candidate.warnings if w.kind != "fanned_out"), *output.warnings],
        failures=output.failures,
        attempts=attempts,
        job_id=job_id,
        vendor_metadata=output.metadata,
    )


# -- resuming --------------------------------------------------------------------------------------------


def resume_attempt(
    provider: Provider,
    ctx: CallContext,
    state: Mapping[str, Any],
    *,
    job_id: str | None,
    attempt: str,
    vendor_request_id: str | None,
    num_images: int,
    unit_price_usd: Decimal | None,
    part: str = "0",
) -> RouteExchange[CharacterResult]:
    """Pick up an attempt a vendor admitted earlier, by its resume data; never sends it again.

    Events keep the original attempt key, so the journal updates the same row (one vendor job, one row).
    """
    name = provider.info.name
    started, t0 = time.time(), time.monotonic()
    yield Event(
        "attempt_started",
        provider=name,
        job_id=job_id,
        vendor_request_id=vendor_request_id,
        data={"attempt": attempt, "part": part, "resumed": True, "num_images": num_images},
    )
    try:
        output = yield from run_provider(
            provider, provider.resume(state, ctx), ctx, attempt=attempt, vendor_id=vendor_request_id
        )
    except ProviderError as exc:
        exc.admitted = True
        exc.vendor_request_id = exc.vendor_request_id or vendor_request_id
        yield Event(
            "attempt_failed",
            provider=name,
            job_id=job_id,
            vendor_request_id=exc.vendor_request_id,
            message=exc.message,
            data={
                "attempt": attempt,
                "part": part,
                "error": type(exc).__name__,
                "billed": exc.billed,
                "admitted": True,
                "sent": True,
            },
        )
        exc.attempts = [_attempt(name, started, t0, error=exc)]
        raise
    cost, source = _cost(output, unit_price_usd, num_images)
    result = CharacterResult(
        images=output.images,
        provider=name,
        vendor_request_id=output.vendor_request_id,
        cost_usd=cost,
        cost_source=source,
        warnings=list(output.warnings),
        failures=output.failures,
        attempts=[_attempt(name, started, t0, output=output, cost=cost)],
        job_id=job_id,
        vendor_metadata=output.metadata,
    )
    yield Event(
        "finished",
        provider=name,
        job_id=job_id,
        vendor_request_id=result.vendor_request_id,
        cost_usd=cost,
        data={"attempt": attempt, "part": part, "images": len(result.images)},
    )
    return result


# -- merging the calls of a fan-out ----------------------------------------------------------------------


def merge_parts(
    request: CharacterRequest,
    parts: Sequence[CharacterRequest],
    outcomes: Sequence[CharacterResult | BaseException | None],
    *,
    job_id: str | None,
) -> CharacterResult:
    """One result from the calls of a fan-out: every image that arrived, a typed failure for the rest.

    ``outcomes[i]`` is call ``i``'s result, its error, or None when it was not sent (an earlier call
    failed in a way that would repeat). Raises only when no call produced an image.
    """
    images: list[Any] = []
    failures: list[ImageFailure] = []
    attempts: list[Attempt] = []
    warnings: list[RequestWarning] = []
    errors: list[BaseException] = []
    calls: list[dict[str, Any]] = []
    served: list[CharacterResult] = []
    offset = 0
    first_error: BaseException | None = None
    for index, (part, outcome) in enumerate(zip(parts, outcomes, strict=True)):
        if isinstance(outcome, CharacterResult):
            served.append(outcome)
            images.extend(outcome.images)
            attempts.extend(outcome.attempts)
            warnings.extend(outcome.warnings)
            failures.extend(f.model_copy(update={"index": offset + (f.index or 0)}) for f in outcome.failures)
            missing = part.num_images - len(outcome.images) - len(outcome.failures)
            failures.extend(
                ImageFailure(
                    index=offset + len(outcome.images) + len(outcome.failures) + k,
                    reason=f"{outcome.provider} returned fewer images than asked for",
                    billed="unknown",
                    provider=outcome.provider,
                )
                for k in range(max(0, missing))
            )
            calls.append(
                {
                    "call": index,
                    "provider": outcome.provider,
                    "vendor_request_id": outcome.vendor_request_id,
                    "images": len(outcome.images),
                    "seed": part.seed,
                    "cost_usd": None if outcome.cost_usd is None else str(outcome.cost_usd),
                }
            )
        elif outcome is None:
            why = f"not sent: an earlier call failed ({first_error})" if first_error else "not sent"
            failures.extend(ImageFailure(index=offset + k, reason=why, billed="no") for k in range(part.num_images))
            calls.append({"call": index, "provider": None, "images": 0, "seed": part.seed, "error": "not sent"})
        else:
            first_error = first_error or outcome
            errors.append(outcome)
            attempts.extend(getattr(outcome, "attempts", []) or [])
            failures.extend(_failure(outcome, offset + k) for k in range(part.num_images))
            calls.append(
                {
                    "call": index,
                    "provider": getattr(outcome, "provider", None),
                    "images": 0,
                    "seed": part.seed,
                    "error": type(outcome).__name__,
                }
            )
        offset += part.num_images
    if not served:
        _raise_all(errors, attempts)
    cost, source = _total_cost(served)
    seeds = [p.seed for p in parts]
    seed_note = f" (seeds {seeds[0]}..{seeds[-1]})" if seeds[0] is not None else ""
    warnings.append(
        RequestWarning(
            kind="fanned_out",
            field="num_images",
            message=f"{request.num_images} images were asked for in {len(parts)} calls{seed_note}",
            provider=served[0].provider,
        )
    )
    first = served[0]
    return CharacterResult(
        images=images,
        provider=first.provider,
        vendor_request_id=first.vendor_request_id,
        cost_usd=cost,
        cost_source=source,
        warnings=_unique(warnings),
        failures=failures,
        attempts=attempts,
        job_id=job_id,
        vendor_metadata={**first.vendor_metadata, "calls": calls},
    )


def _failure(error: BaseException, index: int) -> ImageFailure:
    return ImageFailure(
        index=index,
        reason=str(error),
        billed=getattr(error, "billed", "unknown"),
        provider=getattr(error, "provider", None),
        error_type=type(error).__name__,
    )


def _total_cost(served: Sequence[CharacterResult]) -> tuple[Decimal | None, CostSource]:
    if any(r.cost_usd is None for r in served):
        return None, "unknown"
    total = sum((r.cost_usd for r in served if r.cost_usd is not None), Decimal(0))
    return total, "vendor" if all(r.cost_source == "vendor" for r in served) else "price_table"


def _unique(warnings: Sequence[RequestWarning]) -> list[RequestWarning]:
    seen: set[tuple[Any, ...]] = set()
    out: list[RequestWarning] = []
    for warning in warnings:
        key = (warning.kind, warning.field, warning.message, warning.provider)
        if key not in seen:
            seen.add(key)
            out.append(warning)
    return out


def _raise_all(errors: Sequence[BaseException], attempts: list[Attempt]) -> None:
    flat: list[IdeocharError] = []
    for error in errors:
        if isinstance(error, AllProvidersFailed):
            flat.extend(error.errors)
        elif isinstance(error, IdeocharError):
            flat.append(error)
        else:
            raise error
    if len(errors) == 1:
        _prepend_attempts(errors[0], attempts, replace_all=True)
        raise errors[0]
    raise AllProvidersFailed(
        f"every call of the fan-out failed: {errors[0]}",
        errors=flat,
        attempts=attempts,
    )

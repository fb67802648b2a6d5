"""Choosing providers and trying them, without knowing any vendor.

:func:`plan` filters the configured providers by what they can do (saying why one is skipped), quotes
each, applies the budget and orders them. :func:`route` is an exchange that tries the candidates in
order and decides, per error, between *retry here*, *fail over* and *stop*:

* Retry the same provider only when the request provably did not start there: a connect error
  (``sent=False``), or a 429 with a short Retry-After before the job was admitted.
* Fail over on unavailability, auth and credit errors; never on an invalid request or a content
  filter (another vendor would refuse it too, or charge again).
* Once a vendor admitted the job (a ``submitted`` event gave its id), nothing is resubmitted there.
  A lost answer after admission is :class:`~ideochar.errors.OutcomeUnknown` carrying the vendor id; the
  policy says whether to raise it (default: the job may still finish and be billed) or fail over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

from ideochar._constants import MAX_RETRY_AFTER_SECONDS
from ideochar.errors import (
    AllProvidersFailed,
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
from ideochar.request import CharacterRequest
from ideochar.result import Attempt, CharacterResult, RequestWarning
from ideochar.retry import backoff_seconds
from ideochar.spec import CallContext, Exchange, Provider, ProviderOutput, Quote

__all__ = ["Candidate", "FailurePolicy", "Plan", "Strategy", "plan", "route", "run_provider"]

Strategy = Literal["as_listed", "cheapest", "fastest"]


@dataclass(frozen=True)
class FailurePolicy:
    connect_retries: int = 2
    """Extra tries at one provider after connect errors (the request never left)."""
    rate_limit_retries: int = 2
    max_retry_after_seconds: float = MAX_RETRY_AFTER_SECONDS
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
            continue
        try:
            ctx = context_for(provider)
        except MissingCredentials as exc:
            missing.append(exc)
            skipped[name] = str(exc)
            continue
        candidates.append(Candidate(provider, ctx, quote, list(quote.warnings)))
    if not candidates:
        if missing and len(missing) == len(skipped):
            raise missing[0] if len(missing) == 1 else MissingCredentials(
                ", ".join(m.provider or "" for m in missing), [v for m in missing for v in m.variables]
            )
        if max_cost_usd is not None and any("budget" in r for r in skipped.values()):
            raise OverBudget(
                "every provider that can serve this request is over the budget: "
                + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
                quotes={q.provider: str(q.total_usd) for q in quotes},
            )
        raise Unsupported(
            "no configured provider can serve this request: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
            reasons=skipped,
        )
    if strategy == "cheapest":
        candidates.sort(key=lambda c: c.quote.total_usd if c.quote.total_usd is not None else Decimal("Infinity"))
    elif strategy == "fastest" and latency:
        candidates.sort(key=lambda c: latency.get(c.name, float("inf")))
    return Plan(candidates, skipped, quotes)


def run_provider(
    provider: Provider, flow: Exchange[ProviderOutput], ctx: CallContext
) -> Exchange[ProviderOutput]:
    """Run one provider's exchange, stamping its events and errors with who and which job.

    After a ``submitted`` event every error carries the vendor id and ``admitted=True``, and a
    transport-level failure becomes OutcomeUnknown: from then on the job exists at the vendor.
    Anything an adapter raises that is not an ideochar error is reported as UnexpectedResponse.
    """
    name = provider.info.name
    vendor_id: str | None = None
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
                raise _stamped(
                    UnexpectedResponse(f"the {name} adapter could not handle the vendor's answer: {type(exc).__name__}: {exc}"),
                    name,
                    vendor_id,
                ) from exc
            if isinstance(step, Event):
                if step.kind == "submitted" and step.vendor_request_id:
                    vendor_id = step.vendor_request_id
                step = replace(step, provider=step.provider or name, job_id=step.job_id or ctx.job_id)
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
    elif isinstance(exc, RateLimited) and tries <= policy.rate_limit_retries:
        if exc.retry_after is not None and exc.retry_after <= policy.max_retry_after_seconds:
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
    return exc.fail_over


def route(
    request: CharacterRequest,
    candidates: Sequence[Candidate],
    *,
    policy: FailurePolicy = FailurePolicy(),
    job_id: str | None = None,
    deadline: float | None = None,
) -> Exchange[CharacterResult]:
    """Try the candidates in order until one serves the request (see the module docstring)."""
    attempts: list[Attempt] = []
    errors: list[ProviderError] = []
    for candidate in candidates:
        name = candidate.name
        tries = 0
        while True:
            if deadline is not None and time.monotonic() >= deadline and attempts:
                break
            tries += 1
            started, t0 = time.time(), time.monotonic()
            yield Event("attempt_started", provider=name, job_id=job_id, data={"try": tries})
            try:
                output = yield from run_provider(
                    candidate.provider, candidate.provider.exchange(request, candidate.ctx), candidate.ctx
                )
            except ProviderError as exc:
                attempts.append(_attempt(name, started, t0, error=exc))
                yield Event("attempt_failed", provider=name, job_id=job_id, vendor_request_id=exc.vendor_request_id,
                            message=exc.message, data={"error": type(exc).__name__, "billed": exc.billed})
                wait = _retry_wait(exc, tries, policy, deadline)
                if wait is not None:
                    yield Event("retried", provider=name, job_id=job_id, message=f"retrying in {wait:.2f}s: {exc.message}")
                    yield Sleep(wait)
                    continue
                errors.append(exc)
                if not _may_fail_over(exc, policy):
                    exc.attempts = list(attempts)  # type: ignore[attr-defined]
                    raise
                yield Event("failed_over", provider=name, job_id=job_id, message=exc.message)
                break
            result = _result(request, candidate, output, attempts, started, t0, job_id)
            yield Event("finished", provider=name, job_id=job_id, vendor_request_id=result.vendor_request_id,
                        cost_usd=result.cost_usd, data={"images": len(result.images)})
            return result
    if len(errors) == 1:
        errors[0].attempts = list(attempts)  # type: ignore[attr-defined]
        raise errors[0]
    raise AllProvidersFailed(
        "every provider failed: " + "; ".join(f"{e.provider}: {e.message}" for e in errors),
        errors=errors,
        attempts=attempts,
    )


def _attempt(name: str, started: float, t0: float, *, error: ProviderError | None = None,
             output: ProviderOutput | None = None, cost: Decimal | None = None) -> Attempt:
    from datetime import datetime, timezone

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


def _result(
    request: CharacterRequest,
    candidate: Candidate,
    output: ProviderOutput,
    attempts: list[Attempt],
    started: float,
    t0: float,
    job_id: str | None,
) -> CharacterResult:
    if output.cost_usd is not None:
        cost, source = output.cost_usd, "vendor"
    elif candidate.quote.unit_price_usd is not None:
        cost, source = candidate.quote.unit_price_usd * request.num_images, "price_table"
    else:
        cost, source = None, "unknown"
    attempts = [*attempts, _attempt(candidate.name, started, t0, output=output, cost=cost)]
    return CharacterResult(
        images=output.images,
        provider=candidate.name,
        vendor_request_id=output.vendor_request_id,
        cost_usd=cost,
        cost_source=source,  # type: ignore[arg-type]
        warnings=[*candidate.warnings, *output.warnings],
        failures=output.failures,
        attempts=attempts,
        job_id=job_id,
        vendor_metadata=output.metadata,
    )

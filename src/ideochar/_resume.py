"""Deciding how to finish a journaled job, and assembling its result; shared by both clients.

:func:`plan_resume` reads a :class:`~ideochar.journal.JobRecord` and decides, without any I/O:

* attempts a vendor admitted whose outcome is not recorded (``submitted``/``unknown`` with a vendor id
  and resume data) are **resumed by vendor id**: their paid results are fetched, never resubmitted;
* attempts that were started but left no vendor id may or may not have reached the vendor: nothing
  can prove either, so they are reported (possibly billed) and **never** sent again;
* a job with no attempt at all was recorded and then stopped before anything was sent (the journal
  records ``attempt_started`` before the first request of an attempt): it is **submitted fresh**, which
  is safe precisely because the journal proves nothing was sent. Its inputs must still be where they
  were (paths with the same hash, or URLs); inputs given as bytes were never stored;
* images already saved are read back from the output folder (checked against their hash).

:func:`assemble` then builds one :class:`~ideochar.result.CharacterResult` from the saved images, the
resumed attempts' results and typed failures for everything else, so the counts always add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ideochar.errors import Billed, IdeocharError, InvalidRequest, OutcomeUnknown
from ideochar.journal import AttemptRecord, JobRecord, rebuild_request
from ideochar.request import CharacterRequest
from ideochar.result import Attempt, CharacterResult, CostSource, GeneratedImage, ImageFailure

__all__ = ["JobNotResumable", "ResumeWork", "assemble", "plan_resume"]


class JobNotResumable(InvalidRequest):
    """The job has nothing left to pick up (it failed before any vendor admitted it, or it is unknown)."""


@dataclass
class ResumeWork:
    job: JobRecord
    fresh: CharacterRequest | None = None
    """Set when nothing was ever sent: the request to submit anew under the same job id."""
    resume: list[AttemptRecord] = field(default_factory=list)
    in_doubt: list[AttemptRecord] = field(default_factory=list)
    """Sent (maybe) with no vendor id recorded: cannot be resumed, must not be resent."""
    saved: list[GeneratedImage] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Saved outputs that are gone or changed on disk (their images were paid for)."""


def plan_resume(job: JobRecord) -> ResumeWork:
    work = ResumeWork(job)
    for output in job.outputs:
        try:
            work.saved.append(output.read())
        except OSError as exc:
            work.unreadable.append(f"{output.path}: {exc.strerror or exc}")
    work.resume = [a for a in job.attempts if a.resumable]
    work.in_doubt = [a for a in job.attempts if a.open and not a.resumable]
    if not job.attempts and job.status == "running":
        work.fresh = rebuild_request(job.request)
        return work
    if not work.resume and not work.saved and not work.unreadable:
        if work.in_doubt:
            first = work.in_doubt[0]
            raise OutcomeUnknown(
                f"job {job.id}: the attempt at {first.provider} may have been sent but no vendor id was "
                "recorded, so it can be neither resumed nor safely sent again; check the vendor's dashboard",
                provider=first.provider,
            )
        reason = f"{job.error_type}: {job.error_message}" if job.error_type else f"status {job.status}"
        raise JobNotResumable.for_field(
            "job_id", f"job {job.id} has nothing to resume ({reason}); no vendor holds a job of it"
        )
    return work


def _billed(value: str | None) -> Billed:
    return value if value in ("yes", "no", "unknown") else "unknown"  # type: ignore[return-value]


def _history(attempt: AttemptRecord) -> Attempt:
    return Attempt(
        provider=attempt.provider,
        outcome="succeeded" if attempt.status == "succeeded" else "failed",
        billed="yes" if attempt.status == "succeeded" else _billed(attempt.billed),
        vendor_request_id=attempt.vendor_request_id,
        error_type=attempt.error_type,
        message=attempt.message,
        started_at=attempt.started_at,
        elapsed_seconds=0.0
        if attempt.finished_at is None
        else (attempt.finished_at - attempt.started_at).total_seconds(),
        cost_usd=attempt.cost_usd,
    )


def assemble(
    work: ResumeWork,
    outcomes: list[CharacterResult | IdeocharError],
    *,
    spent_usd: Decimal | None = None,
) -> CharacterResult:
    """One result: saved images, then resumed ones; typed failures for every image that did not come."""
    job = work.job
    images = list(work.saved)
    failures: list[ImageFailure] = [
        ImageFailure(reason=f"saved image unreadable: {why}", billed="yes") for why in work.unreadable
    ]
    resumed_keys = {a.key for a in work.resume}
    attempts = [_history(a) for a in job.attempts if a.key not in resumed_keys]
    served: list[CharacterResult] = []
    for record, outcome in zip(work.resume, outcomes, strict=True):
        if isinstance(outcome, CharacterResult):
            served.append(outcome)
            images.extend(outcome.images)
            failures.extend(outcome.failures)
            attempts.extend(outcome.attempts)
        else:
            attempts.extend(getattr(outcome, "attempts", []) or [])
            failures.extend(
                ImageFailure(
                    reason=f"resuming {record.provider} job {record.vendor_request_id} failed: {outcome}",
                    billed=getattr(outcome, "billed", "unknown"),
                    provider=record.provider,
                    error_type=type(outcome).__name__,
                )
                for _ in range(record.num_images)
            )
    for record in work.in_doubt:
        failures.extend(
            ImageFailure(
                reason=f"the attempt at {record.provider} may have been sent but left no vendor id; "
                "it was not sent again (check the vendor's dashboard)",
                billed="unknown",
                provider=record.provider,
                error_type="OutcomeUnknown",
            )
            for _ in range(record.num_images)
        )
    missing = job.num_images - len(images) - len(failures)
    if missing > 0:
        failed = [a for a in job.attempts if a.status == "failed"]
        last = failed[-1] if failed else None
        reason = (
            f"{last.provider} failed: {last.message}"
            if last is not None
            else "not sent before the process stopped; run the request again for these"
        )
        billed: Any = last.billed if last is not None and last.billed else "no"
        failures.extend(
            ImageFailure(reason=reason, billed=billed, provider=last.provider if last else None) for _ in range(missing)
        )
    failures = [f.model_copy(update={"index": i}) for i, f in enumerate(failures, start=len(images))]
    if not images:
        errors = [o for o in outcomes if isinstance(o, IdeocharError)]
        if errors:
            raise errors[0]
        raise JobNotResumable.for_field("job_id", f"job {job.id}: no image could be recovered")
    first = served[0] if served else None
    provider = first.provider if first else job.provider or (job.outputs[0].provider if job.outputs else None) or "?"
    sources: set[CostSource] = {r.cost_source for r in served}
    if work.saved and job.cost_source:
        sources.add(job.cost_source)  # type: ignore[arg-type]
    source: CostSource = "vendor" if sources == {"vendor"} else "price_table" if sources else "unknown"
    return CharacterResult(
        images=images,
        provider=provider,
        vendor_request_id=first.vendor_request_id if first else job.vendor_request_id,
        cost_usd=spent_usd,
        cost_source=source if spent_usd is not None else "unknown",
        warnings=[w for r in served for w in r.warnings],
        failures=failures,
        attempts=attempts,
        job_id=job.id,
        vendor_metadata={"resumed": [a.vendor_request_id for a in work.resume]},
    )

"""What must hold after every fault schedule, judged from the emulator's ledger (what each vendor would bill).

(a) **No second charge.** No vendor admits the job twice; under the default policy no two vendors charge for it.
(b) **Billing told truly.** Every vendor whose ledger shows the job billed is reported as billed "yes" or
    "unknown" by the attempts (``result.attempts`` / ``error.attempts``) or by the error naming it; no attempt
    whose vendor id the ledger bills says "no".
(c) **Only ideochar errors.** Nothing but an ``IdeocharError`` leaves the client (the schedule's own kill
    excepted), and a kill is never swallowed.
(d) **A result carries its images.** A success holds at least one whole image (decoded here, with Pillow).
(e) **A resume sends nothing billable twice.** It adds an admission only for a call the journal positively
    recorded as never sent (its part still "planned"), at most one per such call; anything else the job
    sent is picked up by its vendor id or reconciled, never sent again.

Each kind of violation is its own exception class, and so is each place it shows (the run or the resume) with
each kind of interruption (none, a kill, a journal failure): hypothesis tells them apart by class, so it shrinks
each one to its own minimal schedule, keeps searching after the first, and reports them all
(``report_multiple_bugs``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from functools import cache
from typing import Literal

from PIL import Image

from ideochar.errors import AllProvidersFailed, IdeocharError, ProviderError
from ideochar.result import Attempt, CharacterResult
from reliability.job_hooks import Killed
from reliability.scheduled_run import Observation, Outcome
from reliability.schedules import JournalFailure

__all__ = [
    "BilledReportedNo",
    "ChargedTwice",
    "ResultWithoutImage",
    "ResumeAdmitted",
    "UntypedError",
    "Violation",
    "check",
    "violations",
]


class Violation(AssertionError):
    """An invariant broken by one schedule (the message names the invariant and what the ledger showed)."""

    code = "?"


class ChargedTwice(Violation):
    code = "a"


class BilledReportedNo(Violation):
    code = "b"


class UntypedError(Violation):
    code = "c"


class ResultWithoutImage(Violation):
    code = "d"


class ResumeAdmitted(Violation):
    code = "e"


Stage = Literal["run", "resume"]
Finding = tuple[Stage, str]
"""Where a violation showed, and what it was."""


def _is_kill(error: BaseException) -> bool:
    if isinstance(error, Killed):
        return True
    leaves = getattr(error, "exceptions", None)  # a task group's BaseExceptionGroup holding kills
    return bool(leaves) and all(_is_kill(inner) for inner in leaves)


def _errors(error: BaseException) -> Iterator[BaseException]:
    yield error
    if isinstance(error, AllProvidersFailed):
        for inner in error.errors:
            yield from _errors(inner)


def _attempts(outcome: Outcome) -> list[Attempt]:
    if isinstance(outcome, (CharacterResult, IdeocharError)):
        return list(outcome.attempts)
    return []


def charged_twice(seen: Observation) -> Iterator[Finding]:
    stages: tuple[tuple[Stage, dict[str, int]], ...] = (
        ("run", seen.ledger_after_run),
        ("resume", seen.ledger_after_resume),
    )
    for stage, counts in stages:
        twice = {vendor: n for vendor, n in counts.items() if n > 1}
        if twice:
            yield stage, f"(a) a vendor admitted the job more than once after the {stage}: {twice}"
        charged = sorted(vendor for vendor, n in counts.items() if n)
        if seen.schedule.policy == "default" and len(charged) > 1:
            yield stage, f"(a) charged by {' and '.join(charged)} under the default policy after the {stage}: {counts}"


def _reported(outcome: Outcome, vendor: str) -> bool:
    """The outcome says the job may have cost money at ``vendor``."""
    if any(a.provider == vendor and a.billed != "no" for a in _attempts(outcome)):
        return True
    if isinstance(outcome, BaseException):
        return any(isinstance(e, ProviderError) and e.provider == vendor and e.billed != "no" for e in _errors(outcome))
    return False


def _mentioned(outcome: Outcome, vendor: str) -> bool:
    if any(a.provider == vendor for a in _attempts(outcome)):
        return True
    return isinstance(outcome, BaseException) and any(
        isinstance(e, ProviderError) and e.provider == vendor for e in _errors(outcome)
    )


def billed_reported_no(seen: Observation) -> Iterator[Finding]:
    """The run made its attempts and must report every vendor that billed; a resume reports what the journal
    kept, so it is judged only on the vendors it mentions."""
    judged: tuple[tuple[Outcome, dict[str, int], Stage], ...] = (
        (seen.outcome, seen.ledger_after_run, "run"),
        (seen.resumed, seen.ledger_after_resume, "resume"),
    )
    for outcome, counts, stage in judged:
        if not isinstance(outcome, (CharacterResult, IdeocharError)):
            continue  # a kill (or nothing) reports no attempts; (c) judges the rest
        for vendor, n in counts.items():
            if not n or _reported(outcome, vendor) or (stage == "resume" and not _mentioned(outcome, vendor)):
                continue
            shown = [(a.provider, a.outcome, a.billed, a.error_type) for a in _attempts(outcome)]
            yield stage, f"(b) {vendor} billed the job but the {stage} reports it billed 'no': attempts {shown}"
    for attempt in _attempts(seen.outcome):
        ids = seen.billed_ids_after_run.get(attempt.provider, set())
        if attempt.billed == "no" and attempt.vendor_request_id in ids:
            yield "run", f"(b) {attempt.provider} job {attempt.vendor_request_id} is billed, its attempt says 'no'"


def untyped(seen: Observation) -> Iterator[Finding]:
    outcome = seen.outcome
    escaped = isinstance(outcome, BaseException) and not isinstance(outcome, IdeocharError)
    if escaped and not (seen.killed and _is_kill(outcome)):  # type: ignore[arg-type]
        yield "run", f"(c) the job raised {type(outcome).__name__}: {str(outcome)[:200]}"
    if seen.killed and not (isinstance(outcome, BaseException) and _is_kill(outcome)):
        yield "run", f"(c) the kill was swallowed: the job ended with {type(outcome).__name__}"
    resumed = seen.resumed
    if isinstance(resumed, BaseException) and not isinstance(resumed, IdeocharError):
        yield "resume", f"(c) the resume raised {type(resumed).__name__}: {str(resumed)[:200]}"


def _whole(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:
        return False
    return True


def without_image(seen: Observation) -> Iterator[Finding]:
    stages: tuple[tuple[Stage, Outcome], ...] = (("run", seen.outcome), ("resume", seen.resumed))
    for stage, outcome in stages:
        if isinstance(outcome, CharacterResult):
            if not outcome.images:
                yield stage, f"(d) the {stage}'s result holds no image"
            broken = [i for i, image in enumerate(outcome.images) if not _whole(image.data)]
            if broken:
                yield stage, f"(d) the {stage}'s result holds images that do not decode: {broken}"


def resume_admitted(seen: Observation) -> Iterator[Finding]:
    if seen.resumed is None:
        return
    added = sum(seen.ledger_after_resume.values()) - sum(seen.ledger_after_run.values())
    if added > seen.planned_before_resume:
        yield (
            "resume",
            (
                f"(e) the resume added {added} admission(s) where the journal proved only "
                f"{seen.planned_before_resume} call(s) unsent: {seen.ledger_after_run} -> {seen.ledger_after_resume}"
            ),
        )


CHECKS: tuple[tuple[Callable[[Observation], Iterator[Finding]], type[Violation]], ...] = (
    (charged_twice, ChargedTwice),
    (billed_reported_no, BilledReportedNo),
    (untyped, UntypedError),
    (without_image, ResultWithoutImage),
    (resume_admitted, ResumeAdmitted),
)


def _interruption(seen: Observation) -> str:
    interruption = seen.schedule.interruption
    if interruption is None:
        return "faults_only"
    return "journal_failure" if isinstance(interruption, JournalFailure) else "kill"


@cache
def _violation_class(kind: type[Violation], stage: Stage, interruption: str) -> type[Violation]:
    """``kind`` narrowed to where it showed: one class per (invariant, stage, interruption)."""
    return type(f"{kind.__name__}_at_{stage}_with_{interruption}", (kind,), {"__module__": __name__})


def violations(seen: Observation) -> list[Violation]:
    """Every invariant the observation breaks, each as its own exception (not raised)."""
    found: list[Violation] = []
    for check_one, kind in CHECKS:
        for stage, message in check_one(seen):
            found.append(_violation_class(kind, stage, _interruption(seen))(message))
    return found


def check(seen: Observation) -> None:
    """Raise the first violation, with the schedule and what happened (hypothesis shrinks per class)."""
    found = violations(seen)
    if found:
        first = found[0]
        detail = "\n".join(str(v) for v in found)
        raise type(first)(f"{detail}\nschedule: {seen.schedule!r}\n{seen.summary()}")

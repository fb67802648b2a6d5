"""Issue 12.6: the never-pay-twice invariants, searched over fault schedules instead of enumerated.

Hypothesis draws schedules (schedules.py: vendors in failover order, each vendor's mode, sync or async
client, failure policy, emulator faults by route, kind and frequency, and a kill or a journal failure at
any step). Each one's job runs against the in-process emulator and is resumed from the journal when it did
not end cleanly (scheduled_run.py), and the invariants are checked from the emulator's ledger
(invariants.py):

(a) no vendor admits the job twice, and no two vendors charge for it under the default policy;
(b) a vendor that billed the job is never reported billed "no";
(c) nothing but an ``IdeocharError`` leaves the client (the schedule's kill excepted);
(d) a success carries whole images;
(e) a resume adds no admission.

Every drawn schedule runs, also after a violation: one run of the search reports every kind of violation
(invariant, where it showed, kind of interruption), not only the first. Hypothesis stops exploring soon
after its first failure, so the examples do not fail inside it; the test fails at the end, listing each
kind once with its simplest schedule (shrink.py shrinks each one in the thorough profile).

Profiles: ``fast`` in ``make test`` (a fixed, derandomised list, no shrinking: the simplest schedule drawn
of each kind); ``thorough`` in ``make reliability`` (thousands of random schedules, each kind shrunk).
``IDEOCHAR_SCHEDULES`` overrides the count. How many schedules were tried, and what was found, goes to
docs/reliability.md (report.py).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from ideochar.errors import IdeocharError
from ideochar.result import CharacterResult
from reliability import figures
from reliability.harness import providers
from reliability.invariants import (
    BilledReportedNo,
    ChargedTwice,
    ResumeAdmitted,
    UntypedError,
    Violation,
    check,
    violations,
)
from reliability.job_hooks import Kill, Killed
from reliability.profile import PROFILE
from reliability.scheduled_run import Emulators, Observation, emulators, run_schedule
from reliability.schedules import VENDORS, Modes, Schedule, schedules
from reliability.shrink import shrink, size

pytestmark = pytest.mark.skipif(
    any(v not in providers() for v in VENDORS), reason="the search needs the four built-in providers"
)

THOROUGH = PROFILE == "thorough"
SCHEDULES = int(os.environ.get("IDEOCHAR_SCHEDULES", "0") or 0) or (3000 if THOROUGH else 200)

search_settings = settings(
    max_examples=SCHEDULES,
    derandomize=not THOROUGH,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@dataclass
class Found:
    """One kind of violation: how many runs showed it, and the simplest schedule seen (or shrunk to)."""

    runs: int
    schedule: Schedule
    message: str

    def figures(self) -> dict[str, object]:
        return {"runs": self.runs, "schedule": repr(self.schedule), "message": self.message}


@dataclass
class Tally:
    """What the search did, for the report and the failure message."""

    schedules: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    """Runs breaking each invariant, by its letter."""
    kinds: dict[str, Found] = field(default_factory=dict)

    def add(self, seen: Observation, found: list[Violation]) -> None:
        self.schedules += 1
        self.outcomes[_word(seen.outcome)] += 1
        for code in {violation.code for violation in found}:
            self.violations[code] += 1
        for violation in found:
            kind = type(violation).__name__
            known = self.kinds.get(kind)
            if known is None or size(seen.schedule) < size(known.schedule):
                self.kinds[kind] = Found((known.runs if known else 0) + 1, seen.schedule, str(violation))
            else:
                known.runs += 1

    def figures(self) -> dict[str, object]:
        return {
            "profile": "thorough" if THOROUGH else "fast",
            "max_examples": SCHEDULES,
            "schedules": self.schedules,
            "outcomes": dict(self.outcomes),
            "violations": dict(self.violations),
            "shrunk": THOROUGH,
            "kinds": {kind: found.figures() for kind, found in sorted(self.kinds.items())},
        }


def _word(outcome: object) -> str:
    if isinstance(outcome, CharacterResult):
        return "result"
    return type(outcome).__name__


@pytest.fixture(scope="module")
def emulated() -> Iterator[Emulators]:
    with emulators() as running:
        yield running


def _shrunk(emulated: Emulators, kind: str, found: Found) -> Found:
    def fails(schedule: Schedule) -> bool:
        seen = run_schedule(emulated, schedule)
        return any(type(v).__name__ == kind for v in violations(seen))

    simplest = shrink(found.schedule, fails)
    seen = run_schedule(emulated, simplest)
    message = next((str(v) for v in violations(seen) if type(v).__name__ == kind), found.message)
    return Found(found.runs, simplest, message)


def test_every_fault_schedule_keeps_the_never_pay_twice_invariants(
    emulated: Emulators, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="ideochar")  # journal failures are injected: their logs are noise
    tally = Tally()

    @search_settings
    @given(schedule=schedules())
    def search(schedule: Schedule) -> None:
        seen = run_schedule(emulated, schedule)
        tally.add(seen, violations(seen))

    search()
    if THOROUGH:
        tally.kinds = {kind: _shrunk(emulated, kind, found) for kind, found in tally.kinds.items()}
    figures.record("fault_schedules", tally.figures())
    listed = [f"{kind} ({f.runs} runs): {f.schedule!r}\n    {f.message}" for kind, f in sorted(tally.kinds.items())]
    assert not listed, f"{len(listed)} kinds of violation in {tally.schedules} schedules:\n" + "\n".join(listed)


# -- the search's own parts, each shown able to fail -------------------------------------------------------


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("first", VENDORS)
def test_a_schedule_without_faults_is_served_by_its_first_vendor_within_every_invariant(
    emulated: Emulators, first: str, driver: str
) -> None:
    second = next(v for v in VENDORS if v != first)
    seen = run_schedule(emulated, Schedule((first, second), Modes(), driver, "default"))  # type: ignore[arg-type]
    assert isinstance(seen.outcome, CharacterResult), seen.summary()
    assert seen.outcome.provider == first
    assert seen.ledger_after_run[first] == 1 and sum(seen.ledger_after_run.values()) == 1
    assert seen.resumed is None
    assert violations(seen) == []


def test_a_kill_reaches_the_caller_and_the_job_is_resumed_from_the_journal(emulated: Emulators) -> None:
    # Requests 1 and 2 upload the reference to fal's storage (a CDN token, then the bytes); 3 is the submit.
    schedule = Schedule(("fal", "segmind"), Modes(fal="poll"), "sync", "default", interruption=Kill(4, True))
    seen = run_schedule(emulated, schedule)
    assert seen.killed and isinstance(seen.outcome, Killed), seen.summary()
    assert seen.ledger_after_run["fal"] == 1  # the submit went through; the first poll was cut off
    assert isinstance(seen.resumed, (CharacterResult, IdeocharError)), seen.summary()


def _observation(policy: str, run: dict[str, int], **fields: object) -> Observation:
    schedule = Schedule(("fal", "segmind"), Modes(), "sync", policy)  # type: ignore[arg-type]
    seen = Observation(schedule, ledger_after_run={v: run.get(v, 0) for v in VENDORS})
    for name, value in fields.items():
        setattr(seen, name, value)
    return seen


def test_the_checker_flags_a_job_charged_by_two_vendors_under_the_default_policy_only() -> None:
    twice = {"fal": 1, "segmind": 1}
    assert any(isinstance(v, ChargedTwice) for v in violations(_observation("default", twice)))
    assert not any(isinstance(v, ChargedTwice) for v in violations(_observation("fail_over", twice)))
    assert any(isinstance(v, ChargedTwice) for v in violations(_observation("fail_over", {"fal": 2})))


def test_the_checker_flags_a_billed_vendor_reported_as_not_billed() -> None:
    error = IdeocharError("fal refused the status request")
    seen = _observation("default", {"fal": 1}, outcome=error)
    found = violations(seen)
    assert len(found) == 1 and isinstance(found[0], BilledReportedNo)
    assert type(found[0]).__name__ == "BilledReportedNo_at_run_with_faults_only"


def test_the_checker_flags_an_untyped_error_and_a_resume_that_admits() -> None:
    seen = _observation(
        "default", {"fal": 1}, outcome=ValueError("bug"), resumed=Killed(), ledger_after_resume={"fal": 2}
    )
    found = violations(seen)
    for kind in (UntypedError, ResumeAdmitted, ChargedTwice):
        assert any(isinstance(v, kind) for v in found), (kind, found)
    with pytest.raises(Violation, match="schedule: <sync fal>segmind"):
        check(seen)

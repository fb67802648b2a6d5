"""Running one fault schedule against the in-process emulator, and what it left behind.

:func:`run_schedule` runs the schedule's job through ``Client`` or ``AsyncClient`` with a journal (a SQLite
file in a temporary folder, or the one it is given: a PostgreSQL schema), the emulator's fault profile set,
and the interruption applied (a killing transport, or journal writes made to fail). When the job did not
end cleanly (an error, a kill, a journal failure) the faults are cleared, as when a vendor recovers, and
the job is resumed from the journal by a fresh client, as another process would. The :class:`Observation`
holds both outcomes and the emulator's ledger after
each; invariants.py judges it.

Both emulators (one per driver) live for a whole test: the async one on an event loop in a helper thread
(an anyio blocking portal), so every async job runs on the loop the emulator's timers belong to.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pluggy
from anyio.from_thread import BlockingPortal, start_blocking_portal

from conftest import make_image
from ideochar import AsyncClient, Client
from ideochar.emulator import testing
from ideochar.errors import IdeocharError
from ideochar.journal import Journal
from ideochar.plugins import get_plugin_manager
from ideochar.result import CharacterResult
from reliability.job_hooks import (
    KillingAsyncTransport,
    KillingTransport,
    Location,
    fail_journal_writes,
    failure_policy,
    newest_job_id,
    open_journal,
)
from reliability.schedules import VENDORS, Schedule

__all__ = ["DEADLINE_SECONDS", "Emulators", "Observation", "Outcome", "Run", "emulators", "run_schedule"]

#: Each job's deadline (and each resume's): a hang or a stuck job ends here.
DEADLINE_SECONDS = 0.75
KEY = "schedule-key"
PROMPT = "a knight in the rain"

Outcome = CharacterResult | BaseException | None
"""A result, what was raised, or None (not run)."""
Ledger = dict[str, int]
"""Billed admissions per vendor (the emulator's ledger, voided entries left out)."""


@dataclass
class Emulators:
    """An in-process emulator per driver, and the plugin manager every client shares."""

    pm: pluggy.PluginManager
    sync_app: Any
    sync_transport: testing.SyncASGITransport
    async_app: Any
    portal: BlockingPortal

    def app(self, schedule: Schedule) -> Any:
        return self.sync_app if schedule.driver == "sync" else self.async_app


@contextlib.contextmanager
def emulators() -> Iterator[Emulators]:
    sync_app = testing.emulator_app(model_seconds=0)
    async_app = testing.emulator_app(model_seconds=0)
    transport = testing.SyncASGITransport(sync_app)
    try:
        with start_blocking_portal() as portal:
            yield Emulators(get_plugin_manager(), sync_app, transport, async_app, portal)
    finally:
        transport.close()


@dataclass
class Observation:
    schedule: Schedule
    outcome: Outcome = None
    ledger_after_run: Ledger = field(default_factory=dict)
    billed_ids_after_run: dict[str, set[str]] = field(default_factory=dict)
    resumed: Outcome = None
    """The resume's outcome; None when the job needed none (it ended cleanly) or left no job to resume."""
    ledger_after_resume: Ledger = field(default_factory=dict)
    planned_before_resume: int = 0
    """Calls the journal positively recorded as never sent (parts still "planned") when the resume began:
    the only ones a resume may send."""
    killed: bool = False
    """The schedule's kill fired during the job."""

    def summary(self) -> str:
        def word(outcome: Outcome) -> str:
            if outcome is None:
                return "-"
            if isinstance(outcome, CharacterResult):
                return f"result from {outcome.provider}"
            return f"{type(outcome).__name__}: {str(outcome)[:160]}"

        lines = [f"run: {word(self.outcome)}; ledger {self.ledger_after_run}"]
        if self.resumed is not None:
            lines.append(f"resume: {word(self.resumed)}; ledger {self.ledger_after_resume}")
        return "\n".join(lines)


def ledger(app: Any) -> Ledger:
    return {vendor: testing.billed(app, vendor) for vendor in VENDORS}


def billed_ids(app: Any) -> dict[str, set[str]]:
    return {vendor: {e.job_id for e in testing.ledger(app, vendor) if e.billed} for vendor in VENDORS}


def _client_options(schedule: Schedule, app: Any, pm: pluggy.PluginManager) -> dict[str, Any]:
    return {
        "base_urls": testing.base_urls(app),
        "keys": {vendor: KEY for vendor in schedule.providers},
        "options": schedule.modes.options(),
        "config": False,
        "environ": {},
        "deadline_seconds": DEADLINE_SECONDS,
        "policy": failure_policy(schedule.policy),
        "plugin_manager": pm,
        "limits": {vendor: {"requests_per_minute": 1_000_000} for vendor in VENDORS},
    }


def _needs_resume(schedule: Schedule, outcome: Outcome) -> bool:
    return schedule.interruption is not None or not isinstance(outcome, CharacterResult)


def _job_to_resume(outcome: Outcome, location: Location) -> str | None:
    if isinstance(outcome, IdeocharError) and outcome.job_id:
        return outcome.job_id
    try:
        return newest_job_id(location)
    except IndexError:  # the journal holds no job: nothing to resume
        return None


def _planned(location: Location, job_id: str) -> int:
    """How many of the job's calls the journal proves were never sent (each may be sent once by a resume)."""
    with Journal(location) as journal:
        return sum(1 for part in journal.job(job_id).parts if part.state == "planned")


def _outcome_of(call: Callable[[], CharacterResult]) -> Outcome:
    try:
        return call()
    except BaseException as exc:  # the invariants judge what was raised, kills included
        if isinstance(exc, (SystemExit, GeneratorExit)) or type(exc) is KeyboardInterrupt:
            raise
        return exc


async def _aoutcome_of(call: Callable[[], Awaitable[CharacterResult]]) -> Outcome:
    try:
        return await call()
    except BaseException as exc:  # as in _outcome_of
        if isinstance(exc, (SystemExit, GeneratorExit)) or type(exc) is KeyboardInterrupt:
            raise
        return exc


def run_schedule(emulators: Emulators, schedule: Schedule, journal: Location | None = None) -> Observation:
    """Run ``schedule`` (and its resume) with the journal at ``journal`` (None: a SQLite file of its own)."""
    app = emulators.app(schedule)
    testing.reset(app)
    testing.set_faults(app, schedule.profile())
    with tempfile.TemporaryDirectory(prefix="ideochar-schedule-") as folder:
        root = Path(folder)
        reference = root / "hero.png"
        reference.write_bytes(make_image(48, 48, "PNG", "teal"))
        runner = _run_sync if schedule.driver == "sync" else _run_async
        return runner(emulators, schedule, Run(root, journal or root / "journal.sqlite3"), reference)


@dataclass(frozen=True)
class Run:
    """Where one schedule's run keeps things: its folder (images go to ``out``) and its journal."""

    root: Path
    journal: Location


def _journal(schedule: Schedule, run: Run) -> Journal:
    journal = open_journal(run.journal, output_dir=run.root / "out")
    failure = schedule.journal_failure
    if failure is not None:
        fail_journal_writes(journal, first=failure.first, times=failure.times)
    return journal


def _run_sync(emulators: Emulators, schedule: Schedule, run: Run, reference: Path) -> Observation:
    app, seen = emulators.sync_app, Observation(schedule)
    options = _client_options(schedule, app, emulators.pm)
    transport = KillingTransport(emulators.sync_transport, schedule.kill)
    journal = _journal(schedule, run)
    http = httpx.Client(transport=transport)
    client = Client(list(schedule.providers), http=http, journal=journal, output_dir=run.root / "out", **options)
    try:
        seen.outcome = _outcome_of(lambda: client.generate(PROMPT, reference, seed=5))
        seen.killed = transport.fired
        _after_run(seen, app)
        job_id = _job_to_resume(seen.outcome, run.journal) if _needs_resume(schedule, seen.outcome) else None
        if job_id is not None:
            testing.set_faults(app, None)  # the vendors recovered
            seen.planned_before_resume = _planned(run.journal, job_id)
            seen.resumed = _resume_sync(emulators, schedule, run, options, job_id)
            seen.ledger_after_resume = ledger(app)
    finally:
        client.close()
        http.close()
        journal.close()
    return seen


def _resume_sync(emulators: Emulators, schedule: Schedule, run: Run, options: dict[str, Any], job_id: str) -> Outcome:
    """Resume the job as another process would: a fresh client and journal, no fault, no kill."""
    # The transport wrapper is this client's own: closing it leaves the shared transport open.
    with (
        httpx.Client(transport=KillingTransport(emulators.sync_transport, None)) as http,
        Client(list(schedule.providers), http=http, journal=run.journal, output_dir=run.root / "out",
               **options) as client,
    ):  # fmt: skip
        return _outcome_of(lambda: client.resume(job_id))


def _after_run(seen: Observation, app: Any) -> None:
    seen.ledger_after_run = ledger(app)
    seen.billed_ids_after_run = billed_ids(app)


def _run_async(emulators: Emulators, schedule: Schedule, run: Run, reference: Path) -> Observation:
    async def main() -> Observation:
        return await _arun(emulators, schedule, run, reference)

    return emulators.portal.call(main)


async def _arun(emulators: Emulators, schedule: Schedule, run: Run, reference: Path) -> Observation:
    app, seen = emulators.async_app, Observation(schedule)
    options = _client_options(schedule, app, emulators.pm)
    transport = KillingAsyncTransport(testing.ASGITransport(app=app), schedule.kill)
    journal = _journal(schedule, run)
    http = httpx.AsyncClient(transport=transport)
    client = AsyncClient(list(schedule.providers), http=http, journal=journal, output_dir=run.root / "out", **options)
    try:
        seen.outcome = await _aoutcome_of(lambda: client.generate(PROMPT, reference, seed=5))
        seen.killed = transport.fired
        _after_run(seen, app)
        job_id = _job_to_resume(seen.outcome, run.journal) if _needs_resume(schedule, seen.outcome) else None
        if job_id is not None:
            testing.set_faults(app, None)  # the vendors recovered
            seen.planned_before_resume = _planned(run.journal, job_id)
            seen.resumed = await _aresume(app, schedule, run, options, job_id)
            seen.ledger_after_resume = ledger(app)
    finally:
        await client.aclose()
        await http.aclose()
        journal.close()
    return seen


async def _aresume(app: Any, schedule: Schedule, run: Run, options: dict[str, Any], job_id: str) -> Outcome:
    """The async twin of :func:`_resume_sync`."""
    async with (
        httpx.AsyncClient(transport=testing.ASGITransport(app=app)) as http,
        AsyncClient(list(schedule.providers), http=http, journal=run.journal, output_dir=run.root / "out",
                    **options) as client,
    ):  # fmt: skip
        return await _aoutcome_of(lambda: client.resume(job_id))

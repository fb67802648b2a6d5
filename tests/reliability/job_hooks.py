"""Every name the fault-schedule search and the never-pay-twice regressions need from the job's API, in one place.

The job rework (issue 12) adds some of these names; until it lands, each one here says what stands in for it,
so the search runs against today's code and the regression tests fail on behaviour, not on an import. When a
name moves, adjust it here only.

* ``JournalUnavailable``, ``JobBusy``: ``ideochar.errors`` (both ``IdeocharError``; ``JobBusy.owner`` is text).
  Missing: a placeholder class that nothing raises, so ``pytest.raises`` shows what was raised instead.
* :func:`failure_policy`: ``FailurePolicy(after_admission="fail_over")`` opts into failover after admission.
  Missing: today's nearest switch, ``FailurePolicy(on_outcome_unknown="fail_over")``.
* :func:`open_journal`: ``Journal(location, busy_timeout_seconds=...)``, a SQLite file or a PostgreSQL URL.
* :func:`fail_journal_writes`: the journal's ``_transaction`` (every write goes through it) raises what a
  write raises when another process holds the lock past the busy timeout, from a chosen write on: SQLite's
  ``sqlite3.OperationalError("database is locked")``, PostgreSQL's ``LockNotAvailable`` (``lock_timeout``).
  Writes are counted from the first after the journal is opened: write 1 records the job, write 2 its
  first attempt.
* :class:`Killed` and the killing transports: an interruption that is not an ``Exception`` (like
  ``KeyboardInterrupt``) at the n-th request, before it reaches the emulator or after (the answer lost).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

import ideochar.errors
from ideochar._database import Connection
from ideochar.errors import IdeocharError
from ideochar.journal import Journal
from ideochar.router import FailurePolicy

__all__ = [
    "JobBusy",
    "JournalUnavailable",
    "Kill",
    "Killed",
    "KillingAsyncTransport",
    "KillingTransport",
    "Location",
    "Policy",
    "fail_journal_writes",
    "failure_policy",
    "lock_timeout_error",
    "newest_job_id",
    "open_journal",
]

Location = Path | str
"""Where a journal is: a SQLite file, or a PostgreSQL URL (``postgres_url``)."""

Policy = Literal["default", "fail_over"]
"""``default``: never fail over once a vendor may have admitted the job. ``fail_over``: the opt-in."""


def _error(name: str) -> type[IdeocharError]:
    found = getattr(ideochar.errors, name, None)
    if isinstance(found, type) and issubclass(found, IdeocharError):
        return found
    # Not in ideochar.errors yet: a class no code raises, named so a failure message says which is missing.
    return type(f"{name}_not_in_ideochar_errors_yet", (IdeocharError,), {})


JournalUnavailable = _error("JournalUnavailable")
"""The journal could not record the job's next step; nothing more was sent."""
JobBusy = _error("JobBusy")
"""The job belongs to a live process (its ``owner``); it was not resumed."""


def failure_policy(name: Policy) -> FailurePolicy:
    if name == "default":
        return FailurePolicy()
    try:
        return FailurePolicy(after_admission="fail_over")  # type: ignore[call-arg]
    except TypeError:  # before the rework: the switch for a lost answer is the nearest there is
        return FailurePolicy(on_outcome_unknown="fail_over")


def open_journal(location: Location, *, busy_timeout_seconds: float = 30.0, output_dir: Path | None = None) -> Journal:
    """The journal at ``location``; a busy timeout bounds how long a write waits for another process's lock
    (SQLite's busy timeout, PostgreSQL's ``lock_timeout``). Give ``output_dir`` for a PostgreSQL journal
    that will save images (it has no folder of its own)."""
    return Journal(location, output_dir=output_dir, busy_timeout_seconds=busy_timeout_seconds)


def newest_job_id(location: Location) -> str:
    """The id of the job created last in the journal at ``location``."""
    with Journal(location) as journal:
        return journal.jobs(limit=1)[0].id


def lock_timeout_error(journal: Journal) -> Exception:
    """What a write raises when another process held the lock past the busy timeout, in ``journal``'s dialect."""
    if journal.dialect == "postgresql":
        import psycopg.errors

        return psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
    return sqlite3.OperationalError("database is locked")


@dataclass
class WriteFailures:
    """How many journal writes were attempted and how many were made to fail."""

    attempted: int = 0
    failed: int = 0


def fail_journal_writes(journal: Journal, *, first: int, times: int | None = None) -> WriteFailures:
    """Make the journal's writes fail from its ``first``-th (1-based) on, ``times`` of them (None: all).

    A failed write raises :func:`lock_timeout_error`, as a write does when another process holds the lock
    past the busy timeout (on SQLite a full disk raises the same class).
    """
    counts = WriteFailures()
    real: Callable[[], Any] = journal._transaction

    @contextmanager
    def transaction() -> Iterator[Connection]:
        counts.attempted += 1
        due = counts.attempted >= first and (times is None or counts.failed < times)
        if due:
            counts.failed += 1
            raise lock_timeout_error(journal)
        with real() as db:
            yield db

    journal._transaction = transaction  # type: ignore[method-assign]
    return counts


# -- interruptions ------------------------------------------------------------------------------------------


class Killed(BaseException):
    """The process stopped here (Ctrl-C, a kill): not an ``Exception``, so nothing may swallow it."""


@dataclass(frozen=True)
class Kill:
    """Interrupt the job at its ``at``-th request (1-based), ``before`` it reaches the vendor or after."""

    at: int
    before: bool

    def __str__(self) -> str:
        return f"killed {'before' if self.before else 'after'} request {self.at}"


class KillingTransport(httpx.BaseTransport):
    """Passes requests to ``inner`` and raises :class:`Killed` at the chosen one (``kill`` None: never)."""

    def __init__(self, inner: httpx.BaseTransport, kill: Kill | None, error: type[BaseException] = Killed) -> None:
        self.inner = inner
        self.kill = kill
        self.error = error
        self.sent = 0
        self.fired = False

    def _due(self) -> bool:
        self.sent += 1
        return self.kill is not None and not self.fired and self.sent == self.kill.at

    def _fire(self, request: httpx.Request) -> BaseException:
        self.fired = True
        return self.error(f"{self.kill} ({request.method} {request.url.path})")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        due = self._due()
        if due and self.kill is not None and self.kill.before:
            raise self._fire(request)
        response = self.inner.handle_request(request)
        if due:
            response.close()
            raise self._fire(request)
        return response


class KillingAsyncTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`KillingTransport`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, kill: Kill | None, error: type[BaseException] = Killed) -> None:
        self._counter = KillingTransport(httpx.BaseTransport(), kill, error)
        self.inner = inner

    @property
    def fired(self) -> bool:
        return self._counter.fired

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        counter = self._counter
        due = counter._due()
        if due and counter.kill is not None and counter.kill.before:
            raise counter._fire(request)
        response = await self.inner.handle_async_request(request)
        if due:
            await response.aclose()
            raise counter._fire(request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

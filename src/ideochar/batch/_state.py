"""The batch's own state: which row became which job, how it ended, and the money it holds.

Kept in two tables of the journal's database (its SQLite file, or the PostgreSQL database a fleet
shares), through a connection of the batch's own (as the upload cache keeps its table,
:mod:`ideochar.uploads`), so every process that shares the journal shares the batches too:

* ``batch_rows``: per batch and row key (:func:`~ideochar.batch._rows.row_key`), the row's current job
  id, its status, the quote reserved for it while it runs, what it cost, its manifest line, and who holds
  it (an owner and a lease, as the journal's jobs have);
* ``batches``: per batch, the money committed: every reservation made, corrected by what each job cost
  when it ended. The cap is checked against it in the same transaction that reserves (on PostgreSQL the
  batch's row is locked for it, ``SELECT ... FOR UPDATE``), so it holds across processes and machines.

**Nothing is sent without a record.** A row is *claimed* (job id chosen, quote reserved, owner written,
all in one committed transaction) before its job exists; the journal then records the job before
anything is sent (:mod:`ideochar.job`). So a re-run reads, for a claimed row: its job in the journal
(picked up by :meth:`~ideochar.client.Client.wait`: admitted calls by their vendor ids, never sent
again), or, when the journal has no such job, a positive claim that names a job the journal never
began (the journal fails closed: no job, nothing sent), which is sent now under the same id. A claim
that cannot be written stops the batch before the row is sent.

Statuses: ``claimed`` (its job runs, or ran in a process that stopped), ``done`` and ``partial`` (images
saved), ``failed`` (with ``billed`` yes, no or unknown), ``unknown`` (a vendor may hold it: picked up on
the next run), ``over_budget`` (not sent: its quote would have passed the cap).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from ideochar._constants import JOB_HEARTBEAT_SECONDS, JOB_LEASE_SECONDS
from ideochar._database import Connection, Database, Row, open_database
from ideochar._owner import Heartbeat, Owner, process_alive
from ideochar.errors import JournalUnavailable

__all__ = ["Claim", "RowState", "RowStatus", "State"]

RowStatus = Literal["claimed", "done", "partial", "failed", "unknown", "over_budget"]
#: Statuses whose job may still be held by a vendor: picked up by job id, never sent again.
OPEN: frozenset[str] = frozenset({"claimed", "unknown"})
#: How long a write waits for the journal file's lock (other writers: the journal, other processes).
BUSY_TIMEOUT_SECONDS = 30.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS batches (
        name          TEXT PRIMARY KEY,
        committed_usd TEXT NOT NULL,
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS batch_rows (
        batch         TEXT NOT NULL,
        row_key       TEXT NOT NULL,
        row_number    INTEGER NOT NULL,
        label         TEXT,
        generation    INTEGER NOT NULL,
        job_id        TEXT NOT NULL,
        status        TEXT NOT NULL,
        billed        TEXT,
        reserved_usd  TEXT,
        cost_usd      TEXT,
        record        TEXT,
        owner_host    TEXT,
        owner_pid     INTEGER,
        owner_started TEXT,
        owner_token   TEXT,
        lease_until   REAL,
        updated_at    REAL NOT NULL,
        PRIMARY KEY (batch, row_key)
    )""",
    "CREATE INDEX IF NOT EXISTS batch_rows_owner ON batch_rows (batch, owner_token)",
)


@dataclass(frozen=True)
class RowState:
    """What the state says of one row."""

    key: str
    job_id: str
    generation: int
    status: RowStatus
    billed: str | None
    reserved_usd: Decimal
    cost_usd: Decimal | None
    record: dict[str, Any] | None
    holder: str | None
    """Another live process that holds the row ("process 12 on host"), or None."""

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def settled(self, *, retry_failed: bool) -> bool:
        """Done with: nothing to send or pick up (a failure that may have cost money is not sent again
        unless asked)."""
        if self.status in ("done", "partial"):
            return True
        if self.status == "failed":
            return self.billed != "no" and not retry_failed
        return False


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`State.claim`: what this process may do with the row now."""

    outcome: Literal["claimed", "held", "open", "settled", "over_budget"]
    state: RowState | None = None
    committed_usd: Decimal = Decimal(0)
    """The batch's money committed after the claim (or when it was refused)."""


def _money(text: Any) -> Decimal | None:
    return None if text is None else Decimal(str(text))


class State:
    """One batch's rows in the journal's file (module docstring). Thread-safe; one per batch run.

    Example::

        state = State(journal.url or journal.path, "storyboard", Owner.current())
        claim = state.claim("3f2a...", number=1, label=None, job_id="...", reserve=Decimal("0.15"), cap=None)
    """

    def __init__(self, location: str | os.PathLike[str], name: str, owner: Owner) -> None:
        self.name = name
        self.owner = owner
        self._lock = threading.RLock()
        try:
            self._database: Database = open_database(location, busy_timeout_seconds=BUSY_TIMEOUT_SECONDS)
            self.where = self._database.where
            with self._transaction(hold=False) as db:
                self._database.lock_schema()  # workers opening one batch together create its tables once
                for statement in _SCHEMA:
                    db.execute(self._database.ddl(statement))
                now = time.time()
                db.execute(
                    "INSERT INTO batches (name, committed_usd, created_at, updated_at) VALUES (?, '0', ?, ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (name, now, now),
                )
        except JournalUnavailable:
            raise
        except Exception as exc:  # sqlite3's or psycopg's: the state cannot be kept, so nothing is sent
            raise _unavailable("the batch's state", exc) from exc
        self._heartbeat = Heartbeat(self._renew, min(JOB_HEARTBEAT_SECONDS, JOB_LEASE_SECONDS / 3))
        self._heartbeat.ensure_running()

    @contextmanager
    def _transaction(self, *, hold: bool = True) -> Iterator[Connection]:
        """A write transaction holding the batch's row (PostgreSQL) or the file (SQLite's writers queue):
        reserving against the cap and claiming a row cannot race another process."""
        with self._lock:
            self._database.begin()
            try:
                connection = self._database.connection
                if hold and self._database.dialect == "postgresql":
                    connection.execute("SELECT 1 FROM batches WHERE name = ? FOR UPDATE", (self.name,))
                yield connection
            except BaseException:
                self._database.rollback()
                raise
            self._database.commit()

    # -- reading -------------------------------------------------------------------------------------

    def look(self, key: str) -> RowState | None:
        """The row's state, or None when this batch never claimed it."""
        try:
            with self._lock:
                row = self._database.connection.execute(
                    "SELECT * FROM batch_rows WHERE batch = ? AND row_key = ?", (self.name, key)
                ).fetchone()
        except Exception as exc:
            raise _unavailable("the row's state", exc) from exc
        return None if row is None else self._state(row, time.time())

    def committed(self) -> Decimal:
        """The batch's money committed: spent, possibly billed, and reserved for jobs still running."""
        with self._lock:
            row = self._database.connection.execute(
                "SELECT committed_usd FROM batches WHERE name = ?", (self.name,)
            ).fetchone()
        return Decimal(str(row[0])) if row is not None else Decimal(0)

    def _state(self, row: Row, now: float) -> RowState:
        return RowState(
            key=row["row_key"],
            job_id=row["job_id"],
            generation=int(row["generation"]),
            status=row["status"],
            billed=row["billed"],
            reserved_usd=_money(row["reserved_usd"]) or Decimal(0),
            cost_usd=_money(row["cost_usd"]),
            record=json.loads(row["record"]) if row["record"] else None,
            holder=self._holder(row, now),
        )

    def _holder(self, row: Row, now: float) -> str | None:
        token = row["owner_token"]
        if not token or token == self.owner.token:
            return None
        who = f"process {row['owner_pid']} on {str(row['owner_host'] or '?').split('/')[0]}"
        if row["owner_host"] == self.owner.host:
            return who if process_alive(int(row["owner_pid"] or 0), row["owner_started"]) else None
        return who if (row["lease_until"] or 0) > now else None

    # -- claiming and settling -----------------------------------------------------------------------

    def claim(
        self,
        key: str,
        *,
        number: int,
        label: str | None,
        job_id: str,
        reserve: Decimal,
        cap: Decimal | None,
        retry_failed: bool = False,
    ) -> Claim:
        """Take the row for a new job (``job_id``), reserving ``reserve`` against ``cap``, in one transaction.

        Refused (nothing written) when another live process holds the row, when it is settled or open
        meanwhile (another run got to it: it is picked up, not sent), or when the reservation would pass
        the cap (``over_budget``: :meth:`refuse` records why it was not sent).
        """
        now = time.time()
        try:
            with self._transaction() as db:
                row = db.execute(
                    "SELECT * FROM batch_rows WHERE batch = ? AND row_key = ?", (self.name, key)
                ).fetchone()
                current = None if row is None else self._state(row, now)
                committed = self._committed(db)
                if current is not None and current.holder is not None:
                    return Claim("held", current, committed)
                if current is not None and current.open:
                    return Claim("open", current, committed)
                if current is not None and current.settled(retry_failed=retry_failed):
                    return Claim("settled", current, committed)
                if cap is not None and committed + reserve > cap:
                    return Claim("over_budget", current, committed)
                self._write(db, key, number, label, current, job_id, "claimed", reserve, now, owned=True)
                committed += reserve
                self._set_committed(db, committed, now)
                return Claim("claimed", self._state(self._row(db, key), now), committed)
        except JournalUnavailable:
            raise
        except Exception as exc:
            raise _unavailable("the row's claim", exc) from exc

    def take_over(self, key: str) -> Claim:
        """Make this run the holder of an open row (to pick its job up), unless a live process holds it."""
        now = time.time()
        try:
            with self._transaction() as db:
                row = self._row(db, key)
                current = self._state(row, now)
                if current.holder is not None:
                    return Claim("held", current, self._committed(db))
                db.execute(
                    "UPDATE batch_rows SET owner_host = ?, owner_pid = ?, owner_started = ?, owner_token = ?,"
                    " lease_until = ?, updated_at = ? WHERE batch = ? AND row_key = ?",
                    (*self._owner_values(now), now, self.name, key),
                )
                return Claim("open", current, self._committed(db))
        except JournalUnavailable:
            raise
        except Exception as exc:
            raise _unavailable("the row's claim", exc) from exc

    def settle(
        self,
        key: str,
        *,
        status: RowStatus,
        billed: str | None,
        cost: Decimal,
        record: Mapping[str, Any],
    ) -> Decimal:
        """Record how the row's job ended and replace its reservation by what it cost; the batch's
        committed money afterwards. A row left ``unknown`` keeps its reservation (it may still bill)."""
        now = time.time()
        try:
            with self._transaction() as db:
                current = self._state(self._row(db, key), now)
                keep = cost if status != "unknown" else max(cost, current.reserved_usd)
                committed = self._committed(db) + keep - current.reserved_usd
                db.execute(
                    "UPDATE batch_rows SET status = ?, billed = ?, cost_usd = ?, reserved_usd = ?, record = ?,"
                    " owner_token = NULL, lease_until = NULL, updated_at = ? WHERE batch = ? AND row_key = ?",
                    (
                        status,
                        billed,
                        str(cost),
                        str(keep) if status == "unknown" else "0",
                        json.dumps(dict(record), separators=(",", ":"), default=str),
                        now,
                        self.name,
                        key,
                    ),
                )
                self._set_committed(db, committed, now)
                return committed
        except JournalUnavailable:
            raise
        except Exception as exc:
            raise _unavailable("the row's outcome", exc) from exc

    def refuse(self, key: str, *, number: int, label: str | None, status: RowStatus, record: Mapping[str, Any]) -> None:
        """Record a row that is not sent, and why (over the cap, no provider can serve it), so the manifest
        says so; a row another run holds or may have sent is left as it is."""
        now = time.time()
        try:
            with self._transaction() as db:
                row = db.execute(
                    "SELECT * FROM batch_rows WHERE batch = ? AND row_key = ?", (self.name, key)
                ).fetchone()
                current = None if row is None else self._state(row, now)
                if current is not None and (current.holder is not None or current.open):
                    return
                job_id = current.job_id if current is not None else ""
                self._write(db, key, number, label, current, job_id, status, Decimal(0), now, owned=False)
                db.execute(
                    "UPDATE batch_rows SET billed = 'no', cost_usd = '0', record = ? WHERE batch = ? AND row_key = ?",
                    (json.dumps(dict(record), separators=(",", ":"), default=str), self.name, key),
                )
        except JournalUnavailable:
            raise
        except Exception as exc:
            raise _unavailable("the row's outcome", exc) from exc

    def release(self, key: str) -> None:
        """Let the row go without an outcome (the run was interrupted): a later run picks it up."""
        with self._lock:
            try:
                self._database.connection.execute(
                    "UPDATE batch_rows SET owner_token = NULL, lease_until = NULL WHERE batch = ? AND row_key = ?"
                    " AND owner_token = ?",
                    (self.name, key, self.owner.token),
                )
            except Exception:  # noqa: S110 - the owner's death frees it too: a release only says so sooner
                pass

    def _row(self, db: Connection, key: str) -> Row:
        row = db.execute("SELECT * FROM batch_rows WHERE batch = ? AND row_key = ?", (self.name, key)).fetchone()
        if row is None:
            raise LookupError(f"batch {self.name!r} has no row {key}")
        return row  # type: ignore[no-any-return]

    def _write(
        self,
        db: Connection,
        key: str,
        number: int,
        label: str | None,
        current: RowState | None,
        job_id: str,
        status: RowStatus,
        reserve: Decimal,
        now: float,
        *,
        owned: bool,
    ) -> None:
        generation = 0 if current is None else current.generation + 1
        owner = self._owner_values(now) if owned else (None, None, None, None, None)
        db.execute(
            "INSERT INTO batch_rows (batch, row_key, row_number, label, generation, job_id, status, billed,"
            " reserved_usd, cost_usd, record, owner_host, owner_pid, owner_started, owner_token, lease_until,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (batch, row_key) DO UPDATE SET row_number = excluded.row_number, label = excluded.label,"
            " generation = excluded.generation, job_id = excluded.job_id, status = excluded.status, billed = NULL,"
            " reserved_usd = excluded.reserved_usd, cost_usd = NULL, record = NULL,"
            " owner_host = excluded.owner_host, owner_pid = excluded.owner_pid,"
            " owner_started = excluded.owner_started, owner_token = excluded.owner_token,"
            " lease_until = excluded.lease_until, updated_at = excluded.updated_at",
            (self.name, key, number, label, generation, job_id, status, str(reserve), *owner, now),
        )

    def _owner_values(self, now: float) -> tuple[Any, ...]:
        o = self.owner
        return (o.host, o.pid, o.started, o.token, now + JOB_LEASE_SECONDS)

    def _committed(self, db: Connection) -> Decimal:
        row = db.execute("SELECT committed_usd FROM batches WHERE name = ?", (self.name,)).fetchone()
        return Decimal(str(row[0]))

    def _set_committed(self, db: Connection, value: Decimal, now: float) -> None:
        db.execute("UPDATE batches SET committed_usd = ?, updated_at = ? WHERE name = ?", (str(value), now, self.name))

    def _renew(self) -> int:
        """Renew the leases of the rows this run holds (other machines read a lease, not a pid)."""
        with self._lock:
            try:
                return self._database.connection.execute(
                    "UPDATE batch_rows SET lease_until = ? WHERE batch = ? AND owner_token = ?",
                    (time.time() + JOB_LEASE_SECONDS, self.name, self.owner.token),
                ).rowcount
            except Exception:
                return 1  # try again at the next beat

    def close(self) -> None:
        self._heartbeat.stop()
        with self._lock:
            try:
                self._database.connection.execute(
                    "UPDATE batch_rows SET owner_token = NULL, lease_until = NULL WHERE batch = ? AND owner_token = ?",
                    (self.name, self.owner.token),
                )
            except Exception:  # noqa: S110 - a lease ends on its own; the owner's death frees the rows too
                pass
            self._database.close()

    def __repr__(self) -> str:
        return f"State({self.where!r}, batch={self.name!r})"


def _unavailable(what: str, exc: BaseException) -> JournalUnavailable:
    return JournalUnavailable(
        f"the journal could not record {what} ({type(exc).__name__}: {exc}); nothing more is sent until it can"
    )

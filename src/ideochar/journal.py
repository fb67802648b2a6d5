"""The journal: every job, part, attempt and output on disk as it happens, so nothing paid for is lost.

An embedded SQLite database (stdlib ``sqlite3``, WAL mode) records, each write committed before the
step it guards:

* the **job** before anything is sent (:meth:`Journal.create_job`): the neutral request with its images
  as descriptors (path or URL, size, SHA-256; never the bytes), the plan, its **parts** (the calls it is
  split into, each ``planned``), and its **owner** (this process) with a lease the owner renews;
* each **attempt** when it starts, and its **intent to send** (:meth:`Journal.intend`) before its
  billable request leaves: the attempt becomes ``sending`` and its part ``sent`` in one transaction. If
  that cannot be committed, the request is not sent (:class:`~ideochar.errors.JournalUnavailable`). So a
  part still ``planned`` is a positive record that nothing of it was sent, and an attempt ``sending``
  without a vendor id is one whose answer may have been lost (reconciled through the vendor's listing
  where there is one, never sent again);
* the vendor's **id** and resume data as soon as they arrive (:meth:`Journal.admitted`), progress, and
  how the attempt ended (billed yes, no or unknown: the router's ruling);
* each **output**, written to the output folder (temporary name, flushed, renamed) *before* its attempt
  is marked succeeded, then its path, size and hash.

Image bytes never go into SQLite, and neither do keys (every text is redacted). The file and the output
folder are created readable by their owner only (0600 files, 0700 folders).

**Ownership.** A job is owned by the run that drives it. :meth:`Journal.claim` gives a job to a new run
(``Client.resume``) only when no live process holds it (:mod:`ideochar._owner`): a resume never races the
process that is still running the job. The owner's lease is renewed by a background thread; a run
releases the job when it ends, however it ends.

Python API for the command line (``ideochar jobs list|show|resume``)::

    from ideochar.journal import Journal, default_journal

    journal = default_journal()                  # the configured path (ideochar.toml / env), or None
    for job in journal.jobs(limit=20):           # newest first: JobRecord
        print(job.id, job.status, job.provider, job.spent_usd, job.prompt)
    print(journal.totals())                      # SpendTotals(jobs, images, spent_usd, possibly_billed_usd)
    job = journal.job("3f2a...")                 # a unique prefix works too; raises JobNotFound

Money: ``spent_usd`` counts succeeded attempts (vendor-reported cost, else the price table) and failed
attempts known to be billed (at their quote); ``possibly_billed_usd`` counts attempts whose outcome is
unknown (sent, no answer) at their quote. Prices from the table are estimates.

Durability: WAL with ``synchronous=NORMAL`` survives a killed process (SIGKILL) without losing a
committed row; an OS crash or power loss may lose the last transactions (set ``synchronous="FULL"``
to trade speed for that). Schema changes are versioned with ``PRAGMA user_version``.

**A journal a fleet shares.** ``Journal("postgresql://user@db/ideochar")`` keeps the same tables in
PostgreSQL (psycopg 3; :mod:`ideochar._database` holds every difference between the two), so any worker
on any machine can list, resume or reconcile any job. The rules are the same, written once here: a claim
locks the job's row (``SELECT ... FOR UPDATE``) before it judges the owner, so two workers resuming one
job cannot both take it; an owner on another machine is judged by its lease (its process cannot be
looked up from here), so the machines' clocks must agree to well within :data:`JOB_LEASE_SECONDS` (NTP).
Images still go to ``output_dir`` on the machine that fetched them: give every worker the same shared
folder if a worker must read images another one saved (a resume of a finished job returns them from there).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from ideochar._constants import JOB_HEARTBEAT_SECONDS, JOB_LEASE_SECONDS
from ideochar._database import Connection, Database, is_postgres_url, open_database
from ideochar._owner import Heartbeat, Owner, process_alive
from ideochar._records import (
    OPEN_STATUSES,
    AttemptRecord,
    AttemptStatus,
    JobRecord,
    JobStatus,
    OutputRecord,
    PartRecord,
    PartState,
    SpendTotals,
    attempt_record,
    describe_request,
    job_record,
    output_record,
    part_record,
    rebuild_request,
)
from ideochar._secrets import redact
from ideochar.errors import IdeocharError, InvalidRequest, JobBusy, OutcomeUnknown
from ideochar.request import CharacterRequest
from ideochar.result import Attempt, CharacterResult, GeneratedImage

__all__ = [
    "JOB_LEASE_SECONDS",
    "OPEN_STATUSES",
    "SCHEMA_VERSION",
    "AttemptRecord",
    "AttemptStatus",
    "JobNotFound",
    "JobRecord",
    "JobStatus",
    "Journal",
    "JournalConflict",
    "OutputRecord",
    "Owner",
    "PartRecord",
    "PartState",
    "SpendTotals",
    "default_journal",
    "describe_request",
    "rebuild_request",
]

SCHEMA_VERSION = 3

_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS jobs (
    id                TEXT PRIMARY KEY,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    status            TEXT NOT NULL,
    operation         TEXT NOT NULL,
    prompt            TEXT NOT NULL,
    num_images        INTEGER NOT NULL,
    request           TEXT NOT NULL,
    plan              TEXT NOT NULL,
    max_cost_usd      TEXT,
    provider          TEXT,
    vendor_request_id TEXT,
    cost_usd          TEXT,
    cost_source       TEXT,
    error_type        TEXT,
    error_message     TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE TABLE IF NOT EXISTS attempts (
    key               TEXT PRIMARY KEY,
    job_id            TEXT NOT NULL REFERENCES jobs (id),
    seq               INTEGER NOT NULL,
    part              TEXT NOT NULL,
    provider          TEXT NOT NULL,
    try               INTEGER NOT NULL,
    num_images        INTEGER NOT NULL,
    seed              INTEGER,
    quote_usd         TEXT,
    status            TEXT NOT NULL,
    vendor_request_id TEXT,
    resume            TEXT,
    vendor_status     TEXT,
    queue_position    INTEGER,
    billed            TEXT,
    cost_usd          TEXT,
    error_type        TEXT,
    message           TEXT,
    admitted          INTEGER NOT NULL DEFAULT 0,
    resumes           INTEGER NOT NULL DEFAULT 0,
    started_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    finished_at       REAL
);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts (job_id, seq);
CREATE TABLE IF NOT EXISTS outputs (
    job_id            TEXT NOT NULL REFERENCES jobs (id),
    idx               INTEGER NOT NULL,
    part              TEXT,
    provider          TEXT,
    vendor_request_id TEXT,
    path              TEXT NOT NULL,
    sha256            TEXT NOT NULL,
    size_bytes        INTEGER NOT NULL,
    content_type      TEXT NOT NULL,
    width             INTEGER,
    height            INTEGER,
    seed              INTEGER,
    created_at        REAL NOT NULL,
    PRIMARY KEY (job_id, idx)
)
"""

# Version 2: parts (positive "nothing sent" records), intents with markers, owners and leases.
# Attempts a version-1 writer left "started" may have been sent (it journaled no intent): "sending".
_SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS parts (
    job_id            TEXT NOT NULL REFERENCES jobs (id),
    label             TEXT NOT NULL,
    parent            TEXT,
    num_images        INTEGER NOT NULL,
    seed              INTEGER,
    state             TEXT NOT NULL,
    PRIMARY KEY (job_id, label)
);
ALTER TABLE jobs ADD COLUMN owner_host TEXT;
ALTER TABLE jobs ADD COLUMN owner_pid INTEGER;
ALTER TABLE jobs ADD COLUMN owner_started TEXT;
ALTER TABLE jobs ADD COLUMN owner_token TEXT;
ALTER TABLE jobs ADD COLUMN lease_until REAL;
ALTER TABLE attempts ADD COLUMN intent_at REAL;
ALTER TABLE attempts ADD COLUMN marker TEXT;
ALTER TABLE outputs ADD COLUMN attempt TEXT;
CREATE INDEX IF NOT EXISTS attempts_vendor ON attempts (provider, vendor_request_id);
UPDATE attempts SET status = 'sending' WHERE status = 'started'
"""

# Version 3: jobs run against the emulator are marked, so their would-be cost is never counted as spent.
# Jobs written before it ran against whatever they ran against: they keep counting (0).
_SCHEMA_3 = """
ALTER TABLE jobs ADD COLUMN emulated INTEGER NOT NULL DEFAULT 0
"""

#: Schema migrations: ``_MIGRATIONS[n]`` holds the statements that take a database from version n to n + 1.
_MIGRATIONS: dict[int, list[str]] = {
    0: [s for s in _SCHEMA_1.split(";") if s.strip()],
    1: [s for s in _SCHEMA_2.split(";") if s.strip()],
    2: [s for s in _SCHEMA_3.split(";") if s.strip()],
}
#: A row of JSON may not grow past this (a vendor's resume data or marker is a few hundred bytes).
_MAX_JSON_CHARS = 64 * 1024
#: SQLite integers are 64-bit; a vendor's number past that would fail the write and lose the row.
_INT64 = 2**63 - 1


class JobNotFound(InvalidRequest):
    """No job in the journal has this id (or the prefix matches several)."""


class JournalConflict(Exception):
    """A write found the journal in a state it must not change (an intent for an attempt not waiting to
    send). Raised inside the write, so the step it guards fails closed."""


def _json(value: Any) -> str:
    text = redact(json.dumps(value, default=str, separators=(",", ":")))
    if len(text) > _MAX_JSON_CHARS:
        raise ValueError(f"a journal entry of {len(text):,} characters is over the limit of {_MAX_JSON_CHARS:,}")
    return text


def _text(value: Any) -> str | None:
    return None if value is None else redact(str(value))


def _int(value: int | None) -> int | None:
    return value if value is None or -_INT64 <= value <= _INT64 else None


class Journal:
    """One journal (a SQLite file, or a PostgreSQL database) and its output folder. Thread-safe; cheap to
    keep open.

    Example::

        journal = Journal("~/.local/share/ideochar/journal.sqlite3")
        journal = Journal("postgresql://ideochar@db.internal/ideochar", output_dir="/shared/images")
        with Client(journal=journal) as client: ...

    ``busy_timeout_seconds`` bounds how long a write waits for a lock another process holds (SQLite's
    busy timeout, PostgreSQL's ``lock_timeout``); past it the write fails and the journal fails closed.
    A PostgreSQL journal has no file to put the images beside: give ``output_dir`` (default: the user
    data folder's ``outputs``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        output_dir: str | os.PathLike[str] | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout_seconds: float = 30.0,
        lease_seconds: float = JOB_LEASE_SECONDS,
    ) -> None:
        self.url: str | None = None
        """The PostgreSQL URL, for a shared journal (None: a SQLite file, :attr:`path`)."""
        self._path: Path | None = None
        if is_postgres_url(path):
            self.url = str(path)
            if output_dir is None:  # no file to put the images beside: the user data folder's
                from ideochar.config import default_data_dir

                output_dir = default_data_dir() / "outputs"
        else:
            self._path = Path(path).expanduser()
            _private_dir(self._path.parent)
            _private_file(self._path)
        self.output_dir = Path(output_dir).expanduser() if output_dir is not None else self.path.parent / "outputs"
        self.lease_seconds = lease_seconds
        self._lock = threading.RLock()
        self._owned: dict[str, str] = {}
        """Job id -> owner token, for the jobs this process runs now (the heartbeat renews them)."""
        self._database: Database = open_database(
            self.url or self.path, busy_timeout_seconds=busy_timeout_seconds, synchronous=synchronous
        )
        self._migrate()
        self._heartbeat = Heartbeat(self._renew_leases, min(JOB_HEARTBEAT_SECONDS, lease_seconds / 3))

    @property
    def path(self) -> Path:
        """The SQLite file (a PostgreSQL journal has none: AttributeError, so ``getattr(j, "path", None)``
        tells them apart)."""
        if self._path is None:
            raise AttributeError("a PostgreSQL journal has no file; see Journal.url")
        return self._path

    @property
    def where(self) -> str:
        """The file's path, or the database URL without its password: for messages and listings."""
        return self._database.where

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._database.dialect

    @property
    def _db(self) -> Connection:
        """The connection (readers hold :attr:`_lock`; writers go through :meth:`_transaction`)."""
        return self._database.connection

    def _migrate(self) -> None:
        with self._lock:
            with self._transaction():  # PostgreSQL: workers starting together migrate one at a time
                self._database.lock_schema()
                version = self._database.schema_version()
            if version > SCHEMA_VERSION:
                raise IdeocharError(
                    f"{self.where} was written by a newer ideochar (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade ideochar to read it"
                )
            while version < SCHEMA_VERSION:
                with self._transaction() as db:
                    self._database.lock_schema()
                    if self._database.schema_version() != version:  # another worker migrated meanwhile
                        version = self._database.schema_version()
                        continue
                    for statement in _MIGRATIONS[version]:
                        db.execute(self._database.ddl(statement))
                    version += 1
                    self._database.set_schema_version(version)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A short write transaction, taken at once (SQLite: BEGIN IMMEDIATE) so writers queue instead of failing."""
        with self._lock:
            self._database.begin()
            try:
                yield self._db
            except BaseException:
                self._database.rollback()
                raise
            self._database.commit()

    def close(self) -> None:
        self._heartbeat.stop()
        with self._lock:
            self._database.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({self.where!r})"

    # -- jobs and their owners --------------------------------------------------------------------------

    def create_job(
        self,
        job_id: str,
        request: CharacterRequest,
        *,
        owner: Owner | None = None,
        parts: Sequence[tuple[str, int, int | None]] | None = None,
        plan: Mapping[str, Any] | None = None,
        max_cost_usd: Decimal | None = None,
        emulated: bool = False,
    ) -> None:
        """Record a job, its parts (``(label, num_images, seed)``, each ``planned``; by default the whole
        request as one) and its owner (the run about to drive it; None: nobody yet), before anything is
        sent. A job id already present is left as it is. ``emulated``: the job runs against the emulator
        (its cost is what a vendor would charge, never counted as spent)."""
        now = time.time()
        if parts is None:
            parts = [("0", request.num_images, request.seed)]
        with self._transaction() as db:
            created = db.execute(
                "INSERT INTO jobs (id, created_at, updated_at, status, operation, prompt, num_images,"
                " request, plan, max_cost_usd, owner_host, owner_pid, owner_started, owner_token, lease_until,"
                " emulated) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    job_id,
                    now,
                    now,
                    request.operation_name,
                    redact(request.prompt),
                    request.num_images,
                    _json(describe_request(request)),
                    _json(dict(plan or {})),
                    _text(max_cost_usd),
                    *_owner_values(owner, now + self.lease_seconds),
                    1 if emulated else 0,
                ),
            ).rowcount
            if created:
                db.executemany(
                    "INSERT INTO parts (job_id, label, parent, num_images, seed, state)"
                    " VALUES (?, ?, NULL, ?, ?, 'planned') ON CONFLICT DO NOTHING",
                    [(job_id, label, count, seed) for label, count, seed in parts],
                )
        if created and owner is not None:
            self._own(job_id, owner)

    def claim(self, job_id: str, owner: Owner) -> None:
        """Make ``owner`` the job's runner, or raise :class:`~ideochar.errors.JobBusy` while a live one holds it."""
        now = time.time()
        with self._transaction() as db:
            self._database.lock_job(job_id)  # PostgreSQL: a second claimer waits here, then sees the owner
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound.for_field("job_id", f"no job {job_id!r} in {self.where}")
            busy = _held_by_other(row, owner, now)
            if busy is not None:
                raise JobBusy(
                    f"job {job_id} is being run by {busy}; resuming it too could send it twice. "
                    "Wait for it to finish, or stop that process first.",
                    owner=busy,
                )
            db.execute(
                "UPDATE jobs SET owner_host = ?, owner_pid = ?, owner_started = ?, owner_token = ?,"
                " lease_until = ?, status = 'running', updated_at = ? WHERE id = ?",
                (*_owner_values(owner, now + self.lease_seconds), now, job_id),
            )
            _close_served_attempts(db, job_id, now)
        self._own(job_id, owner)

    def release(self, job_id: str, owner: Owner) -> None:
        """Let the job go: this run no longer drives it (it ended, or was interrupted)."""
        with self._lock:
            self._owned.pop(job_id, None)
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET owner_token = NULL, lease_until = NULL WHERE id = ? AND owner_token = ?",
                (job_id, owner.token),
            )

    def _own(self, job_id: str, owner: Owner) -> None:
        with self._lock:
            self._owned[job_id] = owner.token
        self._heartbeat.ensure_running()

    def _renew_leases(self) -> int:
        with self._lock:
            owned = list(self._owned.items())
        if owned:
            until = time.time() + self.lease_seconds
            with self._transaction() as db:
                db.executemany(
                    "UPDATE jobs SET lease_until = ? WHERE id = ? AND owner_token = ?",
                    [(until, job_id, token) for job_id, token in owned],
                )
        return len(owned)

    def finish_job(
        self, job_id: str, *, result: CharacterResult | None = None, error: BaseException | None = None
    ) -> None:
        """Record how the job ended: its result (succeeded, or partial with failures) or its error."""
        if result is not None:
            status: JobStatus = "partial" if result.failures else "succeeded"
            if not result.images:
                status = "failed"
            values: tuple[Any, ...] = (
                status,
                result.provider,
                result.vendor_request_id,
                _text(result.cost_usd),
                result.cost_source,
                None,
                None,
            )
        else:
            values = (
                "unknown" if isinstance(error, OutcomeUnknown) else "failed",
                getattr(error, "provider", None),
                getattr(error, "vendor_request_id", None),
                None,
                None,
                type(error).__name__ if error is not None else None,
                _text(error),
            )
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = ?, provider = ?, vendor_request_id = ?, cost_usd = ?, cost_source = ?,"
                " error_type = ?, error_message = ?, updated_at = ? WHERE id = ?",
                (*values, time.time(), job_id),
            )

    # -- attempts -----------------------------------------------------------------------------------------

    def start_attempt(
        self,
        job_id: str,
        key: str,
        *,
        provider: str,
        part: tuple[str, int, int | None],
        try_number: int = 1,
        quote_usd: Decimal | None = None,
        resumed: bool = False,
    ) -> None:
        """An attempt begins (nothing billable is sent yet). A resumed attempt keeps its row."""
        label, count, seed = part
        now = time.time()
        with self._transaction() as db:
            self._database.lock_job(job_id)
            if resumed or db.execute("SELECT 1 FROM attempts WHERE key = ?", (key,)).fetchone():
                db.execute("UPDATE attempts SET resumes = resumes + 1, updated_at = ? WHERE key = ?", (now, key))
                return
            _ensure_part(db, job_id, label, count, seed)
            seq = int(
                db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM attempts WHERE job_id = ?", (job_id,)).fetchone()[0]
            )
            db.execute(
                "INSERT INTO attempts (key, job_id, seq, part, provider, try, num_images, seed, quote_usd, status,"
                " started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'started', ?, ?)",
                (key, job_id, seq, label, provider, try_number, count, seed, _text(quote_usd), now, now),
            )

    def intend(self, job_id: str, key: str, *, part: str, marker: Mapping[str, Any] | None, at: float) -> None:
        """The attempt's billable request is about to leave: from now on it may have been sent."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE attempts SET status = 'sending', intent_at = ?, marker = ?, updated_at = ?"
                " WHERE key = ? AND status = 'started'",
                (at, None if marker is None else _json(dict(marker)), at, key),
            ).rowcount
            if not changed:
                raise JournalConflict(f"attempt {key} is not waiting to send")
            db.execute("UPDATE parts SET state = 'sent' WHERE job_id = ? AND label = ?", (job_id, part))

    def admitted(
        self,
        key: str,
        *,
        vendor_request_id: str | None,
        resume: Mapping[str, Any] | None,
        status: str | None = None,
        queue_position: int | None = None,
    ) -> None:
        """The vendor gave the job an id (and what is needed to pick it up again)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE attempts SET"
                " status = CASE WHEN status IN ('succeeded', 'failed') THEN status ELSE 'submitted' END,"
                " vendor_request_id = COALESCE(?, vendor_request_id), resume = COALESCE(?, resume), admitted = 1,"
                " vendor_status = COALESCE(?, vendor_status), queue_position = ?, updated_at = ? WHERE key = ?",
                (
                    _text(vendor_request_id),
                    None if resume is None else _json(dict(resume)),
                    _text(status),
                    _int(queue_position),
                    time.time(),
                    key,
                ),
            )

    def progress(
        self, key: str, *, status: str | None, queue_position: int | None, vendor_request_id: str | None
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE attempts SET vendor_status = COALESCE(?, vendor_status), queue_position = ?,"
                " vendor_request_id = COALESCE(vendor_request_id, ?), updated_at = ? WHERE key = ?",
                (_text(status), _int(queue_position), _text(vendor_request_id), time.time(), key),
            )

    def end_attempt(self, key: str, attempt: Attempt, *, admitted: bool) -> None:
        """How the attempt ended, billing as the router ruled. Outputs are recorded before a success."""
        if attempt.outcome == "succeeded":
            status: AttemptStatus = "succeeded"
        else:
            status = "unknown" if admitted and attempt.billed == "unknown" else "failed"
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE attempts SET status = ?, billed = ?, cost_usd = ?, error_type = ?, message = ?,"
                " admitted = CASE WHEN ? = 1 THEN 1 ELSE admitted END,"
                " vendor_request_id = COALESCE(?, vendor_request_id),"
                " queue_position = CASE WHEN ? = 'succeeded' THEN NULL ELSE queue_position END,"
                " vendor_status = CASE WHEN ? = 'succeeded' THEN 'completed' ELSE vendor_status END,"
                " finished_at = ?, updated_at = ? WHERE key = ?",
                (
                    status,
                    attempt.billed,
                    _text(attempt.cost_usd),
                    attempt.error_type,
                    _text(attempt.message),
                    1 if admitted else 0,
                    _text(attempt.vendor_request_id),
                    status,
                    status,
                    now,
                    now,
                    key,
                ),
            )

    def split_part(self, job_id: str, label: str, pieces: Sequence[tuple[str, int, int | None]]) -> None:
        """A fallback serves part ``label`` in smaller parts: record them, each ``planned``."""
        with self._transaction() as db:
            db.execute("UPDATE parts SET state = 'split' WHERE job_id = ? AND label = ?", (job_id, label))
            for piece, count, seed in pieces:
                _ensure_part(db, job_id, piece, count, seed, parent=label)

    # -- outputs -------------------------------------------------------------------------------------------

    def record_outputs(
        self,
        job_id: str,
        images: Sequence[GeneratedImage],
        *,
        part: str | None = None,
        attempt: str | None = None,
        provider: str | None = None,
        vendor_request_id: str | None = None,
    ) -> list[Path]:
        """Write each image to the output folder (atomically, owner-only) and record its path, size and hash."""
        paths: list[Path] = []
        source = (part, attempt, provider, _text(vendor_request_id))
        for position, image in enumerate(images, start=1):
            # Named by call and hash, so files are written outside the lock and a rewrite is harmless.
            path = self.output_dir / job_id / f"{part or '0'}-{position}-{image.sha256[:12]}.{image.extension}"
            _write_atomic(path, image.data)
            with self._transaction() as db:
                self._database.lock_job(job_id)
                _insert_output(db, job_id, path, image, source)
            paths.append(path)
        return paths

    # -- reading ----------------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobRecord:
        """One job with its parts, attempts and outputs. A unique prefix of the id is enough."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY id = ? DESC LIMIT 2",
                (job_id, _prefix(job_id), job_id),
            ).fetchall()
            if not rows or not job_id:
                raise JobNotFound.for_field("job_id", f"no job {job_id!r} in {self.where}")
            if len(rows) > 1 and rows[0]["id"] != job_id:
                raise JobNotFound.for_field("job_id", f"{job_id!r} matches several jobs; give more of the id")
            return self._records(rows)[0]

    def find_vendor_job(self, provider: str, vendor_request_id: str) -> JobRecord | None:
        """The job one of whose attempts a vendor knows by ``vendor_request_id`` (a webhook names only that)."""
        with self._lock:
            row = self._db.execute(
                "SELECT job_id FROM attempts WHERE provider = ? AND vendor_request_id = ? ORDER BY seq LIMIT 1",
                (provider, redact(vendor_request_id)),
            ).fetchone()
        return None if row is None else self.job(row["job_id"])

    def jobs(self, *, limit: int | None = 50, status: str | None = None) -> list[JobRecord]:
        """Jobs, newest first, each with its parts, attempts and outputs."""
        query = "SELECT * FROM jobs"
        args: list[Any] = []
        if status is not None:
            query += " WHERE status = ?"
            args.append(status)
        query += " ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        with self._lock:
            return self._records(self._db.execute(query, args).fetchall())

    def _records(self, rows: Sequence[Any]) -> list[JobRecord]:
        ids = [r["id"] for r in rows]
        attempts: dict[str, list[AttemptRecord]] = {i: [] for i in ids}
        outputs: dict[str, list[OutputRecord]] = {i: [] for i in ids}
        parts: dict[str, list[PartRecord]] = {i: [] for i in ids}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for a in self._db.execute(f"SELECT * FROM attempts WHERE job_id IN ({marks}) ORDER BY seq", chunk):  # noqa: S608
                attempts[a["job_id"]].append(attempt_record(a))
            for o in self._db.execute(f"SELECT * FROM outputs WHERE job_id IN ({marks}) ORDER BY idx", chunk):  # noqa: S608
                outputs[o["job_id"]].append(output_record(o))
            for p in self._db.execute(f"SELECT * FROM parts WHERE job_id IN ({marks}) ORDER BY rowid", chunk):  # noqa: S608
                parts[p["job_id"]].append(part_record(p))
        return [job_record(r, attempts[r["id"]], outputs[r["id"]], parts[r["id"]]) for r in rows]

    def totals(self) -> SpendTotals:
        """Every job's spend added up: what was billed, and what may have been. Emulated jobs are counted
        apart (``emulated_jobs``): nothing they did cost money."""
        spent, possible = Decimal(0), Decimal(0)
        with self._lock:
            jobs = int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE emulated = 0").fetchone()[0])
            emulated = int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE emulated != 0").fetchone()[0])
            images = int(
                self._db.execute(
                    "SELECT COUNT(*) FROM outputs JOIN jobs ON jobs.id = outputs.job_id WHERE jobs.emulated = 0"
                ).fetchone()[0]
            )
            rows = self._db.execute(
                "SELECT attempts.* FROM attempts JOIN jobs ON jobs.id = attempts.job_id WHERE jobs.emulated = 0"
            )
            for row in rows:
                attempt = attempt_record(row)
                spent += attempt.spent_usd
                possible += attempt.possibly_billed_usd
        return SpendTotals(
            jobs=jobs, images=images, spent_usd=spent, possibly_billed_usd=possible, emulated_jobs=emulated
        )

    def delete_jobs(self, job_ids: Sequence[str]) -> list[Path]:
        """Forget jobs (``ideochar jobs prune``): their rows go, and so do their images in the output folder.

        Returns the files removed. Only files inside :attr:`output_dir` are touched (a row naming a path
        elsewhere is forgotten, the file kept). The caller decides which jobs may go; see the command.
        """
        removed: list[Path] = []
        for chunk in _chunks(list(job_ids), 500):
            marks = ",".join("?" * len(chunk))
            query = f"SELECT path FROM outputs WHERE job_id IN ({marks})"  # noqa: S608
            with self._lock:
                paths = [Path(row[0]) for row in self._db.execute(query, chunk)]
            with self._transaction() as db:
                for table in ("outputs", "attempts", "parts"):
                    db.execute(f"DELETE FROM {table} WHERE job_id IN ({marks})", chunk)  # noqa: S608
                db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)  # noqa: S608
            removed += [path for path in paths if _remove_output(path, self.output_dir)]
            for job_id in chunk:
                try:
                    (self.output_dir / job_id).rmdir()  # only when empty
                except OSError:
                    pass
        return removed


def _remove_output(path: Path, output_dir: Path) -> bool:
    """Delete one recorded image if it lies inside the output folder; True when it was removed."""
    try:
        if not path.resolve().is_relative_to(output_dir.resolve()):
            return False
        path.unlink()
    except OSError:
        return False
    return True


def _owner_values(owner: Owner | None, lease_until: float) -> tuple[Any, ...]:
    if owner is None:
        return (None, None, None, None, None)
    return (owner.host, owner.pid, owner.started, owner.token, lease_until)


def _held_by_other(row: Any, owner: Owner, now: float) -> str | None:
    """Who else runs this job, if anyone may still be: a description, or None when it is free."""
    token = row["owner_token"]
    if not token or token == owner.token:
        return None
    who = f"process {row['owner_pid']} on {str(row['owner_host'] or '?').split('/')[0]}"
    if row["owner_host"] == owner.host:
        return who if process_alive(int(row["owner_pid"] or 0), row["owner_started"]) else None
    return who if (row["lease_until"] or 0) > now else None


def _close_served_attempts(db: Connection, job_id: str, now: float) -> None:
    """Record as succeeded (billed) the open attempts whose every image is already in the output folder.

    Outputs are recorded before an attempt's end (:meth:`Journal.end_attempt`), so a process killed between
    the two leaves an attempt open with all its images saved. Its resumer takes the images from the folder
    and never asks the vendor again; without this the attempt would stay open in a finished job, claiming
    the vendor might still be running (and billing) what it has served.
    """
    db.execute(
        "UPDATE attempts SET status = 'succeeded', billed = 'yes', vendor_status = 'completed',"
        " queue_position = NULL, finished_at = ?, updated_at = ?"
        " WHERE job_id = ? AND status IN ('sending', 'submitted', 'unknown') AND num_images <= ("
        "SELECT COUNT(*) FROM outputs WHERE outputs.job_id = attempts.job_id AND outputs.attempt = attempts.key)",
        (now, now, job_id),
    )


def _insert_output(db: Connection, job_id: str, path: Path, image: GeneratedImage, source: tuple[Any, ...]) -> None:
    """One output row (once per file: a rewrite after a resume records nothing new)."""
    if db.execute("SELECT 1 FROM outputs WHERE job_id = ? AND path = ?", (job_id, str(path))).fetchone():
        return
    index = db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM outputs WHERE job_id = ?", (job_id,)).fetchone()[0]
    db.execute(
        "INSERT INTO outputs (job_id, idx, part, attempt, provider, vendor_request_id, path, sha256,"
        " size_bytes, content_type, width, height, seed, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            int(index),
            *source,
            str(path),
            image.sha256,
            len(image.data),
            image.content_type,
            image.width,
            image.height,
            _int(image.seed),
            time.time(),
        ),
    )


def _ensure_part(
    db: Connection, job_id: str, label: str, count: int, seed: int | None, parent: str | None = None
) -> None:
    db.execute(
        "INSERT INTO parts (job_id, label, parent, num_images, seed, state)"
        " VALUES (?, ?, ?, ?, ?, 'planned') ON CONFLICT DO NOTHING",
        (job_id, label, parent, count, _int(seed)),
    )


def _prefix(job_id: str) -> str:
    escaped = job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%" if len(job_id) >= 4 else job_id


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) readable by the owner only; an existing folder is left as it is."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def _private_file(path: Path) -> None:
    """Create the database file owner-only before SQLite opens it (its -wal and -shm files copy the mode)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def _write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name in the same folder (owner-only), flush to disk, then rename into place."""
    _private_dir(path.parent)
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def default_journal(environ: Mapping[str, str] | None = None) -> Journal | None:
    """The journal the configuration names (``journal_url``/``IDEOCHAR_JOURNAL_URL``, else ``journal``/
    ``IDEOCHAR_JOURNAL``), or None when it is off."""
    from ideochar.config import load_settings

    settings = load_settings(environ=environ)
    location = settings.journal_location
    return None if location is None else Journal(location, output_dir=settings.outputs_path)

"""The journal: every job, attempt and output on disk as it happens, so nothing paid for is lost.

An embedded SQLite database (stdlib ``sqlite3``, WAL mode) records:

* the **job** before anything is sent (:meth:`Journal.create_job`): the neutral request with its images
  as descriptors (path or URL, size, SHA-256; never the bytes), the plan (who, in which order, the quotes,
  who was skipped and why);
* each **attempt** as its events arrive (:meth:`Journal.record`, the client's event observer): started,
  *submitted* with the vendor's id and resume data (committed before the driver sends anything else, so
  a process killed right after it can resume the job), progress, failed or succeeded, billed or not;
* each **output** once downloaded (:meth:`Journal.record_outputs`): the image is written to the output
  folder under a temporary name, flushed and renamed into place, then its path, size and hash are
  recorded. Image bytes never go into SQLite, and neither do keys (every text is redacted too).

A job is resumed with :meth:`ideochar.client.Client.resume` (``ideochar jobs resume``): queue jobs are
picked up by vendor id and their paid results fetched; nothing is submitted twice.

Python API for the command line (``ideochar jobs list|show|resume``)::

    from ideochar.journal import Journal, default_journal

    journal = default_journal()                  # the configured path (ideochar.toml / env), or None
    for job in journal.jobs(limit=20):           # newest first: JobRecord
        print(job.id, job.status, job.provider, job.spent_usd, job.prompt)
    print(journal.totals())                      # SpendTotals(jobs, images, spent_usd, possibly_billed_usd)
    job = journal.job("3f2a...")                 # a unique prefix works too; raises JobNotFound
    for attempt in job.attempts: ...             # AttemptRecord: provider, status, vendor id, billed, cost
    for output in job.outputs: ...               # OutputRecord: path, sha256, size, width, height, seed
    job.to_dict()                                # JSON-safe, for --json

    with Client() as client:
        result = client.resume(job.id)           # CharacterResult

Money: ``spent_usd`` counts succeeded attempts (vendor-reported cost, else the price table) and failed
attempts known to be billed (at their quote); ``possibly_billed_usd`` counts attempts whose outcome is
unknown (sent, no answer) at their quote. Prices from the table are estimates.

Durability: WAL with ``synchronous=NORMAL`` survives a killed process (SIGKILL) without losing a
committed row; an OS crash or power loss may lose the last transactions (set ``synchronous="FULL"``
to trade speed for that). Schema changes are versioned with ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from ideochar._secrets import redact, redact_any
from ideochar.errors import IdeocharError, InvalidRequest
from ideochar.events import Event
from ideochar.request import CharacterRequest
from ideochar.result import CharacterResult, GeneratedImage

__all__ = [
    "SCHEMA_VERSION",
    "AttemptRecord",
    "AttemptStatus",
    "JobNotFound",
    "JobRecord",
    "JobStatus",
    "Journal",
    "OutputRecord",
    "SpendTotals",
    "default_journal",
    "describe_request",
    "rebuild_request",
]

SCHEMA_VERSION = 1

JobStatus = Literal["running", "succeeded", "partial", "failed", "unknown"]
AttemptStatus = Literal["started", "submitted", "succeeded", "failed", "unknown"]

#: Attempt states whose job may still exist (and bill) at the vendor.
OPEN_STATUSES: frozenset[str] = frozenset({"started", "submitted", "unknown"})

_SCHEMA = """
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
);
"""

#: Schema migrations: ``_MIGRATIONS[n]`` holds the statements that take a database from version n to n + 1.
_MIGRATIONS: dict[int, list[str]] = {0: [s for s in _SCHEMA.split(";") if s.strip()]}


class JobNotFound(InvalidRequest):
    """No job in the journal has this id (or the prefix matches several)."""


# -- records (what the API returns) ----------------------------------------------------------------------


def _dec(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _when(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


@dataclass(frozen=True)
class AttemptRecord:
    key: str
    job_id: str
    seq: int
    part: str
    """Which call of a fanned-out job ("0", "1", ...; "1.0" when a fallback split it further)."""
    provider: str
    try_number: int
    num_images: int
    seed: int | None
    quote_usd: Decimal | None
    status: AttemptStatus
    vendor_request_id: str | None
    resume: dict[str, Any] | None
    vendor_status: str | None
    queue_position: int | None
    billed: str | None
    cost_usd: Decimal | None
    error_type: str | None
    message: str | None
    admitted: bool
    resumes: int
    started_at: datetime
    finished_at: datetime | None

    @property
    def open(self) -> bool:
        """The vendor may still be running (and billing) this attempt."""
        return self.status in OPEN_STATUSES

    @property
    def resumable(self) -> bool:
        """Open, with resume data: it can be picked up without sending it again.

        The data is usually keyed by the vendor's job id; a vendor without job ids may journal its answer
        itself (the image URLs to download again).
        """
        return self.open and self.resume is not None

    @property
    def spent_usd(self) -> Decimal:
        if self.status == "succeeded":
            return self.cost_usd if self.cost_usd is not None else self.quote_usd or Decimal(0)
        if self.status == "failed" and self.billed == "yes":
            return self.cost_usd if self.cost_usd is not None else self.quote_usd or Decimal(0)
        return Decimal(0)

    @property
    def possibly_billed_usd(self) -> Decimal:
        if self.open or (self.status == "failed" and self.billed == "unknown"):
            return self.quote_usd or Decimal(0)
        return Decimal(0)


@dataclass(frozen=True)
class OutputRecord:
    job_id: str
    index: int
    part: str | None
    provider: str | None
    vendor_request_id: str | None
    path: Path
    sha256: str
    size_bytes: int
    content_type: str
    width: int | None
    height: int | None
    seed: int | None
    created_at: datetime

    def read(self) -> GeneratedImage:
        """The saved image, checked against its recorded hash (a changed file is not passed off as ours)."""
        import hashlib

        data = self.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise OSError(f"{self.path} no longer matches the image the journal recorded")
        return GeneratedImage(
            data=data,
            content_type=self.content_type,
            width=self.width,
            height=self.height,
            seed=self.seed,
        )


@dataclass(frozen=True)
class JobRecord:
    id: str
    created_at: datetime
    updated_at: datetime
    status: JobStatus
    operation: str
    prompt: str
    num_images: int
    request: dict[str, Any]
    plan: dict[str, Any]
    max_cost_usd: Decimal | None
    provider: str | None
    vendor_request_id: str | None
    cost_usd: Decimal | None
    cost_source: str | None
    error_type: str | None
    error_message: str | None
    attempts: list[AttemptRecord] = field(default_factory=list)
    outputs: list[OutputRecord] = field(default_factory=list)

    @property
    def spent_usd(self) -> Decimal:
        return sum((a.spent_usd for a in self.attempts), Decimal(0))

    @property
    def possibly_billed_usd(self) -> Decimal:
        return sum((a.possibly_billed_usd for a in self.attempts), Decimal(0))

    @property
    def resumable(self) -> list[AttemptRecord]:
        return [a for a in self.attempts if a.resumable]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (Decimals and paths as strings, times in ISO 8601)."""

        def plain(value: Any) -> Any:
            if isinstance(value, (Decimal, Path)):
                return str(value)
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        document = plain(asdict(self))
        document["spent_usd"] = str(self.spent_usd)
        document["possibly_billed_usd"] = str(self.possibly_billed_usd)
        return document  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SpendTotals:
    jobs: int
    images: int
    spent_usd: Decimal
    possibly_billed_usd: Decimal


# -- the request, without bytes ---------------------------------------------------------------------------


def describe_request(request: CharacterRequest) -> dict[str, Any]:
    """The request as JSON, images replaced by ``{kind, path|url, sha256, size}`` descriptors.

    Paths are made absolute so a resume from another folder finds them; bytes and data URIs are
    described by hash only (the bytes stay out of the journal).
    """
    document: dict[str, Any] = request.model_dump(mode="json")
    inputs: dict[str, Any] = {}
    for name, image in request.images():
        entry: dict[str, Any] = {"kind": image.kind}
        if image.kind == "url":
            entry["url"] = image.url
        else:
            entry["sha256"] = image.sha256
            entry["size"] = image.size
            if image.path is not None:
                entry["path"] = str(image.path.resolve())
        inputs[name] = entry
        _set_path(document, name, entry.get("path") or entry.get("url") or f"<{image.kind}>")
    document["inputs"] = inputs
    return redact_any(document)  # type: ignore[no-any-return]


def _set_path(document: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target: Any = document
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = parts[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


def rebuild_request(document: Mapping[str, Any]) -> CharacterRequest:
    """The request again, from :func:`describe_request`'s document; raises when an input is not here.

    A path must still hold the same bytes (same hash); URLs are taken as they are; inputs that were
    given as bytes were never stored, so such a request cannot be rebuilt.
    """
    import hashlib

    data = {k: v for k, v in document.items() if k != "inputs"}
    data = json.loads(json.dumps(data))
    for name, entry in dict(document.get("inputs") or {}).items():
        kind = entry.get("kind")
        if kind == "url":
            continue
        path = entry.get("path")
        if kind != "path" or not path:
            raise InvalidRequest.for_field(
                name, "was given as bytes, which the journal does not keep; run the request again"
            )
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            raise InvalidRequest.for_field(name, f"{path} is gone; run the request again") from None
        if digest != entry.get("sha256"):
            raise InvalidRequest.for_field(name, f"{path} has changed since the job was created")
    return CharacterRequest.model_validate(data)


# -- the journal ------------------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return redact(json.dumps(value, default=str, separators=(",", ":")))


def _text(value: Any) -> str | None:
    return None if value is None else redact(str(value))


class Journal:
    """One SQLite journal file and the output folder beside it. Thread-safe; cheap to keep open.

    Example::

        journal = Journal("~/.local/share/ideochar/journal.sqlite3")
        with Client(journal=journal) as client: ...
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        output_dir: str | os.PathLike[str] | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        self.path = Path(path).expanduser()
        self.output_dir = Path(output_dir).expanduser() if output_dir is not None else self.path.parent / "outputs"
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise IdeocharError(
                    f"{self.path} was written by a newer ideochar (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade ideochar to read it"
                )
            while version < SCHEMA_VERSION:
                with self._transaction() as db:
                    for statement in _MIGRATIONS[version]:
                        db.execute(statement)
                    version += 1
                    db.execute(f"PRAGMA user_version={version}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction, taken at once (BEGIN IMMEDIATE) so writers queue instead of failing."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    # -- writing: jobs ----------------------------------------------------------------------------------

    def create_job(
        self,
        job_id: str,
        request: CharacterRequest,
        *,
        plan: Mapping[str, Any] | None = None,
        max_cost_usd: Decimal | None = None,
    ) -> None:
        """Record a job before anything is sent. A job id already present is left as it is."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO jobs (id, created_at, updated_at, status, operation, prompt, num_images,"
                " request, plan, max_cost_usd) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
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
                ),
            )

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
            from ideochar.errors import OutcomeUnknown

            unknown = isinstance(error, OutcomeUnknown)
            values = (
                "unknown" if unknown else "failed",
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

    # -- writing: attempts, from events ----------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Observe one event (the client calls this before anything else sees it). Commits at once."""
        key = event.data.get("attempt") if event.data else None
        if not key or not event.job_id:
            return
        handler = _EVENT_HANDLERS.get(event.kind)
        if handler is not None:
            with self._transaction() as db:
                handler(db, event, str(key), time.time())

    # -- writing: outputs -------------------------------------------------------------------------------

    def record_outputs(
        self,
        job_id: str,
        images: Sequence[GeneratedImage],
        *,
        part: str | None = None,
        provider: str | None = None,
        vendor_request_id: str | None = None,
    ) -> list[Path]:
        """Write each image to the output folder (atomically) and record its path, size and hash."""
        folder = self.output_dir / job_id
        paths: list[Path] = []
        for position, image in enumerate(images, start=1):
            digest = image.sha256 or _sha256(image.data)
            # Named by call and hash, so files are written outside the lock and a rewrite is harmless.
            path = folder / f"{part or '0'}-{position}-{digest[:12]}.{image.extension}"
            _write_atomic(path, image.data)
            with self._transaction() as db:
                index = int(
                    db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM outputs WHERE job_id = ?", (job_id,)).fetchone()[
                        0
                    ]
                )
                db.execute(
                    "INSERT INTO outputs (job_id, idx, part, provider, vendor_request_id, path, sha256,"
                    " size_bytes, content_type, width, height, seed, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job_id,
                        index,
                        part,
                        provider,
                        vendor_request_id,
                        str(path),
                        digest,
                        len(image.data),
                        image.content_type,
                        image.width,
                        image.height,
                        image.seed,
                        time.time(),
                    ),
                )
            paths.append(path)
        return paths

    # -- reading ----------------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobRecord:
        """One job with its attempts and outputs. A unique prefix of the id is enough."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY id = ? DESC LIMIT 2",
                (job_id, _prefix(job_id), job_id),
            ).fetchall()
            if not rows or not job_id:
                raise JobNotFound.for_field("job_id", f"no job {job_id!r} in {self.path}")
            if len(rows) > 1 and rows[0]["id"] != job_id:
                raise JobNotFound.for_field("job_id", f"{job_id!r} matches several jobs; give more of the id")
            row = rows[0]
            attempts = self._db.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY seq", (row["id"],))
            outputs = self._db.execute("SELECT * FROM outputs WHERE job_id = ? ORDER BY idx", (row["id"],))
            return _job(row, [_attempt(a) for a in attempts], [_output(o) for o in outputs])

    def jobs(self, *, limit: int | None = 50, status: str | None = None) -> list[JobRecord]:
        """Jobs, newest first, each with its attempts and outputs."""
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
            rows = self._db.execute(query, args).fetchall()
            ids = [r["id"] for r in rows]
            attempts: dict[str, list[AttemptRecord]] = {i: [] for i in ids}
            outputs: dict[str, list[OutputRecord]] = {i: [] for i in ids}
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                for a in self._db.execute(f"SELECT * FROM attempts WHERE job_id IN ({marks}) ORDER BY seq", chunk):  # noqa: S608
                    attempts[a["job_id"]].append(_attempt(a))
                for o in self._db.execute(f"SELECT * FROM outputs WHERE job_id IN ({marks}) ORDER BY idx", chunk):  # noqa: S608
                    outputs[o["job_id"]].append(_output(o))
        return [_job(r, attempts[r["id"]], outputs[r["id"]]) for r in rows]

    def totals(self) -> SpendTotals:
        """Every job's spend added up: what was billed, and what may have been."""
        spent, possible = Decimal(0), Decimal(0)
        with self._lock:
            jobs = int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            images = int(self._db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0])
            for row in self._db.execute("SELECT * FROM attempts"):
                attempt = _attempt(row)
                spent += attempt.spent_usd
                possible += attempt.possibly_billed_usd
        return SpendTotals(jobs=jobs, images=images, spent_usd=spent, possibly_billed_usd=possible)


def _prefix(job_id: str) -> str:
    escaped = job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%" if len(job_id) >= 4 else job_id


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name in the same folder, flush to disk, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
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


def _job(row: sqlite3.Row, attempts: list[AttemptRecord], outputs: list[OutputRecord]) -> JobRecord:
    return JobRecord(
        id=row["id"],
        created_at=_when(row["created_at"]) or datetime.now(timezone.utc),
        updated_at=_when(row["updated_at"]) or datetime.now(timezone.utc),
        status=row["status"],
        operation=row["operation"],
        prompt=row["prompt"],
        num_images=row["num_images"],
        request=json.loads(row["request"]),
        plan=json.loads(row["plan"]),
        max_cost_usd=_dec(row["max_cost_usd"]),
        provider=row["provider"],
        vendor_request_id=row["vendor_request_id"],
        cost_usd=_dec(row["cost_usd"]),
        cost_source=row["cost_source"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        attempts=attempts,
        outputs=outputs,
    )


def _attempt(row: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(
        key=row["key"],
        job_id=row["job_id"],
        seq=row["seq"],
        part=row["part"],
        provider=row["provider"],
        try_number=row["try"],
        num_images=row["num_images"],
        seed=row["seed"],
        quote_usd=_dec(row["quote_usd"]),
        status=row["status"],
        vendor_request_id=row["vendor_request_id"],
        resume=json.loads(row["resume"]) if row["resume"] else None,
        vendor_status=row["vendor_status"],
        queue_position=row["queue_position"],
        billed=row["billed"],
        cost_usd=_dec(row["cost_usd"]),
        error_type=row["error_type"],
        message=row["message"],
        admitted=bool(row["admitted"]),
        resumes=row["resumes"],
        started_at=_when(row["started_at"]) or datetime.now(timezone.utc),
        finished_at=_when(row["finished_at"]),
    )


def _output(row: sqlite3.Row) -> OutputRecord:
    return OutputRecord(
        job_id=row["job_id"],
        index=row["idx"],
        part=row["part"],
        provider=row["provider"],
        vendor_request_id=row["vendor_request_id"],
        path=Path(row["path"]),
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        content_type=row["content_type"],
        width=row["width"],
        height=row["height"],
        seed=row["seed"],
        created_at=_when(row["created_at"]) or datetime.now(timezone.utc),
    )


# -- events -> rows ----------------------------------------------------------------------------------------


def _started(db: sqlite3.Connection, event: Event, key: str, now: float) -> None:
    data = event.data
    exists = db.execute("SELECT 1 FROM attempts WHERE key = ?", (key,)).fetchone()
    if exists:  # a resume of an attempt already recorded: same vendor job, same row
        db.execute("UPDATE attempts SET resumes = resumes + 1, updated_at = ? WHERE key = ?", (now, key))
        return
    row = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM attempts WHERE job_id = ?", (event.job_id,)).fetchone()
    seq = int(row[0])
    db.execute(
        "INSERT INTO attempts (key, job_id, seq, part, provider, try, num_images, seed, quote_usd, status,"
        " started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'started', ?, ?)",
        (
            key,
            event.job_id,
            seq,
            str(data.get("part", "0")),
            event.provider or "?",
            int(data.get("try", 1) or 1),
            int(data.get("num_images", 1) or 1),
            data.get("seed"),
            _text(data.get("quote_usd")),
            now,
            now,
        ),
    )


def _submitted(db: sqlite3.Connection, event: Event, key: str, now: float) -> None:
    db.execute(
        "UPDATE attempts SET status = CASE WHEN status IN ('succeeded', 'failed') THEN status ELSE 'submitted' END,"
        " vendor_request_id = COALESCE(?, vendor_request_id), resume = COALESCE(?, resume), admitted = 1,"
        " vendor_status = COALESCE(?, vendor_status), queue_position = ?, updated_at = ? WHERE key = ?",
        (
            _text(event.vendor_request_id),
            _json(event.resume) if event.resume is not None else None,
            event.status,
            event.queue_position,
            now,
            key,
        ),
    )


def _progress(db: sqlite3.Connection, event: Event, key: str, now: float) -> None:
    db.execute(
        "UPDATE attempts SET vendor_status = COALESCE(?, vendor_status), queue_position = ?,"
        " vendor_request_id = COALESCE(vendor_request_id, ?), updated_at = ? WHERE key = ?",
        (event.status, event.queue_position, _text(event.vendor_request_id), now, key),
    )


def _failed(db: sqlite3.Connection, event: Event, key: str, now: float) -> None:
    data = event.data
    unknown = data.get("error") == "OutcomeUnknown" or (data.get("admitted") and data.get("billed") == "unknown")
    db.execute(
        "UPDATE attempts SET status = ?, billed = ?, error_type = ?, message = ?,"
        " admitted = MAX(admitted, ?), vendor_request_id = COALESCE(?, vendor_request_id),"
        " finished_at = ?, updated_at = ? WHERE key = ?",
        (
            "unknown" if unknown else "failed",
            data.get("billed"),
            data.get("error"),
            _text(event.message),
            1 if data.get("admitted") else 0,
            _text(event.vendor_request_id),
            now,
            now,
            key,
        ),
    )


def _finished(db: sqlite3.Connection, event: Event, key: str, now: float) -> None:
    db.execute(
        "UPDATE attempts SET status = 'succeeded', billed = 'yes', cost_usd = ?,"
        " vendor_request_id = COALESCE(?, vendor_request_id), vendor_status = 'completed', queue_position = NULL,"
        " finished_at = ?, updated_at = ? WHERE key = ?",
        (_text(event.cost_usd), _text(event.vendor_request_id), now, now, key),
    )


_EVENT_HANDLERS = {
    "attempt_started": _started,
    "submitted": _submitted,
    "progress": _progress,
    "attempt_failed": _failed,
    "finished": _finished,
}


def default_journal(environ: Mapping[str, str] | None = None) -> Journal | None:
    """The journal the configuration names (ideochar.toml, ``IDEOCHAR_JOURNAL``), or None when it is off."""
    from ideochar.config import load_settings

    settings = load_settings(environ=environ)
    path = settings.journal_path
    return None if path is None else Journal(path, output_dir=settings.outputs_path)

"""Which deliveries were already taken, so a vendor's retry or a replay is acknowledged and not run twice.

Vendors retry a delivery until they get a 2xx (fal: 10 times over 2 hours [D]), so the same delivery can
arrive again after it was handled: its answer was lost, or was late. A delivery id is remembered for a
day (:data:`RETENTION_SECONDS`), far longer than any retry, and the store is bounded in size.

Two stores. :class:`DatabaseDeliveries`, the receiver's default, keeps a table of its own in the
journal's database (its SQLite file, or the PostgreSQL database a fleet shares), through its own
connection: every receiver that shares the journal shares it, the worker processes of a web app on one
machine and the receivers on several machines behind a load balancer alike. :class:`MemoryDeliveries`
keeps them in this process only (tests, or a receiver with one worker). Neither is what makes a job
complete once: a duplicate that slips through finds the job finished, or run by someone else (the
journal's owner rule), and is only acknowledged.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from ideochar._database import Connection, Locked, open_database

__all__ = [
    "MAX_DELIVERIES",
    "RETENTION_SECONDS",
    "DatabaseDeliveries",
    "DeliveryLog",
    "MemoryDeliveries",
    "SqliteDeliveries",
]

#: A delivery id is remembered this long (vendors retry for hours, not days).
RETENTION_SECONDS = 24 * 3600.0
#: At most this many ids are kept; the oldest go first.
MAX_DELIVERIES = 200_000
#: The database store prunes once per this many new deliveries (of this process).
_PRUNE_EVERY = 1000
#: How long a write waits for another session's lock (SQLite's busy timeout, PostgreSQL's lock_timeout).
BUSY_TIMEOUT_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    vendor       TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    job_id       TEXT,
    received_at  REAL NOT NULL,
    PRIMARY KEY (vendor, delivery_id)
)
"""


class DeliveryLog(Protocol):
    """Remembers deliveries by ``(vendor, delivery id)``."""

    def first(self, vendor: str, delivery_id: str, job_id: str | None = None) -> bool:
        """Record the delivery; True the first time it is seen (within the retention), False after."""
        ...

    def close(self) -> None: ...


class MemoryDeliveries:
    """Deliveries seen by this process, oldest dropped first. Thread-safe."""

    def __init__(
        self,
        *,
        max_entries: int = MAX_DELIVERIES,
        retention_seconds: float = RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.retention_seconds = retention_seconds
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, vendor: str, delivery_id: str, job_id: str | None = None) -> bool:
        now = self._clock()
        key = (vendor, delivery_id)
        with self._lock:
            self._expire(now)
            if key in self._seen:
                return False
            self._seen[key] = now
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            return True

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if now - oldest <= self.retention_seconds:
                return
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)

    def close(self) -> None:
        pass


class DatabaseDeliveries:
    """Deliveries in a table of their own (``webhook_deliveries``) in the journal's database: its SQLite
    file, or the PostgreSQL database a fleet shares (``location`` is the file or the URL).

    It keeps its own connection (:mod:`ideochar._database`, as the upload cache does), so a receiver in
    every worker process, on every machine behind a load balancer, sees what the others took: the
    table's primary key decides which of two racing receivers takes a delivery. The table is created if
    missing and never touches the journal's tables or its schema version. A store that cannot be reached
    raises: the receiver answers 5xx and the vendor delivers again later (a delivery is never
    acknowledged unseen).
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        max_entries: int = MAX_DELIVERIES,
        retention_seconds: float = RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.retention_seconds = retention_seconds
        self._clock = clock
        self._added = 0
        self._db = Locked(open_database(location, busy_timeout_seconds=BUSY_TIMEOUT_SECONDS))
        self.where = self._db.database.where
        """The file, or the database's URL without its password."""
        with self._db.transaction() as db:
            db.execute(self._db.database.ddl(_SCHEMA))
            db.execute("CREATE INDEX IF NOT EXISTS webhook_deliveries_received ON webhook_deliveries (received_at)")

    def first(self, vendor: str, delivery_id: str, job_id: str | None = None) -> bool:
        now = self._clock()
        with self._db.transaction() as db:
            db.execute(
                "DELETE FROM webhook_deliveries WHERE vendor = ? AND delivery_id = ? AND received_at < ?",
                (vendor, delivery_id, now - self.retention_seconds),
            )
            added = db.execute(
                "INSERT INTO webhook_deliveries (vendor, delivery_id, job_id, received_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (vendor, delivery_id) DO NOTHING",
                (vendor, delivery_id, job_id, now),
            ).rowcount
            if added:
                self._added += 1
                if self._added % _PRUNE_EVERY == 0:
                    self._prune(db, now)
        return bool(added)

    def _prune(self, db: Connection, now: float) -> None:
        db.execute("DELETE FROM webhook_deliveries WHERE received_at < ?", (now - self.retention_seconds,))
        # Older than the newest max_entries-th: what stays is max_entries rows (a few more on a tie).
        db.execute(
            "DELETE FROM webhook_deliveries WHERE received_at < (SELECT received_at FROM webhook_deliveries"
            " ORDER BY received_at DESC LIMIT 1 OFFSET ?)",
            (max(self.max_entries - 1, 0),),
        )

    def __len__(self) -> int:
        with self._db.lock:
            return int(self._db.database.connection.execute("SELECT COUNT(*) FROM webhook_deliveries").fetchone()[0])

    def close(self) -> None:
        with self._db.lock:
            self._db.database.close()

    def __repr__(self) -> str:
        return f"DatabaseDeliveries({self.where!r})"


SqliteDeliveries = DatabaseDeliveries
"""The former name, from when the table lived in SQLite files only."""

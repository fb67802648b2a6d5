"""Which deliveries were already taken, so a vendor's retry or a replay is acknowledged and not run twice.

Vendors retry a delivery until they get a 2xx (fal: 10 times over 2 hours [D]), so the same delivery can
arrive again after it was handled: its answer was lost, or was late. A delivery id is remembered for a
day (:data:`RETENTION_SECONDS`), far longer than any retry, and the store is bounded in size.

Two stores. :class:`SqliteDeliveries`, the receiver's default, keeps a table of its own in the journal's
file, through its own connection: every worker process of a web app on one machine shares it, as they
share the journal. :class:`MemoryDeliveries` keeps them in this process only (tests, or a receiver with
one worker). Neither is what makes a job complete once: a duplicate that slips through finds the job
finished, or run by someone else (the journal's owner rule), and is only acknowledged.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = ["MAX_DELIVERIES", "RETENTION_SECONDS", "DeliveryLog", "MemoryDeliveries", "SqliteDeliveries"]

#: A delivery id is remembered this long (vendors retry for hours, not days).
RETENTION_SECONDS = 24 * 3600.0
#: At most this many ids are kept; the oldest go first.
MAX_DELIVERIES = 200_000
#: The SQLite store prunes once per this many new deliveries.
_PRUNE_EVERY = 1000


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


class SqliteDeliveries:
    """Deliveries in a table of their own (``webhook_deliveries``) in a SQLite file, usually the journal's.

    The table is created if missing and never touches the journal's tables or its schema version.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: int = MAX_DELIVERIES,
        retention_seconds: float = RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_entries = max_entries
        self.retention_seconds = retention_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._added = 0
        self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS webhook_deliveries (vendor TEXT NOT NULL, delivery_id TEXT NOT NULL,"
            " job_id TEXT, received_at REAL NOT NULL, PRIMARY KEY (vendor, delivery_id))"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS webhook_deliveries_received ON webhook_deliveries (received_at)")

    def first(self, vendor: str, delivery_id: str, job_id: str | None = None) -> bool:
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "DELETE FROM webhook_deliveries WHERE vendor = ? AND delivery_id = ? AND received_at < ?",
                    (vendor, delivery_id, now - self.retention_seconds),
                )
                added = self._db.execute(
                    "INSERT OR IGNORE INTO webhook_deliveries (vendor, delivery_id, job_id, received_at)"
                    " VALUES (?, ?, ?, ?)",
                    (vendor, delivery_id, job_id, now),
                ).rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if added:
                self._added += 1
                if self._added % _PRUNE_EVERY == 0:
                    self._prune(now)
        return bool(added)

    def _prune(self, now: float) -> None:
        self._db.execute("DELETE FROM webhook_deliveries WHERE received_at < ?", (now - self.retention_seconds,))
        self._db.execute(
            "DELETE FROM webhook_deliveries WHERE rowid IN (SELECT rowid FROM webhook_deliveries"
            " ORDER BY received_at DESC LIMIT -1 OFFSET ?)",
            (self.max_entries,),
        )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM webhook_deliveries").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

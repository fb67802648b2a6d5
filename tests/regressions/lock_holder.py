"""Hold a journal's write lock from another process: ``python -m regressions.lock_holder LOCATION SECONDS``.

``LOCATION`` is a SQLite file or a PostgreSQL URL. SQLite: ``BEGIN EXCLUSIVE`` (in WAL mode, writers wait
and readers go on). PostgreSQL: ``LOCK TABLE ... IN EXCLUSIVE MODE`` on the journal's tables, the same
thing there (every write, ``SELECT ... FOR UPDATE`` included, waits; plain reads go on), so a write that
waits past ``lock_timeout`` fails as one past SQLite's busy timeout does. Prints ``LOCKED`` once it holds
the lock, keeps it ``SECONDS``, then commits and exits: what another ideochar process (or a backup or a
migration) holding the journal looks like.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable

#: The journal's tables (PostgreSQL locks them by name).
TABLES = "jobs, attempts, parts, outputs"


def hold_sqlite(path: str) -> Callable[[], None]:
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")

    def release() -> None:
        db.execute("COMMIT")
        db.close()

    return release


def hold_postgres(url: str) -> Callable[[], None]:
    import psycopg

    db = psycopg.connect(url, autocommit=True)
    db.execute("BEGIN")
    db.execute(f"LOCK TABLE {TABLES} IN EXCLUSIVE MODE")

    def release() -> None:
        db.execute("COMMIT")
        db.close()

    return release


def main() -> None:
    location, seconds = sys.argv[1], float(sys.argv[2])
    postgres = location.startswith(("postgresql://", "postgres://"))
    release = hold_postgres(location) if postgres else hold_sqlite(location)
    print("LOCKED", flush=True)
    time.sleep(seconds)
    release()
    print("RELEASED", flush=True)


if __name__ == "__main__":
    main()

"""The journal's tests run against both databases: these helpers look at either one from outside.

A journal location is a SQLite file (a ``Path``) or a PostgreSQL URL (a ``str``, from the ``postgres_url``
fixture). Each helper opens its own connection, as another process would.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

__all__ = ["BACKENDS", "WriteLock", "all_text", "is_postgres", "location_for", "peek", "set_schema_version"]

#: What the journal's tests are parametrized over.
BACKENDS = ["sqlite", "postgres"]

Location = Path | str


def is_postgres(location: Location) -> bool:
    return isinstance(location, str)


def location_for(request: pytest.FixtureRequest, path: Path) -> Location:
    """``path`` for the SQLite run, a fresh PostgreSQL schema for the other."""
    if request.param == "sqlite":
        return path
    url: str = request.getfixturevalue("postgres_url")
    return url


def peek(location: Location, query: str, *args: object) -> list[Any]:
    """Rows of ``query`` (``?`` placeholders), readable by column name and position."""
    if is_postgres(location):
        import psycopg

        from ideochar._database import _placeholders, _row_factory

        with psycopg.connect(str(location), row_factory=_row_factory) as conn:
            return conn.execute(_placeholders(query) if args else query, args or None).fetchall()
    db = sqlite3.connect(str(location))
    db.row_factory = sqlite3.Row
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


def set_schema_version(location: Location, version: int) -> None:
    if is_postgres(location):
        import psycopg

        with psycopg.connect(str(location), autocommit=True) as conn:
            conn.execute("UPDATE ideochar_schema SET version = %s", (version,))
        return
    db = sqlite3.connect(str(location))
    db.execute(f"PRAGMA user_version={version}")
    db.close()


def all_text(location: Location) -> bytes:
    """Everything the journal stored: the SQLite files' bytes, or every row of every table as text."""
    if not is_postgres(location):
        path = Path(location)
        return b"".join(f.read_bytes() for f in path.parent.glob(path.name + "*"))
    rows: list[str] = []
    for table in ("jobs", "attempts", "parts", "outputs"):
        rows.extend(repr(tuple(row)) for row in peek(location, f"SELECT * FROM {table}"))  # noqa: S608
    return "\n".join(rows).encode()


class WriteLock:
    """Another process's hold on the journal's tables until :meth:`release`: SQLite's ``BEGIN EXCLUSIVE``,
    PostgreSQL's ``LOCK TABLE ... IN ACCESS EXCLUSIVE MODE``."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._lock = threading.Lock()
        if is_postgres(location):
            import psycopg

            self._pg: Any = psycopg.connect(str(location), autocommit=True)
            self._pg.execute("BEGIN")
            self._pg.execute("LOCK TABLE jobs, attempts, parts, outputs IN ACCESS EXCLUSIVE MODE")
        else:
            self._sqlite = sqlite3.connect(str(location), timeout=0.1, isolation_level=None)
            self._sqlite.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if is_postgres(self.location):
            self._pg.execute("ROLLBACK")
            self._pg.close()
        else:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()

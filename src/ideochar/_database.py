"""The journal's two databases: SQLite (embedded, one file) and PostgreSQL (shared by a fleet).

The journal, the upload cache and the webhook delivery store write one dialect of SQL, SQLite's with ``?``
placeholders, and this module runs it on either database. What differs is kept here and nowhere else:

* connecting (a file created owner-only, WAL mode; or a ``postgresql://`` URL, ``lock_timeout`` as the
  busy timeout), and how a write transaction starts (``BEGIN IMMEDIATE``: SQLite's writers queue; ``BEGIN``:
  PostgreSQL locks rows, see :meth:`Database.lock_job`);
* column types: SQLite's ``REAL`` and ``INTEGER`` become ``DOUBLE PRECISION`` and ``BIGINT`` (PostgreSQL's
  ``REAL`` is 4 bytes: a Unix time in it is off by minutes), and each PostgreSQL table gets a ``rowid``
  identity column standing in for SQLite's implicit one (the journal orders by insertion with it);
* the schema version: ``PRAGMA user_version``, or a one-row table ``ideochar_schema``;
* placeholders: ``?`` becomes ``%s`` for psycopg.

Rows come back as :class:`Row` from both: readable by column name and by position, like ``sqlite3.Row``.
psycopg 3 is imported only when a PostgreSQL URL is opened (``pip install 'ideochar[postgres]'``).
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ideochar.errors import InvalidRequest

__all__ = [
    "POSTGRES_SCHEMES",
    "Connection",
    "Database",
    "PostgresDatabase",
    "Row",
    "SqliteDatabase",
    "is_postgres_url",
    "open_database",
    "shown_url",
]

#: URL schemes that name a PostgreSQL database.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

INSTALL_HINT = "pip install 'ideochar[postgres]'"


def is_postgres_url(value: object) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(value, str) and value.strip().lower().startswith(POSTGRES_SCHEMES)


def shown_url(url: str) -> str:
    """The URL without its password, for messages and listings."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the journal asks of a connection: ``sqlite3.Connection`` has it, :class:`_PgConnection` adds it."""

    def execute(self, sql: str, parameters: Sequence[Any] = ...) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor: ...


class Database:
    """One connection and the dialect's differences. Not thread-safe: its owner holds a lock around it."""

    dialect: str = "?"
    where: str = "?"
    """The file's path, or the URL without its password (for messages)."""

    @property
    def connection(self) -> Connection:
        raise NotImplementedError

    def begin(self) -> None:
        """Start a write transaction that serialises what must be (SQLite: every writer)."""
        raise NotImplementedError

    def commit(self) -> None:
        self.connection.execute("COMMIT")

    def rollback(self) -> None:
        self.connection.execute("ROLLBACK")

    def lock_job(self, job_id: str) -> None:
        """Inside a write transaction: hold the job's row until commit, so per-job numbering (attempt
        ``seq``, output ``idx``) and the owner check cannot race another writer. SQLite's ``BEGIN
        IMMEDIATE`` already holds the whole file."""

    def lock_schema(self) -> None:
        """Inside a write transaction: make workers that open the journal together migrate one at a time."""

    def schema_version(self) -> int:
        raise NotImplementedError

    def set_schema_version(self, version: int) -> None:
        raise NotImplementedError

    def ddl(self, statement: str) -> str:
        """A ``CREATE``/``ALTER`` statement written for SQLite, in this dialect."""
        return statement

    def close(self) -> None:
        raise NotImplementedError


class Row(tuple):  # type: ignore[type-arg]
    """A row readable by position and by column name (``row[0]``, ``row["id"]``), like ``sqlite3.Row``."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._names)


# -- SQLite --------------------------------------------------------------------------------------------


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path, *, busy_timeout_seconds: float, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.where = str(path)
        self._db = sqlite3.connect(
            str(path), timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")

    @property
    def connection(self) -> Connection:
        return self._db  # type: ignore[return-value]

    def begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, version: int) -> None:
        self._db.execute(f"PRAGMA user_version={int(version)}")

    def close(self) -> None:
        self._db.close()


# -- PostgreSQL ----------------------------------------------------------------------------------------

#: The advisory lock id workers take while they create or migrate the journal's tables.
_SCHEMA_LOCK = 0x1DE0C4A2
_TABLE = re.compile(r"(CREATE TABLE IF NOT EXISTS\s+\w+\s*\()", re.IGNORECASE)
_REAL = re.compile(r"\bREAL\b")
_INTEGER = re.compile(r"\bINTEGER\b")


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """SQLite's ``?`` as psycopg's ``%s`` (a literal ``%`` doubled first). The journal's SQL has no ``?``
    or ``%`` inside string literals; values always travel as parameters."""
    return sql.replace("%", "%%").replace("?", "%s")


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return None
    names = {column.name: index for index, column in enumerate(description)}
    return lambda values: Row(values, names)


class _PgConnection:
    """A psycopg connection speaking the journal's SQLite-flavoured SQL (``?`` placeholders)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        if not parameters:
            return self.raw.execute(sql)  # type: ignore[no-any-return]
        cursor: Cursor = self.raw.execute(_placeholders(sql), tuple(parameters))
        return cursor

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        cursor = self.raw.cursor()
        cursor.executemany(_placeholders(sql), [tuple(p) for p in parameters])
        return cursor  # type: ignore[no-any-return]


class PostgresDatabase(Database):
    """A PostgreSQL database through psycopg 3, in autocommit mode with explicit ``BEGIN``/``COMMIT``.

    The busy timeout becomes ``lock_timeout``: a write that waits longer than that for a row or table
    another session holds fails (and the journal fails closed), as SQLite's does past its busy timeout.
    A connection that broke (the server restarted) is opened again at the next transaction; the write
    that found it broken fails.
    """

    dialect = "postgresql"

    def __init__(self, url: str, *, busy_timeout_seconds: float) -> None:
        try:
            import psycopg
        except ImportError:
            raise InvalidRequest.for_field(
                "journal", f"a PostgreSQL journal needs psycopg 3, which is not installed: {INSTALL_HINT}"
            ) from None
        self._psycopg = psycopg
        self.url = url
        self.where = shown_url(url)
        self.busy_timeout_seconds = busy_timeout_seconds
        self._conn = self._connect()

    def _connect(self) -> _PgConnection:
        raw = self._psycopg.connect(self.url, autocommit=True, row_factory=_row_factory, connect_timeout=10)
        raw.execute(f"SET lock_timeout = {int(self.busy_timeout_seconds * 1000)}")
        return _PgConnection(raw)

    @property
    def connection(self) -> Connection:
        return self._conn

    def begin(self) -> None:
        if self._conn.raw.closed or self._conn.raw.broken:
            self._conn = self._connect()
        self._conn.execute("BEGIN")

    def rollback(self) -> None:
        if not (self._conn.raw.closed or self._conn.raw.broken):
            self._conn.execute("ROLLBACK")

    def lock_job(self, job_id: str) -> None:
        self._conn.execute("SELECT 1 FROM jobs WHERE id = ? FOR UPDATE", (job_id,))

    def lock_schema(self) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))

    def schema_version(self) -> int:
        self._conn.execute("CREATE TABLE IF NOT EXISTS ideochar_schema (version BIGINT NOT NULL)")
        row = self._conn.execute("SELECT version FROM ideochar_schema").fetchone()
        return 0 if row is None else int(row[0])

    def set_schema_version(self, version: int) -> None:
        self._conn.execute("DELETE FROM ideochar_schema")
        self._conn.execute("INSERT INTO ideochar_schema (version) VALUES (?)", (int(version),))

    def ddl(self, statement: str) -> str:
        converted = _INTEGER.sub("BIGINT", _REAL.sub("DOUBLE PRECISION", statement))
        return _TABLE.sub(r"\1 rowid BIGINT GENERATED BY DEFAULT AS IDENTITY,", converted)

    def close(self) -> None:
        self._conn.raw.close()


def open_database(
    location: str | os.PathLike[str], *, busy_timeout_seconds: float, synchronous: str = "NORMAL"
) -> Database:
    """A PostgreSQL URL, or a SQLite file (which must exist or be creatable by the caller)."""
    if is_postgres_url(location):
        return PostgresDatabase(str(location), busy_timeout_seconds=busy_timeout_seconds)
    return SqliteDatabase(Path(location), busy_timeout_seconds=busy_timeout_seconds, synchronous=synchronous)


class Locked:
    """A database and the lock its users take around it (the upload cache and the delivery store)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.lock:
            self.database.begin()
            try:
                yield self.database.connection
            except BaseException:
                self.database.rollback()
                raise
            self.database.commit()

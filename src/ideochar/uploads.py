"""The upload cache: a local image uploaded to a vendor's storage once, and reused while its URL lives.

Vendors that take images by URL (fal, Replicate) are given a local image by uploading it to their own
storage first, as their official clients do. A reference used by a thousand jobs would be uploaded a
thousand times; with this cache it is uploaded once per vendor (and account, and base URL) for as long
as the vendor keeps the file, and never used after that.

What is kept, per upload: the image's SHA-256, a *scope* (the provider, the origin it uploads to, and a
fingerprint of the key: a file one account uploaded is not assumed readable by another), the URL the
vendor gave, and when it expires (the vendor's own expiry, or the lifetime ideochar asked for). An entry
is reused only while at least ``margin`` seconds of its life remain (:data:`REUSE_MARGIN_SECONDS` by
default), so a URL handed to a vendor still lives when the vendor fetches it, even from a long queue.

Where it is kept: in its own table (``uploads``) of the journal's database (its SQLite file, or the
PostgreSQL database a fleet shares), through its own connection, so every process that shares the
journal shares the uploads; with the journal off, in this process's memory. The cache saves uploads
and decides nothing: a write that fails (a locked or read-only file, a database
that cannot be reached) is logged and the entry stays in memory; the next process uploads again.

One flight per image: in one process, the first job that misses *claims* the upload; the others wait
for it (:func:`ideochar.toolkit.reuse_upload` yields short sleeps, so both drivers wait the same way)
and then reuse its URL. A claim that fails is released at once; one whose holder vanished lapses after
:data:`CLAIM_SECONDS`.

Short-lived upload tokens (fal's CDN token) are held in memory only, never written to disk.

Example::

    cache = UploadCache("journal.sqlite3")        # or UploadCache() for memory only
    found = cache.find(scope, image.sha256)       # None: upload, then cache.store(scope, image.sha256, upload)
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ideochar._database import Database, is_postgres_url, open_database
from ideochar._secrets import Secret

__all__ = [
    "CLAIM_SECONDS",
    "REUSE_MARGIN_SECONDS",
    "Upload",
    "UploadCache",
    "UploadToken",
    "account_fingerprint",
]

logger = logging.getLogger("ideochar.uploads")

#: An upload is reused only while at least this much of its life remains: a URL given to a vendor must
#: still live when the vendor fetches it, which may be after a long queue.
REUSE_MARGIN_SECONDS = 3600.0
#: A claim to upload an image lapses after this long (its holder died or hangs): another job takes it over.
CLAIM_SECONDS = 120.0
#: How long a write may wait for the journal file's lock before the cache gives up on persisting it.
BUSY_TIMEOUT_SECONDS = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    scope       TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    url         TEXT NOT NULL,
    expires_at  REAL NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (scope, sha256)
)
"""


@dataclass(frozen=True)
class Upload:
    """Where a vendor keeps an uploaded image, and until when (a ``time.time()`` value)."""

    url: str
    expires_at: float

    def valid_for(self, seconds: float, *, now: float) -> bool:
        """True when the URL still lives ``seconds`` from ``now``."""
        return self.expires_at - now >= seconds


@dataclass(frozen=True)
class UploadToken:
    """A short-lived credential for a vendor's storage (fal's CDN token): never written to disk."""

    authorization: Secret
    """The whole ``Authorization`` header value (``Bearer <token>``)."""
    base_url: str
    """Where uploads with this token go."""
    expires_at: float


def account_fingerprint(key: Secret) -> str:
    """A short, one-way name for an account: uploads are scoped by it, and the key is never stored."""
    return hashlib.sha256(b"ideochar-upload-scope\0" + key.reveal().encode("utf-8")).hexdigest()[:16]


class UploadCache:
    """Uploaded images by scope and SHA-256 (module docstring). Thread-safe; one per client."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.url = str(path) if is_postgres_url(path) else None
        """The journal's PostgreSQL database, when it is one (then :attr:`path` is None)."""
        self.path = Path(path).expanduser() if path is not None and self.url is None else None
        self.clock = clock
        self._lock = threading.Lock()
        self._memory: dict[tuple[str, str], Upload] = {}
        self._claims: dict[tuple[str, str], float] = {}
        self._tokens: dict[str, UploadToken] = {}
        self._db: Database | None = None
        self._db_failed = False

    # -- uploads ---------------------------------------------------------------------------------------

    def find(
        self, scope: str, sha256: str, *, margin: float = REUSE_MARGIN_SECONDS, memory_only: bool = False
    ) -> Upload | None:
        """The upload of this image in this scope that lives at least ``margin`` seconds more, or None.

        Memory first; the journal's file only when memory has no live entry (another process may have
        uploaded it), unless ``memory_only`` (a job waiting for this process's own upload looks often)."""
        now = self.clock()
        key = (scope, sha256)
        with self._lock:
            found = self._memory.get(key)
        if (found is None or not found.valid_for(margin, now=now)) and not memory_only:
            found = self._read(scope, sha256)
            if found is not None:
                with self._lock:
                    self._memory[key] = found
        return found if found is not None and found.valid_for(margin, now=now) else None

    def claim(self, scope: str, sha256: str) -> bool:
        """True when the caller is to upload this image now; False while another job of this process is."""
        now = self.clock()
        with self._lock:
            held = self._claims.get((scope, sha256))
            if held is not None and now - held < CLAIM_SECONDS:
                return False
            self._claims[(scope, sha256)] = now
            return True

    def release(self, scope: str, sha256: str) -> None:
        """Give up a claim (the upload failed): the next job that misses uploads the image itself."""
        with self._lock:
            self._claims.pop((scope, sha256), None)

    def store(self, scope: str, sha256: str, upload: Upload) -> None:
        """Remember an upload (and end the claim on it)."""
        with self._lock:
            self._memory[(scope, sha256)] = upload
            self._claims.pop((scope, sha256), None)
        self._write(scope, sha256, upload)

    def forget(self, scope: str, sha256: str) -> None:
        """Drop an upload the vendor no longer serves (it expired early): it is uploaded again next time."""
        with self._lock:
            self._memory.pop((scope, sha256), None)
        self._execute("DELETE FROM uploads WHERE scope = ? AND sha256 = ?", (scope, sha256))

    # -- short-lived upload tokens (memory only) ------------------------------------------------------

    def token(self, scope: str, *, margin: float = 60.0) -> UploadToken | None:
        """The upload token held for ``scope`` that lives ``margin`` seconds more, or None."""
        with self._lock:
            held = self._tokens.get(scope)
        if held is None or held.expires_at - self.clock() < margin:
            return None
        return held

    def hold_token(self, scope: str, token: UploadToken) -> None:
        with self._lock:
            self._tokens[scope] = token

    def drop_token(self, scope: str) -> None:
        """Forget a token the vendor refused."""
        with self._lock:
            self._tokens.pop(scope, None)

    # -- the SQLite table ----------------------------------------------------------------------------

    def _connection(self) -> Database | None:
        """The cache's own connection to the journal's database, opened on first use; None in memory."""
        if (self.path is None and self.url is None) or self._db_failed:
            return None
        if self._db is None:
            try:
                if self.path is not None:
                    _private_file(self.path)
                db = open_database(self.url or self.path or "", busy_timeout_seconds=BUSY_TIMEOUT_SECONDS)
                db.connection.execute(db.ddl(_SCHEMA))
            except Exception as exc:  # an optimisation failing: memory will do
                logger.warning("the upload cache cannot use %s (%s); it keeps uploads in memory", self._where, exc)
                self._db_failed = True
                return None
            self._db = db
        return self._db

    @property
    def _where(self) -> str:
        from ideochar._database import shown_url

        return shown_url(self.url) if self.url is not None else str(self.path)

    def _read(self, scope: str, sha256: str) -> Upload | None:
        with self._lock:
            db = self._connection()
            if db is None:
                return None
            try:
                row = db.connection.execute(
                    "SELECT url, expires_at FROM uploads WHERE scope = ? AND sha256 = ?", (scope, sha256)
                ).fetchone()
            except Exception as exc:
                logger.warning("the upload cache could not read %s: %s", self._where, exc)
                return None
        return Upload(str(row[0]), float(row[1])) if row else None

    def _write(self, scope: str, sha256: str, upload: Upload) -> None:
        now = self.clock()
        self._execute(
            "INSERT INTO uploads (scope, sha256, url, expires_at, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (scope, sha256) DO UPDATE SET url = excluded.url, expires_at = excluded.expires_at,"
            " created_at = excluded.created_at",
            (scope, sha256, upload.url, upload.expires_at, now),
        )
        self._execute("DELETE FROM uploads WHERE expires_at < ?", (now,))

    def _execute(self, statement: str, values: tuple[object, ...]) -> None:
        with self._lock:
            db = self._connection()
            if db is None:
                return
            try:
                db.connection.execute(statement, values)
            except Exception as exc:  # an optimisation failing: the next process uploads again
                logger.warning("the upload cache could not write %s: %s", self._where, exc)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory)

    def __repr__(self) -> str:
        where = self._where if self.path is not None or self.url is not None else "memory"
        return f"UploadCache({where!r}, {len(self)} in memory)"


def _private_file(path: Path) -> None:
    """Create the file owner-only (and its folder) when the journal has not: URLs of a caller's images."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass

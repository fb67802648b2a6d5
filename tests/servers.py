"""Real PostgreSQL and Redis servers for the tests, started here on free loopback ports and stopped after.

``make test`` installs the server programs when they are missing (see the Makefile: Debian's
``postgresql`` and ``redis-server`` packages, as root). A developer without them gets a skip that says
what to install; in CI (``CI=true``) a missing server fails the run instead: a check that cannot run must
not pass for one that did.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user (or ``nobody``),
in a data folder that user owns. Each test that wants a database gets a fresh schema of one server
(:func:`fresh_schema`): a URL whose ``search_path`` names it, so tests never see each other's tables.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PostgresServer", "RedisServer", "fresh_schema", "missing", "postgres_server", "redis_server"]


def missing(what: str, install: str) -> None:
    """Skip (a developer's machine) or fail (CI) when a server program is not installed."""
    message = f"{what} is not installed here; `make test` installs it as root ({install})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, seconds: float, process: subprocess.Popen[Any] | None = None) -> None:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {seconds} s")


# -- PostgreSQL -----------------------------------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


@dataclass
class PostgresServer:
    port: int
    data: Path
    user: str | None
    pg_ctl: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        _as(self.user, [self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"], check=False)


def _server_user() -> str | None:
    """Who runs the server: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and there is no postgres or nobody user to run PostgreSQL as")


def _as(user: str | None, command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, user=user, capture_output=True, text=True, check=check, timeout=120)


def start_postgres(folder: Path) -> PostgresServer:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        missing("PostgreSQL (initdb, pg_ctl)", "apt-get install -y postgresql")
    assert initdb is not None and pg_ctl is not None
    user = _server_user()
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    if user is not None:
        os.chown(folder, pwd.getpwnam(user).pw_uid, -1)
    _as(user, [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    log = folder / "server.log"
    _as(user, [pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"])
    _wait_for_port(port, 30)
    return PostgresServer(port, data, user, pg_ctl)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    folder = Path(tempfile.mkdtemp(prefix="ideochar-pg-"))
    server = start_postgres(folder)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def fresh_schema(server_url: str) -> str:
    """A URL of ``server_url`` whose tables live in a new, empty schema."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{server_url}?options=-csearch_path%3D{name}"


# -- Redis ----------------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    program = shutil.which("redis-server")
    if program is None:
        missing("redis-server", "apt-get install -y redis-server")
    assert program is not None
    folder = Path(tempfile.mkdtemp(prefix="ideochar-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, 20, process)
        yield RedisServer(port, process)
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)

"""Who is running a job: the process that owns it, and whether that process is still alive.

A journaled job carries an owner (host, process id, the process's start time, and a token for the job
run) and a lease that the owner renews while it runs. Another process may resume the job only when the
owner has let it go (the run ended, however it ended), when the owner's process is gone (same host: its
pid is dead or now belongs to a younger process), or when its lease has expired and it lives elsewhere.
A live owner is never second-guessed: resuming a job that is still running (waiting for a concurrency
slot, polling a queue) would send it twice.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Heartbeat", "Owner", "process_alive"]


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, Linux), to tell a reused pid from the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


@functools.lru_cache(maxsize=1)
def _machine() -> str:
    """This machine's name, with its machine id where there is one (containers often share a hostname)."""
    host = socket.gethostname()
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return f"{host}/{Path(path).read_text().strip()[:12]}"
        except OSError:
            continue
    return host


@functools.lru_cache(maxsize=4)
def _own_start_time(pid: int) -> str | None:
    """This process's start time, read once per pid (a fork gets its own)."""
    return _start_time(pid)


@dataclass(frozen=True)
class Owner:
    """One run of one job in one process."""

    host: str
    pid: int
    started: str | None
    token: str

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(host=_machine(), pid=pid, started=_own_start_time(pid), token=uuid.uuid4().hex)

    def describe(self) -> str:
        return f"process {self.pid} on {self.host.split('/')[0]}"


def process_alive(pid: int, started: str | None) -> bool:
    """True when ``pid`` runs on this machine and is the process that ``started`` describes."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    except OSError:
        return False
    return started is None or _start_time(pid) in (None, started)


class Heartbeat:
    """A daemon thread that renews the leases of the jobs this process runs, every ``every`` seconds.

    It runs only while there is something to renew, and calls ``renew()`` outside any event loop, so a
    journal lock held elsewhere delays a renewal, never a job.
    """

    def __init__(self, renew: Callable[[], int], every: float) -> None:
        self._renew = renew
        self._every = every
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def ensure_running(self) -> None:
        with self._lock:
            if self._stopped or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="ideochar-journal-lease", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._wake.set()

    def _run(self) -> None:
        import logging

        while not self._wake.wait(self._every):
            try:
                if self._renew() == 0:
                    with self._lock:
                        self._thread = None
                    return
            except Exception:  # a busy journal now is no reason to stop renewing
                logging.getLogger("ideochar").warning("could not renew the journal's job leases", exc_info=True)
            time.sleep(0)

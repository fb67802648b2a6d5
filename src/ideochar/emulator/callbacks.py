"""Callbacks the emulator sends when a request carried a webhook URL, as fal and Replicate do.

A vendor module builds the body and says how to sign it (:class:`Callback`); this module sends it:
signed afresh on every try, retried until the receiver answers 2xx (:data:`RETRY_DELAYS_SECONDS`, a
compressed version of the vendors' hours [I]), and faulted when the fault profile says so at route
``callback``:

=========================  ======================================================================
``callback_lost``          never delivered, however often retried: the job must be finished by polling
``callback_duplicate``     delivered twice (the same delivery, each copy retried on its own)
``callback_late``          delivered after ``seconds`` (default :data:`LATE_SECONDS`)
``callback_out_of_order``  held back until the vendor's next callback has gone (or ``seconds`` pass)
``callback_bad_signature`` a copy with a broken signature goes first, then the genuine one
``callback_stale``         a copy signed ten minutes ago goes first, then the genuine one
=========================  ======================================================================

A ``latency`` rule at route ``callback`` delays a delivery too. Where callbacks go: to loopback
addresses only (``127.0.0.0/8``, ``::1``, ``localhost``), on purpose — an emulator must not become a way
to make requests elsewhere — unless a test gives a transport (:attr:`CallbackSender.transport`: an
in-process receiver). Every try is recorded in :attr:`CallbackSender.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from ideochar.emulator.faults import CALLBACK_KINDS
from ideochar.emulator.kit import Callback, Signer

if TYPE_CHECKING:
    from ideochar.emulator.faults import Faults
    from ideochar.emulator.kit import Fault

__all__ = [
    "CALLBACK_ROUTE",
    "LATE_SECONDS",
    "RETRY_DELAYS_SECONDS",
    "Callback",
    "CallbackSender",
    "CallbackTry",
]

logger = logging.getLogger("ideochar.emulator")

#: The route name callback faults are decided at.
CALLBACK_ROUTE = "callback"
#: Waits between tries of one delivery [I: fal retries 10 times over 2 hours, Replicate "retries"; the
#: emulator keeps the shape and shrinks the time so a test sees retries].
RETRY_DELAYS_SECONDS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
#: How long a receiver has to answer one try [T: fal's 15 s].
TIMEOUT_SECONDS = 15.0
#: A ``callback_late`` rule without ``seconds`` delays this long.
LATE_SECONDS = 2.0
#: A ``callback_out_of_order`` delivery waits at most this long for the next one.
HOLD_SECONDS = 2.0
#: How far back a ``callback_stale`` copy is signed (outside the usual five minutes).
STALE_SECONDS = 600.0


@dataclass(frozen=True)
class CallbackTry:
    """One try of one delivery, as the log keeps it."""

    vendor: str
    job_id: str
    event: str
    copy: str
    """``genuine``, ``duplicate``, ``bad_signature`` or ``stale``."""
    attempt: int
    status: int | None
    error: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class CallbackSender:
    """The emulator's outgoing callbacks (``app.state.emulator.callbacks``)."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self.retry_delays_seconds: tuple[float, ...] = RETRY_DELAYS_SECONDS
        self.timeout_seconds = TIMEOUT_SECONDS
        self.transport: httpx.AsyncBaseTransport | None = None
        """Send every callback through this instead of a socket (a test's in-process receiver)."""
        self.log: list[CallbackTry] = []
        self.lost: list[Callback] = []
        """Deliveries a ``callback_lost`` fault swallowed."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, list[asyncio.Event]] = {}
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    # -- sending ----------------------------------------------------------------------------------------

    def send(self, callback: Callback) -> None:
        """Deliver ``callback`` in the background (call it on the serving event loop)."""
        latency, fault = self._faults.decide(callback.vendor, CALLBACK_ROUTE, CALLBACK_KINDS | {"latency"})
        if fault is not None and fault.kind == "callback_lost":
            self.lost.append(callback)
            return
        self._spawn(self._deliver(callback, fault, latency))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, callback: Callback, fault: Fault | None, latency: float) -> None:
        kind = fault.kind if fault is not None else None
        if latency > 0:
            await asyncio.sleep(latency)
        if kind == "callback_late":
            await asyncio.sleep(fault.seconds if fault is not None and fault.seconds is not None else LATE_SECONDS)
        if kind == "callback_out_of_order":
            await self._hold(callback.vendor, fault.seconds if fault is not None and fault.seconds else HOLD_SECONDS)
        if kind == "callback_bad_signature":
            await self._try_once(callback, "bad_signature", _broken(callback.sign))
        if kind == "callback_stale":
            await self._try_once(callback, "stale", _stale(callback.sign))
        if kind == "callback_duplicate":
            self._spawn(self._retried(callback, "duplicate"))
        await self._retried(callback, "genuine")

    async def _hold(self, vendor: str, seconds: float) -> None:
        released = asyncio.Event()
        self._held.setdefault(vendor, []).append(released)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(released.wait(), seconds)

    def _release_held(self, vendor: str) -> None:
        for released in self._held.pop(vendor, []):
            released.set()

    async def _retried(self, callback: Callback, copy: str) -> None:
        if self.transport is None and not _loopback(callback.url):
            self.log.append(CallbackTry(callback.vendor, callback.job_id, callback.event, copy, 1, None, _REFUSED))
            logger.warning("the %s callback for %s was not sent: %s", callback.vendor, callback.job_id, _REFUSED)
            return
        for attempt, delay in enumerate((0.0, *self.retry_delays_seconds), start=1):
            if delay:
                await asyncio.sleep(delay)
            if await self._try(callback, copy, callback.sign, attempt):
                return
        logger.info("gave up delivering the %s callback for %s after %d tries", callback.vendor, callback.job_id,
                    len(self.retry_delays_seconds) + 1)  # fmt: skip

    async def _try_once(self, callback: Callback, copy: str, sign: Signer) -> None:
        await self._try(callback, copy, sign, 1)

    async def _try(self, callback: Callback, copy: str, sign: Signer, attempt: int) -> bool:
        headers = {
            "content-type": "application/json",
            "user-agent": "ideochar-emulator",
            **sign(callback.body, time.time()),
        }
        status: int | None = None
        error: str | None = None
        if self.transport is None and not _loopback(callback.url):
            error = _REFUSED
        else:
            try:
                response = await self._client().post(callback.url, content=callback.body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
        self.log.append(CallbackTry(callback.vendor, callback.job_id, callback.event, copy, attempt, status, error))
        if copy == "genuine" and attempt == 1:  # it has gone: deliveries held back for the next one follow it
            self._release_held(callback.vendor)
        return status is not None and 200 <= status < 300

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            transport = self.transport or httpx.AsyncHTTPTransport(retries=0)
            client = httpx.AsyncClient(transport=transport, timeout=self.timeout_seconds, trust_env=False)
            self._clients[loop] = client
        return client

    # -- for tests and reset ------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Deliveries still being tried (or waiting: late, held, between retries)."""
        return len(self._tasks)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until no delivery is pending (True), or ``timeout`` passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def tries(self, vendor: str | None = None) -> list[CallbackTry]:
        return [t for t in self.log if vendor is None or t.vendor == vendor]

    async def aclose(self) -> None:
        """Stop every pending delivery and close this loop's connections (the server is stopping)."""
        self.reset()
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def reset(self) -> None:
        """Forget the log and stop every pending delivery (on the serving loop)."""
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._held.clear()
        self.log.clear()
        self.lost.clear()


#: Why a callback to another machine is not sent (the log's ``error``).
_REFUSED = "not sent: the emulator calls back to loopback addresses only"


def _loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _broken(sign: Signer) -> Signer:
    """The genuine signature with its bytes flipped (still well formed: only the key check can tell)."""

    def broken(body: bytes, at: float) -> Mapping[str, str]:
        headers = dict(sign(body, at))
        for name, value in headers.items():
            if "signature" in name.lower():
                headers[name] = _flip(value)
        return headers

    return broken


def _flip(value: str) -> str:
    """Change one character of each signature in a header, keeping its alphabet (hex or base64)."""
    entries = []
    for entry in value.split(" "):
        prefix, _, signature = entry.rpartition(",")
        if signature:
            swapped = "B" if signature[0] == "A" else "A"
            if all(c in "0123456789abcdef" for c in signature):
                swapped = "1" if signature[0] == "0" else "0"
            signature = swapped + signature[1:]
        entries.append(f"{prefix},{signature}" if prefix else signature)
    return " ".join(entries)


def _stale(sign: Signer) -> Signer:
    def stale(body: bytes, at: float) -> Mapping[str, str]:
        return sign(body, at - STALE_SECONDS)

    return stale

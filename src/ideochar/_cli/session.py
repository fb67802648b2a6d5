"""One command's run: the emulator it needs, the client it drives, the event loop it runs on.

The command line drives :class:`~ideochar.client.AsyncClient` on an event loop of its own (``anyio.run``),
so the calls of a fanned-out job run together, as they do for a Python caller of the async client; the
blocking :class:`~ideochar.client.Client` would send them one after another. Events still arrive in order
on the loop's thread, where the progress display draws them.

Three things a person needs from a run that a library call does not do:

* ``--emulator`` starts the emulator on a loopback port for the length of the command (and says which
  extra to install when its dependencies are missing, instead of failing on an import);
* ``--debug`` logs each HTTP exchange: method, URL without its query, status and time to the answer's
  headers (never a header, a body or a key);
* SIGTERM ends a run the way Ctrl-C does: the job is released in the journal and the command says what
  a vendor had admitted and how to resume it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click
import httpx

from ideochar._secrets import redact
from ideochar.emulator import INSTALL_HINT, missing_dependencies

if TYPE_CHECKING:
    from ideochar.client import AsyncClient

__all__ = [
    "EMULATOR_EXTRA",
    "Session",
    "Terminated",
    "ThreadedTransport",
    "emulator_missing",
    "install_http_log",
    "require_emulator",
    "sigterm_as_interrupt",
]

T = TypeVar("T")

http_logger = logging.getLogger("ideochar.http")

#: What to install for the emulator, as the user types it.
EMULATOR_EXTRA = INSTALL_HINT
_STARTED = "ideochar.debug.started"
#: Headers that described the bytes as they came over the wire, not as they are handed on.
_RECOMPUTED = {"content-encoding", "content-length", "transfer-encoding"}
_LOGGED = "ideochar.debug.logged"


# -- the emulator's extra --------------------------------------------------------------------------------


def emulator_missing() -> list[str]:
    """The emulator's dependencies that are not installed (empty when it can run)."""
    return missing_dependencies()


def require_emulator(flag: str) -> None:
    """Stop with the install command when the emulator cannot run, before anything else happens.

    A plain ``pip install ideochar`` leaves the emulator's web server out; without this check the
    first import of it would surface as an internal error naming a module the user never chose.
    """
    missing = emulator_missing()
    if missing:
        raise click.UsageError(
            f"{flag} needs the emulator, which is not installed (missing: {', '.join(missing)}). "
            f"Install it with: {EMULATOR_EXTRA}"
        )


# -- a caller's blocking HTTP client, driven from the event loop ---------------------------------------------


class ThreadedTransport(httpx.AsyncBaseTransport):
    """Sends through a blocking ``httpx.Client`` on worker threads, so a caller (a test's fake vendors, a
    corporate client with its own TLS) can hand the command line the client it already has.

    Each answer is read whole on the worker thread and handed on decoded (without its
    ``content-encoding``, which no longer applies). The caller's client is never closed here: it is theirs.
    """

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import anyio.to_thread

        body = await request.aread()
        blocking = httpx.Request(
            request.method, request.url, headers=request.headers, content=body, extensions=request.extensions
        )

        def send() -> httpx.Response:
            got = self._client.send(blocking)  # read whole, decoded
            headers = [(k, v) for k, v in got.headers.multi_items() if k.lower() not in _RECOMPUTED]
            return httpx.Response(got.status_code, headers=headers, content=got.content, request=request)

        return await anyio.to_thread.run_sync(send)


# -- --debug: each HTTP exchange ------------------------------------------------------------------------------


def _shown(url: httpx.URL) -> str:
    """The URL as a log may show it: no user, password, query or fragment (signatures and keys live there)."""
    return redact(str(url.copy_with(query=None, fragment=None, userinfo=b"")))


def install_http_log(client: httpx.AsyncClient, label: str) -> None:
    """Log each exchange of ``client`` at DEBUG on ``ideochar.http``: method, URL, status, seconds.

    An exchange another logged client carries out for this one (a download from a vendor's own origin goes
    through the vendor client) is logged once, by the client that sent it.
    """

    async def on_request(request: httpx.Request) -> None:
        request.extensions.setdefault(_STARTED, time.monotonic())

    async def on_response(response: httpx.Response) -> None:
        request = response.request
        if request.extensions.get(_LOGGED):
            return
        request.extensions[_LOGGED] = True
        started = request.extensions.get(_STARTED)
        took = f" in {time.monotonic() - started:.3f} s" if isinstance(started, float) else ""
        http_logger.debug("%s %s %s -> %s%s", label, request.method, _shown(request.url), response.status_code, took)

    hooks = client.event_hooks
    client.event_hooks = {
        "request": [*hooks.get("request", []), on_request],
        "response": [on_response, *hooks.get("response", [])],
    }


# -- SIGTERM --------------------------------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """The run was stopped by SIGTERM (a service manager, ``kill``): handled as Ctrl-C is, said apart."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[bool]]:
    """While inside, SIGTERM interrupts the run as SIGINT does; the flag in the list says it came.

    The event loop turns SIGINT into a cancellation of the running job (its journal entry released,
    shielded), so SIGTERM is passed on as SIGINT rather than raised at an arbitrary point of the loop.
    """
    received = [False]
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield received
        return

    def on_term(signum: int, frame: Any) -> None:
        received[0] = True
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- the session ----------------------------------------------------------------------------------------------


@dataclass
class Session:
    """The emulator (if ``--emulator``), the client's arguments, and the loop that drives it.

    ``client_kwargs`` are :class:`~ideochar.client.AsyncClient`'s arguments; ``http`` the caller's own
    client, if any (blocking ones are driven through :class:`ThreadedTransport`).
    """

    client_kwargs: dict[str, Any]
    http: httpx.Client | httpx.AsyncClient | None = None
    debug: bool = False
    start_emulator: bool = False
    plugin_manager: Any = None
    emulator_url: str | None = None
    """The root URL of the emulator this run uses (started here, or given with ``--emulator-url``)."""
    _server: Any = field(default=None, repr=False)

    def __enter__(self) -> Session:
        if self.start_emulator:
            require_emulator("--emulator")
            from ideochar.emulator.server import BackgroundServer

            self._server = BackgroundServer(self.plugin_manager).start()
            self.emulator_url = self._server.url
            self.client_kwargs["emulator"] = self.emulator_url
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def emulator_started_here(self) -> bool:
        """True when the emulator lives only as long as this command (its jobs die with it)."""
        return self.start_emulator

    def client(self) -> AsyncClient:
        """The client, built now (configuration read, nothing sent); driven by :meth:`run`."""
        from ideochar.client import AsyncClient

        return AsyncClient(http=self._async_http(), **self.client_kwargs)

    def _async_http(self) -> httpx.AsyncClient | None:
        if self.http is None or isinstance(self.http, httpx.AsyncClient):
            return self.http
        return httpx.AsyncClient(transport=ThreadedTransport(self.http), follow_redirects=False)

    def run(self, client: AsyncClient, work: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Drive ``work(client)`` on an event loop of its own, closing the client however it ends."""
        import anyio

        async def main() -> T:
            try:
                if self.debug:
                    install_http_log(client.http, "vendor")
                    install_http_log(client.fetch_http, "fetch")
                return await work(client)
            finally:
                with anyio.CancelScope(shield=True):
                    await client.aclose()
                    if self.http is not None and client.http is not self.http:
                        await client.http.aclose()  # the wrapper around the caller's blocking client

        return anyio.run(main)

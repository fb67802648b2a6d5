"""The emulator on a real loopback socket: in a background thread (tests, ``--emulator``) or in the
foreground (``ideochar emulator serve``).

Example::

    with BackgroundServer(model_seconds=0.5) as server:
        print(server.url)                        # http://127.0.0.1:54321
        client = Client(["fal"], emulator=server.url)
        ...
        server.state.ledger.count("fal")

The socket is bound before uvicorn starts (so port 0 is resolved at once), uvicorn runs the h11 protocol
(so the emulator can cut a connection for a fault), and access logs are off in the background (a load
test makes thousands of requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from typing_extensions import Self

if TYPE_CHECKING:
    import pluggy
    from starlette.applications import Starlette

    from ideochar.emulator.app import EmulatorState
    from ideochar.emulator.faults import FaultProfile

__all__ = ["DEFAULT_SERVE_MODEL_SECONDS", "BackgroundServer", "serve"]

#: Model time per job for ``ideochar emulator serve`` (a person watching sees a job queue and run).
DEFAULT_SERVE_MODEL_SECONDS = 2.0
#: How long a stopping server waits for open answers (status streams, hangs) before cutting them.
GRACEFUL_SHUTDOWN_SECONDS = 1
START_TIMEOUT_SECONDS = 15.0
#: Idle keep-alive connections are kept this long (nginx's default, as vendors' edges do). uvicorn's own
#: 5 s makes a busy client race the server's close and see "Server disconnected" on a reused connection.
KEEP_ALIVE_SECONDS = 75


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when their proto says TCP,
    # and with proto 0 every keep-alive request waited ~40 ms on delayed ACKs (docs/benchmarks.md).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _uvicorn_server(app: Starlette, *, access_log: bool, log_level: str) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app,
        http="h11",
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=2048,
    )
    return uvicorn.Server(config)


class BackgroundServer:
    """The emulator on ``127.0.0.1`` (a free port by default), in a daemon thread with its own event loop.

    ``start()`` returns once the server accepts connections; ``stop()`` (or leaving the ``with`` block)
    shuts it down. ``state`` is the emulator's state (ledger, faults...), shared with this thread.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        profile: FaultProfile | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        model_seconds: float = 0.0,
        app: Starlette | None = None,
        access_log: bool = False,
    ) -> None:
        if app is None:
            from ideochar.emulator.app import create_app

            app = create_app(pm, profile=profile, model_seconds=model_seconds)
        self.app = app
        self.host = host
        self.port = port
        self._access_log = access_log
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def state(self) -> EmulatorState:
        state: EmulatorState = self.app.state.emulator
        return state

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:54321`` (vendors are under ``/{name}``)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return _url(self.host, self.port)

    def base_urls(self) -> dict[str, dict[str, str]]:
        """Each vendor's base URLs on this server."""
        return self.state.base_urls(self.url)

    def start(self) -> Self:
        if self._thread is not None:
            return self
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = _uvicorn_server(self.app, access_log=self._access_log, log_level="warning")
        self.state.attach_server(self._server)
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"ideochar-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start: {self._error or 'timed out'}")
            time.sleep(0.005)
        return self

    def _run(self, sock: socket.socket) -> None:
        try:
            self._server.run(sockets=[sock])
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            sock.close()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self.state.begin_stop()
        server.should_exit = True
        if thread is not None:
            thread.join(timeout=GRACEFUL_SHUTDOWN_SECONDS + 5)
        self.state.detach_server(server)
        self.state.close()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = _url(self.host, self.port) if self._server is not None else "not started"
        return f"BackgroundServer({where})"


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    profile: FaultProfile | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    model_seconds: float = DEFAULT_SERVE_MODEL_SECONDS,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
    faults: FaultProfile | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve every emulated vendor on one port in the foreground until Ctrl-C.

    Once the port is bound it prints the root URL and one line per vendor with its base URL(s), which
    is all a client needs (``--port 0`` picks a free port; the line says which). ``faults`` is an alias
    of ``profile`` (a fault profile file, see :mod:`ideochar.emulator.faults`).
    """
    from ideochar.emulator.app import create_app

    out = out or sys.stdout
    app = create_app(plugin_manager, profile=profile if profile is not None else faults, model_seconds=model_seconds)
    state: EmulatorState = app.state.emulator
    sock = _bind(host, port)
    url = _url(host, sock.getsockname()[1])
    server = _uvicorn_server(app, access_log=True, log_level="info")
    state.attach_server(server)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            _announce(out, url, state, model_seconds)
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        state.close()
        with contextlib.suppress(OSError):
            sock.close()


def _announce(out: TextIO, url: str, state: EmulatorState, model_seconds: float) -> None:
    print(f"ideochar emulator on {url} (emulated images, not model outputs; model time {model_seconds:g} s)", file=out)
    for name, urls in sorted(state.base_urls(url).items()):
        named = ", ".join(f"{key}={value}" for key, value in sorted(urls.items()))
        print(f"  {name}: {named}", file=out)
    for name, reason in sorted(state.broken.items()):
        print(f"  {name}: not available ({reason})", file=out)
    print(f"  admin: {url}/_emulator/health  ledger: {url}/_emulator/ledger  faults: {url}/_emulator/faults", file=out)
    print("Press Ctrl-C to stop.", file=out, flush=True)

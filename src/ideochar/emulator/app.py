"""The emulator's ASGI app: every emulated vendor under its own prefix, plus admin routes and files.

Layout (``create_app``)::

    /{vendor}/...                 the vendor's own paths (routes from its plugin), e.g. /fal/fal-ai/ideogram/character
    /_emulator/health             GET: vendors, their base URLs, model time
    /_emulator/ledger             GET: admitted (billable) jobs per vendor (?vendor=fal)
    /_emulator/uploads            GET: files uploaded to each vendor's storage (?vendor=fal), with their digests
    /_emulator/faults             GET the profile; POST/PUT a new one (JSON or TOML); DELETE clears it
    /_emulator/config             POST {"model_seconds": 2.0}
    /_emulator/reset              POST: forget jobs, files, ledger and faults
    /_emulator/jobs/{vendor}/{id} GET: a queued job's timeline (wall-clock submitted/started/finished_at)
    /_emulator/files/{id}         GET an output file (the stand-in for a vendor's CDN)
    /_emulator/files/expire       POST {"vendor": "fal"} or {} (all): make result URLs go stale

From Python, ``app.state.emulator`` is the :class:`EmulatorState` (ledger, profile, reset...).

Connection-level faults are done here, for every vendor alike: a route raises
:class:`~ideochar.emulator.kit.ConnectionDropped` (or chose a ``drop_after_admit`` fault and raised
anything) and the middleware cuts the connection. On a socket served by :mod:`ideochar.emulator.server`
the TCP connection is closed without an answer; in-process the client's ``httpx.ASGITransport`` raises
the ``httpx.RemoteProtocolError`` a real hang-up produces. Faults that mangle an answer (truncated body,
broken JSON, wrong content type) are applied to the answer on its way out, whatever the vendor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import http
import json
import logging
import math
import os
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import pluggy

from ideochar.emulator.callbacks import CallbackSender
from ideochar.emulator.faults import JOB_KINDS, REQUEST_KINDS, FaultProfile, Faults, load_profile
from ideochar.emulator.files import FILES_PATH, FileStore
from ideochar.emulator.kit import Callback, ConnectionDropped, ErrorShaper, Fault, LedgerEntry, StoredFile
from ideochar.emulator.ledger import Ledger, Uploads
from ideochar.emulator.registry import EmulatedVendor, collect_emulated
from ideochar.emulator.render import Recipe, RenderCache, is_cheap, prepare, render_recipe

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["EmulatorState", "VendorKit", "create_app"]

logger = logging.getLogger("ideochar.emulator")
T = TypeVar("T")

#: Worker threads for rendering; more would only fight over the GIL and the cores.
RENDER_WORKERS = max(2, min(4, os.cpu_count() or 2))
#: After cutting a connection, how long to wait for the server to notice before returning.
DROP_SETTLE_SECONDS = 2.0


# -- per-request context: what the middleware must do to the answer ---------------------------------------


@dataclass
class _Exchange:
    transform: Fault | None = None
    drop_chosen: bool = False
    transport: Any = None
    """The socket's transport, found while the connection was still open (before a long hold)."""


_CURRENT: ContextVar[_Exchange | None] = ContextVar("ideochar_emulator_exchange", default=None)


# -- state -------------------------------------------------------------------------------------------------


class EmulatorState:
    """Everything one emulator holds: vendors, ledger, faults, files, model time. ``app.state.emulator``."""

    def __init__(
        self,
        vendors: Mapping[str, EmulatedVendor],
        *,
        profile: FaultProfile | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        model_seconds: float = 0.0,
    ) -> None:
        self.vendors = dict(vendors)
        self.model_seconds = float(model_seconds)
        self.ledger = Ledger()
        self.uploads = Uploads()
        """Every file a client uploaded to a vendor's storage (fal's CDN, Replicate's files)."""
        self.faults = Faults(load_profile(_as_source(profile)))
        self.callbacks = CallbackSender(self.faults)
        """Callbacks sent to requests' webhook URLs (their log; a transport for in-process receivers)."""
        self.renders = RenderCache()
        self.files = FileStore(self.renders)
        self.kits: dict[str, VendorKit] = {}
        self.in_flight: dict[str, dict[str, int]] = {}
        """Per vendor that enforces a concurrency limit: images in flight ``now``, their ``peak`` (the
        high-water mark since the last reset) and requests ``refused`` for being over the limit."""
        self.broken: dict[str, str] = {}
        """Vendors whose routes could not be built, with why."""
        self.boards: dict[str, list[Any]] = {}
        """Each vendor's job boards (:class:`~ideochar.emulator.jobs.JobBoard`), for ``/_emulator/jobs``."""
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._reset_callbacks: list[Callable[[], None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._servers: list[Any] = []
        self._stop_events: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
            weakref.WeakKeyDictionary()
        )
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- for tests and the admin routes

    def set_profile(self, profile: FaultProfile | Mapping[str, Any] | str | os.PathLike[str] | None) -> FaultProfile:
        """Replace the fault profile (counters start again). ``None`` clears it."""
        loaded = load_profile(_as_source(profile))
        self.faults.set(loaded)
        return loaded

    @property
    def profile(self) -> FaultProfile:
        return self.faults.profile

    def set_model_seconds(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("model_seconds must be a finite number >= 0")
        self.model_seconds = float(seconds)

    def reset(self) -> None:
        """Forget every job, file, ledger entry and fault (vendors' reset callbacks run on the server's loop)."""
        self._on_loop(self._reset_now)

    def _reset_now(self) -> None:
        self.in_flight.clear()
        for callback in list(self._reset_callbacks):
            try:
                callback()
            except Exception:  # one vendor's bug must not keep the others from resetting
                logger.exception("an emulator reset callback failed")
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        self.callbacks.reset()
        self.ledger.clear()
        self.uploads.clear()
        self.files.clear()
        self.renders.clear()
        self.faults.set(FaultProfile())

    def expire_files(self, vendor: str | None = None) -> int:
        """Make output files (of one vendor, or all) answer 404, as stale result URLs do."""
        return self.files.expire(vendor=vendor)

    def ledger_json(self, vendor: str | None = None) -> dict[str, Any]:
        return self.ledger.to_json([vendor] if vendor else sorted(self.vendors))

    def base_urls(self, root: str) -> dict[str, dict[str, str]]:
        """Each vendor's base URLs under ``root`` (what a client is configured with)."""
        root = root.rstrip("/")
        return {name: {k: root + p for k, p in vendor.base_urls.items()} for name, vendor in self.vendors.items()}

    # -- server plumbing

    def attach_server(self, server: Any) -> None:
        """Let the emulator cut connections of this uvicorn server (done by :mod:`ideochar.emulator.server`)."""
        self._servers.append(server)

    def detach_server(self, server: Any) -> None:
        with contextlib.suppress(ValueError):
            self._servers.remove(server)

    def begin_stop(self) -> None:
        """Wake long waits (status streams, hangs, holds) so a server can stop at once. Thread-safe."""
        self.stopping = True
        loop = self.loop
        if loop is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._set_stop_events)

    def _set_stop_events(self) -> None:
        for event in list(self._stop_events.values()):
            event.set()

    def stop_event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        event = self._stop_events.get(loop)
        if event is None:
            event = self._stop_events[loop] = asyncio.Event()
            if self.stopping:
                event.set()
        return event

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """Worker threads for CPU work, started on first use (and again after :meth:`close`)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                RENDER_WORKERS, thread_name_prefix="ideochar-emulator"
            )
        return self._executor

    def close(self) -> None:
        """Stop the worker threads (a server calls this when it stops; the app stays usable)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self.stopping = False
        self._stop_events.clear()

    def _on_loop(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the serving loop (timers are not thread-safe), or here if there is none."""
        loop = self.loop
        if loop is None or not loop.is_running() or loop.is_closed():
            return function()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return function()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(function())
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return done.result(timeout=10)

    def _transport_of(self, scope: Scope) -> Any:
        for server in self._servers:
            state = getattr(server, "server_state", None)
            for connection in list(getattr(state, "connections", ())):
                if getattr(connection, "scope", None) is scope:
                    return getattr(connection, "transport", None)
        return None

    async def drop(self, scope: Scope, receive: Receive, *, started: bool) -> None:
        """Cut the connection of the request in ``scope`` without (the rest of) an answer."""
        exchange = _CURRENT.get()
        transport = (exchange.transport if exchange is not None else None) or self._transport_of(scope)
        if transport is None:
            import httpx

            if started:
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        transport.close()

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        with contextlib.suppress(Exception):
            await asyncio.wait_for(disconnected(), DROP_SETTLE_SECONDS)


def _as_source(profile: Any) -> Any:
    return os.fspath(profile) if isinstance(profile, os.PathLike) else profile


# -- the kit each vendor's routes get ----------------------------------------------------------------------


class VendorKit:
    """The :class:`~ideochar.emulator.kit.EmulatorKit` of one vendor."""

    def __init__(self, state: EmulatorState, vendor: EmulatedVendor) -> None:
        self.state = state
        self.vendor = vendor.name
        self._paths = dict(vendor.base_urls)
        self._shaper: ErrorShaper | None = None
        self._model_seconds: float | None = None

    # -- the original protocol

    @property
    def model_seconds(self) -> float:
        return self.state.model_seconds if self._model_seconds is None else self._model_seconds

    @model_seconds.setter
    def model_seconds(self, value: float) -> None:
        self._model_seconds = value

    def base_url(self, request: Request, name: str = "") -> str:
        return _root(request) + self._paths.get(name, f"/{self.vendor}")

    def add_in_flight(self, delta: int) -> None:
        """A queued vendor's job board: one more job in flight (or one fewer), for the high-water mark."""
        now = self.state.in_flight.get(self.vendor, {}).get("now", 0)
        self.note_in_flight(now + delta)

    def note_in_flight(self, images: int, *, refused: bool = False) -> None:
        gauge = self.state.in_flight.setdefault(self.vendor, {"now": 0, "peak": 0, "refused": 0})
        gauge["now"] = images
        gauge["peak"] = max(gauge["peak"], images)
        gauge["refused"] += 1 if refused else 0

    def admit(self, job_id: str, *, operation: str, images: int, cost_usd: Decimal, **detail: Any) -> None:
        self.state.ledger.add(
            LedgerEntry(self.vendor, job_id, operation, images, Decimal(cost_usd), time.time(), detail)
        )

    def render(
        self, reference: bytes, prompt: str, *, width: int, height: int, seed: int, fmt: Literal["png", "jpeg"] = "png",
        base: bytes | None = None, mask: bytes | None = None,
    ) -> bytes:  # fmt: skip
        recipe = Recipe(reference, prompt, width, height, seed, fmt, base, mask, self.vendor)
        return render_recipe(recipe, self.state.renders)

    def store(self, data: bytes, content_type: str, request: Request) -> str:
        return self.file_url(request, self.state.files.add_bytes(self.vendor, data, content_type))

    async def fault(self, route: str, request: Request) -> Response | None:
        return (await self.apply_faults(route, request))[1]

    def choose_fault(self, route: str) -> Fault | None:
        fault = self.state.faults.decide(self.vendor, route, JOB_KINDS)[1]
        exchange = _CURRENT.get()
        if fault is not None and fault.kind == "drop_after_admit" and exchange is not None:
            exchange.drop_chosen = True
        return fault

    # -- added

    def void(self, job_id: str, reason: str) -> None:
        self.state.ledger.void(self.vendor, job_id, reason)

    def render_file(
        self, reference: bytes, prompt: str, *, width: int, height: int, seed: int, fmt: Literal["png", "jpeg"] = "png",
        base: bytes | None = None, mask: bytes | None = None,
    ) -> StoredFile:  # fmt: skip
        recipe = Recipe(reference, prompt, width, height, seed, fmt, base, mask, self.vendor)
        return self.state.files.add_recipe(self.vendor, recipe, render_recipe(recipe, self.state.renders))

    async def arender_file(
        self, reference: bytes, prompt: str, *, width: int, height: int, seed: int, fmt: Literal["png", "jpeg"] = "png",
        base: bytes | None = None, mask: bytes | None = None,
    ) -> StoredFile:  # fmt: skip
        recipe = Recipe(reference, prompt, width, height, seed, fmt, base, mask, self.vendor)
        if not is_cheap(recipe, self.state.renders):
            await self.run_blocking(prepare, recipe, self.state.renders)
        return self.state.files.add_recipe(self.vendor, recipe, render_recipe(recipe, self.state.renders))

    async def prepare_render(
        self, reference: bytes, prompt: str, *, width: int, height: int, fmt: Literal["png", "jpeg"] = "png",
        base: bytes | None = None, mask: bytes | None = None,
    ) -> None:  # fmt: skip
        recipe = Recipe(reference, prompt, width, height, 0, fmt, base, mask, self.vendor)
        if not is_cheap(recipe, self.state.renders):
            await self.run_blocking(prepare, recipe, self.state.renders)

    def file_url(self, request: Request, file: StoredFile) -> str:
        return f"{_root(request)}{FILES_PATH}/{file.id}"

    def file_bytes(self, file: StoredFile) -> bytes:
        data = self.state.files.read(file.id)
        if data is None:
            raise KeyError(f"file {file.id} is gone")
        return data

    def lookup(self, url: str) -> bytes | None:
        path = urlsplit(url).path
        prefix = f"{FILES_PATH}/"
        if prefix not in path:
            return None
        return self.state.files.read(path.rsplit(prefix, 1)[1])

    async def run_blocking(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.state.executor, functools.partial(function, *args))

    def on_reset(self, callback: Callable[[], None]) -> None:
        self.state._reset_callbacks.append(callback)

    def call_back(self, callback: Callback) -> None:
        self.state.callbacks.send(callback)

    def track_jobs(self, board: Any) -> None:
        """Called by each :class:`~ideochar.emulator.jobs.JobBoard`: its jobs' timelines are then served
        at ``/_emulator/jobs/{vendor}/{id}`` (the completion benchmark reads when a job was marked done)."""
        self.state.boards.setdefault(self.vendor, []).append(board)

    def shape_errors(self, shaper: ErrorShaper) -> None:
        self._shaper = shaper

    def random_seed(self) -> int:
        return secrets.randbelow(2**31)

    def later(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        timers = self.state._timers
        handle: asyncio.TimerHandle

        def fire() -> None:
            timers.discard(handle)
            callback()

        handle = loop.call_later(max(0.0, delay), fire)
        timers.add(handle)

        def cancel() -> None:
            handle.cancel()
            timers.discard(handle)

        return cancel

    async def wait_or_stop(self, awaitable: Awaitable[Any], timeout: float | None) -> bool:
        stop = self.state.stop_event()
        if stop.is_set():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            return False
        waiter = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait({waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, stopper):
                if not task.done():
                    task.cancel()
        return waiter in done

    @property
    def stopping(self) -> bool:
        return self.state.stopping

    # -- vendor storage

    def now(self) -> float:
        return self.state.files.clock()

    def record_upload(self, data: bytes) -> None:
        self.state.uploads.add(self.vendor, data)

    def new_file_id(self, content_type: str) -> str:
        return self.state.files.new_id(content_type)

    def store_upload(
        self, data: bytes, content_type: str, request: Request, *, expires_in: float | None, file_id: str | None = None
    ) -> str:
        files = self.state.files
        expires_at = None if expires_in is None else files.clock() + expires_in
        stored = files.add_bytes(self.vendor, data, content_type, file_id=file_id, expires_at=expires_at)
        self.record_upload(data)
        return self.file_url(request, stored)

    def file_url_for(self, request: Request, file_id: str) -> str:
        return f"{_root(request)}{FILES_PATH}/{file_id}"

    def serves(self, url: str) -> bool:
        return f"{FILES_PATH}/" in urlsplit(url).path

    # -- faults

    async def apply_faults(self, route: str, request: Request) -> tuple[Fault | None, Response | None]:
        """Decide and apply this request's faults; ``(fault, answer to give instead or None)``."""
        latency, fault = self.state.faults.decide(self.vendor, route, REQUEST_KINDS)
        if latency > 0:
            await self.wait_or_stop(asyncio.sleep(latency), None)
        if fault is None:
            return None, None
        if fault.kind in ("status", "rate_limit", "expire"):
            return fault, self.error_response(fault)
        if fault.kind == "hang":
            await self._hang(request, fault.seconds)
            raise ConnectionDropped("emulated fault: the server never answered")
        if fault.kind == "refuse":
            raise ConnectionDropped("emulated fault: connection refused before the request was read")
        exchange = _CURRENT.get()
        if exchange is not None:
            exchange.transform = fault
        return fault, None

    def error_response(self, fault: Fault) -> Response:
        """The answer for an injected error: a proxy's page (``ingress``), else the vendor's shape."""
        if fault.ingress:
            return ingress_page(fault.status or 502)
        if fault.kind == "expire" and fault.status is None:
            fault = Fault(kind="expire", status=404, body=fault.body)
        if self._shaper is not None:
            return self._shaper(fault)
        return default_error(fault)

    async def _hang(self, request: Request, seconds: float | None) -> None:
        """Hold the request until the client goes away (or ``seconds`` pass), never answering."""
        from starlette.requests import ClientDisconnect

        exchange = _CURRENT.get()
        if exchange is not None:
            exchange.transport = self.state._transport_of(request.scope)
        try:
            await request.body()
        except (ClientDisconnect, RuntimeError):
            return

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        await self.wait_or_stop(disconnected(), seconds)


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def retry_after_value(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1 when any wait is asked for."""
    return str(max(0, math.ceil(seconds)))


def default_error(fault: Fault) -> Response:
    """An injected error for a vendor that gave no shaper: ``{"error": ...}`` with Retry-After on 429s."""
    from starlette.responses import JSONResponse, PlainTextResponse

    status = fault.status or (429 if fault.kind == "rate_limit" else 500)
    headers = {"Retry-After": retry_after_value(fault.retry_after)} if fault.retry_after is not None else {}
    if isinstance(fault.body, str):
        return PlainTextResponse(fault.body, status_code=status, headers=headers)
    body = fault.body if fault.body is not None else {"error": f"emulated fault: HTTP {status}"}
    return JSONResponse(body, status_code=status, headers=headers)


def ingress_page(status: int) -> Response:
    """What an edge proxy (nginx) answers when the service behind it fails: HTML, no vendor headers."""
    from starlette.responses import HTMLResponse

    try:
        title = f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return HTMLResponse(page, status_code=status)


# -- the middleware ------------------------------------------------------------------------------------------


def _contains_drop(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionDropped):
        return True
    return any(_contains_drop(inner) for inner in getattr(exc, "exceptions", ()))


class _FaultMiddleware:
    """Applies connection faults and answer-mangling faults (see the module docstring)."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.state.loop = asyncio.get_running_loop()
        exchange = _Exchange()
        token = _CURRENT.set(exchange)
        mangler = _Mangler(exchange, send)
        try:
            await self.app(scope, receive, mangler.send)
        except BaseException as exc:
            if not isinstance(exc, Exception) or not (_contains_drop(exc) or exchange.drop_chosen):
                raise
            await self.state.drop(scope, receive, started=mangler.started)
        finally:
            _CURRENT.reset(token)


class _Mangler:
    """The ``send`` the app sees: passes messages through, or mangles the answer as a fault asks."""

    def __init__(self, exchange: _Exchange, send: Send) -> None:
        self.exchange = exchange
        self._send = send
        self.started = False
        self._start: Message | None = None
        self._body: list[bytes] = []

    async def send(self, message: Message) -> None:
        fault = self.exchange.transform
        if fault is None:
            if message["type"] == "http.response.start":
                self.started = True
            await self._send(message)
            return
        if message["type"] == "http.response.start":
            self._start = message
            if fault.kind == "wrong_content_type":
                await self._emit(_with_headers(message, {b"content-type": b"text/html; charset=utf-8"}))
                self._start = None
            return
        if message["type"] != "http.response.body" or self._start is None:
            await self._send(message)
            return
        self._body.append(bytes(message.get("body", b"")))
        more = bool(message.get("more_body", False))
        if fault.kind == "malformed_json":
            if more:
                return
            whole = b"".join(self._body)
            half = whole[: len(whole) // 2]
            await self._emit(_with_headers(self._start, {b"content-length": str(len(half)).encode()}))
            await self._send({"type": "http.response.body", "body": half, "more_body": False})
            return
        # truncate: the headers promise the whole answer; half of what is ready goes out, then the line drops
        whole = b"".join(self._body)
        await self._emit(self._start)
        await self._send({"type": "http.response.body", "body": whole[: len(whole) // 2], "more_body": True})
        raise ConnectionDropped("emulated fault: the answer was cut short")

    async def _emit(self, start: Message) -> None:
        self.started = True
        await self._send(start)


def _with_headers(start: Message, replace: Mapping[bytes, bytes]) -> Message:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in replace]
    return {**start, "headers": [*headers, *replace.items()]}


# -- admin routes --------------------------------------------------------------------------------------------


def _admin_routes(state: EmulatorState) -> list[BaseRoute]:
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    def error(message: str, status: int = 400) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request: Request) -> Response:
        root = _root(request)
        return JSONResponse({
            "emulator": "ideochar",
            "note": "a development and test stand-in for the vendors' APIs; its images are not a model's output",
            "vendors": state.base_urls(root),
            "admin": f"{root}/_emulator/health",
        })  # fmt: skip

    async def health(request: Request) -> Response:
        return JSONResponse({
            "status": "ok",
            "vendors": state.base_urls(_root(request)),
            "model_seconds": state.model_seconds,
            "broken": state.broken,
            "in_flight": state.in_flight,
        })  # fmt: skip

    async def ledger(request: Request) -> Response:
        vendor = request.query_params.get("vendor")
        if vendor and vendor not in state.vendors:
            return error(f"no emulated vendor {vendor!r}", 404)
        return JSONResponse(state.ledger_json(vendor))

    async def uploads(request: Request) -> Response:
        vendor = request.query_params.get("vendor")
        if vendor and vendor not in state.vendors:
            return error(f"no emulated vendor {vendor!r}", 404)
        return JSONResponse(state.uploads.to_json([vendor] if vendor else sorted(state.vendors)))

    async def faults(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(state.profile.to_document())
        if request.method == "DELETE":
            state.set_profile(None)
            return JSONResponse(state.profile.to_document())
        text = (await request.body()).decode("utf-8", "replace")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if kind.endswith("toml"):
                profile = state.set_profile(text if text.strip() else None)
            else:
                profile = state.set_profile(json.loads(text) if text.strip() else None)
        except ValueError as exc:
            return error(str(exc))
        return JSONResponse(profile.to_document())

    async def config(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            if "model_seconds" in body:
                state.set_model_seconds(float(body["model_seconds"]))
        except (ValueError, TypeError, AttributeError) as exc:
            return error(f"bad config: {exc}")
        return JSONResponse({"model_seconds": state.model_seconds})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    async def job(request: Request) -> Response:
        vendor, job_id = request.path_params["vendor"], request.path_params["job_id"]
        for board in state.boards.get(vendor, []):
            found = board.get(job_id)
            if found is not None:
                return JSONResponse({
                    "vendor": vendor,
                    "id": found.id,
                    "phase": found.phase,
                    "outcome": found.outcome,
                    "submitted_at": found.submitted_at,
                    "started_at": found.started_at,
                    "finished_at": found.finished_at,
                })  # fmt: skip
        return error(f"no {vendor} job {job_id!r}", 404)

    async def expire(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return error("the body must be JSON")
        vendor = body.get("vendor") if isinstance(body, dict) else None
        return JSONResponse({"expired": state.expire_files(vendor)})

    async def file(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        vendor = state.files.vendor_of(file_id)
        kit = state.kits.get(vendor) if vendor else None
        if kit is not None:
            fault, injected = await kit.apply_faults("files", request)
            if fault is not None and fault.kind == "expire":
                state.files.expire(file_id=file_id)
                return PlainTextResponse("Not Found", status_code=404)
            if injected is not None:
                return injected
        entry = state.files.entry(file_id)
        if entry is None or entry.gone(state.files.clock()):
            return PlainTextResponse("Not Found", status_code=404)
        if kit is None or state.files.is_cheap(file_id):
            data = state.files.read(file_id)  # a worker thread would only fight the event loop for the GIL
        else:
            data = await kit.run_blocking(state.files.read, file_id)
        if data is None:
            return PlainTextResponse("Not Found", status_code=404)
        return Response(
            data,
            media_type=entry.file.content_type,
            headers={"cache-control": "public, max-age=3600", "content-disposition": f'inline; filename="{file_id}"'},
        )

    prefix = "/_emulator"
    return [
        Route("/", index, methods=["GET"]),
        Route(f"{prefix}/health", health, methods=["GET"]),
        Route(f"{prefix}/ledger", ledger, methods=["GET"]),
        Route(f"{prefix}/uploads", uploads, methods=["GET"]),
        Route(f"{prefix}/faults", faults, methods=["GET", "POST", "PUT", "DELETE"]),
        Route(f"{prefix}/config", config, methods=["POST"]),
        Route(f"{prefix}/reset", reset, methods=["POST"]),
        Route(prefix + "/jobs/{vendor}/{job_id}", job, methods=["GET"]),
        Route(f"{FILES_PATH}/expire", expire, methods=["POST"]),
        Route(FILES_PATH + "/{file_id}", file, methods=["GET"]),
    ]


# -- the factory ---------------------------------------------------------------------------------------------


def create_app(
    pm: pluggy.PluginManager | None = None,
    *,
    profile: FaultProfile | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    model_seconds: float = 0.0,
    vendors: Iterable[str] | None = None,
) -> Starlette:
    """The emulator as an ASGI app, with every vendor the plugins in ``pm`` can emulate.

    ``profile`` is a fault profile (see :mod:`ideochar.emulator.faults`), ``model_seconds`` the emulated
    model time per job, ``vendors`` an optional subset of vendor names. A vendor whose routes fail to
    build is left out (logged, and listed by ``/_emulator/health``) rather than taking the others down.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount

    if pm is None:
        from ideochar.plugins import get_plugin_manager

        pm = get_plugin_manager()
    emulated = collect_emulated(pm)
    if vendors is not None:
        wanted = set(vendors)
        unknown = wanted - set(emulated)
        if unknown:
            raise ValueError(f"no emulator for {', '.join(sorted(unknown))} (have: {', '.join(sorted(emulated))})")
        emulated = {name: vendor for name, vendor in emulated.items() if name in wanted}
    state = EmulatorState(emulated, profile=profile, model_seconds=model_seconds)
    mounts: list[BaseRoute] = []
    for name, vendor in sorted(emulated.items()):
        kit = VendorKit(state, vendor)
        try:
            vendor_routes = list(vendor.routes(kit))
        except Exception as exc:
            logger.warning("the %s emulator could not be built: %s", name, exc)
            state.broken[name] = f"{type(exc).__name__}: {exc}"
            continue
        state.kits[name] = kit
        mounts.append(Mount(f"/{name}", routes=vendor_routes, name=name))
    for name in state.broken:
        state.vendors.pop(name, None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            state.begin_stop()
            await state.callbacks.aclose()

    app = Starlette(
        routes=[*_admin_routes(state), *mounts],
        middleware=[Middleware(_FaultMiddleware, state=state)],
        lifespan=lifespan,
    )
    app.state.emulator = state
    return app

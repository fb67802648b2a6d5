"""Helpers for tests that run against the emulator, in-process or on a loopback socket.

In-process (fast: no socket, no thread; the app runs on the test's own event loop)::

    from ideochar.emulator import testing

    app = testing.emulator_app(model_seconds=0)             # every installed vendor
    async with testing.async_client(app) as http:           # httpx.AsyncClient bound to the app
        response = await http.post("/fal/fal-ai/ideogram/character", json=..., headers=...)
    assert testing.billed(app, "fal") == 1                  # "charged once"

    with testing.sync_client(app) as http:                  # httpx.Client: the app runs on a helper thread
        ...

    # ideochar's own clients, pointed at the in-process app (any key but one starting "invalid"):
    client = AsyncClient(["fal"], http=testing.async_client(app), base_urls=testing.base_urls(app),
                         keys={"fal": "test-key"})

On a real socket (uvicorn on 127.0.0.1, a free port, in a background thread)::

    with testing.running_emulator(model_seconds=0.2, profile={"fal": [...]}) as server:
        client = Client(["fal"], emulator=server.url)
        ...
        assert testing.billed(server, "fal") == 1

Faults and state, for any target (an app, a ``BackgroundServer``, an ``EmulatorState``, or the root URL
of an emulator in another process — then over its admin endpoints)::

    testing.set_faults(target, {"seed": 1, "fal": [{"route": "submit", "kind": "status", "status": 503}]})
    testing.ledger(target, "fal")        # [LedgerEntry, ...] (voided ones included; see .billed)
    testing.billed(target, "fal")        # how many admissions a vendor would charge for
    testing.uploads(target, "fal")       # how many files clients uploaded to fal's storage
    testing.expire_files(target)         # result URLs now answer 404
    testing.reset(target)                # forget jobs, files, ledger and faults

A pytest fixture is two lines::

    @pytest.fixture
    def emulator():
        with testing.running_emulator() as server:
            yield server

Timeouts in-process: ``httpx.ASGITransport`` ignores them, so a ``hang`` fault would hang a test. The
transports here enforce the request's read timeout over the whole exchange (an in-process answer
arrives all at once) and raise ``httpx.ReadTimeout``, as a socket would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import pluggy
    from anyio.from_thread import BlockingPortal
    from starlette.applications import Starlette

    from ideochar.emulator.app import EmulatorState
    from ideochar.emulator.faults import FaultProfile
    from ideochar.emulator.kit import LedgerEntry
    from ideochar.emulator.server import BackgroundServer

__all__ = [
    "IN_PROCESS_ROOT",
    "ASGITransport",
    "SyncASGITransport",
    "async_client",
    "base_urls",
    "billed",
    "emulator_app",
    "expire_files",
    "in_flight",
    "ledger",
    "reset",
    "running_emulator",
    "set_faults",
    "state_of",
    "sync_client",
    "uploads",
]

#: The root URL in-process clients use (any host works: URLs the emulator returns follow the request's).
IN_PROCESS_ROOT = "http://emulator.test"

Target = Any
"""An app from :func:`emulator_app`, a ``BackgroundServer``, an ``EmulatorState`` or a root URL."""


def emulator_app(
    pm: pluggy.PluginManager | None = None,
    *,
    profile: FaultProfile | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    model_seconds: float = 0.0,
    vendors: list[str] | None = None,
) -> Starlette:
    """A fresh emulator app (its own ledger, files and faults)."""
    from ideochar.emulator.app import create_app

    return create_app(pm, profile=profile, model_seconds=model_seconds, vendors=vendors)


@contextlib.contextmanager
def running_emulator(
    pm: pluggy.PluginManager | None = None,
    *,
    profile: FaultProfile | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    model_seconds: float = 0.0,
    app: Starlette | None = None,
) -> Iterator[BackgroundServer]:
    """The emulator on a loopback port for the ``with`` block (``server.url``, ``server.state``)."""
    from ideochar.emulator.server import BackgroundServer

    server = BackgroundServer(pm, profile=profile, model_seconds=model_seconds, app=app).start()
    try:
        yield server
    finally:
        server.stop()


# -- in-process transports --------------------------------------------------------------------------------


class ASGITransport(httpx.ASGITransport):
    """``httpx.ASGITransport`` that honours the request's read timeout (over the whole exchange)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import anyio

        timeout = (request.extensions.get("timeout") or {}).get("read")
        if timeout is None:
            return await super().handle_async_request(request)
        try:
            with anyio.fail_after(timeout):
                response = await super().handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout(f"the emulator did not answer within {timeout:g} s", request=request) from None
        return response


class SyncASGITransport(httpx.BaseTransport):
    """A blocking transport over an ASGI app, which runs on an event loop in a helper thread."""

    def __init__(self, app: Any) -> None:
        from anyio.from_thread import start_blocking_portal

        self._inner = ASGITransport(app=app)
        self._portal_context = start_blocking_portal()
        self._portal: BlockingPortal | None = self._portal_context.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._portal is None:
            raise RuntimeError("the transport is closed")
        body = request.read()
        inner = httpx.Request(
            request.method, request.url, headers=request.headers, content=body, extensions=request.extensions
        )

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            response = await self._inner.handle_async_request(inner)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        status, headers, content = self._portal.call(call)
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        if self._portal is not None:
            self._portal = None
            self._portal_context.__exit__(None, None, None)


def async_client(app: Any, *, base_url: str = IN_PROCESS_ROOT, **options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request goes to ``app`` (use it as ``async with``)."""
    return httpx.AsyncClient(transport=ASGITransport(app=app), base_url=base_url, **options)


def sync_client(app: Any, *, base_url: str = IN_PROCESS_ROOT, **options: Any) -> httpx.Client:
    """An ``httpx.Client`` whose every request goes to ``app`` (use it as ``with``)."""
    return httpx.Client(transport=SyncASGITransport(app), base_url=base_url, **options)


def base_urls(target: Target, root: str | None = None) -> dict[str, dict[str, str]]:
    """Each vendor's base URLs under ``root`` (default: the server's URL, or :data:`IN_PROCESS_ROOT`)."""
    if isinstance(target, str):
        return dict(httpx.get(f"{target.rstrip('/')}/_emulator/health").json()["vendors"])
    if root is None:
        root = target.url if hasattr(target, "url") and hasattr(target, "start") else IN_PROCESS_ROOT
    return state_of(target).base_urls(root)


# -- state ---------------------------------------------------------------------------------------------------


def state_of(target: Target) -> EmulatorState:
    """The emulator state behind an app, a ``BackgroundServer`` or a state."""
    from ideochar.emulator.app import EmulatorState

    if isinstance(target, EmulatorState):
        return target
    state = getattr(target, "state", None)
    if isinstance(state, EmulatorState):
        return state
    inner = getattr(state, "emulator", None)
    if isinstance(inner, EmulatorState):
        return inner
    raise TypeError(f"not an emulator app, server or state: {target!r}")


def _admin(root: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{root.rstrip('/')}/_emulator/{path}", timeout=10, **kwargs)
    response.raise_for_status()
    return response.json()


def ledger(target: Target, vendor: str | None = None) -> list[LedgerEntry]:
    """Admitted jobs (billed and voided), oldest first."""
    if isinstance(target, str):
        from ideochar.emulator.kit import LedgerEntry

        document = _admin(target, "GET", "ledger", params={"vendor": vendor} if vendor else None)
        entries = []
        for item in (entry for per_vendor in document.values() for entry in per_vendor["entries"]):
            fields = {f.name for f in dataclasses.fields(LedgerEntry)}
            values = {k: v for k, v in item.items() if k in fields}
            values["cost_usd"] = Decimal(values["cost_usd"])
            entries.append(LedgerEntry(**values))
        return entries
    return state_of(target).ledger.entries(vendor)


def billed(target: Target, vendor: str | None = None) -> int:
    """How many admissions the vendor (or all of them) would charge for."""
    return sum(1 for entry in ledger(target, vendor) if entry.voided is None)


def in_flight(target: Target, vendor: str) -> dict[str, int]:
    """Images ``now`` in flight at a vendor that limits them, their ``peak`` and requests ``refused``."""
    if isinstance(target, str):
        document = _admin(target, "GET", "health")
        return dict(document.get("in_flight", {}).get(vendor, {"now": 0, "peak": 0, "refused": 0}))
    return dict(state_of(target).in_flight.get(vendor, {"now": 0, "peak": 0, "refused": 0}))


def uploads(target: Target, vendor: str | None = None, *, sha256: str | None = None) -> int:
    """How many files clients uploaded to a vendor's storage (of one image's digest, if given)."""
    if isinstance(target, str):
        document = _admin(target, "GET", "uploads", params={"vendor": vendor} if vendor else None)
        items = [item for per_vendor in document.values() for item in per_vendor["uploads"]]
        return sum(1 for item in items if sha256 is None or item["sha256"] == sha256)
    return state_of(target).uploads.count(vendor, sha256)


def set_faults(target: Target, profile: FaultProfile | Mapping[str, Any] | str | None) -> None:
    """Replace the fault profile (``None`` clears it); see :mod:`ideochar.emulator.faults`."""
    if isinstance(target, str):
        from ideochar.emulator.faults import load_profile

        _admin(target, "PUT", "faults", json=load_profile(profile).to_document())
        return
    state_of(target).set_profile(profile)


def expire_files(target: Target, vendor: str | None = None) -> int:
    """Make output files answer 404 (stale result URLs); how many were live."""
    if isinstance(target, str):
        return int(_admin(target, "POST", "files/expire", json={"vendor": vendor} if vendor else {})["expired"])
    return state_of(target).expire_files(vendor)


def reset(target: Target) -> None:
    """Forget every job, file, ledger entry and fault."""
    if isinstance(target, str):
        _admin(target, "POST", "reset")
        return
    state_of(target).reset()

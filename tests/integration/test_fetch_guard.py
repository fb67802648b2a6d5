"""Issue 13.2 over real loopback sockets: a URL fetched on a user's behalf cannot reach an internal service.

"Internal" is a server this test starts on 127.0.0.1 that counts its visitors: a refused fetch must not
have visited it at all. Where a test needs a *public* host, the stub resolver names one and a routing
network backend carries its connections to a loopback server, as the internet would; the guard sees
only the public address, exactly as in production.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

import anyio
import httpcore
import httpx
import pytest

from conftest import make_image
from ideochar import AsyncClient, Client, IdeocharError, InvalidRequest
from ideochar import _netguard as netguard
from ideochar.exchange import adrive, download_image, drive, fetch_input
from ideochar.media import ImageInput
from reliability import sockets

from .conftest import Emulator
from .support import client_options, png

pytestmark = pytest.mark.socket

PUBLIC = "93.184.216.34"
SECRET = make_image(48, 48, "PNG", "purple")
REFERENCE = png(64, 64, (240, 200, 20))


@contextlib.contextmanager
def internal(behaviour: sockets.Behaviour) -> Iterator[tuple[str, list[int]]]:
    """A loopback server counting its connections; yields its root URL and the count."""
    visits: list[int] = []

    def counted(conn: socket.socket) -> None:
        visits.append(1)
        behaviour(conn)

    with sockets.serving(counted) as root:
        yield root, visits


class Routed(httpcore.NetworkBackend):
    """The internet for these tests: ``PUBLIC`` leads to a loopback server; every other address is itself."""

    def __init__(self, public_port: int) -> None:
        self._real, self._port = httpcore.SyncBackend(), public_port

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if host == PUBLIC:
            host, port = "127.0.0.1", self._port
        return self._real.connect_tcp(host, port, timeout, local_address, socket_options)


def _port(root: str) -> int:
    return int(root.rsplit(":", 1)[1])


def _public_dns(host: str, port: int) -> list[str]:
    if host == "images.example":
        return [PUBLIC]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_redirect_into_loopback_is_refused_unless_private_addresses_are_allowed(allow_private: bool) -> None:
    with internal(sockets.answer(200, SECRET, {"content-type": "image/png"})) as (secret_root, visits):
        redirect = sockets.answer(302, b"", {"location": f"{secret_root}/admin/photo.png"})
        with (
            sockets.serving(redirect) as public_root,
            httpx.Client() as http,
            netguard.fetch_client(
                allow_private=allow_private, resolver=_public_dns, network=Routed(_port(public_root))
            ) as guarded,
        ):
            flow = fetch_input(ImageInput.of("http://images.example/face.png"), field="reference")
            if allow_private:
                assert drive(flow, http, fetch=guarded).read() == SECRET
            else:
                with pytest.raises(InvalidRequest) as caught:
                    drive(flow, http, fetch=guarded)
                assert caught.value.field == "reference"
                assert secret_root.rsplit(":", 1)[1] not in str(caught.value)  # the internal port
    assert len(visits) == (1 if allow_private else 0)


def test_the_async_fetch_client_refuses_the_same_redirect() -> None:
    with internal(sockets.answer(200, SECRET, {"content-type": "image/png"})) as (secret_root, visits):
        redirect = sockets.answer(302, b"", {"location": f"{secret_root}/admin/photo.png"})
        with sockets.serving(redirect) as public_root:
            port = _port(public_root)

            class AsyncRouted(httpcore.AsyncNetworkBackend):
                async def connect_tcp(self, host: str, port_: int, *args: Any, **kwargs: Any) -> Any:
                    target = ("127.0.0.1", port) if host == PUBLIC else (host, port_)
                    return await httpcore.AnyIOBackend().connect_tcp(*target, *args, **kwargs)

            async def resolve(host: str, port_: int) -> list[str]:
                return _public_dns(host, port_)

            async def main() -> None:
                async with (
                    httpx.AsyncClient() as http,
                    netguard.async_fetch_client(resolver=resolve, network=AsyncRouted()) as guarded,
                ):
                    flow = fetch_input(ImageInput.of("http://images.example/face.png"), field="reference")
                    with pytest.raises(InvalidRequest):
                        await adrive(flow, http, fetch=guarded)

            anyio.run(main)
    assert visits == []


# -- through the client, against the emulator on loopback -----------------------------------------------------


@pytest.mark.parametrize("own_http", [False, True], ids=["our-http", "callers-http"])
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_an_internal_reference_url_is_refused_and_never_reaches_the_vendor(
    emulator: Emulator, driver: str, own_http: bool
) -> None:
    """The reported attack: an internal image fetched by ideochar, uploaded to Ideogram, drawn into the result.
    A caller's own ``http=`` client (for vendor calls) does not lift the guard."""
    with (
        internal(sockets.answer(200, SECRET, {"content-type": "image/png"})) as (secret_root, visits),
        pytest.raises(InvalidRequest) as caught,
    ):
        _generate(driver, emulator.url, f"{secret_root}/hr/badge.png", own_http=own_http)
    assert caught.value.field == "reference"
    assert visits == [] and emulator.recorder.requests() == []


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_allow_private_urls_fetches_an_internal_reference(emulator: Emulator, driver: str) -> None:
    with internal(sockets.answer(200, SECRET, {"content-type": "image/png"})) as (secret_root, visits):
        result = _generate(driver, emulator.url, f"{secret_root}/cdn/face.png", allow_private_urls=True)
    assert len(visits) == 1 and result.images


def test_the_emulators_own_files_stay_fetchable_without_allowing_private_urls(emulator: Emulator) -> None:
    """URLs on a configured origin (here the emulator's, on loopback) belong to the caller's configuration."""
    from .support import serve_file

    reference = serve_file(emulator.state, emulator.url, REFERENCE)
    assert _generate("sync", emulator.url, reference).images


def test_a_closed_port_and_a_missing_file_read_the_same_and_name_no_status() -> None:
    messages = []
    with sockets.held_closed_port() as closed, internal(sockets.answer(404, b"no such badge")) as (missing_root, _):
        for url in (f"http://127.0.0.1:{closed}/a.png", f"{missing_root}/a.png"):
            with pytest.raises(InvalidRequest) as caught:
                _fetch(url)
            message = str(caught.value)
            messages.append(message.replace(url, "URL"))
            assert "404" not in message and "refused" not in message.lower() and "111" not in message
    assert messages[0] == messages[1]


def _fetch(url: str) -> Any:
    with httpx.Client() as http, netguard.fetch_client(allow_private=True) as guarded:
        return drive(fetch_input(ImageInput.of(url), field="reference"), http, fetch=guarded)


def _generate(driver: str, root: str, reference: str, *, own_http: bool = False, **options: Any) -> Any:
    settings = client_options(root, **options)
    if driver == "sync":
        with httpx.Client() as http, Client("ideogram", http=http if own_http else None, **settings) as client:
            return client.generate("a knight", reference)

    async def main() -> Any:
        async with (
            httpx.AsyncClient() as http,
            AsyncClient("ideogram", http=http if own_http else None, **settings) as client,
        ):
            return await client.generate("a knight", reference)

    return anyio.run(main)


# -- a fetch's own timeouts, with no job deadline ------------------------------------------------------------


@pytest.mark.parametrize("server", ["hang", "trickle"])
def test_a_download_without_a_deadline_still_stops(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: with no deadline a stalled download never timed out."""
    monkeypatch.setattr(netguard, "FETCH_READ_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(netguard, "FETCH_TIMEOUT_SECONDS", 0.6)
    behaviour = sockets.hang(30) if server == "hang" else sockets.trickle(SECRET[:16], interval=0.05, seconds=30)
    with (
        sockets.serving(behaviour) as root,
        httpx.Client() as http,
        netguard.fetch_client(allow_private=True) as guarded,
    ):
        started = time.monotonic()
        with pytest.raises(IdeocharError) as caught:
            drive(download_image(f"{root}/out.png", attempts=1), http, fetch=guarded)  # no deadline
        elapsed = time.monotonic() - started
    assert getattr(caught.value, "billed", None) == "yes"
    assert elapsed < 2.0, f"{server}: stopped after {elapsed:.2f} s"

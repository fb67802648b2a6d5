"""The async client's pools of connections, over a real loopback socket.

``ideochar._pool`` splits httpx's pool into many small ones so a crowd of jobs stays cheap; these
tests hold it to what a single pool gave: a lone caller reuses one warm connection, a crowd spreads
out, every slot comes back (also after a failure), and a fal job reads its finished status stream to
the end so the next request goes out on the same connection.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import httpcore
import httpx
import pytest

import ideochar
from conftest import make_image
from ideochar._pool import ShardedAsyncTransport

from .conftest import Emulator

pytestmark = pytest.mark.socket

HEALTH = "/_emulator/health"


def _count_connections(monkeypatch: pytest.MonkeyPatch, pool: Any) -> list[str]:
    """Every connection the pools of class ``pool`` open, by origin."""
    made: list[str] = []
    real = pool.create_connection

    def counting(self: Any, origin: httpcore.Origin) -> Any:
        made.append(str(origin))
        return real(self, origin)

    monkeypatch.setattr(pool, "create_connection", counting)
    return made


@pytest.fixture
def connections_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return _count_connections(monkeypatch, httpcore.AsyncConnectionPool)


@pytest.fixture
def sync_connections_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return _count_connections(monkeypatch, httpcore.ConnectionPool)


def test_one_request_at_a_time_uses_one_connection(emulator: Emulator, connections_made: list[str]) -> None:
    async def main() -> tuple[int, ...]:
        transport = ShardedAsyncTransport(limits=httpx.Limits(max_connections=64))
        async with httpx.AsyncClient(transport=transport) as http:
            for _ in range(5):
                (await http.get(emulator.url + HEALTH)).raise_for_status()
            return transport.in_flight

    in_flight = anyio.run(main)
    assert len(connections_made) == 1
    assert in_flight == (0,) * 32


def test_a_crowd_spreads_over_the_pools_and_gives_every_slot_back(emulator: Emulator) -> None:
    async def main() -> tuple[tuple[int, ...], tuple[int, ...]]:
        transport = ShardedAsyncTransport(limits=httpx.Limits(max_connections=8), per_shard=2)
        async with httpx.AsyncClient(transport=transport) as http:
            held = [await http.send(http.build_request("GET", emulator.url + HEALTH), stream=True) for _ in range(6)]
            during = transport.in_flight
            for response in held:
                await response.aread()
                await response.aclose()
            return during, transport.in_flight

    during, after = anyio.run(main)
    assert sorted(during, reverse=True) == [2, 2, 1, 1]
    assert after == (0, 0, 0, 0)


def test_a_failed_connection_gives_its_slot_back() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> tuple[int, ...]:
        transport = ShardedAsyncTransport(limits=httpx.Limits(max_connections=4))
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")
            return transport.in_flight

    assert anyio.run(main) == (0, 0)


def test_a_fal_job_reuses_its_connection_after_the_status_stream(
    emulator: Emulator, connections_made: list[str]
) -> None:
    """fal ends the status stream after COMPLETED; reading that end keeps the connection for the result.

    Four requests per job (submit, stream, result, image); cutting the stream off instead would cost a
    new connection (a TLS handshake against the real fal) for every job.
    """
    reference = make_image(32, 32)

    async def main() -> None:
        async with ideochar.AsyncClient(["fal"], emulator=emulator.url, journal=False) as client:
            for _ in range(3):
                result = await client.generate("the knight at the gate", reference)
                assert result.image.data

    anyio.run(main)
    assert len(connections_made) == 1


def test_the_blocking_twin_reuses_one_connection_and_gives_slots_back_across_threads(
    emulator: Emulator, sync_connections_made: list[str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ideochar._pool import ShardedTransport

    transport = ShardedTransport(limits=httpx.Limits(max_connections=16))
    with httpx.Client(transport=transport) as http:
        for _ in range(4):
            http.get(emulator.url + HEALTH).raise_for_status()
        assert len(sync_connections_made) == 1
        held = [http.send(http.build_request("GET", emulator.url + HEALTH), stream=True) for _ in range(3)]
        assert sorted(transport.in_flight, reverse=True)[:3] == [1, 1, 1]  # a crowd spreads out
        for response in held:
            response.read()
            response.close()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: http.get(emulator.url + HEALTH).status_code, range(64)))
        assert statuses == [200] * 64
        assert transport.in_flight == (0,) * 8
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(httpx.ConnectError):
            http.get(f"http://127.0.0.1:{port}/")
        assert transport.in_flight == (0,) * 8

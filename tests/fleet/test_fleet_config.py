"""How a client comes to share a fleet's state and journal, and what it does when Redis is gone.

The settings (``IDEOCHAR_STATE_URL``, ``IDEOCHAR_JOURNAL_URL``, ``IDEOCHAR_STATE_FALLBACK``, the same keys
in a TOML file the caller names, and the ``state=`` / ``journal=`` arguments, which win) are checked on the
client they build, against the real servers. An unreachable Redis is checked end to end through the
client and the emulator: by default nothing reaches the vendor; told to fall back, the job runs on this
process's own limits; a budget never falls back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import make_image
from ideochar import AsyncClient, Client
from ideochar.emulator import testing
from ideochar.emulator.server import BackgroundServer
from ideochar.errors import StateUnavailable
from ideochar.state import MemoryState
from ideochar.state.redis import RedisState
from reliability.sockets import held_closed_port

INLINE = {"fal": {"image_transport": "data_uri"}}


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "hero.png"
    path.write_bytes(make_image(48, 48))
    return path


@pytest.fixture(scope="module")
def emulator() -> Iterator[BackgroundServer]:
    with testing.running_emulator() as server:
        yield server


@pytest.fixture
def down() -> Iterator[str]:
    """A Redis URL whose port is held closed for the test: every connection is refused."""
    with held_closed_port() as port:
        yield f"redis://127.0.0.1:{port}/0"


def _backends(client: Client | AsyncClient) -> tuple[Any, str | None]:
    journal = client.journal
    return client.state, None if journal is None else journal.url


def test_the_environment_makes_a_client_a_member_of_the_fleet(
    redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    environ = {"IDEOCHAR_STATE_URL": redis_url, "IDEOCHAR_JOURNAL_URL": postgres_url}
    with Client(["fal"], environ=environ, config=False, output_dir=tmp_path / "out") as client:
        state, journal_url = _backends(client)
        assert isinstance(state, RedisState) and state.shared and state.fallback == "fail_closed"
        assert journal_url == postgres_url and client.journal is not None and client.journal.dialect == "postgresql"


def test_a_toml_file_the_caller_names_does_the_same(redis_url: str, postgres_url: str, tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(
        f'state_url = "{redis_url}"\njournal_url = "{postgres_url}"\nstate_fallback = "local"\n'
        f'output_dir = "{tmp_path / "out"}"\n'
    )
    with Client(["fal"], environ={}, config=config) as client:
        state, journal_url = _backends(client)
        assert isinstance(state, RedisState) and state.fallback == "local"
        assert journal_url == postgres_url


def test_the_arguments_win_over_the_environment(redis_url: str, postgres_url: str, tmp_path: Path) -> None:
    """A worker told ``state="memory"`` and a SQLite journal keeps to itself, whatever its environment says."""
    environ = {"IDEOCHAR_STATE_URL": redis_url, "IDEOCHAR_JOURNAL_URL": postgres_url}
    journal = tmp_path / "own.sqlite3"
    with Client(["fal"], environ=environ, config=False, state="memory", journal=journal) as client:
        assert isinstance(client.state, MemoryState)
        assert client.journal is not None and client.journal.dialect == "sqlite" and client.journal.path == journal
    with Client(["fal"], environ={}, config=False, state=redis_url, journal=postgres_url) as client:
        state, journal_url = _backends(client)
        assert isinstance(state, RedisState) and journal_url == postgres_url
    told = {**environ, "IDEOCHAR_STATE_FALLBACK": "fail_closed"}
    with Client(["fal"], environ=told, config=False, state_fallback="local", journal=False) as client:
        assert isinstance(client.state, RedisState) and client.state.fallback == "local"


@pytest.mark.socket
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_an_unreachable_redis_sends_nothing_to_the_vendor(
    driver: str, down: str, emulator: BackgroundServer, reference: Path
) -> None:
    testing.reset(emulator)
    with pytest.raises(StateUnavailable, match="nothing was sent"):
        _generate(driver, emulator, reference, state=down)
    assert testing.ledger(emulator) == [] and testing.in_flight(emulator, "fal")["peak"] == 0


@pytest.mark.socket
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_told_to_fall_back_a_client_runs_on_its_own_limits(
    driver: str, down: str, emulator: BackgroundServer, reference: Path, caplog: pytest.LogCaptureFixture
) -> None:
    testing.reset(emulator)
    result = _generate(driver, emulator, reference, state=down, environ={"IDEOCHAR_STATE_FALLBACK": "local"})
    assert result.images and testing.billed(emulator, "fal") == 1
    assert any("own limits" in r.getMessage() for r in caplog.records if r.name == "ideochar.state")


@pytest.mark.socket
def test_a_budget_never_falls_back(down: str, emulator: BackgroundServer, reference: Path) -> None:
    """Money fails closed even when limits may fall back: no process can account for the fleet's spend."""
    testing.reset(emulator)
    with pytest.raises(StateUnavailable):
        _generate("sync", emulator, reference, state=down, environ={"IDEOCHAR_STATE_FALLBACK": "local"}, budget="5")
    assert testing.ledger(emulator) == []


def _generate(
    driver: str,
    emulator: BackgroundServer,
    reference: Path,
    *,
    state: str,
    environ: dict[str, str] | None = None,
    budget: str | None = None,
) -> Any:
    options: dict[str, Any] = {
        "emulator": emulator.url,
        "journal": False,
        "state": state,
        "environ": environ or {},
        "config": False,
        "options": INLINE,
        "budget_usd": budget,
    }
    if driver == "sync":
        with Client(["fal"], **options) as client:
            return client.generate("a keeper of the lighthouse", reference)

    async def main() -> Any:
        async with AsyncClient(["fal"], **options) as client:
            return await client.generate("a keeper of the lighthouse", reference)

    return anyio.run(main)

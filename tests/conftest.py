"""Shared fixtures. Area-specific fixtures live in the conftest.py of each test folder."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest
from PIL import Image

#: A key-shaped canary. Tests that prove no key leaks search output for it (and its halves).
CANARY_KEY = "canary-KEY-5f3a9c1e7b2d4068a1c3e5f7"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--live", action="store_true", default=False, help="run tests that call real vendors (costs money)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="live test: needs --live and vendor keys")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _journal_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Clients journal by default into the user data folder, and read the user's own configuration file:
    tests must neither write to the real folder nor read the developer's configuration."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("user-data")))
    patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("user-config")))
    yield
    patch.undo()


def make_image(width: int = 64, height: int = 64, fmt: str = "PNG", color: str = "red") -> bytes:
    """A small real image (Pillow), so format sniffing and pixel-size checks run on true bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def image() -> Callable[..., bytes]:
    return make_image


@pytest.fixture
def png() -> bytes:
    return make_image()


@pytest.fixture
def canary_key() -> str:
    return CANARY_KEY


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


#: The seed ideochar "draws" while ``pinned_seed`` is in use (cassettes compare request bodies).
PINNED_SEED = 424242


@pytest.fixture
def pinned_seed(monkeypatch: pytest.MonkeyPatch) -> int:
    """Every seed ideochar draws for an unseeded request is :data:`PINNED_SEED` (toolkit.draw_seed)."""
    import ideochar.toolkit

    monkeypatch.setattr(ideochar.toolkit, "_random_below", lambda bound: PINNED_SEED % bound)
    return PINNED_SEED


# -- real servers (tests/servers.py): started once per test process, on first use -----------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The URL of a PostgreSQL server this test session started (see tests/servers.py)."""
    from servers import postgres_server

    with postgres_server() as server:
        yield server.url


@pytest.fixture
def postgres_url(postgres: str) -> str:
    """A PostgreSQL URL whose tables live in a schema of this test's own."""
    from servers import fresh_schema

    return fresh_schema(postgres)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis server this test session started (see tests/servers.py)."""
    from servers import redis_server

    with redis_server() as server:
        yield server.url

"""Fixtures for the routing tests: fake vendors behind a MockTransport, and clients wired to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import make_image
from ideochar import AsyncClient, Client

from .fakes import FakeProvider, FakeVendors, keys_for, manager

MakeClient = Callable[..., Client]
MakeAsyncClient = Callable[..., AsyncClient]


@pytest.fixture
def vendors() -> FakeVendors:
    return FakeVendors("alpha", "beta", "gamma")


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "face.png"
    path.write_bytes(make_image(32, 32))
    return path


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal" / "journal.sqlite3"


def _defaults(providers: tuple[FakeProvider, ...], journal_path: Path, kwargs: dict[str, Any]) -> dict[str, Any]:
    names = [p.info.name for p in providers]
    settings: dict[str, Any] = {
        "plugin_manager": manager(*providers),
        "keys": keys_for(*names),
        "config": False,
        "environ": {},
        "journal": journal_path,
    }
    settings.update(kwargs)
    return settings


@pytest.fixture
def make_client(vendors: FakeVendors, journal_path: Path) -> Iterator[MakeClient]:
    """``make_client(FakeProvider("alpha"), FakeProvider("beta"), **client_kwargs)``: a client over the fakes."""
    made: list[Client] = []

    def make(*providers: FakeProvider, **kwargs: Any) -> Client:
        names = [p.info.name for p in providers]
        settings = _defaults(providers, journal_path, kwargs)
        http = httpx.Client(transport=vendors.transport())  # the fake CDN too: fetched through fetch_http
        client = Client(names, http=http, fetch_http=http, **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def make_async_client(vendors: FakeVendors, journal_path: Path) -> MakeAsyncClient:
    def make(*providers: FakeProvider, **kwargs: Any) -> AsyncClient:
        names = [p.info.name for p in providers]
        settings = _defaults(providers, journal_path, kwargs)
        http = httpx.AsyncClient(transport=vendors.async_transport())
        return AsyncClient(names, http=http, fetch_http=http, **settings)

    return make

"""Fixtures for the emulator's own tests: a fresh in-process app per test and an httpx client bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ideochar.emulator import testing


@pytest.fixture
def app() -> Any:
    return testing.emulator_app(vendors=["fal", "segmind"])


@pytest.fixture
def state(app: Any) -> Any:
    return testing.state_of(app)


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with testing.async_client(app, timeout=10) as client:
        yield client

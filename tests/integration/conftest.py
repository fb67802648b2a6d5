"""One emulator on a loopback port for the whole session; each test starts from a clean state.

Starting uvicorn costs a few hundred milliseconds, so every socket test shares one
:class:`~ideochar.emulator.server.BackgroundServer`; the ``emulator`` fixture resets its jobs, files,
ledger and faults (and the request recorder) before each test, so a test only ever sees its own calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ideochar.emulator.app import EmulatorState
from ideochar.emulator.server import BackgroundServer
from ideochar.emulator.testing import emulator_app

from .support import Recorder


@dataclass
class Emulator:
    """The running emulator as a test sees it."""

    server: BackgroundServer
    recorder: Recorder

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> EmulatorState:
        return self.server.state


@pytest.fixture(scope="session")
def _server() -> Iterator[Emulator]:
    recorder = Recorder(emulator_app(model_seconds=0.0))
    with BackgroundServer(app=recorder) as server:  # type: ignore[arg-type]
        yield Emulator(server, recorder)


@pytest.fixture
def emulator(_server: Emulator) -> Iterator[Emulator]:
    _server.state.reset()
    _server.state.set_model_seconds(0.0)
    _server.recorder.clear()
    yield _server
    _server.state.set_model_seconds(0.0)

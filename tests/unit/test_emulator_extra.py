"""Without the emulator extra, asking a client for the emulator says what to install (no raw ImportError)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from ideochar import AsyncClient, Client, InvalidRequest


@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_the_emulator_without_its_extra_names_the_install_command(
    client_class: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "starlette" else real(name, *a))
    with pytest.raises(InvalidRequest, match=r'pip install "ideochar\[emulator\]"') as caught:
        client_class(["fal"], emulator=True, config=False, environ={}, journal=False)
    assert caught.value.field == "emulator" and "starlette" in caught.value.message


def test_an_emulator_already_running_elsewhere_needs_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    client = Client(["fal"], emulator="http://127.0.0.1:9", config=False, environ={}, journal=False)
    assert repr(client).startswith("Client(")

"""Hooks: what ideochar calls to learn about this plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ideochar import Provider, hookimpl
from ideochar_example.provider import ExampleProvider


@hookimpl
def ideochar_register_providers(register: Callable[[Provider], None]) -> None:
    register(ExampleProvider())


@hookimpl
def ideochar_register_emulator(register: Callable[[str, Any, Mapping[str, str]], None]) -> None:
    from ideochar_example.emulator import routes  # Starlette is loaded only when the emulator runs

    register("example", routes, {"api": "/example"})  # base-URL name -> path under the emulator root

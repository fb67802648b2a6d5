"""Hooks: what ideochar calls to learn about this plugin."""

from __future__ import annotations

from collections.abc import Callable

from ideochar import Provider, hookimpl
from ideochar_example.provider import ExampleProvider


@hookimpl
def ideochar_register_providers(register: Callable[[Provider], None]) -> None:
    register(ExampleProvider())

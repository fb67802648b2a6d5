"""The fal plugin: registers the provider and its emulator routes, through the same hooks a
third-party plugin uses. Imports are deferred so that loading plugins stays cheap."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ideochar.hookspecs import hookimpl


@hookimpl
def ideochar_register_providers(register: Callable[[Any], None]) -> None:
    from ideochar_fal.provider import FalProvider

    register(FalProvider())


@hookimpl
def ideochar_register_emulator(register: Callable[[str, Any, Mapping[str, str]], None]) -> None:
    from ideochar_fal.emulator import routes

    register(
        "fal",
        routes,
        {"queue": "/fal", "run": "/fal/run", "rest": "/fal/rest", "cdn": "/fal/cdn", "platform": "/fal/platform"},
    )

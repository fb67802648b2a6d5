"""The replicate plugin: registers the provider and its emulator routes, through the same hooks a
third-party plugin uses. Imports are deferred so that loading plugins stays cheap."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ideochar.hookspecs import hookimpl


@hookimpl
def ideochar_register_providers(register: Callable[[Any], None]) -> None:
    from ideochar_replicate.provider import ReplicateProvider

    register(ReplicateProvider())


@hookimpl
def ideochar_register_emulator(register: Callable[[str, Any, Mapping[str, str]], None]) -> None:
    from ideochar_replicate.emulator import routes

    register("replicate", routes, {"api": "/replicate"})

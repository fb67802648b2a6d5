"""Which vendors the installed plugins can emulate, and where each one's base URLs live under a root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pluggy

from ideochar.hookspecs import RouteFactory

__all__ = ["EmulatedVendor", "collect_emulated", "emulated_base_urls"]


@dataclass(frozen=True)
class EmulatedVendor:
    name: str
    routes: RouteFactory
    base_urls: Mapping[str, str]
    """Provider base-URL name -> path under the emulator root (``{"queue": "/fal"}``)."""


def collect_emulated(pm: pluggy.PluginManager) -> dict[str, EmulatedVendor]:
    found: dict[str, EmulatedVendor] = {}

    def register(name: str, routes: RouteFactory, base_urls: Mapping[str, str]) -> None:
        if name in found:
            raise ValueError(f"two plugins register an emulator for {name!r}")
        found[name] = EmulatedVendor(name, routes, dict(base_urls))

    pm.hook.ideochar_register_emulator(register=register)
    return found


def emulated_base_urls(pm: pluggy.PluginManager, root: str) -> dict[str, dict[str, str]]:
    """Base URLs per provider that point every named URL at the emulator served at ``root``."""
    root = root.rstrip("/")
    return {name: {k: root + path for k, path in v.base_urls.items()} for name, v in collect_emulated(pm).items()}

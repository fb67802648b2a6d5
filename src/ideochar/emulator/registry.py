"""Which vendors the installed plugins can emulate, and where each one's base URLs live under a root."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import pluggy

from ideochar.hookspecs import RouteFactory

__all__ = ["EmulatedVendor", "broken_emulators", "collect_emulated", "emulated_base_urls"]

logger = logging.getLogger("ideochar.emulator")

#: Plugins whose emulator registration raised, by plugin name -> the error.
broken_emulators: dict[str, str] = {}


@dataclass(frozen=True)
class EmulatedVendor:
    name: str
    routes: RouteFactory
    base_urls: Mapping[str, str]
    """Provider base-URL name -> path under the emulator root (``{"queue": "/fal"}``)."""


def collect_emulated(pm: pluggy.PluginManager) -> dict[str, EmulatedVendor]:
    """Every vendor the plugins can emulate, by name.

    Each plugin is called on its own (as ``collect_providers`` does): one whose emulator module fails to
    import is logged and listed in :data:`broken_emulators` instead of taking the other vendors down.
    Two plugins emulating one name is an error.
    """
    found: dict[str, EmulatedVendor] = {}

    def register(name: str, routes: RouteFactory, base_urls: Mapping[str, str]) -> None:
        if name in found:
            raise ValueError(f"two plugins register an emulator for {name!r}")
        found[name] = EmulatedVendor(name, routes, dict(base_urls))

    for impl in reversed(pm.hook.ideochar_register_emulator.get_hookimpls()):
        try:
            impl.function(**{name: register for name in impl.argnames})  # opt-in arguments, as pluggy does
        except ValueError:
            raise
        except Exception as exc:
            broken_emulators[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
            logger.warning("plugin %s could not register its emulator: %s", impl.plugin_name, exc)
    return found


def emulated_base_urls(pm: pluggy.PluginManager, root: str) -> dict[str, dict[str, str]]:
    """Base URLs per provider that point every named URL at the emulator served at ``root``."""
    root = root.rstrip("/")
    return {name: {k: root + path for k, path in v.base_urls.items()} for name, v in collect_emulated(pm).items()}

"""Finding plugins. Nothing is loaded at ``import ideochar``: the manager is built on first use.

``IDEOCHAR_DISABLE_PLUGINS`` (comma-separated entry-point names) keeps named plugins from loading,
which is how a broken third-party plugin is switched off without uninstalling it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

import pluggy

from ideochar import hookspecs
from ideochar.spec import Provider

__all__ = ["collect_providers", "get_plugin_manager", "plugin_manager"]

logger = logging.getLogger("ideochar.plugins")
_default: pluggy.PluginManager | None = None
_lock = threading.Lock()


def plugin_manager(*, load_entrypoints: bool = True, plugins: Iterable[object] = ()) -> pluggy.PluginManager:
    """A new manager: entry-point plugins (unless told not to) plus the ``plugins`` objects given."""
    pm = pluggy.PluginManager("ideochar")
    pm.add_hookspecs(hookspecs)
    for name in filter(None, (n.strip() for n in os.environ.get("IDEOCHAR_DISABLE_PLUGINS", "").split(","))):
        pm.set_blocked(name)
    for plugin in plugins:
        pm.register(plugin)
    if load_entrypoints:
        pm.load_setuptools_entrypoints("ideochar")
    pm.check_pending()
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, built once (thread-safe) from the installed entry points."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = plugin_manager()
    return _default


#: Plugins whose provider registration raised, by plugin name -> the error (shown by ``ideochar providers``).
broken_plugins: dict[str, str] = {}


def collect_providers(pm: pluggy.PluginManager) -> dict[str, Provider]:
    """Every provider the plugins register, by name.

    Each plugin is called on its own: one that fails to import or register is logged and listed in
    :data:`broken_plugins` instead of taking every other provider down with it. A duplicate name is
    an error, not a silent override.
    """
    found: dict[str, Provider] = {}

    def register(provider: Provider) -> None:
        if not isinstance(provider, Provider):
            raise TypeError(f"register() takes a Provider, not {type(provider).__name__}")
        name = provider.info.name
        if name in found:
            raise ValueError(f"two plugins register a provider named {name!r}")
        found[name] = provider

    for impl in reversed(pm.hook.ideochar_register_providers.get_hookimpls()):
        try:
            impl.function(**{name: register for name in impl.argnames})  # opt-in arguments, as pluggy does
        except ValueError:
            raise
        except Exception as exc:
            broken_plugins[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
            logger.warning("plugin %s could not register its providers: %s", impl.plugin_name, exc)
    return found

"""The whole plugin API of ideochar. A plugin implements any of these with ``@hookimpl``.

Hooks are called with keyword arguments; an implementation may accept fewer arguments than the spec
(pluggy's opt-in arguments), so a spec can grow without breaking plugins. Built-in vendors use exactly
these hooks, through the ``ideochar`` entry-point group, like any third-party package::

    [project.entry-points.ideochar]
    myvendor = "ideochar_myvendor.plugin"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from ideochar.emulator.kit import EmulatorKit
    from ideochar.events import Event
    from ideochar.spec import Provider, ProviderInfo

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("ideochar")
hookimpl = pluggy.HookimplMarker("ideochar")

RouteFactory = Callable[["EmulatorKit"], Sequence[Any]]


@hookspec
def ideochar_register_providers(register: Callable[[Provider], None]) -> None:
    """Register the providers this plugin brings, by calling ``register(provider)`` for each."""


@hookspec
def ideochar_register_emulator(
    register: Callable[[str, RouteFactory, Mapping[str, str]], None],
) -> None:
    """Give the emulator a vendor's wire protocol: ``register(name, routes, base_urls)``.

    ``routes(kit)`` returns Starlette routes with the vendor's own paths; the emulator mounts them under
    ``/{name}``. ``base_urls`` maps the provider's base-URL names to paths under the emulator root
    (``{"queue": "/fal", "run": "/fal/run"}``), which is how a client is pointed at the emulator.
    """


@hookspec(firstresult=True)
def ideochar_resolve_credentials(provider: ProviderInfo, environ: Mapping[str, str]) -> str | None:
    """Return the key for ``provider`` (a keyring, a vault), or None to fall back to its variables."""


@hookspec
def ideochar_event(event: Event) -> None:
    """Observe a job event (attempt started, submitted, progress, retried, failed over, finished, cost).

    Called synchronously in the job's thread: it must be quick and must not raise.
    """


@hookspec
def ideochar_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``ideochar`` command line."""

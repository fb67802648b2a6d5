"""The vendor emulator: an ASGI app that speaks each vendor's wire protocol, for development and tests.

It is a stand-in like moto is for AWS: strict about requests as the vendors are, rendering real images
(labelled as emulated, never a model's output), with faults to inject and a ledger of what each vendor
would have billed. Vendors bring their routes through the ``ideochar_register_emulator`` hook, so this
package names none of them.

* ``create_app(pm)``: the ASGI app (Starlette), e.g. for ``httpx.ASGITransport`` (in-process tests);
  ``app.state.emulator`` holds its state (ledger, faults, reset).
* :mod:`ideochar.emulator.server`: ``BackgroundServer`` (a loopback port in a thread) and ``serve``
  (``ideochar emulator serve``).
* :mod:`ideochar.emulator.testing`: helpers for tests.
* :mod:`ideochar.emulator.kit`: the interface a vendor's routes are written against.

Starlette and uvicorn (the ``emulator`` extra) are imported only when an app is created.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["INSTALL_HINT", "create_app", "missing_dependencies"]

#: How to get the emulator after a plain ``pip install ideochar``.
INSTALL_HINT = 'pip install "ideochar[emulator]"'
#: The emulator's dependencies (the ``emulator`` extra).
_DEPENDENCIES = ("starlette", "uvicorn", "cryptography")


def missing_dependencies() -> list[str]:
    """The emulator's dependencies that are not installed (empty when it can run), found without importing."""
    return [name for name in _DEPENDENCIES if importlib.util.find_spec(name) is None]


def create_app(pm: Any = None, **options: Any) -> Starlette:
    """The emulator app for the vendors ``pm``'s plugins emulate (default: the installed plugins).

    Options: ``profile`` (faults), ``model_seconds`` (emulated model time, default 0), ``vendors`` (a
    subset). See :func:`ideochar.emulator.app.create_app`.
    """
    from ideochar.emulator.app import create_app as _create_app

    return _create_app(pm, **options)

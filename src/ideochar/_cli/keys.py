"""``ideochar keys``: reading a key without echoing it, and saying which keys are set where.

A key is read from a hidden prompt on a terminal, or from stdin when it is piped (``pass show fal |
ideochar keys set fal``); it is never an argument (shell history) and never printed back. ``keys list``
shows presence only: set or not, and where from.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from ideochar._cli.tables import key_is_set, key_variables
from ideochar.keystore import StoredKeys
from ideochar.spec import ProviderInfo

__all__ = ["KEY_HEADERS", "key_rows", "read_key"]

KEY_HEADERS = ("provider", "key", "from", "variables")


def read_key(provider: str) -> str:
    """The key, from a hidden prompt on a terminal or from stdin; surrounding whitespace is not part of it."""
    typed = click.prompt(f"{provider} key", hide_input=True, err=True) if sys.stdin.isatty() else sys.stdin.read()
    key = str(typed).strip()
    if not key:
        raise click.BadParameter("no key was given (type it at the prompt, or pipe it in on stdin)")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in key):
        raise click.BadParameter("a key is one line without spaces; this one has several parts")
    return key


def _stored(store: StoredKeys, name: str) -> bool | None:
    """Whether a key is stored for ``name``; None when the store cannot be read."""
    try:
        return store.get(name) is not None
    except Exception:
        return None


def key_rows(
    infos: Sequence[ProviderInfo], store: StoredKeys, environ: Mapping[str, str] | None
) -> tuple[tuple[str, ...], list[list[str]], list[dict[str, Any]]]:
    """One row per provider: whether a key is set and which source a client would use (never the key)."""
    rows: list[list[str]] = []
    document: list[dict[str, Any]] = []
    for info in infos:
        in_env = key_is_set(info, environ)
        stored = _stored(store, info.name)
        if in_env:
            key, source = "set", "environment" + (" (wins over the stored key)" if stored else "")
        elif stored:
            key, source = "set", "stored"
        else:
            key, source = "not set", "-" if stored is not None else "stored keys unreadable"
        rows.append([info.name, key, source, key_variables(info)])
        document.append(
            {"provider": info.name, "set": in_env or bool(stored), "environment": in_env, "stored": bool(stored)}
        )
    return KEY_HEADERS, rows, document

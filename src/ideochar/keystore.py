"""Keys stored once, for the command line and the library: ``ideochar keys set fal``.

A key typed at every shell is a key left in shell history and in every process's environment; users of
``llm``, the ``replicate`` and ``fal`` command lines store theirs once. Here a stored key lives in:

* the **system keyring** (macOS Keychain, Windows Credential Locker, the Secret Service on Linux) when
  the ``keyring`` package is installed (``pip install "ideochar[keys]"``) and finds a usable backend;
* otherwise a **file only you can read**: ``keys.json`` in the user configuration folder (mode 0600 in a
  0700 folder; ``~/.config/ideochar/keys.json`` on Linux). ``IDEOCHAR_KEYRING=off`` chooses the file even
  where a keyring exists (a headless server whose keyring would ask for a password).

Nothing here prints, logs or returns a key except :meth:`StoredKeys.get` to the client that sends it.

**Where a client finds a key**, first answer wins: ``keys=`` given to the client; a credentials plugin
(``ideochar_resolve_credentials``); the provider's environment variables (``FAL_KEY``); a stored key.
The environment comes before the stored key so that ``FAL_KEY=... ideochar generate`` does what it says
for one command without removing anything. This module is that last step: a plugin registered through
the ``ideochar`` entry point (``keys``), called after every other credentials plugin
(``IDEOCHAR_DISABLE_PLUGINS=keys`` switches it off).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ideochar.hookspecs import hookimpl
from ideochar.spec import ProviderInfo

__all__ = ["KEYRING_SERVICE", "StoredKeys", "ideochar_resolve_credentials", "key_store", "keys_file"]

logger = logging.getLogger("ideochar.keystore")

#: The keyring "service" every key is stored under; the provider's name is the "user".
KEYRING_SERVICE = "ideochar"
_OFF = {"off", "false", "no", "0", "file"}


def keys_file() -> Path:
    """The file keys are stored in when no keyring is used (beside your ``ideochar.toml``)."""
    from ideochar.config import user_config_file

    return user_config_file().with_name("keys.json")


@dataclass(frozen=True)
class StoredKeys:
    """One place keys are stored: the system keyring or the private file. Never shows a key."""

    backend: Literal["keyring", "file"]
    where: str
    """For a person: "the system keyring (SecretService Keyring)" or the file's path."""
    _keyring: Any = None
    _file: Path | None = None

    def get(self, provider: str) -> str | None:
        if self._keyring is not None:
            found = self._keyring.get_password(KEYRING_SERVICE, provider)
            return str(found) if found else None
        return self._read().get(provider) or None

    def set(self, provider: str, key: str) -> None:
        if self._keyring is not None:
            self._keyring.set_password(KEYRING_SERVICE, provider, key)
            return
        keys = self._read()
        keys[provider] = key
        self._write(keys)

    def delete(self, provider: str) -> bool:
        """Forget the provider's key; False when none was stored."""
        if self._keyring is not None:
            if self.get(provider) is None:
                return False
            self._keyring.delete_password(KEYRING_SERVICE, provider)
            return True
        keys = self._read()
        if keys.pop(provider, None) is None:
            return False
        self._write(keys)
        return True

    def _read(self) -> dict[str, str]:
        assert self._file is not None
        try:
            loaded = json.loads(self._file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot read the stored keys in {self._file} ({type(exc).__name__})") from None
        if not isinstance(loaded, dict):
            raise OSError(f"{self._file} does not hold stored keys")
        return {str(k): str(v) for k, v in loaded.items() if isinstance(v, str)}

    def _write(self, keys: Mapping[str, str]) -> None:
        """Owner-only folder and file, written under a temporary name and renamed (never half a file)."""
        assert self._file is not None
        folder = self._file.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".keys-", dir=folder)  # created 0600
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(dict(keys), out, indent=2, sort_keys=True)
            os.replace(temporary, self._file)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _usable_keyring() -> Any:
    """The ``keyring`` module when it is installed and has a real backend, else None."""
    try:
        import keyring  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken keyring configuration: use the file, do not fail the command
        return None
    name = f"{type(backend).__module__}.{type(backend).__name__}".lower()
    if getattr(backend, "priority", 0) <= 0 or ".fail." in name or ".null." in name:
        return None
    return keyring


def key_store(environ: Mapping[str, str] | None = None, *, keyring_module: Any = None) -> StoredKeys:
    """Where keys are stored on this machine (``keyring_module``: a stand-in keyring, for tests)."""
    env = os.environ if environ is None else environ
    ring = None if env.get("IDEOCHAR_KEYRING", "").strip().lower() in _OFF else keyring_module or _usable_keyring()
    if ring is not None:
        try:
            label = type(ring.get_keyring()).__name__
        except Exception:
            label = "keyring"
        return StoredKeys("keyring", f"the system keyring ({label}, service {KEYRING_SERVICE!r})", _keyring=ring)
    path = keys_file()
    return StoredKeys("file", str(path), _file=path)


def _set_in_environment(provider: ProviderInfo, environ: Mapping[str, str]) -> bool:
    return any(all(environ.get(v, "").strip() for v in alt) for alt in provider.credential_variables)


@hookimpl(trylast=True)
def ideochar_resolve_credentials(provider: ProviderInfo, environ: Mapping[str, str]) -> str | None:
    """The stored key, unless the provider's variables are set (the environment wins) or none is stored."""
    if _set_in_environment(provider, environ):
        return None
    try:
        return key_store(environ).get(provider.name)
    except Exception as exc:  # an unreadable store must not hide the other ways of giving a key
        logger.warning("stored keys could not be read (%s); using the environment only", type(exc).__name__)
        return None

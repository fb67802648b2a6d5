"""Configuration: switch vendor, order, budget and deadlines without changing code.

Three layers, each overriding the one before:

1. a file: ``IDEOCHAR_CONFIG`` names it, else the nearest ``ideochar.toml`` or a ``pyproject.toml``
   with a ``[tool.ideochar]`` table, searching from the working folder upwards;
2. environment variables (:data:`ENVIRONMENT`), e.g. ``IDEOCHAR_PROVIDERS=segmind,fal``;
3. the arguments given to :class:`~ideochar.client.Client` (anything not ``None``).

Example ``ideochar.toml``::

    providers = ["fal", "segmind"]      # failover order
    strategy = "cheapest"               # as_listed | cheapest | fastest
    max_cost_usd = 0.50                 # per request; refused before anything is sent
    deadline_seconds = 120              # bounds every HTTP call of one request
    on_outcome_unknown = "raise"        # or "fail_over"
    journal = "~/jobs/ideochar.sqlite3" # or false; default: the user data folder
    output_dir = "~/jobs/images"

    [breaker]
    failure_threshold = 5
    cooldown_seconds = 30

    [base_urls.fal]
    queue = "http://127.0.0.1:8080/fal"

    [options.fal]
    mode = "queue"

    [limits.segmind]
    requests_per_minute = 60            # your plan's RPM

**Keys never come from a file.** A file is easy to commit by accident, so a field that looks like a
credential (``key``, ``api_key``, ``token``, ``secret``, ...) anywhere in it is refused with a message
saying where keys belong: the provider's environment variable, a credentials plugin, or ``keys=``.

Every value is checked by pydantic; a bad one raises :class:`ConfigError` naming the key and where it
came from (the file's path, or the environment variable).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ideochar._constants import DEFAULT_DEADLINE_SECONDS, MAX_RETRY_AFTER_SECONDS
from ideochar.breaker import DEFAULT_COOLDOWN_SECONDS, DEFAULT_FAILURE_THRESHOLD
from ideochar.errors import InvalidRequest
from ideochar.router import Strategy

__all__ = [
    "CONFIG_FILE_NAME",
    "ENVIRONMENT",
    "BreakerSettings",
    "ConfigError",
    "LimitSettings",
    "Settings",
    "default_data_dir",
    "find_config_file",
    "load_settings",
]

CONFIG_FILE_NAME = "ideochar.toml"

#: Environment variable -> setting. Values are parsed as the setting's type; "none"/"off" clear a value.
ENVIRONMENT: Mapping[str, str] = {
    "IDEOCHAR_PROVIDERS": "providers",
    "IDEOCHAR_STRATEGY": "strategy",
    "IDEOCHAR_MAX_COST_USD": "max_cost_usd",
    "IDEOCHAR_DEADLINE_SECONDS": "deadline_seconds",
    "IDEOCHAR_JOURNAL": "journal",
    "IDEOCHAR_OUTPUT_DIR": "output_dir",
    "IDEOCHAR_FAN_OUT": "fan_out",
    "IDEOCHAR_STRICT": "strict",
    "IDEOCHAR_ON_OUTCOME_UNKNOWN": "on_outcome_unknown",
}
_OFF = {"", "none", "off", "false", "no", "0"}
_ON = {"on", "true", "yes", "1", "default"}

#: A field name that looks like a credential. Matched on each part of a dotted path, case-insensitively.
_KEY_LIKE = re.compile(
    r"(^|[_-])(api[_-]?)?(keys?|secrets?|tokens?|passwords?|passwd|credentials?|authorization|auth|bearer)$",
    re.IGNORECASE,
)


class ConfigError(InvalidRequest):
    """A configuration value is wrong; the message names the key and the file or variable it came from."""


class BreakerSettings(BaseModel):
    # Built on first use, not at import (importing ideochar stays light).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, defer_build=True)

    failure_threshold: Annotated[int, Field(ge=1)] = DEFAULT_FAILURE_THRESHOLD
    """Consecutive provider faults (unavailable, no answer) that open its breaker."""
    cooldown_seconds: Annotated[float, Field(ge=0)] = DEFAULT_COOLDOWN_SECONDS
    """How long an open breaker skips its provider before one probe is let through."""


class LimitSettings(BaseModel):
    # Built on first use, not at import (importing ideochar stays light).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, defer_build=True)

    max_images_in_flight: Annotated[int, Field(ge=1)] | None = None
    """Images in progress at once for this account (overrides the provider's declared cap)."""
    requests_per_minute: Annotated[int, Field(ge=1)] | None = None
    """Job-creating calls per minute (your plan's RPM)."""


class Settings(BaseModel):
    """Everything a client can be configured with, after the three layers are merged."""

    # Built on first use, not at import (importing ideochar stays light).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, defer_build=True)

    providers: list[str] | None = None
    """Provider names in failover order; None: every installed provider."""
    strategy: Strategy = "as_listed"
    max_cost_usd: Annotated[Decimal, Field(ge=0)] | None = None
    """Budget per request: providers quoting more are skipped before anything is sent."""
    deadline_seconds: Annotated[float, Field(gt=0)] | None = DEFAULT_DEADLINE_SECONDS
    """Bound on every HTTP call of one request, retries, waits and failover included; None: no bound."""
    fan_out: bool = True
    """Allow a count a vendor cannot make in one call to be split into several calls."""
    strict: bool = False
    on_outcome_unknown: Literal["raise", "fail_over"] = "raise"
    """After a lost answer (the job may run and bill): raise, or try the next provider."""
    connect_retries: Annotated[int, Field(ge=0, le=10)] = 2
    rate_limit_retries: Annotated[int, Field(ge=0, le=10)] = 2
    max_retry_after_seconds: Annotated[float, Field(ge=0)] = MAX_RETRY_AFTER_SECONDS
    journal: bool | Path = True
    """The journal's SQLite file; True: in the user data folder; False: no journal."""
    output_dir: Path | None = None
    """Where the journal writes images as they arrive; None: ``outputs`` beside the journal."""
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    base_urls: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Per provider, named base URLs to override (a proxy, the emulator)."""
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per provider, vendor-only defaults (validated by each provider's options model)."""
    limits: dict[str, LimitSettings] = Field(default_factory=dict)

    @field_validator("providers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()] or None
        return value

    @field_validator("journal", mode="before")
    @classmethod
    def _journal(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in _OFF:
            return False
        if isinstance(value, str) and value.strip().lower() in _ON:
            return True
        return value

    @property
    def journal_path(self) -> Path | None:
        """The journal file to use, or None when the journal is off."""
        if self.journal is False:
            return None
        if self.journal is True:
            return default_data_dir() / "journal.sqlite3"
        return Path(self.journal).expanduser()

    @property
    def outputs_path(self) -> Path | None:
        if self.output_dir is not None:
            return Path(self.output_dir).expanduser()
        journal = self.journal_path
        return None if journal is None else journal.parent / "outputs"


def default_data_dir() -> Path:
    """The user data folder (``~/.local/share/ideochar`` on Linux; platformdirs decides elsewhere)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("ideochar", appauthor=False))


# -- finding and reading the file ---------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    import importlib

    toml: Any = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    try:
        with path.open("rb") as handle:
            document: dict[str, Any] = toml.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return document


def find_config_file(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``ideochar.toml``, or ``pyproject.toml`` with ``[tool.ideochar]``, from ``start`` up."""
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        own = candidate / CONFIG_FILE_NAME
        if own.is_file():
            return own, _read_toml(own)
        project = candidate / "pyproject.toml"
        if project.is_file():
            table = _read_toml(project).get("tool", {}).get("ideochar")
            if isinstance(table, dict):
                return project, table
    return None


def _load_file(path: Path) -> dict[str, Any]:
    document = _read_toml(path)
    if path.name == "pyproject.toml":
        table = document.get("tool", {}).get("ideochar")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: has no [tool.ideochar] table")
        return table
    return document


def _reject_keys(document: Mapping[str, Any], where: str, prefix: str = "") -> None:
    for name, value in document.items():
        path = f"{prefix}{name}"
        if _KEY_LIKE.search(str(name)):
            raise ConfigError(
                f"{where}: {path}: looks like a credential. Keys are never read from a configuration file "
                "(it is too easy to commit): set the provider's environment variable (ideochar providers "
                "lists them), use a credentials plugin, or pass keys= to the client."
            )
        if isinstance(value, Mapping):
            _reject_keys(value, where, f"{path}.")


def _relative_paths(document: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Paths in a file are relative to the file, not to wherever the program runs."""
    out = dict(document)
    for name in ("journal", "output_dir"):
        value = out.get(name)
        if isinstance(value, str) and value.strip().lower() not in _OFF | _ON:
            path = Path(value).expanduser()
            out[name] = str(path if path.is_absolute() else folder / path)
    return out


def _from_environment(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    for variable, name in ENVIRONMENT.items():
        raw = environ.get(variable)
        if raw is None or not raw.strip():
            continue
        value: Any = raw.strip()
        if name in ("max_cost_usd", "deadline_seconds") and value.lower() in _OFF - {"0"}:
            value = None
        found[name] = (value, f"environment variable {variable}")
    return found


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name, value in top.items():
        if name in ("base_urls", "options", "limits", "breaker") and isinstance(value, Mapping):
            merged = dict(out.get(name) or {})
            for sub, inner in value.items():
                if isinstance(inner, Mapping) and isinstance(merged.get(sub), Mapping):
                    merged[sub] = {**merged[sub], **inner}
                else:
                    merged[sub] = inner
            out[name] = merged
        else:
            out[name] = value
    return out


def load_settings(
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | Literal[False] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge the file, the environment and ``overrides`` (keys whose value is None are ignored).

    ``config``: a path to a TOML file, a mapping (already parsed), False to read no file, or None to
    find one (``IDEOCHAR_CONFIG``, then the search from ``cwd`` upwards).
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    file_part: dict[str, Any] = {}
    where = "configuration"
    if isinstance(config, Mapping):
        file_part = dict(config)
    elif config is not False:
        named = config if config is not None else environ.get("IDEOCHAR_CONFIG", "").strip() or None
        if named is not None and str(named).strip().lower() in _OFF:
            named = None
            found = None
        elif named is not None:
            path = Path(named).expanduser()
            if not path.is_file():
                raise ConfigError(f"{path}: no such configuration file (from IDEOCHAR_CONFIG or config=)")
            found = (path, _load_file(path))
        else:
            found = find_config_file(cwd)
        if found is not None:
            path, file_part = found
            where = str(path)
            file_part = _relative_paths(file_part, path.parent)
    _reject_keys(file_part, where)
    merged = _merge(merged, file_part)
    sources.update({name: where for name in file_part})
    for name, (value, source) in _from_environment(environ).items():
        merged[name] = value
        sources[name] = source
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged = _merge(merged, given)
    sources.update({name: "the client's arguments" for name in given})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        key = ".".join(loc) or "(top level)"
        source = sources.get(loc[0], where) if loc else where
        if first["type"] == "extra_forbidden":
            known = ", ".join(sorted(Settings.model_fields))
            problem = f"unknown setting (known: {known})" if len(loc) == 1 else "unknown setting"
        else:
            problem = first["msg"]
        raise ConfigError(f"{source}: {key}: {problem}", problems=[(key, problem)]) from None

"""Configuration: switch vendor, order, budget and deadlines without changing code.

Layers, each overriding the one before:

1. your own file, ``ideochar.toml`` in the user configuration folder (:func:`user_config_file`:
   ``~/.config/ideochar/ideochar.toml`` on Linux);
2. the project's file: the one named by ``config=`` (``--config``) or ``IDEOCHAR_CONFIG``, else the
   nearest ``ideochar.toml`` or ``pyproject.toml`` with a ``[tool.ideochar]`` table, searching from the
   working folder upwards;
3. environment variables (:data:`ENVIRONMENT`), e.g. ``IDEOCHAR_PROVIDERS=segmind,fal``;
4. the arguments given to :class:`~ideochar.client.Client` (anything not ``None``).

Example ``ideochar.toml``::

    providers = ["fal", "segmind"]      # failover order
    strategy = "cheapest"               # as_listed | cheapest | fastest
    max_cost_usd = 0.50                 # per request; refused before anything is sent
    deadline_seconds = 120              # bounds every HTTP call of one request
    on_outcome_unknown = "raise"        # or "fail_over"
    journal = "~/jobs/ideochar.sqlite3" # or false; default: the user data folder
    output_dir = "~/jobs/images"
    # A fleet (docs/howto/fleet.md): one journal and one set of limits for every worker.
    journal_url = "postgresql://ideochar@db.internal/ideochar"   # wins over journal
    state_url = "redis://redis.internal:6379/0"                  # default: in-process
    budget_usd = 150                    # what every job together may spend (the fleet's, with state_url)

    [breaker]
    failure_threshold = 5
    cooldown_seconds = 30

    [base_urls.fal]
    queue = "https://fal-proxy.example.com/queue"

    [options.fal]
    mode = "queue"

    [limits.segmind]
    requests_per_minute = 60            # your plan's RPM

**A found file is not trusted.** A file found by searching from the working folder may belong to
someone else: a cloned repository, or a shared parent such as the temporary folder. It may choose among
your providers and bound time and money (:data:`FOUND_FILE_SETTINGS`), but the settings that send keys
or images somewhere, or name files (:data:`CALLER_ONLY_SETTINGS`: ``base_urls``, ``options``, ``journal``,
``output_dir``), are ignored there with a warning naming the file and the key. They come only from the
caller: arguments, ``IDEOCHAR_*`` variables, a file named explicitly, or your own configuration folder.

**Base URLs are checked.** Each is an absolute ``https`` URL, or ``http`` to a host that never leaves
this machine (127.0.0.0/8, ::1, ``localhost``, and the reserved names ``*.localhost``, ``*.test``,
``*.invalid``), with no user, password, query or fragment; anything else is a :class:`ConfigError`
naming the setting, before anything is sent. The emulator (``emulator=``) replaces every base URL.

**Keys never come from a file.** A file is easy to commit by accident, so a field that looks like a
credential (``key``, ``api_key``, ``token``, ``secret``, ...) anywhere in it is refused with a message
saying where keys belong: the provider's environment variable, a credentials plugin, or ``keys=``.

Every value is checked by pydantic; a bad one raises :class:`ConfigError` naming the key and where it
came from (the file's path, or the environment variable).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ideochar._constants import DEFAULT_DEADLINE_SECONDS, MAX_RETRY_AFTER_SECONDS
from ideochar.breaker import DEFAULT_COOLDOWN_SECONDS, DEFAULT_FAILURE_THRESHOLD
from ideochar.errors import InvalidRequest
from ideochar.router import Strategy

if TYPE_CHECKING:
    from ideochar.spec import ProviderInfo

__all__ = [
    "CALLER_ONLY_SETTINGS",
    "CONFIG_FILE_NAME",
    "ENVIRONMENT",
    "FOUND_FILE_SETTINGS",
    "BreakerSettings",
    "ConfigError",
    "LimitSettings",
    "Settings",
    "check_base_url",
    "default_data_dir",
    "effective_base_urls",
    "find_config_file",
    "load_settings",
    "plain_http_allowed",
    "user_config_file",
]

logger = logging.getLogger("ideochar.config")

CONFIG_FILE_NAME = "ideochar.toml"

#: Environment variable -> setting. Values are parsed as the setting's type; "none"/"off" clear a value.
#: ``IDEOCHAR_BASE_URLS`` holds ``PROVIDER.NAME=URL`` pairs separated by commas or spaces.
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
    "IDEOCHAR_BASE_URLS": "base_urls",
    "IDEOCHAR_JOURNAL_URL": "journal_url",
    "IDEOCHAR_STATE_URL": "state_url",
    "IDEOCHAR_STATE_FALLBACK": "state_fallback",
    "IDEOCHAR_BUDGET_USD": "budget_usd",
    "IDEOCHAR_BUDGET_NAME": "budget_name",
}

#: Settings a file found by searching from the working folder may set. They choose among the providers
#: the caller installed and keyed, and bound time, money and retries; none sends anything anywhere new
#: or names a file.
FOUND_FILE_SETTINGS: frozenset[str] = frozenset(
    {
        "providers",
        "strategy",
        "max_cost_usd",
        "deadline_seconds",
        "fan_out",
        "strict",
        "on_outcome_unknown",
        "connect_retries",
        "rate_limit_retries",
        "max_retry_after_seconds",
        "breaker",
        "limits",
        "budget_usd",
        "budget_name",
    }
)

#: Settings only the caller may set (arguments, ``IDEOCHAR_*`` variables, a file named explicitly, the
#: user's configuration folder), each with the reason a found file may not. Every setting is in exactly
#: one of this and :data:`FOUND_FILE_SETTINGS` (a test fails on a new setting that is in neither).
CALLER_ONLY_SETTINGS: Mapping[str, str] = {
    "base_urls": "it would send your keys and images to the hosts it names",
    "options": "vendor options can send your images and results elsewhere (a webhook, say)",
    "journal": "it names the file your prompts, images and vendor ids are written to and resumed from",
    "output_dir": "it names the folder your images are written to",
    "journal_url": "it names the database your prompts, images and vendor ids are written to and resumed from",
    "state_url": "it names the server your limits, breakers and spend are shared through",
    "state_fallback": "it decides whether limits shared by a fleet may become per-process ones when the server is down",
}

_OFF = {"", "none", "off", "false", "no", "0"}
_ON = {"on", "true", "yes", "1", "default"}
_TABLES = ("base_urls", "options", "limits", "breaker")

#: A field name that looks like a credential. Matched on each part of a dotted path, case-insensitively.
_KEY_LIKE = re.compile(
    r"(^|[_-])(api[_-]?)?(keys?|secrets?|tokens?|passwords?|passwd|credentials?|authorization|auth|bearer)$",
    re.IGNORECASE,
)

#: A host as httpx hands it over: a name (IDNA already applied), an IPv4 address or an IPv6 one.
_HOST = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]+")

#: Reserved names public DNS never answers (RFC 6761): the emulator's in-process roots use them.
_RESERVED_SUFFIXES = (".localhost", ".test", ".invalid")

#: (file, setting) pairs already warned about in this process: a server building a client per request
#: logs each ignored setting once, not once per request.
_warned: set[tuple[str, str]] = set()


class ConfigError(InvalidRequest):
    """A configuration value is wrong; the message names the key and the file or variable it came from."""


# -- base URLs --------------------------------------------------------------------------------------------


def plain_http_allowed(host: str) -> bool:
    """May a base URL use plain http to ``host``? Only when the traffic cannot leave this machine.

    True for loopback addresses (127.0.0.0/8, ::1, IPv4-mapped loopback), ``localhost`` and the reserved
    names under ``.localhost``, ``.test`` and ``.invalid``. Anything else, a private address included,
    is a network where a key sent in clear can be read.
    """
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(_RESERVED_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _shown(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` for a message: never its user, password, path or query."""
    try:
        parsed = httpx.URL(url)
        port = f":{parsed.port}" if parsed.port else ""
    except (httpx.InvalidURL, ValueError):
        return "it"
    host = parsed.raw_host.decode("ascii", "replace")
    return f"{parsed.scheme}://{host}{port}" if parsed.scheme and host else "it"


def check_base_url(url: str) -> str:
    """``url`` if it may carry a key, else ``ValueError`` saying why (without repeating the URL's secrets).

    A base URL receives the vendor's key and the caller's images: it must be absolute, ``https`` unless
    :func:`plain_http_allowed`, and carry no user, password, query or fragment (a secret there would be
    logged and shown wherever the URL is). It is read with httpx's parser, the one the requests are sent
    with, so the host judged here is the host connected to.
    """
    if not isinstance(url, str) or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("must be a URL without spaces or control characters")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError):  # IDNA errors are ValueErrors
        raise ValueError("is not a valid URL") from None
    host = parsed.raw_host.decode("ascii", "replace").lower()
    if parsed.scheme not in ("http", "https") or not host:
        raise ValueError("must be an absolute http(s) URL, e.g. https://proxy.example/queue")
    if parsed.userinfo:
        raise ValueError("must not carry a user or password (keys go in the provider's environment variable)")
    if not _HOST.fullmatch(host) or (port is not None and not 0 < port < 65536):
        raise ValueError("is not a valid URL")
    if parsed.query or parsed.fragment or url.endswith(("?", "#")):
        raise ValueError("must not have a query or fragment")
    if parsed.scheme == "http" and not plain_http_allowed(host):
        raise ValueError(
            f"must be https: plain http to {_shown(url)} would send the key and images readable on the network "
            "(http is allowed only to this machine: 127.0.0.1, ::1, localhost)"
        )
    return url


#: A base URL that passed :func:`check_base_url`.
BaseUrl = Annotated[str, AfterValidator(check_base_url)]


def effective_base_urls(
    info: ProviderInfo, configured: Mapping[str, str], emulated: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The base URLs one provider's calls use: where its key may go, and nowhere else.

    With the emulator (``emulated`` given) only the emulator's URLs, whatever is configured: an emulated
    run never reaches a configured host or a vendor, and a provider no plugin emulates is refused.
    Otherwise the provider's declared URLs with ``configured`` on top; a configured name the provider
    does not declare is refused (a typo would otherwise leave traffic on the vendor's own host while you
    think it goes through your proxy). Every URL is checked by :func:`check_base_url`.
    """
    if emulated is not None:
        if info.base_urls and not emulated:
            problem = (
                f"no installed plugin emulates {info.name}, and under the emulator nothing may reach its own "
                "hosts: choose emulated providers (-p, providers=) or run without the emulator"
            )
            raise ConfigError(f"emulator: {problem}", problems=[("emulator", problem)])
        return {name: _checked(url, "emulator") for name, url in emulated.items()}
    unknown = sorted(set(configured) - set(info.base_urls))
    if unknown:
        key = f"base_urls.{info.name}.{unknown[0]}"
        problem = f"{info.name} has no base URL named {unknown[0]!r} (it has: {', '.join(sorted(info.base_urls))})"
        raise ConfigError(f"{key}: {problem}", problems=[(key, problem)])
    urls = {**info.base_urls, **configured}
    return {
        name: _checked(
            url, f"base_urls.{info.name}.{name}", "" if name in configured else " (declared by the provider)"
        )
        for name, url in urls.items()
    }


def _checked(url: str, key: str, note: str = "") -> str:
    try:
        return check_base_url(url)
    except ValueError as exc:
        raise ConfigError(f"{key}{note}: {exc}", problems=[(key, str(exc))]) from None


# -- the settings -----------------------------------------------------------------------------------------


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
    """Everything a client can be configured with, after the layers are merged."""

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
    """The journal's SQLite file; True: in the user data folder; False: no journal. Not from a found file."""
    output_dir: Path | None = None
    """Where the journal writes images as they arrive; None: ``outputs`` beside the journal. Not from a
    found file."""
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    base_urls: dict[str, dict[str, BaseUrl]] = Field(default_factory=dict)
    """Per provider, named base URLs to override (a proxy): https, or http to this machine only. Not from
    a found file; the emulator replaces them all."""
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per provider, vendor-only defaults (validated by each provider's options model). Not from a found
    file."""
    limits: dict[str, LimitSettings] = Field(default_factory=dict)
    journal_url: str | None = None
    """A PostgreSQL journal a fleet shares (``postgresql://...``); wins over ``journal``. Not from a found file."""
    state_url: str | None = None
    """Where the router's shared state lives (limits, breakers, spend): ``redis://...``, or None / ``memory``
    for this process only. Not from a found file."""
    state_fallback: Literal["fail_closed", "local"] = "fail_closed"
    """When the state server cannot be reached: admit nothing (default), or fall back to this process's own
    limits (a fleet may then send up to its size times a vendor's limit). Not from a found file."""
    budget_usd: Annotated[Decimal, Field(ge=0)] | None = None
    """What every job together may spend, reserved at its quote before each send: this process's jobs, or
    the whole fleet's with a shared ``state_url``. None: no such cap (``max_cost_usd`` is per request)."""
    budget_name: Annotated[str, Field(min_length=1, max_length=200)] = "default"
    """Which budget's counters ``budget_usd`` caps (jobs with different names never share spend)."""

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

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

    @field_validator("journal_url", mode="before")
    @classmethod
    def _journal_url(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in _OFF:
            return None
        if value is not None and not str(value).strip().lower().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (a SQLite file goes in journal)")
        return value

    @field_validator("state_url", mode="before")
    @classmethod
    def _state_url(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in _OFF | {"memory", "memory://"}:
            return None
        if value is not None and not str(value).strip().lower().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL, or memory")
        return value

    @property
    def journal_location(self) -> str | Path | None:
        """The journal to open: its PostgreSQL URL, its SQLite file, or None when it is off."""
        if self.journal is False:
            return None
        return self.journal_url or self.journal_path

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
        if self.journal_url is not None:
            return default_data_dir() / "outputs"
        journal = self.journal_path
        return None if journal is None else journal.parent / "outputs"

    def source_of(self, key: str) -> str | None:
        """Where a setting's value came from (``"base_urls.fal.queue"`` -> ``"environment variable
        IDEOCHAR_BASE_URLS"``, a file's path, ``"the client's arguments"``), or None for a default.
        The command line uses it to say where a base URL was set."""
        parts = key.split(".")
        while parts:
            found = self._sources.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return None


def default_data_dir() -> Path:
    """The user data folder (``~/.local/share/ideochar`` on Linux; platformdirs decides elsewhere)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("ideochar", appauthor=False))


def user_config_file() -> Path:
    """Your own configuration file (``~/.config/ideochar/ideochar.toml`` on Linux; platformdirs decides
    elsewhere). Trusted like a file named explicitly: it sits in your home, not in a folder you run in."""
    import platformdirs

    return Path(platformdirs.user_config_dir("ideochar", appauthor=False)) / CONFIG_FILE_NAME


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
    """The nearest ``ideochar.toml``, or ``pyproject.toml`` with ``[tool.ideochar]``, from ``start`` up.

    What it finds is not trusted: :func:`load_settings` keeps only :data:`FOUND_FILE_SETTINGS` from it.
    """
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


def _leaves(value: Any, prefix: str) -> Iterator[str]:
    """Dotted paths of the values in a table (``base_urls.fal.queue``), or ``prefix`` for a plain value."""
    if isinstance(value, Mapping) and value:
        for name, inner in value.items():
            yield from _leaves(inner, f"{prefix}.{name}")
    else:
        yield prefix


def _found_file_part(document: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """What a found file may set: :data:`CALLER_ONLY_SETTINGS` are dropped, each with one warning."""
    kept: dict[str, Any] = {}
    for name, value in document.items():
        why = CALLER_ONLY_SETTINGS.get(name)
        if why is None:
            kept[name] = value
            continue
        if (str(path), name) in _warned:
            continue
        _warned.add((str(path), name))
        logger.warning(
            "%s: ignoring %s: this file was found by searching from the working folder, and %s. To use it, "
            "name the file (--config, config= or IDEOCHAR_CONFIG) or put the setting in %s.",
            path,
            ", ".join(_leaves(value, name)),
            why,
            user_config_file(),
        )
    return kept


def _base_urls_variable(raw: str, variable: str) -> dict[str, dict[str, str]]:
    """``fal.queue=https://a/q fal.run=https://a/r`` (commas or spaces between pairs) as a table.

    A malformed pair is named by its position only: the text might be anything, a key pasted by mistake
    included, and error messages are shown and logged.
    """
    table: dict[str, dict[str, str]] = {}
    for position, pair in enumerate(raw.replace(",", " ").split(), 1):
        key, sep, url = pair.partition("=")
        provider, dot, name = key.partition(".")
        if not (sep and dot and provider and name and url):
            problem = f"pair {position} is not PROVIDER.NAME=URL (e.g. fal.queue=https://proxy.example/queue)"
            raise ConfigError(
                f"environment variable {variable}: base_urls: {problem}", problems=[("base_urls", problem)]
            )
        table.setdefault(provider, {})[name] = url
    return table


def _from_environment(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    for variable, name in ENVIRONMENT.items():
        raw = environ.get(variable)
        if raw is None or not raw.strip():
            continue
        value: Any = raw.strip()
        if name in ("max_cost_usd", "deadline_seconds", "budget_usd") and value.lower() in _OFF - {"0"}:
            value = None
        elif name == "base_urls":
            value = _base_urls_variable(value, variable)
        found[name] = (value, f"environment variable {variable}")
    return found


@dataclass(frozen=True)
class _Layer:
    """One source of settings: where it is (for messages) and what it sets."""

    where: str
    values: Mapping[str, Any]


def _named_file(config: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | Literal[False] | None:
    """The file the caller names (``config=``, else ``IDEOCHAR_CONFIG``); False: no file at all."""
    named = config if config is not None else environ.get("IDEOCHAR_CONFIG", "").strip() or None
    if named is None:
        return None
    if str(named).strip().lower() in _OFF:
        return False
    path = Path(named).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file (from IDEOCHAR_CONFIG or config=)")
    return path


def _file_layer(path: Path, *, found: bool) -> _Layer:
    document = _load_file(path)
    _reject_keys(document, str(path))
    values = _relative_paths(document, path.parent)
    return _Layer(str(path), _found_file_part(values, path) if found else values)


def _file_layers(
    config: str | os.PathLike[str] | Mapping[str, Any] | Literal[False] | None,
    environ: Mapping[str, str],
    cwd: Path | None,
) -> list[_Layer]:
    """Your own file, then the project's: the one named (trusted), else the one found (filtered)."""
    if config is False:
        return []
    named = None if isinstance(config, Mapping) else _named_file(config, environ)
    if named is False:
        return []
    layers = []
    user = user_config_file()
    if user.is_file():
        layers.append(_file_layer(user, found=False))
    if isinstance(config, Mapping):
        _reject_keys(config, "configuration")
        layers.append(_Layer("configuration", dict(config)))
    elif named is not None:
        layers.append(_file_layer(named, found=False))
    else:
        found = find_config_file(cwd)
        if found is not None:
            layers.append(_file_layer(found[0], found=True))
    return layers


def _merge(base: dict[str, Any], layer: _Layer, sources: dict[str, str]) -> dict[str, Any]:
    """``layer`` over ``base``, tables merged two levels deep; ``sources`` learns where each value came from."""
    out = dict(base)
    for name, value in layer.values.items():
        if name in _TABLES and isinstance(value, Mapping):
            merged = dict(out.get(name) or {})
            for sub, inner in value.items():
                if isinstance(inner, Mapping) and isinstance(merged.get(sub), Mapping):
                    merged[sub] = {**merged[sub], **inner}
                else:
                    merged[sub] = inner
            out[name] = merged
            sources.update(dict.fromkeys(_leaves(value, name), layer.where))
        else:
            out[name] = value
            sources[name] = layer.where
    return out


def _source(sources: Mapping[str, str], loc: list[str], default: str) -> str:
    for end in range(len(loc), 0, -1):
        found = sources.get(".".join(loc[:end]))
        if found is not None:
            return found
    return default


def _config_error(exc: ValidationError, sources: Mapping[str, str]) -> ConfigError:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc) or "(top level)"
    source = _source(sources, loc, "configuration")
    if first["type"] == "extra_forbidden":
        known = ", ".join(sorted(Settings.model_fields))
        problem = f"unknown setting (known: {known})" if len(loc) == 1 else "unknown setting"
    else:
        problem = str(first["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{source}: {key}: {problem}", problems=[(key, problem)])


def load_settings(
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | Literal[False] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge your file, the project's file, the environment and ``overrides`` (None values are ignored).

    ``config``: a path to a TOML file, a mapping (already parsed), False to read no file (your own
    included), or None to use ``IDEOCHAR_CONFIG`` or else search from ``cwd`` upwards. A file named here
    or by ``IDEOCHAR_CONFIG`` is trusted; a file found by the search is not, and only its
    :data:`FOUND_FILE_SETTINGS` apply (the others are logged as ignored on the ``ideochar.config`` logger).
    """
    environ = os.environ if environ is None else environ
    layers = _file_layers(config, environ, cwd)
    for name, (value, where) in _from_environment(environ).items():
        layers.append(_Layer(where, {name: value}))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    layers.append(_Layer("the client's arguments", given))
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        merged = _merge(merged, layer, sources)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise _config_error(exc, sources) from None
    settings._sources = sources
    return settings

"""Where keys may go: what a found file may set, which base URLs are accepted, and the emulator winning.

A file found by searching from the working folder may belong to someone else (a cloned repository, a
shared parent such as the temporary folder), so it may not set anything that sends keys or images
elsewhere or names files. Base URLs come only from the caller and are https unless local.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import CANARY_KEY
from ideochar.config import (
    CALLER_ONLY_SETTINGS,
    ENVIRONMENT,
    FOUND_FILE_SETTINGS,
    ConfigError,
    Settings,
    check_base_url,
    effective_base_urls,
    load_settings,
    plain_http_allowed,
    user_config_file,
)
from ideochar.spec import ProviderInfo

#: A value for every caller-only setting, as a found file would write it.
CALLER_ONLY_SAMPLES: dict[str, str] = {
    "base_urls": '[base_urls.fal]\nqueue = "https://attacker.example/queue"\n',
    "options": '[options.replicate]\nwebhook = "https://attacker.example/hook"\n',
    "journal": 'journal = "shared/journal.sqlite3"\n',
    "output_dir": 'output_dir = "shared/images"\n',
    "journal_url": 'journal_url = "postgresql://attacker.example/jobs"\n',
    "state_url": 'state_url = "redis://attacker.example:6379/0"\n',
    "state_fallback": 'state_fallback = "local"\n',
}
SAFE = 'providers = ["fal", "segmind"]\nstrategy = "cheapest"\nmax_cost_usd = 0.3\ndeadline_seconds = 60\n'


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def pyproject(table: str) -> str:
    """``table`` (top-level TOML, its sub-tables last) as the ``[tool.ideochar]`` table of a pyproject.toml."""
    return '[project]\nname = "someone-elses"\n\n[tool.ideochar]\n' + re.sub(
        r"^\[", "[tool.ideochar.", table, flags=re.M
    )


# -- the classification ---------------------------------------------------------------------------------


def test_every_setting_is_classified_exactly_once() -> None:
    fields = set(Settings.model_fields)
    both = FOUND_FILE_SETTINGS & set(CALLER_ONLY_SETTINGS)
    unclassified = fields - FOUND_FILE_SETTINGS - set(CALLER_ONLY_SETTINGS)
    assert not both, f"in both FOUND_FILE_SETTINGS and CALLER_ONLY_SETTINGS: {sorted(both)}"
    assert not unclassified, (
        f"classify {sorted(unclassified)} in ideochar.config: FOUND_FILE_SETTINGS if a file someone else "
        "wrote may set it, CALLER_ONLY_SETTINGS if it can send keys or images elsewhere or names a file"
    )
    assert FOUND_FILE_SETTINGS | set(CALLER_ONLY_SETTINGS) == fields  # nothing classified that is not a setting
    assert set(CALLER_ONLY_SAMPLES) == set(CALLER_ONLY_SETTINGS), "give the new caller-only setting a sample"


# -- a found file ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", sorted(CALLER_ONLY_SETTINGS))
@pytest.mark.parametrize("file_name", ["ideochar.toml", "pyproject.toml"])
def test_a_found_file_cannot_set_a_caller_only_setting(
    tmp_path: Path, setting: str, file_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    text = SAFE + CALLER_ONLY_SAMPLES[setting]
    found = write(tmp_path, file_name, pyproject(text) if file_name == "pyproject.toml" else text)
    with caplog.at_level(logging.WARNING, logger="ideochar.config"):
        settings = load_settings(environ={}, cwd=tmp_path / "checkout" / "src")
    expected = Settings(
        providers=["fal", "segmind"], strategy="cheapest", max_cost_usd=Decimal("0.3"), deadline_seconds=60
    )
    assert settings.model_dump() == expected.model_dump()  # the harmless settings apply, nothing else
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith(f"{found}: ignoring {setting}")
    assert "--config" in message and "IDEOCHAR_CONFIG" in message and str(user_config_file()) in message


def test_a_found_files_warning_names_each_key_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = '[base_urls.fal]\nqueue = "https://a.example/q"\nrun = "https://a.example/r"\n'
    found = write(tmp_path, "ideochar.toml", text)
    with caplog.at_level(logging.WARNING, logger="ideochar.config"):
        load_settings(environ={}, cwd=tmp_path)
        load_settings(environ={}, cwd=tmp_path)  # a server building a client per request: one warning
    [record] = caplog.records
    assert record.getMessage().startswith(f"{found}: ignoring base_urls.fal.queue, base_urls.fal.run:")


@pytest.mark.parametrize("how", ["config=", "IDEOCHAR_CONFIG"])
def test_a_named_file_is_trusted_with_every_setting(tmp_path: Path, how: str) -> None:
    samples = sorted(CALLER_ONLY_SAMPLES.values(), key=lambda text: text.startswith("["))  # tables last
    path = write(tmp_path, "ideochar.toml", SAFE + "".join(samples))
    if how == "config=":
        settings = load_settings(config=path, environ={}, cwd=tmp_path)
    else:
        settings = load_settings(environ={"IDEOCHAR_CONFIG": str(path)}, cwd=tmp_path)
    assert settings.base_urls == {"fal": {"queue": "https://attacker.example/queue"}}
    assert settings.options == {"replicate": {"webhook": "https://attacker.example/hook"}}
    assert settings.journal_path == tmp_path / "shared" / "journal.sqlite3"
    assert settings.outputs_path == tmp_path / "shared" / "images"
    assert settings.source_of("base_urls.fal.queue") == str(path)


def test_the_users_own_file_is_trusted_and_a_found_file_layers_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-config"))
    own = user_config_file()
    assert own == tmp_path / "home-config" / "ideochar" / "ideochar.toml"
    write(
        own.parent,
        own.name,
        'strategy = "fastest"\nmax_cost_usd = 1\n[base_urls.fal]\nqueue = "https://mine.example"\n',
    )
    write(
        tmp_path / "project",
        "ideochar.toml",
        'strategy = "cheapest"\n[base_urls.fal]\nrun = "https://theirs.example"\n',
    )
    settings = load_settings(environ={}, cwd=tmp_path / "project")
    assert settings.strategy == "cheapest" and settings.max_cost_usd == 1
    assert settings.base_urls == {"fal": {"queue": "https://mine.example"}}
    assert settings.source_of("base_urls.fal.queue") == str(own)
    assert load_settings(config=False, environ={}).base_urls == {}  # config=False: no file, yours included


# -- base URLs ------------------------------------------------------------------------------------------

ACCEPTED = [
    "https://proxy.example/queue",
    "https://proxy.example:8443",
    "https://bücher.example/q",
    "http://127.0.0.1:8080/fal",
    "http://127.5.6.7/",
    "http://[::1]:9/x",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost:1/",
    "http://LOCALHOST./",
    "http://emulator.localhost/",
    "http://emulator.test/fal",
    "http://emulator.invalid",
]
REFUSED = {
    "http://proxy.example/queue": "must be https",
    "http://10.0.0.5/": "must be https",
    "http://192.168.1.1:8080/": "must be https",
    "http://169.254.169.254/": "must be https",
    "http://[::ffff:10.0.0.1]/": "must be https",
    "http://2130706433/": "must be https",  # 127.0.0.1 in decimal: not recognised, so not trusted
    "http://127.0.0.1.attacker.example/": "must be https",
    "http://localhost.attacker.example/": "must be https",
    "http://test/": "must be https",
    "ftp://proxy.example/": "absolute http(s) URL",
    "proxy.example/queue": "absolute http(s) URL",
    "/queue": "absolute http(s) URL",
    "https://": "absolute http(s) URL",
    "https://user:pw@proxy.example/": "user or password",
    "https://proxy.example/?token=x": "query or fragment",
    "https://proxy.example/#x": "query or fragment",
    "https://proxy.example/?": "query or fragment",
    "https://proxy.example:99999/": "not a valid URL",
    "https://proxy.example/a b": "spaces or control characters",
    "https://proxy.example/\r\nX-Injected: 1": "spaces or control characters",
    "http://attacker.example\\.localhost/": "not a valid URL",  # a backslash in the host
    "http://localhost\\@attacker.example/": "user or password",
    "http://%31%32%37.0.0.1/": "not a valid URL",
    "https://proxy.example:0/": "not a valid URL",
}


@pytest.mark.parametrize("url", ACCEPTED)
def test_a_base_url_that_is_https_or_stays_on_this_machine_is_accepted(url: str) -> None:
    assert check_base_url(url) == url


@pytest.mark.parametrize(("url", "problem"), REFUSED.items())
def test_a_base_url_that_could_leak_a_key_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        check_base_url(url)


LOCAL_HOSTS = ["127.0.0.1", "::1", "[::1]", "localhost", "a.b.localhost", "x.test", "x.invalid"]
NETWORK_HOSTS = ["10.0.0.1", "example.com", "0.0.0.0", "::", "fe80::1", "test", "localhost.example"]  # noqa: S104


@pytest.mark.parametrize(("host", "local"), [(h, True) for h in LOCAL_HOSTS] + [(h, False) for h in NETWORK_HOSTS])
def test_plain_http_only_to_this_machine(host: str, local: bool) -> None:
    assert plain_http_allowed(host) is local


@pytest.mark.parametrize("source", ["argument", "variable", "named file", "own file"])
def test_a_refused_base_url_names_the_setting_and_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home"))
    url = "http://proxy.example/queue"
    kwargs: dict[str, Any] = {"environ": {}, "config": False}
    where = "the client's arguments"
    if source == "argument":
        kwargs["overrides"] = {"base_urls": {"fal": {"queue": url}}}
    elif source == "variable":
        kwargs["environ"] = {"IDEOCHAR_BASE_URLS": f"fal.run=https://ok.example fal.queue={url}"}
        where = "environment variable IDEOCHAR_BASE_URLS"
    elif source == "named file":
        kwargs["config"] = write(tmp_path, "mine.toml", f'[base_urls.fal]\nqueue = "{url}"\n')
        where = str(kwargs["config"])
    else:
        own = write(user_config_file().parent, "ideochar.toml", f'[base_urls.fal]\nqueue = "{url}"\n')
        kwargs["config"] = None
        kwargs["cwd"] = tmp_path
        where = str(own)
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)
    assert str(caught.value).startswith(f"{where}: base_urls.fal.queue: must be https")
    assert caught.value.field == "base_urls.fal.queue"


@pytest.mark.parametrize(
    "url",
    [
        f"http://{CANARY_KEY}@proxy.example/",
        f"https://u:{CANARY_KEY}@proxy.example/",
        f"https://proxy.example/?key={CANARY_KEY}",
        f"http://proxy.example/{CANARY_KEY}",
        f"ftp://proxy.example/{CANARY_KEY}",
    ],
)
def test_a_refused_base_url_is_not_repeated_in_the_message(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config=False, environ={"IDEOCHAR_BASE_URLS": f"fal.queue={url}"})
    text = f"{caught.value} {caught.value.problems}"
    assert CANARY_KEY not in text and CANARY_KEY[:12] not in text and CANARY_KEY[-12:] not in text


def test_the_base_urls_variable_takes_pairs_and_names_a_bad_one_by_position() -> None:
    variable = "fal.queue=https://p.example/q, fal.run=https://p.example/r segmind.api=http://127.0.0.1:8/s"
    settings = load_settings(config=False, environ={"IDEOCHAR_BASE_URLS": variable})
    assert settings.base_urls == {
        "fal": {"queue": "https://p.example/q", "run": "https://p.example/r"},
        "segmind": {"api": "http://127.0.0.1:8/s"},
    }
    assert settings.source_of("base_urls.segmind.api") == "environment variable IDEOCHAR_BASE_URLS"
    assert "IDEOCHAR_BASE_URLS" in ENVIRONMENT
    with pytest.raises(ConfigError, match=r"IDEOCHAR_BASE_URLS: base_urls: pair 2 is not PROVIDER.NAME=URL") as bad:
        load_settings(config=False, environ={"IDEOCHAR_BASE_URLS": f"fal.queue=https://a.example {CANARY_KEY}"})
    assert CANARY_KEY not in str(bad.value)


def test_arguments_override_a_variable_which_overrides_a_named_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, "mine.toml", '[base_urls.fal]\nqueue = "https://file.example"\nrun = "https://file.example/r"\n'
    )
    settings = load_settings(
        config=path,
        environ={"IDEOCHAR_BASE_URLS": "fal.queue=https://variable.example"},
        overrides={"base_urls": {"fal": {"run": "https://argument.example"}}},
    )
    assert settings.base_urls == {"fal": {"queue": "https://variable.example", "run": "https://argument.example"}}
    assert settings.source_of("base_urls.fal.queue") == "environment variable IDEOCHAR_BASE_URLS"
    assert settings.source_of("base_urls.fal.run") == "the client's arguments"
    assert settings.source_of("strategy") is None


# -- the base URLs a provider's calls use ----------------------------------------------------------------

INFO = ProviderInfo(
    name="fal",
    title="fal",
    operations=frozenset({"generate"}),
    supported_fields={},
    prices_usd={},
    credential_variables=(("FAL_KEY",),),
    base_urls={"queue": "https://queue.fal.run", "run": "https://fal.run"},
)


def test_configured_base_urls_override_the_declared_ones() -> None:
    urls = effective_base_urls(INFO, {"queue": "https://proxy.example/q"})
    assert urls == {"queue": "https://proxy.example/q", "run": "https://fal.run"}


def test_the_emulator_replaces_every_base_url_whatever_is_configured() -> None:
    emulated = {"queue": "http://127.0.0.1:7/fal", "run": "http://127.0.0.1:7/fal/run"}
    assert effective_base_urls(INFO, {"queue": "https://proxy.example/q"}, emulated) == emulated
    assert effective_base_urls(INFO, {}, {"queue": "http://127.0.0.1:7/fal"}) == {"queue": "http://127.0.0.1:7/fal"}


def test_under_the_emulator_a_provider_nobody_emulates_is_refused() -> None:
    with pytest.raises(ConfigError, match="emulator: no installed plugin emulates fal"):
        effective_base_urls(INFO, {}, {})


def test_an_emulator_on_another_host_over_plain_http_is_refused() -> None:
    with pytest.raises(ConfigError, match="emulator: must be https"):
        effective_base_urls(INFO, {}, {"queue": "http://ci-emulator.example:8000/fal"})


def test_a_base_url_name_the_provider_does_not_have_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        effective_base_urls(INFO, {"queeu": "https://proxy.example/q"})
    assert str(caught.value) == "base_urls.fal.queeu: fal has no base URL named 'queeu' (it has: queue, run)"


def test_a_providers_own_base_url_obeys_the_same_rule() -> None:
    # A plugin is trusted code, but its key must not travel in clear either.
    careless = dataclasses.replace(INFO, base_urls={"queue": "http://queue.vendor.example"})
    with pytest.raises(ConfigError, match=r"^base_urls.fal.queue \(declared by the provider\): must be https"):
        effective_base_urls(careless, {})
    assert effective_base_urls(careless, {"queue": "https://proxy.example"}) == {"queue": "https://proxy.example"}


# -- the docs ---------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_guide_lists_every_caller_only_setting() -> None:
    guide = (ROOT / "docs" / "howto" / "switch-vendor.md").read_text(encoding="utf-8")
    for name in CALLER_ONLY_SETTINGS:
        assert f"| `{name}` |" in guide, f"docs/howto/switch-vendor.md: {name} is missing from the found-file table"

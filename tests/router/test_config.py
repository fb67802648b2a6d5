"""Configuration: file < environment < arguments; keys never from a file; errors name key and source."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from ideochar import Client
from ideochar.config import ConfigError, find_config_file, load_settings

from .conftest import MakeClient
from .fakes import FakeProvider, FakeVendors, keys_for, manager

FILE = """
providers = ["alpha", "beta"]
strategy = "cheapest"
max_cost_usd = 0.5
deadline_seconds = 120
journal = "state/journal.sqlite3"
on_outcome_unknown = "fail_over"

[breaker]
failure_threshold = 2

[base_urls.alpha]
api = "http://127.0.0.1:9/alpha"

[options.alpha]
tier = "gold"

[limits.beta]
requests_per_minute = 30
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_the_file_is_found_from_a_subfolder_and_its_harmless_settings_apply(tmp_path: Path) -> None:
    write(tmp_path, "ideochar.toml", FILE)
    settings = load_settings(environ={}, cwd=tmp_path / "a" / "b")
    assert settings.providers == ["alpha", "beta"]
    assert (settings.strategy, settings.max_cost_usd, settings.deadline_seconds) == ("cheapest", Decimal("0.5"), 120)
    assert settings.breaker.failure_threshold == 2
    assert settings.limits["beta"].requests_per_minute == 30
    # found, not named: what sends keys or images elsewhere, or names files, is the caller's alone
    assert settings.base_urls == {} and settings.options == {} and settings.journal is True


def test_a_named_file_sets_everything_and_its_paths_are_relative_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, "ideochar.toml", FILE)
    settings = load_settings(config=path, environ={}, cwd=tmp_path / "elsewhere")
    assert settings.journal_path == tmp_path / "state" / "journal.sqlite3"
    assert settings.outputs_path == tmp_path / "state" / "outputs"
    assert settings.base_urls == {"alpha": {"api": "http://127.0.0.1:9/alpha"}}
    assert settings.options == {"alpha": {"tier": "gold"}}


def test_pyproject_tool_table_is_read(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "app"\n\n[tool.ideochar]\nstrategy = "fastest"\n')
    found = find_config_file(tmp_path)
    assert found is not None and found[0].name == "pyproject.toml"
    assert load_settings(environ={}, cwd=tmp_path).strategy == "fastest"


def test_a_pyproject_without_the_table_is_passed_over(tmp_path: Path) -> None:
    write(tmp_path, "ideochar.toml", 'strategy = "cheapest"\n')
    write(tmp_path / "app", "pyproject.toml", '[project]\nname = "app"\n')
    assert load_settings(environ={}, cwd=tmp_path / "app").strategy == "cheapest"


def test_environment_overrides_the_file_and_arguments_override_both(tmp_path: Path) -> None:
    path = write(tmp_path, "custom.toml", FILE)
    environ = {
        "IDEOCHAR_CONFIG": str(path),
        "IDEOCHAR_PROVIDERS": "beta, gamma",
        "IDEOCHAR_STRATEGY": "fastest",
        "IDEOCHAR_MAX_COST_USD": "none",
        "IDEOCHAR_JOURNAL": "off",
    }
    settings = load_settings(environ=environ, cwd=tmp_path / "elsewhere")
    assert settings.providers == ["beta", "gamma"] and settings.strategy == "fastest"
    assert settings.max_cost_usd is None and settings.journal_path is None
    assert settings.deadline_seconds == 120  # from the file, untouched by the environment
    overrides = {"strategy": "as_listed", "providers": None, "base_urls": {"alpha": {"x": "https://y.example"}}}
    settings = load_settings(environ=environ, overrides=overrides)
    assert settings.strategy == "as_listed" and settings.providers == ["beta", "gamma"]
    assert settings.base_urls["alpha"] == {"api": "http://127.0.0.1:9/alpha", "x": "https://y.example"}


@pytest.mark.parametrize(
    "text",
    [
        'api_key = "abc"',
        '[options.alpha]\ntoken = "abc"',
        '[keys]\nalpha = "abc"',
        '[options.alpha.auth]\nx = "y"',
    ],
)
def test_a_key_like_field_in_the_file_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "ideochar.toml", text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, cwd=tmp_path)
    message = str(caught.value)
    assert str(path) in message and "credential" in message and "environment" in message
    assert "abc" not in message


def test_a_bad_value_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "ideochar.toml", 'strategy = "random"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, cwd=tmp_path)
    assert str(caught.value).startswith(f"{path}: strategy:")
    assert caught.value.field == "strategy"


def test_a_bad_variable_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment variable IDEOCHAR_DEADLINE_SECONDS: deadline_seconds"):
        load_settings(config=False, environ={"IDEOCHAR_DEADLINE_SECONDS": "soon"})


def test_an_unknown_setting_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "ideochar.toml", "stratgey = 'cheapest'\n")
    with pytest.raises(ConfigError, match="stratgey: unknown setting"):
        load_settings(environ={}, cwd=tmp_path)


def test_bad_toml_is_reported_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, "ideochar.toml", "strategy = \n")
    with pytest.raises(ConfigError, match=str(path)):
        load_settings(environ={}, cwd=tmp_path)


def test_switching_vendor_needs_no_code_change(vendors: FakeVendors, reference: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "ideochar.toml", 'providers = ["alpha", "beta"]\nmax_cost_usd = 1\n')
    pm = manager(FakeProvider("alpha"), FakeProvider("beta"))

    def client(environ: dict[str, str]) -> Client:
        http = httpx.Client(transport=vendors.transport())
        return Client(
            plugin_manager=pm, keys=keys_for("alpha", "beta"), http=http, fetch_http=http, config=path, environ=environ
        )

    with client({}) as configured, client({"IDEOCHAR_PROVIDERS": "beta"}) as switched:
        assert configured.max_cost_usd == Decimal(1)
        assert configured.generate("x", reference).provider == "alpha"
        assert switched.generate("x", reference).provider == "beta"


def test_explicit_infinity_lifts_a_configured_budget_and_deadline(make_client: MakeClient, tmp_path: Path) -> None:
    path = write(tmp_path, "ideochar.toml", "max_cost_usd = 0.01\ndeadline_seconds = 5\n")
    client = make_client(FakeProvider("alpha"), config=path, max_cost_usd=float("inf"), deadline_seconds=float("inf"))
    assert client.max_cost_usd is None and client.deadline_seconds is None
    assert make_client(FakeProvider("alpha"), config=path).deadline_seconds == 5

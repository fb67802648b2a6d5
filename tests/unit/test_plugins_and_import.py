"""Plugins arrive through entry points only; importing ideochar stays light."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pluggy
import pytest

from ideochar import Provider, ProviderInfo, hookimpl
from ideochar.plugins import collect_providers, plugin_manager
from ideochar.spec import ProviderOutput


def test_import_loads_no_vendor_plugin_and_nothing_heavy() -> None:
    code = (
        "import sys, ideochar; "
        "heavy = ('ideochar_', 'PIL', 'requests', 'starlette', 'uvicorn', 'sqlite3'); "
        "bad = [m for m in sys.modules if m.startswith(heavy)]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_built_in_vendors_come_through_entry_points_only() -> None:
    pm = plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    assert {"fal", "segmind", "ideogram", "replicate"} <= names
    assert plugin_manager(load_entrypoints=False).list_name_plugin() == []


def test_disabled_plugins_are_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDEOCHAR_DISABLE_PLUGINS", "segmind")
    loaded = {name for name, plugin in plugin_manager().list_name_plugin() if plugin is not None}
    assert "segmind" not in loaded and "fal" in loaded


def _provider(name: str) -> Provider:
    class Fake(Provider):
        info = ProviderInfo(
            name=name,
            title=name,
            operations=frozenset({"generate"}),
            supported_fields={},
            prices_usd={"generate": {"default": Decimal("0.1")}},
            credential_variables=(),
            base_urls={},
        )

        def exchange(self, request, ctx):  # type: ignore[no-untyped-def]
            return ProviderOutput(images=[])
            yield

    return Fake()


def test_duplicate_provider_names_are_an_error() -> None:
    class Twice:
        @hookimpl
        def ideochar_register_providers(self, register):  # type: ignore[no-untyped-def]
            register(_provider("dup"))
            register(_provider("dup"))

    with pytest.raises(ValueError, match="dup"):
        collect_providers(plugin_manager(load_entrypoints=False, plugins=[Twice()]))


def test_a_misspelled_hook_fails_at_load_time() -> None:
    class Typo:
        @hookimpl
        def ideochar_register_provider(self, register):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(pluggy.PluginValidationError):
        plugin_manager(load_entrypoints=False, plugins=[Typo()])


def test_provider_info_rejects_unknown_field_names() -> None:
    with pytest.raises(ValueError, match="unknown fields"):
        ProviderInfo(
            name="x",
            title="x",
            operations=frozenset({"generate"}),
            supported_fields={"generate": frozenset({"colour"})},
            prices_usd={},
            credential_variables=(),
            base_urls={},
        )


def test_a_broken_plugin_does_not_take_the_others_down() -> None:
    from ideochar.plugins import broken_plugins

    class Broken:
        @hookimpl
        def ideochar_register_providers(self, register):  # type: ignore[no-untyped-def]
            raise ImportError("missing dependency")

    class Fine:
        @hookimpl
        def ideochar_register_providers(self, register):  # type: ignore[no-untyped-def]
            register(_provider("fine"))

    pm = plugin_manager(load_entrypoints=False, plugins=[Broken(), Fine()])
    assert list(collect_providers(pm)) == ["fine"]
    assert any("missing dependency" in reason for reason in broken_plugins.values())

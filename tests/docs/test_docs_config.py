"""The configuration how-to covers every setting and variable there is, and its examples are valid."""

from __future__ import annotations

import sys

import pytest
from docs_support import DOCS, Block, blocks

from ideochar.config import ENVIRONMENT, Settings, load_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

GUIDE = DOCS / "howto" / "switch-vendor.md"


def test_every_setting_is_in_the_example_file() -> None:
    (example,) = [b for b in blocks(GUIDE, "toml")]
    document = tomllib.loads(example.code)
    missing = set(Settings.model_fields) - set(document)
    assert not missing, f"docs/howto/switch-vendor.md's ideochar.toml example lacks {sorted(missing)}"


def test_every_environment_variable_is_documented() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for variable, setting in ENVIRONMENT.items():
        assert f"| `{variable}` | `{setting}`" in text, f"{variable} is missing from docs/howto/switch-vendor.md"
    for variable in ("IDEOCHAR_CONFIG", "IDEOCHAR_DISABLE_PLUGINS"):
        assert f"`{variable}`" in text


@pytest.mark.parametrize(
    "block", [b for page in sorted(DOCS.rglob("*.md")) for b in blocks(page, "toml")], ids=lambda b: b.name
)
def test_a_documented_configuration_is_valid(block: Block) -> None:
    document = tomllib.loads(block.code)
    if "project" in document:  # a package's pyproject.toml (the plugin guide), not a configuration
        return
    settings = load_settings(config=document, environ={})  # raises ConfigError naming a bad key
    if "providers" in document:
        assert settings.providers == document["providers"]

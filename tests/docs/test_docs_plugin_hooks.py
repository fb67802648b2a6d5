"""The plugin guide documents the plugin API as it is, and its emulator example works.

As datasette does (``test_plugin_hooks_are_documented``): every hook in :mod:`ideochar.hookspecs`
has a section in docs/howto/write-a-plugin.md showing its exact signature, and the page documents no
hook that does not exist.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable

import pytest
from docs_support import DOCS, ROOT, blocks

from ideochar import hookspecs

GUIDE = DOCS / "howto" / "write-a-plugin.md"
EXAMPLE = ROOT / "examples" / "ideochar-example-plugin"


def hooks() -> dict[str, Callable[..., object]]:
    return {name: fn for name, fn in vars(hookspecs).items() if name.startswith("ideochar_") and callable(fn)}


def signature(fn: Callable[..., object]) -> str:
    """``def name(arg: Type, ...) -> Return:`` as written in the hookspec (annotations are strings there)."""
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {fn.__name__}({params}) -> {sig.return_annotation}:"


def test_there_are_hooks_to_document() -> None:
    assert {"ideochar_register_providers", "ideochar_event"} <= set(hooks())


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_is_documented_with_its_exact_signature(name: str) -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert f"### `{name}`" in text, f"docs/howto/write-a-plugin.md has no section for the hook {name}"
    section = text.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
    expected = signature(hooks()[name])
    assert expected in section, f"the section of {name} must show its signature exactly:\n{expected}"


def test_the_guide_documents_no_hook_that_does_not_exist() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^### `(ideochar_\w+)`$", text, re.M))
    assert documented == set(hooks())


def _block_starting(first_line: str) -> str:
    for block in blocks(GUIDE, "python"):
        if block.code.splitlines()[0].strip() == first_line:
            return block.code
    raise AssertionError(f"no python block starting with {first_line!r} in {GUIDE.name}")


def test_the_guide_shows_the_example_s_emulator_module_as_it_ships() -> None:
    shown = _block_starting("# ideochar_example/emulator.py").split("\n", 1)[1]
    assert shown == (EXAMPLE / "ideochar_example" / "emulator.py").read_text(encoding="utf-8")


def test_the_guide_shows_the_example_s_emulator_hook_as_it_ships() -> None:
    hook = next(b.code for b in blocks(GUIDE, "python") if "def ideochar_register_emulator(register" in b.code)
    plugin = (EXAMPLE / "ideochar_example" / "plugin.py").read_text(encoding="utf-8")
    assert hook.strip() in plugin


@pytest.mark.anyio
async def test_the_example_s_emulator_routes_serve_the_example_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's ``emulator.py`` and its hook, as the guide shows them, emulate the example vendor."""
    from ideochar import AsyncClient
    from ideochar.plugins import plugin_manager

    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name in [m for m in sys.modules if m.startswith("ideochar_example")]:
        monkeypatch.delitem(sys.modules, name)
    import ideochar_example.plugin  # type: ignore[import-not-found,unused-ignore]

    pm = plugin_manager(load_entrypoints=False, plugins=[ideochar_example.plugin])
    reference = (ROOT / "src" / "ideochar" / "assets" / "reference.png").read_bytes()
    async with AsyncClient(["example"], emulator=True, plugin_manager=pm, journal=False) as client:
        result = await client.generate("a knight in the rain", reference=reference, seed=3, speed="turbo")
    assert result.provider == "example"
    assert (result.image.width, result.image.height, result.image.seed) == (1024, 1024, 3)
    assert result.image.content_type == "image/png"
    assert str(result.cost_usd) == "0.02"

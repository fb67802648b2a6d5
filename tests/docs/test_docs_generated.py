"""The generated parts of the docs equal what the code says now: the provider matrix (README.md and
docs/providers.md), the providers' vendor-only options, the CLI reference and the exit codes.

When one of these fails, the code changed and the docs did not: run ``python docs/scripts/generate.py``
(or ``make docs``), read the diff, and commit it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docs_support import README, ROOT, load_generator

from ideochar.matrix import END, START

generate = load_generator()
FIX = "run `python docs/scripts/generate.py` and commit the result"


def expected_text(page: Path) -> str:
    text: str = generate.expected()[page]
    return text


@pytest.fixture(scope="module")
def expected() -> dict[Path, str]:
    files: dict[Path, str] = generate.expected()
    return files


@pytest.mark.parametrize("page", [README, ROOT / "docs" / "providers.md"], ids=["README.md", "docs/providers.md"])
def test_the_provider_matrix_is_what_the_providers_declare(page: Path, expected: dict[Path, str]) -> None:
    current = page.read_text(encoding="utf-8")
    assert START in current and END in current, f"{page}: the provider-matrix markers are missing"
    assert current == expected[page], f"{page} is stale: {FIX}"


def test_the_readme_and_the_docs_show_the_same_matrix() -> None:
    def block(text: str) -> str:
        return text.split(START, 1)[1].split(END, 1)[0]

    assert block(README.read_text(encoding="utf-8")) == block((ROOT / "docs/providers.md").read_text(encoding="utf-8"))


def test_the_matrix_marks_inferred_prices_and_lists_every_inferred_fact() -> None:
    from ideochar.plugins import collect_providers, get_plugin_manager

    text = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    for name, provider in collect_providers(get_plugin_manager()).items():
        for topic in provider.info.inferred:
            assert f"- **{name}**, {topic}:" in text, f"the inferred fact {name}/{topic} is not on docs/providers.md"


def test_every_vendor_only_option_is_documented(expected: dict[Path, str]) -> None:
    from ideochar.plugins import collect_providers, get_plugin_manager

    text = expected[ROOT / "docs" / "providers.md"]
    for name, provider in collect_providers(get_plugin_manager()).items():
        for option in provider.info.options_model.model_fields:
            assert f"| `{option}` |" in text, f"{name}'s option {option} is missing from docs/providers.md"


def test_the_cli_reference_is_the_commands_help(expected: dict[Path, str]) -> None:
    page = generate.CLI_PAGE
    assert page.read_text(encoding="utf-8") == expected[page], f"docs/cli.md is stale: {FIX}"


def test_every_cli_command_has_a_section_in_the_cli_reference() -> None:
    text = generate.CLI_PAGE.read_text(encoding="utf-8")
    headings = set(re.findall(r"^#{2,3} `(ideochar[^`]*)`$", text, re.M))
    commands = generate.command_paths()
    assert {"ideochar", "ideochar generate", "ideochar edit", "ideochar remix", "ideochar quote"} <= set(commands)
    missing = [c for c in commands if c not in headings]
    assert not missing, f"docs/cli.md has no section for {missing}: {FIX}"
    assert not headings - set(commands), f"docs/cli.md documents commands that do not exist: {headings - set(commands)}"


def test_every_exit_code_is_in_the_cli_reference() -> None:
    import ideochar.errors as errors

    text = generate.CLI_PAGE.read_text(encoding="utf-8")
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.IdeocharError):
            assert f"| {cls.exit_code} | `{name}` |" in text, f"exit code of {name} missing from docs/cli.md: {FIX}"


def test_the_generator_check_mode_reports_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--check`` must notice drift, or the freshness tests above could pass on a broken generator."""
    folder = tmp_path
    stale = folder / "cli.md"
    text = generate.CLI_PAGE.read_text(encoding="utf-8")
    stale.write_text(text.replace("Usage: ideochar generate", "Usage: ideochar generat"), encoding="utf-8")
    copies = []
    for page in generate.MATRIX_PAGES:  # work on copies: a run without --check must not touch the repository
        copies.append(folder / page.name)
        copies[-1].write_text(expected_text(page), encoding="utf-8")
    monkeypatch.setattr(generate, "CLI_PAGE", stale)
    monkeypatch.setattr(generate, "MATRIX_PAGES", tuple(copies))
    assert generate.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") != text  # --check writes nothing
    assert generate.main([]) == 0
    assert stale.read_text(encoding="utf-8") == text  # a run without --check refreshes it

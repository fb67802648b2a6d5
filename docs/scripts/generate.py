"""Refresh the parts of the docs that are generated from the code, so they cannot drift from it.

* ``docs/cli.md``: the ``--help`` of every built-in ``ideochar`` command, between the
  ``cli-reference`` markers (rendered from the click objects, at a fixed width);
* ``README.md`` and ``docs/providers.md``: the provider matrix between the ``provider-matrix`` markers
  (:mod:`ideochar.matrix`, from what the installed providers declare);
* ``docs/providers.md``: each provider's vendor-only options (its ``options_model``), between the
  ``provider-options`` markers;
* ``docs/cli.md``: the exit code of every error class, between the ``exit-codes`` markers.

Run ``python docs/scripts/generate.py`` (``make docs`` does, then builds the site). ``--check`` writes
nothing and exits 1 when a file is stale; ``tests/docs/`` runs the same comparison on every test run.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[2]
CLI_PAGE = ROOT / "docs" / "cli.md"
MATRIX_PAGES = (ROOT / "README.md", ROOT / "docs" / "providers.md")

CLI_START = "<!-- cli-reference:start -->"
CLI_END = "<!-- cli-reference:end -->"
OPTIONS_START = "<!-- provider-options:start -->"
OPTIONS_END = "<!-- provider-options:end -->"
EXIT_START = "<!-- exit-codes:start -->"
EXIT_END = "<!-- exit-codes:end -->"
#: Help is wrapped at this width whatever the terminal, so the output is the same on every machine.
HELP_WIDTH = 88


def _commands(command: click.Command, ctx: click.Context) -> Iterator[tuple[str, click.Command, click.Context]]:
    """Every command under ``command``, depth first, with the context its ``--help`` is rendered in."""
    yield ctx.command_path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _commands(sub, _context(sub, name, ctx))


def command_paths() -> list[str]:
    """``["ideochar", "ideochar edit", ...]``: every built-in command (plugins' commands are left out)."""
    return [path for path, _, _ in _walk()]


def _builtin(command: click.Command) -> click.Command:
    """``command`` with only the subcommands ideochar itself defines.

    Plugins add their commands to the one ``cli`` group of the process (a test's plugin too), so the
    reference is rendered from shallow copies that keep ideochar's own commands only.
    """
    if not isinstance(command, click.Group):
        return command
    group = copy.copy(command)
    group.commands = {
        name: _builtin(sub)
        for name, sub in command.commands.items()
        if sub.callback is not None and sub.callback.__module__.split(".")[0] == "ideochar"
    }
    return group


def _walk() -> list[tuple[str, click.Command, click.Context]]:
    from ideochar.cli import CliState, cli
    from ideochar.plugins import plugin_manager

    # No entry points: only the commands ideochar itself ships, whatever else is installed here.
    state = CliState(plugin_manager=plugin_manager(load_entrypoints=False))
    root = _builtin(cli)
    return list(_commands(root, _context(root, "ideochar", None, obj=state)))


def _context(command: click.Command, name: str, parent: click.Context | None, **extra: Any) -> click.Context:
    """The context ``ideochar ... NAME --help`` runs in (the command's own settings apply, e.g. ``-h``)."""
    settings: dict[str, Any] = {"terminal_width": HELP_WIDTH, "max_content_width": HELP_WIDTH, **extra}
    return command.make_context(name, [], parent=parent, resilient_parsing=True, **settings)


def cli_reference() -> str:
    """One section per command: its path as a heading, its ``--help`` as a text block."""
    sections = []
    for path, command, ctx in _walk():
        level = "##" if path == "ideochar" else "###"
        sections.append(f"{level} `{path}`\n\n```text\n{command.get_help(ctx).rstrip()}\n```")
    return "\n\n".join(sections)


def exit_codes() -> str:
    """The exit code of every error class (``IdeocharError.exit_code``), as a table, lowest first."""
    import ideochar.errors as errors

    classes = [getattr(errors, name) for name in errors.__all__]
    rows = sorted(
        (cls.exit_code, cls.__name__, (cls.__doc__ or "").strip().splitlines()[0])
        for cls in classes
        if isinstance(cls, type) and issubclass(cls, errors.IdeocharError)
    )
    lines = ["| exit code | error | meaning |", "|---|---|---|"]
    lines += [f"| {code} | `{name}` | {doc.replace('``', '`')} |" for code, name, doc in rows]
    return "\n".join(lines)


def _attribute_docstrings(model: type) -> dict[str, str]:
    """``{field: docstring}`` for ``model`` and the classes it inherits from (the nearest wins)."""
    from ideochar.request import attribute_docstrings

    found: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        found.update(attribute_docstrings(klass))
    return found


def _schema_type(schema: dict[str, Any]) -> str:
    """A short type from a JSON schema: ``"queue" | "run"``, ``number (> 1)``, ``string or none``."""
    if "enum" in schema:
        return " \\| ".join(_literal(v) for v in schema["enum"])
    if "const" in schema:
        return _literal(schema["const"])
    if "anyOf" in schema:
        parts = [_schema_type(s) for s in schema["anyOf"] if s.get("type") != "null"]
        optional = any(s.get("type") == "null" for s in schema["anyOf"])
        return " or ".join(parts) + (" or none" if optional else "")
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"list of {_schema_type(schema.get('items', {}))}"
    bounds = []
    for key, word in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in schema:
            bounds.append(f"{word} {schema[key]}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _literal(value: object) -> str:
    return f'`"{value}"`' if isinstance(value, str) else f"`{value!r}`"


def provider_options() -> str:
    """Each provider's vendor-only options (its ``options_model``), as one table per provider."""
    from ideochar.plugins import collect_providers, get_plugin_manager

    sections = []
    for name, provider in sorted(collect_providers(get_plugin_manager()).items()):
        model = provider.info.options_model
        fields = model.model_fields
        if not fields:
            sections.append(f"**{name}**: no vendor-only options.")
            continue
        schema = model.model_json_schema()
        docs = _attribute_docstrings(model)
        rows = [f'**{name}** (`extra={{"{name}": {{...}}}}`)', "", "| option | type | default | what it does |"]
        rows.append("|---|---|---|---|")
        for field_name, info in fields.items():
            prop = schema.get("properties", {}).get(field_name, {})
            described = (info.description or docs.get(field_name) or "").replace("``", "`").replace("\n", " ")
            described = described.replace("|", "\\|")
            default = "—" if info.is_required() else _literal(info.default)
            rows.append(f"| `{field_name}` | {_schema_type(prop)} | {default} | {described} |")
        sections.append("\n".join(rows))
    return "\n\n".join(sections)


def embed(text: str, start: str, end: str, block: str) -> str:
    """Replace what stands between the markers ``start`` and ``end`` in ``text`` with ``block``."""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"the markers {start} ... {end} are missing")
    return pattern.sub(lambda _: f"{start}\n{block}\n{end}", text)


def expected() -> dict[Path, str]:
    """Each generated file as it should read now."""
    from ideochar.matrix import END, START, matrix_block  # the very block `python -m ideochar.matrix --write` embeds
    from ideochar.plugins import collect_providers, get_plugin_manager

    matrix = matrix_block(list(collect_providers(get_plugin_manager()).values()))
    cli = embed(CLI_PAGE.read_text(encoding="utf-8"), CLI_START, CLI_END, cli_reference())
    files = {CLI_PAGE: embed(cli, EXIT_START, EXIT_END, exit_codes())}
    for page in MATRIX_PAGES:
        files[page] = embed(page.read_text(encoding="utf-8"), START, END, matrix)
    files[MATRIX_PAGES[1]] = embed(files[MATRIX_PAGES[1]], OPTIONS_START, OPTIONS_END, provider_options())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale: list[Path] = []
    for path, text in expected().items():
        if path.read_text(encoding="utf-8") != text:
            stale.append(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    verb = "stale" if args.check else "refreshed"
    for path in stale:
        print(f"{verb}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

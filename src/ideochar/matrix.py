"""The provider matrix, generated from what the installed providers declare.

The README and ``docs/providers.md`` embed this table between marker comments; ``python -m
ideochar.matrix --write`` refreshes both, and a test fails when either has drifted from the code.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from ideochar.request import OperationName, Speed
from ideochar.spec import DEFAULT_TOPICS, Provider

__all__ = ["END", "START", "embed", "matrix_block", "provider_defaults", "provider_matrix", "provider_notes"]

START = "<!-- provider-matrix:start -->"
END = "<!-- provider-matrix:end -->"
_OPERATIONS: tuple[OperationName, ...] = ("generate", "edit", "remix")
_SPEEDS: tuple[Speed, ...] = ("turbo", "default", "quality")
_FIELDS = (
    ("num_images", "count > 1"),
    ("negative_prompt", "negative prompt"),
    ("color_palette", "palette"),
    ("style_codes", "style codes"),
    ("style_references", "style refs"),
    ("reference_mask", "reference mask"),
    ("style", "style"),
    ("aspect_ratio", "aspect ratio"),
    ("resolution", "resolution"),
    ("seed", "seed"),
    ("magic_prompt", "magic prompt"),
)


def _money(value: Decimal | None) -> str:
    return "—" if value is None else f"${value.normalize():f}"


def provider_matrix(providers: Iterable[Provider]) -> str:
    """A Markdown table per concern: operations and prices, then fields per operation."""
    ordered = sorted(providers, key=lambda p: p.info.name)
    lines = [
        "| provider | operations | images per call | price per image (turbo / default / quality) | key | resume |",
        "|---|---|---|---|---|---|",
    ]
    for p in ordered:
        info = p.info
        ops = ", ".join(op for op in _OPERATIONS if op in info.operations)
        prices = []
        for op in _OPERATIONS:
            if op in info.operations:
                by_speed = " / ".join(_money(info.price(op, s)) for s in _SPEEDS)
                prices.append(f"{op}: {by_speed}")
        mark = " ⁱ" if any(k.startswith("price") for k in info.inferred) else ""
        keys = " or ".join("+".join(f"`{v}`" for v in alt) for alt in info.credential_variables) or "—"
        lines.append(
            f"| **{info.name}** | {ops} | {info.max_images_per_call} | {'<br>'.join(prices)}{mark} | {keys} | "
            f"{'yes' if info.can_resume else 'no'} |"
        )
    lines += ["", "| field | " + " | ".join(p.info.name for p in ordered) + " |", "|---|" + "---|" * len(ordered)]
    for name, label in _FIELDS:
        cells = []
        for p in ordered:
            if name == "num_images":
                cells.append("✓" if p.info.max_images_per_call > 1 else "fan-out")
                continue
            supported = [op[0].upper() for op in _OPERATIONS if p.info.supports(op, name)]
            cells.append("/".join(supported) if supported else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "G/E/R: supported for generate / edit / remix; — : not supported (a warning, or an error with strict=True);",
        "fan-out: several calls, one image each. ⁱ: price inferred, not verified (see the notes below).",
    ]
    return "\n".join(lines)


_TOPIC_LABELS = {
    "speed": "speed",
    "style": "style unset / auto",
    "magic_prompt": "magic prompt auto",
    "size": "size unset",
    "seed": "seed unset",
}


def provider_defaults(providers: Iterable[Provider]) -> str:
    """What goes on the wire for each setting left unset (``ProviderInfo.defaults``), as a table."""
    ordered = sorted(providers, key=lambda p: p.info.name)
    lines = ["| unset setting | " + " | ".join(p.info.name for p in ordered) + " |", "|---|" + "---|" * len(ordered)]
    for topic in DEFAULT_TOPICS:
        cells = [p.info.defaults.get(topic, "—").replace("|", "\\|") for p in ordered]
        lines.append(f"| {_TOPIC_LABELS[topic]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def provider_notes(providers: Iterable[Provider]) -> str:
    """The inferred (unverified) facts each provider relies on, as a list."""
    lines = []
    for p in sorted(providers, key=lambda p: p.info.name):
        for topic, note in sorted(p.info.inferred.items()):
            lines.append(f"- **{p.info.name}**, {topic}: {note}")
    return "\n".join(lines) if lines else "- none"


def embed(text: str, table: str) -> str:
    """Replace what stands between the markers in ``text`` with ``table``."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError("the provider-matrix markers are missing")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", text)


def matrix_block(providers: list[Provider]) -> str:
    """The table and the inferred-facts list, as embedded between the markers."""
    return (
        provider_matrix(providers)
        + "\n\nWhat an unset setting sends (nothing is left to a vendor default the caller did not choose):\n\n"
        + provider_defaults(providers)
        + "\n\nInferred facts (unverified against the live vendor):\n\n"
        + provider_notes(providers)
    )


def main(argv: list[str] | None = None) -> int:
    from ideochar.plugins import collect_providers, get_plugin_manager

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", nargs="*", type=Path, help="files to refresh in place (default: print)")
    args = parser.parse_args(argv)
    block = matrix_block(list(collect_providers(get_plugin_manager()).values()))
    if args.write is None:
        print(block)
        return 0
    for path in args.write or [Path("README.md"), Path("docs/providers.md")]:
        path.write_text(embed(path.read_text(encoding="utf-8"), block), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the docs tests share: the repository's paths, the docs generator, and the pages' code blocks."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

#: A fenced block, with the HTML comment that may mark it as not runnable just above it.
_BLOCK = re.compile(r"(?P<mark><!--\s*not run[^>]*-->\s*\n)?^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```", re.S | re.M)


def load_generator() -> ModuleType:
    """``docs/scripts/generate.py``, the generator of the docs' generated parts, as a module."""
    path = DOCS / "scripts" / "generate.py"
    spec = importlib.util.spec_from_file_location("docs_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pages() -> list[Path]:
    """README.md and every Markdown page of the site."""
    return [README, *sorted(p for p in DOCS.rglob("*.md") if "scripts" not in p.parts)]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    code: str
    runnable: bool

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path, lang: str | None = None) -> list[Block]:
    """The fenced code blocks of ``page`` (of one language, if given), in order."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _BLOCK.finditer(text):
        if lang is not None and match["lang"] != lang:
            continue
        line = text.count("\n", 0, match.start("code"))
        found.append(Block(page, line, match["lang"], match["code"], runnable=match["mark"] is None))
    return found

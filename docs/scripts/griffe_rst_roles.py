"""A Griffe extension: read the code's reStructuredText markup as the Markdown the docs site renders.

ideochar's docstrings use rST roles and literals (``:class:`~ideochar.journal.Journal```, ````code````,
``Example::``), which read well in an editor and in ``help()``. mkdocstrings renders Markdown, so without
this they would show as raw markup. Each role becomes an *optional* cross-reference (a link when the
target is rendered somewhere in the site, plain code otherwise, never a broken link), a double-backtick
literal becomes a code span, and ``Example::`` loses one colon. Literal blocks are left as they are.

Loaded by ``mkdocs.yml`` (``extensions: [docs/scripts/griffe_rst_roles.py]``; the path is relative to
the folder mkdocs runs in, the repository's root).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(?P<tilde>~?)(?P<target>[^`]+)`")
_LITERAL = re.compile(r"``(?P<code>[^`]+?)``")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _resolve(target: str, obj: griffe.Object) -> str:
    """A role's target as a full identifier: relative names are looked up from the object's module."""
    target = target.strip().lstrip(".")
    if target.startswith("ideochar") or ("." in target and target.split(".")[0] in ("httpx", "pydantic")):
        return target
    module = obj.module.path if obj.module is not None else obj.path
    return f"{module}.{target}"


def _role(match: re.Match[str], obj: griffe.Object) -> str:
    target = match["target"]
    identifier = _resolve(target, obj)
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
    return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(shown)}</code></autoref>'


def convert(text: str, obj: griffe.Object) -> str:
    """The docstring ``text`` with its rST roles and literals in Markdown, literal blocks untouched."""
    out: list[str] = []
    literal_from: int | None = None  # indentation of the paragraph that opened a literal block
    for line in text.splitlines():
        if literal_from is not None:
            if not line.strip() or _indent(line) > literal_from:
                out.append(line)
                continue
            literal_from = None
        converted = _ROLE.sub(lambda m: _role(m, obj), line)
        converted = _LITERAL.sub(lambda m: f"`{m['code']}`", converted)
        if converted.rstrip().endswith("::"):
            literal_from = _indent(line)
            converted = converted.rstrip()[:-1]
        out.append(converted)
    return "\n".join(out)


class RstRoles(griffe.Extension):
    """Rewrites every loaded docstring once, as the objects are visited."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value, obj)

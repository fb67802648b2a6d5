"""The README says what ``make test`` runs, no more and no less (it once said "lint" while the format check
was left out), and every make target the pages name exists."""

from __future__ import annotations

import re

from docs_support import README, ROOT, pages

MAKEFILE = ROOT / "Makefile"


def _recipe(target: str) -> str:
    text = MAKEFILE.read_text(encoding="utf-8")
    match = re.search(rf"^{target}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert match, f"the Makefile has no {target} target"
    return match[1]


def test_the_readme_says_what_make_test_runs() -> None:
    line = next(line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("make test"))
    recipe = _recipe("test")
    claims = {
        "ruff check": "ruff check" in line,
        "ruff format --check": "format" in line,
        "mypy": "mypy" in line or "type check" in line,
        "pytest": "test suite" in line or "tests" in line,
    }
    for tool, said in claims.items():
        runs = "runs" if tool in recipe else "skips"
        assert said == (tool in recipe), f"README says {line!r}; make test {runs} {tool}"
    assert "lint" not in line.split("#", 1)[1], "'lint' would promise the format check too: name the tools"


def test_every_make_target_the_pages_name_exists() -> None:
    targets = set(re.findall(r"^([\w-]+):", MAKEFILE.read_text(encoding="utf-8"), re.M))
    for page in pages():
        for named in re.findall(r"`make ([\w-]+)`|^make ([\w-]+)", page.read_text(encoding="utf-8"), re.M):
            target = next(filter(None, named))
            assert target in targets, f"{page.name} names `make {target}`, which the Makefile does not have"

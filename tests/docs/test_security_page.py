"""docs/security.md: "A row without a test is not a promise". Every row of every threat table names at
least one test, and every test it names exists (a renamed test must not leave a promise unproven)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "security.md"
NAMED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def sections() -> dict[str, list[str]]:
    """Each ``## heading`` of the page with the rows of its table (the header and rule excluded)."""
    found: dict[str, list[str]] = {}
    for block in PAGE.read_text().split("\n## ")[1:]:
        heading, _, body = block.partition("\n")
        rows = [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("| Threat")]
        if rows:
            found[heading.strip()] = rows
    return found


def test_the_page_covers_every_area_of_the_threat_model() -> None:
    assert set(sections()) >= {
        "Keys and configuration",
        "Fetching URLs",
        "Inputs and images",
        "Vendor answers",
        "The journal and the outputs folder",
    }


@pytest.mark.parametrize("area", sorted(sections()))
def test_every_row_names_tests_that_exist(area: str) -> None:
    for row in sections()[area]:
        named = NAMED.findall(row)
        assert named, f"{area}: a row names no test: {row[:100]}"
        for path, name in named:
            source = ROOT / path
            assert source.is_file(), f"{area}: {path} does not exist"
            if name:
                assert re.search(rf"^(async )?def {name}\(", source.read_text(), re.M), f"{area}: {path}::{name}"

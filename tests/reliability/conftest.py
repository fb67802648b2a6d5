"""Profiles and gates for the reliability suite.

Two speeds. ``make test`` runs the fast part: a ``fast`` hypothesis profile (few, derandomised examples,
so CI is reproducible) and no test marked ``slow``. ``make reliability`` sets ``IDEOCHAR_RELIABILITY=1``:
the ``thorough`` profile (many random examples; see ``profile.py``) and the slow tests (crash and resume at every stage,
the 10,000-request soak). The option cannot be a pytest flag: this conftest is not loaded early enough
for ``pytest_addoption`` when the whole suite runs from the root.
"""

from __future__ import annotations

import os

import pytest

from reliability.profile import RELIABILITY


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if RELIABILITY:
        return
    skip = pytest.mark.skip(reason="slow reliability test: run `make reliability` (IDEOCHAR_RELIABILITY=1)")
    here = os.path.dirname(__file__)
    for item in items:
        if "slow" in item.keywords and str(item.path).startswith(here):
            item.add_marker(skip)

"""``mkdocs build --strict`` succeeds: every page in the nav exists, every link and anchor resolves, every
API reference (``::: ideochar...``) and cross-reference points at real code. ``make test`` runs it here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from docs_support import ROOT


@pytest.mark.slow
def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    reference = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("ideochar.client.Client", "ideochar.spec.Provider", "ideochar.hookspecs.ideochar_event"):
        assert f'id="{name}"' in reference, f"the API reference does not render {name}"

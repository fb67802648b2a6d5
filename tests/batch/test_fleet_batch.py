"""One batch run from two processes that share a fleet's journal (PostgreSQL) and state (Redis), each
with an output folder of its own, as two machines would: every row is paid for once, a vendor's
concurrency limit holds across both, and a later run from either finds every row done. Real servers,
started by the tests (tests/servers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import charges_by_prompt, rows_file, testing

pytestmark = [pytest.mark.socket, pytest.mark.slow]


def test_one_batch_from_two_machines_pays_for_each_row_once(
    emulator: Any, tmp_path: Path, reference: Path, postgres_url: str, redis_url: str
) -> None:
    testing.state_of(emulator).set_model_seconds(0.3)
    rows = rows_file(tmp_path, [{"prompt": f"frame {i}", "seed": i} for i in range(20)])
    config = tmp_path / "ideochar.toml"
    config.write_text("[limits.fal]\nmax_images_in_flight = 3\n[limits.segmind]\nmax_images_in_flight = 2\n"
                      "requests_per_minute = 100000\n")  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IDEOCHAR_")}
    environ |= {"IDEOCHAR_JOURNAL_URL": postgres_url, "IDEOCHAR_STATE_URL": redis_url}

    def command(machine: str) -> list[str]:
        return [
            sys.executable, "-m", "ideochar.cli", "batch", str(rows), "-r", str(reference), "-p", "fal,segmind",
            "--emulator-url", emulator.url, "--out", str(tmp_path / machine), "--name", "frames",
            "--config", str(config), "--progress", "off",
        ]  # fmt: skip

    runs = [subprocess.Popen(command(m), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
            for m in ("machine-a", "machine-b")]  # fmt: skip
    outputs = [run.communicate(timeout=180) for run in runs]
    assert all(run.returncode in (0, 1) for run in runs), [err[-2000:] for _, err in outputs]
    served = [
        json.loads(line) for out, _ in outputs for line in out.splitlines() if not json.loads(line).get("earlier")
    ]
    assert sorted(r["row"] for r in served if r["status"] == "done") == list(range(1, 21))
    assert charges_by_prompt(emulator) == {f"frame {i}": 1 for i in range(20)}
    assert testing.in_flight(emulator, "fal")["peak"] <= 3, "fal's limit held across both machines (Redis)"

    again = subprocess.run(command("machine-a"), capture_output=True, text=True, env=environ, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert all(json.loads(line).get("earlier") for line in again.stdout.splitlines())
    assert charges_by_prompt(emulator) == {f"frame {i}": 1 for i in range(20)}

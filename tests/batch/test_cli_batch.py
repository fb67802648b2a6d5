"""``ideochar batch`` as a user runs it: a real process against the emulator on a loopback socket.

The crash test kills the command with SIGKILL while rows are in flight (no cleanup, as an OOM kill would),
runs the same command again, and checks against the emulator's ledger that every row was paid for
exactly once and that the manifest and the files say what the vendor delivered.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .conftest import charges_by_prompt, rows_file, testing

pytestmark = [pytest.mark.socket, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

ROWS = 30


def _config(tmp_path: Path, **in_flight: int) -> Path:
    path = tmp_path / "ideochar.toml"
    tables = [
        f"[limits.{name}]\nmax_images_in_flight = {n}\nrequests_per_minute = 100000\n" for name, n in in_flight.items()
    ]
    path.write_text("\n".join(tables), encoding="utf-8")
    return path


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("IDEOCHAR_")}


def _command(server: Any, tmp_path: Path, rows: Path, config: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ideochar.cli", "batch", str(rows), "-r", str(tmp_path / "face.png"),
        "--emulator-url", server.url, "--journal", str(tmp_path / "journal.sqlite3"), "--out", str(tmp_path / "out"),
        "--config", str(config), "--progress", "off", *extra,
    ]  # fmt: skip


def _manifest(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]


def _prompt(row: dict[str, Any]) -> str:
    """The prompt of a manifest line's row in these tests (row n is ``row {n-1}``)."""
    return f"row {row['row'] - 1}"


def _kill_after(command: list[str], lines: int, cwd: Path) -> int:
    """Run ``command`` until it has reported ``lines`` rows on stdout, then SIGKILL it; how many it reported."""
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd, env=_environ()
    )
    assert run.stdout is not None
    seen = 0
    deadline = time.monotonic() + 60
    try:
        while seen < lines and time.monotonic() < deadline:
            if not run.stdout.readline():
                break
            seen += 1
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL, "the batch ended before it could be killed"
    return seen


@pytest.mark.parametrize(
    ("providers", "faults"),
    [
        pytest.param(
            "replicate",
            {
                "seed": 11,
                "replicate": [
                    {"route": "create", "kind": "status", "status": 503, "ingress": True, "rate": 0.15},
                    {"route": "create", "kind": "rate_limit", "retry_after": 0.1, "rate": 0.1},
                    {"route": "create", "kind": "drop_after_admit", "rate": 0.1},
                    {"route": "get", "kind": "latency", "seconds": 0.05, "rate": 0.3},
                ],
            },
            id="replicate-with-faults",
        ),
        pytest.param(
            "fal,segmind",
            {
                "seed": 5,
                "fal": [
                    {"route": "submit", "kind": "status", "status": 503, "ingress": True, "rate": 0.15},
                    {"route": "status", "kind": "latency", "seconds": 0.05, "rate": 0.3},
                ],
                "segmind": [{"route": "v1", "kind": "rate_limit", "retry_after": 0.1, "rate": 0.1}],
            },
            id="fal-segmind-with-faults",
        ),
    ],
)
def test_a_batch_killed_midway_and_run_again_pays_for_every_row_once(
    emulator: Any, tmp_path: Path, reference: Path, providers: str, faults: dict[str, Any]
) -> None:
    testing.state_of(emulator).set_model_seconds(0.3)
    testing.set_faults(emulator, faults)
    names = providers.split(",")
    rows = rows_file(tmp_path, [{"prompt": f"row {i}", "seed": i} for i in range(ROWS)])
    config = _config(tmp_path, **dict.fromkeys(names, 4))
    command = _command(emulator, tmp_path, rows, config, "-p", providers, "--max-cost", "100")

    reported = _kill_after(command, 8, tmp_path)
    assert 8 <= reported < ROWS
    charged_before = charges_by_prompt(emulator)
    assert sum(charged_before.values()) >= reported

    testing.set_faults(emulator, None)  # the vendors behave now: whatever is left can finish
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=_environ(), timeout=180)
    assert again.returncode in (0, 1), again.stderr[-3000:]
    stdout = [json.loads(line) for line in again.stdout.splitlines()]
    assert sorted(r["row"] for r in stdout) == list(range(1, ROWS + 1)), "stdout carries one line per row"

    charges = charges_by_prompt(emulator)
    assert max(charges.values()) == 1, f"a row was paid for twice: {charges.most_common(3)}"
    # Jobs the vendor had admitted (and charged) before the kill, finished now by their vendor ids.
    picked_up = [r for r in stdout if r["status"] == "done" and not r.get("earlier") and charged_before[_prompt(r)]]
    assert picked_up, "the kill caught no admitted job: nothing was picked up by its vendor id"
    manifest = _manifest(tmp_path)
    assert [m["row"] for m in manifest] == list(range(1, ROWS + 1))
    done = [m for m in manifest if m["status"] == "done"]
    assert {f"row {m['row'] - 1}" for m in done} <= {p for p, n in charges.items() if n == 1}
    # A row the kill caught while its billable request was leaving has no answer: it may have reached the
    # vendor or not. It is reported, never sent again (the second-charge check above covers it).
    in_doubt = [m for m in manifest if m["status"] != "done"]
    assert {m["status"] for m in in_doubt} <= {"unknown"}
    assert len(in_doubt) <= 4 * len(names), "at most the requests in flight when the process was killed"
    if "replicate" in names:  # an answer lost after admission is found in Replicate's listing and finished
        assert all(charges[f"row {m['row'] - 1}"] == 0 for m in in_doubt), in_doubt
    for entry in done:
        (saved,) = entry["files"]
        data = Path(saved["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == saved["sha256"]
    spent = sum((Decimal(m["cost_usd"]) for m in done), Decimal(0))
    ledger_total = sum((e.cost_usd for e in testing.ledger(emulator) if e.billed), Decimal(0))
    assert spent <= ledger_total

    third = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=_environ(), timeout=120)
    assert charges_by_prompt(emulator) == charges, "a third run sent nothing"
    unknown = {m["row"] for m in manifest if m["status"] == "unknown"}
    looked_at_again = {
        r["row"]: r["status"] for r in map(json.loads, third.stdout.splitlines()) if not r.get("earlier")
    }
    assert looked_at_again == dict.fromkeys(unknown, "unknown"), "only rows a vendor may hold are looked at again"


def test_dry_run_reports_every_bad_row_at_once_and_sends_nothing(
    emulator: Any, tmp_path: Path, reference: Path
) -> None:
    rows = [{"prompt": f"fine {i}", "seed": i} for i in range(6)]
    rows[1] = {"prompt": "bad size", "aspect_ratio": "7:3"}
    rows[3] = {"prompt": "bad strength", "image": "face.png", "strength": 3}
    rows[4] = {"prompt": "missing image", "reference": "nowhere.png", "num_images": 9}
    path = rows_file(tmp_path, rows)
    config = _config(tmp_path, fal=4)
    done = subprocess.run(
        _command(emulator, tmp_path, path, config, "-p", "fal", "--dry-run"),
        capture_output=True, text=True, cwd=tmp_path, env=_environ(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = done.stderr.splitlines()
    assert any(line.startswith("row 2: aspect_ratio:") for line in errors)
    assert any(line.startswith("row 4: strength:") for line in errors)
    assert any(line.startswith("row 5: reference:") for line in errors)
    assert any(line.startswith("row 5: num_images:") for line in errors)
    assert "6 rows: 3 valid, 3 invalid" in done.stdout and "Nothing was sent." in done.stdout
    assert testing.billed(emulator) == 0

    run = subprocess.run(
        _command(emulator, tmp_path, path, config, "-p", "fal"),
        capture_output=True, text=True, cwd=tmp_path, env=_environ(), timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "nothing was sent" in run.stderr
    assert testing.billed(emulator) == 0

    run = subprocess.run(
        _command(emulator, tmp_path, path, config, "-p", "fal", "--skip-invalid", "--json", "--progress", "auto"),
        capture_output=True, text=True, cwd=tmp_path, env=_environ(), timeout=60,
    )  # fmt: skip
    assert run.returncode == 1  # the invalid rows are not done
    statuses = {json.loads(line)["row"]: json.loads(line)["status"] for line in run.stdout.splitlines()}
    assert statuses == {1: "done", 2: "invalid", 3: "done", 4: "invalid", 5: "invalid", 6: "done"}
    assert testing.billed(emulator) == 3
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "summary" and events[-1]["statuses"] == {"done": 3, "invalid": 3}
    last = [e for e in events if e["event"] == "progress"][-1]  # the last figures, however short the run
    assert (last["total"], last["done"], last["failed"], last["in_flight"]) == (6, 3, 3, 0)
    assert last["rows_per_minute_by_vendor"]["fal"] == 3.0
    assert (tmp_path / "out" / "batch-summary.png").is_file()
    assert (tmp_path / "out" / "summary.json").is_file()


def test_max_cost_is_never_exceeded_from_the_command_line(emulator: Any, tmp_path: Path, reference: Path) -> None:
    path = rows_file(tmp_path, [{"prompt": f"row {i}"} for i in range(10)])
    config = _config(tmp_path, fal=3, segmind=3)
    command = _command(emulator, tmp_path, path, config, "-p", "fal,segmind", "--max-cost", "0.80")
    for _ in range(2):  # running again does not reset the cap: it is the whole batch's
        run = subprocess.run(
            [*command, "--progress", "plain"], capture_output=True, text=True, cwd=tmp_path, env=_environ(), timeout=60
        )
        spent = sum((e.cost_usd for e in testing.ledger(emulator) if e.billed), Decimal(0))
        assert spent <= Decimal("0.80")
        assert all(line.startswith("{") for line in run.stdout.splitlines()), "stdout is the manifest's alone"
        progress = [line for line in run.stderr.splitlines() if line.startswith("10/10 rows")]
        assert progress and " of $0.80" in progress[-1], run.stderr
        assert "the batch's cap is $0.80" in run.stderr
    statuses = {m["status"] for m in _manifest(tmp_path)}
    assert statuses == {"done", "over_budget"}

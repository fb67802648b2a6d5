"""SIGTERM (a service manager, ``kill``) ends a run as Ctrl-C does: the job is released in the journal and
the command says what a vendor had admitted and how to resume it. Real processes, a real emulator socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ideochar.assets import reference_bytes

pytestmark = [pytest.mark.socket, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]


def _environ(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("IDEOCHAR_")}
    return {**keep, "IDEOCHAR_CONFIG": "off", "IDEOCHAR_JOURNAL": str(tmp_path / "journal.sqlite3")}


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[str]:
    """``ideochar emulator serve`` whose jobs take a minute: a run is still waiting when it is stopped."""
    server = subprocess.Popen(
        [sys.executable, "-m", "ideochar.cli", "emulator", "serve", "--port", "0", "--model-seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_environ(tmp_path),
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = next(word for word in line.split() if word.startswith("http://"))
        yield url.rstrip("/")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_sigterm_names_the_admitted_job_and_how_to_resume_it(slow_emulator: str, tmp_path: Path) -> None:
    reference = tmp_path / "face.png"
    reference.write_bytes(reference_bytes())
    run = subprocess.Popen(
        [sys.executable, "-m", "ideochar.cli", "generate", "a knight", "-r", str(reference), "-p", "fal",
         "--emulator-url", slow_emulator, "--out", str(tmp_path / "out"), "--progress", "plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environ(tmp_path),
    )  # fmt: skip
    assert run.stderr is not None
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = run.stderr.readline()
        seen.append(line)
        if "job admitted" in line:
            break
    else:
        run.kill()
        raise AssertionError("the job was never admitted:\n" + "".join(seen))
    run.send_signal(signal.SIGTERM)
    _, rest = run.communicate(timeout=30)
    stderr = "".join(seen) + rest
    assert run.returncode == 143, stderr
    assert "terminated." in stderr and "Traceback" not in stderr
    hint = next(line for line in stderr.splitlines() if "Fetch it with: ideochar jobs resume" in line)
    assert hint.endswith(f"--emulator-url {slow_emulator}")

    listed = subprocess.run(
        [sys.executable, "-m", "ideochar.cli", "jobs", "list", "--json"],
        capture_output=True, text=True, env=_environ(tmp_path), check=True,
    )  # fmt: skip
    [job] = json.loads(listed.stdout)["jobs"]
    assert job["status"] == "running" and job["emulated"] is True
    assert job["owner"] is None  # released: a resume may take it over at once
    assert job["id"] in hint

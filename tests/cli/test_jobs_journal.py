"""ideochar jobs list|show|resume: a run stopped after the vendor admitted it is finished, never resent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ideochar.cli import CliState

from .conftest import Invoke, Vendors


def _interrupted_job(invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path) -> str:
    vendors["alpha"].interrupt_after_submit = True
    result = invoke("generate", "a lighthouse", "-r", reference, "-p", "alpha", "--out", str(tmp_path / "o"), "-q")
    assert result.exit_code == 130
    resume_line = next(line for line in result.stderr.splitlines() if "ideochar jobs resume" in line)
    vendors["alpha"].interrupt_after_submit = False
    return resume_line.rsplit(" ", 1)[1]


def test_an_interrupted_job_is_listed_as_resumable(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    job = _interrupted_job(invoke, vendors, reference, tmp_path)
    result = invoke("jobs", "list")
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if line.startswith(job[:12])]
    cells = row.split()
    assert cells[3:8] == ["running", "generate", "-", "0/1", "$0.00"]
    assert "yes" in cells and row.endswith("a lighthouse")
    assert "1 job(s), 0 image(s), spent $0.00, possibly billed $0.06 more" in result.stdout

    shown = invoke("jobs", "show", job[:8])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"job {job} (running)")
    assert "alpha-job-1" in shown.stdout and "may still run and bill" in shown.stdout
    assert f"ideochar jobs resume {job[:12]}" in shown.stdout


def test_resume_fetches_the_admitted_job_without_sending_it_again(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    job = _interrupted_job(invoke, vendors, reference, tmp_path)
    posts_before = len(vendors["alpha"].requests)
    result = invoke("jobs", "resume", job[:10], "--out", str(tmp_path / "resumed"), "--json", "-q")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["job_id"] == job and document["vendor_request_id"] == "alpha-job-1"
    [image] = document["images"]
    assert Path(image["path"]).parent == tmp_path / "resumed"
    assert len(vendors["alpha"].requests) == posts_before == 1  # fetched by id, not resubmitted

    listed = json.loads(invoke("jobs", "list", "--json").stdout)
    [entry] = listed["jobs"]
    assert entry["status"] == "succeeded" and len(entry["outputs"]) == 1
    assert listed["totals"]["spent_usd"] == "0.06"


def test_show_json_and_an_unknown_job(invoke: Invoke, reference: str, tmp_path: Path) -> None:
    done = invoke("generate", "x", "-r", reference, "-p", "beta", "--out", str(tmp_path / "o"), "-q")
    job = done.stdout.splitlines()[-1].split()[2]
    assert done.stdout.splitlines()[-1] == f"journal: job {job} (ideochar jobs show {job[:12]})"
    document = json.loads(invoke("jobs", "show", job, "--json").stdout)
    assert document["id"] == job and document["provider"] == "beta" and document["spent_usd"] == "0.04"
    assert [a["status"] for a in document["attempts"]] == ["succeeded"]

    missing = invoke("jobs", "show", "ffffffffff")
    assert missing.exit_code == 2 and "no job 'ffffffffff'" in missing.stderr


def test_no_journal_records_nothing_and_jobs_says_the_journal_is_off(
    state: CliState, invoke: Invoke, reference: str, tmp_path: Path
) -> None:
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path / "o"), "-q", "--no-journal")
    assert result.exit_code == 0 and "journal:" not in result.stdout
    assert invoke("jobs", "list").stdout.startswith("no jobs in ")

    state.environ = {**(state.environ or {}), "IDEOCHAR_JOURNAL": "false"}
    off = invoke("jobs", "list")
    assert off.exit_code == 2 and "the journal is off" in off.stderr


def test_a_journal_file_can_be_named(invoke: Invoke, reference: str, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.sqlite3"
    assert (
        invoke(
            "generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q", "--journal", str(other)
        ).exit_code
        == 0
    )
    assert len(json.loads(invoke("jobs", "list", "--journal", str(other), "--json").stdout)["jobs"]) == 1
    assert json.loads(invoke("jobs", "list", "--json").stdout)["jobs"] == []
    assert invoke("jobs", "list", "--journal", str(tmp_path / "nope.sqlite3")).exit_code == 2


class _NoServer:
    """Stands in for the emulator's background server (the fake providers bring no emulator routes)."""

    url = "http://127.0.0.1:9"

    def start(self) -> _NoServer:
        return self

    def stop(self) -> None:
        pass


def test_an_emulated_run_is_journaled_marked_and_never_counted_as_spent(
    invoke: Invoke, reference: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule for Python and the command line: emulated runs are journaled, marked wherever they appear."""
    monkeypatch.setattr("ideochar.emulator.server.BackgroundServer", lambda *a, **k: _NoServer())
    emulated = invoke("generate", "x", "-r", reference, "-p", "alpha", "--emulator", "--out", str(tmp_path), "-q")
    assert emulated.exit_code == 0, emulated.output
    assert "journal:" in emulated.stdout and "emulated: nothing charged (" in emulated.stdout
    real = invoke("generate", "y", "-r", reference, "-p", "beta", "--out", str(tmp_path), "-q")
    assert real.exit_code == 0, real.output

    listed = json.loads(invoke("jobs", "list", "--json").stdout)
    by_prompt = {job["prompt"]: job for job in listed["jobs"]}
    assert by_prompt["x"]["emulated"] is True and by_prompt["x"]["spent_usd"] == "0"
    assert by_prompt["x"]["emulated_cost_usd"] == "0.06"
    assert by_prompt["y"]["emulated"] is False and by_prompt["y"]["spent_usd"] == "0.04"
    assert listed["totals"] == {
        "jobs": 1, "images": 1, "spent_usd": "0.04", "possibly_billed_usd": "0", "emulated_jobs": 1
    }  # fmt: skip

    table = invoke("jobs", "list").stdout
    [row] = [line for line in table.splitlines() if line.endswith("  x")]
    assert "emulated" in row.split()
    assert "1 job(s), 1 image(s), spent $0.04; 1 emulated job(s), not counted" in table
    shown = invoke("jobs", "show", by_prompt["x"]["id"]).stdout
    assert "emulated: nothing was charged (a vendor would have charged $0.06)" in shown


def test_an_emulated_job_is_resumed_only_against_an_emulator(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    vendors["alpha"].interrupt_after_submit = True
    url = "http://127.0.0.1:9"
    args = ["generate", "x", "-r", reference, "-p", "alpha", "--emulator-url", url, "--out", str(tmp_path), "-q"]
    stopped = invoke(*args)
    assert stopped.exit_code == 130
    assert "--emulator-url http://127.0.0.1:9" in stopped.stderr  # the hint resumes it where it ran
    vendors["alpha"].interrupt_after_submit = False
    job = json.loads(invoke("jobs", "list", "--json").stdout)["jobs"][0]["id"]

    refused = invoke("jobs", "resume", job, "--out", str(tmp_path), "-q")
    assert refused.exit_code == 2
    assert "ran against the emulator" in refused.stderr and "--emulator-url" in refused.stderr

    resumed = invoke("jobs", "resume", job, "--emulator-url", url, "--out", str(tmp_path), "-q")
    assert resumed.exit_code == 0, resumed.output
    assert "emulated: nothing charged (" in resumed.stdout


def test_the_jobs_commands_work_on_a_postgresql_journal(
    state: CliState, invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path, postgres_url: str
) -> None:
    """``IDEOCHAR_JOURNAL_URL``: list, show, wait, resume, prune (and quote's times) on the real server; it has
    no file, so every listing names the database (its URL without a password) where SQLite names its file."""
    environ = {k: v for k, v in (state.environ or {}).items() if k != "IDEOCHAR_JOURNAL"}
    state.environ = {**environ, "IDEOCHAR_JOURNAL_URL": postgres_url, "IDEOCHAR_OUTPUT_DIR": str(tmp_path / "kept")}
    where = postgres_url.split("?")[0]
    job = _interrupted_job(invoke, vendors, reference, tmp_path)

    listed = invoke("jobs", "list")
    assert listed.exit_code == 0, listed.output
    assert [line for line in listed.stdout.splitlines() if line.startswith(job[:12])]
    assert f"(journal {where}" in listed.stdout
    document = json.loads(invoke("jobs", "list", "--json").stdout)
    assert document["journal"].startswith(where) and [j["id"] for j in document["jobs"]] == [job]
    shown = invoke("jobs", "show", job[:8])
    assert shown.exit_code == 0 and shown.stdout.startswith(f"job {job} (running)"), shown.output

    sent = invoke("generate", "a harbour", "-r", reference, "-p", "alpha", "--no-wait")
    assert sent.exit_code == 0, sent.output
    later = sent.stdout.strip()
    waited = invoke("jobs", "wait", later[:12], "--out", str(tmp_path / "waited"), "--json", "-q")
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.stdout)["job_id"] == later

    posts = len(vendors["alpha"].requests)
    resumed = invoke("jobs", "resume", job[:10], "--out", str(tmp_path / "resumed"), "--json", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert len(vendors["alpha"].requests) == posts == 2  # fetched by id: each job was sent once
    statuses = {j["id"]: j["status"] for j in json.loads(invoke("jobs", "list", "--json").stdout)["jobs"]}
    assert statuses == {job: "succeeded", later: "succeeded"}
    quoted = {q["provider"]: q for q in json.loads(invoke("quote", "x", "--json").stdout)}
    assert quoted["alpha"]["time_source"] == "seen"  # the quote reads its times from the same database

    dry = invoke("jobs", "prune", "--older-than", "0s", "--dry-run")
    assert dry.exit_code == 0 and "would forget 2 job(s)" in dry.stdout and f"(journal {where}" in dry.stdout
    pruned = json.loads(invoke("jobs", "prune", "--older-than", "0s", "--json").stdout)
    assert sorted(pruned["removed"]) == sorted([job, later]) and pruned["journal"].startswith(where)
    empty = invoke("jobs", "list")
    assert empty.exit_code == 0 and empty.stdout.startswith(f"no jobs in {where}"), empty.output

"""Batches against the emulator on a loopback socket: spreading by capacity, the cap, a breaker that
opens, an edited row, the blocking twin. The ledger is the truth about money."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from ideochar import AsyncClient, Client
from ideochar.batch import RowResult, RowSource
from ideochar.breaker import CircuitBreaker

from .conftest import charges_by_prompt, client_limits, rows_file, testing

pytestmark = pytest.mark.socket


def _rows(reference: Path, count: int, prefix: str = "scene") -> list[dict[str, Any]]:
    return [{"prompt": f"{prefix} {i}", "reference": str(reference), "seed": i} for i in range(count)]


def _client(server: Any, tmp_path: Path, providers: Sequence[str], **kwargs: Any) -> AsyncClient:
    return AsyncClient(
        list(providers), emulator=server.url, journal=tmp_path / "journal.sqlite3", config=False, **kwargs
    )


def _run(client: AsyncClient, rows: Any, **options: Any) -> tuple[list[RowResult], Any]:
    async def main() -> tuple[list[RowResult], Any]:
        async with client, client.batch(rows, **options) as batch:
            results = [row async for row in batch]
        return results, batch.summary

    return anyio.run(main)


def _fal_in_flight(server: Any) -> int:
    """The most fal jobs the emulator held at once (its in-flight gauge's high-water mark)."""
    return int(testing.in_flight(server, "fal")["peak"])


def test_work_spills_to_the_second_vendor_when_the_first_is_saturated(
    emulator: Any, tmp_path: Path, reference: Path
) -> None:
    testing.state_of(emulator).set_model_seconds(0.4)
    client = _client(emulator, tmp_path, ["fal", "segmind"], limits=client_limits(fal=2, segmind=3))
    results, summary = _run(client, _rows(reference, 15))
    served = {r.provider for r in results}
    assert {r.status for r in results} == {"done"}
    assert served == {"fal", "segmind"}, "the second vendor took the overflow"
    assert _fal_in_flight(emulator) <= 2, "fal never got more than its limit"
    assert charges_by_prompt(emulator) == {f"scene {i}": 1 for i in range(15)}
    assert {v.provider: v.rows for v in summary.vendors} == {
        "fal": sum(r.provider == "fal" for r in results),
        "segmind": sum(r.provider == "segmind" for r in results),
    }


def test_overflow_skips_a_vendor_above_the_price_cap_for_the_next_within_it(
    emulator: Any, tmp_path: Path, reference: Path
) -> None:
    """fal ($0.15) saturated: segmind ($0.1875) is next in order but above the $0.16 cap per job, so the
    overflow goes to replicate ($0.15), and segmind gets nothing."""
    testing.state_of(emulator).set_model_seconds(0.4)
    limits = client_limits(fal=2, segmind=3, replicate=2)
    client = _client(emulator, tmp_path, ["fal", "segmind", "replicate"], limits=limits, max_cost_usd="0.16")
    results, _ = _run(client, _rows(reference, 10))
    assert {r.status for r in results} == {"done"}
    assert {r.provider for r in results} == {"fal", "replicate"}
    assert testing.billed(emulator, "segmind") == 0
    assert _fal_in_flight(emulator) <= 2


def test_without_spill_every_row_waits_for_the_preferred_vendor(emulator: Any, tmp_path: Path, reference: Path) -> None:
    client = _client(emulator, tmp_path, ["fal", "segmind"], limits=client_limits(fal=2, segmind=3))
    results, _ = _run(client, _rows(reference, 6), spill=False)
    assert {r.provider for r in results} == {"fal"}
    assert _fal_in_flight(emulator) <= 2


def test_the_cap_is_never_exceeded_and_rows_over_it_are_reported(
    emulator: Any, tmp_path: Path, reference: Path
) -> None:
    rows = _rows(reference, 12)
    cap = Decimal("1.00")
    client = _client(emulator, tmp_path, ["fal", "segmind"], limits=client_limits(fal=3, segmind=3))
    results, summary = _run(client, rows, max_cost_usd=cap, name="capped")
    billed = testing.ledger(emulator)
    spent = sum((e.cost_usd for e in billed if e.billed), Decimal(0))
    assert spent <= cap
    assert summary.committed_usd <= cap
    over = [r for r in results if r.status == "over_budget"]
    assert over and all(r.billed == "no" and "cap" in (r.error or "") for r in over)
    assert len([r for r in results if r.ok]) == len([e for e in billed if e.billed])

    again = _client(emulator, tmp_path, ["fal", "segmind"], limits=client_limits(fal=3, segmind=3))
    results, _ = _run(again, rows, max_cost_usd=cap, name="capped")
    assert sum((e.cost_usd for e in testing.ledger(emulator) if e.billed), Decimal(0)) <= cap
    assert {r.status for r in results} <= {"done", "over_budget"}


def test_a_vendor_whose_breaker_opens_stops_receiving_work_and_the_batch_goes_on(
    emulator: Any, tmp_path: Path, reference: Path
) -> None:
    testing.set_faults(emulator, {"fal": [{"route": "submit", "kind": "status", "status": 503}]})
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=600)
    client = _client(emulator, tmp_path, ["fal", "segmind"], limits=client_limits(fal=2, segmind=4), breaker=breaker)
    results, _ = _run(client, _rows(reference, 12))
    assert [r.status for r in results] == ["done"] * 12
    assert {r.provider for r in results} == {"segmind"}
    assert breaker.state("fal") == "open"
    from ideochar.journal import Journal

    with Journal(tmp_path / "journal.sqlite3") as journal:
        tried_fal = sum(a.provider == "fal" for job in journal.jobs(limit=None) for a in job.attempts)
    # Before the breaker opened: at most the jobs already in flight at fal (its limit), each tried once.
    assert tried_fal <= 2 + 2, tried_fal
    assert testing.billed(emulator, "fal") == 0


def test_an_edited_row_runs_again_alone(emulator: Any, tmp_path: Path, reference: Path) -> None:
    rows = _rows(reference, 5)
    path = rows_file(tmp_path, rows)
    _run(_client(emulator, tmp_path, ["fal"]), RowSource(path), out=tmp_path / "out")
    assert testing.billed(emulator) == 5

    rows[3]["prompt"] = "scene 3, at night"
    rows_file(tmp_path, rows)
    results, _ = _run(_client(emulator, tmp_path, ["fal"]), RowSource(path), out=tmp_path / "out")
    assert testing.billed(emulator) == 6
    assert [(r.row, r.earlier) for r in sorted(results, key=lambda r: r.row)] == [
        (1, True), (2, True), (3, True), (4, False), (5, True)
    ]  # fmt: skip
    manifest = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [m["row"] for m in manifest] == [1, 2, 3, 4, 5], "the manifest is in the file's order, one line a row"
    assert {m["status"] for m in manifest} == {"done"}
    for entry, row in zip(manifest, rows, strict=True):
        (saved,) = entry["files"]
        assert Path(saved["path"]).is_file()
        assert (entry["provider"], entry["cost_usd"], entry["seed"], entry["error"]) == (
            "fal",
            "0.15",
            row["seed"],
            None,
        )
        assert (
            entry["vendor_request_id"]
            and saved["sha256"] == hashlib.sha256(Path(saved["path"]).read_bytes()).hexdigest()
        )


def test_the_blocking_twin_yields_rows_as_they_finish(emulator: Any, tmp_path: Path, reference: Path) -> None:
    with Client(
        ["fal", "segmind"],
        emulator=emulator.url,
        journal=tmp_path / "journal.sqlite3",
        config=False,
        limits=client_limits(fal=2, segmind=2),
    ) as client:
        with client.batch(_rows(reference, 8), out=tmp_path / "out", max_cost_usd="10") as batch:
            results = list(batch)
        again = client.batch(_rows(reference, 8), out=tmp_path / "out").run()
    assert sorted(r.row for r in results) == list(range(1, 9))
    assert {r.status for r in results} == {"done"}
    assert {r.provider for r in results} == {"fal", "segmind"}
    assert again.statuses == {"done": 8} and not again.vendors, "the second run found every row done"
    assert charges_by_prompt(emulator) == {f"scene {i}": 1 for i in range(8)}


def test_identical_rows_are_one_row_paid_for_once(emulator: Any, tmp_path: Path, reference: Path) -> None:
    rows = _rows(reference, 3)
    rows.insert(1, dict(rows[0]))  # the same request twice: one job, reported for both rows
    results, _ = _run(_client(emulator, tmp_path, ["fal"]), rows)
    by_row = {r.row: r for r in results}
    assert sorted(by_row) == [1, 2, 3, 4]
    assert by_row[1].key == by_row[2].key and {by_row[1].status, by_row[2].status} == {"done"}
    assert {by_row[1].earlier, by_row[2].earlier} == {True, False}
    assert charges_by_prompt(emulator) == {"scene 0": 1, "scene 1": 1, "scene 2": 1}


def test_a_claim_whose_job_never_began_is_sent_once_under_its_id(
    emulator: Any, tmp_path: Path, reference: Path
) -> None:
    """A run killed between claiming a row and journaling its job left a claim the journal has no job for:
    the journal records a job before sending any of it, so nothing was sent; the row is sent now, once."""
    from ideochar._owner import Owner
    from ideochar.batch import RowSource
    from ideochar.batch._state import State
    from ideochar.journal import Journal

    rows = list(RowSource(rows_file(tmp_path, _rows(reference, 2))))
    Journal(tmp_path / "journal.sqlite3").close()  # the journal's file, as a run creates it
    gone = Owner(host=Owner.current().host, pid=2**22 + 4321, started="0", token="a-run-that-died")
    state = State(tmp_path / "journal.sqlite3", "interrupted", gone)
    claim = state.claim(
        rows[0].key, number=1, label=None, job_id="f" * 32, reserve=Decimal("0.15"), cap=Decimal("1.00")
    )
    assert claim.outcome == "claimed"
    state._heartbeat.stop()
    state._database.close()  # died: its claim stays, held by nobody alive

    results, summary = _run(_client(emulator, tmp_path, ["fal"]), rows, name="interrupted", max_cost_usd="1.00")
    by_row = {r.row: r for r in results}
    assert by_row[1].status == "done" and by_row[1].job_id == "f" * 32
    assert charges_by_prompt(emulator) == {"scene 0": 1, "scene 1": 1}
    assert summary.committed_usd == Decimal("0.30")


def test_two_processes_running_one_batch_pay_for_each_row_once(emulator: Any, tmp_path: Path, reference: Path) -> None:
    import subprocess
    import sys

    path = rows_file(tmp_path, [{"prompt": f"scene {i}", "seed": i} for i in range(16)])
    config = tmp_path / "ideochar.toml"
    config.write_text('[limits.fal]\nmax_images_in_flight = 3\n[limits.segmind]\nmax_images_in_flight = 2\n'
                      "requests_per_minute = 100000\n")  # fmt: skip
    command = [
        sys.executable, "-m", "ideochar.cli", "batch", str(path), "-r", str(reference), "-p", "fal,segmind",
        "--emulator-url", emulator.url, "--journal", str(tmp_path / "journal.sqlite3"), "--out", str(tmp_path / "out"),
        "--config", str(config), "--progress", "off",
    ]  # fmt: skip
    environ = {k: v for k, v in __import__("os").environ.items() if not k.startswith("IDEOCHAR_")}
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
            for _ in range(2)]  # fmt: skip
    outputs = [run.communicate(timeout=120) for run in both]
    assert all(run.returncode in (0, 1) for run in both), [err[-2000:] for _, err in outputs]
    served = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    assert {r["status"] for r in served} <= {"done", "held"}
    assert charges_by_prompt(emulator) == {f"scene {i}": 1 for i in range(16)}
    after = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=60)
    assert after.returncode == 0, after.stderr[-2000:]
    assert all(json.loads(line).get("earlier") for line in after.stdout.splitlines())
    assert charges_by_prompt(emulator) == {f"scene {i}": 1 for i in range(16)}


def test_the_clients_own_budget_is_settled_with_what_each_job_cost(
    emulator: Any, tmp_path: Path, reference: Path
) -> None:
    """The batch holds the chosen provider's permit for the job's life: released with what the job's attempts
    there cost (nothing, when fal refused each submit before admitting it), as the router settles its own."""
    testing.set_faults(emulator, {"fal": [{"route": "submit", "kind": "status", "status": 503}]})
    client = _client(
        emulator,
        tmp_path,
        ["fal", "segmind"],
        limits=client_limits(fal=2, segmind=4),
        budget_usd="100",
        breaker=CircuitBreaker(failure_threshold=100),
    )
    results, _ = _run(client, _rows(reference, 6))
    assert {r.provider for r in results} == {"segmind"} and {r.status for r in results} == {"done"}
    budget = client.budget
    assert budget is not None
    spent, reserved = client.state.spent(budget)
    assert reserved == 0
    assert spent == Decimal("0.1875") * 6 == testing.ledger(emulator)[0].cost_usd * 6

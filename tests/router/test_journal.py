"""The journal: rows written as things happen, images on disk with their hash, no key anywhere.

Every test runs against both databases (SQLite, and PostgreSQL in a schema of its own): ``journal_path``
is the file or the URL (tests/journal_backends.py).
"""

from __future__ import annotations

import hashlib
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from ideochar import AuthenticationFailed, IdeocharError, JournalUnavailable
from ideochar.journal import SCHEMA_VERSION, JobNotFound, Journal
from journal_backends import BACKENDS, WriteLock, all_text, is_postgres, location_for, peek, set_schema_version

from .conftest import MakeClient
from .fakes import FakeProvider, FakeVendors


@pytest.fixture(params=BACKENDS)
def journal_path(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The journal every client of a test records into: a SQLite file, or a PostgreSQL schema."""
    return location_for(request, tmp_path / "journal" / "journal.sqlite3")


def test_the_job_is_recorded_before_anything_is_sent(
    make_client: MakeClient, vendors: FakeVendors, reference: Path, journal_path: Any
) -> None:
    seen: list[Any] = []

    def admit(request: httpx.Request) -> httpx.Response:
        seen.extend(peek(journal_path, "SELECT * FROM jobs"))
        seen.extend(peek(journal_path, "SELECT * FROM attempts"))
        return httpx.Response(200, json={"id": "alpha-job-9"})

    vendors["alpha"].submits = [admit]
    client = make_client(FakeProvider("alpha"))
    result = client.generate("a knight", reference, seed=4)
    job, attempt = seen
    assert job["id"] == result.job_id and job["status"] == "running" and job["prompt"] == "a knight"
    # The intent to send is committed before the billable request leaves (the journal fails closed).
    assert (attempt["provider"], attempt["status"], attempt["seed"]) == ("alpha", "sending", 4)
    assert attempt["intent_at"] is not None


def test_the_vendor_id_is_committed_before_the_next_request(
    make_client: MakeClient, vendors: FakeVendors, reference: Path, journal_path: Any
) -> None:
    seen: list[Any] = []
    vendors["alpha"].on_poll = lambda job: seen.extend(peek(journal_path, "SELECT * FROM attempts"))
    client = make_client(FakeProvider("alpha"))
    client.generate("a knight", reference)
    first = seen[0]
    assert (first["status"], first["vendor_request_id"]) == ("submitted", "alpha-job-1")
    assert '"id":"alpha-job-1"' in first["resume"]


def test_outputs_are_saved_atomically_with_their_hash(
    make_client: MakeClient, vendors: FakeVendors, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "images"
    client = make_client(FakeProvider("alpha", per_call=2), output_dir=out)
    result = client.generate("a knight", reference, num_images=2, seed=3)
    assert client.journal is not None
    job = client.journal.job(result.job_id or "")
    assert [o.path.parent for o in job.outputs] == [out / job.id] * 2
    for output, image in zip(job.outputs, result.images, strict=True):
        data = output.path.read_bytes()
        assert data == image.data and hashlib.sha256(data).hexdigest() == output.sha256 == image.sha256
        assert (output.size_bytes, output.seed, output.width) == (len(data), image.seed, image.width)
    assert not list((out / job.id).glob(".*"))  # no temporary file left behind
    assert job.status == "succeeded" and job.cost_usd == Decimal("0.10") and job.spent_usd == Decimal("0.10")


def test_the_database_is_in_wal_mode_and_versioned(make_client: MakeClient, reference: Path, journal_path: Any) -> None:
    make_client(FakeProvider("alpha")).generate("x", reference)
    if is_postgres(journal_path):
        assert peek(journal_path, "SELECT version FROM ideochar_schema")[0][0] == SCHEMA_VERSION
        columns = peek(
            journal_path,
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'jobs'"
            " AND column_name = 'created_at' AND table_schema = current_schema()",
        )
        assert columns[0][0] == "double precision"  # a Unix time in PostgreSQL's 4-byte REAL is off by minutes
        return
    assert peek(journal_path, "PRAGMA journal_mode")[0][0] == "wal"
    assert peek(journal_path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION


def test_no_key_reaches_the_journal_files(
    make_client: MakeClient, vendors: FakeVendors, reference: Path, journal_path: Any, canary_key: str
) -> None:
    def echo_key(request: httpx.Request) -> httpx.Response:  # a vendor that quotes the key back
        return httpx.Response(401, text=f"bad key {request.headers['authorization']}")

    vendors["alpha"].submits = [echo_key]
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"), keys={"alpha": canary_key, "beta": canary_key})
    result = client.generate("a knight", reference)
    assert result.attempts[0].error_type == "AuthenticationFailed"
    client.close()
    blob = all_text(journal_path)
    assert blob
    assert canary_key.encode() not in blob
    assert canary_key[:16].encode() not in blob and canary_key[-16:].encode() not in blob
    rows = peek(journal_path, "SELECT message FROM attempts WHERE provider = 'alpha'")
    assert "[REDACTED]" in rows[0]["message"]


def test_jobs_list_and_show_give_attempts_costs_and_total_spend(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [lambda r: httpx.Response(500, headers={"x-request-id": "z"})]
    client = make_client(FakeProvider("alpha", "0.07"), FakeProvider("beta", "0.03"))
    first = client.generate("one", reference)
    second = client.generate("two", reference, num_images=2)
    vendors["alpha"].submits = [401]
    vendors["beta"].submits = [401]
    with pytest.raises(IdeocharError):
        client.generate("three", reference)
    journal = client.journal
    assert journal is not None
    jobs = journal.jobs()
    assert [j.prompt for j in jobs] == ["three", "two", "one"]
    assert [j.status for j in jobs] == ["failed", "succeeded", "succeeded"]
    shown = journal.job((first.job_id or "")[:8])
    assert [(a.provider, a.status, a.billed) for a in shown.attempts] == [
        ("alpha", "failed", "no"),
        ("beta", "succeeded", "yes"),
    ]
    assert shown.attempts[1].vendor_request_id == first.vendor_request_id
    totals = journal.totals()
    assert (totals.jobs, totals.images) == (3, 3)
    assert totals.spent_usd == Decimal("0.03") + Decimal("0.07") * 2 == first.cost_usd + second.cost_usd  # type: ignore[operator]
    assert totals.possibly_billed_usd == 0
    document = shown.to_dict()
    assert document["spent_usd"] == "0.03" and document["attempts"][1]["status"] == "succeeded"


def test_an_unknown_job_is_reported_by_id(journal_path: Any) -> None:
    with Journal(journal_path) as journal, pytest.raises(JobNotFound) as caught:
        journal.job("nope")
    assert caught.value.field == "job_id"


def test_a_journal_from_a_newer_version_is_refused(journal_path: Any) -> None:
    Journal(journal_path).close()
    set_schema_version(journal_path, SCHEMA_VERSION + 1)
    with pytest.raises(IdeocharError, match="newer ideochar"):
        Journal(journal_path)


def test_the_journal_can_be_switched_off(make_client: MakeClient, reference: Path, journal_path: Any) -> None:
    client = make_client(FakeProvider("alpha"), journal=False)
    result = client.generate("x", reference)
    assert client.journal is None and result.images
    if is_postgres(journal_path):
        assert not peek(
            journal_path,
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'jobs' AND table_schema = current_schema()",
        )
    else:
        assert not journal_path.exists()


def test_the_default_journal_lives_in_the_user_data_folder(
    make_client: MakeClient, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    client = make_client(FakeProvider("alpha"), journal=None)
    client.generate("x", reference)
    assert client.journal is not None
    assert client.journal.path == tmp_path / "data" / "ideochar" / "journal.sqlite3"
    assert client.journal.output_dir == tmp_path / "data" / "ideochar" / "outputs"


def test_a_journal_object_can_be_shared(make_client: MakeClient, reference: Path, journal_path: Any) -> None:
    with Journal(journal_path) as journal:
        make_client(FakeProvider("alpha"), journal=journal).generate("one", reference)
        make_client(FakeProvider("alpha"), journal=journal).generate("two", reference)
        assert len(journal.jobs()) == 2


def test_a_failed_job_records_its_error(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    vendors["alpha"].submits = [401]
    client = make_client(FakeProvider("alpha"))
    with pytest.raises(AuthenticationFailed):
        client.generate("x", reference)
    assert client.journal is not None
    [job] = client.journal.jobs()
    assert (job.status, job.error_type) == ("failed", "AuthenticationFailed")
    assert job.request["inputs"]["reference"]["path"] == str(reference.resolve())


# -- the journal fails closed ------------------------------------------------------------------------------


class LockedAfterCreate(Journal):
    """A journal another process locks right after the job is created, past a short busy timeout."""

    def __init__(self, location: Any) -> None:
        super().__init__(location, busy_timeout_seconds=0.1)
        self.location = location
        self.holder: WriteLock | None = None

    def create_job(self, *args: object, **kwargs: object) -> None:
        super().create_job(*args, **kwargs)  # type: ignore[arg-type]
        self.holder = WriteLock(self.location)


@pytest.mark.parametrize("fails", ["start_attempt", "intend"])
def test_a_journal_that_cannot_record_the_attempt_stops_the_job_before_anything_is_sent(
    make_client: MakeClient, vendors: FakeVendors, reference: Path, journal_path: Any, fails: str
) -> None:
    journal = Journal(journal_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    setattr(journal, fails, broken)
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"), journal=journal)
    with pytest.raises(JournalUnavailable) as caught:
        client.generate("a knight", reference)
    assert vendors["alpha"].posts == 0 and vendors["beta"].posts == 0, "nothing may be sent, to anyone"
    assert [a.billed for a in caught.value.attempts] in ([], ["no"])
    job = Journal(journal_path).job(caught.value.job_id or "")
    assert job.parts[0].state == "planned"  # the positive record that nothing was sent
    delattr(journal, fails)  # the disk has room again: resume sends it, once
    result = make_client(FakeProvider("alpha"), journal=journal).resume(job.id)
    assert vendors["alpha"].posts == 1 and result.images


def test_a_journal_locked_by_another_process_past_its_busy_timeout_sends_nothing(
    make_client: MakeClient, vendors: FakeVendors, reference: Path, journal_path: Any
) -> None:
    journal = LockedAfterCreate(journal_path)
    client = make_client(FakeProvider("alpha"), journal=journal)
    with pytest.raises(JournalUnavailable, match="nothing was sent"):
        client.generate("a knight", reference)
    assert vendors["alpha"].posts == 0
    assert journal.holder is not None
    journal.holder.release()

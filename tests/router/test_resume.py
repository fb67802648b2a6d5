"""Client.resume: admitted jobs are picked up by vendor id; nothing is ever submitted twice.

Every test runs against both journals (SQLite, and PostgreSQL in a schema of its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import make_image
from ideochar import AuthenticationFailed, OutcomeUnknown
from ideochar.job import JobNotResumable
from ideochar.journal import Journal
from journal_backends import BACKENDS, location_for

from .conftest import MakeAsyncClient, MakeClient
from .fakes import FakeProvider, FakeVendors


@pytest.fixture(params=BACKENDS)
def journal_path(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The journal every client of a test records into: a SQLite file, or a PostgreSQL schema."""
    return location_for(request, tmp_path / "journal" / "journal.sqlite3")


class Killed(BaseException):
    """Stands in for the process dying mid-job (nothing below it runs, nothing is cleaned up)."""


def kill_on_first_poll(job: str) -> None:
    raise Killed(job)


def interrupted_job(make_client: MakeClient, vendors: FakeVendors, reference: Path, **kwargs: object) -> str:
    vendors["alpha"].on_poll = kill_on_first_poll
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"), **kwargs)
    with pytest.raises(Killed):
        client.generate("a knight", reference, seed=8)
    vendors["alpha"].on_poll = None
    assert client.journal is not None
    [job] = client.journal.jobs()
    return job.id


def test_a_job_killed_after_submit_is_resumed_by_vendor_id_without_resubmitting(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    job_id = interrupted_job(make_client, vendors, reference)
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    result = client.resume(job_id)
    assert vendors["alpha"].posts == 1 and vendors["beta"].requests == []
    assert (result.provider, result.vendor_request_id, result.job_id) == ("alpha", "alpha-job-1", job_id)
    assert [i.seed for i in result.images] == [8]
    assert client.journal is not None
    job = client.journal.job(job_id)
    assert job.status == "succeeded" and len(job.outputs) == 1
    [attempt] = job.attempts
    assert (attempt.status, attempt.resumes, attempt.vendor_request_id) == ("succeeded", 1, "alpha-job-1")
    assert str(job.spent_usd) == "0.05" and job.possibly_billed_usd == 0


def test_resuming_a_finished_job_returns_its_saved_images_without_the_network(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    client = make_client(FakeProvider("alpha", per_call=2))
    first = client.generate("x", reference, num_images=2)
    calls = vendors.calls
    again = client.resume(first.job_id or "")
    assert vendors.calls == calls
    assert [i.data for i in again.images] == [i.data for i in first.images]
    assert again.failures == []


@pytest.mark.anyio
async def test_the_async_client_resumes_too(
    make_client: MakeClient, make_async_client: MakeAsyncClient, vendors: FakeVendors, reference: Path
) -> None:
    job_id = interrupted_job(make_client, vendors, reference)
    async with make_async_client(FakeProvider("alpha"), FakeProvider("beta")) as client:
        result = await client.resume(job_id)
    assert result.vendor_request_id == "alpha-job-1" and vendors["alpha"].posts == 1


def test_a_job_lost_after_admission_is_resumed_once_the_vendor_answers_again(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].polls = [httpx.ReadTimeout("silence")] * 3
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    with pytest.raises(OutcomeUnknown) as caught:
        client.generate("x", reference)
    job_id = caught.value.job_id  # type: ignore[attr-defined]
    assert client.journal is not None and client.journal.job(job_id).status == "unknown"
    result = client.resume(job_id)
    assert result.vendor_request_id == "alpha-job-1" and vendors["alpha"].posts == 1


def test_a_job_recorded_but_never_sent_is_submitted_fresh(
    make_client: MakeClient, vendors: FakeVendors, reference: Path, journal_path: Any
) -> None:
    from ideochar import CharacterRequest

    with Journal(journal_path) as journal:
        journal.create_job("job-never-sent", CharacterRequest(prompt="x", reference=reference, seed=3))
    client = make_client(FakeProvider("alpha"))
    result = client.resume("job-never-sent")
    assert result.job_id == "job-never-sent" and vendors["alpha"].posts == 1
    assert client.resume("job-never-sent").images[0].data == result.images[0].data
    assert vendors["alpha"].posts == 1


def test_a_never_sent_job_whose_input_was_bytes_cannot_be_rebuilt(
    make_client: MakeClient, vendors: FakeVendors, journal_path: Any
) -> None:
    from ideochar import CharacterRequest, InvalidRequest

    with Journal(journal_path) as journal:
        journal.create_job("job-bytes", CharacterRequest(prompt="x", reference=make_image(8, 8)))
    client = make_client(FakeProvider("alpha"))
    with pytest.raises(InvalidRequest, match="bytes"):
        client.resume("job-bytes")
    assert vendors.calls == 0


def test_an_attempt_that_may_have_been_sent_without_an_id_is_never_sent_again(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    def kill(request: httpx.Request) -> httpx.Response:
        raise Killed("after the POST left, before its answer")

    vendors["alpha"].submits = [kill]
    client = make_client(FakeProvider("alpha"))
    with pytest.raises(Killed):
        client.generate("x", reference)
    assert client.journal is not None
    job_id = client.journal.jobs()[0].id
    calls = vendors.calls
    with pytest.raises(OutcomeUnknown, match="no vendor id"):
        make_client(FakeProvider("alpha")).resume(job_id)
    assert vendors.calls == calls


def test_a_failed_job_has_nothing_to_resume(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    vendors["alpha"].submits = [401]
    client = make_client(FakeProvider("alpha"))
    with pytest.raises(AuthenticationFailed):
        client.generate("x", reference)
    assert client.journal is not None
    with pytest.raises(JobNotResumable):
        client.resume(client.journal.jobs()[0].id)
    assert vendors["alpha"].posts == 1


def test_a_fan_out_killed_midway_keeps_saved_images_and_resumes_the_admitted_call(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    polls = {"n": 0}

    def kill_second_job(job: str) -> None:
        if job == "alpha-job-2":
            polls["n"] += 1
            raise Killed(job)

    vendors["alpha"].on_poll = kill_second_job
    client = make_client(FakeProvider("alpha", per_call=1))
    with pytest.raises(Killed):
        client.generate("x", reference, num_images=3, seed=0)
    vendors["alpha"].on_poll = None
    assert client.journal is not None
    job_id = client.journal.jobs()[0].id
    result = make_client(FakeProvider("alpha", per_call=1)).resume(job_id)
    # The second call is picked up by its id; the third, which the journal proves was never sent
    # (its part is still "planned"), is sent now: three admissions in all, one per image.
    assert vendors["alpha"].posts == 3 and vendors["alpha"].admitted == ["alpha-job-1", "alpha-job-2", "alpha-job-3"]
    assert [i.seed for i in result.images] == [0, 1, 2]
    assert result.failures == []

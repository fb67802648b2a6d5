"""submit / wait / cancel: a job handle as soon as the vendors admitted the job; finished later, once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from ideochar import AuthenticationFailed, CharacterRequest, Client, GenerationFailed, InvalidRequest, JobBusy
from ideochar.emulator import testing
from ideochar.journal import Journal, Owner

from .conftest import MakeAsyncClient, MakeClient
from .fakes import FakeProvider, FakeVendors


def gets(vendors: FakeVendors, name: str) -> int:
    return sum(1 for r in vendors[name].requests if r.method == "GET")


def test_submit_returns_once_the_vendor_admitted_the_job_and_wait_finishes_it(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    client = make_client(FakeProvider("alpha"))
    handle = client.submit(CharacterRequest(prompt="x", reference=reference, seed=5))
    assert (handle.provider, handle.vendor_request_ids, handle.finished) == ("alpha", ["alpha-job-1"], False)
    assert str(handle.quote_usd) == "0.05"
    assert vendors["alpha"].posts == 1 and gets(vendors, "alpha") == 0, "submit must not wait for the job"
    assert client.journal is not None
    record = client.journal.job(handle.job_id)
    assert record.status == "running" and record.owner is None  # let go: any process may wait for it
    later = make_client(FakeProvider("alpha"))  # another client (or process) with the same journal
    result = later.wait(handle.job_id)
    assert result.vendor_request_id == "alpha-job-1" and [i.seed for i in result.images] == [5]
    assert vendors["alpha"].posts == 1
    assert client.wait(handle).images[0].data == result.images[0].data  # finished: the saved images
    assert vendors["alpha"].posts == 1


def test_a_submitted_fan_out_returns_every_calls_id(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    client = make_client(FakeProvider("alpha", per_call=1))
    handle = client.submit(CharacterRequest(prompt="x", reference=reference, num_images=3, seed=0))
    assert handle.vendor_request_ids == ["alpha-job-1", "alpha-job-2", "alpha-job-3"]
    assert str(handle.quote_usd) == "0.15"
    result = client.wait(handle)
    assert [i.seed for i in result.images] == [0, 1, 2] and vendors["alpha"].posts == 3


def test_a_submit_refused_before_admission_raises_and_sends_nothing_more(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [401]
    client = make_client(FakeProvider("alpha"))
    with pytest.raises(AuthenticationFailed) as caught:
        client.submit(CharacterRequest(prompt="x", reference=reference))
    assert caught.value.job_id is not None and vendors["alpha"].posts == 1


def test_submit_needs_a_journal(make_client: MakeClient, reference: Path) -> None:
    client = make_client(FakeProvider("alpha"), journal=False)
    with pytest.raises(InvalidRequest, match="journal"):
        client.submit(CharacterRequest(prompt="x", reference=reference))


def test_wait_waits_for_another_live_runner_to_let_go(
    make_client: MakeClient, vendors: FakeVendors, reference: Path, journal_path: Path
) -> None:
    client = make_client(FakeProvider("alpha"))
    handle = client.submit(CharacterRequest(prompt="x", reference=reference))
    other = Owner.current()  # another run in this live process holds the job for a moment
    holder = Journal(journal_path)
    holder.claim(handle.job_id, other)
    threading.Timer(0.8, holder.release, args=(handle.job_id, other)).start()
    started = time.monotonic()
    result = client.wait(handle, timeout=10)
    assert time.monotonic() - started >= 0.7 and result.images and vendors["alpha"].posts == 1
    holder.claim(handle.job_id, other)
    with pytest.raises(JobBusy):
        client.wait(handle, timeout=0.2)
    holder.close()


@pytest.mark.anyio
async def test_the_async_client_submits_and_waits_too(
    make_async_client: MakeAsyncClient, vendors: FakeVendors, reference: Path
) -> None:
    async with make_async_client(FakeProvider("alpha", per_call=1)) as client:
        handle = await client.submit(CharacterRequest(prompt="x", reference=reference, num_images=2, seed=3))
        assert len(handle.vendor_request_ids) == 2 and gets(vendors, "alpha") == 0
        result = await client.wait(handle)
    assert [i.seed for i in result.images] == [3, 4] and vendors["alpha"].posts == 2


# -- against the emulator: callbacks requested in each vendor's form, cancel ------------------------------


def emulated(app: object, tmp_path: Path, names: list[str], **kwargs: object) -> Client:
    keys = {n: "test-key" for n in names}
    http = testing.sync_client(app)
    return Client(
        names,
        http=http,
        fetch_http=http,
        base_urls=testing.base_urls(app),
        keys=keys,
        journal=tmp_path / "journal.sqlite3",
        config=False,
        environ={},
        **kwargs,  # type: ignore[arg-type]
    )


def test_vendors_that_call_back_are_given_the_webhook_in_their_own_form(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    app = testing.emulator_app(model_seconds=0)
    reference = "https://example.com/face.png"
    for name in ("fal", "replicate"):
        client = emulated(app, tmp_path, [name], webhook_url="https://hooks.example/ideochar")
        client.http.event_hooks["request"].append(seen.append)
        handle = client.submit(CharacterRequest(prompt="x", reference=reference))
        assert handle.vendor_request_ids and client.wait(handle).images
    fal_submit = next(r for r in seen if r.method == "POST" and "/fal/" in r.url.path)
    assert fal_submit.url.params["fal_webhook"] == "https://hooks.example/ideochar"
    replicate_create = next(r for r in seen if r.method == "POST" and r.url.path.endswith("/predictions"))
    body = replicate_create.read().decode()
    assert '"webhook":"https://hooks.example/ideochar"' in body.replace(" ", "")
    assert '"webhook_events_filter":["completed"]' in body.replace(" ", "")
    assert testing.billed(app, "fal") == 1 and testing.billed(app, "replicate") == 1


def test_a_webhook_url_must_not_leave_the_machine_in_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="webhook_url"):
        Client(["fal"], webhook_url="http://hooks.example/x", config=False, environ={}, journal=False)
    assert Client(["fal"], webhook_url="http://127.0.0.1:9/x", config=False, environ={}, journal=False).webhook_url


def test_cancel_asks_the_vendor_once_and_wait_then_reports_the_end(tmp_path: Path) -> None:
    app = testing.emulator_app(model_seconds=0)
    testing.set_faults(app, {"fal": [{"route": "submit", "kind": "stuck"}]})
    client = emulated(app, tmp_path, ["fal"], deadline_seconds=5)
    handle = client.submit(CharacterRequest(prompt="x", reference="https://example.com/face.png"))
    outcomes = client.cancel(handle)
    assert list(outcomes) == handle.vendor_request_ids and set(outcomes.values()) <= {"ok", "cancellation_requested"}
    with pytest.raises(GenerationFailed, match="cancel") as caught:  # fal's word on a cancelled job
        client.wait(handle, timeout=3)
    assert caught.value.vendor_request_id == handle.vendor_request_ids[0] and caught.value.billed != "no"

"""The receiver (``ideochar.webhooks.app``): its answers, and the journaled jobs it finishes after answering.

Jobs are real: submitted to the emulator on a loopback port and journaled (``webhook_support.submit``),
then called back here with callbacks signed by a test key, so each answer is checked against a job the
journal and the emulator's ledger really hold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from webhook_support import (
    REPLICATE_SECRET,
    FalSigner,
    close_client,
    fal_body,
    reference_path,
    replicate_body,
    replicate_headers,
    submit,
    webhook_client,
)

from ideochar import AsyncClient, Client
from ideochar.emulator import testing
from ideochar.emulator.server import BackgroundServer
from ideochar.events import Event
from ideochar.journal import Owner
from ideochar.request import Generate
from ideochar.webhooks import FalKeys, MemoryDeliveries, WebhookReceiver

pytestmark = pytest.mark.anyio


@dataclass
class World:
    emulator: BackgroundServer
    journal: Path | str
    """A SQLite file, or a PostgreSQL URL (a fleet's journal)."""
    signer: FalSigner
    submitter: Client
    client: Client
    events: list[Event] = field(default_factory=list)
    results: dict[str, list[Any]] = field(default_factory=dict)

    def job(self, provider: str = "fal") -> tuple[str, str]:
        """A job admitted by ``provider`` and journaled, nobody running it: ``(job id, vendor id)``."""
        self.submitter._names = [provider]
        request = self.submitter.build_request(Generate(), "a knight in the rain", reference_path())
        handle = submit(self.submitter, request)
        assert handle.vendor_request_id is not None
        return handle.job_id, handle.vendor_request_id

    def receiver(self, client: Client | AsyncClient | None = None, **options: Any) -> WebhookReceiver:
        def on_result(job_id: str, outcome: Any) -> None:
            self.results.setdefault(job_id, []).append(outcome)

        async def afetch(url: str) -> bytes:
            return self.signer.jwks()

        keys = FalKeys("https://keys.test/jwks.json", fetch=lambda url: self.signer.jwks(), afetch=afetch)
        options = {
            "busy_retry_seconds": (0.1, 0.2, 0.4, 0.8),
            "fal_keys": keys,
            "replicate_secret": REPLICATE_SECRET,
            "on_result": on_result,
            **options,
        }
        return WebhookReceiver(client or self.client, **options)

    def fal_callback(
        self, vendor_id: str, *, status: str = "OK", at: float | None = None
    ) -> tuple[dict[str, str], bytes]:
        body = fal_body(vendor_id, status)
        return self.signer.headers(body, request_id=vendor_id, at=at), body


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from _world(tmp_path / "journal.sqlite3", tmp_path / "journal" / "outputs")


@pytest.fixture
def fleet_world(tmp_path: Path, postgres_url: str) -> Iterator[World]:
    """The same, with the journal a fleet shares (PostgreSQL)."""
    yield from _world(postgres_url, tmp_path / "outputs")


def _world(journal: Path | str, outputs: Path) -> Iterator[World]:
    with testing.running_emulator() as emulator:
        submitter = webhook_client(emulator.url, None, ["fal", "replicate"], journal=journal, output_dir=outputs)
        events: list[Event] = []
        client = Client(
            ["fal", "replicate"], emulator=emulator.url, journal=journal, output_dir=outputs, on_event=events.append
        )
        try:
            yield World(emulator, journal, FalSigner(), submitter, client, events)
        finally:
            client.close()
            close_client(submitter)


@pytest.fixture
async def post(world: World) -> AsyncIterator[Any]:
    """POST to a receiver's app, in-process."""
    opened: list[httpx.AsyncClient] = []

    async def send(receiver: WebhookReceiver, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), base_url="http://receiver.test")
        opened.append(http)
        return await http.post(path, headers=headers, content=body)

    yield send
    for http in opened:
        await http.aclose()


async def test_a_callback_is_answered_at_once_and_its_job_finished_after(world: World, post: Any) -> None:
    job_id, vendor_id = world.job()
    receiver = world.receiver()
    headers, body = world.fal_callback(vendor_id)
    started = time.monotonic()
    answer = await post(receiver, "/fal", headers, body)
    assert answer.status_code == 202 and answer.json() == {"status": "accepted"}
    assert time.monotonic() - started < 1.0
    assert await receiver.drain(10)
    record = world.client.journal.job(job_id)  # type: ignore[union-attr]
    assert record.status == "succeeded" and len(record.outputs) == 1
    assert [type(r).__name__ for r in world.results[job_id]] == ["CharacterResult"]
    assert testing.billed(world.emulator, "fal") == 1
    kinds = [(e.kind, e.message) for e in world.events if e.job_id == job_id]
    assert ("progress", "fal called back: the job succeeded") in kinds and ("finished", None) in kinds
    receiver.close()


async def test_two_receivers_on_one_postgresql_journal_drop_each_others_duplicates(
    fleet_world: World, tmp_path: Path
) -> None:
    """Two receivers behind a load balancer, each in its own process with its own connection: a delivery the
    first took comes again to the second, which acknowledges it as a duplicate (not merely a finished job)."""
    world = fleet_world
    job_id, vendor_id = world.job()
    other = Client(["fal", "replicate"], emulator=world.emulator.url, journal=world.journal, output_dir=tmp_path / "o")
    one, two = world.receiver(), world.receiver(other)
    answers = []
    for receiver in (one, two):  # a retry: signed anew, the same delivery
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=receiver.app), base_url="http://lb.test"
        ) as http:
            answers.append(
                await http.post("/fal", headers=world.fal_callback(vendor_id)[0], content=fal_body(vendor_id))
            )
    assert [a.status_code for a in answers] == [202, 200] and answers[1].json() == {"status": "duplicate"}
    assert await one.drain(10) and await two.drain(10)
    assert len(world.results[job_id]) == 1 and testing.billed(world.emulator, "fal") == 1
    assert world.client.journal.job(job_id).status == "succeeded"  # type: ignore[union-attr]
    one.close()
    two.close()
    other.close()


async def test_a_duplicate_delivery_is_acknowledged_and_not_run_again(world: World, post: Any) -> None:
    job_id, vendor_id = world.job()
    receiver = world.receiver()
    headers, body = world.fal_callback(vendor_id)
    first = await post(receiver, "/fal", headers, body)
    again = await post(receiver, "/fal", *world.fal_callback(vendor_id))  # a retry: signed anew, same delivery
    assert (first.status_code, again.status_code, again.json()) == (202, 200, {"status": "duplicate"})
    await receiver.drain(10)
    assert len(world.results[job_id]) == 1
    assert sum(1 for e in world.events if e.kind == "finished" and e.job_id == job_id) == 1
    receiver.close()


async def test_a_callback_for_a_finished_job_is_acknowledged_and_ignored(world: World, post: Any) -> None:
    job_id, vendor_id = world.job("replicate")
    world.client.resume(job_id)  # finished by polling first
    receiver = world.receiver()
    body = replicate_body(vendor_id)
    answer = await post(receiver, "/replicate", replicate_headers(body, message_id="msg_late"), body)
    assert (answer.status_code, answer.json()) == (200, {"status": "finished"})
    assert job_id not in world.results and testing.billed(world.emulator, "replicate") == 1
    receiver.close()


async def test_a_callback_for_no_journaled_job_is_404_and_not_remembered(
    world: World, post: Any, monkeypatch: Any
) -> None:
    """A callback can overtake the journal's record of the vendor id: it is refused (the vendor retries)
    without being remembered, so the retry, once the journal has the job, is taken."""
    import ideochar.webhooks._client as adapter

    job_id, vendor_id = world.job()
    receiver = world.receiver()
    real = adapter.find_job
    known = threading.Event()
    monkeypatch.setattr(adapter, "find_job", lambda *args: real(*args) if known.is_set() else None)
    headers, body = world.fal_callback(vendor_id)
    answer = await post(receiver, "/fal", headers, body)
    assert answer.status_code == 404 and "no journaled job" in answer.json()["error"]
    known.set()
    assert (await post(receiver, "/fal", *world.fal_callback(vendor_id))).status_code == 202
    await receiver.drain(10)
    assert world.client.journal.job(job_id).status == "succeeded"  # type: ignore[union-attr]
    unknown = await post(receiver, "/fal", *world.fal_callback("no-such-request"))
    assert unknown.status_code == 404
    receiver.close()


async def test_a_replicate_event_before_the_end_is_acknowledged_and_ignored(world: World, post: Any) -> None:
    _, vendor_id = world.job("replicate")
    receiver = world.receiver()
    body = replicate_body(vendor_id, "processing")
    answer = await post(receiver, "/replicate", replicate_headers(body), body)
    assert (answer.status_code, answer.json()["status"]) == (200, "ignored")
    assert not receiver.in_progress
    receiver.close()


@pytest.mark.parametrize(
    ("tamper", "status"),
    [
        (lambda h, b: ({**h, "X-Fal-Webhook-Signature": "00" * 64}, b), 401),
        (lambda h, b: (h, b.replace(b"x.png", b"y.png")), 401),
        (lambda h, b: ({k: v for k, v in h.items() if "Signature" not in k}, b), 400),
        (lambda h, b: ({**h, "X-Fal-Webhook-Timestamp": str(int(time.time()) - 3600)}, b), 401),
    ],
    ids=["bad-signature", "altered-body", "no-signature", "replayed-an-hour-later"],
)
async def test_refusals_carry_their_status_and_start_nothing(world: World, post: Any, tamper: Any, status: int) -> None:
    job_id, vendor_id = world.job()
    receiver = world.receiver()
    headers, body = tamper(*world.fal_callback(vendor_id))
    answer = await post(receiver, "/fal", headers, body)
    assert answer.status_code == status and "error" in answer.json()
    assert not receiver.in_progress and job_id not in world.results
    assert world.client.journal.job(job_id).status == "running"  # type: ignore[union-attr]
    receiver.close()


async def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(world: World, post: Any) -> None:
    receiver = world.receiver(max_body_bytes=1000)
    headers, body = world.fal_callback("req-big")
    big = body + b" " * 2000
    assert (await post(receiver, "/fal", headers, big)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b" " * 400

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), base_url="http://receiver.test")
    async with http:
        answer = await http.post("/fal", headers=headers, content=chunks())
    assert answer.status_code == 413
    receiver.close()


async def test_keys_that_cannot_be_had_are_503_so_the_vendor_retries(world: World, post: Any) -> None:
    def down(url: str) -> bytes:
        raise httpx.ConnectError("down")

    receiver = world.receiver(fal_keys=FalKeys("https://keys.test/jwks.json", fetch=down))
    _, vendor_id = world.job()
    assert (await post(receiver, "/fal", *world.fal_callback(vendor_id))).status_code == 503
    receiver.close()


async def test_refusals_are_logged_without_the_body_the_signature_or_the_secret(
    world: World, post: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = world.receiver()
    caplog.set_level(logging.INFO, logger="ideochar.webhooks")
    fal_headers, fal = world.fal_callback("req-log")
    fal_headers["X-Fal-Webhook-Signature"] = "ab" * 64
    body = replicate_body("p-log")
    replicate = replicate_headers(body, secret="whsec_" + "d3Jvbmcgc2VjcmV0IGZvciBsb2dnaW5nIHRlc3Q=")
    await post(receiver, "/fal", fal_headers, fal)
    await post(receiver, "/replicate", replicate, body)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused a fal callback" in logged and "refused a replicate callback" in logged
    for secret in ("ab" * 64, replicate["webhook-signature"][3:], REPLICATE_SECRET[6:], "v3.fal.media", 'p-log"'):
        assert secret not in logged
    receiver.close()


async def test_a_job_run_elsewhere_is_finished_once_its_run_lets_it_go(world: World, post: Any) -> None:
    """The submitting request may still hold the job when the callback comes (or a worker polls it):
    the receiver tries again shortly, and never runs it alongside its owner."""
    job_id, vendor_id = world.job()
    journal = world.client.journal
    assert journal is not None
    other = Owner.current()
    journal.claim(job_id, other)
    receiver = world.receiver()
    assert (await post(receiver, "/fal", *world.fal_callback(vendor_id))).status_code == 202
    time.sleep(0.25)
    assert journal.job(job_id).status == "running" and receiver.in_progress == {job_id}
    journal.release(job_id, other)
    assert await receiver.drain(10)
    assert journal.job(job_id).status == "succeeded" and testing.billed(world.emulator, "fal") == 1
    receiver.close()


async def test_one_url_serves_both_vendors_and_mounts_in_fastapi(world: World) -> None:
    from fastapi import FastAPI

    receiver = world.receiver()
    api = FastAPI()
    api.mount("/hooks", receiver.app)
    fal_job, fal_id = world.job()
    replicate_job, replicate_id = world.job("replicate")
    body = replicate_body(replicate_id)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api.test") as http:
        one = await http.post("/hooks/", content=b"")
        assert one.status_code == 400  # no body: a malformed callback, answered by the mounted app
        headers, fal = world.fal_callback(fal_id)
        assert (await http.post("/hooks/", headers=headers, content=fal)).status_code == 202
        answer = await http.post("/hooks/replicate", headers=replicate_headers(body), content=body)
        assert answer.status_code == 202
    await receiver.drain(10)
    journal = world.client.journal
    assert journal is not None
    assert {journal.job(fal_job).status, journal.job(replicate_job).status} == {"succeeded"}
    receiver.close()


async def test_an_async_client_finishes_jobs_on_the_serving_loop(world: World, post: Any) -> None:
    job_id, vendor_id = world.job()
    async with AsyncClient(["fal"], emulator=world.emulator.url, journal=world.journal) as client:
        receiver = world.receiver(client, deliveries=MemoryDeliveries())
        assert (await post(receiver, "/fal", *world.fal_callback(vendor_id))).status_code == 202
        assert (await post(receiver, "/fal", *world.fal_callback(vendor_id))).json() == {"status": "duplicate"}
        assert await receiver.drain(10)
        receiver.close()
    assert world.client.journal.job(job_id).status == "succeeded"  # type: ignore[union-attr]
    assert len(world.results[job_id]) == 1


# -- jobs whose callback never comes ------------------------------------------------------------------------------


async def test_a_job_whose_callback_never_comes_is_finished_by_the_sweep(world: World) -> None:
    job_id, _ = world.job()
    receiver = world.receiver(callback_deadline_seconds=3600)
    assert await receiver.sweep() == []  # not overdue yet
    receiver.callback_deadline_seconds = 0
    assert await receiver.sweep() == [job_id]
    assert await receiver.drain(10)
    assert world.client.journal.job(job_id).status == "succeeded"  # type: ignore[union-attr]
    assert await receiver.sweep() == []
    assert testing.billed(world.emulator, "fal") == 1
    receiver.close()


async def test_running_sweeps_on_its_own(world: World) -> None:
    job_id, _ = world.job("replicate")
    receiver = world.receiver(callback_deadline_seconds=0, sweep_every_seconds=0.05)
    async with receiver.running():
        deadline = time.monotonic() + 10
        while world.client.journal.job(job_id).status != "succeeded":  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            await _sleep(0.05)
    receiver.close()


def test_the_sweep_leaves_a_job_with_a_part_never_sent_alone(world: World) -> None:
    """Sending a planned part costs money: that is its owner's decision, not a sweep's."""
    journal = world.client.journal
    assert journal is not None
    request = world.client.build_request(Generate(), "two calls", reference_path())
    for job_id, second in (("half-sent", "planned"), ("all-sent", "sent")):
        journal.create_job(job_id, request, parts=[("0", 1, None), ("1", 1, None)])
        for label in ("0", "1") if second == "sent" else ("0",):
            key = f"{job_id}-{label}"
            journal.start_attempt(job_id, key, provider="fal", part=(label, 1, None))
            journal.intend(job_id, key, part=label, marker=None, at=time.time() - 10)
            journal.admitted(key, vendor_request_id=f"v-{key}", resume={"request_id": f"v-{key}"})
    receiver = world.receiver(callback_deadline_seconds=0)
    assert receiver.overdue() == ["all-sent"]
    receiver.close()


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


def test_a_receiver_needs_a_journal(world: World) -> None:
    with (
        Client(["fal"], emulator=world.emulator.url, journal=False) as client,
        pytest.raises(ValueError, match="journal"),
    ):
        WebhookReceiver(client)


def test_the_deliveries_table_lives_beside_the_journals_tables(world: World) -> None:
    import sqlite3

    receiver = world.receiver()
    receiver.deliveries.first("fal", "d1", "j1")
    receiver.close()
    with sqlite3.connect(world.journal) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = db.execute("PRAGMA user_version").fetchone()[0]
    assert {"jobs", "attempts", "webhook_deliveries"} <= tables
    from ideochar.journal import SCHEMA_VERSION

    assert version == SCHEMA_VERSION
    assert world.client.journal is not None and world.client.journal.jobs(limit=1) == []  # still readable

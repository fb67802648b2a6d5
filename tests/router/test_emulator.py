"""The routing rules against the emulator on a loopback socket, with injected faults and its ledger.

The ledger is the emulator's record of what each vendor would bill: "charged once" is asserted there.
The last test kills a process with SIGKILL while its fal job is queued and resumes the job from the
journal in this one.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import make_image
from ideochar import Client, ContentFiltered, FailurePolicy, InvalidRequest, OutcomeUnknown, OverBudget
from ideochar.breaker import CircuitBreaker
from ideochar.emulator import testing
from ideochar.emulator.server import BackgroundServer
from ideochar.events import Event

pytestmark = pytest.mark.socket

UNSAFE = "[emulator:unsafe]"  # the fal emulator's marker for a content-policy refusal


class Counted:
    """An httpx.Client that counts the requests it sends (to prove that nothing was sent)."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []
        self.http = httpx.Client(event_hooks={"request": [self.sent.append]})


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with testing.running_emulator(model_seconds=0.05) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(server: BackgroundServer) -> Iterator[None]:
    testing.reset(server)
    yield
    testing.reset(server)


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "face.png"
    path.write_bytes(make_image(96, 96, color="orange"))
    return path


def client(server: BackgroundServer, tmp_path: Path, providers: str = "fal,segmind", **kwargs: Any) -> Client:
    settings: dict[str, Any] = {"config": False, "environ": {}, "journal": tmp_path / "journal.sqlite3"}
    settings.update(kwargs)
    return Client(providers, emulator=server.url, **settings)


def test_primary_503_is_served_by_the_secondary(server: BackgroundServer, tmp_path: Path, reference: Path) -> None:
    testing.set_faults(server, {"fal": [{"route": "submit", "kind": "status", "status": 503}]})
    with client(server, tmp_path) as c:
        result = c.generate("a knight", reference)
    assert result.provider == "segmind" and result.images
    assert [(a.provider, a.outcome) for a in result.attempts] == [("fal", "failed"), ("segmind", "succeeded")]
    assert (testing.billed(server, "fal"), testing.billed(server, "segmind")) == (0, 1)


def test_the_breaker_opens_after_n_failures_and_closes_after_a_probe(
    server: BackgroundServer, tmp_path: Path, reference: Path
) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=60, clock=lambda: now[0])
    counted = Counted()

    def to_fal() -> int:  # submits (the reference's upload to fal's storage comes first, once)
        return sum(1 for r in counted.sent if r.url.path.startswith("/fal/fal-ai/"))

    testing.set_faults(server, {"fal": [{"route": "submit", "kind": "status", "status": 503}]})
    with client(server, tmp_path, breaker=breaker, http=counted.http) as c:
        for _ in range(2):
            assert c.generate("a knight", reference).provider == "segmind"
        assert breaker.state("fal") == "open" and to_fal() == 2
        assert c.generate("a knight", reference).provider == "segmind"
        assert to_fal() == 2  # skipped while open: nothing sent to fal
        testing.set_faults(server, None)  # fal is back
        now[0] += 61
        assert c.generate("a knight", reference).provider == "fal"  # the probe
        assert breaker.state("fal") == "closed"
    assert testing.billed(server, "fal") == 1 and testing.billed(server, "segmind") == 3


def test_a_429_retry_after_is_honoured(server: BackgroundServer, tmp_path: Path, reference: Path) -> None:
    testing.set_faults(server, {"fal": [{"route": "submit", "kind": "rate_limit", "retry_after": 0.4, "times": 1}]})
    with client(server, tmp_path) as c:
        started = time.monotonic()
        result = c.generate("a knight", reference)
    assert result.provider == "fal" and time.monotonic() - started >= 0.4
    assert [a.error_type for a in result.attempts] == ["RateLimited", None]
    assert testing.billed(server, "fal") == 1 and testing.billed(server, "segmind") == 0


def test_a_lost_answer_after_admission_is_never_resubmitted_to_the_same_vendor(
    server: BackgroundServer, tmp_path: Path, reference: Path
) -> None:
    testing.set_faults(server, {"fal": [{"route": "submit", "kind": "drop_after_admit", "times": 1}]})
    policy = FailurePolicy(on_outcome_unknown="fail_over")
    with client(server, tmp_path, policy=policy) as c:
        result = c.generate("a knight", reference)
    assert result.provider == "segmind"
    assert result.attempts[0].error_type == "OutcomeUnknown" and result.attempts[0].billed == "unknown"
    assert len(testing.ledger(server, "fal")) == 1  # admitted once, never sent again


def test_a_read_timeout_while_following_an_admitted_job_raises_and_the_job_resumes_later(
    server: BackgroundServer, tmp_path: Path, reference: Path
) -> None:
    testing.set_faults(
        server,
        {"fal": [{"route": "status", "kind": "hang"}, {"route": "stream", "kind": "hang"}]},
    )
    with client(server, tmp_path, deadline_seconds=1.5) as c, pytest.raises(OutcomeUnknown) as caught:
        c.generate("a knight", reference)
    assert caught.value.vendor_request_id and caught.value.admitted
    assert testing.billed(server, "segmind") == 0 and len(testing.ledger(server, "fal")) == 1
    testing.set_faults(server, None)
    with client(server, tmp_path) as c:
        result = c.resume(caught.value.job_id)  # type: ignore[attr-defined]
    assert result.vendor_request_id == caught.value.vendor_request_id and result.images
    assert len(testing.ledger(server, "fal")) == 1


def test_an_invalid_request_and_one_over_budget_make_zero_calls(
    server: BackgroundServer, tmp_path: Path, reference: Path
) -> None:
    counted = Counted()
    with client(server, tmp_path, http=counted.http, max_cost_usd="0.05") as c:
        with pytest.raises(InvalidRequest):
            c.generate("a knight", reference, resolution="1000x1000")
        with pytest.raises(OverBudget):
            c.generate("a knight", reference, speed="quality")
    assert counted.sent == []
    assert testing.ledger(server) == []


def test_a_content_filter_does_not_fail_over(server: BackgroundServer, tmp_path: Path, reference: Path) -> None:
    with client(server, tmp_path) as c, pytest.raises(ContentFiltered) as caught:
        c.generate(f"a knight {UNSAFE}", reference)
    assert caught.value.provider == "fal"
    assert testing.ledger(server, "segmind") == []


class Killed(BaseException):
    """Stands in for the process dying right after the vendor id was journaled."""


def _die_when_submitted(event: Event) -> None:
    if event.kind == "submitted":
        raise Killed(event.vendor_request_id)


@pytest.mark.parametrize(
    ("provider", "options"),
    [("fal", {}), ("replicate", {}), ("segmind", {"mode": "v2", "poll_interval_seconds": 0.05})],
)
def test_every_queue_vendor_resumes_an_admitted_job_by_its_id(
    server: BackgroundServer, tmp_path: Path, reference: Path, provider: str, options: dict[str, Any]
) -> None:
    with client(server, tmp_path, provider, on_event=_die_when_submitted, options={provider: options}) as c:
        with pytest.raises(Killed) as killed:
            c.generate("a knight", reference)
        assert c.journal is not None
        [job] = c.journal.jobs()
    assert [a.vendor_request_id for a in job.attempts] == [str(killed.value)]
    with client(server, tmp_path, provider, options={provider: options}) as c:
        result = c.resume(job.id)
    assert result.vendor_request_id == str(killed.value) and len(result.images) == 1
    assert len(testing.ledger(server, provider)) == 1


_CHILD = """
import sys
from ideochar import Client

url, journal, reference = sys.argv[1:4]
with Client(["fal"], emulator=url, journal=journal, config=False, environ={}) as client:
    client.generate("a knight in the rain", reference, seed=5)
"""


def test_a_job_queued_when_its_process_is_killed_is_resumed_by_a_new_process(tmp_path: Path, reference: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    with testing.running_emulator(model_seconds=2.0) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, server.url, str(journal), str(reference)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            job_id, vendor_id = _wait_for_vendor_id(journal, child)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL
        assert [e.job_id for e in testing.ledger(server, "fal")] == [vendor_id]

        with Client(["fal"], emulator=server.url, journal=journal, config=False, environ={}) as fresh:
            result = fresh.resume(job_id)
            job = fresh.journal.job(job_id) if fresh.journal else None

        assert result.vendor_request_id == vendor_id and len(result.images) == 1
        assert result.images[0].seed == 5
        assert testing.billed(server, "fal") == 1 and len(testing.ledger(server, "fal")) == 1
        assert job is not None and job.status == "succeeded" and job.outputs[0].path.exists()


def _wait_for_vendor_id(journal: Path, child: subprocess.Popen[bytes], timeout: float = 30.0) -> tuple[str, str]:
    """Poll the journal (as another process) until the child's attempt has its vendor id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            _, err = child.communicate()
            raise AssertionError(f"the child exited early ({child.returncode}): {err.decode()[-2000:]}")
        if journal.exists():
            try:
                db = sqlite3.connect(str(journal), timeout=1)
                try:
                    row = db.execute(
                        "SELECT job_id, vendor_request_id FROM attempts WHERE vendor_request_id IS NOT NULL"
                    ).fetchone()
                finally:
                    db.close()
            except sqlite3.OperationalError:  # the schema is being created
                row = None
            if row:
                return str(row[0]), str(row[1])
        time.sleep(0.02)
    raise AssertionError("the child never recorded a vendor id")

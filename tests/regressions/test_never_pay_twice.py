"""Issue 12, "Never pay twice, by construction": one named test per defect the issue lists.

Each runs a job against the emulator and judges it from the emulator's ledger (what each vendor would bill):

1. fal admits a job, then refuses the key on its status or result route (401/403, a key revoked mid-job),
   rejects them (400/422), or answers polls 429 for long: no failover to the next vendor (one charge), and
   the fal attempt is never reported ``billed="no"``.
2. The journal cannot commit between creating the job and recording the attempt (a write failing, or another
   process holding the lock past the busy timeout): the job stops with ``JournalUnavailable`` before anything
   is sent, and ``resume`` does not send it.
3. A job still waiting for a concurrency slot in a live process is not resumed by another process
   (``JobBusy``, nothing charged); once the owner is killed, resume finishes it with one charge.
4. Ctrl-C while Replicate's create is answering (the prediction created and billed, its id not yet read):
   resume finds the prediction and fetches its image without creating another.
5. ``AsyncClient``'s journal writes never block the event loop while another process holds the lock.

2 to 5 concern the journal, so each runs on both of its databases (``journal``: a SQLite file, a fresh
PostgreSQL schema). PostgreSQL's ``lock_timeout`` is its busy timeout: a write that waits longer for a lock
another process holds fails, and the journal fails closed alike. 1 is the vendor's and the router's alone.

The names this needs from the job's API are in reliability/job_hooks.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from conftest import make_image
from ideochar import AsyncClient, Client
from ideochar.emulator import testing
from ideochar.errors import IdeocharError
from ideochar.plugins import get_plugin_manager
from ideochar.result import Attempt, CharacterResult
from journal_backends import BACKENDS, location_for
from reliability.job_hooks import (
    JobBusy,
    JournalUnavailable,
    Kill,
    KillingTransport,
    Location,
    newest_job_id,
    open_journal,
)
from reliability.scheduled_run import Emulators, Observation, emulators, run_schedule
from reliability.schedules import VENDORS, FaultSpec, JournalFailure, Modes, Schedule

TESTS_DIR = Path(__file__).resolve().parents[1]
KEY = "regression-key"
PROMPT = "a knight in the rain"
#: fal's routes that follow an admitted job, per way of following it (the emulator's route names).
FAL_FOLLOW = {"poll": ("status",), "stream": ("stream", "status")}


@pytest.fixture(scope="module")
def emulated() -> Iterator[Emulators]:
    with emulators() as running:
        yield running


@pytest.fixture(params=BACKENDS)
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """Where the test's journal is: a SQLite file in its folder, or a fresh PostgreSQL schema."""
    return location_for(request, tmp_path / "journal.sqlite3")


def _fal_attempts(outcome: object) -> list[Attempt]:
    assert isinstance(outcome, (CharacterResult, IdeocharError)), f"the job raised {outcome!r}"
    return [a for a in outcome.attempts if a.provider == "fal"]


def _assert_one_charge_at_fal_told_truly(seen: Observation) -> None:
    charged = seen.ledger_after_run
    assert charged["segmind"] == 0, f"failed over after fal admitted the job: segmind charged again ({charged})"
    assert charged["fal"] == 1, charged
    attempts = _fal_attempts(seen.outcome)
    assert attempts, f"no fal attempt reported: {seen.summary()}"
    assert all(a.billed != "no" for a in attempts), f"fal billed the job; its attempt says {attempts}"


def _fal_schedule(follow: str, driver: str, faults: tuple[FaultSpec, ...]) -> Schedule:
    return Schedule(("fal", "segmind"), Modes(fal=follow), driver, "default", faults)  # type: ignore[arg-type]


# -- 1. a fal job admitted, then refused, rejected or throttled on the routes that follow it ------------------


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("follow", ["poll", "stream"])
def test_fal_refusing_the_key_after_admitting_the_job_neither_fails_over_nor_says_not_billed(
    emulated: Emulators, follow: str, status: int, driver: str
) -> None:
    faults = tuple(FaultSpec("fal", route, "status", status=status) for route in FAL_FOLLOW[follow])
    seen = run_schedule(emulated, _fal_schedule(follow, driver, faults))
    _assert_one_charge_at_fal_told_truly(seen)
    assert isinstance(seen.outcome, IdeocharError), seen.summary()
    fal_ids = {e.job_id for e in testing.ledger(emulated.app(seen.schedule), "fal")}
    assert {a.vendor_request_id for a in _fal_attempts(seen.outcome)} & fal_ids, "the fal attempt lost its job id"


@pytest.mark.parametrize("status", [400, 422])
@pytest.mark.parametrize(
    ("follow", "routes"),
    [("poll", ("status",)), ("stream", ("stream", "status")), ("poll", ("result",))],
    ids=["status-polled", "status-streamed", "result"],
)
def test_fal_rejecting_the_status_or_result_of_an_admitted_job_reports_it_billed(
    emulated: Emulators, follow: str, routes: tuple[str, ...], status: int
) -> None:
    faults = tuple(FaultSpec("fal", route, "status", status=status) for route in routes)
    seen = run_schedule(emulated, _fal_schedule(follow, "sync", faults))
    _assert_one_charge_at_fal_told_truly(seen)


@pytest.mark.parametrize("follow", ["poll", "stream"])
def test_fal_throttling_the_polls_of_an_admitted_job_for_long_does_not_fail_over(
    emulated: Emulators, follow: str
) -> None:
    faults = tuple(FaultSpec("fal", route, "rate_limit", retry_after=0.0) for route in FAL_FOLLOW[follow])
    seen = run_schedule(emulated, _fal_schedule(follow, "sync", faults))
    _assert_one_charge_at_fal_told_truly(seen)


# -- 2. the journal cannot record the attempt -------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_job_whose_attempt_cannot_be_journaled_sends_nothing_and_is_not_resent_by_resume(
    emulated: Emulators, vendor: str, driver: str, journal: Location
) -> None:
    other = next(v for v in VENDORS if v != vendor)
    # Write 1 creates the job; every write after it (the attempt first) fails, as past the busy timeout.
    schedule = Schedule((vendor, other), Modes(), driver, "default", interruption=JournalFailure(2, None))  # type: ignore[arg-type]
    seen = run_schedule(emulated, schedule, journal)
    sent = sum(seen.ledger_after_run.values())
    assert sent == 0, f"the job was sent although its attempt could not be journaled: {seen.summary()}"
    assert isinstance(seen.outcome, JournalUnavailable), seen.summary()
    assert sum(seen.ledger_after_resume.values()) == 0, f"resume sent the job: {seen.summary()}"


def _holder(journal: Location, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the journal's write lock for ``seconds`` (regressions/lock_holder.py)."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "regressions.lock_holder", str(journal), str(seconds)],
        cwd=TESTS_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "LOCKED"
    return holder


def test_a_lock_held_by_another_process_past_the_busy_timeout_stops_the_job_before_it_is_sent(
    emulated: Emulators, tmp_path: Path, journal: Location
) -> None:
    app, out = emulated.sync_app, tmp_path / "out"
    testing.reset(app)
    reference = tmp_path / "hero.png"
    reference.write_bytes(make_image(48, 48))
    opened = open_journal(journal, busy_timeout_seconds=0.2, output_dir=out)
    holders: list[subprocess.Popen[str]] = []
    create = opened.create_job

    def create_then_lose_the_lock(*args: Any, **kwargs: Any) -> None:
        create(*args, **kwargs)
        holders.append(_holder(journal, 1.5))  # taken between the job's record and its attempt's

    opened.create_job = create_then_lose_the_lock  # type: ignore[method-assign]
    with _client(emulated, "fal", opened, out) as client:
        try:
            outcome: object = client.generate(PROMPT, reference, seed=3)
        except Exception as exc:
            outcome = exc
    holders[0].wait(10)
    opened.close()
    assert testing.billed(app, "fal") == 0, f"the job was sent although its attempt could not be journaled: {outcome!r}"
    assert isinstance(outcome, JournalUnavailable), repr(outcome)
    with _client(emulated, "fal", journal, out) as client, pytest.raises(IdeocharError):
        client.resume(newest_job_id(journal))
    assert testing.billed(app, "fal") == 0, "resume sent a job that was stopped before it was sent"


def _client(
    emulated: Emulators, vendor: str, journal: Any, out: Path, kill: Kill | None = None, **kwargs: Any
) -> Client:
    """A client of the in-process emulator (its own transport wrapper: closing it leaves the shared one open)."""
    transport = KillingTransport(emulated.sync_transport, kill, **kwargs)
    options = _options(emulated.sync_app, [vendor])
    http = httpx.Client(transport=transport)
    return Client([vendor], http=http, journal=journal, output_dir=out, **options)


def _options(app: Any, providers: list[str]) -> dict[str, Any]:
    return {
        "base_urls": testing.base_urls(app),
        "keys": {p: KEY for p in providers},
        "config": False,
        "environ": {},
        "deadline_seconds": 10,
        "plugin_manager": get_plugin_manager(),
        "limits": {p: {"requests_per_minute": 1_000_000} for p in providers},
    }


# -- 3. a job waiting for a slot in a live process --------------------------------------------------------------


@pytest.fixture
def socket_emulator() -> Iterator[Any]:
    with testing.running_emulator(model_seconds=0) as server:
        yield server


def _start_owner(
    server: Any, folder: Path, journal: Location, vendor: str, limits: dict[str, int], images: tuple[int, int]
) -> Any:
    reference = folder / "hero.png"
    reference.write_bytes(make_image(48, 48))
    args = {
        "vendor": vendor,
        "base_urls": testing.base_urls(server),
        "journal": str(journal),
        "out": str(folder / "out"),
        "reference": str(reference),
        "limits": {**limits, "requests_per_minute": 1_000_000},
        "holder_images": images[0],
        "waiter_images": images[1],
    }
    return subprocess.Popen(
        [sys.executable, "-m", "regressions.job_owner", json.dumps(args)],
        cwd=TESTS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _waiting_job(owner: Any) -> str:
    line = owner.stdout.readline().split()
    if line[:1] != ["WAITING"]:
        owner.kill()
        raise AssertionError(f"the owner process did not start its jobs: {line} {owner.stderr.read()[-1500:]}")
    return str(line[1])


@pytest.mark.socket
@pytest.mark.parametrize(
    ("vendor", "limits", "images"),
    [("fal", {"max_images_in_flight": 1}, (1, 1)), ("ideogram", {}, (8, 4))],
    ids=["fal-client-limit-1", "ideogram-10-images-in-flight"],
)
def test_a_job_waiting_for_a_slot_in_a_live_process_is_not_resumed_by_another(
    socket_emulator: Any,
    tmp_path: Path,
    journal: Location,
    vendor: str,
    limits: dict[str, int],
    images: tuple[int, int],
) -> None:
    # The owner's first job is admitted and never finishes: it keeps the slots its second job waits for.
    route = "submit" if vendor == "fal" else "generate"
    testing.set_faults(socket_emulator, {vendor: [{"route": route, "kind": "stuck", "times": 1}]})
    owner = _start_owner(socket_emulator, tmp_path, journal, vendor, limits, images)
    try:
        job_id = _waiting_job(owner)
        before = testing.billed(socket_emulator, vendor)
        client = _socket_client(socket_emulator, vendor, tmp_path, journal)
        with client:
            outcome = _outcome(lambda: client.resume(job_id))
        charged = testing.billed(socket_emulator, vendor) - before
        assert charged == 0, f"resumed a job its owner (pid {owner.pid}) still runs: {vendor} charged {charged} more"
        assert isinstance(outcome, JobBusy), repr(outcome)
        assert str(owner.pid) in str(outcome.owner)  # type: ignore[attr-defined]
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
    before = testing.billed(socket_emulator, vendor)
    with _socket_client(socket_emulator, vendor, tmp_path, journal) as client:
        result = client.resume(job_id)
    assert result.images and testing.billed(socket_emulator, vendor) == before + 1


def _outcome(call: Callable[[], CharacterResult]) -> CharacterResult | Exception:
    try:
        return call()
    except Exception as exc:
        return exc


def _socket_client(server: Any, vendor: str, folder: Path, journal: Location) -> Client:
    options = _options(server, [vendor])
    return Client([vendor], journal=journal, output_dir=folder / "out", **options)


# -- 4. Ctrl-C while Replicate answers the create ---------------------------------------------------------------


def test_ctrl_c_while_replicate_creates_the_prediction_is_resumed_by_finding_it(
    emulated: Emulators, tmp_path: Path, journal: Location
) -> None:
    app, out = emulated.sync_app, tmp_path / "out"
    testing.reset(app)
    reference = tmp_path / "hero.png"
    reference.write_bytes(make_image(48, 48))
    # The create reaches the emulator (created, billed); the interrupt comes before its answer is read.
    client = _client(emulated, "replicate", journal, out, Kill(at=1, before=False), error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        client.generate(PROMPT, reference, seed=3)
    assert testing.billed(app, "replicate") == 1
    with _client(emulated, "replicate", journal, out) as again:
        result = again.resume(newest_job_id(journal))
    client.close()
    assert result.images, "the paid prediction's image was not recovered"
    assert testing.billed(app, "replicate") == 1, "resume created a second prediction"


# -- 5. the event loop while another process holds the journal's lock -------------------------------------------

LOCK_SECONDS = 2.0
#: The longest the loop may go without running a ready task (a tick is 10 ms).
MAX_STALL_SECONDS = 0.1


async def _jobs_while_ticking(client: AsyncClient, reference: Path, jobs: int) -> tuple[float, list[object]]:
    stall = 0.0
    done = anyio.Event()
    outcomes: list[object] = []

    async def tick() -> None:
        nonlocal stall
        last = time.monotonic()
        while not done.is_set():
            await anyio.sleep(0.01)
            now = time.monotonic()
            stall, last = max(stall, now - last - 0.01), now

    async def job(seed: int) -> None:
        try:
            outcomes.append(await client.generate(PROMPT, reference, seed=seed))
        except IdeocharError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(tick)
        async with anyio.create_task_group() as running:
            for seed in range(jobs):
                running.start_soon(job, seed)
        done.set()
    return stall, outcomes


def test_async_journal_writes_never_block_the_event_loop_while_another_process_holds_the_lock(
    tmp_path: Path, journal: Location
) -> None:
    app = testing.emulator_app(model_seconds=0)
    open_journal(journal).close()  # the file (the tables) exist before another process locks it
    reference = tmp_path / "hero.png"
    reference.write_bytes(make_image(48, 48))
    options = {**_options(app, ["fal"]), "deadline_seconds": 30}

    async def main() -> tuple[float, list[object]]:
        http = httpx.AsyncClient(transport=testing.ASGITransport(app=app))
        async with http, AsyncClient(["fal"], http=http, journal=False, **options) as warm:
            await warm.generate(PROMPT, reference, seed=99)  # imports and first renders, off the clock
        holder = _holder(journal, LOCK_SECONDS)
        try:
            http = httpx.AsyncClient(transport=testing.ASGITransport(app=app))
            out = tmp_path / "out"
            async with http, AsyncClient(["fal"], http=http, journal=journal, output_dir=out, **options) as client:
                return await _jobs_while_ticking(client, reference, jobs=4)
        finally:
            holder.wait(10)

    stall, outcomes = anyio.run(main)
    assert stall < MAX_STALL_SECONDS, f"the event loop stalled {stall:.2f} s while the journal was locked"
    assert all(isinstance(o, CharacterResult) and o.images for o in outcomes), outcomes


# -- found by the search (tests/reliability/test_fault_schedules.py, thorough profile) ----------------------


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_journal_failing_at_the_failover_keeps_the_billing_of_the_attempt_before_it(
    emulated: Emulators, driver: str
) -> None:
    """Segmind answers 200 with a body cut in half (it may have billed); the opt-in policy fails over; the
    journal cannot record the next attempt. The job stops, and must still say Segmind may have billed."""
    fault = FaultSpec("segmind", "v1", "malformed_json")
    schedule = Schedule(
        ("segmind", "ideogram"), Modes(), driver, "fail_over", (fault,), JournalFailure(first=4, times=None)
    )  # type: ignore[arg-type]
    seen = run_schedule(emulated, schedule)
    assert seen.ledger_after_run["segmind"] == 1, seen.summary()
    assert isinstance(seen.outcome, IdeocharError), seen.summary()
    billed = [a.billed for a in seen.outcome.attempts if a.provider == "segmind"]
    assert billed and "no" not in billed, f"segmind billed the job, its attempts say {billed}"

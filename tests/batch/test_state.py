"""The batch's state in the journal's database: claims reserve against the cap in one transaction,
settling replaces a reservation by what a job cost, and a row held by a live process is never taken.
Run against SQLite and a real PostgreSQL (started by the tests), as the journal's own tests are."""

from __future__ import annotations

import os
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from ideochar._owner import Owner
from ideochar.batch._state import State
from journal_backends import BACKENDS, Location, location_for


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    return location_for(request, tmp_path / "journal.sqlite3")


def _state(location: Location, owner: Owner | None = None, name: str = "b") -> State:
    return State(location, name, owner or Owner.current())


def test_reservations_hold_the_cap_and_settling_gives_back_what_a_job_did_not_cost(location: Location) -> None:
    state = _state(location)
    cap = Decimal("0.40")
    first = state.claim("a", number=1, label=None, job_id="j1", reserve=Decimal("0.1875"), cap=cap)
    second = state.claim("b", number=2, label=None, job_id="j2", reserve=Decimal("0.1875"), cap=cap)
    third = state.claim("c", number=3, label=None, job_id="j3", reserve=Decimal("0.15"), cap=cap)
    assert (first.outcome, second.outcome, third.outcome) == ("claimed", "claimed", "over_budget")
    assert state.committed() == Decimal("0.375")

    state.settle("a", status="done", billed="yes", cost=Decimal("0.15"), record={"key": "a", "status": "done"})
    assert state.committed() == Decimal("0.3375")
    assert (
        state.claim("c", number=3, label=None, job_id="j3", reserve=Decimal("0.15"), cap=cap).outcome == "over_budget"
    )
    state.settle("b", status="failed", billed="no", cost=Decimal(0), record={"key": "b", "status": "failed"})
    assert state.claim("c", number=3, label=None, job_id="j3", reserve=Decimal("0.15"), cap=cap).outcome == "claimed"
    state.settle(
        "c", status="unknown", billed="unknown", cost=Decimal("0.15"), record={"key": "c", "status": "unknown"}
    )
    assert state.committed() == Decimal("0.30"), "a job that may still bill keeps what it reserved"
    state.close()


def test_a_row_held_by_a_live_process_is_never_taken_and_a_dead_ones_is(location: Location) -> None:
    path = location
    mine = _state(path)
    mine.claim("a", number=1, label=None, job_id="j1", reserve=Decimal(0), cap=None)
    other = _state(path, Owner(host=Owner.current().host, pid=os.getpid(), started=None, token="another-run"))
    assert other.claim("a", number=1, label=None, job_id="j9", reserve=Decimal(0), cap=None).outcome == "held"
    assert other.take_over("a").outcome == "held"

    dead = Owner(host=Owner.current().host, pid=2**22 + 777, started="0", token="dead-run")
    gone = _state(path, dead)
    gone.claim("b", number=2, label=None, job_id="j2", reserve=Decimal(0), cap=None)
    taken = other.take_over("b")
    assert taken.outcome == "open" and taken.state is not None and taken.state.job_id == "j2"
    for state in (mine, other, gone):
        state.close()


def test_settled_rows_are_not_claimed_again_unless_they_failed_without_a_charge(location: Location) -> None:
    state = _state(location)
    for key in ("done", "charged", "free"):
        state.claim(key, number=1, label=None, job_id=f"job-{key}", reserve=Decimal("0.1"), cap=None)
    state.settle("done", status="done", billed="yes", cost=Decimal("0.1"), record={"key": "done"})
    state.settle("charged", status="failed", billed="yes", cost=Decimal("0.1"), record={"key": "charged"})
    state.settle("free", status="failed", billed="no", cost=Decimal(0), record={"key": "free"})
    outcomes = {k: state.claim(k, number=1, label=None, job_id="new", reserve=Decimal(0), cap=None) for k in
                ("done", "charged", "free")}  # fmt: skip
    assert {k: c.outcome for k, c in outcomes.items()} == {"done": "settled", "charged": "settled", "free": "claimed"}
    assert outcomes["free"].state is not None and outcomes["free"].state.generation == 1
    retried = state.claim(
        "charged", number=1, label=None, job_id="new", reserve=Decimal(0), cap=None, retry_failed=True
    )
    assert retried.outcome == "claimed"
    state.close()


def test_racing_processes_never_reserve_past_the_cap(location: Location) -> None:
    """Eight runs (each its own connection, as processes are) claim rows of one batch at once: the cap holds."""
    cap = Decimal("1.00")
    states = [_state(location, Owner(Owner.current().host, os.getpid(), None, f"run-{n}")) for n in range(8)]
    claimed: list[str] = []
    start = threading.Barrier(len(states))

    def claim_all(state: State) -> None:
        start.wait()
        for row in range(10):
            key = f"{state.owner.token}-{row}"
            if state.claim(key, number=row, label=None, job_id=key, reserve=Decimal("0.15"), cap=cap).outcome == (
                "claimed"
            ):
                claimed.append(key)

    threads = [threading.Thread(target=claim_all, args=(state,)) for state in states]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 6  # 6 x $0.15 = $0.90; a seventh would pass $1.00
    assert states[0].committed() == Decimal("0.90")
    for state in states:
        state.close()

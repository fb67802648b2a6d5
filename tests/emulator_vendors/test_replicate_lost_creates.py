"""A create whose answer is lost, found again in Replicate's list: the provider against the emulator.

The emulator's ledger is the judge: a prediction it created and billed must come back as the image,
and never be created twice. Each test runs through the blocking and the async driver.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
from vendors_support import Emulated, image_bytes

from ideochar._secrets import Secret
from ideochar.emulator import testing
from ideochar.errors import OutcomeUnknown
from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.request import CharacterRequest
from ideochar.spec import CallContext, Exchange
from ideochar_replicate import emulator as replicate_emulator
from ideochar_replicate import reconcile
from ideochar_replicate.mapping import ReplicateOptions, create_body
from ideochar_replicate.provider import ReplicateProvider
from ideochar_replicate.reconcile import CLOCK_SKEW_SECONDS, create_marker

DRIVERS = ("sync", "async")
KEY = "r8_account_one"
REFERENCE = image_bytes(48, 48, "PNG", "purple")


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def emu() -> Emulated:
    return Emulated.start("replicate")


@pytest.fixture(autouse=True)
def _short_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator lists a prediction the moment it exists: one quick look is the real schedule's first."""
    monkeypatch.setattr(reconcile, "LOST_ANSWER_LOOKS_SECONDS", (0.0, 0.05))


def context(key: str = KEY) -> CallContext:
    return CallContext(
        provider="replicate",
        credentials=Secret(key),
        base_urls={"api": f"{testing.IN_PROCESS_ROOT}/replicate"},
        options=ReplicateOptions(),
    )


def run(driver: str, emu: Emulated, flow: Exchange[Any], events: list[Event] | None = None) -> Any:
    """Run ``flow`` against the in-process emulator through ``drive`` or ``adrive``."""
    on_event = events.append if events is not None else None
    if driver == "sync":
        with httpx.Client(transport=testing.SyncASGITransport(emu.app)) as http:
            return drive(flow, http, on_event=on_event, fetch=http)

    async def main() -> Any:
        async with httpx.AsyncClient(transport=testing.ASGITransport(app=emu.app)) as http:
            return await adrive(flow, http, on_event=on_event, fetch=http)

    return anyio.run(main)


def knight(**fields: Any) -> CharacterRequest:
    return CharacterRequest(prompt=fields.pop("prompt", "a knight in the rain"), reference=REFERENCE, **fields)


def test_a_dropped_create_is_found_in_the_list_and_returns_the_image_billed_once(driver: str, emu: Emulated) -> None:
    emu.faults({"route": "create", "kind": "drop_after_admit"})
    events: list[Event] = []
    output = run(driver, emu, ReplicateProvider().exchange(knight(), context()), events)

    (entry,) = emu.ledger()
    assert entry.billed and entry.job_id == output.vendor_request_id
    assert len(output.images) == 1 and output.images[0].data
    submitted = [e for e in events if e.kind == "submitted"]
    assert [e.vendor_request_id for e in submitted] == [entry.job_id]
    assert submitted[0].resume["id"] == entry.job_id


def test_two_identical_predictions_in_the_window_are_named_and_nothing_is_sent_again(
    driver: str, emu: Emulated
) -> None:
    request = knight(seed=77)  # the same seed, prompt and image: twins in the list
    earlier = run(driver, emu, ReplicateProvider().exchange(request, context()))
    emu.faults({"route": "create", "kind": "drop_after_admit"})
    with pytest.raises(OutcomeUnknown) as caught:
        run(driver, emu, ReplicateProvider().exchange(request, context()))

    first, lost = emu.ledger()
    assert first.job_id == earlier.vendor_request_id
    assert earlier.vendor_request_id in str(caught.value) and lost.job_id in str(caught.value)
    assert len(emu.ledger()) == 2  # nothing was sent again


def test_a_dropped_create_with_a_flaky_list_is_still_found(driver: str, emu: Emulated) -> None:
    emu.state.set_profile(
        {
            "seed": 1,
            "replicate": [
                {"route": "create", "kind": "drop_after_admit", "times": 1},
                {"route": "list", "kind": "status", "status": 503, "times": 1},
            ],
        }
    )
    output = run(driver, emu, ReplicateProvider().exchange(knight(), context()))
    assert [e.job_id for e in emu.billed()] == [output.vendor_request_id]


def test_reconcile_pages_through_the_emulators_list(
    driver: str, emu: Emulated, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replicate_emulator, "LIST_PAGE_SIZE", 2)
    sent_at = time.time()
    mine = run(driver, emu, ReplicateProvider().exchange(knight(seed=5), context()))
    for i in range(5):  # newer predictions push it to the third page
        run(driver, emu, ReplicateProvider().exchange(knight(prompt=f"another knight {i}"), context()))
    marker = _marker(knight(seed=5))
    state = run(driver, emu, ReplicateProvider().reconcile(marker, context(), sent_at=sent_at))
    assert state["id"] == mine.vendor_request_id
    assert state["get_url"] == f"{testing.IN_PROCESS_ROOT}/replicate/v1/predictions/{mine.vendor_request_id}"


def test_reconcile_does_not_match_a_prediction_before_the_window(
    driver: str, emu: Emulated, monkeypatch: pytest.MonkeyPatch
) -> None:
    created_at = [time.time()]
    monkeypatch.setattr(replicate_emulator, "_now", lambda: created_at[0])
    run(driver, emu, ReplicateProvider().exchange(knight(seed=9), context()))
    marker = _marker(knight(seed=9))
    later = created_at[0] + CLOCK_SKEW_SECONDS + 30
    assert run(driver, emu, ReplicateProvider().reconcile(marker, context(), sent_at=later)) is None
    found = run(driver, emu, ReplicateProvider().reconcile(marker, context(), sent_at=created_at[0] + 1))
    assert found is not None  # the same prediction, within the skew margin


def test_another_accounts_twin_is_not_seen(driver: str, emu: Emulated) -> None:
    sent_at = time.time()
    run(driver, emu, ReplicateProvider().exchange(knight(seed=3), context("r8_someone_else")))
    marker = _marker(knight(seed=3))
    assert run(driver, emu, ReplicateProvider().reconcile(marker, context(), sent_at=sent_at)) is None


def _marker(request: CharacterRequest) -> dict[str, Any]:
    """The marker of ``request``'s create (inline reference, as the provider sends a small local image)."""
    images = {"character_reference_image": request.reference.data_uri()}
    return create_marker(create_body(request, images, ReplicateOptions()))

"""Replays of ``cassettes/fal/docs/``: each operation against fal's documented example bodies.

The cassettes were recorded from :func:`fal_docs.docs_handler` (re-record with
``IDEOCHAR_RECORD=docs .venv/bin/pytest tests/providers/fal -k cassette``); replaying them checks our
requests (method, path, query, every JSON field, the digest of each inline image) against what was
recorded, and our parsing of fal's documented answers.
"""

from __future__ import annotations

from typing import Any

import pytest
from fal_docs import OUTPUT_URL, QUEUE_JOB, REFERENCE_URL, REQUEST_ID, SEED, docs_handler
from fal_fakes import context

import ideochar.exchange
import ideochar_fal.provider
from conftest import make_image
from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.request import CharacterRequest, Edit, Remix
from ideochar_fal.provider import FalOptions, FalProvider
from vcr_support import acassette, cassette


@pytest.fixture(autouse=True)
def fast_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ideochar_fal.provider, "POLL_INITIAL_SECONDS", 0.001)
    monkeypatch.setattr(ideochar_fal.provider, "POLL_MAX_SECONDS", 0.002)
    monkeypatch.setattr(ideochar.exchange, "backoff_seconds", lambda attempt: 0.001)


GENERATE = CharacterRequest(
    prompt="Place the woman leisurely enjoying a cup of espresso at a sidewalk cafe in Paris",
    reference=REFERENCE_URL,
    aspect_ratio="3:4",
    speed="turbo",
    seed=SEED,
)
EDIT = CharacterRequest(
    prompt="She is wearing a red raincoat",
    reference=REFERENCE_URL,
    operation=Edit(
        image="https://v3.fal.media/files/tiger/scene.png", mask="https://v3.fal.media/files/tiger/mask.png"
    ),
    magic_prompt="off",
)
REMIX = CharacterRequest(
    prompt="The same woman as a watercolour portrait",
    reference=make_image(48, 48, "PNG", color="orange"),
    operation=Remix(image="https://v3.fal.media/files/tiger/scene.png", strength=0.6),
    color_palette=["#E63946", ("#1D3557", 0.4)],
    speed="quality",
)


def check_output(output: Any, events: list[Event]) -> None:
    (image,) = output.images
    assert (image.width, image.height, image.content_type, image.seed) == (96, 64, "image/png", SEED)
    assert image.vendor_url == OUTPUT_URL
    assert output.vendor_request_id == REQUEST_ID
    submitted = events[0]
    assert submitted.kind == "submitted" and submitted.resume is not None
    assert submitted.resume["status_url"] == f"{QUEUE_JOB}/status"


def test_generate_replays_the_docs_cassette() -> None:
    events: list[Event] = []
    with cassette("fal", "docs", "generate_stream", handler=docs_handler()) as http:
        output = drive(FalProvider().exchange(GENERATE, context()), http, on_event=events.append, fetch=http)
    check_output(output, events)
    assert [e.status for e in events if e.kind == "progress" and not e.message] == ["queued", "running"]
    assert [e.message for e in events if e.message] == ["fal log: Generating image", "fal log: Done"]


def test_edit_replays_the_docs_cassette_by_polling() -> None:
    events: list[Event] = []
    with cassette("fal", "docs", "edit_poll", handler=docs_handler()) as http:
        output = drive(
            FalProvider().exchange(EDIT, context(FalOptions(status="poll"))), http, on_event=events.append, fetch=http
        )
    check_output(output, events)
    assert output.metadata["status_via"] == "poll"


def test_remix_replays_the_docs_cassette_with_an_inline_reference() -> None:
    events: list[Event] = []
    options = FalOptions(image_transport="data_uri")
    with cassette("fal", "docs", "remix_inline_reference", handler=docs_handler()) as http:
        output = drive(FalProvider().exchange(REMIX, context(options)), http, on_event=events.append, fetch=http)
    check_output(output, events)


def test_remix_replays_the_docs_cassette_with_the_reference_uploaded_to_fals_storage() -> None:
    """The default transport: token, upload (lifecycle headers), then the submit names the stored file."""
    events: list[Event] = []
    with cassette("fal", "docs", "remix_uploaded_reference", handler=docs_handler()) as http:
        output = drive(FalProvider().exchange(REMIX, context()), http, on_event=events.append, fetch=http)
    check_output(output, events)


@pytest.mark.anyio
async def test_generate_replays_the_docs_cassette_with_the_async_driver() -> None:
    events: list[Event] = []
    async with acassette("fal", "docs", "generate_stream", handler=docs_handler()) as http:
        output = await adrive(FalProvider().exchange(GENERATE, context()), http, on_event=events.append, fetch=http)
    check_output(output, events)


def test_cancel_replays_the_docs_cassette() -> None:
    with cassette("fal", "docs", "cancel", handler=docs_handler()) as http:
        outcome = drive(FalProvider().cancel({"request_id": REQUEST_ID}, context()), http, fetch=http)
    assert outcome == "cancellation_requested"


def test_a_changed_request_field_does_not_replay() -> None:
    """The cassette pins the body: a mapping change is caught here, not silently replayed."""
    from vcr.errors import CannotOverwriteExistingCassetteException

    changed = GENERATE.model_copy(update={"speed": "quality"})
    with (
        pytest.raises(CannotOverwriteExistingCassetteException),
        cassette("fal", "docs", "generate_stream", allow_unplayed=True) as http,
    ):
        drive(FalProvider().exchange(changed, context()), http, fetch=http)

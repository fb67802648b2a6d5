"""Docs-origin cassettes: Replicate's documented exchanges, replayed through both drivers.

``cassettes/replicate/docs/`` was written from the handlers in ``replicate_docs.py`` (each body beside
its documented source). Rewrite the cassettes after changing the request mapping, then review the diff::

    IDEOCHAR_RECORD=docs .venv/bin/pytest tests/providers/replicate -k cassette

A replay never reaches a network: a request the cassette does not hold, or whose body differs in any
field (or image digest), fails the test, and so does an interaction left unplayed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from replicate_docs import (
    DOCS_PROMPT,
    DOCS_REFERENCE,
    DOCS_SEED,
    DOCS_USED_PROMPT,
    EDIT_ID,
    EDIT_PROMPT,
    GENERATE_ID,
    DocsEdit,
    DocsGenerate,
)
from replicate_fakes import DRIVERS, Driver, context

from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.request import CharacterRequest, Edit
from ideochar.spec import CallContext, ProviderOutput
from ideochar_replicate.provider import ReplicateProvider
from vcr_support import acassette, cassette

DATA = Path(__file__).parent / "data"


def _replay(
    driver: Driver, name: str, request: CharacterRequest, ctx: CallContext, handler: Callable[..., Any]
) -> tuple[ProviderOutput, list[Event]]:
    events: list[Event] = []
    flow = ReplicateProvider().exchange(request, ctx)
    if driver == "sync":
        with cassette("replicate", "docs", name, handler=handler) as http:
            return drive(flow, http, on_event=events.append, fetch=http), events

    async def main() -> ProviderOutput:
        async with acassette("replicate", "docs", name, handler=handler) as http:
            return await adrive(flow, http, on_event=events.append, fetch=http)

    return anyio.run(main), events


@pytest.mark.parametrize("driver", DRIVERS)
def test_documented_generate_example_replays_through_polling(driver: Driver) -> None:
    # The example's seed (its logs print it), given so the body is the same at every replay: without
    # one the provider draws a random seed.
    request = CharacterRequest(
        prompt=DOCS_PROMPT,
        reference=DOCS_REFERENCE,
        style="auto",
        aspect_ratio="1:1",
        magic_prompt="auto",
        seed=DOCS_SEED,
    )
    output, events = _replay(driver, "generate", request, context(), DocsGenerate())
    (image,) = output.images
    assert (image.width, image.height, image.content_type) == (1024, 1024, "image/png")
    assert image.seed == DOCS_SEED and image.prompt == DOCS_USED_PROMPT
    assert output.vendor_request_id == GENERATE_ID
    assert [(e.kind, e.status) for e in events] == [("submitted", "queued"), ("progress", "running")]


@pytest.mark.parametrize("driver", DRIVERS)
def test_edit_with_uploaded_inputs_replays_from_a_finished_held_request(driver: Driver) -> None:
    request = CharacterRequest(
        prompt=EDIT_PROMPT,
        reference=DOCS_REFERENCE,
        operation=Edit(image=DATA / "cafe_scene.png", mask=DATA / "cafe_mask.png"),
        speed="turbo",
        seed=402197,
    )
    output, events = _replay(driver, "edit", request, context(data_uri_max_bytes=0, wait=60), DocsEdit())
    (image,) = output.images
    assert (image.width, image.height) == (512, 512)
    assert image.seed == 402197 and image.prompt == EDIT_PROMPT
    assert output.vendor_request_id == EDIT_ID
    assert [e.kind for e in events] == ["submitted"]

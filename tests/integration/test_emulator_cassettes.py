"""Emulator-origin cassettes (``cassettes/<provider>/emulator/``): one per provider and operation,
replayed through both clients without any emulator running.

They are recorded in-process (the emulator app behind ``httpx.ASGITransport``) by the async test
below when asked to::

    IDEOCHAR_RECORD=emulator .venv/bin/pytest tests/integration -k cassette

Otherwise every test replays: a request the cassette does not hold (any JSON field, form field or
image digest that differs) fails, and so does an interaction left unplayed. What a replay proves is
that our client and our emulator agreed on this whole exchange when it was recorded, and that the
client still sends exactly those requests; it proves nothing about the vendor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from ideochar import AsyncClient, Client
from ideochar.emulator import testing
from ideochar.emulator.registry import emulated_base_urls
from ideochar.plugins import get_plugin_manager
from ideochar.result import CharacterResult
from vcr_support import acassette, cassette, recording

from .support import check_image, grey_mask, noise_png, png

PROMPT = "the knight waves from the castle wall"
REFERENCE = png(64, 64, (120, 60, 30))
SCENE = png(96, 64, (30, 160, 60))
SCENE_MASK = grey_mask(96, 64)
LARGE_REFERENCE = noise_png(600, 600, seed=7)  # over 1 MB: Replicate takes it through an upload
#: Enough emulated model time that the queue and polling steps show in the recordings.
MODEL_SECONDS = 0.15
#: Polling waits, recorded and replayed alike (replays sleep for real).
FAST = {"segmind": {"poll_interval_seconds": 0.05, "poll_max_interval_seconds": 0.1}}


@dataclass(frozen=True)
class Case:
    provider: str
    name: str
    method: str
    fields: dict[str, Any]
    size: tuple[int, int]
    cost_usd: Decimal
    fmt: str = "png"
    has_id: bool = True
    reference: bytes = REFERENCE
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.provider}-{self.name}"


EDIT = {"image": SCENE, "mask": SCENE_MASK}
CASES = [
    Case("fal", "generate", "generate", {"seed": 1, "aspect_ratio": "4:5", "speed": "turbo"}, (896, 1120),
         Decimal("0.10")),
    Case("fal", "edit", "edit", {"seed": 2, **EDIT}, (96, 64), Decimal("0.15")),
    Case("fal", "remix", "remix", {"seed": 3, "image": SCENE, "strength": 0.5, "resolution": "1024x1024"}, (1024, 1024),
         Decimal("0.15")),
    Case("segmind", "generate", "generate", {"seed": 4, "resolution": "1024x1024", "speed": "turbo"}, (1024, 1024),
         Decimal("0.125"), fmt="jpeg"),
    Case("segmind", "edit", "edit", {"seed": 5, **EDIT}, (96, 64), Decimal("0.1875"), fmt="jpeg"),
    Case("segmind", "generate_v2", "generate", {"seed": 6, "aspect_ratio": "1:1", "extra": {"segmind": {"mode": "v2"}}},
         (1024, 1024), Decimal("0.1875"), fmt="jpeg", options=FAST),
    Case("ideogram", "generate", "generate", {"seed": 7, "aspect_ratio": "1:1", "num_images": 2}, (1024, 1024),
         Decimal("0.30"), has_id=False),
    Case("ideogram", "edit", "edit", {"seed": 8, **EDIT}, (96, 64), Decimal("0.15"), has_id=False),
    Case("ideogram", "inpaint", "edit", {"seed": 9, **EDIT, "extra": {"ideogram": {"edit_path": "inpaint"}}}, (96, 64),
         Decimal("0.15"), has_id=False),
    Case("ideogram", "remix", "remix", {"seed": 10, "image": SCENE, "strength": 0.7, "resolution": "1024x1024"},
         (1024, 1024), Decimal("0.15"), has_id=False),
    Case("replicate", "generate", "generate", {"seed": 11, "resolution": "1024x1024"}, (1024, 1024), Decimal("0.15")),
    Case("replicate", "edit", "edit", {"seed": 12, **EDIT}, (96, 64), Decimal("0.15")),
    Case("replicate", "edit_upload", "edit", {"seed": 13, **EDIT}, (96, 64), Decimal("0.15"),
         reference=LARGE_REFERENCE),
]  # fmt: skip
IDS = [case.id for case in CASES]


def _settings(case: Case) -> dict[str, Any]:
    """The same client configuration for recording and replaying: in-process emulator URLs, a dummy key."""
    urls = emulated_base_urls(get_plugin_manager(), testing.IN_PROCESS_ROOT)
    return {
        "base_urls": {case.provider: urls[case.provider]},
        "keys": {case.provider: "emulator-cassette-key"},
        "options": case.options,
        "journal": False,
        "config": False,
        "environ": {},
    }


def _check(case: Case, result: CharacterResult) -> None:
    images = result.images
    assert len(images) == case.fields.get("num_images", 1)
    for image in images:
        check_image(image, case.size, case.fmt)
    assert result.cost_usd == case.cost_usd
    assert bool(result.vendor_request_id) == case.has_id
    assert result.warnings == [] and result.failures == []


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_emulator_cassette_replays_with_the_async_client(case: Case) -> None:
    app = testing.emulator_app(model_seconds=MODEL_SECONDS) if recording("emulator") else None
    transport = testing.ASGITransport(app=app) if app is not None else None
    async with (
        acassette(case.provider, "emulator", case.name, transport=transport) as http,
        AsyncClient(case.provider, http=http, **_settings(case)) as client,
    ):
        result = await getattr(client, case.method)(PROMPT, case.reference, **case.fields)
    _check(case, result)
    if app is not None:  # recording: the emulator admitted this call once
        assert testing.billed(app, case.provider) == 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_emulator_cassette_replays_with_the_sync_client(case: Case) -> None:
    with (
        cassette(case.provider, "emulator", case.name) as http,
        Client(case.provider, http=http, **_settings(case)) as client,
    ):
        result = getattr(client, case.method)(PROMPT, case.reference, **case.fields)
    _check(case, result)

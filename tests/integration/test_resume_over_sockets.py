"""A paid job left running in the emulator is picked up by its vendor id, never submitted again.

The "process" is killed the moment the vendor admits the job (an ``on_event`` hook raises on the
``submitted`` event, before the client sends anything else), while the emulated model is still
working. A fresh client then resumes the job from that event's resume data with
``resume_vendor(provider, state)``: the images arrive, and the ledger still shows one admission.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ideochar.client import EMULATOR_KEY
from ideochar.events import Event

from .conftest import Emulator
from .support import DRIVERS, Driver, check_image, expected_render, grey_mask, png, run_client

pytestmark = pytest.mark.socket

PROMPT = "the knight rests by a fire"
REFERENCE = png(64, 64, (10, 120, 120))
SCENE = png(96, 64, (30, 160, 60))
SCENE_MASK = grey_mask(96, 64)
#: Long enough that the job is certainly unfinished when the process dies, short enough for a fast test.
MODEL_SECONDS = 0.4


class ProcessKilled(Exception):
    """Stands for the process dying right after the vendor admitted the job."""


def _die_when_submitted(seen: list[Event]) -> Any:
    def on_event(event: Event) -> None:
        seen.append(event)
        if event.kind == "submitted":
            raise ProcessKilled

    return on_event


def _submit_and_die(emulator: Emulator, driver: Driver, provider: str, call: Any, **options: Any) -> Event:
    seen: list[Event] = []
    with pytest.raises(ProcessKilled):
        run_client(driver, provider, emulator.url, call, on_event=_die_when_submitted(seen), **options)
    (submitted,) = [e for e in seen if e.kind == "submitted"]
    assert submitted.resume is not None and submitted.vendor_request_id
    assert EMULATOR_KEY not in repr(submitted.resume)
    return submitted


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_fal_job_left_running_is_resumed_by_its_request_id(emulator: Emulator, driver: Driver) -> None:
    emulator.state.set_model_seconds(MODEL_SECONDS)
    submitted = _submit_and_die(
        emulator, driver, "fal", lambda c: c.generate(PROMPT, REFERENCE, seed=17, num_images=2, resolution="1024x1024")
    )
    job = httpx.get(f"{emulator.url}/_emulator/jobs/fal/{submitted.vendor_request_id}").json()
    assert job["phase"] in ("queued", "running")  # still working when the process died

    assert submitted.resume is not None
    state = dict(submitted.resume)
    output = run_client(driver, "fal", emulator.url, lambda c: c.resume_vendor("fal", state))

    assert output.vendor_request_id == submitted.vendor_request_id
    assert len(output.images) == 2
    for index, image in enumerate(output.images):
        check_image(image, (1024, 1024), "png")
        assert image.data == expected_render(emulator.state, "fal", REFERENCE, PROMPT, (1024, 1024), 17 + index)
    (entry,) = emulator.state.ledger.entries("fal")
    assert (entry.job_id, entry.images, entry.billed) == (submitted.vendor_request_id, 2, True)
    submits = [r for r in emulator.recorder.requests("fal", "POST") if r.path.startswith("/fal/fal-ai/")]
    assert len(submits) == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_replicate_prediction_left_running_is_resumed_by_its_id(emulator: Emulator, driver: Driver) -> None:
    emulator.state.set_model_seconds(MODEL_SECONDS)
    submitted = _submit_and_die(
        emulator, driver, "replicate",
        # wait=0: the create request answers at once ("starting") instead of holding for the result
        lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, seed=18, extra={"replicate": {"wait": 0}}),
    )  # fmt: skip
    assert submitted.resume is not None
    state = dict(submitted.resume)
    still = httpx.get(state["get_url"], headers={"Authorization": f"Bearer {EMULATOR_KEY}"}).json()
    assert still["status"] in ("starting", "processing")

    output = run_client(driver, "replicate", emulator.url, lambda c: c.resume_vendor("replicate", state))

    assert output.vendor_request_id == submitted.vendor_request_id
    (image,) = output.images
    check_image(image, (96, 64), "png")
    assert image.data == expected_render(
        emulator.state, "replicate", REFERENCE, PROMPT, (96, 64), 18, base=SCENE, mask=SCENE_MASK
    )
    (entry,) = emulator.state.ledger.entries("replicate")
    assert (entry.job_id, entry.billed) == (submitted.vendor_request_id, True)
    assert len(emulator.recorder.requests("replicate", "POST")) == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_segmind_v2_job_left_running_is_resumed_by_its_request_id(emulator: Emulator, driver: Driver) -> None:
    emulator.state.set_model_seconds(MODEL_SECONDS)
    fast = {"segmind": {"poll_interval_seconds": 0.02, "poll_max_interval_seconds": 0.05}}
    submitted = _submit_and_die(
        emulator, driver, "segmind",
        lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, seed=19, extra={"segmind": {"mode": "v2"}}),
        options=fast,
    )  # fmt: skip
    assert submitted.resume is not None
    state = dict(submitted.resume)

    output = run_client(driver, "segmind", emulator.url, lambda c: c.resume_vendor("segmind", state), options=fast)

    assert output.vendor_request_id == submitted.vendor_request_id
    (image,) = output.images
    check_image(image, (96, 64), "jpeg")
    assert image.data == expected_render(
        emulator.state, "segmind", REFERENCE, PROMPT, (96, 64), 19, fmt="jpeg", base=SCENE, mask=SCENE_MASK
    )
    (entry,) = emulator.state.ledger.entries("segmind")
    assert (entry.job_id, entry.billed) == (submitted.vendor_request_id, True)
    assert len(emulator.recorder.requests("segmind", "POST")) == 1

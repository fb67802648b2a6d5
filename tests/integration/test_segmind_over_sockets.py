"""Segmind against the emulator over a real loopback socket: generate and edit, v1 (blocking, image
bytes) and v2 (submit and poll), JSON with URL inputs and multipart with local ones, with both clients.

Segmind makes one image per call, so several images are fanned out: one admission per image. The
emulator refuses any field Segmind does not list, so a field Segmind lacks must become a warning and
stay out of the body.
"""

from __future__ import annotations

from typing import Any

import pytest

from ideochar.errors import Unsupported

from .conftest import Emulator
from .support import (
    DRIVERS,
    Driver,
    check_billing,
    check_image,
    expected_render,
    grey_mask,
    png,
    run_client,
    serve_file,
)

pytestmark = pytest.mark.socket

PROMPT = "the knight crosses a rope bridge"
REFERENCE = png(64, 64, (200, 40, 20), fmt="JPEG")
SCENE = png(96, 64, (30, 160, 60))
SCENE_MASK = grey_mask(96, 64)
#: v2 polls every second by default (Segmind's SDK); the emulator needs no such patience.
FAST_POLLS = {"segmind": {"poll_interval_seconds": 0.02, "poll_max_interval_seconds": 0.05}}


def _inputs(emulator: Emulator, encoding: str) -> tuple[Any, Any, Any]:
    if encoding == "multipart":
        return REFERENCE, SCENE, SCENE_MASK
    state, root = emulator.state, emulator.url
    return (
        serve_file(state, root, REFERENCE, "image/jpeg"),
        serve_file(state, root, SCENE),
        serve_file(state, root, SCENE_MASK),
    )


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("encoding", ["json", "multipart"])
@pytest.mark.parametrize("mode", ["v1", "v2"])
@pytest.mark.parametrize("operation", ["generate", "edit"])
def test_each_segmind_operation_round_trips(
    emulator: Emulator, operation: str, mode: str, encoding: str, driver: Driver
) -> None:
    reference, scene, mask = _inputs(emulator, encoding)
    fields: dict[str, Any] = {
        "seed": 31,
        "magic_prompt": "off",
        "style": "realistic",
        "extra": {"segmind": {"mode": mode}},
    }
    if operation == "generate":
        size = (768, 1344)
        result = run_client(
            driver, "segmind", emulator.url,
            lambda c: c.generate(PROMPT, reference, resolution="768x1344", speed="turbo", **fields),
            options=FAST_POLLS,
        )  # fmt: skip
    else:
        size = (96, 64)
        result = run_client(
            driver, "segmind", emulator.url,
            lambda c: c.edit(PROMPT, reference, image=scene, mask=mask, speed="quality", **fields), options=FAST_POLLS,
        )  # fmt: skip

    (image,) = result.images
    check_image(image, size, "jpeg")
    base, edit_mask = (SCENE, SCENE_MASK) if operation == "edit" else (None, None)
    assert image.data == expected_render(
        emulator.state, "segmind", REFERENCE, PROMPT, size, 31, fmt="jpeg", base=base, mask=edit_mask
    )
    assert image.seed == 31
    speed = "Turbo" if operation == "generate" else "Quality"
    (entry,) = check_billing(emulator.state, result, "segmind", admissions=1, images_each=1, speed=speed)
    assert (entry.operation, entry.detail["mode"]) == (operation, mode)
    assert result.vendor_request_id == entry.job_id
    assert result.cost_source == "vendor" and result.warnings == []

    received = emulator.recorder.one_post("segmind", f"/{mode}/ideogram-character")
    if encoding == "json":
        assert received.content_type == "application/json"
        body = received.json()
        images = {name: body.pop(name) for name in ("character_reference_image", "image", "mask") if name in body}
        assert images["character_reference_image"] == reference
        if operation == "edit":
            assert (images["image"], images["mask"]) == (scene, mask)
        texts = body
    else:
        assert received.content_type == "multipart/form-data"
        files = received.files()
        assert files["character_reference_image"] == [REFERENCE]
        if operation == "edit":
            assert (files["image"], files["mask"]) == ([SCENE], [SCENE_MASK])
        texts = {name: values[0] for name, values in received.texts().items()}
        texts["seed"] = int(texts["seed"])
    expected = {"prompt": PROMPT, "seed": 31, "style_type": "Realistic", "rendering_speed": speed,
                "magic_prompt_option": "Off"}  # fmt: skip
    if operation == "generate":
        expected["resolution"] = "768x1344"
    assert texts == expected
    if mode == "v2":
        gets = [r.path for r in emulator.recorder.requests("segmind", "GET")]
        assert gets and gets[-1] == f"/segmind/v2/requests/{entry.job_id}"
        assert set(gets[:-1]) == {f"/segmind/v2/requests/{entry.job_id}/status"}


@pytest.mark.parametrize("driver", DRIVERS)
def test_segmind_fans_several_images_out_into_one_admission_each(emulator: Emulator, driver: Driver) -> None:
    result = run_client(
        driver, "segmind", emulator.url,
        lambda c: c.generate(
            PROMPT, REFERENCE, seed=11, num_images=3, aspect_ratio="16:9", speed="turbo", negative_prompt="fog",
            color_palette="pastel", style_references=[png(32, 32, "yellow")], reference_mask=grey_mask(64, 64),
        ),
    )  # fmt: skip

    assert sorted((w.kind, w.field) for w in result.warnings) == [
        ("fanned_out", "num_images"),
        ("unsupported", "color_palette"),
        ("unsupported", "negative_prompt"),
        ("unsupported", "reference_mask"),
        ("unsupported", "style_references"),
    ]
    entries = check_billing(emulator.state, result, "segmind", admissions=3, images_each=1, speed="Turbo")
    assert sorted(image.seed or 0 for image in result.images) == [11, 12, 13]
    for image in result.images:
        check_image(image, (1312, 736), "jpeg")
        assert image.seed is not None
        expected = expected_render(emulator.state, "segmind", REFERENCE, PROMPT, (1312, 736), image.seed, fmt="jpeg")
        assert image.data == expected
    posts = emulator.recorder.requests("segmind", "POST")
    assert len(posts) == 3
    sent = sorted(int(p.texts()["seed"][0]) for p in posts)
    assert sent == [11, 12, 13]
    for post in posts:  # the emulator refuses unknown fields; these are not even offered
        assert set(post.form()) == {
            "prompt",
            "seed",
            "resolution",
            "style_type",
            "rendering_speed",
            "magic_prompt_option",
            "character_reference_image",
        }
        assert post.texts()["resolution"] == ["1312x736"]  # the aspect ratio as its size, never left to 512x1536
    assert result.vendor_request_id in {e.job_id for e in entries}


@pytest.mark.parametrize("driver", DRIVERS)
def test_strict_segmind_refuses_what_it_cannot_honour_before_sending(emulator: Emulator, driver: Driver) -> None:
    with pytest.raises(Unsupported):
        run_client(driver, "segmind", emulator.url, lambda c: c.generate(PROMPT, REFERENCE, style_codes=["0a1b2c3d"],
                                                                          strict=True))  # fmt: skip
    with pytest.raises(Unsupported):
        run_client(driver, "segmind", emulator.url, lambda c: c.remix(PROMPT, REFERENCE, image=SCENE))
    assert emulator.recorder.requests() == []
    assert emulator.state.ledger.entries() == []

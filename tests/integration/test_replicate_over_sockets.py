"""Replicate against the emulator over a real loopback socket: generate and edit (inpainting) as
predictions, small inputs inline as data URIs and a large one through ``POST /v1/files``, with both clients.

One prediction makes one image, so several images are fanned out (one admission each); an upload is
not billable. The emulator validates ``input`` against the model's schema, with no unknown fields.
"""

from __future__ import annotations

import pytest

from ideochar.emulator.inputs import decode_data_uri
from ideochar.errors import Unsupported

from .conftest import Emulator
from .support import (
    DRIVERS,
    Driver,
    check_billing,
    check_image,
    expected_render,
    grey_mask,
    noise_png,
    png,
    run_client,
    serve_file,
)

pytestmark = pytest.mark.socket

PROMPT = "the knight sharpens a sword"
REFERENCE = png(64, 64, (90, 20, 160))
SCENE = png(96, 64, (30, 160, 60))
SCENE_MASK = grey_mask(96, 64)
CREATE = "/replicate/v1/models/ideogram-ai/ideogram-character/predictions"


def _data(value: str) -> bytes:
    decoded = decode_data_uri(value)
    assert decoded is not None, value[:40]
    return decoded[1]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("operation", ["generate", "edit"])
def test_each_replicate_operation_round_trips_with_inline_inputs(
    emulator: Emulator, operation: str, driver: Driver
) -> None:
    extra = {"replicate": {"cancel_after": "5m"}}
    if operation == "generate":
        size = (1280, 800)
        result = run_client(
            driver, "replicate", emulator.url,
            lambda c: c.generate(PROMPT, REFERENCE, seed=61, aspect_ratio="16:10", style="fiction", speed="quality",
                                 magic_prompt="on", extra=extra),
        )  # fmt: skip
    else:
        size = (96, 64)
        result = run_client(
            driver, "replicate", emulator.url,
            lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, seed=61, style="fiction",
                             speed="quality", magic_prompt="on", extra=extra),
        )  # fmt: skip

    (image,) = result.images
    check_image(image, size, "png")
    base, mask = (SCENE, SCENE_MASK) if operation == "edit" else (None, None)
    assert image.data == expected_render(emulator.state, "replicate", REFERENCE, PROMPT, size, 61, base=base, mask=mask)
    assert (image.seed, image.prompt) == (61, PROMPT)  # read from the prediction's logs
    (entry,) = check_billing(emulator.state, result, "replicate", admissions=1, images_each=1, speed="Quality")
    assert entry.operation == operation
    assert result.vendor_request_id == entry.job_id
    assert result.cost_source == "price_table" and result.warnings == []

    received = emulator.recorder.one_post("replicate")
    assert received.path == CREATE
    assert "prefer" not in received.headers  # not held: the prediction id comes back at once
    assert received.headers["cancel-after"] == "5m"
    body = received.json()
    assert set(body) == {"input"}
    given = body["input"]
    assert _data(given.pop("character_reference_image")) == REFERENCE
    if operation == "edit":
        assert (_data(given.pop("image")), _data(given.pop("mask"))) == (SCENE, SCENE_MASK)
    expected = {"prompt": PROMPT, "seed": 61, "style_type": "Fiction", "rendering_speed": "Quality",
                "magic_prompt_option": "On"}  # fmt: skip
    if operation == "generate":
        expected["aspect_ratio"] = "16:10"
    assert given == expected
    assert emulator.recorder.requests("replicate", "POST") == [received]  # no upload for small inputs


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_large_replicate_input_is_uploaded_first_and_the_upload_is_not_billed(
    emulator: Emulator, driver: Driver
) -> None:
    large = noise_png(640, 640)
    assert len(large) > 1_000_000  # above Replicate's 1 MB data URI recommendation
    result = run_client(
        driver, "replicate", emulator.url,
        lambda c: c.edit(PROMPT, large, image=SCENE, mask=SCENE_MASK, seed=62, speed="turbo"),
    )  # fmt: skip

    assert result.image.data == expected_render(
        emulator.state, "replicate", large, PROMPT, (96, 64), 62, base=SCENE, mask=SCENE_MASK
    )
    check_billing(emulator.state, result, "replicate", admissions=1, images_each=1, speed="Turbo")
    upload = emulator.recorder.one_post("replicate", "/v1/files")
    assert upload.content_type == "multipart/form-data"
    assert upload.files()["content"] == [large]
    given = emulator.recorder.one_post("replicate", "/predictions").json()["input"]
    assert given["character_reference_image"].startswith(f"{emulator.url}/replicate/v1/files/")
    assert _data(given["image"]) == SCENE and _data(given["mask"]) == SCENE_MASK  # small ones stay inline


@pytest.mark.parametrize("driver", DRIVERS)
def test_replicate_fans_several_images_out_and_warns_about_fields_it_lacks(emulator: Emulator, driver: Driver) -> None:
    result = run_client(
        driver, "replicate", emulator.url,
        lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, seed=70, num_images=2, color_palette="melon",
                         style_references=[png(32, 32, "white")]),
    )  # fmt: skip

    assert sorted((w.kind, w.field) for w in result.warnings) == [
        ("fanned_out", "num_images"),
        ("unsupported", "color_palette"),
        ("unsupported", "style_references"),
    ]
    entries = check_billing(emulator.state, result, "replicate", admissions=2, images_each=1, speed="Default")
    assert sorted(image.seed or 0 for image in result.images) == [70, 71]
    for image in result.images:
        assert image.seed is not None
        assert image.data == expected_render(
            emulator.state, "replicate", REFERENCE, PROMPT, (96, 64), image.seed, base=SCENE, mask=SCENE_MASK
        )
    posts = emulator.recorder.requests("replicate", "POST")
    assert sorted(p.json()["input"]["seed"] for p in posts) == [70, 71]
    assert all("color_palette" not in p.json()["input"] for p in posts)
    assert result.vendor_request_id in {e.job_id for e in entries}


@pytest.mark.parametrize("driver", DRIVERS)
def test_strict_replicate_refuses_before_anything_is_sent(emulator: Emulator, driver: Driver) -> None:
    with pytest.raises(Unsupported):
        run_client(driver, "replicate", emulator.url,
                   lambda c: c.generate(PROMPT, REFERENCE, negative_prompt="fog", strict=True))  # fmt: skip
    with pytest.raises(Unsupported):
        run_client(driver, "replicate", emulator.url, lambda c: c.remix(PROMPT, REFERENCE, image=SCENE))
    assert emulator.recorder.requests() == []
    assert emulator.state.ledger.entries() == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_replicate_passes_url_inputs_through(emulator: Emulator, driver: Driver) -> None:
    reference = serve_file(emulator.state, emulator.url, REFERENCE)
    scene = serve_file(emulator.state, emulator.url, SCENE)
    mask = serve_file(emulator.state, emulator.url, SCENE_MASK)
    result = run_client(
        driver, "replicate", emulator.url, lambda c: c.edit(PROMPT, reference, image=scene, mask=mask, seed=63)
    )

    assert result.image.data == expected_render(
        emulator.state, "replicate", REFERENCE, PROMPT, (96, 64), 63, base=SCENE, mask=SCENE_MASK
    )
    check_billing(emulator.state, result, "replicate", admissions=1, images_each=1, speed="Default")
    given = emulator.recorder.one_post("replicate").json()["input"]
    assert (given["character_reference_image"], given["image"], given["mask"]) == (reference, scene, mask)

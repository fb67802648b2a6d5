"""fal against the emulator over a real loopback socket: generate, edit and remix, through the queue
(status stream and polling) and fal.run, with both clients.

Each call must bring back a real image whose pixels the emulator rendered from the prompt, seed,
reference and input images that were sent; the ledger must show one admission per call (fal makes up
to 8 images in one job); and every option set must be in the submitted body, in fal's spelling.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ideochar.emulator.inputs import decode_data_uri
from ideochar.errors import Unsupported

from .conftest import Emulator
from .support import (
    DRIVERS,
    Driver,
    Received,
    check_billing,
    check_image,
    expected_render,
    grey_mask,
    png,
    run_client,
    serve_file,
)

pytestmark = pytest.mark.socket

PROMPT = "the knight reads a map by candlelight"
REFERENCE = png(64, 64, (20, 40, 200))
SCENE = png(96, 64, (30, 160, 60))
SCENE_MASK = grey_mask(96, 64)


def _data(value: str) -> bytes:
    """An image the body names: a data URI's bytes, or the file a local image was uploaded to in the
    emulator's fal storage (local images go through fal's storage by default)."""
    decoded = decode_data_uri(value)
    if decoded is not None:
        return decoded[1]
    assert "/_emulator/files/" in value, value[:60]
    response = httpx.get(value)
    assert response.status_code == 200, value
    return response.content


def _submitted(emulator: Emulator, endpoint: str) -> Received:
    received = emulator.recorder.one_post("fal", f"/fal-ai/ideogram/{endpoint}")
    assert received.content_type == "application/json"
    return received


OPERATIONS: dict[str, tuple[str, dict[str, Any], str, tuple[int, int]]] = {
    # operation: (client method, arguments, endpoint, output size)
    "generate": (
        "generate",
        {"resolution": "832x1248", "speed": "turbo", "style": "realistic", "magic_prompt": "off",
         "negative_prompt": "blurry"},
        "character",
        (832, 1248),
    ),
    "edit": ("edit", {"image": SCENE, "mask": SCENE_MASK, "speed": "quality"}, "character/edit", (96, 64)),
    "remix": ("remix", {"image": SCENE, "strength": 0.4, "aspect_ratio": "3:2"}, "character/remix", (1248, 832)),
}  # fmt: skip
WIRE_SPEED = {"turbo": "TURBO", "default": "BALANCED", "quality": "QUALITY"}


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_each_fal_operation_round_trips_through_the_queue(emulator: Emulator, driver: Driver, operation: str) -> None:
    method, arguments, endpoint, size = OPERATIONS[operation]
    events: list[Any] = []
    result = run_client(
        driver, "fal", emulator.url,
        lambda c: getattr(c, method)(PROMPT, REFERENCE, seed=7, **arguments), on_event=events.append,
    )  # fmt: skip

    (image,) = result.images
    check_image(image, size, "png")
    base, mask = arguments.get("image"), arguments.get("mask")
    assert image.data == expected_render(emulator.state, "fal", REFERENCE, PROMPT, size, 7, base=base, mask=mask)
    assert image.seed == 7
    speed = arguments.get("speed", "default")
    (entry,) = check_billing(emulator.state, result, "fal", admissions=1, images_each=1, speed=WIRE_SPEED[speed])
    assert entry.operation == operation and entry.detail["mode"] == "queue"
    assert result.vendor_request_id == entry.job_id
    assert result.cost_source == "price_table" and result.warnings == []
    assert [e.vendor_request_id for e in events if e.kind == "submitted"] == [entry.job_id]

    body = _submitted(emulator, endpoint).json()
    assert body["prompt"] == PROMPT and body["seed"] == 7 and body["num_images"] == 1
    assert body["rendering_speed"] == WIRE_SPEED[speed]
    assert [_data(u) for u in body["reference_image_urls"]] == [REFERENCE]
    if operation == "generate":
        assert body["image_size"] == {"width": 832, "height": 1248}
        assert (body["style"], body["expand_prompt"], body["negative_prompt"]) == ("REALISTIC", False, "blurry")
    if operation == "edit":
        assert (_data(body["image_url"]), _data(body["mask_url"])) == (SCENE, SCENE_MASK)
        assert not {"image_size", "negative_prompt"} & set(body) and body["style"] == "AUTO"
    if operation == "remix":
        assert _data(body["image_url"]) == SCENE and body["strength"] == 0.4
        assert body["image_size"] == {"width": 1248, "height": 832}
    # the queue URLs fal gave were followed, not rebuilt: status stream then result, then the image
    gets = [r.path for r in emulator.recorder.requests("fal", "GET")]
    assert gets == [f"/fal/fal-ai/ideogram/requests/{entry.job_id}/status/stream",
                    f"/fal/fal-ai/ideogram/requests/{entry.job_id}"]  # fmt: skip


@pytest.mark.parametrize("driver", DRIVERS)
def test_fal_makes_several_images_in_one_billed_job(emulator: Emulator, driver: Driver) -> None:
    result = run_client(
        driver, "fal", emulator.url,
        lambda c: c.generate(PROMPT, REFERENCE, seed=20, num_images=3, aspect_ratio="16:9", speed="turbo"),
    )  # fmt: skip

    assert len(result.images) == 3 and result.failures == []
    for index, image in enumerate(result.images):
        check_image(image, (1312, 736), "png")
        # fal returns one seed for the job; the emulator renders image i with seed + i [inferred].
        assert image.data == expected_render(emulator.state, "fal", REFERENCE, PROMPT, (1312, 736), 20 + index)
    assert len({image.sha256 for image in result.images}) == 3
    (entry,) = check_billing(emulator.state, result, "fal", admissions=1, images_each=3, speed="TURBO")
    assert result.vendor_request_id == entry.job_id
    assert _submitted(emulator, "character").json()["num_images"] == 3


@pytest.mark.parametrize("driver", DRIVERS)
def test_fal_style_references_palette_and_reference_mask_reach_the_endpoint(emulator: Emulator, driver: Driver) -> None:
    style_reference, reference_mask = png(40, 40, "yellow"), grey_mask(64, 64)
    result = run_client(
        driver, "fal", emulator.url,
        lambda c: c.remix(
            PROMPT, REFERENCE, image=SCENE, strength=0.9, seed=3, style="fiction", magic_prompt="on",
            reference_mask=reference_mask, style_references=[style_reference],
            color_palette={"members": [{"color": "#112233", "weight": 0.5}, {"color": "#ABCDEF"}]},
        ),
    )  # fmt: skip

    check_image(result.image, (1024, 1024), "png")  # remix without a size: fal's default square_hd
    check_billing(emulator.state, result, "fal", admissions=1, images_each=1, speed="BALANCED")
    assert result.warnings == []
    body = _submitted(emulator, "character/remix").json()
    assert [_data(u) for u in body["reference_mask_urls"]] == [reference_mask]
    assert [_data(u) for u in body["image_urls"]] == [style_reference]
    assert body["color_palette"] == {
        "members": [
            {"rgb": {"r": 0x11, "g": 0x22, "b": 0x33}, "color_weight": 0.5},
            {"rgb": {"r": 0xAB, "g": 0xCD, "b": 0xEF}},
        ]
    }
    assert (body["style"], body["expand_prompt"], body["strength"]) == ("FICTION", True, 0.9)


@pytest.mark.parametrize("driver", DRIVERS)
def test_fal_style_codes_and_a_palette_preset_reach_the_endpoint(emulator: Emulator, driver: Driver) -> None:
    result = run_client(
        driver, "fal", emulator.url,
        lambda c: c.generate(PROMPT, REFERENCE, seed=5, style_codes=["0A1B2C3D", "deadbeef"], color_palette="ember"),
    )  # fmt: skip

    check_image(result.image, (1024, 1024), "png")  # no size: 1:1, sent as fal's square_hd in pixels
    check_billing(emulator.state, result, "fal", admissions=1, images_each=1, speed="BALANCED")
    body = _submitted(emulator, "character").json()
    assert body["style_codes"] == ["0A1B2C3D", "DEADBEEF"]
    assert body["color_palette"] == {"name": "EMBER"}
    assert "style" not in body  # fal: "not with style_codes"
    assert body["image_size"] == {"width": 1024, "height": 1024}


@pytest.mark.parametrize("driver", DRIVERS)
def test_fal_edit_warns_about_fields_its_endpoint_lacks_and_does_not_send_them(
    emulator: Emulator, driver: Driver
) -> None:
    result = run_client(
        driver, "fal", emulator.url,
        lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, seed=9, style="fiction",
                         negative_prompt="rain"),
    )  # fmt: skip

    assert sorted((w.kind, w.field) for w in result.warnings) == [("unsupported", "negative_prompt")]
    check_image(result.image, (96, 64), "png")
    check_billing(emulator.state, result, "fal", admissions=1, images_each=1, speed="BALANCED")
    body = _submitted(emulator, "character/edit").json()
    assert body["style"] == "FICTION" and "negative_prompt" not in body  # CharacterEditInputV3 lists style


@pytest.mark.parametrize("driver", DRIVERS)
def test_strict_fal_edit_refuses_before_anything_is_sent(emulator: Emulator, driver: Driver) -> None:
    with pytest.raises(Unsupported):
        run_client(
            driver, "fal", emulator.url,
            lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, negative_prompt="rain", strict=True),
        )  # fmt: skip
    assert emulator.recorder.requests() == []
    assert emulator.state.ledger.entries() == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_fal_run_mode_is_one_request_and_one_admission(emulator: Emulator, driver: Driver) -> None:
    result = run_client(
        driver, "fal", emulator.url,
        lambda c: c.generate(PROMPT, REFERENCE, seed=4, resolution="1024x1024", extra={"fal": {"mode": "run"}}),
    )  # fmt: skip

    assert result.image.data == expected_render(emulator.state, "fal", REFERENCE, PROMPT, (1024, 1024), 4)
    (entry,) = check_billing(emulator.state, result, "fal", admissions=1, images_each=1, speed="BALANCED")
    assert entry.detail["mode"] == "run"
    posts = [r.path for r in emulator.recorder.requests("fal", "POST")]
    assert posts == ["/fal/rest/storage/auth/token", "/fal/cdn/files/upload", "/fal/run/fal-ai/ideogram/character"]
    assert emulator.state.uploads.count("fal") == 1  # the local reference, through fal's storage
    assert [r.path for r in emulator.recorder.requests("fal", "GET")] == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_fal_status_by_polling_follows_a_queued_job(emulator: Emulator, driver: Driver) -> None:
    emulator.state.set_model_seconds(0.3)
    events: list[Any] = []
    result = run_client(
        driver, "fal", emulator.url,
        lambda c: c.generate(PROMPT, REFERENCE, seed=8, resolution="1024x1024", extra={"fal": {"status": "poll"}}),
        on_event=events.append,
    )  # fmt: skip

    assert result.image.data == expected_render(emulator.state, "fal", REFERENCE, PROMPT, (1024, 1024), 8)
    (entry,) = check_billing(emulator.state, result, "fal", admissions=1, images_each=1, speed="BALANCED")
    polls = [r for r in emulator.recorder.requests("fal", "GET") if r.path.endswith("/status")]
    assert len(polls) >= 2  # 202 while queued or running, then 200
    assert all(p.path == f"/fal/fal-ai/ideogram/requests/{entry.job_id}/status" for p in polls)
    assert {"queued", "running"} & {e.status for e in events if e.kind == "progress"}


@pytest.mark.parametrize("driver", DRIVERS)
def test_fal_passes_url_inputs_through_for_fal_to_fetch(emulator: Emulator, driver: Driver) -> None:
    reference = serve_file(emulator.state, emulator.url, REFERENCE)
    scene = serve_file(emulator.state, emulator.url, SCENE)
    mask = serve_file(emulator.state, emulator.url, SCENE_MASK)
    result = run_client(
        driver, "fal", emulator.url, lambda c: c.edit(PROMPT, reference, image=scene, mask=mask, seed=6)
    )

    assert result.image.data == expected_render(
        emulator.state, "fal", REFERENCE, PROMPT, (96, 64), 6, base=SCENE, mask=SCENE_MASK
    )
    check_billing(emulator.state, result, "fal", admissions=1, images_each=1, speed="BALANCED")
    body = _submitted(emulator, "character/edit").json()
    assert (body["reference_image_urls"], body["image_url"], body["mask_url"]) == ([reference], scene, mask)
    fetched = [r for r in emulator.recorder.requests(method="GET") if r.path.startswith("/_emulator/files/")]
    assert len(fetched) == 1  # only the output: the inputs were read by the vendor, not downloaded here

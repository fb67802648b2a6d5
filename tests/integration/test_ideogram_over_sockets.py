"""Ideogram's native API against the emulator over a real loopback socket: generate, edit (both the
``/edit`` and the ``/inpaint`` route) and remix, multipart v3 forms, with both clients.

Ideogram answers synchronously and gives no job id; up to 8 images come from one admission, each with
its own seed. The emulator validates every form field against Ideogram's OpenAPI document, so a call
that succeeds sent a legal form; the recorder shows each option in Ideogram's spelling.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest

from ideochar.errors import InvalidRequest, Unsupported

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

PROMPT = "the knight feeds a grey horse"
REFERENCE = png(64, 64, (240, 200, 20))
SCENE = png(96, 64, (30, 160, 60))
SCENE_MASK = grey_mask(96, 64)

OPERATIONS: dict[str, tuple[str, dict[str, Any], str, tuple[int, int]]] = {
    # case: (client method, arguments, route, output size)
    "generate": ("generate", {"aspect_ratio": "2:3", "speed": "turbo"}, "generate", (832, 1248)),
    "edit": ("edit", {"image": SCENE, "mask": SCENE_MASK, "speed": "quality"}, "edit", (96, 64)),
    "inpaint": (
        "edit",
        {"image": SCENE, "mask": SCENE_MASK, "extra": {"ideogram": {"edit_path": "inpaint"}}},
        "inpaint",
        (96, 64),
    ),
    "remix": ("remix", {"image": SCENE, "strength": 0.8, "resolution": "1152x864"}, "remix", (1152, 864)),
}
WIRE_SPEED = {"turbo": "TURBO", "default": "DEFAULT", "quality": "QUALITY"}


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("case", list(OPERATIONS))
def test_each_ideogram_operation_round_trips(emulator: Emulator, case: str, driver: Driver) -> None:
    method, arguments, route, size = OPERATIONS[case]
    result = run_client(
        driver, "ideogram", emulator.url, lambda c: getattr(c, method)(PROMPT, REFERENCE, seed=41, **arguments)
    )

    (image,) = result.images
    check_image(image, size, "png")
    base, mask = arguments.get("image"), arguments.get("mask")
    assert image.data == expected_render(emulator.state, "ideogram", REFERENCE, PROMPT, size, 41, base=base, mask=mask)
    assert (image.seed, image.prompt) == (41, PROMPT)
    speed = WIRE_SPEED[arguments.get("speed", "default")]
    (entry,) = check_billing(emulator.state, result, "ideogram", admissions=1, images_each=1, speed=speed)
    assert entry.detail["route"] == route
    assert result.vendor_request_id is None  # Ideogram's v1 routes give no job id
    assert result.cost_source == "price_table" and result.warnings == []
    assert result.vendor_metadata["images"] == [
        {"index": 0, "seed": 41, "resolution": f"{size[0]}x{size[1]}", "is_image_safe": True, "style_type": "AUTO"}
    ]

    received = emulator.recorder.one_post("ideogram", f"/v1/ideogram-v3/{route}")
    assert received.content_type == "multipart/form-data"
    texts, files = received.texts(), received.files()
    expected: dict[str, list[str]] = {
        "prompt": [PROMPT], "rendering_speed": [speed], "magic_prompt": ["AUTO"], "style_type": ["AUTO"],
        "seed": ["41"], "num_images": ["1"],
    }  # fmt: skip
    if case == "generate":
        expected["aspect_ratio"] = ["2x3"]
    if case == "remix":
        expected |= {"image_weight": ["80"], "resolution": ["1152x864"]}
    assert texts == expected
    assert files["character_reference_images"] == [REFERENCE]
    if case in ("edit", "inpaint"):
        assert (files["image"], files["mask"]) == ([SCENE], [SCENE_MASK])
    if case == "remix":
        assert files["image"] == [SCENE] and "mask" not in files


@pytest.mark.parametrize("driver", DRIVERS)
def test_ideogram_makes_several_images_in_one_admission_each_with_its_seed(emulator: Emulator, driver: Driver) -> None:
    result = run_client(
        driver, "ideogram", emulator.url,
        lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, seed=50, num_images=3, speed="turbo"),
    )  # fmt: skip

    assert [image.seed for image in result.images] == [50, 51, 52]
    for image in result.images:
        check_image(image, (96, 64), "png")
        assert image.seed is not None
        assert image.data == expected_render(
            emulator.state, "ideogram", REFERENCE, PROMPT, (96, 64), image.seed, base=SCENE, mask=SCENE_MASK
        )
    check_billing(emulator.state, result, "ideogram", admissions=1, images_each=3, speed="TURBO")
    assert emulator.recorder.one_post("ideogram").texts()["num_images"] == ["3"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_ideogram_style_references_palette_reference_mask_and_magic_prompt_reach_the_route(
    emulator: Emulator, driver: Driver
) -> None:
    style_reference, reference_mask = png(40, 40, "purple"), grey_mask(64, 64)
    result = run_client(
        driver, "ideogram", emulator.url,
        lambda c: c.generate(
            PROMPT, REFERENCE, seed=6, resolution="1024x1024", style="fiction", magic_prompt="on",
            negative_prompt="crowds", reference_mask=reference_mask, style_references=[style_reference],
            color_palette={"members": [{"color": "#112233", "weight": 0.5}, {"color": "#abc"}]},
        ),
    )  # fmt: skip

    check_image(result.image, (1024, 1024), "png")
    assert result.image.prompt == f"{PROMPT} (emulated magic prompt)"  # what Ideogram says it used
    assert result.vendor_metadata["images"][0]["style_type"] == "FICTION"
    check_billing(emulator.state, result, "ideogram", admissions=1, images_each=1, speed="DEFAULT")
    received = emulator.recorder.one_post("ideogram", "/generate")
    texts, files = received.texts(), received.files()
    assert (texts["style_type"], texts["magic_prompt"], texts["negative_prompt"]) == (["FICTION"], ["ON"], ["crowds"])
    (palette,) = received.form()["color_palette"]
    assert palette.content_type == "application/json"
    assert json.loads(palette.data) == {
        "members": [{"color_hex": "#112233", "color_weight": 0.5}, {"color_hex": "#AABBCC"}]
    }
    assert files["character_reference_images_mask"] == [reference_mask]
    assert files["style_reference_images"] == [style_reference]


@pytest.mark.parametrize("driver", DRIVERS)
def test_ideogram_style_codes_go_without_a_style_type(emulator: Emulator, driver: Driver) -> None:
    result = run_client(
        driver, "ideogram", emulator.url,
        lambda c: c.remix(PROMPT, REFERENCE, image=SCENE, strength=0.3, seed=2, style_codes=["0a1b2c3d", "DEADBEEF"],
                          color_palette="jungle"),
    )  # fmt: skip

    check_image(result.image, (1024, 1024), "png")  # remix without a size: 1x1, Ideogram's default
    check_billing(emulator.state, result, "ideogram", admissions=1, images_each=1, speed="DEFAULT")
    texts = emulator.recorder.one_post("ideogram", "/remix").texts()
    assert texts["style_codes"] == ["0A1B2C3D", "DEADBEEF"]
    assert "style_type" not in texts and texts["image_weight"] == ["30"]
    assert json.loads(texts["color_palette"][0]) == {"name": "JUNGLE"}


@pytest.mark.parametrize("driver", DRIVERS)
def test_ideogram_url_inputs_are_fetched_then_uploaded_as_files(emulator: Emulator, driver: Driver) -> None:
    reference = serve_file(emulator.state, emulator.url, REFERENCE)
    scene = serve_file(emulator.state, emulator.url, SCENE)
    mask = serve_file(emulator.state, emulator.url, SCENE_MASK)
    inpaint = {"ideogram": {"edit_path": "inpaint"}}
    result = run_client(
        driver, "ideogram", emulator.url,
        lambda c: c.edit(PROMPT, reference, image=scene, mask=mask, seed=12, extra=inpaint),
    )  # fmt: skip

    assert result.image.data == expected_render(
        emulator.state, "ideogram", REFERENCE, PROMPT, (96, 64), 12, base=SCENE, mask=SCENE_MASK
    )
    check_billing(emulator.state, result, "ideogram", admissions=1, images_each=1, speed="DEFAULT")
    fetched = [r for r in emulator.recorder.requests(method="GET") if r.path.startswith("/_emulator/files/")]
    assert len(fetched) >= 4  # three inputs before the POST, then the output
    files = emulator.recorder.one_post("ideogram", "/inpaint").files()
    assert (files["character_reference_images"], files["image"], files["mask"]) == ([REFERENCE], [SCENE], [SCENE_MASK])


@pytest.mark.parametrize("driver", DRIVERS)
def test_ideogram_edit_warns_about_a_negative_prompt_and_strict_refuses_it(emulator: Emulator, driver: Driver) -> None:
    result = run_client(
        driver, "ideogram", emulator.url,
        lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, seed=1, negative_prompt="rain"),
    )  # fmt: skip
    assert [(w.kind, w.field) for w in result.warnings] == [("unsupported", "negative_prompt")]
    assert "negative_prompt" not in emulator.recorder.one_post("ideogram").texts()

    emulator.recorder.clear()
    with pytest.raises(Unsupported):
        run_client(
            driver, "ideogram", emulator.url,
            lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, negative_prompt="rain", strict=True),
        )  # fmt: skip
    assert emulator.recorder.requests() == []
    assert emulator.state.ledger.count("ideogram") == 1


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("field", ["operation.mask", "reference_mask"])
def test_a_coloured_mask_is_refused_before_ideogram_is_asked(emulator: Emulator, driver: Driver, field: str) -> None:
    """Ideogram refuses masks with colour (the emulator answers 400, as the spec says): that is known
    locally, so nothing is sent. A mask stored as RGB whose pixels are grey is fine."""
    red_mask, red_reference_mask = png(96, 64, (255, 0, 0)), png(64, 64, (0, 255, 0))
    masks = (
        {"mask": red_mask} if field == "operation.mask" else {"mask": SCENE_MASK, "reference_mask": red_reference_mask}
    )
    with pytest.raises(InvalidRequest) as caught:
        run_client(driver, "ideogram", emulator.url, lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, **masks))
    assert field in str(caught.value)
    assert emulator.recorder.requests("ideogram") == []

    grey_rgb = png(96, 64, (0, 0, 0))  # RGB, every pixel black
    result = run_client(
        driver, "ideogram", emulator.url, lambda c: c.edit(PROMPT, REFERENCE, image=SCENE, mask=grey_rgb)
    )
    check_image(result.image, (96, 64), "png")
    assert emulator.state.ledger.count("ideogram") == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_concurrent_ideogram_jobs_wait_for_room_under_the_in_flight_limit(emulator: Emulator, driver: Driver) -> None:
    """Ideogram allows 10 images in progress per organisation and the emulator enforces it; two 6-image
    jobs at once must queue on the client's side, not come back as RateLimited."""
    emulator.state.set_model_seconds(0.1)

    def edit(client: Any, seed: int) -> Any:
        return client.edit(PROMPT, REFERENCE, image=SCENE, mask=SCENE_MASK, seed=seed, num_images=6, speed="turbo")

    def both(client: Any) -> Any:
        if driver == "sync":
            with ThreadPoolExecutor(2) as pool:
                return list(pool.map(lambda seed: edit(client, seed), (100, 200)))

        async def concurrently() -> list[Any]:
            results: list[Any] = [None, None]

            async def one(index: int) -> None:
                results[index] = await edit(client, (100, 200)[index])

            async with anyio.create_task_group() as group:
                for index in range(2):
                    group.start_soon(one, index)
            return results

        return concurrently()

    first, second = run_client(driver, "ideogram", emulator.url, both)
    assert len(first.images) == len(second.images) == 6
    assert [e.images for e in emulator.state.ledger.entries("ideogram")] == [6, 6]

"""Nothing is left to a vendor default the caller did not choose, proven against the emulators.

Each vendor's emulator applies that vendor's *documented* defaults to a field a request leaves out and
records, in the ledger entry's ``inputs``, what the run used. So:

* sent straight to an emulator, a request missing a field runs with the documented default (the price,
  the size, the seed and the settings follow it);
* driven through ideochar's adapters with every neutral setting unset, each run uses what ideochar
  documents for "unset" (``ProviderInfo.defaults``), whatever the vendor's own default is; an adapter
  that left a field to the vendor would show the vendor's default here (one test breaks an adapter on
  purpose to show it is caught);
* on vendors that make one image per call, every image of a fan-out has its own seed, the one it reports.
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import pytest
from PIL import Image

from ideochar import Client
from ideochar.emulator import testing
from ideochar.request import CharacterRequest, Edit, Remix

KEY = "defaults-test-key"
ONE_IMAGE_PER_CALL = ("segmind", "replicate")


def png(width: int = 64, height: int = 64, color: Any = (30, 120, 200), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


REFERENCE = png()
SCENE = png(96, 64, (200, 60, 30))
MASK = png(96, 64, 0, mode="L")


@pytest.fixture(scope="module")
def app() -> Any:
    return testing.emulator_app()


@pytest.fixture
def state(app: Any) -> Any:
    testing.reset(app)
    return testing.state_of(app)


def client(app: Any, vendor: str) -> Client:
    return Client(
        [vendor],
        http=testing.sync_client(app),
        base_urls=testing.base_urls(app),
        keys={vendor: KEY},
        journal=False,
        config=False,
        limits={vendor: {"requests_per_minute": None}},
    )


def inputs(state: Any, vendor: str) -> list[dict[str, Any]]:
    return [dict(entry.detail["inputs"]) for entry in state.ledger.entries(vendor)]


# -- the emulators apply each vendor's documented defaults ------------------------------------------------------


def test_fal_applies_its_documented_defaults_to_missing_fields(app: Any, state: Any) -> None:
    with testing.sync_client(app) as http:
        body = {"prompt": "p", "reference_image_urls": [f"data:image/png;base64,{_b64(REFERENCE)}"]}
        submitted = http.post("/fal/fal-ai/ideogram/character", json=body, headers={"Authorization": f"Key {KEY}"})
        assert submitted.status_code == 200, submitted.text
        remix = {**body, "image_url": f"data:image/png;base64,{_b64(SCENE)}"}
        http.post("/fal/fal-ai/ideogram/character/remix", json=remix, headers={"Authorization": f"Key {KEY}"})
    generate, remixed = inputs(state, "fal")
    seed = generate.pop("seed")
    assert isinstance(seed, int)
    assert generate == {
        "prompt": "p",
        "rendering_speed": "BALANCED",
        "style": "AUTO",
        "expand_prompt": True,
        "num_images": 1,
        "sync_mode": False,
        "image_size": "square_hd",
        "negative_prompt": "",
    }
    assert remixed["strength"] == 0.8 and remixed["image_size"] == "square_hd"
    assert [e.cost_usd for e in state.ledger.entries("fal")] == [Decimal("0.15")] * 2  # BALANCED's price


def test_replicate_applies_its_documented_defaults_to_missing_fields(app: Any, state: Any) -> None:
    with testing.sync_client(app) as http:
        body = {"input": {"prompt": "p", "character_reference_image": f"data:image/png;base64,{_b64(REFERENCE)}"}}
        created = http.post(
            "/replicate/v1/models/ideogram-ai/ideogram-character/predictions",
            json=body,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert created.status_code == 201, created.text
    (used,) = inputs(state, "replicate")
    assert isinstance(used.pop("seed"), int)
    assert used == {
        "prompt": "p",
        "rendering_speed": "Default",
        "style_type": "Auto",
        "aspect_ratio": "1:1",
        "resolution": "None",
        "magic_prompt_option": "Auto",
    }
    assert state.ledger.entries("replicate")[0].cost_usd == Decimal("0.15")


def test_ideogram_applies_its_documented_defaults_to_missing_fields(app: Any, state: Any) -> None:
    with testing.sync_client(app) as http:
        answer = http.post(
            "/ideogram/v1/ideogram-v3/generate",
            headers={"Api-Key": KEY},
            data={"prompt": "p"},
            files={"character_reference_images": ("ref.png", REFERENCE, "image/png")},
        )
        assert answer.status_code == 200, answer.text
    (used,) = inputs(state, "ideogram")
    assert {k: used[k] for k in ("rendering_speed", "style_type", "num_images", "aspect_ratio", "magic_prompt")} == {
        "rendering_speed": "DEFAULT",
        "style_type": "GENERAL",
        "num_images": 1,
        "aspect_ratio": "1x1",
        "magic_prompt": "AUTO",
    }
    (image,) = answer.json()["data"]
    assert image["style_type"] == "GENERAL" and image["resolution"] == "1024x1024"


# (Segmind's documented defaults, 512x1536 / Realistic / Quality / Off / seed 1: tests/emulator/test_segmind.py)


# -- through the adapters: what "unset" means is what each run used ------------------------------------------------

GENERATE = CharacterRequest(prompt="a knight", reference=REFERENCE)
EDIT = CharacterRequest(prompt="a knight", reference=REFERENCE, operation=Edit(image=SCENE, mask=MASK))
REMIX = CharacterRequest(prompt="a knight", reference=REFERENCE, operation=Remix(image=SCENE))

#: What an unset neutral request must arrive as, per vendor and operation (the golden values of each
#: vendor's mapping tests, seen here from the vendor's side).
EXPECTED: dict[tuple[str, str], tuple[CharacterRequest, dict[str, Any]]] = {
    ("fal", "generate"): (
        GENERATE,
        {"rendering_speed": "BALANCED", "style": "AUTO", "expand_prompt": True,
         "image_size": {"width": 1024, "height": 1024}},
    ),
    ("fal", "edit"): (EDIT, {"rendering_speed": "BALANCED", "style": "AUTO", "expand_prompt": True}),
    ("fal", "remix"): (
        REMIX,
        {"rendering_speed": "BALANCED", "style": "AUTO", "expand_prompt": True, "strength": 0.8,
         "image_size": {"width": 1024, "height": 1024}},
    ),
    ("segmind", "generate"): (
        GENERATE,
        {"rendering_speed": "Default", "style_type": "Auto", "magic_prompt_option": "Auto", "resolution": "1024x1024"},
    ),
    ("segmind", "edit"): (EDIT, {"rendering_speed": "Default", "style_type": "Auto", "magic_prompt_option": "Auto"}),
    ("replicate", "generate"): (
        GENERATE,
        {"rendering_speed": "Default", "style_type": "Auto", "magic_prompt_option": "Auto", "aspect_ratio": "1:1"},
    ),
    ("replicate", "edit"): (EDIT, {"rendering_speed": "Default", "style_type": "Auto", "magic_prompt_option": "Auto"}),
    ("ideogram", "generate"): (
        GENERATE,
        {"rendering_speed": "DEFAULT", "style_type": "AUTO", "magic_prompt": "AUTO", "aspect_ratio": "1x1"},
    ),
    ("ideogram", "edit"): (EDIT, {"rendering_speed": "DEFAULT", "style_type": "AUTO", "magic_prompt": "AUTO"}),
    ("ideogram", "remix"): (
        REMIX,
        {"rendering_speed": "DEFAULT", "style_type": "AUTO", "magic_prompt": "AUTO", "aspect_ratio": "1x1",
         "image_weight": 80},
    ),
}  # fmt: skip


@pytest.mark.parametrize(("vendor", "operation"), sorted(EXPECTED))
def test_an_unset_request_runs_with_what_ideochar_documents_not_the_vendors_default(
    app: Any, state: Any, vendor: str, operation: str
) -> None:
    request, expected = EXPECTED[(vendor, operation)]
    with client(app, vendor) as c:
        result = c.run(request)
    (used,) = inputs(state, vendor)
    assert {k: used.get(k) for k in expected} == expected
    if vendor in ONE_IMAGE_PER_CALL:
        assert used["seed"] == result.image.seed  # drawn by ideochar, sent, reported
        assert used["seed"] != 1 or vendor != "segmind"
    if operation == "edit":
        assert "resolution" not in used and "aspect_ratio" not in used and "image_size" not in used


def test_an_adapter_that_left_a_field_to_segmind_would_be_caught(
    app: Any, state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ideochar_segmind.provider
    from ideochar_segmind import mapping

    def forgetful(request: CharacterRequest, *, seed: int | None = None) -> Any:
        return mapping.to_wire(request, seed=seed).model_copy(update={"style_type": None, "resolution": None})

    monkeypatch.setattr(ideochar_segmind.provider, "to_wire", forgetful)
    with client(app, "segmind") as c:
        result = c.run(GENERATE)
    (used,) = inputs(state, "segmind")
    assert (used["style_type"], used["resolution"]) == ("Realistic", "512x1536")  # Segmind's, not "unset"
    assert (result.image.width, result.image.height) == (512, 1536)


@pytest.mark.parametrize("vendor", ONE_IMAGE_PER_CALL)
def test_each_image_of_a_fan_out_has_its_own_seed_the_one_it_reports(app: Any, state: Any, vendor: str) -> None:
    with client(app, vendor) as c:
        result = c.run(CharacterRequest(prompt="a knight", reference=REFERENCE, num_images=3))
    sent = sorted(used["seed"] for used in inputs(state, vendor))
    reported = sorted(image.seed for image in result.images if image.seed is not None)
    assert len(set(sent)) == 3 and reported == sent
    assert len({image.sha256 for image in result.images}) == 3  # three different images


def test_a_fal_call_of_several_images_reports_its_seed_for_the_call(app: Any, state: Any) -> None:
    with client(app, "fal") as c:
        result = c.run(CharacterRequest(prompt="a knight", reference=REFERENCE, num_images=2))
    (used,) = inputs(state, "fal")
    assert [image.seed for image in result.images] == [None, None]
    assert result.vendor_metadata["seed"] == used["seed"]


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")

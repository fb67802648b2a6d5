"""Ideogram's v3 routes in the emulator, exercised with requests built from Ideogram's documentation.

Every strictness rule is answered with Ideogram's status and body shape; the happy paths use real
multipart bodies (httpx ``data=`` + ``files=``, repeated fields for lists, one JSON part for the palette).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from vendors_support import Emulated, image_bytes, pixel_size

from ideochar_ideogram.emulator import MARKER_UNSAFE, MARKER_WITHHOLD

pytestmark = pytest.mark.anyio

KEY = {"Api-Key": "org-one-key"}
GENERATE = "/ideogram/v1/ideogram-v3/generate"
EDIT = "/ideogram/v1/ideogram-v3/edit"
INPAINT = "/ideogram/v1/ideogram-v3/inpaint"
REMIX = "/ideogram/v1/ideogram-v3/remix"
REF = image_bytes(48, 64, "PNG", "blue")
Files = list[tuple[str, tuple[str | None, bytes | str, str]]]


@pytest.fixture
def emu() -> Emulated:
    return Emulated.start("ideogram")


@pytest.fixture
async def client(emu: Emulated) -> AsyncIterator[httpx.AsyncClient]:
    async with emu.client() as c:
        yield c


def ref_files(reference: bytes = REF, *extra: tuple[str, tuple[str | None, bytes | str, str]]) -> Files:
    return [("character_reference_images", ("me.png", reference, "image/png")), *extra]


async def post(
    client: httpx.AsyncClient,
    path: str,
    data: dict[str, Any],
    files: Files | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        path, data=data, files=ref_files() if files is None else files, headers=KEY if headers is None else headers
    )


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error"} and isinstance(body["error"], str)
    for word in words:
        assert word in body["error"]


# -- happy paths ----------------------------------------------------------------------------------


async def test_generate_returns_num_images_served_images_and_bills_each(
    client: httpx.AsyncClient, emu: Emulated
) -> None:
    response = await post(
        client,
        GENERATE,
        {
            "prompt": "a knight in a library",
            "rendering_speed": "QUALITY",
            "num_images": "2",
            "seed": "41",
            "aspect_ratio": "16x9",
            "style_type": "REALISTIC",
            "magic_prompt": "OFF",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"created", "data"}
    assert len(body["data"]) == 2
    for index, item in enumerate(body["data"]):
        assert set(item) >= {"url", "prompt", "resolution", "is_image_safe", "seed", "style_type"}
        assert item["is_image_safe"] is True
        assert item["seed"] == 41 + index
        assert item["style_type"] == "REALISTIC"
        assert item["prompt"] == "a knight in a library"
        width, height = (int(n) for n in item["resolution"].split("x"))
        assert abs(width / height - 16 / 9) < 0.02
        image = await client.get(item["url"])
        assert image.status_code == 200 and pixel_size(image.content) == (width, height)
    assert emu.renders[0]["reference"] == REF
    [entry] = emu.ledger()
    assert (entry.operation, entry.images, entry.cost_usd) == ("generate", 2, Decimal("0.40"))


async def test_magic_prompt_on_returns_a_revised_prompt(client: httpx.AsyncClient) -> None:
    response = await post(client, GENERATE, {"prompt": "a knight", "magic_prompt": "ON"})
    [item] = response.json()["data"]
    assert item["prompt"] != "a knight" and item["prompt"].startswith("a knight")
    assert datetime.fromisoformat(response.json()["created"]).tzinfo is not None


async def test_generate_with_resolution_renders_that_exact_size(client: httpx.AsyncClient) -> None:
    response = await post(client, GENERATE, {"prompt": "portrait", "resolution": "832x1248"})
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert item["resolution"] == "832x1248"
    assert pixel_size((await client.get(item["url"])).content) == (832, 1248)


async def test_generate_defaults_to_one_square_image_at_default_price(client: httpx.AsyncClient, emu: Emulated) -> None:
    response = await post(client, GENERATE, {"prompt": "portrait"})
    assert response.status_code == 200
    assert [d["resolution"] for d in response.json()["data"]] == ["1024x1024"]
    assert [(e.images, e.cost_usd) for e in emu.ledger()] == [(1, Decimal("0.15"))]


@pytest.mark.parametrize("path", [EDIT, INPAINT])
async def test_edit_and_inpaint_keep_the_input_size(client: httpx.AsyncClient, emu: Emulated, path: str) -> None:
    image = image_bytes(96, 80, "JPEG", "green")
    mask = image_bytes(96, 80, "PNG", 0, mode="L")
    response = await post(
        client,
        path,
        {"prompt": "add a hat", "rendering_speed": "TURBO"},
        files=ref_files(REF, ("image", ("scene.jpg", image, "image/jpeg")), ("mask", ("mask.png", mask, "image/png"))),
    )
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert item["resolution"] == "96x80"
    assert emu.renders[0]["base"] == image and emu.renders[0]["mask"] == mask
    assert [(e.operation, e.cost_usd) for e in emu.ledger()] == [("edit", Decimal("0.10"))]


async def test_remix_takes_image_weight_and_crops_to_the_aspect_ratio(client: httpx.AsyncClient, emu: Emulated) -> None:
    files = ref_files(REF, ("image", ("scene.webp", image_bytes(64, 64, "WEBP"), "image/webp")))
    response = await post(
        client,
        REMIX,
        {"prompt": "as a watercolour", "image_weight": "35", "aspect_ratio": "1x2", "negative_prompt": "blur"},
        files=files,
    )
    assert response.status_code == 200, response.text
    width, height = (int(n) for n in response.json()["data"][0]["resolution"].split("x"))
    assert abs(width / height - 0.5) < 0.02
    assert [e.operation for e in emu.ledger()] == ["remix"]


async def test_palette_as_one_json_part_and_repeated_style_codes_are_accepted(client: httpx.AsyncClient) -> None:
    palette = json.dumps({"members": [{"color_hex": "#FFAA00", "color_weight": 0.6}, {"color_hex": "#123"}]})
    response = await post(
        client,
        GENERATE,
        {"prompt": "x", "style_codes": ["AAFF5733", "0133ff57"]},
        files=ref_files(REF, ("color_palette", (None, palette, "application/json"))),
    )
    assert response.status_code == 200, response.text
    preset = await post(
        client,
        GENERATE,
        {"prompt": "x"},
        files=ref_files(REF, ("color_palette", (None, '{"name": "PASTEL"}', "application/json"))),
    )
    assert preset.status_code == 200, preset.text


async def test_a_matching_grayscale_reference_mask_is_accepted(client: httpx.AsyncClient) -> None:
    mask = image_bytes(48, 64, "PNG", 255, mode="L")
    response = await post(
        client,
        GENERATE,
        {"prompt": "x"},
        files=ref_files(REF, ("character_reference_images_mask", ("m.png", mask, "image/png"))),
    )
    assert response.status_code == 200, response.text


# -- authentication and content type -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Api-Key": ""}, {"Api-Key": "invalid-key"}, {"Authorization": "Bearer org-one-key"}]
)
async def test_bad_or_missing_api_key_is_401(client: httpx.AsyncClient, emu: Emulated, headers: dict[str, str]) -> None:
    assert_error(await post(client, GENERATE, {"prompt": "x"}, headers=headers), 401, "Not authorized")
    assert emu.ledger() == []


async def test_remix_refuses_a_bad_key_with_403_as_its_contract_lists(client: httpx.AsyncClient) -> None:
    files = ref_files(REF, ("image", ("i.png", REF, "image/png")))
    assert_error(await post(client, REMIX, {"prompt": "x"}, files=files, headers={"Api-Key": "invalid"}), 403)


async def test_urlencoded_body_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(GENERATE, data={"prompt": "x"}, headers=KEY)
    assert_error(response, 400, "Content-Type")


async def test_edit_refuses_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(EDIT, json={"prompt": "x"}, headers=KEY), 400, "multipart/form-data")


async def test_json_generate_cannot_carry_the_character_reference(client: httpx.AsyncClient, emu: Emulated) -> None:
    response = await client.post(GENERATE, json={"prompt": "x", "rendering_speed": "TURBO"}, headers=KEY)
    assert_error(response, 400, "character_reference_images", "multipart/form-data")
    files_in_json = await client.post(GENERATE, json={"prompt": "x", "character_reference_images": ["a"]}, headers=KEY)
    assert_error(files_in_json, 400, "JSON body cannot carry")
    assert emu.ledger() == []


async def test_json_generate_checks_types_strictly(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(GENERATE, json={"prompt": "x", "num_images": "2"}, headers=KEY), 400, "integer")


# -- the contract from the OpenAPI document -------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("aspect_ratio", "16:9"),
        ("aspect_ratio", "7x5"),
        ("rendering_speed", "turbo"),
        ("rendering_speed", "Turbo"),
        ("magic_prompt", "on"),
        ("style_type", "Realistic"),
        ("resolution", "1000x1000"),
    ],
)
async def test_enum_values_must_match_the_spec_exactly(client: httpx.AsyncClient, field: str, value: str) -> None:
    assert_error(await post(client, GENERATE, {"prompt": "x", field: value}), 400, field, "must be one of")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("num_images", "9", "<= 8"),
        ("num_images", "0", ">= 1"),
        ("num_images", "2.0", "integer"),
        ("seed", "-1", ">= 0"),
        ("seed", "2147483648", "<= 2147483647"),
    ],
)
async def test_numbers_are_typed_and_ranged_by_the_spec(
    client: httpx.AsyncClient, field: str, value: str, words: str
) -> None:
    assert_error(await post(client, GENERATE, {"prompt": "x", field: value}), 400, field, words)


async def test_aspect_ratio_and_resolution_together_are_refused(client: httpx.AsyncClient) -> None:
    response = await post(client, GENERATE, {"prompt": "x", "aspect_ratio": "1x1", "resolution": "1024x1024"})
    assert_error(response, 400, "aspect_ratio", "resolution")


async def test_unknown_fields_are_refused(client: httpx.AsyncClient) -> None:
    response = await post(client, GENERATE, {"prompt": "x", "magic_prompt_option": "ON"})
    assert_error(response, 400, "magic_prompt_option")


async def test_prompt_is_required(client: httpx.AsyncClient) -> None:
    assert_error(await post(client, GENERATE, {"rendering_speed": "TURBO"}), 400, "prompt is required")


async def test_a_text_field_sent_twice_is_refused(client: httpx.AsyncClient) -> None:
    response = await post(client, GENERATE, {"prompt": "x", "num_images": ["1", "2"]})
    assert_error(response, 400, "num_images", "once")


@pytest.mark.parametrize("path", [EDIT, INPAINT])
@pytest.mark.parametrize(
    ("field", "value"), [("negative_prompt", "blur"), ("aspect_ratio", "1x1"), ("resolution", "1024x1024")]
)
async def test_edit_takes_no_negative_prompt_or_size(
    client: httpx.AsyncClient, path: str, field: str, value: str
) -> None:
    files = ref_files(
        REF,
        ("image", ("i.png", REF, "image/png")),
        ("mask", ("m.png", image_bytes(48, 64, "PNG", 0, mode="L"), "image/png")),
    )
    assert_error(await post(client, path, {"prompt": "x", field: value}, files=files), 400, field)


async def test_edit_requires_image_and_mask(client: httpx.AsyncClient) -> None:
    files = ref_files(REF, ("image", ("i.png", REF, "image/png")))
    assert_error(await post(client, EDIT, {"prompt": "x"}, files=files), 400, "mask is required")


@pytest.mark.parametrize(("weight", "words"), [("0", ">= 1"), ("101", "<= 100"), ("50.5", "integer")])
async def test_remix_image_weight_is_an_integer_from_1_to_100(
    client: httpx.AsyncClient, weight: str, words: str
) -> None:
    files = ref_files(REF, ("image", ("i.png", REF, "image/png")))
    assert_error(await post(client, REMIX, {"prompt": "x", "image_weight": weight}, files=files), 400, words)


async def test_remix_requires_its_image(client: httpx.AsyncClient) -> None:
    assert_error(await post(client, REMIX, {"prompt": "x"}), 400, "image is required")


# -- images, masks, references --------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 2])
async def test_exactly_one_character_reference(client: httpx.AsyncClient, count: int) -> None:
    files: Files = [("character_reference_images", (f"r{i}.png", REF, "image/png")) for i in range(count)]
    files.append(("style_reference_images", ("s.png", REF, "image/png")))  # keeps the body multipart
    assert_error(await post(client, GENERATE, {"prompt": "x"}, files=files), 400, "exactly 1")


async def test_reference_sent_as_text_is_refused(client: httpx.AsyncClient) -> None:
    style_ref: Files = [("style_reference_images", ("s.png", REF, "image/png"))]  # keeps the body multipart
    response = await post(client, GENERATE, {"prompt": "x", "character_reference_images": "aGVsbG8="}, files=style_ref)
    assert_error(response, 400, "file part")


async def test_prompt_sent_as_a_file_part_is_refused(client: httpx.AsyncClient) -> None:
    files = ref_files(REF, ("prompt", ("p.txt", b"hello", "text/plain")))
    assert_error(await post(client, GENERATE, {}, files=files), 400, "prompt", "not a file")


async def test_images_must_be_jpeg_png_or_webp(client: httpx.AsyncClient) -> None:
    response = await post(client, GENERATE, {"prompt": "x"}, files=ref_files(image_bytes(8, 8, "GIF")))
    assert_error(response, 400, "character_reference_images", "JPEG, PNG and WebP")
    not_an_image = await post(client, GENERATE, {"prompt": "x"}, files=ref_files(b"plain text, not pixels"))
    assert_error(not_an_image, 400, "not a JPEG, PNG or WebP image")


async def test_images_over_10_mb_are_refused(client: httpx.AsyncClient, emu: Emulated) -> None:
    huge = REF + b"\0" * (10 * 1024 * 1024)  # a valid PNG followed by padding, past the limit
    assert_error(await post(client, GENERATE, {"prompt": "x"}, files=ref_files(huge)), 400, "10MB")
    assert emu.ledger() == []


async def test_reference_masks_must_match_the_references_in_count(client: httpx.AsyncClient) -> None:
    mask = image_bytes(48, 64, "PNG", 0, mode="L")
    files = ref_files(REF, *[("character_reference_images_mask", (f"m{i}.png", mask, "image/png")) for i in range(2)])
    assert_error(await post(client, GENERATE, {"prompt": "x"}, files=files), 400, "must match the number")


async def test_reference_mask_of_another_size_is_refused(client: httpx.AsyncClient) -> None:
    mask = image_bytes(64, 64, "PNG", 0, mode="L")
    files = ref_files(REF, ("character_reference_images_mask", ("m.png", mask, "image/png")))
    assert_error(await post(client, GENERATE, {"prompt": "x"}, files=files), 400, "64x64", "48x64", "same dimensions")


async def test_reference_mask_in_colour_is_refused(client: httpx.AsyncClient) -> None:
    mask = image_bytes(48, 64, "PNG", (255, 0, 0))
    files = ref_files(REF, ("character_reference_images_mask", ("m.png", mask, "image/png")))
    assert_error(await post(client, GENERATE, {"prompt": "x"}, files=files), 400, "grayscale")


async def test_edit_mask_of_another_size_is_refused(client: httpx.AsyncClient, emu: Emulated) -> None:
    files = ref_files(
        REF,
        ("image", ("i.png", image_bytes(96, 80), "image/png")),
        ("mask", ("m.png", image_bytes(80, 96, "PNG", 0, mode="L"), "image/png")),
    )
    assert_error(await post(client, EDIT, {"prompt": "x"}, files=files), 400, "same size")
    assert emu.ledger() == []


async def test_flash_is_refused_with_a_character_reference(client: httpx.AsyncClient) -> None:
    assert_error(await post(client, GENERATE, {"prompt": "x", "rendering_speed": "FLASH"}), 400, "FLASH")


# -- color palette and style codes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("palette", "words"),
    [
        ('{"name": "PASTEL", "members": [{"color_hex": "#FFFFFF"}]}', "exactly one"),
        ('{"name": "pastel"}', "exactly one"),
        ('{"members": [{"color_hex": "#FFFFFF", "color_weight": 0.01}]}', "exactly one"),
        ('{"members": []}', "exactly one"),
        (json.dumps({"members": [{"color_hex": "#FFFFFF"}] * 9}), "exactly one"),
        ('{"members": [{"color_hex": "white"}]}', "exactly one"),
        ("not json", "one JSON part"),
    ],
)
async def test_color_palette_is_a_preset_name_xor_weighted_members(
    client: httpx.AsyncClient, palette: str, words: str
) -> None:
    files = ref_files(REF, ("color_palette", (None, palette, "application/json")))
    assert_error(await post(client, GENERATE, {"prompt": "x"}, files=files), 400, "color_palette", words)


async def test_color_palette_must_be_one_part(client: httpx.AsyncClient) -> None:
    part = ("color_palette", (None, '{"name": "EMBER"}', "application/json"))
    assert_error(await post(client, GENERATE, {"prompt": "x"}, files=ref_files(REF, part, part)), 400, "once")


async def test_color_palette_as_a_file_part_is_refused(client: httpx.AsyncClient) -> None:
    part = ("color_palette", ("palette.json", '{"name": "EMBER"}', "application/json"))
    assert_error(await post(client, GENERATE, {"prompt": "x"}, files=ref_files(REF, part)), 400, "not a file")


async def test_style_codes_are_8_hex_digits(client: httpx.AsyncClient) -> None:
    response = await post(client, GENERATE, {"prompt": "x", "style_codes": ["AAFF5733", "XYZ"]})
    assert_error(response, 400, "style_codes[1]")


async def test_style_codes_exclude_style_type_and_style_references(client: httpx.AsyncClient) -> None:
    with_type = await post(client, GENERATE, {"prompt": "x", "style_codes": "AAFF5733", "style_type": "AUTO"})
    assert_error(with_type, 400, "style_codes")
    style_ref = ("style_reference_images", ("s.png", REF, "image/png"))
    files = ref_files(REF, style_ref)
    with_refs = await post(client, GENERATE, {"prompt": "x", "style_codes": "AAFF5733"}, files=files)
    assert_error(with_refs, 400, "style_codes")


# -- safety simulation ----------------------------------------------------------------------------


async def test_unsafe_prompt_is_a_422_and_not_billed(client: httpx.AsyncClient, emu: Emulated) -> None:
    response = await post(client, GENERATE, {"prompt": f"something {MARKER_UNSAFE}"})
    assert_error(response, 422, "safety check")
    assert set(response.json()) == {"error"}
    assert emu.ledger() == []


async def test_withheld_image_has_no_url_and_is_billed(client: httpx.AsyncClient, emu: Emulated) -> None:
    response = await post(
        client, GENERATE, {"prompt": f"a cat {MARKER_WITHHOLD}", "num_images": "3", "rendering_speed": "TURBO"}
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert [(d["is_image_safe"], d["url"] is None) for d in data] == [(False, True), (True, False), (True, False)]
    assert [(e.images, e.cost_usd) for e in emu.ledger()] == [(3, Decimal("0.30"))]


# -- the in-flight limit --------------------------------------------------------------------------


async def test_more_than_10_images_in_flight_per_key_is_a_429(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.kit.model_seconds = 0.4
    first = asyncio.ensure_future(post(client, GENERATE, {"prompt": "x", "num_images": "8"}))
    while not emu.ledger():  # the first request is admitted and now holds 8 of the 10 places
        await asyncio.sleep(0.01)
    over = await post(client, GENERATE, {"prompt": "x", "num_images": "3"})
    assert_error(over, 429)
    assert over.json()["reject_reason"] == "inflight_limit"
    fits = await post(client, GENERATE, {"prompt": "x", "num_images": "2"})
    other_org = await post(client, GENERATE, {"prompt": "x", "num_images": "8"}, headers={"Api-Key": "org-two"})
    assert (fits.status_code, other_org.status_code, (await first).status_code) == (200, 200, 200)
    assert sorted(e.images for e in emu.ledger()) == [2, 8, 8]  # the refused request is not billed
    after = await post(client, GENERATE, {"prompt": "x", "num_images": "8"})
    assert after.status_code == 200  # places are given back when a request ends


# -- faults ---------------------------------------------------------------------------------------


async def test_status_fault_402_has_ideograms_insufficient_funds_body(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.faults({"route": "generate", "kind": "status", "status": 402})
    response = await post(client, GENERATE, {"prompt": "x"})
    assert response.status_code == 402
    assert response.json()["reject_reason"] == "insufficient_funds"
    assert emu.ledger() == []


async def test_rate_limit_fault_keeps_retry_after(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.faults({"route": "remix", "kind": "rate_limit", "retry_after": 7})
    response = await post(client, REMIX, {"prompt": "x"}, files=ref_files(REF, ("image", ("i.png", REF, "image/png"))))
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    assert "error" in response.json()


async def test_faults_are_chosen_by_route_name(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.faults({"route": "inpaint", "kind": "status", "status": 503})
    files = ref_files(
        REF,
        ("image", ("i.png", REF, "image/png")),
        ("mask", ("m.png", image_bytes(48, 64, "PNG", 0, mode="L"), "image/png")),
    )
    assert (await post(client, EDIT, {"prompt": "x"}, files=files)).status_code == 200
    assert (await post(client, INPAINT, {"prompt": "x"}, files=files)).status_code == 503


async def test_stuck_job_is_billed_holds_its_inflight_places_then_is_cut(
    client: httpx.AsyncClient, emu: Emulated
) -> None:
    emu.faults({"route": "generate", "kind": "stuck", "seconds": 0.3})
    stuck = asyncio.ensure_future(post(client, GENERATE, {"prompt": "x", "num_images": "6"}))
    while not emu.ledger():
        await asyncio.sleep(0.01)
    assert (await post(client, GENERATE, {"prompt": "x", "num_images": "5"})).status_code == 429
    assert not stuck.done()
    with pytest.raises(httpx.RemoteProtocolError):
        await stuck
    assert [e.images for e in emu.billed()] == [6]
    assert (await post(client, GENERATE, {"prompt": "x", "num_images": "5"})).status_code == 200


async def test_dropped_connection_after_admission_is_billed_but_unanswered(
    client: httpx.AsyncClient, emu: Emulated
) -> None:
    emu.faults({"route": "generate", "kind": "drop_after_admit"})
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, GENERATE, {"prompt": "x", "num_images": "2"})
    assert [e.images for e in emu.billed()] == [2]


async def test_a_request_without_a_host_header_is_refused(client: httpx.AsyncClient, emu: Emulated) -> None:
    # httpx adds no Host header to a Request built from a raw stream; an HTTP/1.1 server refuses it.
    form = httpx.Request("POST", "http://emulator.test" + GENERATE, data={"prompt": "x"}, files=ref_files())
    raw = httpx.Request(
        "POST",
        form.url,
        headers={**KEY, "Content-Type": form.headers["Content-Type"]},
        stream=httpx.ByteStream(form.read()),
    )
    assert "host" not in raw.headers
    assert_error(await client.send(raw), 400, "Host")
    assert emu.ledger() == []


async def test_a_truncated_image_is_refused(client: httpx.AsyncClient, emu: Emulated) -> None:
    whole = image_bytes(64, 64, "PNG", (10, 200, 30))
    response = await post(client, GENERATE, {"prompt": "x"}, files=ref_files(whole[: len(whole) // 2]))
    assert_error(response, 400, "could not be decoded")
    assert emu.ledger() == []

"""The Segmind emulator: JSON and multipart, strict fields, JPEG answers with accounting headers, v2 jobs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest
from requests_toolbelt.multipart.encoder import MultipartEncoder

from .support import SEGMIND_KEY, SEGMIND_V1, SEGMIND_V2, data_uri, decode, image, pixel_size

pytestmark = pytest.mark.anyio


def form(fields: list[tuple[str, Any]]) -> tuple[bytes, dict[str, str]]:
    encoder = MultipartEncoder(fields)
    return encoder.to_string(), {**SEGMIND_KEY, "content-type": encoder.content_type}


def reference_part(data: bytes | None = None) -> tuple[str, tuple[str, bytes, str]]:
    return ("character_reference_image", ("face.png", data or image(), "image/png"))


async def post_form(http: httpx.AsyncClient, fields: list[tuple[str, Any]], path: str = SEGMIND_V1) -> httpx.Response:
    body, headers = form(fields)
    return await http.post(path, content=body, headers=headers)


async def test_a_multipart_request_answers_jpeg_bytes_with_accounting_headers(
    http: httpx.AsyncClient, state: Any
) -> None:
    response = await post_form(
        http,
        [
            ("prompt", "a knight"),
            reference_part(),
            ("resolution", "736x1312"),
            ("rendering_speed", "Turbo"),
            ("seed", "42"),
        ],
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert pixel_size(response.content) == (736, 1312)
    assert response.headers["x-seed-value"] == "42"
    assert Decimal(response.headers["x-cost"]) == Decimal("0.125")
    assert Decimal(response.headers["x-remaining-credits"]) == Decimal("99.875")
    assert float(response.headers["x-generation-time"]) >= 0
    [entry] = state.ledger.entries("segmind")
    assert entry.job_id == response.headers["x-request-id"]


async def test_a_missing_resolution_is_the_documented_512x1536_even_with_an_aspect_ratio(
    http: httpx.AsyncClient,
) -> None:
    bare = await post_form(http, [("prompt", "p"), reference_part()])
    assert pixel_size(bare.content) == (512, 1536)
    ratio_only = await post_form(http, [("prompt", "p"), reference_part(), ("aspect_ratio", "9:16")])
    assert pixel_size(ratio_only.content) == (512, 1536)  # the default resolution wins
    sized = await post_form(http, [("prompt", "p"), reference_part(), ("resolution", "832x1248")])
    assert pixel_size(sized.content) == (832, 1248)
    unset = await post_form(http, [("prompt", "p"), reference_part(), ("resolution", "None")])
    assert pixel_size(unset.content) == (1312, 736)  # the default aspect ratio, 16:9
    by_ratio = await post_form(
        http, [("prompt", "p"), reference_part(), ("resolution", "None"), ("aspect_ratio", "9:16")]
    )
    assert pixel_size(by_ratio.content) == (736, 1312)


async def test_every_documented_default_is_applied_to_a_missing_field(http: httpx.AsyncClient, state: Any) -> None:
    response = await post_form(http, [("prompt", "p"), reference_part()])
    assert response.status_code == 200, response.text
    [entry] = state.ledger.entries("segmind")
    assert entry.detail["inputs"] == {
        "prompt": "p",
        "resolution": "512x1536",
        "aspect_ratio": "16:9",
        "style_type": "Realistic",
        "rendering_speed": "Quality",
        "magic_prompt_option": "Off",
        "seed": 1,
    }
    assert entry.cost_usd == Decimal("0.25")  # Quality's price
    assert response.headers["x-seed-value"] == "1"  # every unseeded request draws the same image
    again = await post_form(http, [("prompt", "p"), reference_part()])
    assert again.content == response.content


async def test_values_given_replace_the_defaults_and_an_edit_uses_no_size(http: httpx.AsyncClient, state: Any) -> None:
    scene = image(96, 64)
    mask = image(96, 64, color=(0, 0, 0))
    fields = [
        ("prompt", "p"),
        reference_part(),
        ("image", ("scene.png", scene, "image/png")),
        ("mask", ("mask.png", mask, "image/png")),
        ("style_type", "Auto"),
        ("rendering_speed", "Turbo"),
        ("magic_prompt_option", "Auto"),
        ("seed", "7"),
    ]
    response = await post_form(http, fields)
    assert response.status_code == 200, response.text
    [entry] = state.ledger.entries("segmind")
    inputs = entry.detail["inputs"]
    assert (inputs["style_type"], inputs["rendering_speed"], inputs["magic_prompt_option"], inputs["seed"]) == (
        "Auto",
        "Turbo",
        "Auto",
        7,
    )
    assert "resolution" not in inputs and "aspect_ratio" not in inputs
    assert pixel_size(response.content) == (96, 64)


async def test_credits_go_down_with_each_request(http: httpx.AsyncClient) -> None:
    first = await post_form(http, [("prompt", "p"), reference_part(), ("rendering_speed", "Quality")])
    second = await post_form(http, [("prompt", "p"), reference_part(), ("rendering_speed", "Quality")])
    assert Decimal(first.headers["x-remaining-credits"]) - Decimal(second.headers["x-remaining-credits"]) == Decimal(
        "0.25"
    )


async def test_json_with_an_emulator_url_reads_the_image_back(http: httpx.AsyncClient, state: Any) -> None:
    green = (12, 200, 34)
    earlier = state.kits["segmind"].render_file(
        image(200, 200, color=green), "an earlier output", width=512, height=512, seed=1
    )
    url = f"http://emulator.test/_emulator/files/{earlier.id}"
    response = await http.post(SEGMIND_V1, json={"prompt": "p", "character_reference_image": url}, headers=SEGMIND_KEY)
    assert response.status_code == 200
    assert "x-emulator-note" not in response.headers
    counts = {colour: n for n, colour in decode(response.content).getcolors(1 << 24) or []}
    near_green = sum(n for colour, n in counts.items() if abs(colour[0] - 12) < 12 and abs(colour[1] - 200) < 12)
    assert near_green > 1000, "the earlier output (with its green reference) is drawn into the new image"


async def test_json_with_an_outside_url_renders_without_it_and_says_so(http: httpx.AsyncClient) -> None:
    body = {"prompt": "p", "character_reference_image": "https://example.com/face.png"}
    response = await http.post(SEGMIND_V1, json=body, headers=SEGMIND_KEY)
    assert response.status_code == 200
    assert "character_reference_image URL not fetched" in response.headers["x-emulator-note"]


async def test_an_edit_renders_at_the_image_size(http: httpx.AsyncClient) -> None:
    response = await post_form(
        http,
        [
            ("prompt", "p"),
            reference_part(),
            ("image", ("scene.png", image(120, 80, color="blue"), "image/png")),
            ("mask", ("mask.png", image(120, 80, color="white"), "image/png")),
        ],
    )
    assert response.status_code == 200
    assert pixel_size(response.content) == (120, 80)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing Authorization or x-api-key in header"),
        ({"Authorization": "Bearer SG_0123456789abcdef"}, "Missing Authorization or x-api-key in header"),
        ({"x-api-key": "invalid-key"}, "Unauthorized. API key is invalid or has been revoked."),
    ],
)
async def test_auth_failures_are_401_with_an_error(
    http: httpx.AsyncClient, state: Any, headers: dict[str, str], message: str
) -> None:
    response = await http.post(
        SEGMIND_V1, json={"prompt": "p", "character_reference_image": "https://x/y.png"}, headers=headers
    )
    assert (response.status_code, response.json()) == (401, {"error": message})
    assert state.ledger.entries() == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_neither_json_nor_multipart_is_406(
    http: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {**SEGMIND_KEY, **({"content-type": content_type} if content_type else {})}
    response = await http.post(SEGMIND_V1, content=b"prompt=p", headers=headers)
    assert (response.status_code, response.json()) == (406, {"error": "Invalid content type"})


async def test_get_is_an_html_405(http: httpx.AsyncClient) -> None:
    response = await http.get(SEGMIND_V1, headers=SEGMIND_KEY)
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ([("rendering_speed", "TURBO")], "rendering_speed must be one of Default, Turbo, Quality"),
        ([("rendering_speed", "BALANCED")], "rendering_speed must be one of"),
        ([("style_type", "realistic")], "style_type must be one of Auto, Fiction, Realistic"),
        ([("magic_prompt_option", "OFF")], "magic_prompt_option must be one of Auto, On, Off"),
        ([("aspect_ratio", "16x9")], "aspect_ratio must be one of"),
        ([("resolution", "1000x1000")], "not a supported resolution"),
        ([("aspect_ratio", "16:9"), ("resolution", "1024x1024")], "not both"),
        ([("num_images", "2")], "Unknown parameter 'num_images'"),
        ([("seed", "abc")], "seed must be an integer"),
        ([("image", ("scene.png", image(), "image/png"))], "image and mask must be given together"),
        (
            [("image", ("s.png", image(64, 64), "image/png")), ("mask", ("m.png", image(32, 32), "image/png"))],
            "mask must have the same size as image",
        ),
        (
            [("mask", ("m.txt", b"not an image", "text/plain")), ("image", ("s.png", image(), "image/png"))],
            "not a JPEG, PNG or WebP",
        ),
        ([("seed", ("seed.txt", b"1", "text/plain"))], "must be a text field, not a file"),
    ],
)
async def test_invalid_fields_are_a_400_with_an_error(
    http: httpx.AsyncClient, state: Any, fields: list[tuple[str, Any]], words: str
) -> None:
    response = await post_form(http, [("prompt", "p"), reference_part(), *fields])
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]
    assert state.ledger.entries() == []


async def test_missing_required_fields_are_refused(http: httpx.AsyncClient) -> None:
    no_reference = await http.post(SEGMIND_V1, json={"prompt": "p"}, headers=SEGMIND_KEY)
    assert no_reference.json() == {"error": "character_reference_image is required"}
    no_prompt = await http.post(SEGMIND_V1, json={"character_reference_image": "https://x/y.png"}, headers=SEGMIND_KEY)
    assert no_prompt.status_code == 400


async def test_an_image_over_10_mb_is_refused(http: httpx.AsyncClient) -> None:
    big = image(8, 8) + b"\0" * (10 * 1024 * 1024 + 1)
    response = await post_form(http, [("prompt", "p"), reference_part(big)])
    assert (response.status_code, response.json()) == (400, {"error": "character_reference_image is larger than 10 MB"})


async def test_a_bare_base64_string_in_json_is_not_an_image(http: httpx.AsyncClient) -> None:
    body = {"prompt": "p", "character_reference_image": data_uri(image()).split(",", 1)[1]}
    response = await http.post(SEGMIND_V1, json=body, headers=SEGMIND_KEY)
    assert response.status_code == 400


async def test_a_truncated_multipart_body_is_refused(http: httpx.AsyncClient) -> None:
    body, headers = form([("prompt", "p"), reference_part()])
    response = await http.post(SEGMIND_V1, content=body[:-40], headers=headers)
    assert response.status_code == 400
    assert "Malformed multipart" in response.json()["error"]


async def test_a_key_without_credit_gets_a_406_naming_the_balance(http: httpx.AsyncClient, state: Any) -> None:
    body, headers = form([("prompt", "p"), reference_part()])
    response = await http.post(SEGMIND_V1, content=body, headers={**headers, "x-api-key": "nocredit-key"})
    assert response.status_code == 406
    assert "balance is $0.0000" in response.json()["error"]
    assert state.ledger.entries() == []


async def test_a_failed_run_is_a_500_and_not_billed(http: httpx.AsyncClient, state: Any) -> None:
    response = await post_form(http, [("prompt", "p [emulator:fail]"), reference_part()])
    assert (response.status_code, response.json()) == (500, {"error": "Server had some issue"})
    assert state.ledger.count("segmind") == 0


async def test_v2_submits_then_completes_with_an_output_url(http: httpx.AsyncClient, state: Any) -> None:
    state.set_model_seconds(0.2)
    submitted = (await post_form(http, [("prompt", "p"), reference_part(), ("seed", "3")], SEGMIND_V2)).json()
    assert submitted["status"] == "QUEUED"
    assert submitted["status_url"].endswith(f"/segmind/v2/requests/{submitted['request_id']}/status")
    assert state.ledger.job_ids("segmind") == [submitted["request_id"]]
    with anyio.fail_after(5):
        while (status := (await http.get(submitted["status_url"], headers=SEGMIND_KEY)).json())[
            "status"
        ] != "COMPLETED":
            assert status["status"] in ("QUEUED", "PROCESSING")
            await anyio.sleep(0.02)
    result = (await http.get(submitted["response_url"], headers=SEGMIND_KEY)).json()
    assert result["metrics"]["cost"] == 0.25  # the documented default speed, Quality
    jpeg = (await http.get(result["output"])).content
    assert pixel_size(jpeg) == (512, 1536)  # the documented default resolution
    assert decode(jpeg).size == (512, 1536)


async def test_v2_failed_jobs_answer_422_and_are_not_billed(http: httpx.AsyncClient, state: Any) -> None:
    submitted = (await post_form(http, [("prompt", "[emulator:fail]"), reference_part()], SEGMIND_V2)).json()
    await anyio.sleep(0.05)
    response = await http.get(submitted["response_url"], headers=SEGMIND_KEY)
    assert response.status_code == 422
    assert response.json()["status"] == "FAILED"
    assert state.ledger.count("segmind") == 0


async def test_v2_unknown_jobs_are_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/segmind/v2/requests/nope", headers=SEGMIND_KEY)
    assert response.status_code == 404


async def test_an_injected_429_names_the_reset_time_not_retry_after(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile({"segmind": [{"route": "v1", "kind": "rate_limit", "retry_after": 30}]})
    response = await post_form(http, [("prompt", "p"), reference_part()])
    assert response.status_code == 429
    assert "error" in response.json()
    assert "retry-after" not in response.headers
    assert response.headers["x-rate-limit-reset-at-utc"].endswith("Z")
    assert state.ledger.entries() == []

"""The fal emulator refuses what fal refuses, with fal's error shapes, and admits nothing it refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .support import FAL_EDIT, FAL_GENERATE, FAL_KEY, FAL_REMIX, data_uri, edit_body, fal_body, image

pytestmark = pytest.mark.anyio


def problems(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    return detail


def locs(response: httpx.Response) -> dict[tuple[Any, ...], str]:
    return {tuple(p["loc"]): p["type"] for p in problems(response)}


async def test_a_valid_submit_is_admitted_once(http: httpx.AsyncClient, state: Any) -> None:
    response = await http.post(FAL_GENERATE, json=fal_body(num_images=2), headers=FAL_KEY)
    assert response.status_code == 200, response.text
    [entry] = state.ledger.entries("fal")
    assert entry.job_id == response.json()["request_id"]
    assert (entry.operation, entry.images, str(entry.cost_usd)) == ("generate", 2, "0.20")


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Missing authorization header"),
        ({"Authorization": "Bearer test-key"}, "Invalid authorization header: expected 'Key <key>'"),
        ({"Authorization": "Key "}, "Invalid authorization header: expected 'Key <key>'"),
        ({"Authorization": "Key invalid-key"}, "No user found for Key ID and Secret"),
    ],
)
async def test_auth_failures_are_401_with_a_detail(
    http: httpx.AsyncClient, state: Any, headers: dict[str, str], detail: str
) -> None:
    response = await http.post(FAL_GENERATE, json=fal_body(), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert state.ledger.entries() == []


async def test_a_body_that_is_not_json_content_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(FAL_GENERATE, content=b"prompt=x", headers={**FAL_KEY, "content-type": "text/plain"})
    assert problems(response)[0]["type"] == "model_attributes_type"


async def test_malformed_json_is_a_json_invalid_problem(http: httpx.AsyncClient) -> None:
    response = await http.post(
        FAL_GENERATE, content=b'{"prompt": ', headers={**FAL_KEY, "content-type": "application/json"}
    )
    assert problems(response)[0]["type"] == "json_invalid"


async def test_every_problem_is_listed_with_its_location(http: httpx.AsyncClient, state: Any) -> None:
    body = fal_body(prompt=..., reference_image_urls=..., num_images=9, rendering_speed="turbo")
    response = await http.post(FAL_GENERATE, json=body, headers=FAL_KEY)
    assert locs(response) == {
        ("body", "prompt"): "missing",
        ("body", "reference_image_urls"): "missing",
        ("body", "rendering_speed"): "literal_error",
        ("body", "num_images"): "less_than_equal",
    }
    assert state.ledger.entries() == []


@pytest.mark.parametrize(
    ("fields", "loc", "kind"),
    [
        ({"rendering_speed": "Turbo"}, ("rendering_speed",), "literal_error"),
        ({"rendering_speed": "DEFAULT"}, ("rendering_speed",), "literal_error"),
        ({"style": "Realistic"}, ("style",), "literal_error"),
        ({"num_images": 0}, ("num_images",), "greater_than_equal"),
        ({"num_images": "2"}, ("num_images",), "int_type"),
        ({"expand_prompt": "yes"}, ("expand_prompt",), "bool_type"),
        ({"seed": -1}, ("seed",), "greater_than_equal"),
        ({"image_size": "square_HD"}, ("image_size",), "literal_error"),
        ({"image_size": {"width": 0, "height": 512}}, ("image_size", "width"), "greater_than_equal"),
        ({"image_size": {"width": 512}}, ("image_size", "height"), "missing"),
        ({"color_palette": {"name": "ember"}}, ("color_palette", "name"), "literal_error"),
        (
            {"color_palette": {"name": "EMBER", "members": [{"rgb": {"r": 1, "g": 2, "b": 3}}]}},
            ("color_palette",),
            "value_error",
        ),
        (
            {"color_palette": {"members": [{"rgb": {"r": 256, "g": 0, "b": 0}}]}},
            ("color_palette", "members", 0, "rgb", "r"),
            "less_than_equal",
        ),
        (
            {"color_palette": {"members": [{"rgb": {"r": 1, "g": 2, "b": 3}, "color": "#ff0000"}]}},
            ("color_palette", "members", 0, "color"),
            "extra_forbidden",
        ),
        ({"color_palette": {"members": []}}, ("color_palette", "members"), "too_short"),
        ({"style_codes": ["12345678", "XYZ"]}, ("style_codes", 1), "string_pattern_mismatch"),
        ({"style_codes": ["AABBCCDD"], "style": "REALISTIC"}, ("style_codes",), "value_error"),
        ({"reference_image_urls": []}, ("reference_image_urls",), "too_short"),
        ({"aspect_ratio": "16:9"}, ("aspect_ratio",), "extra_forbidden"),
    ],
)
async def test_generate_fields_are_checked_like_fal(
    http: httpx.AsyncClient, fields: dict[str, Any], loc: tuple[Any, ...], kind: str
) -> None:
    response = await http.post(FAL_GENERATE, json=fal_body(**fields), headers=FAL_KEY)
    assert locs(response) == {("body", *loc): kind}


@pytest.mark.parametrize("field", ["image_size", "negative_prompt"])
async def test_edit_refuses_fields_it_does_not_have(http: httpx.AsyncClient, field: str) -> None:
    value = {"image_size": "square_hd", "negative_prompt": "blur"}[field]
    response = await http.post(FAL_EDIT, json=edit_body(**{field: value}), headers=FAL_KEY)
    assert locs(response) == {("body", field): "extra_forbidden"}


async def test_edit_takes_style_as_characteredit_input_v3_lists_it(http: httpx.AsyncClient) -> None:
    response = await http.post(FAL_EDIT, json=edit_body(style="FICTION"), headers=FAL_KEY)
    assert response.status_code == 200, response.text
    wrong = await http.post(FAL_EDIT, json=edit_body(style="GENERAL"), headers=FAL_KEY)
    assert locs(wrong) == {("body", "style"): "literal_error"}


async def test_edit_needs_its_image_and_mask(http: httpx.AsyncClient) -> None:
    response = await http.post(FAL_EDIT, json=edit_body(image_url=..., mask_url=...), headers=FAL_KEY)
    assert locs(response) == {("body", "image_url"): "missing", ("body", "mask_url"): "missing"}


async def test_edit_mask_of_another_size_is_refused(http: httpx.AsyncClient, state: Any) -> None:
    body = edit_body(mask_url=data_uri(image(64, 64, color="white")))
    [problem] = problems(await http.post(FAL_EDIT, json=body, headers=FAL_KEY))
    assert problem["loc"] == ["body", "mask_url"]
    assert "exact same dimensions" in problem["msg"]
    assert state.ledger.entries() == []


@pytest.mark.parametrize(("strength", "kind"), [(0.0, "greater_than_equal"), (1.5, "less_than_equal")])
async def test_remix_strength_outside_its_range_is_refused(http: httpx.AsyncClient, strength: float, kind: str) -> None:
    body = fal_body(image_url=data_uri(image()), strength=strength)
    assert locs(await http.post(FAL_REMIX, json=body, headers=FAL_KEY)) == {("body", "strength"): kind}


async def test_a_data_uri_that_is_not_an_image_is_an_image_load_error(http: httpx.AsyncClient) -> None:
    body = fal_body(reference_image_urls=[data_uri(b"GIF89a not really", "image/gif")])
    [problem] = problems(await http.post(FAL_GENERATE, json=body, headers=FAL_KEY))
    assert (problem["loc"], problem["type"]) == (["body", "reference_image_urls", 0], "image_load_error")


async def test_a_gif_is_not_accepted(http: httpx.AsyncClient) -> None:
    body = fal_body(reference_image_urls=[data_uri(image(fmt="GIF"), "image/gif")])
    assert problems(await http.post(FAL_GENERATE, json=body, headers=FAL_KEY))[0]["type"] == "image_load_error"


async def test_references_over_10_mb_are_refused(http: httpx.AsyncClient) -> None:
    big = image(8, 8) + b"\0" * (6 * 1024 * 1024)  # a valid PNG header, padded
    body = fal_body(reference_image_urls=[data_uri(big), data_uri(big)])
    [problem] = problems(await http.post(FAL_GENERATE, json=body, headers=FAL_KEY))
    assert (problem["loc"], problem["type"]) == (["body", "reference_image_urls"], "file_too_large")


async def test_a_url_that_is_neither_http_nor_data_is_a_download_error(http: httpx.AsyncClient) -> None:
    body = fal_body(reference_image_urls=["ftp://example.com/face.png"])
    assert problems(await http.post(FAL_GENERATE, json=body, headers=FAL_KEY))[0]["type"] == "file_download_error"


async def test_a_bad_queue_priority_header_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(FAL_GENERATE, json=fal_body(), headers={**FAL_KEY, "X-Fal-Queue-Priority": "high"})
    assert problems(response)[0]["loc"] == ["header", "x-fal-queue-priority"]


async def test_an_unknown_path_is_a_json_404(http: httpx.AsyncClient) -> None:
    response = await http.post("/fal/fal-ai/ideogram/v3", json=fal_body(), headers=FAL_KEY)
    assert response.status_code == 404
    assert "detail" in response.json()

"""The fal emulator's storage and pricing routes: strict, counted, expiring, on the same port as the queue."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from ideochar.emulator import testing
from ideochar_fal.emulator_storage import DEFAULT_RETENTION_SECONDS, TOKEN_SECONDS

from .support import FAL_GENERATE, FAL_KEY, fal_body, image

pytestmark = pytest.mark.anyio

TOKEN_URL = "/fal/rest/storage/auth/token?storage_type=fal-cdn-v3"
INITIATE_URL = "/fal/rest/storage/upload/initiate?storage_type=gcs"
UPLOAD_URL = "/fal/cdn/files/upload"
LIFECYCLE = {"x-fal-object-lifecycle": '{"expiration_duration_seconds":3600}'}


async def token(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.post(TOKEN_URL, json={}, headers=FAL_KEY)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def upload(http: httpx.AsyncClient, data: bytes, **headers: str) -> httpx.Response:
    cdn = await token(http)
    auth = {"authorization": f"{cdn['token_type']} {cdn['token']}", "content-type": "image/png", **headers}
    return await http.post(f"{cdn['base_url']}/files/upload", content=data, headers=auth)


async def test_a_cdn_token_then_an_upload_gives_a_url_the_queue_reads_back(http: httpx.AsyncClient, state: Any) -> None:
    cdn = await token(http)
    assert cdn["token_type"] == "Bearer" and cdn["base_url"] == "http://emulator.test/fal/cdn"
    assert cdn["expires_at"].endswith("+00:00")
    face = image(80, 60)
    uploaded = await upload(http, face, **LIFECYCLE, **{"x-fal-file-name": "reference.png"})
    assert uploaded.status_code == 200, uploaded.text
    url = uploaded.json()["access_url"]
    assert (await http.get(url)).content == face
    assert state.uploads.count("fal") == 1 and testing.uploads(state, "fal") == 1
    submitted = await http.post(FAL_GENERATE, json=fal_body(reference_image_urls=[url]), headers=FAL_KEY)
    assert submitted.status_code == 200, submitted.text


async def test_the_upload_needs_a_token_the_emulator_issued_not_the_key(http: httpx.AsyncClient) -> None:
    for auth in ({"authorization": "Bearer made-up"}, FAL_KEY, {}):
        refused = await http.post(UPLOAD_URL, content=image(), headers={**auth, "content-type": "image/png"})
        assert refused.status_code == 401


async def test_an_expired_token_is_refused(http: httpx.AsyncClient, state: Any) -> None:
    cdn = await token(http)
    now = state.files.clock()
    state.files.clock = lambda: now + TOKEN_SECONDS + 1
    auth = {"authorization": f"Bearer {cdn['token']}", "content-type": "image/png"}
    assert (await http.post(UPLOAD_URL, content=image(), headers=auth)).status_code == 401


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": "text/plain"}, None, 400),
        ({"content-type": "image/jpeg"}, None, 400),  # PNG bytes declared as JPEG
        ({"x-fal-object-lifecycle": "not json"}, None, 400),
        ({"x-fal-object-lifecycle-preference": '{"expiration_duration_seconds": 0}'}, None, 400),
        ({"x-fal-object-lifecycle": '{"expiration_duration_seconds": 1.5}'}, None, 400),
        ({}, b"", 400),
        ({}, b"not an image", 400),
    ],
)
async def test_uploads_are_checked_strictly(
    http: httpx.AsyncClient, state: Any, headers: dict[str, str], body: bytes | None, status: int
) -> None:
    response = await upload(http, image() if body is None else body, **headers)
    assert response.status_code == status, response.text
    assert state.uploads.count("fal") == 0


async def test_the_token_route_is_strict_and_needs_the_key(http: httpx.AsyncClient) -> None:
    assert (await http.post(TOKEN_URL, json={})).status_code == 401
    other = await http.post("/fal/rest/storage/auth/token?storage_type=s3", json={}, headers=FAL_KEY)
    assert other.status_code == 422
    extra = await http.post(TOKEN_URL, json={"ttl": 5}, headers=FAL_KEY)
    assert extra.status_code == 422


async def test_an_uploaded_file_lives_as_its_lifecycle_asks_and_a_job_naming_it_after_is_refused(
    http: httpx.AsyncClient, state: Any
) -> None:
    url = (await upload(http, image(), **LIFECYCLE)).json()["access_url"]
    now = state.files.clock()
    state.files.clock = lambda: now + 3599
    assert (await http.get(url)).status_code == 200
    state.files.clock = lambda: now + 3601
    assert (await http.get(url)).status_code == 404
    refused = await http.post(FAL_GENERATE, json=fal_body(reference_image_urls=[url]), headers=FAL_KEY)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["type"] == "file_download_error"


async def test_without_a_lifecycle_a_file_keeps_the_default_retention(http: httpx.AsyncClient, state: Any) -> None:
    url = (await upload(http, image())).json()["access_url"]
    now = state.files.clock()
    state.files.clock = lambda: now + DEFAULT_RETENTION_SECONDS - 1
    assert (await http.get(url)).status_code == 200


async def test_initiate_then_put_uploads_once_to_the_url_it_named(http: httpx.AsyncClient, state: Any) -> None:
    body = {"file_name": "reference.png", "content_type": "image/png"}
    initiated = await http.post(INITIATE_URL, json=body, headers={**FAL_KEY, **LIFECYCLE})
    assert initiated.status_code == 200, initiated.text
    urls = initiated.json()
    assert (await http.get(urls["file_url"])).status_code == 404  # nothing there before the PUT
    face = image(30, 20)
    put = await http.put(urls["upload_url"], content=face, headers={"content-type": "image/png"})
    assert put.status_code == 200
    assert (await http.get(urls["file_url"])).content == face
    again = await http.put(urls["upload_url"], content=face, headers={"content-type": "image/png"})
    assert again.status_code == 403  # a signed URL is used once
    assert state.uploads.count("fal") == 1


@pytest.mark.parametrize(
    "body",
    [{"file_name": "a.png"}, {"content_type": "image/png"}, {"file_name": "a.gif", "content_type": "image/gif"},
     {"file_name": "a.png", "content_type": "image/png", "acl": "public"}],
)  # fmt: skip
async def test_initiate_is_strict(http: httpx.AsyncClient, body: dict[str, str]) -> None:
    assert (await http.post(INITIATE_URL, json=body, headers=FAL_KEY)).status_code == 422


async def test_a_put_of_another_type_than_initiated_is_refused(http: httpx.AsyncClient) -> None:
    body = {"file_name": "reference.jpg", "content_type": "image/jpeg"}
    urls = (await http.post(INITIATE_URL, json=body, headers=FAL_KEY)).json()
    put = await http.put(urls["upload_url"], content=image(), headers={"content-type": "image/png"})
    assert put.status_code == 400


async def test_a_job_naming_an_initiated_file_never_put_is_refused(http: httpx.AsyncClient) -> None:
    body = {"file_name": "reference.png", "content_type": "image/png"}
    urls = (await http.post(INITIATE_URL, json=body, headers=FAL_KEY)).json()
    refused = await http.post(FAL_GENERATE, json=fal_body(reference_image_urls=[urls["file_url"]]), headers=FAL_KEY)
    assert refused.status_code == 422


async def test_the_pricing_route_lists_the_balanced_price_per_image(http: httpx.AsyncClient) -> None:
    url = "/fal/platform/v1/models/pricing?endpoint_id=fal-ai/ideogram/character,fal-ai/ideogram/character/edit"
    answer = await http.get(url + "&endpoint_id=fal-ai/unknown", headers=FAL_KEY)
    assert answer.status_code == 200
    assert answer.json() == {
        "prices": [
            {"endpoint_id": "fal-ai/ideogram/character", "unit_price": 0.15, "unit": "image", "currency": "USD"},
            {"endpoint_id": "fal-ai/ideogram/character/edit", "unit_price": 0.15, "unit": "image", "currency": "USD"},
        ],
        "next_cursor": None,
        "has_more": False,
    }
    assert (await http.get(url)).status_code == 401
    assert (await http.get("/fal/platform/v1/models/pricing", headers=FAL_KEY)).status_code == 422


async def test_storage_routes_take_faults_by_their_own_names(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile({"fal": [{"route": "uploads.token", "kind": "status", "status": 503}]})
    assert (await http.post(TOKEN_URL, json={}, headers=FAL_KEY)).status_code == 503
    state.set_profile({"fal": [{"route": "st*", "kind": "status", "status": 503}]})  # status and stream only
    assert (await http.post(TOKEN_URL, json={}, headers=FAL_KEY)).status_code == 200


async def test_the_admin_route_lists_uploads_with_their_digests(http: httpx.AsyncClient) -> None:
    face = image(12, 12)
    await upload(http, face)
    listed = (await http.get("/_emulator/uploads?vendor=fal")).json()
    import hashlib

    assert listed["fal"]["count"] == 1
    assert listed["fal"]["uploads"][0]["sha256"] == hashlib.sha256(face).hexdigest()
    assert json.dumps(listed).count("sha256") == 1

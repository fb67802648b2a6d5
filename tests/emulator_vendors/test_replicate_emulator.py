"""Replicate's predictions API in the emulator, exercised with requests built from Replicate's documentation.

Timelines that would take seconds (a ``Cancel-After`` deadline, the one-hour retention) run on a fake
clock (the module's ``_now``, replaced); ``Prefer: wait`` and polling run on real (short) time.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from vendors_support import Emulated, image_bytes, pixel_size

from ideochar_replicate import emulator as replicate_emulator
from ideochar_replicate.emulator import MARKER_NSFW, NSFW_ERROR

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer r8_account_one"}
CREATE = "/replicate/v1/models/ideogram-ai/ideogram-character/predictions"
REF = image_bytes(40, 40, "PNG", "blue")
REF_URI = "data:image/png;base64," + base64.b64encode(REF).decode()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emu() -> Emulated:
    return Emulated.start("replicate")


@pytest.fixture
async def client(emu: Emulated) -> AsyncIterator[httpx.AsyncClient]:
    async with emu.client() as c:
        yield c


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(replicate_emulator, "_now", fake)
    return fake


@pytest.fixture
def timed_emu(clock: Clock) -> Emulated:
    """An emulator whose Replicate predictions run on the fake clock."""
    return Emulated.start("replicate")


@pytest.fixture
async def timed(timed_emu: Emulated) -> AsyncIterator[httpx.AsyncClient]:
    async with timed_emu.client() as c:
        yield c


async def create(client: httpx.AsyncClient, headers: dict[str, str] | None = None, /, **input: Any) -> httpx.Response:
    body = {"input": {"prompt": "a knight", "character_reference_image": REF_URI, **input}}
    return await client.post(CREATE, json=body, headers={**AUTH, **(headers or {})})


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status and isinstance(body["detail"], str)
    for word in words:
        assert word in body["detail"]
    return body


async def poll(client: httpx.AsyncClient, url: str, until: set[str], seen: list[str] | None = None) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = (await client.get(url, headers=AUTH)).json()
        if seen is not None:
            seen.append(body["status"])
        if body["status"] in until:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError("prediction never reached " + ", ".join(until))


# -- creating and running -------------------------------------------------------------------------


async def test_create_without_prefer_answers_201_starting_at_once(client: httpx.AsyncClient, emu: Emulated) -> None:
    response = await create(client)
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "starting" and body["output"] is None and body["error"] is None
    assert body["model"] == "ideogram-ai/ideogram-character"
    assert set(body) >= {"id", "version", "input", "logs", "created_at", "started_at", "completed_at", "urls"}
    assert body["urls"]["get"] == f"http://emulator.test/replicate/v1/predictions/{body['id']}"
    assert body["urls"]["cancel"] == body["urls"]["get"] + "/cancel"
    assert response.headers["location"] == body["urls"]["get"]
    assert [(e.operation, e.images, e.cost_usd) for e in emu.ledger()] == [("generate", 1, Decimal("0.15"))]


async def test_prefer_wait_returns_the_finished_prediction(client: httpx.AsyncClient, emu: Emulated) -> None:
    response = await create(client, {"Prefer": "wait"}, seed=99, resolution="832x1248", rendering_speed="Turbo")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "succeeded" and body["completed_at"] and body["started_at"]
    assert isinstance(body["output"], str)
    assert "Using seed: 99" in body["logs"]
    assert "predict_time" in body["metrics"]
    image = await client.get(body["output"])
    assert pixel_size(image.content) == (832, 1248)
    assert emu.renders[0]["reference"] == REF
    assert [e.cost_usd for e in emu.ledger()] == [Decimal("0.10")]


async def test_polling_goes_from_starting_through_processing_to_succeeded(
    client: httpx.AsyncClient, emu: Emulated
) -> None:
    emu.kit.model_seconds = 0.4
    created = (await create(client, aspect_ratio="16:9", rendering_speed="Quality")).json()
    seen: list[str] = []
    done = await poll(client, created["urls"]["get"], {"succeeded"}, seen)
    assert "processing" in seen and seen[-1] == "succeeded"
    assert seen.index("processing") < seen.index("succeeded")
    width, height = pixel_size((await client.get(done["output"])).content)
    assert abs(width / height - 16 / 9) < 0.02
    assert [e.cost_usd for e in emu.ledger()] == [Decimal("0.20")]


async def test_prefer_wait_gives_up_after_n_seconds_with_202(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.kit.model_seconds = 30
    response = await create(client, {"Prefer": "wait=1"})
    assert response.status_code == 202
    assert response.json()["status"] in {"starting", "processing"}


@pytest.mark.parametrize("prefer", ["wait=0", "wait=61", "wait=soon"])
async def test_malformed_prefer_wait_is_refused(client: httpx.AsyncClient, emu: Emulated, prefer: str) -> None:
    assert_problem(await create(client, {"Prefer": prefer}), 400, "wait")
    assert emu.ledger() == []


async def test_cancel_stops_a_running_prediction(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.kit.model_seconds = 30
    created = (await create(client)).json()
    canceled = await client.post(created["urls"]["cancel"], headers=AUTH)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    again = (await client.get(created["urls"]["get"], headers=AUTH)).json()
    assert again["status"] == "canceled" and again["output"] is None and again["completed_at"]
    assert len(emu.ledger()) == 1


async def test_canceling_before_it_started_is_not_billed(timed: httpx.AsyncClient, timed_emu: Emulated) -> None:
    timed_emu.kit.model_seconds = 30  # starting for 6 s
    created = (await create(timed)).json()
    assert (await timed.post(created["urls"]["cancel"], headers=AUTH)).json()["status"] == "canceled"
    assert timed_emu.billed() == [] and len(timed_emu.ledger()) == 1


async def test_canceling_while_it_runs_stays_billed(
    timed: httpx.AsyncClient, timed_emu: Emulated, clock: Clock
) -> None:
    timed_emu.kit.model_seconds = 30
    created = (await create(timed)).json()
    clock.now += 10
    assert (await timed.post(created["urls"]["cancel"], headers=AUTH)).json()["status"] == "canceled"
    assert len(timed_emu.billed()) == 1


async def test_cancel_after_a_finished_prediction_changes_nothing(client: httpx.AsyncClient) -> None:
    done = (await create(client, {"Prefer": "wait"})).json()
    after = (await client.post(done["urls"]["cancel"], headers=AUTH)).json()
    assert after["status"] == "succeeded" and after["output"] == done["output"]


async def test_cancel_after_deadline_before_start_aborts_and_is_not_billed(
    timed: httpx.AsyncClient, timed_emu: Emulated, clock: Clock
) -> None:
    timed_emu.kit.model_seconds = 100  # starting for the first 20 s
    created = (await create(timed, {"Cancel-After": "5s"})).json()
    assert created["deadline"]
    clock.now += 4
    assert (await timed.get(created["urls"]["get"], headers=AUTH)).json()["status"] == "starting"
    clock.now += 2
    aborted = (await timed.get(created["urls"]["get"], headers=AUTH)).json()
    assert aborted["status"] == "aborted" and aborted["started_at"] is None
    assert timed_emu.billed() == []
    [entry] = timed_emu.ledger()
    assert entry.voided is not None and "aborted" in entry.voided


async def test_cancel_after_deadline_while_running_cancels(
    timed: httpx.AsyncClient, timed_emu: Emulated, clock: Clock
) -> None:
    timed_emu.kit.model_seconds = 90  # starts after 18 s, would finish at 90 s
    created = (await create(timed, {"Cancel-After": "1m"})).json()
    clock.now += 30
    assert (await timed.get(created["urls"]["get"], headers=AUTH)).json()["status"] == "processing"
    clock.now += 31
    assert (await timed.get(created["urls"]["get"], headers=AUTH)).json()["status"] == "canceled"
    assert len(timed_emu.ledger()) == 1


@pytest.mark.parametrize("value", ["2s", "soon", "5x"])
async def test_cancel_after_below_5s_or_malformed_is_refused(client: httpx.AsyncClient, value: str) -> None:
    assert_problem(await create(client, {"Cancel-After": value}), 400, "Cancel-After")


async def test_outputs_and_inputs_are_removed_after_an_hour(timed: httpx.AsyncClient, clock: Clock) -> None:
    done = (await create(timed, {"Prefer": "wait"})).json()
    assert done["output"]
    clock.now += 3601
    later = (await timed.get(done["urls"]["get"], headers=AUTH)).json()
    assert later["data_removed"] is True and later["output"] is None and later["input"] == {}


# -- files ----------------------------------------------------------------------------------------


async def test_uploaded_file_url_is_usable_as_the_reference(client: httpx.AsyncClient, emu: Emulated) -> None:
    jpeg = image_bytes(30, 50, "JPEG", "yellow")
    upload = await client.post("/replicate/v1/files", files={"content": ("me.jpg", jpeg, "image/jpeg")}, headers=AUTH)
    assert upload.status_code == 201, upload.text
    file = upload.json()
    assert file["size"] == len(jpeg) and file["content_type"] == "image/jpeg" and file["checksums"]["sha256"]
    fetched = await client.get(file["urls"]["get"], headers=AUTH)
    assert fetched.status_code == 200 and fetched.json()["id"] == file["id"]
    done = (await create(client, {"Prefer": "wait"}, character_reference_image=file["urls"]["get"])).json()
    assert done["status"] == "succeeded"
    assert emu.renders[-1]["reference"] == jpeg
    assert "not fetched" not in done["logs"]


async def test_an_earlier_output_url_is_usable_as_input(client: httpx.AsyncClient, emu: Emulated) -> None:
    first = (await create(client, {"Prefer": "wait"})).json()
    await create(client, {"Prefer": "wait"}, character_reference_image=first["output"])
    assert emu.renders[-1]["reference"] == (await client.get(first["output"])).content


async def test_a_foreign_url_is_not_fetched_and_the_logs_say_so(client: httpx.AsyncClient, emu: Emulated) -> None:
    done = (await create(client, {"Prefer": "wait"}, character_reference_image="https://example.com/me.png")).json()
    assert done["status"] == "succeeded"
    assert "not fetched" in done["logs"]
    assert emu.renders[-1]["reference"] == b""


async def test_file_upload_needs_a_content_part(client: httpx.AsyncClient) -> None:
    response = await client.post("/replicate/v1/files", files={"data": ("a.png", REF, "image/png")}, headers=AUTH)
    assert_problem(response, 400)


# -- inpainting -----------------------------------------------------------------------------------


async def test_image_and_mask_render_an_inpainting_at_the_image_size(client: httpx.AsyncClient, emu: Emulated) -> None:
    image = "data:image/png;base64," + base64.b64encode(image_bytes(120, 90)).decode()
    mask = "data:image/png;base64," + base64.b64encode(image_bytes(60, 45, "PNG", 0, mode="L")).decode()
    done = (await create(client, {"Prefer": "wait"}, image=image, mask=mask, aspect_ratio="9:16")).json()
    assert pixel_size((await client.get(done["output"])).content) == (120, 90)
    assert emu.renders[-1]["mask"] is not None
    assert [e.operation for e in emu.ledger()] == ["edit"]


@pytest.mark.parametrize("field", ["image", "mask"])
async def test_image_and_mask_go_together(client: httpx.AsyncClient, emu: Emulated, field: str) -> None:
    body = assert_problem(await create(client, **{field: REF_URI}), 422, "image and mask")
    assert body["title"] == "Input validation failed"
    assert emu.ledger() == []


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input", "field", "words"),
    [
        ({"rendering_speed": "turbo"}, "input.rendering_speed", '"Default", "Turbo", "Quality"'),
        ({"rendering_speed": "TURBO"}, "input.rendering_speed", "must be one of"),
        ({"style_type": "REALISTIC"}, "input.style_type", "must be one of"),
        ({"magic_prompt_option": "on"}, "input.magic_prompt_option", "must be one of"),
        ({"aspect_ratio": "16x9"}, "input.aspect_ratio", "must be one of"),
        ({"resolution": "1000x1000"}, "input.resolution", "must be one of"),
        ({"seed": 2147483648}, "input.seed", "less than or equal to 2147483647"),
        ({"seed": "7"}, "input.seed", "Expected: integer, given: string"),
        ({"magic_prompt": "On"}, "input", "Additional property magic_prompt is not allowed"),
        ({"character_reference_image": "me.png"}, "input.character_reference_image", "format 'uri'"),
        (
            {"character_reference_image": "data:image/png;base64," + base64.b64encode(REF[: len(REF) // 2]).decode()},
            "input.character_reference_image",
            "JPEG, PNG or WebP",
        ),
        (
            {
                "character_reference_image": "data:image/gif;base64,"
                + base64.b64encode(image_bytes(4, 4, "GIF")).decode()
            },
            "input.character_reference_image",
            "JPEG, PNG or WebP",
        ),
    ],
)
async def test_invalid_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, emu: Emulated, input: dict[str, Any], field: str, words: str
) -> None:
    body = assert_problem(await create(client, **input), 422, field, words)
    assert body["title"] == "Input validation failed"
    assert any(f["field"] == field for f in body["invalid_fields"])
    assert emu.ledger() == []


async def test_missing_required_inputs_are_all_listed(client: httpx.AsyncClient) -> None:
    response = await client.post(CREATE, json={"input": {"seed": 1}}, headers=AUTH)
    body = assert_problem(response, 422, "prompt is required", "character_reference_image is required")
    assert len(body["invalid_fields"]) == 2


async def test_unknown_top_level_fields_are_refused(client: httpx.AsyncClient) -> None:
    body = {"version": "abc", "input": {"prompt": "x", "character_reference_image": REF_URI}}
    assert_problem(await client.post(CREATE, json=body, headers=AUTH), 422, "Additional property version")


async def test_a_body_without_input_is_refused(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post(CREATE, json={"prompt": "x"}, headers=AUTH), 422, "input is required")


async def test_non_json_content_type_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(CREATE, content=b'{"input": {}}', headers={**AUTH, "Content-Type": "text/plain"})
    assert_problem(response, 415)


async def test_other_models_are_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/replicate/v1/models/black-forest-labs/flux-schnell/predictions", json={"input": {"prompt": "x"}}, headers=AUTH
    )
    assert_problem(response, 404)


# -- auth and ownership ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Api-Key": "r8_x"},
        {"Authorization": "Bearer invalid-token"},
        {"Authorization": "r8_account_one"},
        {"Authorization": "Key r8_x"},
    ],
)
async def test_missing_or_bad_token_is_401(client: httpx.AsyncClient, emu: Emulated, headers: dict[str, str]) -> None:
    body = {"input": {"prompt": "x", "character_reference_image": REF_URI}}
    problem = assert_problem(await client.post(CREATE, json=body, headers=headers), 401, "authentication token")
    assert problem["title"] == "Unauthenticated"
    assert emu.ledger() == []


async def test_token_scheme_is_accepted_as_in_replicates_examples(client: httpx.AsyncClient) -> None:
    response = await create(client, {"Authorization": "Token r8_account_one"})
    assert response.status_code == 201


async def test_another_accounts_prediction_is_not_found(client: httpx.AsyncClient) -> None:
    created = (await create(client)).json()
    other = await client.get(created["urls"]["get"], headers={"Authorization": "Bearer r8_someone_else"})
    assert_problem(other, 404)
    assert_problem(await client.get("/replicate/v1/predictions/doesnotexist", headers=AUTH), 404)


# -- safety simulation and faults -----------------------------------------------------------------


async def test_nsfw_marker_fails_the_prediction_like_replicate(client: httpx.AsyncClient, emu: Emulated) -> None:
    done = (await create(client, {"Prefer": "wait"}, prompt=f"a knight {MARKER_NSFW}")).json()
    assert done["status"] == "failed" and done["output"] is None
    assert done["error"] == NSFW_ERROR
    assert emu.billed() == [] and len(emu.ledger()) == 1


async def test_rate_limit_fault_has_replicates_body_and_retry_after(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.faults({"route": "create", "kind": "rate_limit", "retry_after": 30})
    response = await create(client)
    assert response.status_code == 429 and response.headers["retry-after"] == "30"
    assert response.json() == {"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429}
    assert emu.ledger() == []


async def test_faults_apply_to_polling_by_route_name(client: httpx.AsyncClient, emu: Emulated) -> None:
    created = (await create(client)).json()
    emu.faults({"route": "get", "kind": "status", "status": 503})
    assert_problem(await client.get(created["urls"]["get"], headers=AUTH), 503)
    assert (await client.get(created["urls"]["get"], headers=AUTH)).status_code == 200


async def test_stuck_prediction_stays_processing_until_canceled(
    timed: httpx.AsyncClient, timed_emu: Emulated, clock: Clock
) -> None:
    timed_emu.faults({"route": "create", "kind": "stuck"})
    created = (await create(timed)).json()
    clock.now += 600
    assert (await timed.get(created["urls"]["get"], headers=AUTH)).json()["status"] == "processing"
    assert (await timed.post(created["urls"]["cancel"], headers=AUTH)).json()["status"] == "canceled"


async def test_dropped_create_is_billed_and_unanswered(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.faults({"route": "create", "kind": "drop_after_admit"})
    with pytest.raises(httpx.RemoteProtocolError):
        await create(client)
    assert len(emu.ledger()) == 1


async def test_a_request_without_a_host_header_is_refused(client: httpx.AsyncClient, emu: Emulated) -> None:
    raw = httpx.Request(
        "POST",
        "http://emulator.test" + CREATE,
        stream=httpx.ByteStream(b'{"input": {}}'),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert "host" not in raw.headers
    assert_problem(await client.send(raw), 400, "Host")
    assert emu.ledger() == []


async def test_a_lost_create_answer_can_be_found_in_the_accounts_list(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.faults({"route": "create", "kind": "drop_after_admit"})
    with pytest.raises(httpx.RemoteProtocolError):
        await create(client, prompt="the lost one")
    await create(client, {"Authorization": "Bearer r8_someone_else"})
    listed = (await client.get("/replicate/v1/predictions", headers=AUTH)).json()
    assert [p["input"]["prompt"] for p in listed["results"]] == ["the lost one"]
    assert listed["results"][0]["id"] == emu.ledger()[0].job_id


# -- the list of predictions ----------------------------------------------------------------------------------

LIST = "/replicate/v1/predictions"


async def _walk(client: httpx.AsyncClient, url: str, key: str = "next") -> list[dict[str, Any]]:
    """Every page from ``url`` on, following ``next`` (or ``previous``)."""
    pages = []
    next_url: str | None = url
    while next_url:
        response = await client.get(next_url, headers=AUTH)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        next_url = pages[-1][key]
    return pages


async def test_the_list_pages_newest_first_with_next_and_previous_cursors(
    timed: httpx.AsyncClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replicate_emulator, "LIST_PAGE_SIZE", 2)
    made = []
    for i in range(5):
        made.append((await create(timed, prompt=f"knight {i}")).json()["id"])
        clock.now += 1 if i != 2 else 0  # two share a creation time: the id orders them
    pages = await _walk(timed, LIST)
    assert [len(p["results"]) for p in pages] == [2, 2, 1]
    listed = [item["id"] for p in pages for item in p["results"]]
    assert sorted(listed) == sorted(made) and len(set(listed)) == 5
    times = [item["created_at"] for p in pages for item in p["results"]]
    assert times == sorted(times, reverse=True)
    assert pages[0]["previous"] is None and pages[-1]["next"] is None
    assert pages[1]["next"].startswith("http://emulator.test/replicate/v1/predictions?cursor=")
    back = (await timed.get(pages[1]["previous"], headers=AUTH)).json()
    assert [item["id"] for item in back["results"]] == [item["id"] for item in pages[0]["results"]]


async def test_a_cursor_is_a_boundary_so_new_predictions_shift_nothing(
    timed: httpx.AsyncClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replicate_emulator, "LIST_PAGE_SIZE", 2)
    for i in range(4):
        await create(timed, prompt=f"knight {i}")
        clock.now += 1
    first = (await timed.get(LIST, headers=AUTH)).json()
    await create(timed, prompt="a newcomer")
    second = (await timed.get(first["next"], headers=AUTH)).json()
    assert [item["input"]["prompt"] for item in second["results"]] == ["knight 1", "knight 0"]


async def test_created_after_and_before_bound_the_list_and_stay_on_the_next_page(
    timed: httpx.AsyncClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replicate_emulator, "LIST_PAGE_SIZE", 1)
    start = clock.now
    for i in range(4):
        await create(timed, prompt=f"knight {i}")
        clock.now += 10
    after = datetime.fromtimestamp(start + 10, timezone.utc).isoformat().replace("+00:00", "Z")
    before = datetime.fromtimestamp(start + 30, timezone.utc).isoformat().replace("+00:00", "Z")
    pages = await _walk(timed, f"{LIST}?{urlencode({'created_after': after, 'created_before': before})}")
    assert [p["results"][0]["input"]["prompt"] for p in pages] == ["knight 2", "knight 1"]
    assert "created_after=" in pages[0]["next"]


async def test_the_list_holds_only_the_tokens_predictions_with_their_input_as_received(
    client: httpx.AsyncClient,
) -> None:
    await create(client, {"Authorization": "Bearer r8_someone_else"}, prompt="not mine")
    mine = (await create(client, seed=5)).json()
    listed = (await client.get(LIST, headers=AUTH)).json()["results"]
    assert [item["id"] for item in listed] == [mine["id"]]
    assert listed[0]["input"] == {"prompt": "a knight", "character_reference_image": REF_URI, "seed": 5}


@pytest.mark.parametrize("query", ["cursor=bm90LWpzb24", "created_after=yesterday"])
async def test_a_malformed_cursor_or_time_is_refused(client: httpx.AsyncClient, query: str) -> None:
    assert_problem(await client.get(f"{LIST}?{query}", headers=AUTH), 400)


async def test_faults_apply_to_the_list_by_its_route_name(client: httpx.AsyncClient, emu: Emulated) -> None:
    emu.faults({"route": "list", "kind": "status", "status": 503})
    assert_problem(await client.get(LIST, headers=AUTH), 503)
    assert (await client.get(LIST, headers=AUTH)).status_code == 200

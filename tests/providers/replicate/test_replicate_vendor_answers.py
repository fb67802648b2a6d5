"""Replicate's answers are not trusted: a key echoed back is redacted before anything is cut, 300
outputs for one prediction cost one download, the token goes only to the configured origin, and a
malformed field never loses the prediction id (docs/security.md, "Vendor answers")."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from replicate_fakes import DRIVERS, OUTPUT_URL, PREDICTION_ID, TOKEN, Driver, FakeReplicate, context, prediction, run

import ideochar.toolkit
from echoed_keys import error_fragments, straddling
from ideochar.errors import ProviderError, UnexpectedResponse
from ideochar.events import Event
from ideochar.request import CharacterRequest
from ideochar.toolkit import PollSchedule
from ideochar_replicate import provider as provider_module
from ideochar_replicate.provider import ReplicateProvider

REF_URL = "https://example.com/face.png"


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _no_poll_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provider_module, "POLL_SCHEDULE", PollSchedule(0.0, 0.0, failures=2))
    monkeypatch.setattr(ideochar.toolkit, "backoff_seconds", lambda failures: 0.0)


def generate(fake: FakeReplicate, driver: Driver, events: list[Event] | None = None, **fields: Any) -> Any:
    request = CharacterRequest(prompt="a knight", reference=fields.pop("reference", REF_URL), **fields)
    return run(driver, ReplicateProvider().exchange(request, context()), fake, events)


def fail(fake: FakeReplicate, driver: Driver, **fields: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        generate(fake, driver, **fields)
    return caught.value


# -- a key echoed back ------------------------------------------------------------------------------------

_TEXT = {"content-type": "text/plain"}


@pytest.mark.parametrize(
    "fake",
    [
        lambda: FakeReplicate(create=httpx.Response(401, text=straddling(key=TOKEN), headers=_TEXT)),
        lambda: FakeReplicate(create=httpx.Response(422, json={"title": "Invalid", "detail": straddling(key=TOKEN)})),
        lambda: FakeReplicate(
            create=httpx.Response(201, json=prediction("processing")),
            polls=[httpx.Response(200, text=straddling(key=TOKEN), headers=_TEXT)],
        ),
        lambda: FakeReplicate(
            create=httpx.Response(201, json=prediction("processing")),
            polls=[httpx.Response(503, text=f"<html><title>{straddling(key=TOKEN)}</title></html>")],
        ),
    ],
    ids=["create-text", "create-problem", "poll-unreadable", "poll-html"],
)
def test_a_key_echoed_by_replicate_is_redacted_before_it_is_cut(driver: Driver, fake: Any) -> None:
    assert error_fragments(fail(fake(), driver), key=TOKEN) == []


def test_a_key_echoed_in_an_upload_answer_is_redacted_before_it_is_cut(driver: Driver) -> None:
    from replicate_fakes import noisy_png

    fake = FakeReplicate(upload=httpx.Response(201, text=straddling(key=TOKEN), headers=_TEXT))
    error = fail(fake, driver, reference=noisy_png(1_100_000))
    assert isinstance(error, UnexpectedResponse) and error_fragments(error, key=TOKEN) == []


# -- outputs ----------------------------------------------------------------------------------------------


def test_300_outputs_for_one_prediction_cost_one_download(driver: Driver) -> None:
    outputs = [f"https://replicate.delivery/xezq/abc123/out-{i}.png" for i in range(300)]
    fake = FakeReplicate(create=httpx.Response(201, json=prediction("succeeded", output=outputs)))
    output = generate(fake, driver)
    assert len(fake.sent("GET")) == 1 and len(output.images) == 1
    assert any("300" in w.message and w.field == "num_images" for w in output.warnings)


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("https://api.replicate.com/v1/files/out.png", True),
        ("HTTPS://API.Replicate.com:443/v1/files/out.png", True),
        ("https://api.replicate.com:8443/v1/files/out.png", False),
        ("http://api.replicate.com/v1/files/out.png", False),
        ("https://api.replicate.com@replicate.delivery/out.png", False),
        (OUTPUT_URL, False),
    ],
)
def test_the_token_goes_with_a_download_only_to_the_configured_origin(driver: Driver, url: str, token: bool) -> None:
    seen: list[httpx.Request] = []
    fake = FakeReplicate(create=httpx.Response(201, json=prediction("succeeded", output=url)))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(".png") and request.method == "GET":
            seen.append(request)
            return httpx.Response(200, content=fake.image, headers={"content-type": "image/png"})
        return fake(request)

    run(driver, ReplicateProvider().exchange(CharacterRequest(prompt="p", reference=REF_URL), context()), handler)
    assert [f"Bearer {TOKEN}" == r.headers.get("authorization") for r in seen] == [token]


def test_a_seed_beyond_the_journal_in_the_logs_is_dropped(driver: Driver) -> None:
    logs = "Using seed: 99999999999999999999999\n"
    fake = FakeReplicate(create=httpx.Response(201, json=prediction("succeeded", logs=logs)))
    assert generate(fake, driver).images[0].seed is None


@pytest.mark.parametrize(
    "bad",
    [
        {"logs": 5},
        {"metrics": [1, 2]},
        {"urls": "nowhere"},
        {"data_removed": "maybe"},
        {"created_at": {"at": 1}},
        {"input": ["a"]},
        {"metrics": {"predict_time": "1e999"}},
    ],
    ids=["logs", "metrics", "urls", "data_removed", "created_at", "input", "infinite-time"],
)
def test_a_malformed_field_never_loses_the_prediction_id(driver: Driver, bad: dict[str, Any]) -> None:
    events: list[Event] = []
    body = json.dumps(prediction("succeeded", **bad)).replace('"1e999"', "1e999")  # JSON's way to say infinity
    fake = FakeReplicate(create=httpx.Response(201, content=body, headers={"content-type": "application/json"}))
    output = generate(fake, driver, events)
    assert [e.vendor_request_id for e in events if e.kind == "submitted"] == [PREDICTION_ID]
    assert output.vendor_request_id == PREDICTION_ID and len(output.images) == 1
    assert "predict_time_seconds" not in output.metadata or output.metadata["predict_time_seconds"] == 14.48

"""Lost create answers: the shortest window, the create's marker, and finding a prediction in the list.

Replicate's list of predictions is scripted (``FakeReplicate.listing``) so each rule of the search is
pinned: the time window and its clock-skew margin, the matching rule, pagination, retries, and never
guessing between two candidates. The same paths against the emulator are in
tests/emulator_vendors/test_replicate_lost_creates.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from replicate_fakes import (
    API,
    DRIVERS,
    OUTPUT_URL,
    PREDICTION_ID,
    TOKEN,
    Driver,
    FakeReplicate,
    context,
    page,
    png_bytes,
    prediction,
    run,
)

import ideochar.toolkit
from conftest import CANARY_KEY
from ideochar._secrets import Secret
from ideochar.errors import AuthenticationFailed, OutcomeUnknown, ProviderUnavailable
from ideochar.events import Event
from ideochar.exchange import Send, Sleep
from ideochar.request import CharacterRequest, Edit
from ideochar.spec import CallContext
from ideochar.toolkit import PollSchedule
from ideochar_replicate import provider as provider_module
from ideochar_replicate import reconcile
from ideochar_replicate.mapping import ReplicateOptions, create_body
from ideochar_replicate.provider import CREATE_ANSWER_MARGIN_SECONDS, POLL_FAILURES_TOLERATED, ReplicateProvider
from ideochar_replicate.reconcile import CLOCK_SKEW_SECONDS, create_marker, input_matches, parse_time

REF_URL = "https://example.com/face.png"
OTHER_ID = "b7k2m9d5xhrj00cs0v8t2zzzzz"


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedules are pinned by their own tests below; elsewhere they only slow the suite down."""
    monkeypatch.setattr(provider_module, "POLL_SCHEDULE", PollSchedule(0.0, 0.0, failures=POLL_FAILURES_TOLERATED))
    monkeypatch.setattr(ideochar.toolkit, "backoff_seconds", lambda failures: 0.0)
    monkeypatch.setattr(reconcile, "LOST_ANSWER_LOOKS_SECONDS", (0.0, 0.0))


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _request(**fields: Any) -> CharacterRequest:
    return CharacterRequest(prompt=fields.pop("prompt", "a knight in the rain"), reference=REF_URL, **fields)


def _echo(
    fake: FakeReplicate, prediction_id: str = PREDICTION_ID, *, age: float = 0.0, **changes: Any
) -> dict[str, Any]:
    """The prediction the lost create made, as the list shows it: its input echoed as sent [I]."""
    sent = {**fake.create_body()["input"], **changes}
    return prediction("starting", prediction_id, input=sent, created_at=_iso(time.time() - age))


def _fresh(build: Callable[[], httpx.Response]) -> Callable[[httpx.Request], httpx.Response]:
    """An answer built anew for each request: an ``httpx.Response`` is read once, by one kind of client."""
    return lambda request: build()


def _lost(fake: FakeReplicate, driver: Driver, events: list[Event] | None = None, **fields: Any) -> Any:
    return run(driver, ReplicateProvider().exchange(_request(**fields), context()), fake, events)


# -- the shortest window ---------------------------------------------------------------------------------


def test_default_create_is_not_held_and_the_id_is_reported_before_anything_else(driver: Driver) -> None:
    fake = FakeReplicate(
        create=httpx.Response(201, json=prediction("starting")),
        polls=[httpx.Response(200, json=prediction("succeeded"))],
    )
    events: list[Event] = []
    requests_at_submit: list[int] = []
    run(
        driver,
        ReplicateProvider().exchange(_request(), context()),
        fake,
        _Recorder(events, lambda: requests_at_submit.append(len(fake.requests))),
    )
    (create,) = fake.creates
    assert "prefer" not in create.headers
    assert events[0].kind == "submitted" and events[0].vendor_request_id == PREDICTION_ID
    assert requests_at_submit == [1]  # the id was out before the first poll


def test_the_create_waits_only_for_its_answer_unless_a_hold_is_asked_for() -> None:
    step = next(ReplicateProvider().exchange(_request(), context()))
    assert isinstance(step, Send) and step.timeout == CREATE_ANSWER_MARGIN_SECONDS
    held = next(ReplicateProvider().exchange(_request(), context(wait=30)))
    assert isinstance(held, Send) and held.request.headers["prefer"] == "wait=30"
    assert held.timeout == 30 + CREATE_ANSWER_MARGIN_SECONDS


class _Recorder(list[Event]):
    """Collects events and calls ``on_submitted`` the moment a ``submitted`` event arrives."""

    def __init__(self, events: list[Event], on_submitted: Callable[[], None]) -> None:
        super().__init__()
        self.events, self.on_submitted = events, on_submitted

    def append(self, event: Event) -> None:
        if event.kind == "submitted":
            self.on_submitted()
        self.events.append(event)


# -- the marker --------------------------------------------------------------------------------------------


def _first_send(request: CharacterRequest, ctx: CallContext) -> Send:
    step = next(ReplicateProvider().exchange(request, ctx))
    assert isinstance(step, Send) and step.admits
    return step


def test_the_marker_identifies_the_prediction_and_holds_no_key_and_no_image_bytes() -> None:
    image = png_bytes(40, 40, "green")
    ctx = CallContext(
        provider="replicate",
        credentials=Secret(CANARY_KEY),
        base_urls=dict(ReplicateProvider.info.base_urls),
        options=ReplicateOptions(),
    )
    request = CharacterRequest(prompt="a knight", reference=image, seed=7, style="fiction")
    step = _first_send(request, ctx)
    sent = json.loads(step.request.content)["input"]
    data_uri = sent["character_reference_image"]

    assert step.marker == {
        "v": 1,
        "model": "ideogram-ai/ideogram-character",
        "input": {
            "prompt": "a knight",
            "rendering_speed": "Default",
            "style_type": "Fiction",
            "magic_prompt_option": "Auto",
            "aspect_ratio": "1:1",
            "seed": 7,
        },
        "images": {
            "character_reference_image": {
                "kind": "data_uri",
                "sha256": hashlib.sha256(data_uri.encode()).hexdigest(),
                "chars": len(data_uri),
            }
        },
    }
    text = json.dumps(step.marker)  # JSON-safe, as the journal stores it
    for needle in (CANARY_KEY, CANARY_KEY.rsplit("-", 1)[-1], base64.b64encode(image).decode()[:40], "data:"):
        assert needle not in text


def test_a_signed_image_url_is_kept_as_a_digest_only() -> None:
    signed = "https://bucket.example.com/face.png?X-Amz-Signature=5ecret5ignature"
    step = _first_send(CharacterRequest(prompt="p", reference=signed), context())
    assert step.marker is not None
    assert "5ecret5ignature" not in json.dumps(step.marker)
    assert step.marker["images"]["character_reference_image"]["kind"] == "url"
    assert isinstance(step.marker["input"]["seed"], int)  # drawn: no two creates look alike in the list


# -- the lost-answer path ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss",
    [
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ReadTimeout("timed out"),
        _fresh(lambda: httpx.Response(504, text="")),
        _fresh(lambda: httpx.Response(201, text="<html>")),
    ],
    ids=["dropped", "timeout", "gateway-504", "unreadable"],
)
def test_a_lost_create_answer_is_found_in_the_list_and_followed_to_the_image(driver: Driver, loss: Any) -> None:
    fake = FakeReplicate(create=loss, polls=[httpx.Response(200, json=prediction("succeeded"))])
    fake.listing = [lambda request: page(_echo(fake))]
    events: list[Event] = []
    output = _lost(fake, driver, events)

    assert len(fake.creates) == 1
    assert output.vendor_request_id == PREDICTION_ID and len(output.images) == 1
    submitted = [e for e in events if e.kind == "submitted"]
    assert submitted[0].vendor_request_id == PREDICTION_ID
    assert submitted[0].resume == {
        "id": PREDICTION_ID,
        "get_url": f"{API}/v1/predictions/{PREDICTION_ID}",
        "cancel_url": f"{API}/v1/predictions/{PREDICTION_ID}/cancel",
    }
    # The listed prediction is read again by its id before its output is trusted.
    assert [r.url.path for r in fake.sent("GET") if r.url.host == "api.replicate.com"][-1].endswith(PREDICTION_ID)
    assert str(fake.sent("GET")[-1].url) == OUTPUT_URL


def test_two_matching_predictions_are_never_guessed_between(driver: Driver) -> None:
    fake = FakeReplicate(create=httpx.RemoteProtocolError("dropped"))
    fake.listing = [lambda request: page(_echo(fake, OTHER_ID), _echo(fake, PREDICTION_ID, age=1))]
    events: list[Event] = []
    with pytest.raises(OutcomeUnknown) as caught:
        _lost(fake, driver, events)
    message = str(caught.value)
    assert OTHER_ID in message and PREDICTION_ID in message
    assert caught.value.body == {"candidates": [OTHER_ID, PREDICTION_ID]}
    assert len(fake.creates) == 1 and [e for e in events if e.kind == "submitted"] == []
    assert [r for r in fake.sent("GET") if r.url.path.startswith("/v1/predictions/")] == []


def test_a_lost_answer_the_list_does_not_show_stays_outcome_unknown(driver: Driver) -> None:
    fake = FakeReplicate(create=httpx.RemoteProtocolError("dropped"))
    fake.listing = [lambda request: page(_echo(fake, OTHER_ID, prompt="someone else's knight"))]
    with pytest.raises(OutcomeUnknown) as caught:
        _lost(fake, driver)
    assert "did not show it" in str(caught.value)
    assert len(fake.creates) == 1


def test_a_list_that_cannot_be_read_leaves_the_lost_answer_outcome_unknown(driver: Driver) -> None:
    fake = FakeReplicate(create=httpx.RemoteProtocolError("dropped"))
    fake.listing = [lambda request: httpx.Response(401, json={"title": "Unauthenticated", "status": 401})]
    with pytest.raises(OutcomeUnknown) as caught:
        _lost(fake, driver)
    assert "list of predictions failed" in str(caught.value) and "HTTP 401" in str(caught.value)
    assert len(fake.creates) == 1 and len(fake.lists) == 1  # a refusal is not repeated


def _answer_looks_with_empty_pages(flow: Any, step: Any, sleeps: list[float]) -> None:
    """Drive the lost-answer path by hand, noting its waits, until it raises."""
    while True:
        if isinstance(step, Sleep):
            sleeps.append(step.seconds)
            step = flow.send(None)
        else:
            assert isinstance(step, Send) and step.request.url.path == "/v1/predictions"
            step = flow.send(httpx.Response(200, json={"next": None, "results": []}, request=step.request))


def test_after_a_lost_answer_the_list_is_looked_at_on_a_short_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    flow = ReplicateProvider().exchange(_request(), context())
    step = next(flow)
    assert isinstance(step, Send) and step.admits
    sleeps: list[float] = []
    with pytest.raises(OutcomeUnknown):
        _answer_looks_with_empty_pages(flow, flow.throw(OutcomeUnknown("the answer was lost")), sleeps)
    assert sleeps == list(reconcile.LOST_ANSWER_LOOKS_SECONDS[1:])
    assert sum(sleeps) <= 10  # seconds, not minutes


# -- reconcile: the window, the rule, the pages ------------------------------------------------------------


def _marker(**fields: Any) -> dict[str, Any]:
    request = _request(seed=fields.pop("seed", 42), **fields)
    return create_marker(create_body(request, {"character_reference_image": REF_URL}, ReplicateOptions()))


def _listed(marker: dict[str, Any], prediction_id: str = PREDICTION_ID, *, at: float, **changes: Any) -> dict[str, Any]:
    sent = {**marker["input"], "character_reference_image": REF_URL, **changes}
    return prediction("processing", prediction_id, input=sent, created_at=_iso(at))


def _reconcile(fake: FakeReplicate, marker: dict[str, Any], sent_at: float, driver: Driver = "sync") -> Any:
    return run(driver, ReplicateProvider().reconcile(marker, context(), sent_at=sent_at), fake)


def test_reconcile_returns_the_resume_data_of_the_one_match(driver: Driver) -> None:
    marker, sent_at = _marker(), time.time()
    fake = FakeReplicate(listing=[_fresh(lambda: page(_listed(marker, at=sent_at + 0.4)))])
    state = _reconcile(fake, marker, sent_at, driver)
    assert state == {
        "id": PREDICTION_ID,
        "get_url": f"{API}/v1/predictions/{PREDICTION_ID}",
        "cancel_url": f"{API}/v1/predictions/{PREDICTION_ID}/cancel",
    }
    (listed,) = fake.lists
    assert listed.url.params["created_after"] == _iso(sent_at - CLOCK_SKEW_SECONDS)
    assert listed.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_prediction_created_before_the_window_is_not_matched() -> None:
    marker, sent_at = _marker(), time.time()
    too_old = sent_at - CLOCK_SKEW_SECONDS - 1
    fake = FakeReplicate(
        listing=[_fresh(lambda: page(_listed(marker, at=too_old), next_url=f"{API}/v1/predictions?cursor=x"))]
    )
    assert _reconcile(fake, marker, sent_at) is None
    assert len(fake.lists) == 1  # older than the window: the pages behind it are older still


def test_a_prediction_within_the_clock_skew_margin_is_matched() -> None:
    marker, sent_at = _marker(), time.time()
    fake = FakeReplicate(listing=[_fresh(lambda: page(_listed(marker, at=sent_at - CLOCK_SKEW_SECONDS + 1)))])
    assert _reconcile(fake, marker, sent_at)["id"] == PREDICTION_ID


def test_reconcile_follows_next_pages_until_the_list_ends() -> None:
    marker, sent_at = _marker(), time.time()
    others = [_listed(marker, f"other{i:020d}", at=sent_at + 5, prompt=f"knight {i}") for i in range(3)]
    fake = FakeReplicate(
        listing=[
            _fresh(lambda: page(*others[:2], next_url=f"{API}/v1/predictions?cursor=cD0y&created_after=x")),
            _fresh(lambda: page(others[2], next_url=f"{API}/v1/predictions?cursor=cD0z&created_after=x")),
            _fresh(lambda: page(_listed(marker, at=sent_at + 1))),
        ]
    )
    assert _reconcile(fake, marker, sent_at)["id"] == PREDICTION_ID
    assert [r.url.params.get("cursor") for r in fake.lists] == [None, "cD0y", "cD0z"]


def test_a_next_page_outside_the_api_base_is_read_under_it() -> None:
    marker, sent_at = _marker(), time.time()
    fake = FakeReplicate(
        listing=[
            _fresh(lambda: page(next_url="https://collector.example.net/v1/predictions?cursor=cD0y")),
            _fresh(lambda: page(_listed(marker, at=sent_at))),
        ]
    )
    assert _reconcile(fake, marker, sent_at)["id"] == PREDICTION_ID
    assert [str(r.url) for r in fake.lists][1] == f"{API}/v1/predictions?cursor=cD0y"
    assert all(r.url.host == "api.replicate.com" for r in fake.requests)


def test_a_list_longer_than_the_page_limit_is_reported_not_half_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "MAX_LIST_PAGES", 3)
    marker, sent_at = _marker(), time.time()
    fake = FakeReplicate(listing=[_fresh(lambda: page(next_url=f"{API}/v1/predictions?cursor=more"))])
    with pytest.raises(OutcomeUnknown, match="not all"):
        _reconcile(fake, marker, sent_at)
    assert len(fake.lists) == 3


def test_list_pages_are_repeated_through_transient_failures(driver: Driver) -> None:
    marker, sent_at = _marker(), time.time()
    fake = FakeReplicate(
        listing=[
            httpx.ConnectError("refused"),
            _fresh(
                lambda: httpx.Response(429, json={"detail": "throttled", "status": 429}, headers={"retry-after": "0"})
            ),
            _fresh(lambda: httpx.Response(200, text="<html>oops</html>")),
            _fresh(lambda: page(_listed(marker, at=sent_at))),
        ]
    )
    assert _reconcile(fake, marker, sent_at, driver)["id"] == PREDICTION_ID
    assert len(fake.lists) == reconcile.LIST_ATTEMPTS == 4


def test_a_list_that_keeps_failing_raises_the_last_error() -> None:
    marker = _marker()
    fake = FakeReplicate(listing=[_fresh(lambda: httpx.Response(503, text="down"))])
    with pytest.raises(ProviderUnavailable):
        _reconcile(fake, marker, time.time())
    assert len(fake.lists) == reconcile.LIST_ATTEMPTS


def test_a_refused_token_on_the_list_is_an_authentication_error() -> None:
    fake = FakeReplicate(listing=[_fresh(lambda: httpx.Response(403, json={"detail": "Forbidden", "status": 403}))])
    with pytest.raises(AuthenticationFailed):
        _reconcile(fake, _marker(), time.time())


def test_predictions_of_other_models_sources_or_inputs_are_not_matches() -> None:
    marker, sent_at = _marker(), time.time()
    listed = [
        {**_listed(marker, "othermodel0000000000000001", at=sent_at), "model": "black-forest-labs/flux-schnell"},
        {**_listed(marker, "fromthewebsite00000000001", at=sent_at), "source": "web"},
        _listed(marker, "anotherseed000000000000001", at=sent_at, seed=43),
        {"status": "starting", "created_at": _iso(sent_at)},  # no id: nothing to follow
    ]
    fake = FakeReplicate(listing=[_fresh(lambda: page(*listed))])
    assert _reconcile(fake, marker, sent_at) is None


def test_a_candidate_whose_input_was_removed_cannot_be_ruled_out() -> None:
    marker, sent_at = _marker(), time.time()
    removed = {**_listed(marker, at=sent_at), "input": {}, "data_removed": True}
    fake = FakeReplicate(listing=[_fresh(lambda: page(removed))])
    with pytest.raises(OutcomeUnknown, match="removed") as caught:
        _reconcile(fake, marker, sent_at)
    assert PREDICTION_ID in str(caught.value)


# -- the matching rule [I] -----------------------------------------------------------------------------------


def _edit_marker() -> dict[str, Any]:
    image, mask = png_bytes(32, 32, "blue"), png_bytes(32, 32, "black")
    request = CharacterRequest(prompt="p", reference=REF_URL, operation=Edit(image=image, mask=mask), seed=1)
    images = {
        "character_reference_image": REF_URL,
        "image": request.operation.image.data_uri(),
        "mask": request.operation.mask.data_uri(),
    }  # type: ignore[union-attr]
    return create_marker(create_body(request, images, ReplicateOptions()))


def _sent(marker: dict[str, Any]) -> dict[str, Any]:
    body = {**marker["input"], "character_reference_image": REF_URL}
    return body


def test_the_same_input_matches_and_a_different_prompt_does_not() -> None:
    marker = _marker()
    assert input_matches(marker, _sent(marker))
    assert not input_matches(marker, {**_sent(marker), "prompt": "a knight in the sun"})
    assert not input_matches(marker, {k: v for k, v in _sent(marker).items() if k != "prompt"})


def test_an_unsent_setting_may_be_listed_only_with_the_models_default() -> None:
    marker = _marker()  # no style, no size sent
    assert input_matches(marker, {**_sent(marker), "style_type": "Auto", "aspect_ratio": "1:1", "resolution": "None"})
    assert not input_matches(marker, {**_sent(marker), "aspect_ratio": "16:9"})


def test_a_sent_setting_missing_from_the_list_is_not_held_against_it() -> None:
    marker = _marker(style="realistic")
    listed = {k: v for k, v in _sent(marker).items() if k != "style_type"}
    assert input_matches(marker, listed)
    assert not input_matches(marker, {**listed, "style_type": "Fiction"})


def test_images_rule_out_only_when_comparable() -> None:
    marker = _edit_marker()
    sent_image = "data:image/png;base64," + base64.b64encode(png_bytes(32, 32, "blue")).decode()
    sent = {
        **_sent(marker),
        "image": sent_image,
        "mask": "data:image/png;base64," + base64.b64encode(png_bytes(32, 32, "black")).decode(),
    }
    assert input_matches(marker, sent)
    other = "data:image/png;base64," + base64.b64encode(png_bytes(32, 32, "white")).decode()
    assert not input_matches(marker, {**sent, "image": other})  # same form, as long: another image
    assert input_matches(marker, {**sent, "image": sent_image[:50]})  # shortened in the list: decides nothing
    assert input_matches(marker, {**sent, "image": "https://replicate.delivery/pbxt/abc/image.png"})  # another form
    assert not input_matches(marker, {**sent, "character_reference_image": "https://example.com/other.png"})
    generate = _marker()
    assert not input_matches(generate, {**_sent(generate), "image": sent_image})  # an edit is not our generate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-09-08T16:19:34.907244Z", 1694189974.907244),
        ("2023-09-08T16:19:34Z", 1694189974.0),
        ("2023-09-08T16:19:34.907244123+00:00", 1694189974.907244123),
        ("2023-09-08T18:19:34.5+02:00", 1694189974.5),
        ("2023-09-08 16:19:34", 1694189974.0),
    ],
)
def test_replicate_times_are_read_with_any_fraction_and_zone(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", [None, "", "yesterday", "2023-13-45T99:99:99Z", 1694189974])
def test_unreadable_times_are_none(text: object) -> None:
    assert parse_time(text) is None

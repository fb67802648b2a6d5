"""The emulator calls back like fal and Replicate: signed (checked with ``ideochar.webhooks``), retried until
a 2xx, and faulted on purpose (duplicate, lost, late, out of order, bad signature, stale).

The emulator runs in-process; its callbacks go to a recording receiver through
``state.callbacks.transport``, so nothing leaves the process.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ideochar import webhooks
from ideochar.emulator import testing
from ideochar.emulator.app import EmulatorState
from ideochar.webhooks import FalKeys, WebhookEvent, WebhookRefused

pytestmark = pytest.mark.anyio

HOOK = "http://receiver.test/hook"
FAL_SUBMIT = "/fal/fal-ai/ideogram/character"
REPLICATE_CREATE = "/replicate/v1/models/ideogram-ai/ideogram-character/predictions"
FAL_AUTH = {"Authorization": "Key test-key"}
REPLICATE_AUTH = {"Authorization": "Bearer test-token"}


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    verdict: WebhookEvent | WebhookRefused | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every callback; answers from ``answers`` (then 200), or by ``check`` (401 when it refuses)."""

    deliveries: list[Delivery] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    check: Callable[[dict[str, str], bytes], Any] | None = None

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            delivery = Delivery(request.url.path, dict(request.headers), body, time.monotonic())
            self.deliveries.append(delivery)
            if self.answers:
                return JSONResponse({}, status_code=self.answers.pop(0))
            if self.check is not None:
                try:
                    delivery.verdict = await self.check(delivery.headers, body)
                except WebhookRefused as refused:
                    delivery.verdict = refused
                    return JSONResponse({"error": refused.message}, status_code=refused.http_status)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@dataclass
class Emulated:
    app: Starlette
    http: httpx.AsyncClient
    receiver: Receiver

    @property
    def state(self) -> EmulatorState:
        state: EmulatorState = self.app.state.emulator
        return state

    async def settle(self, tries: int = 1, timeout: float = 10.0) -> None:
        """Wait for ``tries`` tries to have been made and every delivery to have ended, then a moment more
        (so a test that counts deliveries would see one too many)."""
        import anyio

        deadline = time.monotonic() + timeout
        while len(self.state.callbacks.log) < tries or self.state.callbacks.pending:
            assert time.monotonic() < deadline, f"{len(self.state.callbacks.log)} tries, {tries} expected"
            await anyio.sleep(0.02)
        await anyio.sleep(0.1)
        assert not self.state.callbacks.pending

    async def fal_keys(self) -> FalKeys:
        async def afetch(url: str) -> bytes:
            return (await self.http.get(url)).content

        return FalKeys(f"{testing.IN_PROCESS_ROOT}/fal/rest/.well-known/jwks.json", afetch=afetch)

    async def replicate_secret(self) -> str:
        answer = await self.http.get("/replicate/v1/webhooks/default/secret", headers=REPLICATE_AUTH)
        return str(answer.json()["key"])

    async def submit_fal(self, prompt: str = "a knight", hook: str = HOOK, **fields: Any) -> str:
        body = {"prompt": prompt, "reference_image_urls": [_reference()], **fields}
        answer = await self.http.post(FAL_SUBMIT, params={"fal_webhook": hook}, json=body, headers=FAL_AUTH)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["request_id"])

    async def create_replicate(self, events: list[str] | None = None, prompt: str = "a knight") -> str:
        body: dict[str, Any] = {"input": {"prompt": prompt, "character_reference_image": _reference()}, "webhook": HOOK}
        if events is not None:
            body["webhook_events_filter"] = events
        answer = await self.http.post(REPLICATE_CREATE, json=body, headers=REPLICATE_AUTH)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


def _reference() -> str:
    import base64

    from conftest import make_image

    return "data:image/png;base64," + base64.b64encode(make_image()).decode()


@pytest.fixture
async def emulated() -> AsyncIterator[Emulated]:
    app = testing.emulator_app(model_seconds=0)
    receiver = Receiver()
    app.state.emulator.callbacks.transport = httpx.ASGITransport(app=receiver.app())
    app.state.emulator.callbacks.retry_delays_seconds = (0.05, 0.05, 0.05)
    async with testing.async_client(app) as http:
        yield Emulated(app, http, receiver)
        await app.state.emulator.callbacks.aclose()


# -- fal ---------------------------------------------------------------------------------------------------------


async def test_fal_serves_its_keys_as_a_jwks(emulated: Emulated) -> None:
    answer = await emulated.http.get("/fal/rest/.well-known/jwks.json")
    keys = webhooks.parse_jwks(answer.content)
    assert answer.status_code == 200 and len(keys) == 1
    assert answer.json()["keys"][0]["crv"] == "Ed25519"


async def test_a_fal_job_with_a_webhook_is_called_back_signed_with_those_keys(emulated: Emulated) -> None:
    request_id = await emulated.submit_fal()
    await emulated.settle()
    [delivery] = emulated.receiver.deliveries
    event = await webhooks.averify("fal", delivery.headers, delivery.body, fal_keys=await emulated.fal_keys())
    assert (event.vendor_job_id, event.status) == (request_id, "succeeded")
    document = delivery.json
    assert document["gateway_request_id"] == request_id and document["error"] is None
    image = await emulated.http.get(document["payload"]["images"][0]["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert delivery.headers["x-fal-webhook-user-id"] and "authorization" not in delivery.headers
    assert testing.billed(emulated.app, "fal") == 1


async def test_a_failed_fal_run_calls_back_with_error(emulated: Emulated) -> None:
    await emulated.submit_fal("a knight [emulator:fail]")
    await emulated.settle()
    [delivery] = emulated.receiver.deliveries
    assert delivery.json["status"] == "ERROR" and delivery.json["error"] == "Invalid status code: 500"
    event = await webhooks.averify("fal", delivery.headers, delivery.body, fal_keys=await emulated.fal_keys())
    assert event.status == "failed"


async def test_a_cancelled_fal_job_calls_back_with_error(emulated: Emulated) -> None:
    emulated.state.set_model_seconds(30)
    request_id = await emulated.submit_fal()
    cancel = await emulated.http.put(f"/fal/fal-ai/ideogram/requests/{request_id}/cancel", headers=FAL_AUTH)
    assert cancel.status_code == 202
    await emulated.settle()
    [delivery] = emulated.receiver.deliveries
    assert delivery.json["payload"]["error_type"] == "request_cancelled"


async def test_a_fal_webhook_that_is_not_a_url_is_refused_before_admission(emulated: Emulated) -> None:
    answer = await emulated.http.post(
        FAL_SUBMIT, params={"fal_webhook": "not a url"}, json={"prompt": "p", "reference_image_urls": [_reference()]},
        headers=FAL_AUTH,
    )  # fmt: skip
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", "fal_webhook"]
    assert testing.billed(emulated.app, "fal") == 0


async def test_rotated_fal_keys_are_what_the_key_set_then_holds(emulated: Emulated) -> None:
    from ideochar_fal.emulator import webhook_keys

    before = (await emulated.http.get("/fal/rest/.well-known/jwks.json")).json()
    webhook_keys(emulated.state.kits["fal"]).rotate()
    after = (await emulated.http.get("/fal/rest/.well-known/jwks.json")).json()
    assert before["keys"][0]["x"] != after["keys"][0]["x"]


# -- Replicate ----------------------------------------------------------------------------------------------------


async def test_replicate_serves_each_account_its_own_secret(emulated: Emulated) -> None:
    secret = await emulated.replicate_secret()
    again = await emulated.replicate_secret()
    other = await emulated.http.get("/replicate/v1/webhooks/default/secret", headers={"Authorization": "Bearer b"})
    anonymous = await emulated.http.get("/replicate/v1/webhooks/default/secret")
    assert secret.startswith("whsec_") and secret == again and other.json()["key"] != secret
    assert anonymous.status_code == 401


async def test_a_replicate_prediction_calls_back_each_event_asked_for(emulated: Emulated) -> None:
    emulated.state.set_model_seconds(0.2)
    prediction = await emulated.create_replicate(["start", "completed"])
    await emulated.settle(2)
    secret = await emulated.replicate_secret()
    events = [
        await webhooks.averify("replicate", d.headers, d.body, replicate_secret=secret)
        for d in emulated.receiver.deliveries
    ]
    assert [(e.vendor_job_id, e.status) for e in events] == [(prediction, "running"), (prediction, "succeeded")]
    assert events[0].delivery_id != events[1].delivery_id
    assert emulated.receiver.deliveries[1].json["output"].startswith(testing.IN_PROCESS_ROOT)


async def test_only_completed_when_that_is_the_filter(emulated: Emulated) -> None:
    emulated.state.set_model_seconds(0.1)
    await emulated.create_replicate(["completed"])
    await emulated.settle()
    assert [d.json["status"] for d in emulated.receiver.deliveries] == ["succeeded"]


async def test_a_canceled_prediction_calls_back_once_canceled(emulated: Emulated) -> None:
    emulated.state.set_model_seconds(0.3)
    prediction = await emulated.create_replicate(["completed"])
    await emulated.http.post(f"/replicate/v1/predictions/{prediction}/cancel", headers=REPLICATE_AUTH)
    await emulated.settle()
    import anyio

    await anyio.sleep(0.4)  # past the time it would have ended: no second "completed"
    await emulated.settle(1)
    assert [d.json["status"] for d in emulated.receiver.deliveries] == ["canceled"]


# -- delivery: retries and faults ---------------------------------------------------------------------------------


async def test_a_delivery_is_retried_until_a_2xx_with_the_same_id_and_a_fresh_signature(emulated: Emulated) -> None:
    emulated.receiver.answers = [500, 503]
    await emulated.create_replicate(["completed"])
    await emulated.settle(3)
    first, second, third = emulated.receiver.deliveries
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == third.headers["webhook-id"]
    assert [t.status for t in emulated.state.callbacks.tries()] == [500, 503, 200]
    secret = await emulated.replicate_secret()
    assert (await webhooks.averify("replicate", third.headers, third.body, replicate_secret=secret)).terminal


async def test_a_receiver_that_never_answers_2xx_is_given_up_on(emulated: Emulated) -> None:
    emulated.receiver.answers = [500] * 10
    await emulated.submit_fal()
    await emulated.settle(1 + len(emulated.state.callbacks.retry_delays_seconds))
    assert len(emulated.receiver.deliveries) == 1 + len(emulated.state.callbacks.retry_delays_seconds)


def faults(emulated: Emulated, kind: str, **rule: Any) -> None:
    emulated.state.set_profile({"*": [{"route": "callback", "kind": kind, "times": 1, **rule}]})


async def test_fault_duplicate_delivers_the_same_delivery_twice(emulated: Emulated) -> None:
    faults(emulated, "callback_duplicate")
    request_id = await emulated.submit_fal()
    await emulated.settle(2)
    deliveries = emulated.receiver.deliveries
    assert len(deliveries) == 2 and {d.headers["x-fal-webhook-request-id"] for d in deliveries} == {request_id}
    assert sorted(t.copy for t in emulated.state.callbacks.tries()) == ["duplicate", "genuine"]


async def test_fault_lost_never_delivers(emulated: Emulated) -> None:
    faults(emulated, "callback_lost")
    request_id = await emulated.submit_fal()
    await emulated.settle(0)
    import anyio

    await anyio.sleep(0.5)
    assert emulated.receiver.deliveries == [] and [c.job_id for c in emulated.state.callbacks.lost] == [request_id]


async def test_fault_late_delivers_after_its_seconds(emulated: Emulated) -> None:
    faults(emulated, "callback_late", seconds=0.4)
    started = time.monotonic()
    await emulated.submit_fal()
    await emulated.settle()
    [delivery] = emulated.receiver.deliveries
    assert delivery.at - started >= 0.4


async def test_fault_out_of_order_holds_a_delivery_until_the_next_has_gone(emulated: Emulated) -> None:
    faults(emulated, "callback_out_of_order", seconds=5)
    first = await emulated.submit_fal()
    import anyio

    await anyio.sleep(0.2)
    assert emulated.receiver.deliveries == []  # held
    second = await emulated.submit_fal()
    await emulated.settle(2)
    order = [d.headers["x-fal-webhook-request-id"] for d in emulated.receiver.deliveries]
    assert set(order) == {first, second} and order[-1] == first


@pytest.mark.parametrize(
    ("kind", "refusal"), [("callback_bad_signature", "BadSignature"), ("callback_stale", "StaleTimestamp")]
)
async def test_faulty_copies_go_first_and_are_refused_then_the_genuine_one_is_taken(
    emulated: Emulated, kind: str, refusal: str
) -> None:
    keys = await emulated.fal_keys()
    secret = await emulated.replicate_secret()

    async def check(headers: dict[str, str], body: bytes) -> WebhookEvent:
        return await webhooks.averify(None, headers, body, fal_keys=keys, replicate_secret=secret)

    emulated.receiver.check = check
    for submit in (emulated.submit_fal, emulated.create_replicate):
        emulated.receiver.deliveries.clear()
        emulated.state.callbacks.log.clear()
        faults(emulated, kind)
        await submit()
        await emulated.settle(2)
        verdicts = [d.verdict for d in emulated.receiver.deliveries]
        assert [type(v).__name__ for v in verdicts] == [refusal, "WebhookEvent"]


async def test_callbacks_go_to_loopback_addresses_only(tmp_path: Any) -> None:
    """Without a test transport the emulator sends to loopback only: another host is never contacted."""
    app = testing.emulator_app(model_seconds=0)
    async with testing.async_client(app) as http:
        body = {"prompt": "p", "reference_image_urls": [_reference()]}
        await http.post(
            FAL_SUBMIT, params={"fal_webhook": "http://hooks.example.invalid/x"}, json=body, headers=FAL_AUTH
        )
        emulated = Emulated(app, http, Receiver())
        await emulated.settle(1)
        [attempt] = emulated.state.callbacks.tries()  # not tried again: no retry could make it allowed
        assert attempt.status is None and "loopback addresses only" in (attempt.error or "")


async def test_a_reset_forgets_pending_deliveries(emulated: Emulated) -> None:
    faults(emulated, "callback_late", seconds=30)
    await emulated.submit_fal()
    import anyio

    await anyio.sleep(0.1)
    assert emulated.state.callbacks.pending == 1
    testing.reset(emulated.app)
    await anyio.sleep(0)
    assert emulated.state.callbacks.pending == 0 and emulated.state.callbacks.log == []

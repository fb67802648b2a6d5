"""``ideochar.webhooks.verify``: each vendor's scheme, every refusal with its HTTP status, and the key caches.

Callbacks are signed here with a second implementation (``webhook_support``: ``cryptography`` for fal,
the standard library's HMAC for Replicate), so a verifier that agreed only with itself would fail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from webhook_support import REPLICATE_SECRET, FalSigner, fal_body, replicate_body, replicate_headers

from ideochar import webhooks
from ideochar.errors import IdeocharError
from ideochar.webhooks import (
    BadSignature,
    CallbackTooLarge,
    FalKeys,
    MalformedCallback,
    ReplicateSecret,
    SigningKeysUnavailable,
    StaleTimestamp,
    UnknownKey,
    WebhookEvent,
    WebhookRefused,
)

Verify = Callable[..., WebhookEvent]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def signer() -> FalSigner:
    return FalSigner()


def keys_for(document: bytes | Callable[[], bytes], clock: Clock | None = None) -> FalKeys:
    """A key source reading ``document`` (counting reads), sync and async alike."""
    read = document if callable(document) else (lambda: document)

    async def aread(url: str) -> bytes:
        return read()

    return FalKeys("https://keys.test/jwks.json", fetch=lambda url: read(), afetch=aread, clock=clock or Clock())


@pytest.fixture(params=["sync", "async"])
def check(request: pytest.FixtureRequest) -> Verify:
    """``verify`` or ``averify`` (run to its end), with the same arguments: one scheme, two drivers."""
    if request.param == "sync":
        return webhooks.verify

    def run(*args: Any, **kwargs: Any) -> WebhookEvent:
        import anyio

        async def main() -> WebhookEvent:
            return await webhooks.averify(*args, **kwargs)

        return anyio.run(main)

    return run


def refused(check: Verify, *args: Any, **kwargs: Any) -> WebhookRefused:
    with pytest.raises(WebhookRefused) as caught:
        check(*args, **kwargs)
    return caught.value


# -- fal --------------------------------------------------------------------------------------------------------


def test_a_signed_fal_callback_gives_the_request_its_status_and_payload(check: Verify, signer: FalSigner) -> None:
    body = fal_body("req-7")
    event = check("fal", signer.headers(body, request_id="req-7"), body, fal_keys=keys_for(signer.jwks()))
    assert (event.vendor, event.vendor_job_id, event.delivery_id, event.status) == (
        "fal",
        "req-7",
        "req-7",
        "succeeded",
    )
    assert event.terminal and event.payload["payload"]["seed"] == 1


def test_fal_error_callbacks_are_failed_jobs(check: Verify, signer: FalSigner) -> None:
    body = fal_body(status="ERROR")
    assert check("fal", signer.headers(body), body, fal_keys=keys_for(signer.jwks())).status == "failed"


def test_the_vendor_is_told_by_the_signature_header(check: Verify, signer: FalSigner) -> None:
    body = fal_body()
    assert check(None, signer.headers(body), body, fal_keys=keys_for(signer.jwks())).vendor == "fal"
    body = replicate_body()
    assert check(None, replicate_headers(body), body, replicate_secret=REPLICATE_SECRET).vendor == "replicate"
    assert isinstance(refused(check, None, {"x-other": "1"}, b"{}"), MalformedCallback)


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        (lambda h: h.pop("X-Fal-Webhook-Signature"), MalformedCallback),
        (lambda h: h.pop("X-Fal-Webhook-User-Id"), MalformedCallback),
        (lambda h: h.update({"X-Fal-Webhook-Signature": "zz" * 64}), MalformedCallback),
        (lambda h: h.update({"X-Fal-Webhook-Signature": "ab" * 10}), MalformedCallback),
        (lambda h: h.update({"X-Fal-Webhook-Timestamp": "12:00"}), MalformedCallback),
        (lambda h: h.update({"X-Fal-Webhook-Timestamp": str(int(time.time()) - 301)}), StaleTimestamp),
        (lambda h: h.update({"X-Fal-Webhook-Timestamp": str(int(time.time()) + 301)}), StaleTimestamp),
        (lambda h: h.update({"X-Fal-Webhook-User-Id": "someone-else"}), BadSignature),
        (lambda h: h.update({"X-Fal-Webhook-Request-Id": "req-2"}), BadSignature),
    ],
    ids=[
        "no-signature",
        "no-user",
        "signature-not-hex",
        "signature-short",
        "timestamp-not-seconds",
        "old",
        "future",
        "other-user",
        "other-request",
    ],
)
def test_fal_refusals(check: Verify, signer: FalSigner, change: Callable[[dict[str, str]], Any], kind: type) -> None:
    body = fal_body()
    headers = signer.headers(body)
    change(headers)
    error = refused(check, "fal", headers, body, fal_keys=keys_for(signer.jwks()))
    assert type(error) is kind
    assert error.http_status == {MalformedCallback: 400, StaleTimestamp: 401, BadSignature: 401}[kind]


def test_a_changed_body_fails_the_signature(check: Verify, signer: FalSigner) -> None:
    headers = signer.headers(fal_body())
    error = refused(check, "fal", headers, fal_body(status="ERROR"), fal_keys=keys_for(signer.jwks()))
    assert isinstance(error, BadSignature) and error.http_status == 401


def test_a_signature_by_a_key_fal_does_not_publish_is_refused(check: Verify, signer: FalSigner) -> None:
    body = fal_body()
    error = refused(check, "fal", FalSigner().headers(body), body, fal_keys=keys_for(signer.jwks()))
    assert isinstance(error, BadSignature)


def test_an_empty_key_set_is_an_unknown_key(check: Verify, signer: FalSigner) -> None:
    body = fal_body()
    empty = json.dumps({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}).encode()
    error = refused(check, "fal", signer.headers(body), body, fal_keys=keys_for(empty))
    assert isinstance(error, UnknownKey) and error.http_status == 401


def test_keys_that_cannot_be_fetched_are_a_503_so_fal_retries(check: Verify, signer: FalSigner) -> None:
    def down() -> bytes:
        raise OSError("connection refused")

    body = fal_body()
    for source in (keys_for(down), keys_for(b"<html>not a key set</html>")):
        error = refused(check, "fal", signer.headers(body), body, fal_keys=source)
        assert isinstance(error, SigningKeysUnavailable) and error.http_status == 503


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not a JSON object"),
        (b"[1]", "not a JSON object"),
        (fal_body("req-other"), "another request"),
        (fal_body(status="DONE"), "neither OK nor ERROR"),
    ],
)
def test_a_signed_body_that_is_not_fals_callback_is_malformed(
    check: Verify, signer: FalSigner, body: bytes, why: str
) -> None:
    error = refused(check, "fal", signer.headers(body, request_id="req-1"), body, fal_keys=keys_for(signer.jwks()))
    assert isinstance(error, MalformedCallback) and why in error.message and error.http_status == 400


def test_a_body_over_the_limit_is_refused_before_anything_else(check: Verify, signer: FalSigner) -> None:
    body = fal_body()
    error = refused(check, "fal", {}, body, fal_keys=keys_for(signer.jwks()), max_body_bytes=len(body) - 1)
    assert isinstance(error, CallbackTooLarge) and error.http_status == 413


@pytest.mark.parametrize("tolerance", [0, -5, 301, float("inf"), float("nan")])
def test_the_timestamp_tolerance_is_mandatory_and_at_most_five_minutes(
    check: Verify, signer: FalSigner, tolerance: float
) -> None:
    body = fal_body()
    with pytest.raises(ValueError, match="tolerance"):
        check("fal", signer.headers(body), body, fal_keys=keys_for(signer.jwks()), tolerance_seconds=tolerance)


def test_a_narrower_tolerance_is_honoured(check: Verify, signer: FalSigner) -> None:
    body = fal_body()
    headers = signer.headers(body, at=time.time() - 30)
    assert check("fal", headers, body, fal_keys=keys_for(signer.jwks()), tolerance_seconds=60).terminal
    error = refused(check, "fal", headers, body, fal_keys=keys_for(signer.jwks()), tolerance_seconds=10)
    assert isinstance(error, StaleTimestamp)


# -- fal's key cache ----------------------------------------------------------------------------------------------


def counting(documents: list[bytes]) -> tuple[list[int], Callable[[], bytes]]:
    reads = [0]

    def read() -> bytes:
        reads[0] += 1
        return documents[min(reads[0], len(documents)) - 1]

    return reads, read


def test_keys_are_cached_and_read_again_after_a_day_at_most(signer: FalSigner) -> None:
    clock = Clock()
    reads, read = counting([signer.jwks()])
    source = keys_for(read, clock)
    body = fal_body()
    for _ in range(3):
        webhooks.verify("fal", signer.headers(body), body, fal_keys=source)
    assert reads == [1]
    clock.now += 24 * 3600
    webhooks.verify("fal", signer.headers(body), body, fal_keys=source)
    assert reads == [2]
    with pytest.raises(ValueError, match="at most"):
        FalKeys(max_age_seconds=24 * 3600 + 1)


def test_a_rotated_key_is_found_by_reading_the_key_set_again_once(signer: FalSigner) -> None:
    rotated = FalSigner()
    clock = Clock()
    reads, read = counting([signer.jwks(), rotated.jwks()])
    source = keys_for(read, clock)
    body = fal_body()
    webhooks.verify("fal", signer.headers(body), body, fal_keys=source)
    clock.now += 120
    assert webhooks.verify("fal", rotated.headers(body), body, fal_keys=source).terminal
    assert reads == [2]


def test_forged_callbacks_do_not_make_the_receiver_read_the_keys_for_each(signer: FalSigner) -> None:
    clock = Clock()
    reads, read = counting([signer.jwks()])
    source = keys_for(read, clock)
    body = fal_body()
    webhooks.verify("fal", signer.headers(body), body, fal_keys=source)
    clock.now += 120
    forger = FalSigner()
    for _ in range(20):
        with pytest.raises(BadSignature):
            webhooks.verify("fal", forger.headers(body), body, fal_keys=source)
        clock.now += 1
    assert reads == [2]  # one refresh for the first unknown signature, none within the next minute


def test_when_the_key_set_cannot_be_read_again_the_cached_keys_still_serve(signer: FalSigner) -> None:
    clock = Clock()
    documents = [signer.jwks()]

    def read() -> bytes:
        if not documents:
            raise OSError("down")
        return documents.pop()

    source = keys_for(read, clock)
    body = fal_body()
    webhooks.verify("fal", signer.headers(body), body, fal_keys=source)
    clock.now += 120
    with pytest.raises(BadSignature):  # refresh fails: the known keys are kept, and the forgery refused
        webhooks.verify("fal", FalSigner().headers(body), body, fal_keys=source)
    assert webhooks.verify("fal", signer.headers(body), body, fal_keys=source).terminal


def test_the_default_fetch_refuses_addresses_that_are_not_public() -> None:
    """fal's keys are fetched by ideochar's guarded fetch unless another is given: a JWKS URL on loopback is
    refused at the connection, as any URL fetched on a user's behalf is."""
    source = FalKeys("http://127.0.0.1:9/jwks.json")
    with pytest.raises(SigningKeysUnavailable):
        source.keys()


# -- Replicate ---------------------------------------------------------------------------------------------------


def test_a_signed_replicate_callback_gives_the_prediction(check: Verify) -> None:
    body = replicate_body("p42", "succeeded")
    event = check("replicate", replicate_headers(body, message_id="msg_9"), body, replicate_secret=REPLICATE_SECRET)
    assert (event.vendor_job_id, event.delivery_id, event.status, event.terminal) == ("p42", "msg_9", "succeeded", True)


@pytest.mark.parametrize(
    ("status", "neutral"),
    [
        ("starting", "running"),
        ("processing", "running"),
        ("failed", "failed"),
        ("canceled", "canceled"),
        ("aborted", "canceled"),
    ],
)
def test_replicate_statuses_in_neutral_words(check: Verify, status: str, neutral: str) -> None:
    body = replicate_body(status=status)
    event = check("replicate", replicate_headers(body), body, replicate_secret=REPLICATE_SECRET)
    assert event.status == neutral and event.terminal is (neutral != "running")


def test_one_valid_signature_among_several_is_enough(check: Verify) -> None:
    body = replicate_body()
    headers = replicate_headers(body)
    other = replicate_headers(body, secret="whsec_" + "b3RoZXIgc2VjcmV0IG9mIGVub3VnaCBsZW5ndGg=")
    headers["webhook-signature"] = f"{other['webhook-signature']} {headers['webhook-signature']}"
    assert check("replicate", headers, body, replicate_secret=REPLICATE_SECRET).terminal


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        (lambda h: h.pop("webhook-id"), MalformedCallback),
        (lambda h: h.pop("webhook-signature"), MalformedCallback),
        (lambda h: h.update({"webhook-signature": "garbage"}), MalformedCallback),
        (lambda h: h.update({"webhook-timestamp": "yesterday"}), MalformedCallback),
        (lambda h: h.update({"webhook-timestamp": str(int(time.time()) - 400)}), StaleTimestamp),
        (lambda h: h.update({"webhook-id": "msg_other"}), BadSignature),
        (lambda h: h.update({"webhook-signature": "v1,AAAA"}), BadSignature),
    ],
    ids=["no-id", "no-signature", "signature-not-listed", "timestamp-not-seconds", "old", "other-id", "wrong-mac"],
)
def test_replicate_refusals(check: Verify, change: Callable[[dict[str, str]], Any], kind: type) -> None:
    body = replicate_body()
    headers = replicate_headers(body)
    change(headers)
    error = refused(check, "replicate", headers, body, replicate_secret=REPLICATE_SECRET)
    assert type(error) is kind


def test_a_replicate_callback_signed_with_another_accounts_secret_is_refused(check: Verify) -> None:
    body = replicate_body()
    other = "whsec_" + "YW5vdGhlciBhY2NvdW50J3Mgc2VjcmV0IGtleSEh"
    error = refused(check, "replicate", replicate_headers(body, secret=other), body, replicate_secret=REPLICATE_SECRET)
    assert isinstance(error, BadSignature) and error.http_status == 401


def test_a_replicate_body_without_a_prediction_is_malformed(check: Verify) -> None:
    for body in (b"{}", json.dumps({"id": "p1", "status": "weird"}).encode(), b"\xff\xfe"):
        error = refused(check, "replicate", replicate_headers(body), body, replicate_secret=REPLICATE_SECRET)
        assert isinstance(error, MalformedCallback)


def test_the_secret_is_read_from_replicate_and_again_once_when_rotated() -> None:
    clock = Clock()
    rotated = "whsec_" + "cm90YXRlZCBzZWNyZXQgb2YgZW5vdWdoIGxlbmd0aA=="
    answers = [json.dumps({"key": REPLICATE_SECRET}).encode(), json.dumps({"key": rotated}).encode()]
    urls: list[str] = []

    def fetch(url: str) -> bytes:
        urls.append(url)
        return answers[len(urls) - 1]

    source = ReplicateSecret(url="https://api.replicate.test/v1/webhooks/default/secret", fetch=fetch, clock=clock)
    body = replicate_body()
    webhooks.verify("replicate", replicate_headers(body), body, replicate_secret=source)
    webhooks.verify("replicate", replicate_headers(body), body, replicate_secret=source)
    clock.now += 61
    webhooks.verify("replicate", replicate_headers(body, secret=rotated), body, replicate_secret=source)
    assert len(urls) == 2
    assert "whsec" not in repr(source)


def test_a_secret_that_cannot_be_read_is_a_503_without_the_answer_in_the_error() -> None:
    def fetch(url: str) -> bytes:
        return b'{"key": "not-a-whsec-but-secret-material"}'

    source = ReplicateSecret(url="https://api.replicate.test/secret", fetch=fetch)
    body = replicate_body()
    error = refused(webhooks.verify, "replicate", replicate_headers(body), body, replicate_secret=source)
    assert isinstance(error, SigningKeysUnavailable) and error.http_status == 503
    assert "secret-material" not in str(error) and error.__cause__ is None


def test_verifying_replicate_without_a_secret_is_a_programming_error() -> None:
    body = replicate_body()
    with pytest.raises(ValueError, match="replicate_secret"):
        webhooks.verify("replicate", replicate_headers(body), body)


# -- the error tree -----------------------------------------------------------------------------------------------


def test_every_refusal_is_an_ideochar_error_with_its_status_and_pickles() -> None:
    import pickle

    statuses = {
        MalformedCallback: 400, BadSignature: 401, StaleTimestamp: 401, UnknownKey: 401, CallbackTooLarge: 413,
        SigningKeysUnavailable: 503,
    }  # fmt: skip
    for kind, status in statuses.items():
        error = kind("why", vendor="fal", delivery_id="d1")
        assert isinstance(error, IdeocharError) and kind.http_status == status
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), copy.message, copy.vendor, copy.delivery_id) == (kind, "why", "fal", "d1")


def test_async_key_sources_are_awaited_not_run_on_the_loop(signer: FalSigner) -> None:
    import anyio

    awaited: list[str] = []

    async def afetch(url: str) -> bytes:
        awaited.append(url)
        await anyio.sleep(0)
        return signer.jwks()

    def never(url: str) -> bytes:
        raise AssertionError("the blocking fetch ran on the event loop")

    source = FalKeys("https://keys.test/jwks.json", fetch=never, afetch=afetch)
    body = fal_body()

    async def main() -> Awaitable[Any] | WebhookEvent:
        return await webhooks.averify("fal", signer.headers(body), body, fal_keys=source)

    assert anyio.run(main).terminal  # type: ignore[union-attr]
    assert awaited == ["https://keys.test/jwks.json"]

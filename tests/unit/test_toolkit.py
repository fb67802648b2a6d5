"""The adapters' toolkit on its own: rule tables, body reading, the poll loop, trusted origins, image
collection and vendor numbers. Each vendor's tests (tests/providers/) show the same pieces in its flow."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Generator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

import ideochar.toolkit
from conftest import CANARY_KEY, make_image
from echoed_keys import CUTS, key_fragments, straddling
from ideochar._constants import MAX_RETRY_AFTER_SECONDS
from ideochar._secrets import Secret
from ideochar.errors import (
    AuthenticationFailed,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.exchange import Send, Sleep
from ideochar.result import GeneratedImage
from ideochar.toolkit import (
    CLIENT_ERRORS,
    DETAIL_CHARS,
    INT64_MAX,
    SERVER_ERRORS,
    Collected,
    Condition,
    Count,
    Done,
    ErrorRule,
    Failure,
    NamedImage,
    Origin,
    Pending,
    PollSchedule,
    QueuePosition,
    Retry,
    Seed,
    TrustedOrigins,
    Unreadable,
    VendorModel,
    classify,
    collect_images,
    error_for,
    has_code,
    int_or_none,
    mentions,
    on_phase,
    parse_reply,
    poll,
    read_body,
    read_failure,
    statuses,
)

PNG = make_image(8, 8)
Secret(CANARY_KEY)  # known to the redactor, as in every real call


def answer(status: int = 200, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "https://api.vendor.test/x"), **kwargs)


# -- reading bodies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "kind", "summary"),
    [
        ({"json": {"error": "bad prompt", "message": "bad prompt"}}, "json", "bad prompt"),
        ({"content": b'{"detail": "x"}'}, "json", "x"),  # JSON by its first character, no content type
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "text", "{not json"),
        (
            {"text": "<html><title>502 Bad &amp; Gateway</title></html>"},
            "html",
            "an HTML page titled '502 Bad & Gateway'",
        ),
        ({"text": "<!DOCTYPE html><p>down</p>"}, "html", "an HTML page"),
        ({"text": "upstream  connect\n error"}, "text", "upstream connect error"),
        ({"content": b""}, "empty", "no message"),
        ({"content": b"   \n"}, "empty", "no message"),
    ],
)
def test_a_body_of_any_shape_reads_as_a_sentence(kwargs: dict[str, Any], kind: str, summary: str) -> None:
    body = read_body(answer(500, **kwargs))
    assert (body.kind, body.summary()) == (kind, summary)


@pytest.mark.parametrize("charset", ["utf-16", "utf-32", "no-such-charset"])
def test_a_wrong_charset_reads_as_utf8(charset: str) -> None:
    response = answer(502, content="Bad gateway é".encode(), headers={"content-type": f"text/plain; charset={charset}"})
    assert "Bad gateway" in read_body(response).summary()


def test_the_key_is_redacted_before_the_body_is_cut() -> None:
    """A cut made before redaction leaves half a key that the redactor no longer recognises."""
    body = read_body(answer(500, text=straddling()))
    for limit in CUTS:
        assert key_fragments(str(body.excerpt(limit))) == []
        assert key_fragments(body.summary(limit=limit)) == []


def test_json_values_are_redacted_before_they_are_summarised() -> None:
    failure = read_failure(answer(401, json={"error": "." * (DETAIL_CHARS - 10) + CANARY_KEY}))
    assert key_fragments(failure.detail) == [] and key_fragments(repr(failure.body)) == []


def test_parse_reply_names_the_first_problem_or_quotes_a_redacted_start() -> None:
    class Reply(VendorModel):
        id: str

    assert parse_reply(answer(json={"id": "r-1"}), Reply) == Reply(id="r-1")
    missing = parse_reply(answer(json={"other": 1}), Reply)
    assert isinstance(missing, Unreadable) and missing.reason == "id: Field required"
    assert missing.body == {"other": 1}
    garbage = parse_reply(answer(text=straddling()), Reply)
    assert isinstance(garbage, Unreadable) and garbage.reason.startswith("the body is not JSON")
    assert key_fragments(garbage.reason + repr(garbage.body)) == []


# -- the rule table ----------------------------------------------------------------------------------------

QUOTA = mentions("quota words", ["quota"])
RULES = (
    ErrorRule("quota", RateLimited, "Acme's quota is spent: {detail}", statuses(403), QUOTA),
    ErrorRule("auth", AuthenticationFailed, "Acme refused the key ({hint}): {detail}", statuses(401, 403)),
    ErrorRule("edge", ProviderUnavailable, "Acme's edge said {status}", statuses(502), on_phase("submit"), sent=False),
    ErrorRule("server", ProviderUnavailable, "Acme is down (HTTP {status}): {detail}", SERVER_ERRORS),
    ErrorRule("other 4xx", RequestRejected, "Acme refused (HTTP {status}): {detail}", CLIENT_ERRORS, billed="unknown"),
)


def failure(status: int, detail: str = "d", **fields: Any) -> Failure:
    return Failure(status=status, detail=detail, **fields)


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        (failure(403, "Your quota is exhausted"), "quota"),
        (failure(403, "forbidden"), "auth"),
        (failure(401, "quota"), "auth"),  # the quota row names only 403
        (failure(502, phase="submit"), "edge"),
        (failure(502, phase="poll"), "server"),
        (failure(418), "other 4xx"),
        (failure(302), None),
    ],
)
def test_the_first_matching_row_wins(given: Failure, rule: str | None) -> None:
    found = classify(given, RULES)
    assert (found.name if found else None) == rule


def test_an_error_carries_what_the_answer_said() -> None:
    given = failure(403, "bad key", request_id="req-1", retry_after=3.0, body={"error": "bad key"})
    error = error_for(given, RULES, provider="acme", title="Acme", hint="check ACME_KEY")
    assert type(error) is AuthenticationFailed
    assert str(error) == "Acme refused the key (check ACME_KEY): bad key"
    assert (error.provider, error.status, error.vendor_request_id, error.retry_after) == ("acme", 403, "req-1", 3.0)
    assert (error.billed, error.sent, error.admitted, error.body) == ("no", True, False, {"error": "bad key"})
    assert pickle.loads(pickle.dumps(error)).vendor_request_id == "req-1"


def test_the_sent_flag_and_the_billed_hint_come_from_the_row() -> None:
    edge = error_for(failure(502, phase="submit"), RULES, provider="acme", title="Acme")
    assert edge.sent is False
    assert error_for(failure(502, phase="submit"), RULES, provider="acme", title="Acme", admitted=True).sent is True
    assert error_for(failure(418), RULES, provider="acme", title="Acme").billed == "unknown"


def test_an_answer_no_row_foresaw_is_unexpected() -> None:
    error = error_for(failure(302, "moved"), RULES, provider="acme", title="Acme")
    assert type(error) is UnexpectedResponse and error.billed == "unknown"
    assert str(error) == "Acme answered HTTP 302, which ideochar does not expect: moved"


def test_conditions_are_named_data() -> None:
    code = has_code("out of funds", ["insufficient_funds"])
    assert code(failure(402, codes=frozenset({"insufficient_funds"}))) and not code(failure(402))
    assert repr(QUOTA) == "Condition(name='quota words')"
    assert Condition("x", lambda f: True) == Condition("x", lambda f: False)  # compared by name


def test_read_failure_keeps_retry_after_and_the_request_id_header() -> None:
    response = answer(429, json={"error": "slow"}, headers={"retry-after": "7", "x-request-id": "r-9"})
    given = read_failure(response, request_id_header="x-request-id", phase="poll")
    assert (given.detail, given.retry_after, given.request_id, given.phase) == ("slow", 7.0, "r-9", "poll")


# -- the poll loop ----------------------------------------------------------------------------------------

Answer = httpx.Response | ProviderError


def step_through(flow: Generator[Any, Any, Any], answers: list[Answer]) -> tuple[Any, list[Any]]:
    """Run a sans-IO flow by hand: each Send gets the next answer (an exception is thrown in)."""
    steps: list[Any] = []
    queue: Iterator[Answer] = iter(answers)
    reply: Any = None
    throw: BaseException | None = None
    while True:
        try:
            step = flow.throw(throw) if throw is not None else flow.send(reply)
        except StopIteration as stop:
            return stop.value, steps
        steps.append(step)
        reply, throw = None, None
        if isinstance(step, Send):
            given = next(queue)
            if isinstance(given, BaseException):
                throw = given
            else:
                reply = given


def send() -> Send:
    return Send(httpx.Request("GET", "https://api.vendor.test/job"))


def read(response: httpx.Response) -> Done[str] | Pending | Retry:
    """A toy vendor: 200 ``done`` or ``queued N``; 429 (with Retry-After) and 503 retryable; anything else final."""
    if response.status_code == 429:
        return Retry(RateLimited("slow", retry_after=float(response.headers["retry-after"])))
    if response.status_code == 503:
        return Retry(ProviderUnavailable("down"))
    if response.status_code != 200:
        raise RequestRejected(f"refused {response.status_code}")
    if response.text == "done":
        return Done("result")
    return Pending(response.text, Event("progress", message=response.text))


def sleeps(steps: list[Any]) -> list[float]:
    return [step.seconds for step in steps if isinstance(step, Sleep)]


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ideochar.toolkit, "backoff_seconds", lambda failures: 0.5 * failures)


SCHEDULE = PollSchedule(initial=0.1, maximum=0.4, growth=2.0, failures=3)


def test_waits_grow_from_the_first_to_the_ceiling_and_events_come_on_change() -> None:
    answers: list[Answer] = [answer(text=t) for t in ("queued 2", "queued 2", "queued 1", "running", "running")]
    value, steps = step_through(poll(send, read, SCHEDULE, first_wait=0.1), [*answers, answer(text="done")])
    assert value == "result"
    assert sleeps(steps) == [0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert [s.message for s in steps if isinstance(s, Event)] == ["queued 2", "queued 1", "running"]


def test_what_the_caller_already_reported_is_not_reported_again() -> None:
    _, steps = step_through(
        poll(send, read, SCHEDULE, reported="queued 2"), [answer(text="queued 2"), answer(text="done")]
    )
    assert [s for s in steps if isinstance(s, Event)] == []


def test_retry_after_is_honoured_up_to_the_ceiling(no_jitter: None) -> None:
    answers: list[Answer] = [
        answer(429, headers={"retry-after": "3"}),
        answer(429, headers={"retry-after": "99999"}),
        answer(text="done"),
    ]
    _, steps = step_through(poll(send, read, SCHEDULE), answers)
    assert sleeps(steps) == [3.0, MAX_RETRY_AFTER_SECONDS]


def test_transport_failures_back_off_and_a_run_of_them_ends_the_wait(no_jitter: None) -> None:
    down = ProviderUnavailable("connection refused", sent=False)
    with pytest.raises(ProviderUnavailable) as caught:
        step_through(poll(send, read, SCHEDULE), [down, answer(503), down, answer(503)])
    assert caught.value.message == "down"  # the last failure is what the caller sees


def test_failures_count_only_in_a_row(no_jitter: None) -> None:
    answers: list[Answer] = [answer(503)] * 3 + [answer(text="queued")] + [answer(503)] * 3 + [answer(text="done")]
    value, steps = step_through(poll(send, read, SCHEDULE), answers)
    assert value == "result"
    assert sleeps(steps) == [0.5, 1.0, 1.5, 0.4, 0.5, 1.0, 1.5]


def test_a_final_error_is_raised_at_once_even_one_that_looks_retryable() -> None:
    def refuse(response: httpx.Response) -> Done[str] | Pending | Retry:
        raise ProviderUnavailable("no such endpoint (404)")  # final: read decided, not the transport

    with pytest.raises(ProviderUnavailable):
        step_through(poll(send, refuse, SCHEDULE), [answer(404)])
    with pytest.raises(RequestRejected):
        step_through(poll(send, read, SCHEDULE), [answer(text="queued"), answer(400)])


def test_give_up_ends_a_long_wait_with_the_callers_error() -> None:
    def give_up(pending: Pending, polls: int, waited: float) -> ProviderError | None:
        return ProviderUnavailable(f"still {pending.key} after {polls} polls") if polls >= 3 else None

    with pytest.raises(ProviderUnavailable, match="still queued after 3 polls"):
        step_through(poll(send, read, SCHEDULE, give_up=give_up), [answer(text="queued")] * 5)


def test_polls_never_admit() -> None:
    _, steps = step_through(poll(send, read, SCHEDULE), [answer(text="done")])
    assert [s.admits for s in steps if isinstance(s, Send)] == [False]


# -- where the key may go ------------------------------------------------------------------------------

FAL_LIKE = TrustedOrigins.of(["https://queue.fal.run", "https://fal.run", "http://127.0.0.1:8123/fal"], ["fal.run"])


@pytest.mark.parametrize(
    "url",
    [
        "https://queue.fal.run/fal-ai/ideogram/requests/1/status",
        "https://queue.fal.run:443/x",  # the default port, written out
        "HTTPS://Queue.FAL.run/x",  # case
        "https://queue.fal.run./x",  # a trailing dot names the same host
        "https://rest.alpha.fal.run/x",  # a documented domain's subdomain, over https
        "http://127.0.0.1:8123/other-vendor/x",  # the configured origin, any path
    ],
)
def test_the_key_may_go_to_a_configured_origin_or_a_vendor_domain(url: str) -> None:
    assert FAL_LIKE.trusts(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://queue.fal.run/x",  # another scheme
        "http://queue.fal.run:8080/x",  # another scheme and port
        "https://queue.fal.run:8443/x",  # another port
        "https://rest.fal.run:8443/x",  # a vendor domain, but not on the default port
        "http://rest.fal.run/x",  # a vendor domain, but not https
        "http://127.0.0.1:8124/fal/x",  # the configured host, another port
        "https://127.0.0.1:8123/fal/x",  # the configured host and port, another scheme
        "https://queue.fal.run.evil.example/x",  # lookalikes
        "https://evilfal.run/x",
        "https://fal.run@evil.example/x",  # userinfo: the host is evil.example
        "https://queue.fal.run\\@evil.example/x",
        "https://user:pass@queue.fal.run/x",  # userinfo on the right host: still refused
        "https://queue.fаl.run/x",  # a Cyrillic а
        "https://queue.fal.run%2eevil.example/x",
        "ftp://queue.fal.run/x",
        "//queue.fal.run/x",
        "https:queue.fal.run/x",
        "http://[::1",
        "",
        None,
        42,
    ],
)
def test_the_key_never_goes_anywhere_else(url: Any) -> None:
    assert not FAL_LIKE.trusts(url)


def test_origins_are_normalised_as_the_driver_connects() -> None:
    assert Origin.of("HTTPS://Bücher.Example.:443/x") == Origin("https", "xn--bcher-kva.example", 443)
    assert Origin.of("http://[::1]:8080/") == Origin("http", "::1", 8080)
    assert str(Origin.of("http://a.example/")) == "http://a.example:80"


def test_require_names_the_origin_and_sends_nothing() -> None:
    with pytest.raises(UnexpectedResponse, match="will not send the key") as caught:
        FAL_LIKE.require("http://queue.fal.run:8080/steal", provider="fal", title="fal")
    assert "http://queue.fal.run:8080" in caught.value.message and caught.value.billed == "unknown"
    assert FAL_LIKE.require("https://fal.run/x", provider="fal", title="fal") == "https://fal.run/x"


# -- collecting images ------------------------------------------------------------------------------------


def downloads(answers: Callable[[httpx.Request], httpx.Response]) -> Callable[..., tuple[Collected, list[Any]]]:
    """Run collect_images, answering each GET with ``answers(request)``; returns what it collected and its steps."""

    def run(named: list[NamedImage], **kwargs: Any) -> tuple[Collected, list[Any]]:
        flow = collect_images(named, provider="acme", title="Acme", **kwargs)
        steps: list[Any] = []
        reply: Any = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as stop:
                return stop.value, steps
            steps.append(step)
            reply = answers(step.request) if isinstance(step, Send) else None

    return run


def image_or_404(request: httpx.Request) -> httpx.Response:
    if request.url.path.startswith("/gone"):
        return httpx.Response(404, request=request)
    return httpx.Response(200, content=PNG, request=request)


def test_a_vendor_naming_300_images_for_one_asked_costs_one_download(caplog: pytest.LogCaptureFixture) -> None:
    named = [NamedImage(f"https://cdn.vendor.test/{i}.png") for i in range(300)]
    with caplog.at_level(logging.WARNING, logger="ideochar.toolkit"):
        collected, steps = downloads(image_or_404)(named, asked=1, most=8)
    assert len([s for s in steps if isinstance(s, Send)]) == 1
    assert len(collected.images) == 1 and collected.failures == []
    (warning,) = collected.warnings
    assert warning.field == "num_images" and "300" in warning.message and "299" in warning.message
    assert "named 300 images" in caplog.text


def test_an_unknown_count_is_capped_at_the_most_a_call_makes() -> None:
    named = [NamedImage(f"https://cdn.vendor.test/{i}.png") for i in range(20)]
    collected, _ = downloads(image_or_404)(named, asked=None, most=8)
    assert (len(collected.images), collected.tried, collected.named) == (8, 8, 20)


def test_every_image_asked_for_is_accounted_for() -> None:
    named = [
        NamedImage("https://cdn.vendor.test/1.png", seed=1),
        NamedImage("https://cdn.vendor.test/gone.png", seed=2),
        NamedImage(None, withheld="withheld by the safety check"),
    ]
    collected, _ = downloads(image_or_404)(named, asked=4, most=8)
    assert [i.seed for i in collected.images] == [1]
    assert [(f.index, f.billed, f.error_type) for f in collected.failures] == [
        (1, "yes", "UnexpectedResponse"),
        (2, "yes", "ContentFiltered"),
        (3, "unknown", None),
    ]
    assert collected.failures[0].reason.startswith("image 2 could not be downloaded")
    assert "returned 3 of the 4" in collected.failures[2].reason
    assert [w.kind for w in collected.warnings] == ["withheld"]
    assert collected.withheld == 1 and [type(e) for e in collected.errors] == [UnexpectedResponse]


def test_headers_go_only_where_the_caller_says_and_downloads_can_be_announced() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return image_or_404(request)

    named = [NamedImage("https://api.vendor.test/out.png"), NamedImage("https://cdn.vendor.test/out.png")]
    trusted = TrustedOrigins.of(["https://api.vendor.test"])
    collected, steps = downloads(record)(
        named,
        asked=2,
        most=8,
        headers=lambda url: {"authorization": "Bearer k"} if trusted.trusts(url) else None,
        announce=True,
        vendor_request_id="job-1",
    )
    assert ["authorization" in r.headers for r in seen] == [True, False]
    events = [s for s in steps if isinstance(s, Event)]
    assert [(e.kind, e.vendor_request_id, e.data["index"]) for e in events] == [
        ("downloaded", "job-1", 0),
        ("downloaded", "job-1", 1),
    ]
    assert all(isinstance(i, GeneratedImage) for i in collected.images)


# -- vendor numbers ---------------------------------------------------------------------------------------


class Status(VendorModel):
    request_id: str
    queue_position: QueuePosition | None = None
    seed: Seed | None = None
    size: Count | None = None
    url: str | None = None


@pytest.mark.parametrize(
    "bad",
    [
        {"queue_position": 2**63},  # overflows SQLite downstream
        {"queue_position": 2**31},
        {"queue_position": -1},
        {"queue_position": 3.5},
        {"queue_position": True},
        {"queue_position": "third"},
        {"seed": 2**64},
        {"seed": 1e400},
        {"size": -5},
        {"url": 42},
        {"queue_position": 2**70, "seed": "x", "url": ["a"]},
    ],
)
def test_a_malformed_optional_field_is_dropped_and_the_request_id_kept(
    bad: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ideochar.toolkit"):
        status = Status.model_validate({"request_id": "req-1", **bad})
    assert status.request_id == "req-1"
    assert all(getattr(status, name) is None for name in bad)
    assert "ignored" in caplog.text and all(f"Status.{name}" in caplog.text for name in bad)


def test_in_range_numbers_are_kept() -> None:
    status = Status.model_validate({"request_id": "r", "queue_position": 3.0, "seed": -(2**63), "size": INT64_MAX})
    assert (status.queue_position, status.seed, status.size) == (3, -(2**63), INT64_MAX)


def test_a_bad_required_field_still_makes_the_answer_unreadable() -> None:
    with pytest.raises(ValidationError):
        Status.model_validate({"request_id": 5, "queue_position": 2**70})
    with pytest.raises(ValidationError):
        Status.model_validate({"queue_position": 1})


def test_nested_models_drop_their_own_bad_fields() -> None:
    class File(VendorModel):
        url: str
        file_size: Count | None = None

    class Output(VendorModel):
        images: list[File]

    output = Output.model_validate_json('{"images": [{"url": "u", "file_size": 1e30}]}')
    assert output.images[0].file_size is None


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("42", 42),
        (" -7 ", -7),
        ("9223372036854775807", INT64_MAX),
        ("9223372036854775808", None),
        ("1_0", None),
        ("4.2", None),
        ("", None),
        (None, None),
        (True, None),
        (12, 12),
        ("1" * 30, None),
    ],
)
def test_int_or_none_reads_only_whole_numbers_the_journal_can_store(text: Any, number: int | None) -> None:
    assert int_or_none(text) == number


# -- the threat model names these tests ----------------------------------------------------------------------

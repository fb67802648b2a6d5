"""The drivers: one exchange, run by the sync and the async driver alike, over MockTransport."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

import httpx
import pytest

from conftest import make_image
from ideochar import InvalidRequest, OutcomeUnknown, ProviderUnavailable, UnexpectedResponse
from ideochar._constants import INLINE_READ_BYTES
from ideochar.events import Event
from ideochar.exchange import (
    ChunkReader,
    NextEvent,
    ReaderStream,
    Send,
    Sleep,
    adrive,
    download_image,
    drive,
    fetch_input,
    image_complete,
    image_from_bytes,
    read_json,
)
from ideochar.media import ImageInput

Handler = Callable[[httpx.Request], httpx.Response]
PNG = make_image(12, 7)


def run(flow: Generator[Any, Any, Any], handler: Handler, driver: str, **kwargs: Any) -> Any:
    """Drive ``flow`` with the chosen driver over a MockTransport (URLs from answers too: ``fetch``)."""
    if driver == "sync":
        with httpx.Client(transport=httpx.MockTransport(handler)) as http:
            return drive(flow, http, fetch=http, **kwargs)

    async def ahandler(request: httpx.Request) -> httpx.Response:
        await request.aread()
        return handler(request)

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(ahandler)) as http:
            return await adrive(flow, http, fetch=http, **kwargs)

    import anyio

    return anyio.run(main)


drivers = pytest.mark.parametrize("driver", ["sync", "async"])


@drivers
def test_answers_and_events_reach_the_flow(driver: str) -> None:
    seen: list[Event] = []

    def flow() -> Generator[Any, Any, str]:
        response = yield Send(httpx.Request("GET", "https://v.test/a"))
        yield Event("progress", status="running")
        yield Sleep(0)
        return str(read_json(response)["ok"])

    result = run(flow(), lambda r: httpx.Response(200, json={"ok": 1}), driver, on_event=seen.append)
    assert result == "1"
    assert [e.kind for e in seen] == ["progress"]


@drivers
def test_connect_error_is_thrown_in_as_not_sent(driver: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def flow() -> Generator[Any, Any, bool]:
        try:
            yield Send(httpx.Request("POST", "https://v.test/jobs"), admits=True)
        except ProviderUnavailable as exc:
            return exc.sent
        return True

    assert run(flow(), handler, driver) is False


@drivers
@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError])
def test_lost_answer_to_an_admitting_post_is_outcome_unknown(driver: str, failure: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure("gone", request=request)  # type: ignore[call-arg]

    def flow() -> Generator[Any, Any, None]:
        yield Send(httpx.Request("POST", "https://v.test/jobs"), admits=True)

    with pytest.raises(OutcomeUnknown) as caught:
        run(flow(), handler, driver)
    assert caught.value.billed == "unknown"
    assert caught.value.sent


@drivers
def test_the_same_failure_on_a_get_is_only_unavailability(driver: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def flow() -> Generator[Any, Any, None]:
        yield Send(httpx.Request("GET", "https://v.test/status"))

    with pytest.raises(ProviderUnavailable) as caught:
        run(flow(), handler, driver)
    assert not isinstance(caught.value, OutcomeUnknown)


@drivers
def test_body_over_the_cap_is_refused(driver: str) -> None:
    def flow() -> Generator[Any, Any, None]:
        yield Send(httpx.Request("GET", "https://v.test/big"), max_bytes=100)

    with pytest.raises(UnexpectedResponse, match="over 100 bytes"):
        run(flow(), lambda r: httpx.Response(200, content=b"x" * 101), driver)


@drivers
def test_a_passed_deadline_sends_nothing(driver: str) -> None:
    calls: list[httpx.Request] = []

    def flow() -> Generator[Any, Any, None]:
        yield Send(httpx.Request("POST", "https://v.test/jobs"), admits=True)

    with pytest.raises(ProviderUnavailable, match="deadline") as caught:
        run(flow(), lambda r: calls.append(r) or httpx.Response(200), driver, deadline=time.monotonic() - 1)
    assert calls == [] and caught.value.sent is False


@drivers
def test_the_deadline_becomes_the_read_timeout(driver: str) -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(request.extensions["timeout"])
        return httpx.Response(200)

    def flow() -> Generator[Any, Any, None]:
        yield Send(httpx.Request("GET", "https://v.test/a"), timeout=500)

    run(flow(), handler, driver, deadline=time.monotonic() + 3)
    assert 0 < seen["read"] <= 3 and seen["connect"] <= 3


@drivers
def test_sleep_is_bounded_by_the_deadline(driver: str) -> None:
    def flow() -> Generator[Any, Any, None]:
        yield Sleep(30)

    started = time.monotonic()
    run(flow(), lambda r: httpx.Response(200), driver, deadline=time.monotonic() + 0.05)
    assert time.monotonic() - started < 2


@drivers
def test_server_sent_events_are_read_one_at_a_time(driver: str) -> None:
    body = b': keep-alive\n\ndata: {"status": "IN_QUEUE"}\n\ndata: {"status": "COMPLETED"}\n\n'

    def flow() -> Generator[Any, Any, list[str]]:
        response = yield Send(httpx.Request("GET", "https://v.test/stream"), stream=True)
        seen = []
        while (event := (yield NextEvent(response))) is not None:
            seen.append(event.json()["status"])
        return seen

    handler = lambda r: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    assert run(flow(), handler, driver) == ["IN_QUEUE", "COMPLETED"]


@drivers
def test_reader_stream_body_arrives_whole_in_both_drivers(driver: str) -> None:
    payload = bytes(range(256)) * 1000
    received: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request.read())
        return httpx.Response(200)

    def flow() -> Generator[Any, Any, None]:
        import io

        stream = ReaderStream(lambda: io.BytesIO(payload), chunk_size=1000)
        yield Send(httpx.Request("POST", "https://v.test/up", stream=stream))

    run(flow(), handler, driver)
    assert received == [payload]


@drivers
def test_download_retries_on_its_own_and_checks_the_bytes(driver: str) -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, content=PNG[:-12]), httpx.Response(200, content=PNG)])
    image = run(download_image("https://cdn.test/o.png", seed=4), lambda r: next(answers), driver)
    assert image.data == PNG and (image.width, image.height, image.seed) == (12, 7, 4)
    assert image.content_type == "image/png" and image.sha256


@drivers
@pytest.mark.parametrize("status", [403, 404, 410])
def test_an_expired_image_url_is_final_and_billed(driver: str, status: int) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status)

    with pytest.raises(UnexpectedResponse) as caught:
        run(download_image("https://cdn.test/o.png"), handler, driver)
    assert caught.value.billed == "yes" and len(calls) == 1


def test_download_decodes_data_urls_without_io() -> None:
    import base64

    flow = download_image("data:image/png;base64," + base64.b64encode(PNG).decode())
    with pytest.raises(StopIteration) as stop:
        next(flow)
    assert stop.value.value.data == PNG


@drivers
def test_fetch_input_follows_bounded_redirects_and_checks_content(driver: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return httpx.Response(302, headers={"location": "/final.png"})
        return httpx.Response(200, content=PNG)

    fetched = run(fetch_input(ImageInput.of("https://img.test/start"), field="reference"), handler, driver)
    assert fetched.read() == PNG


@drivers
@pytest.mark.parametrize(
    ("handler", "words"),
    [
        (lambda r: httpx.Response(302, headers={"location": "/loop"}), "redirects"),
        (lambda r: httpx.Response(302, headers={"location": "file:///etc/passwd"}), "non-http"),
        (lambda r: httpx.Response(200, content=b"<html>"), "first bytes match none"),
        (lambda r: httpx.Response(404), "404"),
        (lambda r: httpx.Response(200, content=PNG + b"\0" * 200), "is over"),
    ],
)
def test_fetch_input_failures_name_the_field(driver: str, handler: Handler, words: str) -> None:
    """Every failure reads the same (what happened is on the cause, for debugging only)."""
    with pytest.raises(InvalidRequest) as caught:
        run(
            fetch_input(ImageInput.of("https://img.test/start"), field="reference", max_bytes=len(PNG) + 100),
            handler,
            driver,
        )
    assert caught.value.field == "reference"
    assert str(caught.value).startswith("reference: could not fetch the image at https://img.test/start (")
    assert words not in str(caught.value) and words in causes(caught.value)


def causes(exc: BaseException) -> str:
    """The text of every exception on ``exc``'s cause chain."""
    texts = []
    cause = exc.__cause__
    while cause is not None:
        texts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__
    return "\n".join(texts)


def test_image_complete_spots_truncation() -> None:
    for fmt in ("PNG", "JPEG", "WEBP"):
        data = make_image(30, 30, fmt)
        assert image_complete(data), fmt
        assert not image_complete(data[: len(data) // 2]), fmt


class _EndlessEvents(httpx.AsyncByteStream):
    """An event stream that sends one event and then stays open, as a server that never closes it."""

    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> Any:
        import anyio

        yield b'data: {"status": "COMPLETED"}\n\n'
        await anyio.sleep(3600)

    async def aclose(self) -> None:
        self.closed = True


def test_async_driver_closes_a_stream_left_open_after_a_short_grace() -> None:
    """The flow moved on; the stream does not end by itself: it is closed, and the job is not held up."""
    import anyio

    endless = _EndlessEvents()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/stream":
            return httpx.Response(200, stream=endless, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={"ok": True})

    def flow() -> Generator[Any, Any, Any]:
        response = yield Send(httpx.Request("GET", "https://v.test/stream"), stream=True)
        event = yield NextEvent(response)
        assert event is not None and event.json() == {"status": "COMPLETED"}
        return (yield Send(httpx.Request("GET", "https://v.test/result"))).json()

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await adrive(flow(), http)

    started = time.monotonic()
    assert anyio.run(main) == {"ok": True}
    assert endless.closed
    assert time.monotonic() - started < 1.0


def test_async_driver_reads_an_ending_stream_to_its_end() -> None:
    """A stream that ends after the event the flow wanted is read to its end, not cut off."""
    import anyio

    read_to_end: list[bool] = []

    class Ending(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            yield b'data: {"status": "COMPLETED"}\n\n'
            await anyio.sleep(0.005)  # the end comes a moment later, in its own packet
            yield b": the end\n\n"
            read_to_end.append(True)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/stream":
            return httpx.Response(200, stream=Ending(), headers={"content-type": "text/event-stream"})
        return httpx.Response(204)

    def flow() -> Generator[Any, Any, int]:
        response = yield Send(httpx.Request("GET", "https://v.test/stream"), stream=True)
        yield NextEvent(response)
        return (yield Send(httpx.Request("GET", "https://v.test/next"))).status_code

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await adrive(flow(), http)

    assert anyio.run(main) == 204
    assert read_to_end == [True]


@pytest.mark.parametrize(("size", "hops"), [(1000, False), (INLINE_READ_BYTES + 1, True)])
def test_async_reader_stream_uses_threads_for_large_bodies_only(
    monkeypatch: pytest.MonkeyPatch, size: int, hops: bool
) -> None:
    import io

    import anyio
    import anyio.to_thread

    calls: list[object] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    payload = bytes(range(256)) * (size // 256 + 1)
    stream = ReaderStream(lambda: io.BytesIO(payload), chunk_size=64 * 1024, size=len(payload))

    async def main() -> bytes:
        return b"".join([chunk async for chunk in stream])

    assert anyio.run(main) == payload
    assert bool(calls) is hops


def test_chunk_reader_joins_small_pieces_up_to_the_size_asked() -> None:
    """The JSON text and a data URI's prefix are tiny: each read joins them so a thread hop carries more."""
    closed: list[bool] = []

    class Handle:
        def close(self) -> None:
            closed.append(True)

    reader = ChunkReader(iter([b"a", b"", b"bc", b"def", b"g"]), closing=[Handle()])
    assert [reader.read(3), reader.read(3), reader.read(3), reader.read(3)] == [b"abc", b"def", b"g", b""]
    assert ChunkReader(iter([b"x", b"yz"])).read() == b"xyz"
    reader.close()
    assert closed == [True]


def test_an_image_is_hashed_only_when_its_digest_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    import ideochar.result

    hashed: list[int] = []
    real = hashlib.sha256

    def counting(data: bytes = b"") -> Any:
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(ideochar.result.hashlib, "sha256", counting)
    image = image_from_bytes(PNG)
    assert hashed == []
    assert image.sha256 == real(PNG).hexdigest() == image.model_dump()["sha256"]
    assert hashed == [len(PNG)]  # once, then remembered

"""The sans-IO protocol between providers and clients, and the two drivers that run it.

A provider's :meth:`~ideochar.spec.Provider.exchange` is a generator. It yields *steps* and receives
their answers::

    response = yield Send(httpx.Request("POST", url, json=payload), admits=True)
    yield Event("submitted", vendor_request_id=...)      # answered with None
    yield Sleep(0.25)                                     # answered with None
    event = yield NextEvent(stream_response)              # a server-sent event, or None at the end

:func:`drive` (with ``httpx.Client``) and :func:`adrive` (with ``httpx.AsyncClient``) are the only
code that performs I/O. They bound every call by the job's deadline, cap every body, and translate
transport failures into ideochar errors *thrown into the generator*, so vendor logic can react (a
poll may be repeated) or let them propagate. Whether a failure may have reached the vendor is decided
here, once: a connect error never did (``sent=False``, safe to repeat); a timeout or a dropped
connection after a ``Send(admits=True)`` may have created a billable job, so it becomes
:class:`~ideochar.errors.OutcomeUnknown`, never a silent retry. A URL that came from a caller's input or
a vendor's answer (``Send(untrusted_url=True)``) is sent through the driver's ``fetch`` client instead of
the vendor client: it refuses private addresses at every connection (:mod:`ideochar._netguard`).

The helpers below (:func:`download_image`, :func:`fetch_input`, :func:`read_json`) are exchanges too,
used with ``yield from``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
from httpx_sse import EventSource, ServerSentEvent

from ideochar._constants import (
    CONNECT_TIMEOUT_SECONDS,
    DOWNLOAD_ATTEMPTS,
    FETCH_READ_TIMEOUT_SECONDS,
    INLINE_READ_BYTES,
    MAX_DOWNLOAD_BYTES,
    MAX_REDIRECTS,
    MAX_REFERENCE_BYTES,
    READ_CHUNK_BYTES,
    STREAM_DRAIN_SECONDS,
)
from ideochar.errors import (
    IdeocharError,
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.media import CONTENT_TYPES, ImageInput, sniff_format
from ideochar.result import GeneratedImage
from ideochar.retry import backoff_seconds
from ideochar.spec import Exchange

__all__ = [
    "ChunkReader",
    "NextEvent",
    "ReaderStream",
    "Send",
    "ServerSentEvent",
    "Sleep",
    "Step",
    "adrive",
    "download_image",
    "drive",
    "fetch_input",
    "image_complete",
    "map_transport_error",
    "read_json",
    "relay",
]

T = TypeVar("T")
_C = TypeVar("_C", httpx.Client, httpx.AsyncClient)


@dataclass(frozen=True)
class Send:
    """Send one HTTP request; the answer is an ``httpx.Response`` with its body read (unless ``stream``)."""

    request: httpx.Request
    admits: bool = False
    """True for a request that may create a billable job: never repeated, a lost answer is OutcomeUnknown."""
    stream: bool = False
    """Return the response unread, for :class:`NextEvent` (server-sent events). The driver closes it when
    the flow sends its next request or ends: a flow is done with a stream once it moves on, and holding
    its connection meanwhile would need two per job (1,000 jobs would exhaust the pool)."""
    timeout: float | None = None
    """Read timeout for this call, further bounded by the job's deadline."""
    max_bytes: int = MAX_DOWNLOAD_BYTES
    """A body larger than this is refused (UnexpectedResponse) instead of filling memory."""
    marker: Mapping[str, Any] | None = None
    """For an admitting request: what identifies the job it creates in the vendor's own listing (JSON-safe,
    no key). The router journals it with the intent to send, so a job whose answer was lost can be found
    again by :meth:`~ideochar.spec.Provider.reconcile`."""
    untrusted_url: bool = False
    """The URL came from a caller's input or a vendor's answer, not from a configured base URL: the driver
    sends it through its ``fetch`` client, which refuses private addresses at every connection
    (:mod:`ideochar._netguard`). :func:`download_image` and :func:`fetch_input` set it."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class NextEvent:
    """Read the next server-sent event from a ``Send(stream=True)`` response; None when it ends."""

    response: httpx.Response


Step = Send | Sleep | NextEvent | Event


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ReaderStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A request body read in chunks from a file-like object (a multipart encoder, an open file).

    It serves both drivers: the async one reads each chunk in a worker thread, so a 10 MB upload
    neither sits in memory whole nor blocks the event loop. A body known to be small (``size``) is read
    on the loop instead: a thousand jobs in flight would otherwise pay a thread hop per chunk.
    """

    def __init__(
        self, open_reader: Callable[[], _Reader], chunk_size: int = READ_CHUNK_BYTES, *, size: int | None = None
    ) -> None:
        self._open = open_reader
        self._chunk = chunk_size
        self._size = size

    def __iter__(self) -> Iterator[bytes]:
        reader = self._open()
        try:
            while chunk := reader.read(self._chunk):
                yield chunk
        finally:
            _close(reader)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._size is not None and self._size <= INLINE_READ_BYTES:
            for chunk in self:
                yield chunk
            return
        import anyio.to_thread

        reader = await anyio.to_thread.run_sync(self._open)
        try:
            while chunk := await anyio.to_thread.run_sync(reader.read, self._chunk):
                yield chunk
        finally:
            _close(reader)


class ChunkReader:
    """A file-like ``read()`` over an iterator of chunks, for :class:`ReaderStream`.

    Each read joins the next chunks up to about the size asked: the small pieces of a body (JSON
    text, a data URI's prefix, a multipart part's headers) would otherwise cost the async driver a
    thread hop each. ``closing`` are closed with the reader (the files a body opened).
    """

    def __init__(self, chunks: Iterator[bytes], *, closing: Sequence[Any] = ()) -> None:
        self._chunks = chunks
        self._closing = closing

    def read(self, size: int = -1, /) -> bytes:
        pieces: list[bytes] = []
        held = 0
        for chunk in self._chunks:
            pieces.append(chunk)
            held += len(chunk)
            if 0 <= size <= held:
                break
        return b"".join(pieces)

    def close(self) -> None:
        _close(self._chunks)
        for item in self._closing:
            _close(item)


def _close(reader: object) -> None:
    close = getattr(reader, "close", None)
    if callable(close):
        close()


# -- composing flows ---------------------------------------------------------------------------------


def relay(
    flow: Generator[Any, Any, T], take: Callable[[Any], Generator[Any, Any, Any] | None]
) -> Generator[Any, Any, T]:
    """Run ``flow`` inside another flow, letting ``take`` handle some of its steps on the way out.

    ``take(step)`` returns None to pass the step on unchanged, or a sub-flow that handles it (it may
    yield steps of its own first, then pass the step on); the sub-flow's return value is the answer the
    inner flow receives. Whatever fails on the way out (the driver's error, a sub-flow's) is thrown
    into the inner flow, which may handle it or let it propagate. This is how the router watches a
    provider's wire and the job journals the router's facts, each layer a few lines, none re-writing
    the loop.
    """
    answer: Any = None
    failure: BaseException | None = None
    try:
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(answer)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            answer, failure = None, None
            try:
                handler = take(step)
                answer = (yield step) if handler is None else (yield from handler)
            except GeneratorExit:
                raise
            except BaseException as exc:
                failure = exc
    finally:
        flow.close()


# -- transport failures ------------------------------------------------------------------------------


def map_transport_error(exc: httpx.HTTPError, step: Send) -> ProviderError:
    """Classify a transport failure by what it proves about the vendor having received the request."""
    method, url = step.request.method, step.request.url.copy_with(query=None)
    what = f"{method} {url}"
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol, httpx.ProxyError)):
        return ProviderUnavailable(f"could not connect for {what}: {_reason(exc)}", sent=False)
    if isinstance(exc, httpx.PoolTimeout):
        return ProviderUnavailable(f"no free connection for {what} in time", sent=False)
    if step.admits:
        return OutcomeUnknown(
            f"{what} was sent and no complete answer came ({_reason(exc)}); the job may be running and billed",
        )
    if isinstance(exc, httpx.TimeoutException):
        return ProviderUnavailable(f"{what} timed out ({_reason(exc)})")
    return ProviderUnavailable(f"{what} failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Deadline:
    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def timeout(self, step: Send) -> httpx.Timeout:
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            if step.admits:
                raise ProviderUnavailable("the job's deadline passed before it could be sent", sent=False)
            raise ProviderUnavailable(
                f"the job's deadline passed ({step.request.method} {step.request.url} not sent)", sent=False
            )
        read = step.timeout
        if remaining is not None:
            read = remaining if read is None else min(read, remaining)
        connect = CONNECT_TIMEOUT_SECONDS if remaining is None else min(CONNECT_TIMEOUT_SECONDS, remaining)
        return httpx.Timeout(read, connect=connect)

    def sleep_for(self, seconds: float) -> float:
        remaining = self.remaining()
        return max(0.0, seconds if remaining is None else min(seconds, remaining))

    def check(self, step: Send) -> None:
        """Fail as a read timeout would once the deadline has passed while an answer is still arriving.

        A read timeout bounds each read, not the whole body: a server that trickles a byte at a time
        satisfies every read and would hold a job past its deadline (found by tests/reliability).
        """
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise map_transport_error(httpx.ReadTimeout("the job's deadline passed while the answer arrived"), step)


def _prepare(step: Send, deadline: _Deadline) -> httpx.Request:
    request = step.request
    request.extensions = {**request.extensions, "timeout": deadline.timeout(step).as_dict()}
    if "host" not in request.headers and request.url.host:
        # httpx adds no headers to a request built with ``stream=`` (a streamed upload), and HTTP/1.1
        # refuses to send one without Host; in-memory transports do not care, real sockets do.
        request.headers["Host"] = request.url.netloc.decode("ascii")
    return request


class _ReadResponse(httpx.Response):
    """A finished response whose ``text`` never raises.

    httpx decodes ``text`` with the declared charset, and a charset that needs a byte-order mark
    (``utf-16``, ``utf-32``) over bytes without one raises UnicodeError even with replacement on: a
    vendor's or a proxy's wrong header would crash every error path that quotes the body. Such a body
    is read as UTF-8 with replacement characters instead (found by tests/reliability fuzzing).
    """

    @property
    def text(self) -> str:
        try:
            return super().text
        except UnicodeError:
            self.encoding = "utf-8"
            return super().text


def _finished(response: httpx.Response, body: bytes) -> httpx.Response:
    headers = [
        (k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "transfer-encoding")
    ]
    return _ReadResponse(response.status_code, headers=headers, content=body, request=response.request)


def _event_source(response: httpx.Response) -> EventSource:
    """Server-sent events are always UTF-8 (WHATWG HTML, 9.2.5), whatever charset the header claims."""
    response.encoding = "utf-8"
    return EventSource(response)


def _too_large(step: Send) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"the answer to {step.request.method} {step.request.url} is over {step.max_bytes:,} bytes"
    )


# -- the drivers -------------------------------------------------------------------------------------


def drive(
    flow: Generator[Any, Any, T],
    http: httpx.Client,
    *,
    deadline: float | None = None,
    on_event: Callable[[Event], None] | None = None,
    perform: Callable[[Any], Any] | None = None,
    fetch: httpx.Client | None = None,
    vendor_origin: Callable[[httpx.URL], bool] | None = None,
) -> T:
    """Run an exchange to its end with a blocking client. ``deadline`` is a ``time.monotonic()`` value.

    ``perform`` answers steps of other types than the four above: the client's own steps, which the
    router yields (waiting for a concurrency slot). Without it such a step is a programming error.
    ``fetch`` sends the ``Send(untrusted_url=True)`` steps (:func:`ideochar._netguard.fetch_client`);
    without it they are refused, never sent through ``http``.
    """
    limit = _Deadline(deadline)
    streams: dict[int, tuple[httpx.Response, Iterator[ServerSentEvent]]] = {}
    answer: Any = None
    failure: BaseException | None = None
    try:
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(answer)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            answer, failure = None, None
            try:
                answer = _perform(
                    step, _client_for(step, http, fetch, vendor_origin), limit, streams, on_event, perform
                )
            except IdeocharError as exc:  # the flow decides: repeat a poll, settle an attempt, stop the job
                failure = exc
    finally:
        flow.close()
        for response, _ in streams.values():
            response.close()


def _perform(
    step: Step,
    http: httpx.Client,
    limit: _Deadline,
    streams: dict[int, tuple[httpx.Response, Iterator[ServerSentEvent]]],
    on_event: Callable[[Event], None] | None,
    perform: Callable[[Any], Any] | None = None,
) -> Any:
    if isinstance(step, Event):
        if on_event is not None:
            on_event(step)
        return None
    if isinstance(step, Sleep):
        time.sleep(limit.sleep_for(step.seconds))
        return None
    if isinstance(step, NextEvent):
        entry = streams.get(id(step.response))
        if entry is None:
            raise UnexpectedResponse("NextEvent on a response that is not an open stream")
        response, events = entry
        limit.check(Send(response.request))
        try:
            return next(events, None)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, Send(response.request)) from exc
    if not isinstance(step, Send):
        return _other(step, perform)
    for stream, _ in streams.values():  # the flow moved on: free the streams' connections
        stream.close()
    streams.clear()
    request = _prepare(step, limit)
    try:
        response = http.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, step) from exc
    except httpx.InvalidURL as exc:  # a redirect's Location httpx cannot use (found by tests/reliability)
        raise map_transport_error(httpx.RemoteProtocolError(f"unusable Location header: {exc}"), step) from exc
    if step.stream:
        streams[id(response)] = (response, _event_source(response).iter_sse())
        return response
    try:
        chunks, total = [], 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > step.max_bytes:
                raise _too_large(step)
            chunks.append(chunk)
            limit.check(step)
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, step) from exc
    finally:
        response.close()
    return _finished(response, b"".join(chunks))


async def adrive(
    flow: Generator[Any, Any, T],
    http: httpx.AsyncClient,
    *,
    deadline: float | None = None,
    on_event: Callable[[Event], None] | None = None,
    perform: Callable[[Any], Awaitable[Any]] | None = None,
    fetch: httpx.AsyncClient | None = None,
    vendor_origin: Callable[[httpx.URL], bool] | None = None,
) -> T:
    """Run an exchange to its end with an async client; the same protocol as :func:`drive`."""
    import anyio

    limit = _Deadline(deadline)
    streams: dict[int, tuple[httpx.Response, AsyncIterator[ServerSentEvent]]] = {}
    answer: Any = None
    failure: BaseException | None = None
    try:
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(answer)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            answer, failure = None, None
            try:
                if isinstance(step, Event):
                    if on_event is not None:
                        on_event(step)
                elif isinstance(step, Sleep):
                    await anyio.sleep(limit.sleep_for(step.seconds))
                elif isinstance(step, NextEvent):
                    answer = await _anext_event(step, streams, limit)
                elif not isinstance(step, Send):
                    answer = await _other(step, perform)
                else:
                    answer = await _asend(step, _client_for(step, http, fetch, vendor_origin), limit, streams)
            except IdeocharError as exc:  # the flow decides: repeat a poll, settle an attempt, stop the job
                failure = exc
    finally:
        flow.close()
        for response, _ in streams.values():
            await response.aclose()


def _client_for(
    step: object, http: _C, fetch: _C | None, vendor_origin: Callable[[httpx.URL], bool] | None = None
) -> _C:
    """The vendor client, or the fetch client for a URL from an input or a vendor's answer.

    A URL on the origin of a base URL the caller configured (``vendor_origin``: the vendor's own files,
    the emulator's) goes straight through the vendor client: the fetch client would hand it there
    anyway, after a second pass through httpx (benchmark figure 2).
    """
    if not (isinstance(step, Send) and step.untrusted_url):
        return http
    if vendor_origin is not None and vendor_origin(step.request.url):
        return http
    if fetch is None:
        from ideochar._netguard import FetchRefused, display_url  # deferred: httpcore costs 12 ms to import

        cause = FetchRefused("the driver was given no fetch client for URLs from inputs and answers")
        raise ProviderUnavailable(
            f"{step.request.method} {display_url(step.request.url)} not sent", sent=False
        ) from cause
    return fetch


def _other(step: object, perform: Callable[[Any], T] | None) -> T:
    if perform is None:
        raise TypeError(f"the driver has no handler for the step {step!r}")
    return perform(step)


async def _anext_event(
    step: NextEvent, streams: dict[int, tuple[httpx.Response, AsyncIterator[ServerSentEvent]]], limit: _Deadline
) -> ServerSentEvent | None:
    entry = streams.get(id(step.response))
    if entry is None:
        raise UnexpectedResponse("NextEvent on a response that is not an open stream")
    response, events = entry
    limit.check(Send(response.request))
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, Send(response.request)) from exc


async def _asend(
    step: Send,
    http: httpx.AsyncClient,
    limit: _Deadline,
    streams: dict[int, tuple[httpx.Response, AsyncIterator[ServerSentEvent]]],
) -> httpx.Response:
    for stream, events in streams.values():  # the flow moved on: free the streams' connections
        await _finish_stream(stream, events, limit)
    streams.clear()
    request = _prepare(step, limit)
    try:
        response = await http.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, step) from exc
    except httpx.InvalidURL as exc:  # a redirect's Location httpx cannot use (found by tests/reliability)
        raise map_transport_error(httpx.RemoteProtocolError(f"unusable Location header: {exc}"), step) from exc
    if step.stream:
        streams[id(response)] = (response, _event_source(response).aiter_sse())
        return response
    try:
        chunks, total = [], 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > step.max_bytes:
                raise _too_large(step)
            chunks.append(chunk)
            limit.check(step)
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, step) from exc
    finally:
        await response.aclose()
    return _finished(response, b"".join(chunks))


async def _finish_stream(response: httpx.Response, events: AsyncIterator[ServerSentEvent], limit: _Deadline) -> None:
    """Read a finished stream's end if it comes at once, then close it.

    A stream read to its end leaves its connection reusable and its iterators finished; one closed
    halfway costs a new connection for the next request and a finaliser task per iterator, which is
    a good part of the client's work with a thousand jobs in flight (benchmark figure 4).
    """
    import anyio

    remaining = limit.remaining()
    grace = STREAM_DRAIN_SECONDS if remaining is None else max(0.0, min(STREAM_DRAIN_SECONDS, remaining))
    # A stream that breaks now is being discarded anyway: its connection is closed below.
    with contextlib.suppress(Exception), anyio.move_on_after(grace):
        async for _ in events:  # whatever still comes is not wanted: the flow has moved on
            pass
    await response.aclose()


# -- helpers shared by providers ---------------------------------------------------------------------


def read_json(response: httpx.Response) -> Any:
    """The JSON body, or UnexpectedResponse naming the status and the start of the body."""
    try:
        return response.json()
    except ValueError:
        snippet = response.text[:200] if response.content else "(empty)"
        kind = response.headers.get("content-type", "without a content type")
        raise UnexpectedResponse(
            f"expected JSON from {response.request.method} {response.request.url.copy_with(query=None)}, "
            f"got HTTP {response.status_code} {kind}: {snippet!r}",
            status=response.status_code,
            body=snippet,
        ) from None


def image_complete(data: bytes) -> bool:
    """Cheap check that an image was not cut short: the format's end marker is where it should be."""
    fmt = sniff_format(data[:16])
    if fmt == "png":
        return data.rstrip(b"\x00")[-8:-4] == b"IEND" or b"IEND" in data[-32:]
    if fmt == "jpeg":
        return data.rstrip(b"\x00\r\n")[-2:] == b"\xff\xd9"
    if fmt == "webp":
        return len(data) >= 12 and int.from_bytes(data[4:8], "little") + 8 <= len(data)
    return False


def _image_size(data: bytes, fmt: str) -> tuple[int | None, int | None]:
    import io

    from PIL import Image  # deferred: only needed once an image has arrived

    try:
        with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as img:
            return int(img.width), int(img.height)
    except Exception:
        return None, None


def image_from_bytes(
    data: bytes, *, seed: int | None = None, prompt: str | None = None, vendor_url: str | None = None
) -> GeneratedImage:
    """A :class:`GeneratedImage` from complete bytes (format sniffed, size read from the header)."""
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise UnexpectedResponse(f"the image is not JPEG, PNG or WebP (starts {data[:8]!r})", billed="yes")
    width, height = _image_size(data, fmt)
    return GeneratedImage(
        data=data,
        content_type=CONTENT_TYPES[fmt],
        width=width,
        height=height,
        seed=seed,
        vendor_url=vendor_url,
        prompt=prompt,
    )


def download_image(
    url: str,
    *,
    seed: int | None = None,
    prompt: str | None = None,
    attempts: int = DOWNLOAD_ATTEMPTS,
    headers: dict[str, str] | None = None,
) -> Exchange[GeneratedImage]:
    """Fetch a finished image (or decode a ``data:`` URL), retrying the GET on its own.

    A failed download never reruns the paid generation: transport errors, 5xx, 429 and truncated
    bodies are retried here with backoff; an expired URL (403/404/410), a refused address and a body
    that is not an image are final. Errors say the image was billed.

    The URL is a vendor's answer, so it is fetched as one (``Send(untrusted_url=True)``: checked at
    every connection, :mod:`ideochar._netguard`), each read bounded even without a deadline, and every
    failure reads the same, "could not fetch the image at URL": what happened (a status, a refused
    address, a closed port) is on ``__cause__`` for debugging, never in the message.
    """
    if url.startswith("data:"):
        try:
            data = ImageInput.of(url).read()
        except InvalidRequest as exc:
            raise UnexpectedResponse(f"the vendor's data URL is unusable: {exc}", billed="yes") from None
        if not image_complete(data):  # a bare signature sniffs as an image (found by reliability fuzzing)
            raise UnexpectedResponse("the vendor's data URL holds a truncated image", billed="yes")
        return image_from_bytes(data, seed=seed, prompt=prompt)
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:  # not an HTTPError: it would escape every caller (found by fuzzing)
        raise _download_failed(url, UnexpectedResponse(f"unusable URL: {exc}"))
    if target.scheme not in ("http", "https"):
        raise _download_failed(url, UnexpectedResponse(f"not an http(s) URL: {target.scheme!r}"))
    last: ProviderError | None = None
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            yield Sleep(backoff_seconds(attempt - 1))
        request = httpx.Request("GET", target, headers=headers)
        try:
            response = yield Send(request, untrusted_url=True, timeout=FETCH_READ_TIMEOUT_SECONDS)
        except ProviderUnavailable as exc:
            if _refused(exc):
                raise _download_failed(url, exc)
            last = exc
            continue
        except UnexpectedResponse as exc:  # larger than a download may be
            raise _download_failed(url, exc)
        status = response.status_code
        if status == 429 or status >= 500:
            last = UnexpectedResponse(f"answered HTTP {status}", status=status)
            continue
        if status != 200:  # 403/404/410: expired or removed; anything else: not an answer we can use
            what = "expired or removed" if status in (403, 404, 410) else "not an image"
            raise _download_failed(url, UnexpectedResponse(f"answered HTTP {status} ({what})", status=status))
        data = response.content
        if sniff_format(data[:16]) is None:
            kind = response.headers.get("content-type", "no content type")
            raise _download_failed(url, UnexpectedResponse(f"not an image ({kind})", status=status))
        if not image_complete(data):
            last = UnexpectedResponse("the image is truncated", status=status)
            continue
        return image_from_bytes(data, seed=seed, prompt=prompt, vendor_url=url)
    assert last is not None
    raise _download_failed(url, last)


def _refused(exc: BaseException) -> bool:
    from ideochar._netguard import refused_by_guard  # deferred: httpcore costs 12 ms to import

    return refused_by_guard(exc)


def _download_failed(url: str, cause: ProviderError) -> ProviderError:
    """The one message for a vendor image that could not be fetched, as an error of the cause's type
    (a transport failure stays ProviderUnavailable), billed: the generation it came from was paid for.
    Always ``sent``: the image exists because a request was sent, and a "not sent" download failure would
    let the router repeat that paid request."""
    from ideochar._netguard import display_url

    kind = ProviderUnavailable if isinstance(cause, ProviderUnavailable) else UnexpectedResponse
    error = kind(f"could not fetch the image at {display_url(url)}", billed="yes")
    error.__cause__ = cause
    return error


def fetch_input(image: ImageInput, *, field: str, max_bytes: int = MAX_REFERENCE_BYTES) -> Exchange[ImageInput]:
    """Bring a URL input here, for vendors that need the bytes (multipart uploads).

    http(s) only at every hop, at most ``MAX_REDIRECTS`` redirects, at most ``max_bytes``, bounded by
    the job's deadline and by a fetch's own timeouts, and the bytes must be JPEG, PNG or WebP. Every hop
    is ``Send(untrusted_url=True)``: a caller's URL may point anywhere (:mod:`ideochar._netguard`).
    Failures are the caller's input problem, so they raise InvalidRequest naming ``field`` (nothing has
    been billed yet), and all read the same: what happened is on ``__cause__``, never in the message, so
    a caller cannot map a network through our errors.
    """
    if image.is_local:
        return image
    url = image.url or ""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            request = httpx.Request("GET", url)
        except httpx.InvalidURL as exc:  # a redirect's Location we cannot use
            raise _input_failed(image, field, max_bytes, exc)
        try:
            response = yield Send(request, max_bytes=max_bytes, untrusted_url=True, timeout=FETCH_READ_TIMEOUT_SECONDS)
        except ProviderError as exc:  # refused, unreachable, too slow, too large
            raise _input_failed(image, field, max_bytes, exc)
        if response.is_redirect:
            try:
                url = str(response.request.url.join(response.headers.get("location", "")))
            except httpx.InvalidURL as exc:
                raise _input_failed(image, field, max_bytes, exc)
            if not url.lower().startswith(("http://", "https://")):
                raise _input_failed(image, field, max_bytes, _fetch_failed(f"redirected to a non-http(s) URL: {url}"))
            continue
        if response.status_code != 200:
            raise _input_failed(image, field, max_bytes, _fetch_failed(f"answered HTTP {response.status_code}"))
        try:
            return ImageInput.of(response.content)
        except InvalidRequest as exc:
            raise _input_failed(image, field, max_bytes, exc)
    raise _input_failed(image, field, max_bytes, _fetch_failed(f"more than {MAX_REDIRECTS} redirects"))


def _input_failed(image: ImageInput, field: str, max_bytes: int, cause: BaseException) -> InvalidRequest:
    """The one message for a URL input that could not be fetched, whatever happened (kept as the cause)."""
    from ideochar._netguard import display_url

    error = InvalidRequest.for_field(
        field,
        f"could not fetch the image at {display_url(image.url or '')} (a public http(s) URL of a JPEG, PNG "
        f"or WebP image of at most {max_bytes:,} bytes is needed)",
    )
    error.__cause__ = cause
    return error


def _fetch_failed(detail: str) -> Exception:
    from ideochar._netguard import FetchFailed

    return FetchFailed(detail)


def decode_base64_image(text: str) -> bytes:
    """Decode a bare base64 image some vendors return; UnexpectedResponse when it is not."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UnexpectedResponse("the vendor returned an image that is not valid base64", billed="yes") from None

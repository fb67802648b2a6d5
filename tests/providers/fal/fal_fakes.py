"""A fake fal for exchange tests: a handler function that speaks the queue protocol (a function is a
server, as with httpx's MockTransport), plus helpers to run an exchange with either driver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from conftest import CANARY_KEY, make_image
from ideochar._secrets import Secret
from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.spec import CallContext, Exchange
from ideochar_fal.provider import INFO, FalOptions

QUEUE = "https://queue.fal.run"
RUN = "https://fal.run"
CDN = "https://v3.fal.media"
REST = "https://rest.fal.ai"
PLATFORM = "https://api.fal.ai"
#: Where the fake's initiated uploads are PUT (a signed URL on another host, as GCS's are).
SIGNED = "https://storage.googleapis.com"
REF_URL = "https://v3.fal.media/files/koala/reference.png"


def context(options: FalOptions | None = None, *, key: str = CANARY_KEY, **base_urls: str) -> CallContext:
    return CallContext(
        provider="fal",
        credentials=Secret(key),
        base_urls={**INFO.base_urls, **base_urls},
        options=options or FalOptions(),
        user_agent="ideochar/test",
    )


def sse(*documents: dict[str, Any], comment: bool = True) -> bytes:
    """A status stream as fal sends it: one ``data:`` event per document, keep-alive comments between."""
    parts = [": keep-alive\n\n"] if comment else []
    parts += [f"data: {json.dumps(doc)}\n\n" for doc in documents]
    return "".join(parts).encode()


class BrokenStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Sends ``first`` and then drops the connection (works for both drivers)."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset by peer")


Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeFal:
    """A scripted fal. Unscripted steps answer like a healthy fal; every request is kept in ``requests``."""

    request_id: str = "764cabcf-b745-4b3e-ae38-1200304cf45b"
    queue: str = QUEUE
    submit: Answer | None = None
    stream: Answer | list[dict[str, Any]] | None = None
    polls: list[Answer] = field(default_factory=list)
    result: Answer | None = None
    run: Answer | None = None
    cancel: Answer | None = None
    images: dict[str, Answer] = field(default_factory=dict)
    num_images: int = 1
    seed: int = 123456
    requests: list[httpx.Request] = field(default_factory=list)
    token: Answer | None = None
    """``POST {rest}/storage/auth/token``; default: a CDN token on v3.fal.media."""
    cdn_upload: Answer | None = None
    """``POST {cdn}/files/upload``; default: ``{"access_url": .../files/upload-N.png}``."""
    initiate: Answer | None = None
    put: Answer | None = None
    pricing: Answer | None = None
    uploaded: list[bytes] = field(default_factory=list)
    """Bytes received by the CDN upload and by the signed PUT, in order."""

    # -- documented default answers ------------------------------------------------------------------

    @property
    def job(self) -> str:
        return f"{self.queue}/fal-ai/ideogram/requests/{self.request_id}"

    def submitted(self) -> dict[str, Any]:
        return {
            "status": "IN_QUEUE",
            "request_id": self.request_id,
            "response_url": self.job,
            "status_url": f"{self.job}/status",
            "cancel_url": f"{self.job}/cancel",
            "queue_position": 0,
        }

    def completed(self, **extra: Any) -> dict[str, Any]:
        return {
            "status": "COMPLETED",
            "logs": [],
            "metrics": {"inference_time": 4.2},
            "response_url": self.job,
            **extra,
        }

    def output(self) -> dict[str, Any]:
        return {
            "images": [
                {"url": f"{CDN}/files/panda/out-{i}.png", "content_type": "image/png", "file_name": f"out-{i}.png"}
                for i in range(self.num_images)
            ],
            "seed": self.seed,
        }

    # -- the server ----------------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url, path, method = request.url, request.url.path, request.method
        if url.host == "rest.fal.ai" and path == "/storage/auth/token":
            return self._answer(self.token, self._token)(request)
        if url.host == "rest.fal.ai" and path == "/storage/upload/initiate":
            return self._answer(self.initiate, self._initiated)(request)
        if url.host == "v3.fal.media" and path == "/files/upload":
            return self._answer(self.cdn_upload, lambda: self._stored(request, "access_url"))(request)
        if url.host == "storage.googleapis.com" and method == "PUT":
            return self._answer(self.put, lambda: self._stored(request, None))(request)
        if url.host == "api.fal.ai":
            return self._answer(self.pricing, self._prices)(request)
        if url.host == "v3.fal.media":
            return self._answer(self.images.get(str(url)), lambda: _png_response())(request)
        if url.host == "fal.run" and method == "POST":
            return self._answer(self.run, lambda: httpx.Response(200, json=self.output(), headers=_rid(self)))(request)
        if method == "POST":
            return self._answer(self.submit, lambda: httpx.Response(200, json=self.submitted()))(request)
        if method == "PUT" and path.endswith("/cancel"):
            return self._answer(self.cancel, lambda: httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"}))(
                request
            )
        if path.endswith("/status/stream"):
            if self.stream is None or isinstance(self.stream, list):
                docs = self.stream if self.stream is not None else self._default_stream()
                return httpx.Response(200, content=sse(*docs), headers={"content-type": "text/event-stream"})
            return self._answer(self.stream, lambda: httpx.Response(404))(request)
        if path.endswith("/status"):
            if self.polls:
                return self._answer(self.polls.pop(0), lambda: httpx.Response(500))(request)
            return httpx.Response(200, json=self.completed(), headers=_rid(self))
        if path.endswith(f"/requests/{self.request_id}"):
            return self._answer(self.result, lambda: httpx.Response(200, json=self.output(), headers=_rid(self)))(
                request
            )
        return httpx.Response(404, json={"detail": f"no route for {method} {path}"})

    # -- storage and pricing ----------------------------------------------------------------------------

    @staticmethod
    def _token() -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "token": "cdn-token-7d1e",
                "token_type": "Bearer",
                "base_url": CDN,
                "expires_at": "2999-01-01T00:00:00+00:00",
            },
        )

    def _stored(self, request: httpx.Request, key: str | None) -> httpx.Response:
        self.uploaded.append(request.read())
        if key is None:
            return httpx.Response(200)
        return httpx.Response(200, json={key: f"{CDN}/files/upload-{len(self.uploaded)}.png"})

    def _initiated(self) -> httpx.Response:
        number = len(self.uploaded) + 1
        return httpx.Response(
            200,
            json={"upload_url": f"{SIGNED}/put/{number}?sig=abc", "file_url": f"{CDN}/files/initiated-{number}.png"},
        )

    @staticmethod
    def _prices() -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "prices": [
                    {"endpoint_id": "fal-ai/ideogram/character", "unit_price": 0.12, "unit": "image", "currency": "USD"}
                ],
                "next_cursor": None,
                "has_more": False,
            },
        )

    def _default_stream(self) -> list[dict[str, Any]]:
        return [
            {"status": "IN_QUEUE", "queue_position": 2, "response_url": self.job},
            {"status": "IN_QUEUE", "queue_position": 0, "response_url": self.job},
            {"status": "IN_PROGRESS", "logs": [], "response_url": self.job},
            self.completed(),
        ]

    @staticmethod
    def _answer(
        answer: Answer | None, default: Callable[[], httpx.Response]
    ) -> Callable[[httpx.Request], httpx.Response]:
        if answer is None:
            return lambda request: default()
        if isinstance(answer, httpx.Response):  # a fresh copy each time: a response is read once
            return lambda request: httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)
        return answer

    # -- what was sent -------------------------------------------------------------------------------

    def sent(self, method: str, contains: str = "") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and contains in str(r.url)]

    def submit_body(self) -> dict[str, Any]:
        (post,) = [r for r in self.sent("POST") if r.url.host in ("queue.fal.run", "fal.run")]
        return json.loads(post.content)  # type: ignore[no-any-return]


def _rid(fake: FakeFal) -> dict[str, str]:
    return {"x-fal-request-id": fake.request_id}


def _png_response(width: int = 64, height: int = 48) -> httpx.Response:
    return httpx.Response(200, content=make_image(width, height, "PNG"), headers={"content-type": "image/png"})


# -- running an exchange with either driver -------------------------------------------------------------


Runner = Callable[[Exchange[Any], Callable[[httpx.Request], httpx.Response], list[Event]], Any]


def run_sync(flow: Exchange[Any], handler: Callable[[httpx.Request], httpx.Response], events: list[Event]) -> Any:
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        return drive(flow, http, on_event=events.append, fetch=http)


def run_async(flow: Exchange[Any], handler: Callable[[httpx.Request], httpx.Response], events: list[Event]) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await adrive(flow, http, on_event=events.append, fetch=http)

    return anyio.run(main)


RUNNERS: dict[str, Runner] = {"drive": run_sync, "adrive": run_async}

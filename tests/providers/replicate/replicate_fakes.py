"""A scripted Replicate for ``httpx.MockTransport``, and a runner over both drivers.

The fake answers the create request with the first scripted prediction status and each later
``GET /v1/predictions/{id}`` with the next one, and ``GET /v1/predictions`` (the list) with its
``listing`` answers in turn (an empty page by default); it records every request so tests can assert
what went on the wire (and what did not: a second POST, a token sent elsewhere).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import httpx
from PIL import Image

from ideochar._secrets import Secret
from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.spec import CallContext, Exchange
from ideochar_replicate.mapping import ReplicateOptions
from ideochar_replicate.provider import ReplicateProvider

API = "https://api.replicate.com"
CREATE_URL = f"{API}/v1/models/ideogram-ai/ideogram-character/predictions"
OUTPUT_URL = "https://replicate.delivery/xezq/abc123/output.png"
TOKEN = "r8_canaryTOKEN5f3a9c1e7b2d4068a1c3"
PREDICTION_ID = "q9r2m1d5xhrj00cs0v8t2b3k7c"
LOGS = "Using seed: 144578042\nGenerating...\nPrompt used: A striking fashion photograph of a woman\n"

Driver = Literal["sync", "async"]
DRIVERS: tuple[Driver, ...] = ("sync", "async")


def png_bytes(width: int = 48, height: int = 48, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def noisy_png(min_bytes: int) -> bytes:
    """A real PNG of random pixels (incompressible), at least ``min_bytes`` long."""
    side = int((min_bytes / 3) ** 0.5) + 16
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=0)
    data = buffer.getvalue()
    assert len(data) >= min_bytes
    return data


def prediction(status: str, prediction_id: str = PREDICTION_ID, **fields: Any) -> dict[str, Any]:
    """A prediction object shaped like Replicate's (documented fields, realistic values)."""
    body: dict[str, Any] = {
        "id": prediction_id,
        "model": "ideogram-ai/ideogram-character",
        "version": "1f8e198263a0d8171b76c55907c294e933e1e7d55e2d0c54f319c0e4a42c723d",
        "input": {"prompt": "a close up photo of a woman in a fashion magazine photoshoot"},
        "logs": "",
        "output": None,
        "data_removed": False,
        "error": None,
        "status": status,
        "created_at": "2026-01-10T16:19:34.765994Z",
        "urls": {
            "get": f"{API}/v1/predictions/{prediction_id}",
            "cancel": f"{API}/v1/predictions/{prediction_id}/cancel",
            "stream": f"https://stream.replicate.com/v1/files/{prediction_id}",
            "web": f"https://replicate.com/p/{prediction_id}",
        },
    }
    if status == "succeeded":
        body.update(output=OUTPUT_URL, logs=LOGS, metrics={"predict_time": 14.48})
    body.update(fields)
    return body


Answer = httpx.Response | Callable[[httpx.Request], httpx.Response] | BaseException


@dataclass
class FakeReplicate:
    """Scripted answers: ``create`` for the POST, ``polls`` in order for each GET of the prediction."""

    create: Answer = field(default_factory=lambda: httpx.Response(201, json=prediction("succeeded")))
    polls: Sequence[Answer] = ()
    image: bytes = field(default_factory=png_bytes)
    upload: Answer | None = None
    cancel: Answer = field(default_factory=lambda: httpx.Response(200, json=prediction("canceled")))
    listing: Sequence[Answer] = (lambda request: page(),)
    requests: list[httpx.Request] = field(default_factory=list)
    _poll_index: int = 0
    _list_index: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path.endswith("/ideogram-character/predictions"):
            return self._answer(self.create, request)
        if request.method == "POST" and path == "/v1/files":
            return self._answer(self.upload or _upload_answer, request)
        if request.method == "POST" and path.endswith("/cancel"):
            return self._answer(self.cancel, request)
        if request.method == "GET" and path == "/v1/predictions":
            answer = self.listing[min(self._list_index, len(self.listing) - 1)]
            self._list_index += 1
            return self._answer(answer, request)
        if request.method == "GET" and path.startswith("/v1/predictions/"):
            answer = self.polls[min(self._poll_index, len(self.polls) - 1)]
            self._poll_index += 1
            return self._answer(answer, request)
        if request.method == "GET" and request.url.host == "replicate.delivery":
            return httpx.Response(200, content=self.image, headers={"content-type": "image/png"})
        return httpx.Response(404, json={"detail": "Not found.", "status": 404})

    @staticmethod
    def _answer(answer: Answer, request: httpx.Request) -> httpx.Response:
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def sent(self, method: str, path_end: str = "") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.endswith(path_end)]

    @property
    def creates(self) -> list[httpx.Request]:
        return self.sent("POST", "/ideogram-character/predictions")

    def create_body(self) -> dict[str, Any]:
        (request,) = self.creates
        return json.loads(request.content)  # type: ignore[no-any-return]

    @property
    def lists(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "GET" and r.url.path == "/v1/predictions"]


def page(*items: dict[str, Any], next_url: str | None = None) -> httpx.Response:
    """One page of ``GET /v1/predictions`` [V shape: ``next``, ``previous``, ``results``]."""
    return httpx.Response(200, json={"next": next_url, "previous": None, "results": list(items)})


def _upload_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        201,
        json={
            "id": "ZjA0N2Q5ZGItNmNhNS00ZTM2",
            "name": "reference.png",
            "content_type": "image/png",
            "size": len(request.content),
            "etag": "b7e2f9",
            "checksums": {"sha256": "00"},
            "metadata": {},
            "created_at": "2026-01-10T16:19:30Z",
            "expires_at": "2026-01-11T16:19:30Z",
            "urls": {"get": f"{API}/v1/files/ZjA0N2Q5ZGItNmNhNS00ZTM2"},
        },
    )


def context(**options: Any) -> CallContext:
    return CallContext(
        provider="replicate",
        credentials=Secret(TOKEN),
        base_urls=dict(ReplicateProvider.info.base_urls),
        options=ReplicateOptions(**options),
    )


def run(
    driver: Driver,
    flow: Exchange[Any],
    handler: Callable[[httpx.Request], httpx.Response],
    events: list[Event] | None = None,
) -> Any:
    """Run ``flow`` to its end through ``drive`` or ``adrive`` over a MockTransport."""
    transport = httpx.MockTransport(handler)
    on_event = events.append if events is not None else None
    if driver == "sync":
        with httpx.Client(transport=transport) as http:
            return drive(flow, http, on_event=on_event, fetch=http)

    async def main() -> Any:
        async with httpx.AsyncClient(transport=transport) as http:
            return await adrive(flow, http, on_event=on_event, fetch=http)

    return anyio.run(main)

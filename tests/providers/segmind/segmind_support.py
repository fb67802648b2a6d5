"""Helpers shared by the Segmind tests: a call context, a runner over both drivers, a recording
server made of a handler function, and a multipart parser.

Deliberately not a ``conftest.py``: this folder is not a package, and a second module named
``conftest`` would shadow the root one for ``from conftest import ...`` elsewhere in the suite.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from PIL import Image

from ideochar._secrets import Secret
from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.router import provider_flow
from ideochar.spec import CallContext, Exchange, ProviderOutput
from ideochar_segmind.provider import INFO, SegmindOptions, SegmindProvider

API = "https://api.segmind.com"
#: Shaped like a real Segmind key (``SG_`` + 16 hex) so redaction is tested on a realistic value.
KEY = "SG_5f3a9c1e7b2d4068"

Handler = Callable[[httpx.Request], httpx.Response]


def make_image(width: int = 64, height: int = 48, fmt: str = "JPEG", color: str = "navy") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


JPEG = make_image()


def context(key: str = KEY, base: str = API, **options: Any) -> CallContext:
    return CallContext(
        provider="segmind",
        credentials=Secret(key),
        base_urls={**INFO.base_urls, "api": base},
        options=SegmindOptions(**options),
        user_agent="ideochar-test/0",
    )


def fast_v2(**extra: Any) -> CallContext:
    """v2 with polling fast enough for unit tests."""
    return context(mode="v2", poll_interval_seconds=0.001, poll_max_interval_seconds=0.002, **extra)


@dataclass
class Recorder:
    """A fake Segmind: a handler function, plus every request it saw (body read)."""

    handler: Handler
    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.handler(request)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.host}{r.url.path}" for r in self.seen]


def run_flow(driver: str, flow: Exchange[ProviderOutput], handler: Handler, events: list[Event] | None = None) -> Any:
    """Run an exchange with ``drive`` or ``adrive`` over ``httpx.MockTransport(handler)``."""
    on_event = events.append if events is not None else None
    transport = httpx.MockTransport(handler)
    if driver == "drive":
        with httpx.Client(transport=transport) as http:
            return drive(flow, http, on_event=on_event, fetch=http)

    async def main() -> Any:
        async with httpx.AsyncClient(transport=transport) as http:
            return await adrive(flow, http, on_event=on_event, fetch=http)

    return anyio.run(main)


def exchange_flow(provider: SegmindProvider, request: Any, ctx: CallContext) -> Exchange[ProviderOutput]:
    """The provider's exchange as the router runs it (events and errors stamped with the provider)."""
    return provider_flow(provider, provider.exchange(request, ctx), ctx)


@dataclass(frozen=True)
class FormPart:
    value: bytes
    filename: str | None
    content_type: str | None

    @property
    def text(self) -> str:
        return self.value.decode()


def parse_form(content_type: str, body: bytes) -> dict[str, FormPart]:
    """Parse a multipart/form-data body back into its parts with the stdlib ``email`` parser."""
    import email
    import email.policy

    message = email.message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body,
        policy=email.policy.HTTP,
    )
    assert message.is_multipart(), "the body is not multipart"
    parts: dict[str, FormPart] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str) and name not in parts, f"bad or repeated part name {name!r}"
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        declared = part.get("content-type")
        parts[name] = FormPart(payload, part.get_filename(), str(declared) if declared else None)
    return parts

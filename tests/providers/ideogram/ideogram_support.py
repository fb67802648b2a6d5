"""Helpers shared by the Ideogram tests: a call context, a runner over both drivers, a fake Ideogram
made of a handler function, a multipart parser, and Ideogram's documented example bodies.

Deliberately not a ``conftest.py``: this folder is not a package, and a second module named
``conftest`` would shadow the root one for ``from conftest import ...`` elsewhere in the suite.
"""

from __future__ import annotations

import email
import email.policy
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import httpx
from PIL import Image

from ideochar._secrets import Secret
from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.router import provider_flow
from ideochar.spec import CallContext, Exchange, ProviderOutput
from ideochar_ideogram.provider import INFO, IdeogramOptions, IdeogramProvider

API = "https://api.ideogram.ai"
#: Key-shaped, so tests that prove the key never leaks search for a realistic value.
KEY = "canary-KEY-5f3a9c1e7b2d4068a1c3e5f7"
#: The ephemeral URL shape of Ideogram's documented example (signed, expiring).
IMAGE_URL = (
    "https://ideogram.ai/api/images/ephemeral/xtdZiqPwRxqY1Y7NExFmzB.png"
    "?exp=1743867804&sig=e13e12677633f646d8531a153d20e2d3698dca9ee7661ee5ba4f3b64e7ec3f89"
)

Driver = Literal["drive", "adrive"]
DRIVERS: tuple[Driver, ...] = ("drive", "adrive")
Handler = Callable[[httpx.Request], httpx.Response]


def make_image(width: int = 64, height: int = 48, fmt: str = "PNG", color: str = "navy") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def context(key: str = KEY, base: str = API, **options: Any) -> CallContext:
    return CallContext(
        provider="ideogram",
        credentials=Secret(key),
        base_urls={**INFO.base_urls, "api": base},
        options=IdeogramOptions(**options),
        user_agent="ideochar-test/0",
    )


def run(driver: Driver, flow: Exchange[ProviderOutput], handler: Handler, events: list[Event] | None = None) -> Any:
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


def exchange_flow(request: Any, ctx: CallContext | None = None) -> Exchange[ProviderOutput]:
    """The provider's exchange as the router runs it (events and errors stamped with the provider)."""
    provider = IdeogramProvider()
    ctx = ctx or context()
    return provider_flow(provider, provider.exchange(request, ctx), ctx)


# -- a multipart parser ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormPart:
    name: str
    value: bytes
    filename: str | None
    content_type: str | None

    @property
    def text(self) -> str:
        return self.value.decode()


@dataclass(frozen=True)
class Form:
    """A parsed multipart/form-data body: parts in order, repeated names kept."""

    parts: tuple[FormPart, ...]

    def names(self) -> list[str]:
        return [p.name for p in self.parts]

    def all(self, name: str) -> list[FormPart]:
        return [p for p in self.parts if p.name == name]

    def one(self, name: str) -> FormPart:
        found = self.all(name)
        assert len(found) == 1, f"{name!r} appears {len(found)} times in {self.names()}"
        return found[0]

    def text(self, name: str) -> str:
        return self.one(name).text

    def texts(self) -> dict[str, Any]:
        """Text fields as a dict; repeated ones as lists (what a JSON-schema check wants)."""
        out: dict[str, Any] = {}
        for part in self.parts:
            if part.filename is not None:
                continue
            if part.name in out:
                previous = out[part.name]
                out[part.name] = [*previous, part.text] if isinstance(previous, list) else [previous, part.text]
            else:
                out[part.name] = part.text
        return out


def parse_form(content_type: str, body: bytes) -> Form:
    """Parse a multipart/form-data body back with the stdlib ``email`` parser (not the encoder we test)."""
    message = email.message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body,
        policy=email.policy.HTTP,
    )
    assert message.is_multipart(), "the body is not multipart"
    parts = []
    for part in message.iter_parts():
        disposition = part.get("content-disposition")
        assert disposition is not None and str(disposition).startswith("form-data"), disposition
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str), f"a part without a name: {disposition}"
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        declared = part.get("content-type")
        parts.append(FormPart(name, payload, part.get_filename(), str(declared) if declared else None))
    return Form(tuple(parts))


def form_of(request: httpx.Request) -> Form:
    return parse_form(request.headers["content-type"], request.read())


# -- a fake Ideogram ----------------------------------------------------------------------------------


def image_object(url: str | None = IMAGE_URL, *, seed: int = 12345, safe: bool = True, **extra: Any) -> dict[str, Any]:
    """One ``ImageGenerationObjectV3`` as Ideogram documents it."""
    return {
        "url": url,
        "prompt": extra.pop("prompt", "A photo of a cat sleeping on a couch."),
        "resolution": extra.pop("resolution", "1024x1024"),
        "is_image_safe": safe,
        "seed": seed,
        "style_type": extra.pop("style_type", "AUTO"),
        **extra,
    }


def generation(*items: dict[str, Any]) -> dict[str, Any]:
    return {"created": "2000-01-23T04:56:07+00:00", "data": list(items)}


@dataclass
class FakeIdeogram:
    """A fake API: answers the POST with ``answer`` (status, JSON or raw), serves images by URL, and
    records every request it saw (bodies read)."""

    answer: Any = field(default_factory=lambda: generation(image_object()))
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    """URL -> bytes for downloads; a URL not here answers 404."""
    extra: dict[str, Handler] = field(default_factory=dict)
    """URL -> handler for other GETs (URL inputs, redirects)."""
    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.seen.append(request)
        url = str(request.url)
        if request.method == "POST":
            if isinstance(self.answer, (bytes, str)):
                return httpx.Response(self.status, content=self.answer, headers=self.headers)
            return httpx.Response(self.status, json=self.answer, headers=self.headers)
        if url in self.extra:
            return self.extra[url](request)
        if url in self.images:
            return httpx.Response(200, content=self.images[url], headers={"content-type": "image/png"})
        return httpx.Response(404, text="not found")

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.seen if r.method == "POST"]

    def form(self) -> Form:
        (post,) = self.posts()
        return form_of(post)

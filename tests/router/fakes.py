"""Fake vendors for the routing tests: a tiny queue protocol behind one MockTransport handler.

Each fake vendor (host ``<name>.test``) admits a job on ``POST /jobs`` and answers ``GET /jobs/<id>``
with ``running`` a few times, then ``done``; images come from ``cdn.test`` (so a client needs
``fetch_http=`` over the same handler: the guarded fetch client would resolve it). A test scripts how each
POST and poll is answered (a status, a callable, or an exception to raise as a transport failure) and
reads back every request the vendor saw. The adapter (:class:`FakeProvider`) is written like a real
one: sans-IO, errors mapped by status, a ``submitted`` event with resume data, a ``resume`` method.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from conftest import make_image
from ideochar import (
    AuthenticationFailed,
    CharacterRequest,
    ContentFiltered,
    GenerationFailed,
    InsufficientCredits,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    hookimpl,
)
from ideochar.events import Event
from ideochar.exchange import Send, Sleep, download_image, read_json
from ideochar.plugins import plugin_manager
from ideochar.retry import parse_retry_after
from ideochar.spec import CallContext, Exchange, Provider, ProviderInfo, ProviderOutput

#: What a scripted answer may be: an HTTP status, a full response, or an exception the transport raises.
Behaviour = int | httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]

ERRORS: dict[int, type[ProviderError]] = {
    400: RequestRejected,
    401: AuthenticationFailed,
    402: InsufficientCredits,
    429: RateLimited,
    451: ContentFiltered,
}


@dataclass
class FakeVendor:
    name: str
    submits: list[Behaviour] = field(default_factory=list)
    """Answers to successive job POSTs; once empty, every POST is admitted."""
    polls: list[Behaviour] = field(default_factory=list)
    """Answers to successive status GETs; once empty, the job is done."""
    running_polls: int = 1
    """How many ``running`` answers a job gets before ``done``."""
    delay_seconds: float = 0.0
    """Time each status GET takes (to make jobs overlap, or one vendor slower)."""
    requests: list[httpx.Request] = field(default_factory=list)
    admitted: list[str] = field(default_factory=list)
    on_poll: Callable[[str], None] | None = None
    """Called with the job id before each status answer (a test's probe into the journal)."""
    _polls_seen: dict[str, int] = field(default_factory=dict)

    @property
    def posts(self) -> int:
        return sum(1 for r in self.requests if r.method == "POST")


class FakeVendors:
    """The HTTP side of every fake vendor; thread-safe, so concurrent clients can share it."""

    def __init__(self, *names: str) -> None:
        self.by_name = {n: FakeVendor(n) for n in names}
        self.lock = threading.Lock()
        self.all_requests: list[httpx.Request] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def __getitem__(self, name: str) -> FakeVendor:
        return self.by_name[name]

    @property
    def calls(self) -> int:
        return len(self.all_requests)

    def handler(self, request: httpx.Request) -> httpx.Response:
        return self._handle(request, blocking=True)

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        import anyio

        await request.aread()
        vendor = self.by_name.get(request.url.host.split(".")[0])
        if vendor is not None and request.method == "GET" and vendor.delay_seconds:
            await anyio.sleep(vendor.delay_seconds)
        return self._handle(request, blocking=False)

    def _handle(self, request: httpx.Request, *, blocking: bool) -> httpx.Response:
        with self.lock:
            self.all_requests.append(request)
        host = request.url.host
        if host == "cdn.test":
            seed = int(request.url.params.get("seed", "0"))
            return httpx.Response(200, content=make_image(16 + seed % 7, 16), headers={"content-type": "image/png"})
        vendor = self.by_name[host.split(".")[0]]
        with self.lock:
            vendor.requests.append(request)
        if request.method == "POST":
            return self._submit(vendor, request)
        if blocking and vendor.delay_seconds:
            time.sleep(vendor.delay_seconds)
        return self._poll(vendor, request)

    def _next(self, queue: list[Behaviour], request: httpx.Request) -> httpx.Response | None:
        with self.lock:
            behaviour = queue.pop(0) if queue else None
        if behaviour is None:
            return None
        if isinstance(behaviour, Exception):
            raise behaviour
        if isinstance(behaviour, httpx.Response):
            return behaviour
        if isinstance(behaviour, int):
            return None if behaviour == 200 else httpx.Response(behaviour, text=f"scripted {behaviour}")
        return behaviour(request)

    def _submit(self, vendor: FakeVendor, request: httpx.Request) -> httpx.Response:
        scripted = self._next(vendor.submits, request)
        if scripted is not None:
            return scripted
        with self.lock:
            job = f"{vendor.name}-job-{len(vendor.admitted) + 1}"
            vendor.admitted.append(job)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return httpx.Response(200, json={"id": job})

    def _poll(self, vendor: FakeVendor, request: httpx.Request) -> httpx.Response:
        job = request.url.path.rsplit("/", 1)[-1]
        if vendor.on_poll is not None:
            vendor.on_poll(job)
        scripted = self._next(vendor.polls, request)
        if scripted is not None:
            return scripted
        with self.lock:
            seen = vendor._polls_seen.get(job, 0)
            vendor._polls_seen[job] = seen + 1
            done = seen >= vendor.running_polls
            if done:
                self.in_flight -= 1
        if not done:
            return httpx.Response(200, json={"status": "running"})
        return httpx.Response(200, json={"status": "done"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.ahandler)


def _error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    if status in ERRORS:
        cls = ERRORS[status]
        return cls(
            f"answered {status}: {response.text[:200]}",
            status=status,
            retry_after=parse_retry_after(response.headers) if status == 429 else None,
            billed="no",
        )
    if status in (502, 503, 504) and "x-request-id" not in response.headers:
        return ProviderUnavailable(f"ingress answered {status}", status=status, sent=False)
    return ProviderUnavailable(f"answered {status}", status=status)


class FakeProvider(Provider):
    """A sans-IO adapter for the fake queue protocol."""

    def __init__(
        self,
        name: str,
        price: str = "0.05",
        *,
        per_call: int = 1,
        in_flight: int | None = None,
        rpm: int | None = None,
        can_resume: bool = True,
    ) -> None:
        fields = frozenset({"seed", "aspect_ratio", "negative_prompt", "num_images"})
        self.info = ProviderInfo(
            name=name,
            title=name.title(),
            operations=frozenset({"generate"}),
            supported_fields={"generate": fields},
            prices_usd={"generate": {"turbo": Decimal(price), "default": Decimal(price), "quality": Decimal(price)}},
            credential_variables=((f"{name.upper()}_KEY",),),
            base_urls={"api": f"https://{name}.test"},
            max_images_per_call=per_call,
            max_images_in_flight=in_flight,
            requests_per_minute=rpm,
            can_resume=can_resume,
        )

    def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        body = {"prompt": request.prompt, "n": request.num_images, "seed": request.seed}
        headers = {"Authorization": f"Key {ctx.credentials.reveal()}"}
        response = yield Send(httpx.Request("POST", ctx.url("api", "/jobs"), json=body, headers=headers), admits=True)
        if response.status_code != 200:
            raise _error(response)
        job = read_json(response)["id"]
        state = {"id": job, "n": request.num_images, "seed": request.seed}
        yield Event("submitted", vendor_request_id=job, status="queued", resume=state)
        return (yield from self._follow(state, ctx))

    def resume(self, state: Any, ctx: CallContext) -> Exchange[ProviderOutput]:
        return (yield from self._follow(state, ctx))

    def _follow(self, state: Any, ctx: CallContext) -> Exchange[ProviderOutput]:
        job, count, seed = state["id"], state["n"], state["seed"]
        headers = {"Authorization": f"Key {ctx.credentials.reveal()}"}
        failures = 0
        while True:
            try:
                response = yield Send(httpx.Request("GET", ctx.url("api", f"/jobs/{job}"), headers=headers))
            except ProviderUnavailable:
                failures += 1
                if failures > 2:
                    raise
                yield Sleep(0)
                continue
            if response.status_code != 200:
                raise _error(response)
            status = read_json(response)["status"]
            if status == "failed":
                raise GenerationFailed("the job failed", billed="yes")
            if status == "done":
                break
            yield Event("progress", status="running")
            yield Sleep(0)
        images = []
        for index in range(count):
            image_seed = (seed or 0) + index
            url = f"https://cdn.test/{job}/{index}.png?seed={image_seed}"
            images.append((yield from download_image(url, seed=image_seed)))
        return ProviderOutput(images=images, vendor_request_id=job)


def manager(*providers: Provider) -> Any:
    class Plugin:
        @hookimpl
        def ideochar_register_providers(self, register: Callable[[Provider], None]) -> None:
            for provider in providers:
                register(provider)

    return plugin_manager(load_entrypoints=False, plugins=[Plugin()])


def keys_for(*names: str, key: str = "fake-key-0123456789") -> dict[str, str]:
    return {name: f"{key}-{name}" for name in names}

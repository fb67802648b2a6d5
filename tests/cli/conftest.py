"""Two fake providers behind a MockTransport, so the command line runs end to end without a vendor.

``alpha`` and ``beta`` speak a tiny queue protocol (POST a job, poll it, download the image); ``alpha``
also claims an emulator at ``/alpha`` (served by the same handler), ``beta`` has none. A test
says how each vendor answers through :class:`Vendors`, and every request the providers were given is
kept, so a test can assert what the command line built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel, ConfigDict

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
from ideochar.cli import CliState, cli
from ideochar.events import Event
from ideochar.exchange import Send, Sleep, download_image, read_json
from ideochar.plugins import plugin_manager
from ideochar.spec import CallContext, Exchange, Provider, ProviderInfo, ProviderOutput


class FakeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sync_mode: bool = False
    tier: str | None = None


#: Vendor status code -> the error the fake adapters raise for it.
ERRORS: dict[int, type[ProviderError]] = {
    401: AuthenticationFailed,
    402: InsufficientCredits,
    429: RateLimited,
    451: ContentFiltered,
    400: RequestRejected,
    500: ProviderUnavailable,
}


@dataclass
class Vendor:
    """How one fake vendor behaves."""

    status: int = 200
    """Answer to the job POST."""
    queue: list[int] = field(default_factory=lambda: [2, 1])
    """Queue positions reported by successive polls before the job runs."""
    fail_job: bool = False
    image_url: str = "/files/result.png"
    """Where the finished image is, on the vendor's own origin: a host of its own would be refused by the
    client's fetch guard (ideochar._netguard), which most of these tests are not about. An absolute URL is
    answered as it is (a test of the guard itself)."""
    echo: str = ""
    """Text the vendor puts in its error bodies (a vendor echoing the key, say)."""
    image: bytes = field(default_factory=lambda: make_image(96, 54, "PNG", "blue"))
    interrupt_after_submit: bool = False
    requests: list[CharacterRequest] = field(default_factory=list)
    keys_seen: list[str] = field(default_factory=list)
    barrier: threading.Barrier | None = None
    """When set, each job POST waits there: the calls of a fan-out pass only if they are in flight together."""


class FakeProvider(Provider):
    def __init__(self, name: str, price: str, vendor: Vendor, *, operations: frozenset[Any] | None = None) -> None:
        self.vendor = vendor
        self.info = ProviderInfo(
            name=name,
            title=name.title(),
            operations=operations or frozenset({"generate", "edit", "remix"}),
            supported_fields={
                op: frozenset({"seed", "aspect_ratio", "style", "negative_prompt", "magic_prompt", "color_palette"})
                for op in ("generate", "edit", "remix")
            },
            prices_usd={
                op: {"turbo": Decimal(price) / 2, "default": Decimal(price), "quality": Decimal(price) * 2}
                for op in ("generate", "edit", "remix")
            },
            credential_variables=((f"{name.upper()}_KEY",), (f"{name.upper()}_ID", f"{name.upper()}_SECRET")),
            base_urls={"api": f"https://{name}.test"},
            can_resume=True,
            inferred={"prices": "made up"} if name == "beta" else {},
            options_model=FakeOptions,
        )

    def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        self.vendor.requests.append(request)
        key = ctx.credentials.reveal()
        self.vendor.keys_seen.append(key)
        response = yield Send(
            httpx.Request(
                "POST", ctx.url("api", "/jobs"), json={"prompt": request.prompt}, headers={"authorization": key}
            ),
            admits=True,
        )
        if response.status_code != 200:
            cls = ERRORS.get(response.status_code, ProviderUnavailable)
            raise cls(
                f"{self.info.title} answered {response.status_code}: {response.text}", status=response.status_code
            )
        job = read_json(response)["id"]
        yield Event("submitted", vendor_request_id=job, resume={"id": job})
        return (yield from self._finish(job, request.num_images, ctx))

    def resume(self, state: Mapping[str, Any], ctx: CallContext) -> Exchange[ProviderOutput]:
        return (yield from self._finish(str(state["id"]), 1, ctx))

    def _finish(self, job: str, count: int, ctx: CallContext) -> Exchange[ProviderOutput]:
        while True:
            poll = read_json((yield Send(httpx.Request("GET", ctx.url("api", f"/jobs/{job}")))))
            if poll["status"] == "failed":
                raise GenerationFailed(f"{self.info.title} job failed", billed="no")
            if poll["status"] == "done":
                break
            yield Event("progress", status=poll["status"], queue_position=poll.get("position"))
            yield Sleep(0)
        image = yield from download_image(poll["url"], seed=7)
        return ProviderOutput(images=[image] * count, vendor_request_id=job)


class Vendors:
    """The fake vendors' HTTP side: one MockTransport handler for all of them."""

    def __init__(self) -> None:
        self.by_name = {"alpha": Vendor(), "beta": Vendor()}
        self.polls: dict[str, list[int]] = {}

    def __getitem__(self, name: str) -> Vendor:
        return self.by_name[name]

    def handler(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        if host == "127.0.0.1":  # alpha under an emulator's root: http://127.0.0.1:PORT/alpha/jobs/...
            _, name, path = path.split("/", 2)
            path, origin = f"/{path}", f"http://{request.url.netloc.decode()}/{name}"
        else:  # alpha.test
            name, origin = host.split(".")[0], f"https://{host}"
        if request.method == "GET" and not path.startswith("/jobs/"):  # an image, whatever its path
            name = request.url.params.get("v", "alpha")
            return httpx.Response(200, content=self.by_name[name].image, headers={"content-type": "image/png"})
        vendor = self.by_name[name]
        if request.method == "POST":
            if vendor.barrier is not None:
                vendor.barrier.wait()
            if vendor.status != 200:
                return httpx.Response(vendor.status, text=f"refused {vendor.echo}".strip())
            self.polls[name] = list(vendor.queue)
            return httpx.Response(200, json={"id": f"{name}-job-1"})
        if vendor.interrupt_after_submit:
            raise KeyboardInterrupt
        if vendor.fail_job:
            return httpx.Response(200, json={"status": "failed"})
        queue = self.polls.setdefault(name, [])
        if queue:
            return httpx.Response(200, json={"status": "queued", "position": queue.pop(0)})
        if vendor.image_url.startswith("http"):
            return httpx.Response(200, json={"status": "done", "url": vendor.image_url})
        url = f"{origin}{vendor.image_url}" + ("&" if "?" in vendor.image_url else "?") + f"v={name}"
        return httpx.Response(200, json={"status": "done", "url": url})


@pytest.fixture
def vendors() -> Vendors:
    return Vendors()


@pytest.fixture
def state(vendors: Vendors, tmp_path: Path) -> CliState:
    class Plugin:
        @hookimpl
        def ideochar_register_providers(self, register: Callable[[Provider], None]) -> None:
            register(FakeProvider("alpha", "0.06", vendors["alpha"]))
            register(FakeProvider("beta", "0.04", vendors["beta"]))

        @hookimpl
        def ideochar_register_emulator(self, register: Callable[[str, Any, Mapping[str, str]], None]) -> None:
            register("alpha", lambda kit: [], {"api": "/alpha"})  # only alpha: beta is a vendor nobody emulates

    pm = plugin_manager(load_entrypoints=False, plugins=[Plugin()])
    config = tmp_path / "ideochar.toml"
    config.write_text("")
    return CliState(
        plugin_manager=pm,
        http=httpx.Client(transport=httpx.MockTransport(vendors.handler)),
        environ={
            "ALPHA_KEY": "alpha-key-0123456789",
            "BETA_KEY": "beta-key-0123456789",
            "IDEOCHAR_JOURNAL": str(tmp_path / "journal" / "journal.sqlite3"),
            "IDEOCHAR_CONFIG": str(config),  # an empty one: no file of the working folder applies
        },
    )


Invoke = Callable[..., Result]


@pytest.fixture
def invoke(state: CliState) -> Invoke:
    """Run ``ideochar ARGS`` with the fake vendors; stdout and stderr are kept apart."""

    def run(*args: str, obj: CliState | None = None, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), obj=obj or state, catch_exceptions=False, input=input)

    return run


@pytest.fixture
def reference(tmp_path: Any) -> str:
    path = tmp_path / "face.png"
    path.write_bytes(make_image(64, 64))
    return str(path)

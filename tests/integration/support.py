"""What the integration tests share: inputs, the two drivers, a recorder of what the emulator received,
and the checks every call must pass.

Why a recorder: the emulator is strict (it refuses unknown fields and bad values with the vendor's error),
so a call that succeeds proves the request was acceptable; the recorder additionally proves that each
option the caller set *arrived*, in the vendor's own spelling, instead of being dropped on the way.

Why :func:`expected_render`: the emulator's images are deterministic in (vendor, reference bytes, prompt,
size, seed, input image, mask), so an image equal to a fresh rendering of those inputs proves that the
prompt, the seed, the reference and the edit/remix inputs all reached the vendor routes intact.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import random
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, Literal

import anyio
import httpx
from PIL import Image, ImageDraw

from ideochar import AsyncClient, Client
from ideochar.emulator.app import EmulatorState
from ideochar.emulator.files import FILES_PATH
from ideochar.emulator.inputs import Part, parse_multipart
from ideochar.emulator.kit import LedgerEntry
from ideochar.emulator.render import render
from ideochar.result import CharacterResult, GeneratedImage

__all__ = [
    "DRIVERS",
    "Driver",
    "Received",
    "Recorder",
    "check_billing",
    "check_image",
    "client_options",
    "expected_render",
    "grey_mask",
    "noise_png",
    "png",
    "run_client",
    "serve_file",
]

Driver = Literal["sync", "async"]
DRIVERS: tuple[Driver, ...] = ("sync", "async")

#: Headers the recorder never keeps (a test has no use for a key, even the emulator's).
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "cookie"})


# -- inputs -----------------------------------------------------------------------------------------------


def png(width: int, height: int, color: Any = "red", mode: str = "RGB", fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def grey_mask(width: int, height: int) -> bytes:
    """A grayscale mask: white (keep) with a black top-left quarter (repaint), the neutral polarity."""
    mask = Image.new("L", (width, height), 255)
    ImageDraw.Draw(mask).rectangle((0, 0, width // 2, height // 2), fill=0)
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


def noise_png(width: int, height: int, seed: int = 1) -> bytes:
    """Incompressible pixels: a PNG about ``3 * width * height`` bytes (over 1 MB at 640x640)."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, "PNG")
    return buffer.getvalue()


def serve_file(state: EmulatorState, root: str, data: bytes, content_type: str = "image/png") -> str:
    """Put ``data`` on the emulator's file server and return its URL: an http(s) input the vendor
    routes can read back (the emulator never fetches the internet)."""
    stored = state.files.add_bytes("inputs", data, content_type)
    return f"{root}{FILES_PATH}/{stored.id}"


# -- the recorder ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Received:
    """One request as the emulator received it (no auth headers)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    chunks: list[bytes] = dataclasses.field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[Part]]:
        """A multipart body by field name (repeated fields keep their order)."""
        fields: dict[str, list[Part]] = {}
        for part in parse_multipart(self.body, self.headers["content-type"]):
            fields.setdefault(part.name, []).append(part)
        return fields

    def texts(self) -> dict[str, list[str]]:
        """The text fields of a multipart body."""
        return {name: [p.text() for p in parts] for name, parts in self.form().items() if not parts[0].is_file}

    def files(self) -> dict[str, list[bytes]]:
        """The file parts of a multipart body."""
        return {name: [p.data for p in parts] for name, parts in self.form().items() if parts[0].is_file}


class Recorder:
    """ASGI middleware in front of the emulator app that keeps every request it received.

    It exposes the app's ``state`` so a :class:`~ideochar.emulator.server.BackgroundServer` given this
    recorder as its app still finds the emulator's state (ledger, faults, files).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state
        self._received: list[Received] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers", [])
            if k.decode("latin-1").lower() not in _SECRET_HEADERS
        }
        entry = Received(scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"), headers)
        with self._lock:
            self._received.append(entry)

        async def receiving() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                entry.chunks.append(bytes(message.get("body", b"")))
            return message

        await self.app(scope, receiving, send)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def requests(self, vendor: str | None = None, method: str | None = None) -> list[Received]:
        """What was received, oldest first: under ``/{vendor}`` only (not the shared file server) when named."""
        with self._lock:
            found = list(self._received)
        return [
            r
            for r in found
            if (vendor is None or r.path.startswith(f"/{vendor}/")) and (method is None or r.method == method)
        ]

    def one_post(self, vendor: str, path_suffix: str = "") -> Received:
        """The single POST to ``vendor`` whose path ends with ``path_suffix`` (fails if there are more)."""
        posts = [r for r in self.requests(vendor, "POST") if r.path.endswith(path_suffix)]
        assert len(posts) == 1, [p.path for p in posts]
        return posts[0]


# -- the two drivers ------------------------------------------------------------------------------------


def client_options(root: str, **overrides: Any) -> dict[str, Any]:
    """Client arguments for a test: the emulator at ``root``, nothing read from the machine (no
    configuration file, no environment), no journal."""
    options: dict[str, Any] = {
        "emulator": root,
        "journal": False,
        "config": False,
        "environ": {},
        "deadline_seconds": 60,
    }
    options.update(overrides)
    return options


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every test client: building one per client costs ~50 ms (loading the CA
    bundle), and the emulator is plain HTTP on loopback anyway."""
    return ssl.create_default_context()


def run_client(
    driver: Driver,
    providers: str | Sequence[str],
    root: str,
    call: Callable[[Any], Any],
    **options: Any,
) -> Any:
    """Run ``call(client)`` with a :class:`Client` (sync) or an :class:`AsyncClient` (its result awaited)."""
    settings = client_options(root, **options)
    if driver == "sync":
        with httpx.Client(verify=_tls()) as http, Client(providers, http=http, **settings) as client:
            return call(client)

    async def main() -> Any:
        async with (
            httpx.AsyncClient(verify=_tls()) as http,
            AsyncClient(providers, http=http, **settings) as client,
        ):
            outcome = call(client)
            return await outcome if isinstance(outcome, Awaitable) else outcome

    return anyio.run(main)


# -- checks ---------------------------------------------------------------------------------------------


def check_image(image: GeneratedImage, size: tuple[int, int] | None, fmt: str) -> Image.Image:
    """The bytes decode as the format and pixel size announced (and requested, when ``size`` is given)."""
    with Image.open(io.BytesIO(image.data)) as opened:
        opened.load()
        decoded: Image.Image = opened.copy()
        real_format = opened.format
    assert real_format == fmt.upper(), (real_format, fmt)
    assert image.content_type == f"image/{fmt.lower()}"
    assert (image.width, image.height) == decoded.size
    if size is not None:
        assert decoded.size == size, (decoded.size, size)
    return decoded


def expected_render(
    state: EmulatorState,
    vendor: str,
    reference: bytes,
    prompt: str,
    size: tuple[int, int],
    seed: int,
    *,
    fmt: Literal["png", "jpeg"] = "png",
    base: bytes | None = None,
    mask: bytes | None = None,
) -> bytes:
    """The emulator's image for these inputs (deterministic; the emulator's own cache makes it cheap)."""
    return render(
        reference, prompt, width=size[0], height=size[1], seed=seed, fmt=fmt, base=base, mask=mask, vendor=vendor,
        cache=state.renders,
    )  # fmt: skip


def check_billing(
    state: EmulatorState,
    result: CharacterResult,
    vendor: str,
    *,
    admissions: int,
    images_each: int,
    speed: str,
) -> list[LedgerEntry]:
    """Exactly ``admissions`` billed admissions, each of ``images_each`` images at ``speed``, and the cost
    the client reports is what the emulator billed."""
    entries = state.ledger.entries(vendor)
    assert len(entries) == admissions, [e.job_id for e in entries]
    assert all(e.billed for e in entries), [e.voided for e in entries]
    assert [e.images for e in entries] == [images_each] * admissions
    assert {e.detail.get("rendering_speed") for e in entries} == {speed}
    assert result.cost_usd == sum((e.cost_usd for e in entries), start=Decimal(0))
    others = {name: state.ledger.count(name) for name in state.vendors if name != vendor}
    assert not any(others.values()), others
    return entries

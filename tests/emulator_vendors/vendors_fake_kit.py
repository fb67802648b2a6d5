"""A small stand-in for the emulator core, so the Ideogram and Replicate routes are tested on their own.

:class:`FakeKit` implements the ``EmulatorKit`` protocol plainly: a ledger list, real PNG renders of the
requested size, stored files served under ``/files/{id}``, and faults queued per route by the test.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import httpx
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ideochar.emulator.kit import Fault, LedgerEntry


@dataclass
class FakeKit:
    vendor: str
    model_seconds: float = 0.0
    ledger: list[LedgerEntry] = field(default_factory=list)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    http_faults: dict[str, list[Fault]] = field(default_factory=dict)
    """Faults ``fault(route, request)`` answers with, in order, per route."""
    route_faults: dict[str, list[Fault]] = field(default_factory=dict)
    """Faults ``choose_fault(route)`` hands to the route, in order, per route."""
    renders: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def base_url(self, request: Request, name: str = "") -> str:
        return f"{str(request.base_url).rstrip('/')}/{self.vendor}"

    def admit(self, job_id: str, *, operation: str, images: int, cost_usd: Decimal, **detail: Any) -> None:
        self.ledger.append(LedgerEntry(self.vendor, job_id, operation, images, cost_usd, 0.0, detail))

    def render(
        self, reference: bytes, prompt: str, *, width: int, height: int, seed: int,
        fmt: Literal["png", "jpeg"] = "png", base: bytes | None = None, mask: bytes | None = None,
    ) -> bytes:
        self.renders.append({"reference": reference, "prompt": prompt, "size": (width, height), "seed": seed,
                             "base": base, "mask": mask})
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (seed % 256, 40, 90)).save(buffer, fmt.upper())
        return buffer.getvalue()

    def store(self, data: bytes, content_type: str, request: Request) -> str:
        key = f"f{next(self._ids)}"
        self.files[key] = (data, content_type)
        return f"{str(request.base_url).rstrip('/')}/files/{key}"

    async def fault(self, route: str, request: Request) -> Response | None:
        queue = self.http_faults.get(route)
        if not queue:
            return None
        chosen = queue.pop(0)
        headers = {"Retry-After": str(int(chosen.retry_after))} if chosen.retry_after is not None else {}
        return JSONResponse({"fault": chosen.kind}, status_code=chosen.status or 500, headers=headers)

    def choose_fault(self, route: str) -> Fault | None:
        queue = self.route_faults.get(route)
        return queue.pop(0) if queue else None


def app_for(kit: FakeKit, vendor_routes: list[BaseRoute]) -> Starlette:
    async def serve(request: Request) -> Response:
        data, content_type = kit.files[request.path_params["key"]]
        return Response(data, media_type=content_type)

    return Starlette(routes=[Mount(f"/{kit.vendor}", routes=vendor_routes), Route("/files/{key}", serve)])


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator.test")


def image_bytes(width: int = 64, height: int = 64, fmt: str = "PNG", color: Any = "red", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def pixel_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        return width, height

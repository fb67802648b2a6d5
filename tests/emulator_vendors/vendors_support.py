"""Helpers for testing vendor routes inside the real emulator app (``create_app``), in-process.

:class:`Emulated` bundles the app, its state (ledger, fault profile) and one vendor's kit, and records
what the vendor routes asked the kit to render, so a test can check that the reference bytes arrived.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image
from starlette.applications import Starlette

from ideochar.emulator.app import EmulatorState, VendorKit, create_app
from ideochar.emulator.kit import LedgerEntry, StoredFile


@dataclass
class Emulated:
    vendor: str
    app: Starlette
    renders: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, vendor: str) -> Emulated:
        emulated = cls(vendor, create_app(vendors=[vendor]))
        real: Callable[..., StoredFile] = emulated.kit.render_file

        def spy(reference: bytes, prompt: str, **options: Any) -> StoredFile:
            emulated.renders.append({"reference": reference, "prompt": prompt, **options})
            return real(reference, prompt, **options)

        emulated.kit.render_file = spy  # type: ignore[method-assign]
        return emulated

    @property
    def state(self) -> EmulatorState:
        state: EmulatorState = self.app.state.emulator
        return state

    @property
    def kit(self) -> VendorKit:
        return self.state.kits[self.vendor]

    def ledger(self) -> list[LedgerEntry]:
        """Every admission, voided ones included."""
        return self.state.ledger.entries(self.vendor)

    def billed(self) -> list[LedgerEntry]:
        return self.state.ledger.billed(self.vendor)

    def faults(self, *rules: dict[str, Any]) -> None:
        """Install fault rules for this vendor (each fires once unless it says ``times``)."""
        self.state.set_profile({"seed": 1, self.vendor: [{"times": 1, **rule} for rule in rules]})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://emulator.test")


def image_bytes(width: int = 64, height: int = 64, fmt: str = "PNG", color: Any = "red", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def pixel_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        return width, height

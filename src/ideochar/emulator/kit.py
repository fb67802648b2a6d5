"""What a vendor's emulator routes get from the emulator core: the interface, not the implementation.

A provider package exposes its wire protocol to the emulator through the ``ideochar_register_emulator``
hook; its route factory receives one :class:`EmulatorKit` bound to that vendor. Everything shared
(rendering images from the reference, serving output files, the ledger of billable admissions, fault
injection, emulated model time) is here, so each vendor module is only its protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["EmulatorKit", "Fault", "LedgerEntry"]


@dataclass(frozen=True)
class LedgerEntry:
    """One admitted (billable) job: what "charged once" is asserted against."""

    vendor: str
    job_id: str
    operation: str
    images: int
    cost_usd: Decimal
    at: float
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """A fault chosen for one request (see the fault profile in ``ideochar.emulator.faults``)."""

    kind: Literal[
        "latency", "status", "rate_limit", "hang", "drop_after_admit", "truncate", "expire", "stuck",
        "malformed_json", "wrong_content_type", "refuse",
    ]
    status: int | None = None
    retry_after: float | None = None
    seconds: float | None = None
    body: Any = None


class EmulatorKit(Protocol):
    """Shared services, bound to one vendor (``kit.vendor``)."""

    vendor: str
    model_seconds: float
    """Emulated model time per job (0 in fast tests, 2 s in the concurrency benchmark)."""

    def base_url(self, request: Request, name: str = "") -> str:
        """The externally visible URL of this vendor's prefix (or of a named base URL) for ``request``.

        Build ``status_url`` and friends with it, so clients follow them verbatim over any transport.
        """
        ...

    def admit(self, job_id: str, *, operation: str, images: int, cost_usd: Decimal, **detail: Any) -> None:
        """Record a billable admission in the ledger."""
        ...

    def render(
        self, reference: bytes, prompt: str, *, width: int, height: int, seed: int, fmt: Literal["png", "jpeg"] = "png",
        base: bytes | None = None, mask: bytes | None = None,
    ) -> bytes:
        """An image of the requested size showing the reference and the prompt, labelled as emulated;
        deterministic for a seed. ``base`` and ``mask`` render an edit or remix of an input image."""
        ...

    def store(self, data: bytes, content_type: str, request: Request) -> str:
        """Serve ``data`` under this emulator and return its absolute URL (which a fault may expire)."""
        ...

    async def fault(self, route: str, request: Request) -> Response | None:
        """Apply this vendor's fault profile to the request at ``route``; a Response means answer with it."""
        ...

    def choose_fault(self, route: str) -> Fault | None:
        """The fault (if any) for this request, for faults a route applies itself (stuck, drop_after_admit)."""
        ...

"""What a vendor's emulator routes get from the emulator core: the interface, not the implementation.

A provider package exposes its wire protocol to the emulator through the ``ideochar_register_emulator``
hook; its route factory receives one :class:`EmulatorKit` bound to that vendor. Everything shared
(rendering images from the reference, serving output files, the ledger of billable admissions, fault
injection, emulated model time) is here, so each vendor module is only its protocol.

A route typically reads::

    async def submit(request):
        refused = check_auth(request)                     # the vendor's own 401 first
        if refused: return refused
        injected = await kit.fault("submit", request)     # latency, errors, 429, hangs, cuts...
        if injected is not None: return injected
        job = validate(await request.body())              # strict, with the vendor's error shape
        kit.admit(job.id, operation="generate", images=1, cost_usd=PRICE)
        fault = kit.choose_fault("submit")                # stuck, drop_after_admit
        if fault is not None and fault.kind == "drop_after_admit":
            raise ConnectionDropped(admitted=True)        # billed; the client sees a broken connection
        ...

Keys: routes check them but never log or keep them (hash one if jobs must belong to a key).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from ideochar.request import ASPECT_RATIOS, RESOLUTIONS

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "ASPECT_RATIOS",
    "RESOLUTIONS",
    "Callback",
    "ConnectionDropped",
    "EmulatorKit",
    "ErrorShaper",
    "Fault",
    "LedgerEntry",
    "Signer",
    "StoredFile",
    "nearest_resolution",
    "size_for_aspect_ratio",
]

T = TypeVar("T")


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
    voided: str | None = None
    """Why the vendor would not charge after all (a queued job cancelled, a failed run); None if billed."""

    @property
    def billed(self) -> bool:
        return self.voided is None

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "job_id": self.job_id,
            "operation": self.operation,
            "images": self.images,
            "cost_usd": str(self.cost_usd),
            "at": self.at,
            "detail": dict(self.detail),
            "voided": self.voided,
        }


@dataclass(frozen=True)
class Fault:
    """A fault chosen for one request (see the fault profile in ``ideochar.emulator.faults``)."""

    kind: Literal[
        "latency",
        "status",
        "rate_limit",
        "hang",
        "drop_after_admit",
        "truncate",
        "expire",
        "stuck",
        "malformed_json",
        "wrong_content_type",
        "refuse",
        "callback_lost",
        "callback_duplicate",
        "callback_late",
        "callback_out_of_order",
        "callback_bad_signature",
        "callback_stale",
    ]
    status: int | None = None
    retry_after: float | None = None
    seconds: float | None = None
    body: Any = None
    ingress: bool = False
    """The error comes from the vendor's edge proxy, not its application: a plain page, no vendor headers."""


class ConnectionDropped(Exception):
    """Raise from a route to cut the client's connection without an answer.

    On a socket the TCP connection is aborted; in-process (httpx's ASGI transport) the client gets the
    ``httpx.RemoteProtocolError`` a real server's hang-up produces. ``admitted`` is for the reader: the
    ledger already says whether the job was admitted.
    """

    def __init__(self, reason: str = "emulated fault: connection dropped", *, admitted: bool = False) -> None:
        super().__init__(reason)
        self.admitted = admitted


@dataclass(frozen=True)
class StoredFile:
    """An output file the emulator serves; its URL depends on the address a client used (``kit.file_url``)."""

    id: str
    content_type: str
    size: int
    file_name: str


Signer = Callable[[bytes, float], Mapping[str, str]]
"""``(body, unix time) -> headers``: signs one try of a callback, as the vendor would."""


@dataclass(frozen=True)
class Callback:
    """One callback to send to a request's webhook URL (:meth:`EmulatorKit.call_back`). Each try is signed
    when it is sent, so a retry carries a fresh timestamp, as the vendors' do [I]."""

    vendor: str
    job_id: str
    url: str
    body: bytes
    sign: Signer
    event: str = "completed"
    """What the delivery reports (Replicate's webhook event names; fal sends ``completed`` only)."""


ErrorShaper = Callable[[Fault], "Response"]
"""Turns an injected ``status``/``rate_limit`` fault into the vendor's own error answer."""


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

    def note_in_flight(self, images: int, *, refused: bool = False) -> None:
        """A vendor that limits work in progress reports it: ``images`` in flight now (and whether a request
        was just refused for the limit). The emulator keeps the high-water mark (``/_emulator/health``)."""
        ...

    def admit(self, job_id: str, *, operation: str, images: int, cost_usd: Decimal, **detail: Any) -> None:
        """Record a billable admission in the ledger."""
        ...

    def render(
        self,
        reference: bytes,
        prompt: str,
        *,
        width: int,
        height: int,
        seed: int,
        fmt: Literal["png", "jpeg"] = "png",
        base: bytes | None = None,
        mask: bytes | None = None,
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

    # -- added later; every member above is unchanged ------------------------------------------------

    def void(self, job_id: str, reason: str) -> None:
        """Mark an admitted job as not charged after all (a queued job cancelled, a failed run)."""
        ...

    def render_file(
        self,
        reference: bytes,
        prompt: str,
        *,
        width: int,
        height: int,
        seed: int,
        fmt: Literal["png", "jpeg"] = "png",
        base: bytes | None = None,
        mask: bytes | None = None,
    ) -> StoredFile:
        """:meth:`render` and serve the result, keeping only how to render it again (cheap in memory).

        CPU work: call it through :meth:`run_blocking`, not on the event loop.
        """
        ...

    async def arender_file(
        self,
        reference: bytes,
        prompt: str,
        *,
        width: int,
        height: int,
        seed: int,
        fmt: Literal["png", "jpeg"] = "png",
        base: bytes | None = None,
        mask: bytes | None = None,
    ) -> StoredFile:
        """:meth:`render_file` from the event loop: the slow part (a new canvas, tens of milliseconds) goes
        to a worker thread, the rest (a seed's band, about a millisecond) is done in place, because a
        thousand renders on threads would fight the event loop for the GIL."""
        ...

    async def prepare_render(
        self,
        reference: bytes,
        prompt: str,
        *,
        width: int,
        height: int,
        fmt: Literal["png", "jpeg"] = "png",
        base: bytes | None = None,
        mask: bytes | None = None,
    ) -> None:
        """Build the seedless canvas of renders to come (on a worker thread, once per canvas), so that
        each later :meth:`arender_file` with these inputs takes about a millisecond."""
        ...

    def file_url(self, request: Request, file: StoredFile) -> str:
        """The absolute URL of a stored file, as seen by the client that sent ``request``."""
        ...

    def file_bytes(self, file: StoredFile) -> bytes:
        """A stored file's bytes (for answers that inline them, e.g. as a data URI)."""
        ...

    def lookup(self, url: str) -> bytes | None:
        """The bytes of a file this emulator serves, from its URL on any host; None for any other URL.

        The emulator never fetches the internet: an input URL that is not its own cannot be read.
        """
        ...

    async def run_blocking(self, function: Callable[..., T], *args: Any) -> T:
        """Run CPU work (rendering, decoding) on the emulator's worker threads."""
        ...

    def on_reset(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the emulator is reset (forget jobs, cancel timers)."""
        ...

    def shape_errors(self, shaper: ErrorShaper) -> None:
        """Give injected ``status`` and ``rate_limit`` faults this vendor's body and headers."""
        ...

    def random_seed(self) -> int:
        """A seed for a request that names none (0 to 2**31 - 1)."""
        ...

    def later(self, delay: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on the event loop after ``delay`` seconds (a timer, not a task: cheap for
        thousands of jobs); returns a function that cancels it. Forgotten on reset."""
        ...

    async def wait_or_stop(self, awaitable: Awaitable[Any], timeout: float | None) -> bool:
        """Wait for ``awaitable`` up to ``timeout`` s (None: no limit); False on timeout or when the emulator stops."""
        ...

    @property
    def stopping(self) -> bool:
        """True once the server is shutting down: long waits (streams, holds) should end."""
        ...

    def call_back(self, callback: Callback) -> None:
        """Send ``callback`` like the vendor: in the background, retried until a 2xx, signed afresh on each
        try, and faulted as the profile says at route ``callback`` (:mod:`ideochar.emulator.callbacks`).
        Call it on the event loop."""
        ...

    # -- vendor storage (uploads) ------------------------------------------------------------------

    def now(self) -> float:
        """The emulator's wall clock (``time.time()`` unless a test moves it: ``state.files.clock``): what
        uploaded files expire by, so a vendor's own expiry dates should be read against it too."""
        ...

    def record_upload(self, data: bytes) -> None:
        """Count one file uploaded to this vendor's storage: what "uploaded once" is asserted against
        (``state.uploads``, ``/_emulator/uploads``)."""
        ...

    def new_file_id(self, content_type: str) -> str:
        """An id for a file whose bytes come later (an upload initiated now, its bytes PUT after)."""
        ...

    def store_upload(
        self, data: bytes, content_type: str, request: Request, *, expires_in: float | None, file_id: str | None = None
    ) -> str:
        """Serve ``data`` as a file uploaded to this vendor's storage (counted, and gone after ``expires_in``
        seconds; None: kept); its absolute URL. ``file_id`` fills an id from :meth:`new_file_id`."""
        ...

    def file_url_for(self, request: Request, file_id: str) -> str:
        """The absolute URL of the file ``file_id`` as seen by the client that sent ``request``."""
        ...

    def serves(self, url: str) -> bool:
        """True when ``url`` names a file of this emulator (live, expired or not yet uploaded): an input
        that :meth:`lookup` cannot read is then refused as the vendor would, not merely left unread."""
        ...


# -- sizes, shared by vendors that take an aspect ratio ------------------------------------------------------


def _ratio_distance(width: int, height: int, target: float) -> float:
    import math

    return abs(math.log((width / height) / target))


def nearest_resolution(width: int, height: int) -> tuple[int, int]:
    """The legal Ideogram size closest in shape to ``width`` x ``height``, then closest in area.

    Ideogram V3 renders only its 69 sizes; a request for another shape gets the nearest one [inferred
    for vendors that take free sizes, e.g. fal's ``image_size``].
    """
    target = width / height
    sizes = [tuple(int(v) for v in r.split("x")) for r in RESOLUTIONS]
    best = min(sizes, key=lambda s: (round(_ratio_distance(s[0], s[1], target), 6), abs(s[0] * s[1] - width * height)))
    return best[0], best[1]


def size_for_aspect_ratio(ratio: str) -> tuple[int, int]:
    """Pixels for an aspect ratio such as ``"16:9"`` (or ``"16x9"``): the legal size nearest in shape, of
    about one megapixel (16:9 gives 1312x736, 1:1 gives 1024x1024, as Ideogram's outputs are)."""
    import math

    w, h = (int(v) for v in ratio.replace("x", ":").split(":"))
    scale = 1024 / math.sqrt(w * h)
    return nearest_resolution(round(w * scale), round(h * scale))

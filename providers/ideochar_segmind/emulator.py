"""Segmind's ``ideogram-character`` API (v1 and v2), as the ideochar emulator speaks it.

Written from ``reference/vendors.md`` §1, not from our adapter, so that an adapter bug shows up here.
Routes, relative to the ``segmind`` prefix (the API base URL); the name in brackets is the route name
a fault profile uses:

- ``POST /v1/ideogram-character`` [``v1``]: blocks for the model time, answers the JPEG's bytes
- ``POST /v2/ideogram-character`` [``v2.submit``]: admits a job, answers its URLs
- ``GET /v2/requests/{id}/status`` [``v2.status``] and ``GET /v2/requests/{id}`` [``v2.result``]

Behaviour, with its evidence ([V] vendor page or SDK, [V3] third-party mirror, [I] inferred — each
inferred value is a constant or table below):

- Auth: header ``x-api-key`` [V]; any non-empty key, one starting with ``invalid`` refused. 401
  ``{"error": "Missing Authorization or x-api-key in header"}`` / ``{"error": "Unauthorized. API key is
  invalid or has been revoked."}`` [V3]; a key sent as ``Authorization: Bearer`` is not looked at [V3].
- Body: ``application/json`` (image fields as URL strings) or ``multipart/form-data`` (a file or a URI
  string per image field) [V]; anything else is 406 ``{"error": "Invalid content type"}`` [V3]. Other
  methods get an HTML 405 page [V3].
- Fields (:data:`FIELDS`): ``prompt`` and ``character_reference_image`` required [V]; title-case enums
  ``style_type`` Auto/Fiction/Realistic, ``rendering_speed`` Default/Turbo/Quality, ``magic_prompt_option``
  Auto/On/Off [I: the page shows only some values; Replicate's schema has these]; ``TURBO`` or
  ``BALANCED`` is refused; 15 ratios, 69 resolutions (or ``"None"``) [I]. A violation is 400
  ``{"error": "..."}`` [V3 shape].
- **Strict on purpose** [I]: an unknown field is refused (Segmind would most likely ignore it), and so
  are ``aspect_ratio`` and ``resolution`` together (Segmind's own example sends both and resolution
  silently wins): our adapter must never send either.
- Images: JPEG, PNG or WebP of at most 10 MB [I]; ``image`` and ``mask`` together and of the same size
  [I]. URLs of files this emulator serves are read back; other URLs are not fetched (no internet): the
  image is rendered without them and ``x-emulator-note`` says so. A data URI in JSON is accepted [I].
- **Documented defaults are applied** to a missing field (:data:`DEFAULTS`, Segmind's API page [V]):
  ``resolution`` 512x1536, ``aspect_ratio`` 16:9, ``style_type`` Realistic, ``rendering_speed`` Quality
  (and its price), ``magic_prompt_option`` Off, ``seed`` 1. A missing ``resolution`` is the default one,
  which overrides ``aspect_ratio`` [I: :data:`DEFAULT_RESOLUTION_WINS`; "Overrides aspect ratio" in
  Replicate's schema for the same model]: only ``resolution: "None"`` lets an aspect ratio decide. What
  was applied is in the ledger entry's ``inputs``, so a test sees an adapter that left a field out.
- v1 success: 200 ``image/jpeg`` bytes with ``x-remaining-credits``, ``x-cost``, ``x-seed-value``,
  ``x-request-id`` and ``x-generation-time`` [V, V3]. Size: the resolution that applies (above), or the
  aspect ratio's Ideogram size; an edit renders at its image's size.
- v2 [V: async-inference docs; V3 metric names]: submit answers ``{"request_id", "status": "QUEUED",
  "poll_url", "status_url", "response_url"}``; status moves QUEUED -> PROCESSING -> COMPLETED (or
  FAILED, answered with HTTP 422); the result is ``{"status", "output": <image URL>, "metrics"}``.
  Records are kept :data:`RETENTION_SECONDS` [V], then 404.
- Billing: a v1 request is admitted when accepted, a v2 job at submit; price by speed
  :data:`PRICE_USD` [I: 1.25 x Ideogram's]. Only a 200 is billed [V3]: failed runs are voided.
  Each key starts with :data:`STARTING_CREDITS` [I]; a key starting with ``nocredit`` has none, so a
  request is refused with 406 naming the balance [V3 wording].
- Injected errors get ``{"error": ...}``; a 429 carries ``x-rate-limit-reset-at-utc``, not
  ``Retry-After`` [V3].

Prompt marker ``[emulator:fail]`` makes the run fail (v1: 500 ``Server had some issue`` [V]; v2: FAILED).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ideochar.emulator.inputs import (
    ImageInfo,
    MultipartError,
    Part,
    decode_data_uri,
    media_type,
    parse_multipart,
    probe_image,
)
from ideochar.emulator.jobs import JobBoard, TimedJob
from ideochar.emulator.kit import (
    ASPECT_RATIOS,
    RESOLUTIONS,
    ConnectionDropped,
    Fault,
    StoredFile,
    size_for_aspect_ratio,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ideochar.emulator.kit import EmulatorKit

__all__ = [
    "DEFAULTS",
    "DEFAULT_RESOLUTION_WINS",
    "ENUMS",
    "FIELDS",
    "MARKER_FAIL",
    "PRICE_USD",
    "QUEUE_SHARE",
    "RETENTION_SECONDS",
    "STARTING_CREDITS",
    "routes",
]

V1_PATH = "/v1/ideogram-character"
V2_PATH = "/v2/ideogram-character"

#: Title-case enums [I: the API page shows Realistic/Fiction, Turbo/Quality, Off; Replicate's schema the rest].
ENUMS: Mapping[str, tuple[str, ...]] = {
    "style_type": ("Auto", "Fiction", "Realistic"),
    "rendering_speed": ("Default", "Turbo", "Quality"),
    "magic_prompt_option": ("Auto", "On", "Off"),
}
IMAGE_FIELDS = ("character_reference_image", "image", "mask")
#: Every field the endpoint takes [V: the API page's parameter list].
FIELDS = ("prompt", *IMAGE_FIELDS, "seed", "resolution", "aspect_ratio", *ENUMS)
#: What Segmind uses for a missing field [V: the ideogram-character API page].
DEFAULTS: Mapping[str, Any] = {
    "resolution": "512x1536",
    "aspect_ratio": "16:9",
    "style_type": "Realistic",
    "rendering_speed": "Quality",
    "magic_prompt_option": "Off",
    "seed": 1,
}
#: A missing resolution is the default one and it overrides aspect_ratio, so a request that gives only an
#: aspect ratio comes back 512x1536 [I: "Overrides aspect ratio" in Replicate's schema for the same model].
DEFAULT_RESOLUTION_WINS = True
#: Fields an edit does not use (it keeps its image's size).
_SIZE_FIELDS = ("resolution", "aspect_ratio")
#: USD per image by speed [I: "$0.125 - $0.250 per generation" = 1.25 x Ideogram's prices].
PRICE_USD: Mapping[str, Decimal] = {"Turbo": Decimal("0.125"), "Default": Decimal("0.1875"), "Quality": Decimal("0.25")}
#: Credit (USD) every key starts with [I].
STARTING_CREDITS = Decimal("100")
#: Keys starting with this have no credit, to exercise the 406 [emulator convention].
NO_CREDIT_PREFIX = "nocredit"
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
SEED_MAX = 2_147_483_647
#: Share of the model time a v2 job is QUEUED before PROCESSING [I].
QUEUE_SHARE = 0.2
#: "Request status and results are stored for 1 hour after submission" [V].
RETENTION_SECONDS = 3600.0
MARKER_FAIL = "[emulator:fail]"

#: Bodies of injected status faults [V: the page's status list; V3 the catalogue].
FAULT_MESSAGES: Mapping[int, str] = {
    400: "Bad request",
    401: "Unauthorized. API key is invalid or has been revoked.",
    403: "This model is not allowed for your team",
    404: "The requested URL does not exist",
    406: "Not enough credits",
    410: "This model has been retired",
    422: "The job failed",
    429: "Rate limit exceeded. Please try again later.",
    500: "Server had some issue",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
_V2_STATUS = {"queued": "QUEUED", "running": "PROCESSING", "done": "COMPLETED"}


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Image:
    data: bytes | None
    info: ImageInfo | None


@dataclass
class _Input:
    values: dict[str, Any]
    images: dict[str, _Image]
    notes: list[str] = field(default_factory=list)

    @property
    def speed(self) -> str:
        return str(self.effective["rendering_speed"])

    @property
    def operation(self) -> str:
        return "edit" if "image" in self.images else "generate"

    @property
    def effective(self) -> dict[str, Any]:
        """Every setting as the run uses it: the request's values, Segmind's :data:`DEFAULTS` for the rest
        (an edit uses no size)."""
        values = {**DEFAULTS, **self.values}
        if self.operation == "edit":
            for name in _SIZE_FIELDS:
                values.pop(name, None)
        return values


# -- reading and checking a request ------------------------------------------------------------------------


def _check_value(name: str, value: Any) -> Any:
    """``value`` as the field takes it; :class:`_Refusal` (400) when it is not acceptable."""
    if name == "prompt":
        if not isinstance(value, str) or not value.strip():
            raise _Refusal(400, "prompt is required and must be a non-empty string")
        return value
    if name == "seed":
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
            raise _Refusal(400, f"seed must be an integer from 0 to {SEED_MAX}")
        return value
    if not isinstance(value, str):
        raise _Refusal(400, f"{name} must be a string")
    if name in ENUMS and value not in ENUMS[name]:
        raise _Refusal(400, f"{name} must be one of {', '.join(ENUMS[name])} (got {value!r})")
    if name == "aspect_ratio" and value not in ASPECT_RATIOS:
        raise _Refusal(400, f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)} (got {value!r})")
    if name == "resolution" and value != "None" and value not in RESOLUTIONS:
        raise _Refusal(400, f"resolution {value!r} is not a supported resolution (WIDTHxHEIGHT, e.g. 1024x1024)")
    return value


class _Reader:
    """Turns a body into checked fields and read images (equal image bytes are kept once)."""

    def __init__(self, kit: EmulatorKit) -> None:
        self.kit = kit
        self.blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        self.blobs.clear()

    def read(self, kind: str, raw: bytes, content_type: str) -> _Input:
        given: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if kind == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                raise _Refusal(400, "The request body is not valid JSON")
            if not isinstance(body, dict):
                raise _Refusal(400, "The request body must be a JSON object")
            given = body
        else:
            try:
                parts = parse_multipart(raw, content_type)
            except MultipartError as exc:
                raise _Refusal(400, f"Malformed multipart body: {exc}")
            given, files = self._form(parts)
        found = _Input({}, {})
        for name, value in given.items():
            if name not in FIELDS:
                raise _Refusal(400, f"Unknown parameter {name!r}")
            if value is None:
                continue
            if name in IMAGE_FIELDS:
                found.images[name] = self._image(name, value, found.notes)
            else:
                found.values[name] = _check_value(name, value)
        for name, data in files.items():
            found.images[name] = self._bytes(name, data)
        self._cross_check(found)
        return found

    @staticmethod
    def _form(parts: list[Part]) -> tuple[dict[str, Any], dict[str, bytes]]:
        given: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for part in parts:
            if part.name in given or part.name in files:
                raise _Refusal(400, f"{part.name} is given more than once")
            if part.is_file:
                if part.name not in IMAGE_FIELDS:
                    raise _Refusal(400, f"{part.name} must be a text field, not a file")
                files[part.name] = part.data
                continue
            try:
                given[part.name] = part.text()
            except UnicodeDecodeError:
                raise _Refusal(400, f"{part.name} is not UTF-8 text")
        return given, files

    def _image(self, name: str, value: Any, notes: list[str]) -> _Image:
        if not isinstance(value, str) or not value.strip():
            raise _Refusal(400, f"{name} must be an image URL or a file")
        if value[:5].lower() == "data:":
            decoded = decode_data_uri(value)
            if decoded is None:
                raise _Refusal(400, f"{name}: the data URI could not be decoded")
            return self._bytes(name, decoded[1])
        if value[:7].lower() != "http://" and value[:8].lower() != "https://":
            raise _Refusal(400, f"{name} must be an http(s) URL or a file (got a value that is neither)")
        data = self.kit.lookup(value)
        if data is None:
            notes.append(f"{name} URL not fetched (the emulator reads only its own files)")
            return _Image(None, None)
        return self._bytes(name, data)

    def _bytes(self, name: str, data: bytes) -> _Image:
        if len(data) > MAX_IMAGE_BYTES:
            raise _Refusal(400, f"{name} is larger than 10 MB")
        info = probe_image(data)
        if info is None:
            raise _Refusal(400, f"{name} is not a JPEG, PNG or WebP image")
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        with self._lock:
            data = self.blobs.setdefault(digest, data)
        return _Image(data, info)

    @staticmethod
    def _cross_check(found: _Input) -> None:
        if "prompt" not in found.values:
            raise _Refusal(400, "prompt is required")
        if "character_reference_image" not in found.images:
            raise _Refusal(400, "character_reference_image is required")
        if ("image" in found.images) != ("mask" in found.images):
            raise _Refusal(400, "image and mask must be given together (inpainting)")
        resolution = found.values.get("resolution")
        if "aspect_ratio" in found.values and resolution not in (None, "None"):
            raise _Refusal(400, "Give aspect_ratio or resolution, not both")
        image, mask = found.images.get("image"), found.images.get("mask")
        if (
            image
            and mask
            and image.info
            and mask.info
            and (image.info.width, image.info.height)
            != (
                mask.info.width,
                mask.info.height,
            )
        ):
            raise _Refusal(
                400,
                f"mask must have the same size as image ({mask.info.width}x{mask.info.height} vs "
                f"{image.info.width}x{image.info.height})",
            )


def output_size(found: _Input) -> tuple[int, int]:
    """The size Segmind renders: an edit's image size; else the resolution that applies (given, or the
    default one, which wins over an aspect ratio: :data:`DEFAULT_RESOLUTION_WINS`); ``"None"`` lets the
    aspect ratio (given or default) decide."""
    image = found.images.get("image")
    if image is not None and image.info is not None:
        return image.info.width, image.info.height
    given = found.values.get("resolution")
    resolution = given if given is not None else (DEFAULTS["resolution"] if DEFAULT_RESOLUTION_WINS else "None")
    if resolution != "None":
        width, height = str(resolution).split("x")
        return int(width), int(height)
    return size_for_aspect_ratio(str(found.effective["aspect_ratio"]))


# -- the emulator ---------------------------------------------------------------------------------------------


@dataclass
class _Job:
    seed: int
    cost: Decimal
    remaining: Decimal
    failure: str | None
    render: Callable[[], Awaitable[StoredFile]] | None = None
    """Draws the job's image (v2: when the result is first asked for)."""
    warm: Callable[[], Awaitable[None]] | None = None
    """Builds the image's canvas while the job waits, so the render itself is quick."""
    file: asyncio.Future[StoredFile] | None = None


def routes(kit: EmulatorKit) -> list[BaseRoute]:
    """Starlette routes for Segmind's paths, bound to ``kit`` (mounted under the ``segmind`` prefix)."""
    from starlette.routing import Route

    emulator = _SegmindEmulator(kit)
    return [
        Route(V1_PATH, emulator.v1, methods=["POST"], name="segmind.v1"),
        Route(V2_PATH, emulator.v2_submit, methods=["POST"], name="segmind.v2.submit"),
        Route("/v2/requests/{request_id}/status", emulator.v2_status, methods=["GET"], name="segmind.v2.status"),
        Route("/v2/requests/{request_id}", emulator.v2_result, methods=["GET"], name="segmind.v2.result"),
        Route(V1_PATH, emulator.not_allowed, methods=["GET", "PUT", "DELETE", "PATCH"]),
        Route(V2_PATH, emulator.not_allowed, methods=["GET", "PUT", "DELETE", "PATCH"]),
        Route("/{path:path}", emulator.not_found, methods=["GET", "POST", "PUT", "DELETE"]),
    ]


class _SegmindEmulator:
    def __init__(self, kit: EmulatorKit) -> None:
        self.kit = kit
        self.reader = _Reader(kit)
        self.board: JobBoard[None] = JobBoard(kit, queue_share=QUEUE_SHARE, retention_seconds=RETENTION_SECONDS)
        self.credits: dict[str, Decimal] = {}
        self._lock = threading.Lock()
        kit.on_reset(self._reset)
        kit.shape_errors(shape_fault)

    def _reset(self) -> None:
        self.reader.clear()
        with self._lock:
            self.credits.clear()

    # -- plumbing

    @staticmethod
    def _error(status: int, message: str, **headers: str) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def _owner(self, request: Request) -> str:
        """The account a request bills to, keyed by a hash of its key (the key is never kept)."""
        key = request.headers.get("x-api-key", "").strip()
        if not key:
            raise _Refusal(401, "Missing Authorization or x-api-key in header")
        if key.lower().startswith("invalid"):
            raise _Refusal(401, "Unauthorized. API key is invalid or has been revoked.")
        owner = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        with self._lock:
            if owner not in self.credits:
                self.credits[owner] = Decimal(0) if key.lower().startswith(NO_CREDIT_PREFIX) else STARTING_CREDITS
        return owner

    async def _read(self, request: Request) -> _Input:
        content_type = request.headers.get("content-type", "")
        kind, _ = media_type(content_type)
        if kind not in ("application/json", "multipart/form-data"):
            raise _Refusal(406, "Invalid content type")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _Refusal(413, "Request body too large")
        raw = await request.body()
        if len(raw) > 256 * 1024:  # parsing megabytes is worker-thread work
            return await self.kit.run_blocking(self.reader.read, kind, raw, content_type)
        return self.reader.read(kind, raw, content_type)

    def _charge(self, owner: str, request_id: str, found: _Input, mode: str) -> _Job:
        """Admit the job and take its cost from the key's credit; 406 when the credit does not cover it."""
        cost = PRICE_USD[found.speed]
        with self._lock:
            balance = self.credits[owner]
            if balance < cost:
                raise _Refusal(
                    406, f"Insufficient credits: your balance is ${balance:.4f} and this request needs ${cost:.4f}"
                )
            self.credits[owner] = balance - cost
            remaining = self.credits[owner]
        self.kit.admit(
            request_id,
            operation=found.operation,
            images=1,
            cost_usd=cost,
            mode=mode,
            rendering_speed=found.speed,
            inputs=found.effective,
        )
        prompt = str(found.values["prompt"])
        failure = "Server had some issue" if MARKER_FAIL in prompt else None
        if failure is not None:
            self.kit.void(request_id, "the run failed")
            with self._lock:
                self.credits[owner] += cost
        seed = int(found.effective["seed"])  # Segmind's default is 1, not a random seed
        return _Job(seed=seed, cost=cost, remaining=remaining, failure=failure)

    def _plan(self, found: _Input, job: _Job) -> None:
        """Set the job's render (and canvas warm-up) from its checked input."""
        width, height = output_size(found)
        reference = found.images["character_reference_image"].data or b""
        image, mask = found.images.get("image"), found.images.get("mask")
        base, cut = (image.data if image else None), (mask.data if mask else None)
        prompt = str(found.values["prompt"])
        kit = self.kit

        async def draw() -> StoredFile:
            return await kit.arender_file(
                reference, prompt, width=width, height=height, seed=job.seed, fmt="jpeg", base=base, mask=cut
            )

        async def render() -> StoredFile:
            if job.file is None:  # once, shielded from one waiting client giving up
                job.file = asyncio.ensure_future(draw())
            return await asyncio.shield(job.file)

        async def warm() -> None:
            await kit.prepare_render(reference, prompt, width=width, height=height, fmt="jpeg", base=base, mask=cut)

        job.render, job.warm = render, warm

    # -- v1

    async def v1(self, request: Request) -> Response:
        from starlette.responses import Response

        started = time.monotonic()
        try:
            owner = self._owner(request)
            injected = await self.kit.fault("v1", request)
            if injected is not None:
                return injected
            found = await self._read(request)
            request_id = str(uuid.uuid4())
            job = self._charge(owner, request_id, found, "v1")
        except _Refusal as refusal:
            return self._error(refusal.status, refusal.message)
        fault = self.kit.choose_fault("v1")
        if fault is not None and fault.kind == "stuck":
            await self.kit.wait_or_stop(asyncio.Event().wait(), fault.seconds)
            raise ConnectionDropped("emulated fault: the run never finished", admitted=True)
        self._plan(found, job)
        assert job.render is not None
        rendering = asyncio.ensure_future(job.render()) if job.failure is None else None
        await self.kit.wait_or_stop(asyncio.sleep(self.kit.model_seconds), None)
        if fault is not None and fault.kind == "drop_after_admit":
            if rendering is not None:
                rendering.cancel()
            raise ConnectionDropped(
                "emulated fault: the request was admitted, then the connection dropped", admitted=True
            )
        if job.failure is not None or rendering is None:
            return self._error(500, job.failure or "Server had some issue")
        file = await rendering
        data = self.kit.file_bytes(file)  # just rendered: in the cache
        headers = {
            "x-remaining-credits": f"{job.remaining:.4f}",
            "x-cost": str(job.cost),
            "x-seed-value": str(job.seed),
            "x-request-id": request_id,
            "x-generation-time": f"{time.monotonic() - started:.3f}",
        }
        if found.notes:
            headers["x-emulator-note"] = "; ".join(found.notes)
        return Response(data, media_type="image/jpeg", headers=headers)

    # -- v2

    async def v2_submit(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            owner = self._owner(request)
            injected = await self.kit.fault("v2.submit", request)
            if injected is not None:
                return injected
            found = await self._read(request)
            request_id = str(uuid.uuid4())
            job = self._charge(owner, request_id, found, "v2")
        except _Refusal as refusal:
            return self._error(refusal.status, refusal.message)
        fault = self.kit.choose_fault("v2.submit")
        stuck = fault is not None and fault.kind == "stuck"
        self._plan(found, job)
        timed = self.board.submit(
            request_id, owner=owner, work=job.warm if job.failure is None else None, stuck=stuck, data=job
        )
        for note in found.notes:
            timed.log(note, "WARN")
        if fault is not None and fault.kind == "drop_after_admit":
            raise ConnectionDropped("emulated fault: the job was admitted, then the connection dropped", admitted=True)
        base = f"{self.kit.base_url(request, 'api')}/v2/requests/{request_id}"
        return JSONResponse({
            "request_id": request_id,
            "status": "QUEUED",
            "poll_url": base,
            "status_url": f"{base}/status",
            "response_url": base,
        })  # fmt: skip

    async def _document(self, request: Request, job: TimedJob[None], *, full: bool) -> tuple[int, dict[str, Any]]:
        data: _Job = job.data
        failed = job.phase == "done" and (data.failure is not None or job.error is not None or job.outcome is not None)
        status = "FAILED" if failed else _V2_STATUS[job.phase]
        document: dict[str, Any] = {"request_id": job.id, "status": status}
        if failed:
            document["error"] = data.failure or (str(job.error) if job.error else f"Job {job.outcome}")
            return 422, document
        if job.phase == "done":
            queue_time = (job.started_at or job.submitted_at) - job.submitted_at
            inference = (job.finished_at or 0.0) - (job.started_at or job.submitted_at)
            document["metrics"] = {
                "queue_time": round(queue_time, 3),
                "inference_time": round(inference, 3),
                "total_time": round(queue_time + inference, 3),
                "cost": float(data.cost),
                "remaining_credits": float(data.remaining),
            }
            if full:
                assert data.render is not None
                document["output"] = self.kit.file_url(request, await data.render())
        return 200, document

    async def _lookup(self, request: Request, route: str) -> Response | TimedJob[None]:
        try:
            owner = self._owner(request)
        except _Refusal as refusal:
            return self._error(refusal.status, refusal.message)
        injected = await self.kit.fault(route, request)
        if injected is not None:
            return injected
        job = self.board.get(request.path_params["request_id"])
        if job is None or job.owner != owner:
            return self._error(404, "Request not found or expired")
        return job

    async def v2_status(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        found = await self._lookup(request, "v2.status")
        if not isinstance(found, TimedJob):
            return found
        status, document = await self._document(request, found, full=False)
        return JSONResponse(document, status_code=status)

    async def v2_result(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        found = await self._lookup(request, "v2.result")
        if not isinstance(found, TimedJob):
            return found
        status, document = await self._document(request, found, full=True)
        return JSONResponse(document, status_code=status)

    # -- everything else

    async def not_allowed(self, request: Request) -> Response:
        from starlette.responses import HTMLResponse

        page = (
            "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n"
            "<p>The method is not allowed for the requested URL.</p>\n"
        )
        return HTMLResponse(page, status_code=405, headers={"allow": "POST"})

    async def not_found(self, request: Request) -> Response:
        return self._error(404, "The requested URL does not exist")


def shape_fault(fault: Fault) -> Response:
    """An injected error as Segmind answers: ``{"error": ...}``; a 429 says when the limit resets."""
    from starlette.responses import JSONResponse, PlainTextResponse

    status = fault.status or (429 if fault.kind == "rate_limit" else 500)
    headers: dict[str, str] = {}
    if status == 429:
        reset = datetime.now(timezone.utc) + timedelta(seconds=fault.retry_after or 0)
        if reset.microsecond:  # whole seconds, rounded up: never a moment already past
            reset = reset.replace(microsecond=0) + timedelta(seconds=1)
        headers["x-rate-limit-reset-at-utc"] = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(fault.body, str):
        return PlainTextResponse(fault.body, status_code=status, headers=headers)
    body = fault.body if fault.body is not None else {"error": FAULT_MESSAGES.get(status, f"HTTP {status}")}
    return JSONResponse(body, status_code=status, headers=headers)

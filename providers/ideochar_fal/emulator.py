"""fal.ai's queue and ``fal.run`` for the Ideogram V3 Character endpoints, as the ideochar emulator speaks them.

Written from ``reference/fal.md`` (§1 queue protocol, §2 errors, §3 files, §4 schemas, §5 prices), not
from our adapter, so that an adapter bug shows up here. Routes, relative to the ``fal`` prefix (the
queue base URL is the prefix, ``fal.run``'s is ``{prefix}/run``); the name in brackets is the route name
a fault profile uses:

- ``POST /fal-ai/ideogram/character``, ``.../character/edit``, ``.../character/remix`` [``submit``]
- ``GET /fal-ai/ideogram/requests/{id}/status`` [``status``], ``.../status/stream`` [``stream``]
- ``GET /fal-ai/ideogram/requests/{id}`` [``result``], ``PUT .../cancel`` [``cancel``]
- ``POST /run/fal-ai/ideogram/character[/edit|/remix]`` [``run``]
- ``GET /rest/.well-known/jwks.json``: the public keys of the emulator's signed callbacks (a submit with
  ``?fal_webhook=URL`` is called back when it ends: see the callbacks section at the end of this module)
- storage (``/rest/storage/...``, ``/cdn/...``) and pricing (``/platform/v1/models/pricing``): see
  :mod:`ideochar_fal.emulator_storage`

Behaviour, with its evidence ([D] fal docs, [S] fal_client source, [T] third party, [I] inferred — each
inferred value is a constant or table below, easy to change):

- Auth: ``Authorization: Key <key>``; any non-empty key, one starting with ``invalid`` is refused with
  401 ``{"detail": "No user found for Key ID and Secret"}`` [T]. A missing header or another scheme is
  401 too [I: fal also takes ``Bearer <jwt>`` from ``fal auth login``; the emulator takes keys only].
- Input: the JSON body is the model's arguments [S]. Checked like fal's pydantic models and answered with
  422 ``{"detail": [{"loc": ["body", ...], "msg", "type", "ctx"?}]}`` listing every problem [D shape]:
  required fields, types, enums (``TURBO|BALANCED|QUALITY``, ``AUTO|REALISTIC|FICTION``, the palette
  and ``image_size`` presets), ranges (``num_images`` 1-8, ``strength`` 0.01-1), palette shapes
  (``name`` xor ``members`` with ``rgb``), style codes (8 hex digits, not with ``style``).
- **Unknown fields are refused** (``extra_forbidden``), e.g. ``image_size`` or ``negative_prompt`` on
  edit [I: fal's models most likely ignore them; the emulator is stricter on purpose
  (:data:`REJECT_UNKNOWN_FIELDS`), because a field silently dropped is an adapter bug]. Edit takes
  ``style``: ``CharacterEditInputV3`` lists it [D].
- **Documented defaults are applied** to a missing field (:data:`DEFAULTS` [D]: ``rendering_speed``
  BALANCED and its price, ``style`` AUTO, ``expand_prompt`` true, ``num_images`` 1, ``image_size``
  square_hd, ``negative_prompt`` "", ``sync_mode`` false, remix ``strength`` 0.8; a random seed); the
  ledger entry's ``inputs`` holds what the run used, so a test sees an adapter that left a field out.
- Images: http(s) URLs or data URIs [D]. Data URIs are decoded and must hold JPEG, PNG or WebP
  (``image_load_error``); references total at most 10 MB, style references too [D]; edit's image and
  mask must have the same pixel size [D]; each reference mask the size of its reference [I]. URLs of
  files this emulator serves are read back (an upload that expired, or was never completed, is refused
  with ``file_download_error`` [I wording]); other URLs are not fetched (no internet): the image is
  rendered without them and the job's logs say so. Each job logs what it renders (``logs=1``).
- Queue: submit answers ``{request_id, response_url, status_url, cancel_url, status: "IN_QUEUE",
  queue_position}`` with URLs that use only the owner and app (``/fal-ai/ideogram/requests/{id}``) [D].
  A job is ``IN_QUEUE`` for :data:`QUEUE_SHARE` of the model time, then ``IN_PROGRESS``, then
  ``COMPLETED``; status answers 202 until then and 200 after [D], with ``logs`` only when ``logs=1`` or
  ``true`` (else ``null``) [S]. The status stream sends the same documents as server-sent events, a
  comment every :data:`KEEPALIVE_SECONDS`, and ends after ``COMPLETED`` [D].
- Result before completion: 400 ``{"detail": "Request is still in progress"}``; unknown id (or another
  key's job): 404 ``{"detail": "Request not found"}`` [I: wording].
- Cancel (:data:`CANCEL_ANSWERS`): a queued job is removed (and not billed), a running one is signalled
  and ends cancelled (still billed), a finished one is ``ALREADY_COMPLETED``, an unknown one ``NOT_FOUND``
  [D statuses; I: the HTTP codes 202/202/400/404, and billing]. A cancelled job's status is ``COMPLETED``
  with ``error_type: "request_cancelled"`` and its result a 400 [I].
- ``fal.run`` answers the output directly, after the model time [D].
- Output ``{"images": [{"url", "content_type", "file_name", "file_size"}], "seed"}`` [D]; PNG files
  served by the emulator, or data URIs with ``sync_mode`` [D].
- Sizes: ``image_size`` presets are fal's pixel sizes [D]; any size Ideogram cannot render is replaced
  by its nearest legal size in shape [I]. Edit renders at the input image's size; remix at
  ``image_size``, whose default is ``square_hd`` as on generate [D: remix takes every generate field].
- Billing: a queue job is admitted to the ledger at submit, a ``fal.run`` call when it is accepted;
  ``num_images`` x $0.10/$0.15/$0.20 by speed [D; edit I]. A queued job cancelled, and a run that
  fails (5xx, content policy), are voided [D: "failed requests that return 5xx are not billed"; I].
- Injected errors: app-level ones carry ``x-fal-request-id`` and fal's ``{"detail", "error_type"}``;
  ``ingress`` ones are nginx pages without it (what fal_client's retry heuristic tells apart) [S]. App
  errors and failed runs carry ``X-Fal-Retryable`` [D: the header], true for 5xx and 429, false
  otherwise (:func:`retryable`) [I: the values per error].

Prompt markers to simulate the model's failures: ``[emulator:unsafe]`` (422 ``content_policy_violation``)
and ``[emulator:fail]`` (500 ``internal_server_error``); the job still completes, with ``error`` set.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import re
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ideochar.emulator.inputs import ImageInfo, decode_data_uri, media_type, probe_image
from ideochar.emulator.jobs import JobBoard, TimedJob
from ideochar.emulator.kit import RESOLUTIONS, ConnectionDropped, Fault, StoredFile, nearest_resolution
from ideochar_fal.emulator_storage import storage_routes

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ideochar.emulator.kit import EmulatorKit

__all__ = [
    "APP_ID",
    "CANCEL_ANSWERS",
    "DEFAULTS",
    "ENDPOINTS",
    "KEEPALIVE_SECONDS",
    "MARKER_FAIL",
    "MARKER_UNSAFE",
    "PRICE_PER_IMAGE_USD",
    "QUEUE_SHARE",
    "REJECT_UNKNOWN_FIELDS",
    "routes",
]

APP_ID = "fal-ai/ideogram"
#: Endpoint path (under the queue or run base URL) -> operation.
ENDPOINTS: Mapping[str, str] = {
    "fal-ai/ideogram/character": "generate",
    "fal-ai/ideogram/character/edit": "edit",
    "fal-ai/ideogram/character/remix": "remix",
}
#: USD per output image [D: generate and remix llms.txt; I: edit the same, and per image].
PRICE_PER_IMAGE_USD: Mapping[str, Decimal] = {
    "TURBO": Decimal("0.10"),
    "BALANCED": Decimal("0.15"),
    "QUALITY": Decimal("0.20"),
}
DEFAULT_SPEED = "BALANCED"
#: What fal uses for a missing field, per endpoint [D: the schemas' defaults]; the seed is drawn at random.
_COMMON_DEFAULTS: Mapping[str, Any] = {
    "rendering_speed": DEFAULT_SPEED,
    "style": "AUTO",
    "expand_prompt": True,
    "num_images": 1,
    "sync_mode": False,
}
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "generate": {**_COMMON_DEFAULTS, "image_size": "square_hd", "negative_prompt": ""},
    "edit": dict(_COMMON_DEFAULTS),
    "remix": {**_COMMON_DEFAULTS, "image_size": "square_hd", "negative_prompt": "", "strength": 0.8},
}
#: Share of the model time a job spends IN_QUEUE before IN_PROGRESS [I].
QUEUE_SHARE = 0.2
#: A comment line on the status stream this often [D: "every 15 seconds"].
KEEPALIVE_SECONDS = 15.0
#: How often a stream re-sends a shrinking queue position while the job waits [I].
QUEUE_UPDATE_SECONDS = 0.5
#: Refuse fields the endpoint does not have, instead of ignoring them as fal probably does [I, on purpose].
REJECT_UNKNOWN_FIELDS = True
#: 10 MB per reference set [D]; MB read as MiB [I].
MAX_REFERENCES_BYTES = 10 * 1024 * 1024
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
#: fal's image_size presets [D: model-arguments page].
IMAGE_SIZE_PRESETS: Mapping[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
#: fal's toolkit ImageSize bounds [I].
MAX_IMAGE_SIDE = 14142
PALETTE_PRESETS = ("EMBER", "FRESH", "JUNGLE", "MAGIC", "MELON", "MOSAIC", "PASTEL", "ULTRAMARINE")
SEED_MAX = 2_147_483_647
#: Cancel outcome by job phase: (HTTP status, body status) [D statuses; I codes].
CANCEL_ANSWERS: Mapping[str, tuple[int, str]] = {
    "queued": (202, "CANCELLATION_REQUESTED"),
    "running": (202, "CANCELLATION_REQUESTED"),
    "done": (400, "ALREADY_COMPLETED"),
    "unknown": (404, "NOT_FOUND"),
}
MARKER_UNSAFE = "[emulator:unsafe]"
MARKER_FAIL = "[emulator:fail]"

#: Error bodies for injected status faults, fal's shapes [D request-errors; T auth; I the rest].
FAULT_BODIES: Mapping[int, tuple[Any, str | None]] = {
    400: ("Bad request", None),
    401: ("No user found for Key ID and Secret", None),
    403: ("User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.", None),
    404: ("Request not found", None),
    408: ("Request timed out", "request_timeout"),
    409: ("Conflict", None),
    429: ("Too many requests: rate limit exceeded", None),
    500: ("Internal server error", "internal_server_error"),
    502: ("Runner disconnected", "runner_disconnected"),
    503: ("Runner scheduling failure", "runner_scheduling_failure"),
    504: ("Request timed out", "request_timeout"),
}

_STATUS = {"queued": "IN_QUEUE", "running": "IN_PROGRESS", "done": "COMPLETED"}
_STYLE_CODE = re.compile(r"^[0-9A-Fa-f]{8}$")


# -- input validation, reported the way fal's pydantic models report it -----------------------------------

Loc = tuple[str | int, ...]
Problem = dict[str, Any]
Check = Callable[[Any, Loc], list[Problem]]


def _problem(loc: Loc, msg: str, kind: str, **ctx: Any) -> Problem:
    found: Problem = {"loc": ["body", *loc], "msg": msg, "type": kind}
    if ctx:
        found["ctx"] = ctx
    return found


def _string(min_length: int = 0) -> Check:
    def check(value: Any, loc: Loc) -> list[Problem]:
        if not isinstance(value, str):
            return [_problem(loc, "Input should be a valid string", "string_type")]
        if len(value) < min_length:
            return [
                _problem(
                    loc, f"String should have at least {min_length} character", "string_too_short",
                    min_length=min_length,
                )
            ]  # fmt: skip
        return []

    return check


def _literal(*values: str) -> Check:
    expected = ", ".join(repr(v) for v in values[:-1]) + f" or {values[-1]!r}" if len(values) > 1 else repr(values[0])

    def check(value: Any, loc: Loc) -> list[Problem]:
        if value not in values:
            return [_problem(loc, f"Input should be {expected}", "literal_error", expected=expected)]
        return []

    return check


def _boolean(value: Any, loc: Loc) -> list[Problem]:
    return [] if isinstance(value, bool) else [_problem(loc, "Input should be a valid boolean", "bool_type")]


def _bounds(value: float, loc: Loc, ge: float | None, le: float | None) -> list[Problem]:
    if ge is not None and value < ge:
        return [_problem(loc, f"Input should be greater than or equal to {ge}", "greater_than_equal", ge=ge)]
    if le is not None and value > le:
        return [_problem(loc, f"Input should be less than or equal to {le}", "less_than_equal", le=le)]
    return []


def _integer(ge: int | None = None, le: int | None = None) -> Check:
    def check(value: Any, loc: Loc) -> list[Problem]:
        if isinstance(value, bool) or not isinstance(value, int):
            return [_problem(loc, "Input should be a valid integer", "int_type")]
        return _bounds(value, loc, ge, le)

    return check


def _number(ge: float | None = None, le: float | None = None) -> Check:
    def check(value: Any, loc: Loc) -> list[Problem]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [_problem(loc, "Input should be a valid number", "float_type")]
        return _bounds(float(value), loc, ge, le)

    return check


def _list(item: Check, min_length: int = 0) -> Check:
    def check(value: Any, loc: Loc) -> list[Problem]:
        if not isinstance(value, list):
            return [_problem(loc, "Input should be a valid list", "list_type")]
        if len(value) < min_length:
            return [
                _problem(
                    loc, f"List should have at least {min_length} item after validation, not {len(value)}",
                    "too_short", field_type="List", min_length=min_length, actual_length=len(value),
                )
            ]  # fmt: skip
        return [problem for index, entry in enumerate(value) for problem in item(entry, (*loc, index))]

    return check


def _object(fields: Mapping[str, tuple[Check, bool]]) -> Check:
    """A closed object: listed fields (check, required), nothing else."""

    def check(value: Any, loc: Loc) -> list[Problem]:
        if not isinstance(value, dict):
            return [
                _problem(
                    loc, "Input should be a valid dictionary or object to extract fields from", "model_attributes_type"
                )
            ]
        found: list[Problem] = []
        for name, (field_check, required) in fields.items():
            if name not in value:
                if required:
                    found.append(_problem((*loc, name), "Field required", "missing"))
                continue
            found += field_check(value[name], (*loc, name))
        for name in value:
            if name not in fields:
                found.append(_problem((*loc, name), "Extra inputs are not permitted", "extra_forbidden"))
        return found

    return check


def _image_size(value: Any, loc: Loc) -> list[Problem]:
    if isinstance(value, str):
        return _literal(*IMAGE_SIZE_PRESETS)(value, loc)
    side = _integer(ge=1, le=MAX_IMAGE_SIDE)
    return _object({"width": (side, True), "height": (side, True)})(value, loc)


_MEMBER = _object({
    "rgb": (_object({c: (_integer(ge=0, le=255), True) for c in "rgb"}), True),
    "color_weight": (_number(ge=0.05, le=1.0), False),
})  # fmt: skip


def _palette(value: Any, loc: Loc) -> list[Problem]:
    found = _object({"name": (_literal(*PALETTE_PRESETS), False), "members": (_list(_MEMBER, 1), False)})(value, loc)
    if not found and ("name" in value) == ("members" in value):
        found.append(_problem(loc, "Value error, give either a palette name or members, not both", "value_error"))
    return found


def _style_code(value: Any, loc: Loc) -> list[Problem]:
    found = _string()(value, loc)
    if not found and not _STYLE_CODE.match(value):
        found.append(
            _problem(
                loc, f"String should match pattern '{_STYLE_CODE.pattern}'", "string_pattern_mismatch",
                pattern=_STYLE_CODE.pattern,
            )
        )  # fmt: skip
    return found


_URLS = _list(_string(1))
#: name -> (check, required), per endpoint [D: fal docs tab and fal-js types].
_COMMON: Mapping[str, tuple[Check, bool]] = {
    "prompt": (_string(1), True),
    "reference_image_urls": (_list(_string(1), 1), True),
    "reference_mask_urls": (_URLS, False),
    "image_urls": (_URLS, False),
    "rendering_speed": (_literal(*PRICE_PER_IMAGE_USD), False),
    "color_palette": (_palette, False),
    "style_codes": (_list(_style_code), False),
    "expand_prompt": (_boolean, False),
    "num_images": (_integer(ge=1, le=8), False),
    "seed": (_integer(ge=0, le=SEED_MAX), False),
    "sync_mode": (_boolean, False),
}
_GENERATE: Mapping[str, tuple[Check, bool]] = {
    **_COMMON,
    "style": (_literal("AUTO", "REALISTIC", "FICTION"), False),
    "image_size": (_image_size, False),
    "negative_prompt": (_string(), False),
}
SCHEMAS: Mapping[str, Mapping[str, tuple[Check, bool]]] = {
    "generate": _GENERATE,
    "edit": {
        **_COMMON,
        "style": (_literal("AUTO", "REALISTIC", "FICTION"), False),
        "image_url": (_string(1), True),
        "mask_url": (_string(1), True),
    },
    "remix": {**_GENERATE, "image_url": (_string(1), True), "strength": (_number(ge=0.01, le=1.0), False)},
}


def validate(operation: str, body: Any) -> list[Problem]:
    """Every way ``body`` breaks the endpoint's input model (empty when it is valid)."""
    fields = SCHEMAS[operation]
    if not isinstance(body, dict):
        return [
            _problem((), "Input should be a valid dictionary or object to extract fields from", "model_attributes_type")
        ]
    found: list[Problem] = []
    for name, (check, required) in fields.items():
        if name not in body:
            if required:
                found.append(_problem((name,), "Field required", "missing"))
        elif body[name] is not None or required:
            found += check(body[name], (name,))
    if REJECT_UNKNOWN_FIELDS:
        found += [_problem((n,), "Extra inputs are not permitted", "extra_forbidden") for n in body if n not in fields]
    if not found and body.get("style_codes") and body.get("style") not in (None, "AUTO"):
        found.append(_problem(("style_codes",), "Value error, style_codes cannot be used with style", "value_error"))
    return found


class _Invalid(Exception):
    def __init__(self, problems: list[Problem], status: int = 422) -> None:
        super().__init__(problems[0]["msg"] if problems else "invalid")
        self.problems = problems
        self.status = status


# -- images -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Image:
    data: bytes | None
    """None when the URL is not this emulator's (not fetched)."""
    info: ImageInfo | None


@dataclass
class _Input:
    """A validated request, its images read."""

    operation: str
    body: dict[str, Any]
    references: list[_Image]
    image: _Image | None = None
    mask: _Image | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def effective(self) -> dict[str, Any]:
        """Every setting as the run uses it: the body's values, :data:`DEFAULTS` for the rest (image
        fields left out)."""
        values = {**DEFAULTS[self.operation], **self.body}
        return {k: v for k, v in values.items() if not (k.endswith("_url") or k.endswith("_urls"))}


class _Images:
    """Reads image fields: data URIs decoded, this emulator's URLs read back, equal bytes kept once."""

    def __init__(self, kit: EmulatorKit) -> None:
        self.kit = kit
        self.blobs: dict[str, bytes] = {}

    def read(self, value: str, loc: Loc, notes: list[str]) -> _Image:
        if value[:5].lower() == "data:":
            decoded = decode_data_uri(value)
            if decoded is None:
                raise _Invalid([_problem(loc, "The data URI could not be decoded", "image_load_error")])
            data = decoded[1]
        elif value[:7].lower() == "http://" or value[:8].lower() == "https://":
            found = self.kit.lookup(value)
            if found is None and self.kit.serves(value):  # its file, gone (expired) or never uploaded
                raise _Invalid([_problem(loc, "Failed to download the file: HTTP 404", "file_download_error")])
            if found is None:
                notes.append(f"{'.'.join(map(str, loc))}: URL not fetched (the emulator reads only its own files)")
                return _Image(None, None)
            data = found
        else:
            raise _Invalid(
                [_problem(loc, "Failed to download the file: not an http(s) URL or a data URI", "file_download_error")]
            )
        if len(data) > MAX_IMAGE_BYTES:
            raise _Invalid(
                [_problem(loc, "Image is too large (max 10 MB)", "file_too_large", max_size=MAX_IMAGE_BYTES)]
            )
        info = probe_image(data)
        if info is None:
            raise _Invalid([_problem(loc, "Could not load the image: use JPEG, PNG or WebP", "image_load_error")])
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        return _Image(self.blobs.setdefault(digest, data), info)

    def clear(self) -> None:
        self.blobs.clear()


def _read_images(operation: str, body: dict[str, Any], images: _Images) -> _Input:
    notes: list[str] = []
    references = [
        images.read(v, ("reference_image_urls", i), notes) for i, v in enumerate(body["reference_image_urls"])
    ]
    _check_total(references, "reference_image_urls")
    masks = [
        images.read(v, ("reference_mask_urls", i), notes) for i, v in enumerate(body.get("reference_mask_urls") or [])
    ]
    for index, (reference, mask) in enumerate(zip(references, masks, strict=False)):
        _check_same_size(reference, mask, ("reference_mask_urls", index), "each reference mask", "its reference")
    styles = [images.read(v, ("image_urls", i), notes) for i, v in enumerate(body.get("image_urls") or [])]
    _check_total(styles, "image_urls")
    found = _Input(operation, body, references, notes=notes)
    if "image_url" in body:
        found.image = images.read(body["image_url"], ("image_url",), notes)
    if "mask_url" in body:
        found.mask = images.read(body["mask_url"], ("mask_url",), notes)
        assert found.image is not None
        _check_same_size(found.image, found.mask, ("mask_url",), "image_url and mask_url", "each other")
    return found


def _check_total(images: Sequence[_Image], name: str) -> None:
    total = sum(len(i.data) for i in images if i.data is not None)
    if total > MAX_REFERENCES_BYTES:
        raise _Invalid(
            [_problem((name,), "Images total more than 10 MB", "file_too_large", max_size=MAX_REFERENCES_BYTES)]
        )


def _check_same_size(first: _Image, second: _Image, loc: Loc, what: str, other: str) -> None:
    if first.info is None or second.info is None:
        return
    if (first.info.width, first.info.height) != (second.info.width, second.info.height):
        a = f"{first.info.width}x{first.info.height}"
        b = f"{second.info.width}x{second.info.height}"
        raise _Invalid(
            [
                _problem(
                    loc,
                    f"Value error, {what} must have the exact same dimensions as {other} ({a} vs {b})",
                    "value_error",
                )
            ]
        )


def output_size(job: _Input) -> tuple[int, int]:
    """The pixel size fal's backend would render (see the module docstring)."""
    requested: tuple[int, int] | None = None
    size = job.body.get("image_size")
    if isinstance(size, str):
        requested = IMAGE_SIZE_PRESETS[size]
    elif isinstance(size, dict):
        requested = (size["width"], size["height"])
    if job.image is not None and job.image.info is not None and job.operation == "edit":
        return job.image.info.width, job.image.info.height
    width, height = requested or IMAGE_SIZE_PRESETS["square_hd"]
    return (width, height) if f"{width}x{height}" in RESOLUTIONS else nearest_resolution(width, height)


# -- the emulator ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Render:
    """How to draw a job's images (the inputs, interned: equal images are one object)."""

    reference: bytes
    prompt: str
    width: int
    height: int
    base: bytes | None
    mask: bytes | None
    seeds: list[int]


@dataclass
class _Job:
    """What the emulator keeps about a fal job besides its timeline."""

    endpoint: str
    seed: int
    sync_mode: bool
    failure: tuple[int, str, str] | None
    """``(HTTP status, detail, error_type)`` when the model run fails."""
    render: _Render
    files: asyncio.Future[list[StoredFile]] | None = None


def routes(kit: EmulatorKit) -> list[BaseRoute]:
    """Starlette routes for fal's queue and run paths, bound to ``kit`` (mounted under the ``fal`` prefix)."""
    from starlette.routing import Route

    emulator = _FalEmulator(kit)
    found: list[BaseRoute] = []
    for endpoint, operation in ENDPOINTS.items():
        found.append(
            Route(f"/{endpoint}", emulator.submitter(operation), methods=["POST"], name=f"fal.submit.{operation}")
        )
        found.append(
            Route(f"/run/{endpoint}", emulator.runner(operation), methods=["POST"], name=f"fal.run.{operation}")
        )
    base = f"/{APP_ID}/requests/{{request_id}}"
    found += storage_routes(
        kit, owner_of=emulator._auth, prices=PRICE_PER_IMAGE_USD, endpoints=ENDPOINTS, clock=kit.now
    )
    found += [
        Route(JWKS_PATH, emulator.webhooks.jwks, methods=["GET"], name="fal.jwks"),
        Route(f"{base}/status", emulator.status, methods=["GET"], name="fal.status"),
        Route(f"{base}/status/stream", emulator.stream, methods=["GET"], name="fal.stream"),
        Route(f"{base}/cancel", emulator.cancel, methods=["PUT"], name="fal.cancel"),
        Route(base, emulator.result, methods=["GET"], name="fal.result"),
        Route("/{path:path}", emulator.not_found, methods=["GET", "POST", "PUT", "DELETE"], name="fal.not_found"),
    ]
    return found


class _FalEmulator:
    def __init__(self, kit: EmulatorKit) -> None:
        self.kit = kit
        self.board: JobBoard[None] = JobBoard(kit, queue_share=QUEUE_SHARE)
        self.images = _Images(kit)
        kit.on_reset(self.images.clear)
        kit.shape_errors(shape_fault)
        self.webhooks = _FalWebhooks(kit, self)

    # -- plumbing

    def _queue_base(self, request: Request) -> str:
        return self.kit.base_url(request, "queue")

    @staticmethod
    def _json(body: Any, status: int = 200, request_id: str | None = None, **headers: str) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(
            body, status_code=status, headers={"x-fal-request-id": request_id or str(uuid.uuid4()), **headers}
        )

    def _auth(self, request: Request) -> tuple[str | None, Response | None]:
        """The owner (a hash of the key, never the key) or fal's 401."""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if not header:
            return None, self._json({"detail": "Missing authorization header"}, 401)
        if scheme.lower() != "key" or not key:
            return None, self._json({"detail": "Invalid authorization header: expected 'Key <key>'"}, 401)
        if key.lower().startswith("invalid"):
            return None, self._json({"detail": "No user found for Key ID and Secret"}, 401)
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], None

    async def _read_input(self, request: Request, operation: str) -> _Input:
        kind, _ = media_type(request.headers.get("content-type"))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _Invalid([_problem((), "Request body too large", "value_error")], status=413)
        raw = await request.body()
        if kind != "application/json":
            raise _Invalid(
                [
                    _problem(
                        (),
                        "Input should be a valid dictionary or object to extract fields from",
                        "model_attributes_type",
                    )
                ]
            )
        priority = request.headers.get("x-fal-queue-priority")
        if priority is not None and priority not in ("normal", "low"):
            raise _Invalid(
                [
                    {
                        "loc": ["header", "x-fal-queue-priority"],
                        "msg": "Input should be 'normal' or 'low'",
                        "type": "literal_error",
                    }
                ]
            )
        if len(raw) > 256 * 1024:  # decoding megabytes of base64 is worker-thread work
            return await self.kit.run_blocking(self._parse, raw, operation)
        return self._parse(raw, operation)

    def _parse(self, raw: bytes, operation: str) -> _Input:
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _Invalid([_problem((0,), "JSON decode error", "json_invalid", error=str(exc))])
        problems = validate(operation, body)
        if problems:
            raise _Invalid(problems)
        body = {k: v for k, v in body.items() if v is not None}
        return _read_images(operation, body, self.images)

    def _prepare(self, request: Request, operation: str, found: _Input) -> _Job:
        body = found.body
        seed = body["seed"] if "seed" in body else self.kit.random_seed()
        prompt = body["prompt"]
        failure: tuple[int, str, str] | None = None
        if MARKER_UNSAFE in prompt:
            failure = (
                422,
                "The content could not be processed because it was flagged by a content checker.",
                "content_policy_violation",
            )
        elif MARKER_FAIL in prompt:
            failure = (500, "Internal server error", "internal_server_error")
        width, height = output_size(found)
        return _Job(
            endpoint=request.url.path,
            seed=seed,
            sync_mode=bool(body.get("sync_mode")),
            failure=failure,
            render=_Render(
                reference=found.references[0].data or b"",
                prompt=prompt,
                width=width,
                height=height,
                base=found.image.data if found.image is not None else None,
                mask=found.mask.data if found.mask is not None else None,
                seeds=[(seed + i) % (SEED_MAX + 1) for i in range(body.get("num_images", 1))],
            ),
        )

    async def _warm(self, job: _Job) -> None:
        """Build the job's canvas while it waits (a worker thread, once per canvas): its images are then
        about a millisecond each when the result is asked for, not in the way of completion notices."""
        r = job.render
        await self.kit.prepare_render(r.reference, r.prompt, width=r.width, height=r.height, base=r.base, mask=r.mask)

    async def _files(self, job: _Job) -> list[StoredFile]:
        """The job's images, rendered once, on first request (deterministic, so when does not matter).

        Shielded: a client that gives up does not cancel the rendering another client is waiting for.
        """
        if job.files is None:
            job.files = asyncio.ensure_future(self._render_files(job.render))
        return await asyncio.shield(job.files)

    async def _render_files(self, r: _Render) -> list[StoredFile]:
        return [
            await self.kit.arender_file(
                r.reference, r.prompt, width=r.width, height=r.height, seed=seed, fmt="png", base=r.base, mask=r.mask
            )
            for seed in r.seeds
        ]

    def _admit(self, request_id: str, found: _Input, job: _Job, mode: str) -> None:
        inputs = {**found.effective, "seed": job.seed}
        speed, count = inputs["rendering_speed"], inputs["num_images"]
        self.kit.admit(
            request_id, operation=found.operation, images=count, cost_usd=PRICE_PER_IMAGE_USD[speed] * count,
            mode=mode, rendering_speed=speed, inputs=inputs,
        )  # fmt: skip
        if job.failure is not None:
            self.kit.void(request_id, f"the run failed ({job.failure[2]})")

    def _invalid(self, invalid: _Invalid) -> Response:
        return self._json({"detail": invalid.problems}, invalid.status)

    async def _output(self, request: Request, files: Sequence[StoredFile], job: _Job) -> dict[str, Any]:
        images = []
        for file in files:
            if job.sync_mode:
                data = await self.kit.run_blocking(self.kit.file_bytes, file)
                url = f"data:{file.content_type};base64,{base64.b64encode(data).decode('ascii')}"
            else:
                url = self.kit.file_url(request, file)
            images.append(
                {"url": url, "content_type": file.content_type, "file_name": file.file_name, "file_size": file.size}
            )
        return {"images": images, "seed": job.seed}

    def _failure_response(self, request_id: str, failure: tuple[int, str, str]) -> Response:
        status, detail, error_type = failure
        if status == 422:
            body: dict[str, Any] = {"detail": [_problem(("prompt",), detail, error_type)]}
        else:
            body = {"detail": detail, "error_type": error_type}
        hints = {"x-fal-error-type": error_type, "x-fal-retryable": retryable(status)}
        return self._json(body, status, request_id, **hints)

    def _find(self, request: Request, owner: str) -> TimedJob[None] | None:
        job = self.board.get(request.path_params["request_id"])
        return job if job is not None and job.owner == owner else None

    # -- queue routes

    def submitter(self, operation: str) -> Callable[[Request], Awaitable[Response]]:
        async def submit(request: Request) -> Response:
            return await self.submit(request, operation)

        return submit

    def runner(self, operation: str) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            return await self.run(request, operation)

        return run

    async def submit(self, request: Request, operation: str) -> Response:
        owner, refused = self._auth(request)
        if refused is not None:
            return refused
        assert owner is not None
        injected = await self.kit.fault("submit", request)
        if injected is not None:
            return injected
        try:
            found = await self._read_input(request, operation)
            webhook = self.webhooks.url_of(request)
        except _Invalid as invalid:
            return self._invalid(invalid)
        request_id = str(uuid.uuid4())
        job = self._prepare(request, operation, found)
        self._admit(request_id, found, job, "queue")
        fault = self.kit.choose_fault("submit")
        stuck = fault is not None and fault.kind == "stuck"
        warm = None if job.failure is not None else functools.partial(self._warm, job)
        on_done = self.webhooks.on_done(request, webhook, owner)
        timed = self.board.submit(request_id, owner=owner, work=warm, stuck=stuck, data=job, on_done=on_done)
        for note in found.notes:
            timed.log(note, "WARN")
        r = job.render
        timed.log(f"emulated model: {len(r.seeds)} image(s) at {r.width}x{r.height}, seed {job.seed}")
        if fault is not None and fault.kind == "drop_after_admit":
            raise ConnectionDropped(
                "emulated fault: the submit was admitted, then the connection dropped", admitted=True
            )
        base = f"{self._queue_base(request)}/{APP_ID}/requests/{request_id}"
        body = {
            "request_id": request_id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
            "status": "IN_QUEUE",
            "queue_position": timed.position,
        }
        if webhook is not None:
            body["gateway_request_id"] = request_id
        return self._json(body, 200, request_id)

    def _status_document(self, request: Request, job: TimedJob[None], logs: bool) -> dict[str, Any]:
        now = _loop_time()
        base = f"{self._queue_base(request)}/{APP_ID}/requests/{job.id}"
        document: dict[str, Any] = {
            "status": _STATUS[job.phase],
            "request_id": job.id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
            "logs": list(job.logs) if logs else None,
            "metrics": {},
        }
        if job.phase == "queued":
            document["queue_position"] = job.queue_position(now)
        if job.phase == "done":
            data: _Job = job.data
            if job.started_at is not None and job.finished_at is not None:
                document["metrics"] = {"inference_time": round(job.finished_at - job.started_at, 3)}
            error = _job_error(job) or data.failure
            if job.outcome == "cancelled":
                document["error"], document["error_type"] = "Request was cancelled", "request_cancelled"
            elif error is not None:
                document["error"], document["error_type"] = error[1], error[2]
        return document

    async def status(self, request: Request) -> Response:
        owner, refused = self._auth(request)
        if refused is not None:
            return refused
        assert owner is not None
        injected = await self.kit.fault("status", request)
        if injected is not None:
            return injected
        job = self._find(request, owner)
        if job is None:
            return self._json({"detail": "Request not found"}, 404, request.path_params["request_id"])
        document = self._status_document(request, job, _flag(request.query_params.get("logs")))
        return self._json(document, 200 if job.phase == "done" else 202, job.id)

    async def stream(self, request: Request) -> Response:
        from starlette.responses import StreamingResponse

        owner, refused = self._auth(request)
        if refused is not None:
            return refused
        assert owner is not None
        injected = await self.kit.fault("stream", request)
        if injected is not None:
            return injected
        job = self._find(request, owner)
        if job is None:
            return self._json({"detail": "Request not found"}, 404, request.path_params["request_id"])
        logs = _flag(request.query_params.get("logs"))
        return StreamingResponse(
            self._events(request, job, logs),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-fal-request-id": job.id, "x-accel-buffering": "no"},
        )

    async def _events(self, request: Request, job: TimedJob[None], logs: bool) -> Any:
        """Status documents as server-sent events: one per change, then the stream ends after COMPLETED."""
        last: str | None = None
        quiet_since = _loop_time()
        while True:
            changed = job.changed()
            document = self._status_document(request, job, logs)
            text = json.dumps(document, separators=(",", ":"))
            if text != last:
                yield f"data: {text}\n\n"
                last, quiet_since = text, _loop_time()
            if job.phase == "done" or self.kit.stopping:
                return
            wait = KEEPALIVE_SECONDS - (_loop_time() - quiet_since)
            if job.phase == "queued" and document.get("queue_position"):
                wait = min(wait, QUEUE_UPDATE_SECONDS)
            woke = await self.kit.wait_or_stop(changed.wait(), max(0.0, wait))
            if not woke and not self.kit.stopping and _loop_time() - quiet_since >= KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = _loop_time()

    async def result(self, request: Request) -> Response:
        owner, refused = self._auth(request)
        if refused is not None:
            return refused
        assert owner is not None
        injected = await self.kit.fault("result", request)
        if injected is not None:
            return injected
        job = self._find(request, owner)
        if job is None:
            return self._json({"detail": "Request not found"}, 404, request.path_params["request_id"])
        if job.phase != "done":
            return self._json({"detail": "Request is still in progress"}, 400, job.id)
        data: _Job = job.data
        if job.outcome == "cancelled":
            return self._json({"detail": "Request was cancelled", "error_type": "request_cancelled"}, 400, job.id)
        error = _job_error(job) or data.failure
        if error is not None:
            return self._failure_response(job.id, error)
        return self._json(await self._output(request, await self._files(data), data), 200, job.id)

    async def cancel(self, request: Request) -> Response:
        owner, refused = self._auth(request)
        if refused is not None:
            return refused
        assert owner is not None
        injected = await self.kit.fault("cancel", request)
        if injected is not None:
            return injected
        job = self._find(request, owner)
        phase = "unknown" if job is None else job.phase
        status, outcome = CANCEL_ANSWERS[phase]
        if job is not None and phase in ("queued", "running"):
            if phase == "queued":
                self.kit.void(job.id, "cancelled while queued")
            self.board.end(job, "cancelled")
        return self._json({"status": outcome}, status, request.path_params["request_id"])

    # -- fal.run

    async def run(self, request: Request, operation: str) -> Response:
        _, refused = self._auth(request)
        if refused is not None:
            return refused
        injected = await self.kit.fault("run", request)
        if injected is not None:
            return injected
        try:
            found = await self._read_input(request, operation)
        except _Invalid as invalid:
            return self._invalid(invalid)
        request_id = str(uuid.uuid4())
        job = self._prepare(request, operation, found)
        self._admit(request_id, found, job, "run")
        fault = self.kit.choose_fault("run")
        if fault is not None and fault.kind == "stuck":
            await self.kit.wait_or_stop(_forever(), fault.seconds)
            raise ConnectionDropped("emulated fault: the run never finished", admitted=True)
        rendering = asyncio.ensure_future(self._files(job)) if job.failure is None else None
        await self.kit.wait_or_stop(asyncio.sleep(self.kit.model_seconds), None)
        if fault is not None and fault.kind == "drop_after_admit":
            if rendering is not None:
                rendering.cancel()
            raise ConnectionDropped("emulated fault: the run was admitted, then the connection dropped", admitted=True)
        if job.failure is not None or rendering is None:
            assert job.failure is not None
            return self._failure_response(request_id, job.failure)
        files = await rendering
        return self._json(await self._output(request, files, job), 200, request_id)

    async def not_found(self, request: Request) -> Response:
        return self._json({"detail": f"Path {request.url.path} not found"}, 404)


def retryable(status: int) -> str:
    """``X-Fal-Retryable`` for an app-level error: worth repeating after a 5xx or a 429, not otherwise [I]."""
    return "true" if status >= 500 or status == 429 else "false"


def _job_error(job: TimedJob[Any]) -> tuple[int, str, str] | None:
    if job.error is not None:
        return (500, f"Internal server error: {job.error}", "internal_server_error")
    return None


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes")


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


async def _forever() -> None:
    await asyncio.Event().wait()


def shape_fault(fault: Fault) -> Response:
    """An injected error in fal's shape: ``{"detail", "error_type"}`` with ``x-fal-request-id`` (app level)."""
    from starlette.responses import JSONResponse, PlainTextResponse

    status = fault.status or (429 if fault.kind == "rate_limit" else 500)
    detail, error_type = FAULT_BODIES.get(status, (f"HTTP {status}", None))
    headers = {"x-fal-request-id": str(uuid.uuid4()), "x-fal-retryable": retryable(status)}
    if error_type:
        headers["x-fal-error-type"] = error_type
    if fault.retry_after is not None:
        headers["retry-after"] = str(max(0, int(-(-fault.retry_after // 1))))
    if isinstance(fault.body, str):
        return PlainTextResponse(fault.body, status_code=status, headers=headers)
    if fault.body is not None:
        return JSONResponse(fault.body, status_code=status, headers=headers)
    body: dict[str, Any] = {"detail": detail}
    if error_type:
        body["error_type"] = error_type
    return JSONResponse(body, status_code=status, headers=headers)


# -- callbacks (``fal_webhook``) --------------------------------------------------------------------------
#
# fal calls ``fal_webhook`` when a queue job ends [D]: POST ``{request_id, gateway_request_id, status:
# "OK"|"ERROR", payload, error}``, signed with Ed25519 over ``request_id \n user_id \n timestamp \n
# sha256_hex(body)`` in four ``X-Fal-Webhook-*`` headers, with keys published as a JWKS [T: third-party
# implementations agree; fal's page says "public keys"]. The emulator signs with a key pair of its own,
# made when it starts, and serves its public key at ``{prefix}/rest/.well-known/jwks.json`` (fal's is
# at rest.alpha.fal.ai; under the emulator it sits below fal's ``rest`` base URL [I]). A job that ends
# cancelled or failed is reported as ``ERROR`` with fal's error body as payload [I]; a stuck job never
# calls back. Sending, retries and callback faults are the emulator core's (ideochar.emulator.callbacks).

#: Where the emulator serves its webhook keys, under the fal prefix.
JWKS_PATH = "/rest/.well-known/jwks.json"
WEBHOOK_HEADER_REQUEST_ID = "X-Fal-Webhook-Request-Id"
WEBHOOK_HEADER_USER_ID = "X-Fal-Webhook-User-Id"
WEBHOOK_HEADER_TIMESTAMP = "X-Fal-Webhook-Timestamp"
WEBHOOK_HEADER_SIGNATURE = "X-Fal-Webhook-Signature"


class FalWebhookKeys:
    """The emulator's Ed25519 signing key (one per emulator), its JWKS document, and :meth:`rotate` for
    tests of a receiver's key refresh. Needs ``cryptography`` (in the ``emulator`` extra)."""

    def __init__(self) -> None:
        self._key: Any = None
        self.kid = ""
        self.rotate()

    def rotate(self) -> None:
        """A new key pair; the key set now holds only the new public key."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._key = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex[:16]

    def jwks(self) -> dict[str, Any]:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def headers(self, request_id: str, user_id: str, body: bytes, at: float) -> dict[str, str]:
        timestamp = str(int(at))
        message = "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode("utf-8")
        return {
            WEBHOOK_HEADER_REQUEST_ID: request_id,
            WEBHOOK_HEADER_USER_ID: user_id,
            WEBHOOK_HEADER_TIMESTAMP: timestamp,
            WEBHOOK_HEADER_SIGNATURE: self._key.sign(message).hex(),
        }


_KEYS: weakref.WeakKeyDictionary[Any, FalWebhookKeys] = weakref.WeakKeyDictionary()


def webhook_keys(kit: EmulatorKit) -> FalWebhookKeys:
    """The signing keys of the fal emulator bound to ``kit`` (``app.state.emulator.kits["fal"]``)."""
    return _KEYS[kit]


class _FalWebhooks:
    """Reads ``fal_webhook`` on submit, and calls it back, signed, when the job is done."""

    def __init__(self, kit: EmulatorKit, emulator: _FalEmulator) -> None:
        self.kit = kit
        self.emulator = emulator
        self.keys = _KEYS.setdefault(kit, FalWebhookKeys())

    async def jwks(self, request: Request) -> Response:
        """The public keys, as fal publishes its own: no key needed to read them."""
        from starlette.responses import JSONResponse

        return JSONResponse(self.keys.jwks(), headers={"cache-control": "public, max-age=3600"})

    @staticmethod
    def url_of(request: Request) -> str | None:
        """The webhook URL of a submit, or None; one that is not an absolute http(s) URL is refused [I]."""
        url = request.query_params.get("fal_webhook")
        if url is None:
            return None
        if not re.match(r"^https?://[^\s/?#]+", url):
            raise _Invalid(
                [{"loc": ["query", "fal_webhook"], "msg": "Input should be a valid URL", "type": "url_parsing"}]
            )
        return url

    def on_done(self, request: Request, url: str | None, owner: str) -> Callable[[TimedJob[None]], None] | None:
        if url is None:
            return None

        def done(job: TimedJob[None]) -> None:
            task = asyncio.ensure_future(self._send(request, url, owner, job))
            task.add_done_callback(_report_failure)

        return done

    async def _send(self, request: Request, url: str, owner: str, job: TimedJob[None]) -> None:
        from ideochar.emulator.kit import Callback

        body = json.dumps(await self._body(request, job), separators=(",", ":")).encode("utf-8")
        sign = functools.partial(self.keys.headers, job.id, owner)
        self.kit.call_back(Callback("fal", job.id, url, body, sign))

    async def _body(self, request: Request, job: TimedJob[None]) -> dict[str, Any]:
        data: _Job = job.data
        document: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
        if job.outcome == "cancelled":
            payload: Any = {"detail": "Request was cancelled", "error_type": "request_cancelled"}
            return {**document, "status": "ERROR", "payload": payload, "error": "Request was cancelled"}
        error = _job_error(job) or data.failure
        if error is not None:
            status, detail, error_type = error
            payload = {"detail": [_problem(("prompt",), detail, error_type)]} if status == 422 else {"detail": detail}
            return {**document, "status": "ERROR", "payload": payload, "error": f"Invalid status code: {status}"}
        output = await self.emulator._output(request, await self.emulator._files(data), data)
        return {**document, "status": "OK", "payload": output, "error": None}


def _report_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        import logging

        logging.getLogger("ideochar.emulator").error("a fal callback could not be built", exc_info=task.exception())

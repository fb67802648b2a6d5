"""Ideogram's native v3 API, as the ideochar emulator speaks it.

The routes answer like ``api.ideogram.ai`` so that an adapter bug shows up here instead of at the vendor:
the request rules come from Ideogram's own OpenAPI document (``openapi_v3.json`` beside this module, a
verbatim subset of the published spec): field names, enums and their casing, types, ranges, patterns and
required fields are read from it, not retyped. The rules the spec states only in prose (descriptions) are
the cross-field checks in :func:`_cross_checks`.

Routes (the name in brackets is the route name the emulator's fault profile uses):

- ``POST /v1/ideogram-v3/generate`` [``generate``] multipart/form-data, or JSON (which cannot carry files)
- ``POST /v1/ideogram-v3/edit`` [``edit``] and ``POST /v1/ideogram-v3/inpaint`` [``inpaint``], multipart
- ``POST /v1/ideogram-v3/remix`` [``remix``], multipart

Behaviour, with its evidence ([V] vendor document, [I] inferred — each inferred value is a constant below):

- Auth: header ``Api-Key``, any non-empty key; a key starting with ``invalid`` is refused. A JWT
  ``Authorization: Bearer`` is for Ideogram's own apps and is refused here [I]. Refusal is 401, except on
  remix, whose contract lists 403 [V spec].
- Validation errors are 400 ``{"error": "..."}`` [I: the spec documents 400 without a body; ``{"error"}``
  is the shape of its documented 422 body].
- This emulator serves Ideogram 3.0 **Character**: exactly one ``character_reference_images`` part is
  required (the spec makes it optional and "currently only supports 1") — a missing reference is an
  adapter bug we want to see. JSON generate bodies therefore always fail, with a message that says why.
- ``rendering_speed=FLASH`` with a character reference is refused: Ideogram prices no such combination [I].
- Images: JPEG/PNG/WebP, 10 MB each and 10 MB per reference set [V]; masks must be grayscale and of the
  same pixel size as what they mask [V]; ``color_palette`` is one JSON part [V]; ``style_codes`` excludes
  ``style_type`` and ``style_reference_images`` [V].
- Concurrency: at most 10 images in flight per organisation (here: per API key) — every image of
  ``num_images`` counts, for as long as the request is held (``model_seconds``); above it, 429 with
  ``reject_reason: "inflight_limit"`` [V], not billed.
- Billing: every request that runs is admitted to the kit's ledger with ``images = num_images`` and
  $0.10/$0.15/$0.20 per image for TURBO/DEFAULT(BALANCED)/QUALITY [V], including withheld images [V].
- 402 ``insufficient_funds`` and other vendor errors come from the emulator's fault profile.
- Output sizes: ``resolution`` as given; ``aspect_ratio`` the legal size of that shape nearest one
  megapixel (16x9 → 1312x736); edit keeps the input's size; remix without a size is 1x1, the default [V].
- **Documented defaults are applied** to a missing field, read from the spec's ``default`` values
  (``rendering_speed`` DEFAULT, ``style_type`` GENERAL, ``num_images`` 1, ``image_weight`` 50 [V]) and
  :data:`PROSE_DEFAULTS` (``aspect_ratio`` 1x1 [V prose]; ``magic_prompt`` AUTO [I]); the ledger entry's
  ``inputs`` holds what the run used, so an adapter that leaves a field to Ideogram is seen.

Safety simulation (prompt markers; the marker text is kept in the returned prompt):

- ``[emulator:unsafe]`` → 422 ``{"error": "Prompt provided failed safety check ..."}``, not billed [V shape].
- ``[emulator:withhold]`` → 200 where the first image has ``is_image_safe: false`` and ``url: null``;
  billed for every image [V: "including when an image is withheld"].

Faults applied by the routes themselves: ``stuck`` (the job is billed and never completes: the request is
held, keeping its in-flight places, until the client gives up or for the fault's ``seconds``, then the
connection is cut) and ``drop_after_admit`` (the job is billed and rendered, then the connection is cut
without an answer). Injected ``status``/``rate_limit`` faults get Ideogram's body (:data:`FAULT_BODIES`)
unless the fault profile gives one. The API key is never logged or stored: organisations are keyed by a hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image, ImageChops

from ideochar.emulator.inputs import MultipartError, Part, media_type, parse_multipart, probe_image
from ideochar.emulator.kit import ConnectionDropped, size_for_aspect_ratio

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ideochar.emulator.kit import EmulatorKit, Fault, StoredFile

__all__ = [
    "FAULT_BODIES",
    "INFLIGHT_IMAGES_PER_ORG",
    "MARKER_UNSAFE",
    "MARKER_WITHHOLD",
    "PRICE_PER_IMAGE_USD",
    "ROUTES",
    "routes",
]

#: Route name (as the fault profile names it) -> (path, the operation: whose contract applies, as the ledger says).
ROUTES: Mapping[str, tuple[str, str]] = {
    "generate": ("/v1/ideogram-v3/generate", "generate"),
    "edit": ("/v1/ideogram-v3/edit", "edit"),
    "inpaint": ("/v1/ideogram-v3/inpaint", "edit"),
    "remix": ("/v1/ideogram-v3/remix", "remix"),
}

MARKER_UNSAFE = "[emulator:unsafe]"
MARKER_WITHHOLD = "[emulator:withhold]"

#: USD per output image with a character reference, by rendering speed [V: ideogram.ai/features/api-pricing].
#: Defaults the spec states only in its descriptions, or not at all [V: AspectRatioV3 "Defaults to 1x1";
#: I: magic_prompt, whose default no page states].
PROSE_DEFAULTS: Mapping[str, str] = {"aspect_ratio": "1x1", "magic_prompt": "AUTO"}
#: BALANCED is the legacy name of DEFAULT [V]; FLASH has no character price [I: refused below].
PRICE_PER_IMAGE_USD: Mapping[str, Decimal] = {
    "TURBO": Decimal("0.10"),
    "DEFAULT": Decimal("0.15"),
    "BALANCED": Decimal("0.15"),
    "QUALITY": Decimal("0.20"),
}
#: [V: developer.ideogram.ai/ideogram-api/rate-limits] "10 images in progress" per organisation.
INFLIGHT_IMAGES_PER_ORG = 10
#: [V spec] "max size 10MB" per image and "maximum total size 10MB" per reference set; MB read as MiB [I].
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: A body larger than every image limit together is refused before it is parsed [I].
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Auth failure status per route [V spec: remix lists 403 where the others list 401].
AUTH_FAILURE_STATUS: Mapping[str, int] = {"generate": 401, "edit": 401, "remix": 403}
#: How long a ``stuck`` fault holds a request when the fault names no duration [I].
STUCK_DEFAULT_SECONDS = 3600.0

#: Bodies for status faults, in Ideogram's shapes [V: errors and rate-limits pages; the text is ours].
FAULT_BODIES: Mapping[int, dict[str, Any]] = {
    402: {"error": "Insufficient funds to complete this request.", "reject_reason": "insufficient_funds"},
    429: {"error": "Too many requests."},
    500: {"error": "Internal server error."},
    503: {"error": "Service temporarily unavailable."},
}
_SAFETY_ERROR = "Prompt provided failed safety check due to the inclusion of prohibited content."

FieldKind = Literal["text", "file", "files", "texts", "json"]


class _Reject(Exception):
    """An answer other than 200, raised from deep inside validation and turned into a response once."""

    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error, **extra}


# --------------------------------------------------------------------------------------------------
# The contract, read from the vendor's OpenAPI document


@cache
def _spec() -> Mapping[str, Any]:
    text = resources.files(__package__ or "ideochar_ideogram").joinpath("openapi_v3.json").read_text("utf-8")
    spec: Mapping[str, Any] = json.loads(text)
    return spec


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        schema = _spec()["components"]["schemas"][name]
    return schema


@dataclass(frozen=True)
class _Field:
    name: str
    kind: FieldKind
    schema: Mapping[str, Any]
    """For ``texts``/``files``: the schema of one item; otherwise of the value."""


@dataclass(frozen=True)
class _Contract:
    path: str
    content_types: frozenset[str]
    fields: Mapping[str, _Field]
    required: frozenset[str]


def _kind(schema: Mapping[str, Any]) -> tuple[FieldKind, Mapping[str, Any]]:
    schema = _resolve(schema)
    if schema.get("type") == "array":
        items = _resolve(schema["items"])
        return ("files" if items.get("format") == "binary" else "texts"), items
    if schema.get("format") == "binary":
        return "file", schema
    if "oneOf" in schema or schema.get("type") == "object":
        return "json", schema
    return "text", schema


def _defaults(contract: _Contract) -> dict[str, Any]:
    """A route's defaults: each text field's ``default`` in the spec, then :data:`PROSE_DEFAULTS`."""
    found = {
        f.name: f.schema["default"] for f in contract.fields.values() if f.kind == "text" and "default" in f.schema
    }
    for name, value in PROSE_DEFAULTS.items():
        if name in contract.fields:
            found.setdefault(name, value)
    return found


@cache
def _contract(path: str) -> _Contract:
    content = _spec()["paths"][path]["post"]["requestBody"]["content"]
    schema = _resolve(content["multipart/form-data"]["schema"])
    fields = {}
    for name, prop in schema["properties"].items():
        kind, item = _kind(prop)
        fields[name] = _Field(name, kind, item)
    return _Contract(path, frozenset(content), fields, frozenset(schema.get("required", ())))


def _check(value: Any, schema: Mapping[str, Any], where: str) -> str | None:
    """The first way ``value`` breaks ``schema`` (the JSON-schema subset the spec uses), or None.

    Objects are closed (no properties beyond those listed): the palette's "EITHER name OR members" is
    only enforceable that way.
    """
    schema = _resolve(schema)
    if "oneOf" in schema:
        matches = sum(_check(value, option, where) is None for option in schema["oneOf"])
        if matches == 1:
            return None
        titles = " or ".join(_resolve(o).get("title", "?") for o in schema["oneOf"])
        return f"{where} must match exactly one of {titles}"
    kind = schema.get("type")
    type_ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
    }
    if kind in type_ok and not type_ok[kind]:
        return f"{where} must be of type {kind}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(map(str, schema['enum']))} (got {value!r})"
    if "minimum" in schema and value < schema["minimum"]:
        return f"{where} must be >= {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"{where} must be <= {schema['maximum']}"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return f"{where} must match {schema['pattern']}"
    if kind == "array":
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return f"{where} must have {schema.get('minItems', 0)} to {schema.get('maxItems', '∞')} items"
        for i, item in enumerate(value):
            problem = _check(item, schema["items"], f"{where}[{i}]")
            if problem:
                return problem
    if kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                return f"{where}.{name} is required"
        for name, item in value.items():
            if name not in properties:
                return f"{where}.{name} is not allowed"
            problem = _check(item, properties[name], f"{where}.{name}")
            if problem:
                return problem
    return None


# --------------------------------------------------------------------------------------------------
# Reading and validating one request


@dataclass(frozen=True)
class _Picture:
    data: bytes
    format: str
    size: tuple[int, int]

    def grayscale(self) -> bool:
        """Whether every pixel is a gray (decodes the image: only asked of masks)."""
        with Image.open(io.BytesIO(self.data)) as image:
            if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
                return True
            red, green, blue = image.convert("RGB").split()
        same = ImageChops.difference(red, green).getbbox() is None
        return same and ImageChops.difference(green, blue).getbbox() is None


@dataclass
class _Job:
    route: str
    values: dict[str, Any] = field(default_factory=dict)
    images: dict[str, list[_Picture]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """The route's documented defaults (:func:`_defaults`)."""

    @property
    def effective(self) -> dict[str, Any]:
        """Every setting as the run uses it: the values given, the documented defaults for the rest (an
        aspect ratio only when no resolution was given)."""
        values = {**self.defaults, **self.values}
        if "resolution" in self.values:
            values.pop("aspect_ratio", None)
        return values

    @property
    def num_images(self) -> int:
        return int(self.effective.get("num_images", 1))

    @property
    def speed(self) -> str:
        return str(self.effective.get("rendering_speed", "DEFAULT"))

    @property
    def prompt(self) -> str:
        return str(self.values["prompt"])

    def one(self, name: str) -> _Picture | None:
        found = self.images.get(name)
        return found[0] if found else None


def _picture(data: bytes, where: str) -> _Picture:
    if len(data) > MAX_IMAGE_BYTES:
        raise _Reject(400, f"{where} is larger than 10MB ({len(data)} bytes)")
    info = probe_image(data)
    if info is None:
        raise _Reject(400, f"{where} is not a JPEG, PNG or WebP image; only JPEG, PNG and WebP are supported")
    try:  # a header is not an image: a truncated upload must fail here, as it would at the vendor
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError):
        raise _Reject(400, f"{where} could not be decoded (truncated or corrupt image)")
    return _Picture(data, info.format, (info.width, info.height))


def _from_text(text: str, spec: Mapping[str, Any], where: str) -> Any:
    """A form field's text as the value its schema types it to (integers strictly: "8.0" is not 8)."""
    kind = _resolve(spec).get("type")
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", text.strip()):
            raise _Reject(400, f"{where} must be an integer (got {text!r})")
        return int(text)
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise _Reject(400, f"{where} must be a number (got {text!r})")
    return text


def _read_multipart(parts: Sequence[Part], contract: _Contract, job: _Job) -> None:
    grouped: dict[str, list[Part]] = {}
    for part in parts:
        grouped.setdefault(part.name, []).append(part)
    for name, group in grouped.items():
        spec = contract.fields.get(name)
        if spec is None:
            raise _Reject(400, f"Unknown field {name!r}: not accepted by {contract.path}")
        is_file = [p.filename is not None for p in group]
        if spec.kind in ("file", "files"):
            if not all(is_file):
                raise _Reject(400, f"{name} must be sent as a file part (with a filename)")
            if spec.kind == "file" and len(group) > 1:
                raise _Reject(400, f"{name} must be sent once (got {len(group)} parts)")
            job.images[name] = [_picture(p.data, name) for p in group]
            continue
        if any(is_file):
            raise _Reject(400, f"{name} must be a form field, not a file part")
        try:
            texts = [p.data.decode("utf-8") for p in group]
        except UnicodeDecodeError:
            raise _Reject(400, f"{name} is not valid UTF-8")
        if spec.kind == "texts":
            job.values[name] = [_from_text(t, spec.schema, name) for t in texts]
            continue
        if len(group) > 1:
            raise _Reject(400, f"{name} must be sent once (got {len(group)} parts)")
        if spec.kind == "json":
            try:
                job.values[name] = json.loads(texts[0])
            except json.JSONDecodeError:
                raise _Reject(400, f'{name} must be one JSON part (e.g. {{"name": "PASTEL"}})')
        else:
            job.values[name] = _from_text(texts[0], spec.schema, name)


def _read_json(body: bytes, contract: _Contract, job: _Job) -> None:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Reject(400, "The request body is not valid JSON")
    if not isinstance(document, dict):
        raise _Reject(400, "The request body must be a JSON object")
    for name, value in document.items():
        spec = contract.fields.get(name)
        if spec is None:
            raise _Reject(400, f"Unknown field {name!r}: not accepted by {contract.path}")
        if spec.kind in ("file", "files"):
            raise _Reject(400, f"{name} holds files, which a JSON body cannot carry: use multipart/form-data")
        job.values[name] = value


def _validate(job: _Job, contract: _Contract) -> None:
    for name in sorted(contract.required):
        if name not in job.values and name not in job.images:
            raise _Reject(400, f"{name} is required")
    for name, value in job.values.items():
        spec = contract.fields[name]
        schema: Mapping[str, Any] = {"type": "array", "items": spec.schema} if spec.kind == "texts" else spec.schema
        problem = _check(value, schema, name)
        if problem:
            raise _Reject(400, problem)
    _cross_checks(job)


def _cross_checks(job: _Job) -> None:
    """The rules the spec states in prose, each quoted or paraphrased from a description [V]."""
    values, images = job.values, job.images
    if "aspect_ratio" in values and "resolution" in values:
        raise _Reject(400, "aspect_ratio cannot be used in conjunction with resolution")
    if not job.prompt.strip():
        raise _Reject(400, "prompt must not be empty")
    references = images.get("character_reference_images", [])
    if len(references) != 1:
        raise _Reject(
            400,
            f"character_reference_images: exactly 1 character reference image is supported (got {len(references)})"
            + ("; a JSON body cannot carry it, send multipart/form-data" if not images else ""),
        )
    if job.speed == "FLASH":
        raise _Reject(400, "rendering_speed FLASH is not available with a character reference")
    masks = images.get("character_reference_images_mask")
    if masks is not None:
        if len(masks) != len(references):
            raise _Reject(
                400,
                f"character_reference_images_mask must match the number of character_reference_images "
                f"({len(masks)} masks for {len(references)} references)",
            )
        for i, (mask, reference) in enumerate(zip(masks, references, strict=True)):
            if mask.size != reference.size:
                raise _Reject(
                    400,
                    f"character_reference_images_mask[{i}] is {mask.size[0]}x{mask.size[1]}, its character "
                    f"reference is {reference.size[0]}x{reference.size[1]}: they must have the same dimensions",
                )
            if not mask.grayscale():
                raise _Reject(400, f"character_reference_images_mask[{i}] must be a grayscale image")
    for name in ("character_reference_images", "style_reference_images"):
        total = sum(len(p.data) for p in images.get(name, []))
        if total > MAX_IMAGE_BYTES:
            raise _Reject(400, f"{name}: maximum total size is 10MB (got {total} bytes)")
    if "style_codes" in values and ("style_type" in values or "style_reference_images" in images):
        raise _Reject(400, "style_codes cannot be used in conjunction with style_reference_images or style_type")
    edited, edit_mask = job.one("image"), job.one("mask")
    if edited is not None and edit_mask is not None:
        if edited.size != edit_mask.size:
            raise _Reject(
                400,
                f"mask is {edit_mask.size[0]}x{edit_mask.size[1]} but the image is "
                f"{edited.size[0]}x{edited.size[1]}: the mask must be the same size as the image being edited",
            )
        if not edit_mask.grayscale():
            raise _Reject(400, "mask must be a black and white image")


# --------------------------------------------------------------------------------------------------
# Output size


def _output_size(job: _Job) -> tuple[int, int]:
    if job.route == "edit":
        image = job.one("image")
        assert image is not None
        return image.size
    if "resolution" in job.values:
        width, height = str(job.values["resolution"]).split("x")
        return int(width), int(height)
    if "aspect_ratio" in job.values:
        return size_for_aspect_ratio(str(job.values["aspect_ratio"]))
    # A remix without a size is 1x1 too: its input is "cropped to the chosen aspect ratio" [V], whose
    # default is 1x1 (the same AspectRatioV3).
    return 1024, 1024  # AspectRatioV3 "Defaults to 1x1" [V]


# --------------------------------------------------------------------------------------------------
# The in-flight rule


class _Inflight:
    """Images in progress per organisation; the check and the booking happen without an await between."""

    def __init__(self, limit: int, kit: EmulatorKit | None = None) -> None:
        self.limit = limit
        self.count: dict[str, int] = {}
        self.kit = kit

    def _note(self, org: str, *, refused: bool = False) -> None:
        if self.kit is not None:
            self.kit.note_in_flight(self.count.get(org, 0), refused=refused)

    @contextlib.asynccontextmanager
    async def hold(self, org: str, images: int) -> AsyncIterator[None]:
        current = self.count.get(org, 0)
        if current + images > self.limit:
            self._note(org, refused=True)
            raise _Reject(
                429,
                f"Too many images in progress: {current} of {self.limit} in flight, this request adds {images}.",
                reject_reason="inflight_limit",
                max_inflight_images=self.limit,
            )
        self.count[org] = current + images
        self._note(org)
        try:
            yield
        finally:
            self.count[org] -= images
            self._note(org)
            if not self.count[org]:
                del self.count[org]


# --------------------------------------------------------------------------------------------------
# The routes


def routes(kit: EmulatorKit) -> list[BaseRoute]:
    """Starlette routes for Ideogram's v3 paths, bound to ``kit`` (the emulator mounts them under its prefix)."""
    from starlette.routing import Route

    emulator = _IdeogramEmulator(kit)
    kit.shape_errors(_error_answer)
    return [
        Route(path, emulator.endpoint(name), methods=["POST"], name=f"ideogram.{name}")
        for name, (path, _) in ROUTES.items()
    ]


class _IdeogramEmulator:
    def __init__(self, kit: EmulatorKit) -> None:
        self.kit = kit
        self.inflight = _Inflight(INFLIGHT_IMAGES_PER_ORG, kit)

    def endpoint(self, name: str) -> Any:
        async def endpoint(request: Request) -> Response:
            return await self.handle(name, request)

        endpoint.__name__ = f"ideogram_{name}"
        return endpoint

    async def handle(self, name: str, request: Request) -> Response:
        from starlette.responses import JSONResponse

        path, contract_route = ROUTES[name]
        try:
            _require_host(request)
            org = _organisation(request, AUTH_FAILURE_STATUS[contract_route])
            injected = await self.kit.fault(name, request)
            if injected is not None:
                return injected
            job = await _read_job(request, contract_route, _contract(path))
            if MARKER_UNSAFE in job.prompt:
                raise _Reject(422, _SAFETY_ERROR)
            async with self.inflight.hold(org, job.num_images):
                body = await self.run(name, job, request)
        except _Reject as reject:
            return JSONResponse(reject.body, status_code=reject.status)
        return JSONResponse(body)

    async def run(self, name: str, job: _Job, request: Request) -> dict[str, Any]:
        """Admit (bill) the job, hold it for the emulated model time, render and serve its images.

        Rendering starts at admission on worker threads, so it overlaps the emulated model time.
        """
        self.kit.admit(
            uuid.uuid4().hex,
            operation=job.route,
            images=job.num_images,
            cost_usd=PRICE_PER_IMAGE_USD[job.speed] * job.num_images,
            route=name,
            rendering_speed=job.speed,
            inputs=job.effective,
        )
        fault = self.kit.choose_fault(name)
        if fault is not None and fault.kind == "stuck":
            # A synchronous job that never completes: the request is held (keeping its in-flight places)
            # until the client gives up, or for the fault's seconds, and then the connection is cut.
            await self.kit.wait_or_stop(asyncio.Event().wait(), fault.seconds or STUCK_DEFAULT_SECONDS)
            raise ConnectionDropped("emulated fault: the job never completed", admitted=True)
        seeds = [
            (job.values["seed"] + index) % 2**31 if "seed" in job.values else self.kit.random_seed()
            for index in range(job.num_images)
        ]
        withheld = {0} if MARKER_WITHHOLD in job.prompt else set()
        renders = asyncio.gather(*(self._render(job, seed) for i, seed in enumerate(seeds) if i not in withheld))
        try:
            await asyncio.sleep(self.kit.model_seconds)
        except BaseException:  # the client went away: the job stays billed, its renders are not needed
            renders.cancel()
            raise
        files = iter(await renders)
        if fault is not None and fault.kind == "drop_after_admit":
            raise ConnectionDropped("emulated fault: connection dropped after admission", admitted=True)
        width, height = _output_size(job)
        prompt = job.prompt
        if job.effective.get("magic_prompt") == "ON":
            prompt = f"{prompt} (emulated magic prompt)"
        data = [
            {
                "url": None if index in withheld else self.kit.file_url(request, next(files)),
                "prompt": prompt,
                "resolution": f"{width}x{height}",
                "is_image_safe": index not in withheld,
                "seed": seed,
                "style_type": job.effective.get("style_type", "GENERAL"),
            }
            for index, seed in enumerate(seeds)
        ]
        return {"created": datetime.now(timezone.utc).isoformat(), "data": data}

    async def _render(self, job: _Job, seed: int) -> StoredFile:
        width, height = _output_size(job)
        image, mask = job.one("image"), job.one("mask")
        render = functools.partial(
            self.kit.render_file,
            job.images["character_reference_images"][0].data,
            job.prompt,
            width=width,
            height=height,
            seed=seed,
            fmt="png",
            base=image.data if image else None,
            mask=mask.data if mask else None,
        )
        return await self.kit.run_blocking(render)


def _require_host(request: Request) -> None:
    """HTTP/1.1 requires a Host header (RFC 9112 §3.2); over a socket the server refuses without one.

    In-process (ASGI transport) nothing would notice, so the routes check it themselves: a client that
    builds requests from a raw stream without the header must fail here, not at the vendor.
    """
    if "host" not in request.headers:
        raise _Reject(400, "Bad Request: missing Host header")


def _organisation(request: Request, failure_status: int) -> str:
    """The organisation a request bills to, derived from its key without keeping the key itself."""
    key = request.headers.get("api-key", "").strip()
    if not key:
        bearer = request.headers.get("authorization", "")
        reason = "Bearer tokens are not accepted; send the key in the Api-Key header" if bearer else "Missing Api-Key"
        raise _Reject(failure_status, f"Not authorized: {reason}.")
    if key.lower().startswith("invalid"):
        raise _Reject(failure_status, "Not authorized: invalid API key.")
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


async def _read_job(request: Request, route: str, contract: _Contract) -> _Job:
    content_type = request.headers.get("content-type", "")
    kind, _ = media_type(content_type)
    if kind not in contract.content_types:
        allowed = " or ".join(sorted(contract.content_types))
        raise _Reject(400, f"Unsupported Content-Type {kind or 'none'!r}: this route accepts {allowed}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Reject(413, "Request body too large")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise _Reject(413, "Request body too large")
    job = _Job(route, defaults=_defaults(contract))
    if kind == "application/json":
        _read_json(body, contract, job)
    else:
        try:
            parts = parse_multipart(body, content_type)
        except MultipartError as exc:
            raise _Reject(400, f"Malformed multipart body: {exc}")
        _read_multipart(parts, contract, job)
    _validate(job, contract)
    return job


def _error_answer(fault: Fault) -> Response:
    """An injected ``status``/``rate_limit`` fault as Ideogram answers it (:data:`FAULT_BODIES`)."""
    from starlette.responses import JSONResponse

    status = fault.status or 500
    body = fault.body if fault.body is not None else FAULT_BODIES.get(status, {"error": "Request failed."})
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    return JSONResponse(body, status_code=status, headers=headers)

"""Replicate's predictions API for ``ideogram-ai/ideogram-character``, as the ideochar emulator speaks it.

Written from Replicate's documentation (HTTP API reference and OpenAPI document, the model's API page,
the predictions, deadlines, rate-limit, input-file and data-retention topics), not from our adapter, so
that an adapter bug shows up here. Routes (the name in brackets is the route name the fault profile uses):

- ``POST /v1/models/ideogram-ai/ideogram-character/predictions`` [``create``]
- ``GET /v1/predictions/{id}`` [``get``] and ``POST /v1/predictions/{id}/cancel`` [``cancel``]
- ``GET /v1/predictions`` [``list``]: the token's predictions, newest first, :data:`LIST_PAGE_SIZE` a page
- ``POST /v1/files`` [``files.create``] and ``GET /v1/files/{id}`` [``files.get``]

Behaviour, with its evidence ([V] vendor document, [I] inferred — each inferred value is a constant below):

- Auth: ``Authorization: Bearer <token>`` (or the older ``Token <token>`` the docs still show) [V]; a
  token starting with ``invalid`` is refused; 401 ``{"title", "detail", "status"}`` [V shape].
- The body is ``{"input": {...}}`` plus optional ``webhook``/``webhook_events_filter``/``stream``, nothing
  else [V: ``additionalProperties: false``]. ``input`` follows the model's schema (:data:`INPUT_SCHEMA`):
  required ``prompt`` and ``character_reference_image``, title-case enums, ``"W:H"`` ratios, ``"None"``
  or one of the 69 resolutions, ``seed`` <= 2147483647, no unknown fields [V]. Every violation is listed
  in one 422 ``{"title": "Input validation failed", "detail", "status", "invalid_fields"}`` [I: the
  shape Replicate's API returns, messages in the style of its JSON-schema validator].
- ``image`` without ``mask`` (or the reverse) is refused with the same 422 [I: the model page says "You
  must also use a mask"; whether it fails at creation or as a failed prediction is unverified].
- Image inputs: ``data:`` URIs are decoded and must be JPEG, PNG or WebP [I]; URLs of files uploaded
  here (``POST /v1/files`` → ``urls.get``) or served by this emulator are read back; any other URL is not
  fetched — the image is rendered without it and the prediction's logs say so. A file uploaded here
  lives :data:`FILE_LIFETIME_SECONDS` (its ``expires_at``); used after that it is refused with the 422
  of an input that cannot be read [I], so a client that reuses an expired upload is caught. Every upload
  is counted (``state.uploads``).
- **Documented defaults are applied** to a missing input field (:data:`INPUT_SCHEMA` ``default``:
  ``rendering_speed`` Default, ``style_type`` Auto, ``aspect_ratio`` 1:1, ``resolution`` None,
  ``magic_prompt_option`` Auto [V]; a random seed [V]); the ledger entry's ``inputs`` holds what the run
  used (an inpainting run uses no size [V: "Ignored if an inpainting image is given"]).
- ``Prefer: wait`` / ``wait=N`` (1–60) holds the answer until the prediction is terminal or N seconds
  passed (201 when terminal, 202 "does not yet have all outputs" otherwise [V spec]); without it the
  answer is 201 at once with status ``starting``. A malformed ``Prefer`` is a 400 [I].
- ``Cancel-After`` (``30s``, ``5m``, ``1h30m``, bare seconds; minimum 5 s [V]; shorter or malformed: 400
  [I]): a prediction whose deadline passes before it starts is ``aborted`` and not billed; while it runs,
  ``canceled`` [V]. ``POST .../cancel`` cancels a prediction that is not finished (``canceled``).
- Lifecycle: ``starting`` for the first :data:`QUEUE_SHARE` of ``model_seconds``, ``processing`` for
  the rest, then ``succeeded`` with ``output`` = one URL string [V]. After :data:`RETENTION_SECONDS`
  input, output and logs are removed (``data_removed: true``) [V: "removed after an hour"].
- Predictions belong to the token that created them; another token gets 404 [I].
- The list [V: predictions.list]: ``{"next", "previous", "results"}``, newest first, 100 a page; ``next``
  and ``previous`` are full URLs with an opaque ``cursor`` (Replicate's look like Django REST framework's
  cursor pagination [I]), other query parameters kept; ``created_after`` (at or after) and
  ``created_before`` (before) take ISO 8601 times [V], a malformed one or cursor is a 400 [I]. Only the
  token's own predictions are listed [V: "created by the user or organization associated with the
  provided API token"]. Each item is the prediction object with its ``input`` exactly as received:
  data URIs come back whole [I: Replicate's echo of image inputs is undocumented].
- Billing: each prediction is admitted to the kit's ledger when created (images = 1, $0.10/$0.15/$0.20 by
  ``rendering_speed`` Turbo/Default/Quality [I: reseller price]). The entry is voided when Replicate would
  not charge: aborted by its deadline before it started [V], canceled by its creator before it started,
  or failed on the safety check [I]. A prediction canceled while it runs stays billed [I].
- Errors from the fault profile get Replicate's shapes (:data:`FAULT_BODIES`), e.g. 429 ``{"detail":
  "Request was throttled. Your rate limit resets in ~30s.", "status": 429}`` with ``Retry-After`` [V].

Safety simulation: a prompt containing ``[emulator:nsfw]`` gives a ``failed`` prediction whose ``error``
reads like Replicate's sensitive-content rejection (:data:`NSFW_ERROR`), ``output: null``.

Webhooks: a create with ``webhook`` is called back, signed with the account's secret (served at
``GET /v1/webhooks/default/secret``), for the events of ``webhook_events_filter`` (default ``start`` and
``completed``; ``output`` and ``logs`` are not sent [I]): see the webhooks section at the end of this module.

Faults the routes apply themselves: ``stuck`` (the prediction stays ``processing`` forever, until
canceled or its deadline) and ``drop_after_admit`` (the prediction is created and billed, then the
connection is cut without an answer; ``GET /v1/predictions`` still lists it). Tokens are never logged or
stored: owners are keyed by a hash. The ``stream`` URL is not offered: this model's output is one file,
not a stream [I].
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import io
import json
import math
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from PIL import Image

from ideochar.emulator.inputs import MultipartError, decode_data_uri, parse_multipart, probe_image
from ideochar.emulator.kit import (
    ASPECT_RATIOS,
    RESOLUTIONS,
    ConnectionDropped,
    size_for_aspect_ratio,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ideochar.emulator.kit import EmulatorKit, Fault, StoredFile

__all__ = [
    "FAULT_BODIES",
    "INPUT_SCHEMA",
    "MARKER_NSFW",
    "MODEL",
    "NSFW_ERROR",
    "PRICE_PER_IMAGE_USD",
    "QUEUE_SHARE",
    "RETENTION_SECONDS",
    "routes",
]

MODEL = "ideogram-ai/ideogram-character"
MARKER_NSFW = "[emulator:nsfw]"
#: [I] Replicate's generic flagged-content failure (code E005); the exact words for this model are unverified.
NSFW_ERROR = "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"

#: The model's input schema as its API page publishes it [V names and descriptions; enums V3, agreeing mirrors].
INPUT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "required": ["prompt", "character_reference_image"],
    "properties": {
        "prompt": {"type": "string"},
        "character_reference_image": {"type": "string", "format": "uri"},
        "rendering_speed": {"type": "string", "enum": ["Default", "Turbo", "Quality"], "default": "Default"},
        "style_type": {"type": "string", "enum": ["Auto", "Fiction", "Realistic"], "default": "Auto"},
        "aspect_ratio": {"type": "string", "enum": list(ASPECT_RATIOS), "default": "1:1"},
        "resolution": {"type": "string", "enum": ["None", *RESOLUTIONS], "default": "None"},
        "magic_prompt_option": {"type": "string", "enum": ["Auto", "On", "Off"], "default": "Auto"},
        "image": {"type": "string", "format": "uri"},
        "mask": {"type": "string", "format": "uri"},
        "seed": {"type": "integer", "maximum": 2147483647},
    },
}
#: The request envelope [V: ``schemas_prediction_request``, ``additionalProperties: false``].
REQUEST_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "input": INPUT_SCHEMA,
        "webhook": {"type": "string"},
        "webhook_events_filter": {
            "type": "array",
            "items": {"type": "string", "enum": ["start", "output", "logs", "completed"]},
        },
        "stream": {"type": "boolean"},
    },
}

#: USD per prediction (one image) by ``rendering_speed`` [I: eachlabs reseller price = Ideogram's list price].
PRICE_PER_IMAGE_USD: Mapping[str, Decimal] = {
    "Turbo": Decimal("0.10"),
    "Default": Decimal("0.15"),
    "Quality": Decimal("0.20"),
}
#: Share of ``model_seconds`` a prediction spends ``starting`` before it ``processing`` [I].
QUEUE_SHARE = 0.2
#: [V: data-retention topic] API predictions' inputs, outputs and logs are removed after an hour.
RETENTION_SECONDS = 3600.0
#: [V: deadlines changelog / OpenAPI] the minimum ``Cancel-After``.
MIN_CANCEL_AFTER_SECONDS = 5.0
#: [V: OpenAPI] ``Prefer: wait=n`` with n between 1 and 60; a bare ``wait`` means 60.
MAX_WAIT_SECONDS = 60
#: [V: OpenAPI files.create 413 "Files must be less than 100MB in size"].
MAX_FILE_BYTES = 100 * 1024 * 1024
#: How long an uploaded file lives, its ``expires_at`` [I: a day].
FILE_LIFETIME_SECONDS = 24 * 3600.0
#: [V: predictions.list] "It will return 100 records per page".
LIST_PAGE_SIZE = 100
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})

#: Bodies for status faults, in Replicate's RFC 7807 shape [V: SDK exceptions, rate-limits page; 402 text I].
FAULT_BODIES: Mapping[int, dict[str, Any]] = {
    402: {
        "title": "Insufficient credit",
        "detail": "You have insufficient credit to run this model. Go to the billing page to purchase credit.",
        "status": 402,
    },
    429: {"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429},
    500: {"title": "Internal Server Error", "detail": "An unexpected error occurred.", "status": 500},
    503: {"title": "Service Unavailable", "detail": "The service is temporarily unavailable.", "status": 503},
}


class _Problem(Exception):
    """An RFC 7807 answer, raised from wherever the problem is found and turned into a response once."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.body: dict[str, Any] = {"title": title, "detail": detail, "status": status, **extra}


# --------------------------------------------------------------------------------------------------
# Validation, in the words of Replicate's JSON-schema validator


@dataclass(frozen=True)
class _Invalid:
    type: str
    field: str
    description: str


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_uri(value: str) -> bool:
    parsed = urllib.parse.urlsplit(value)
    return bool(parsed.scheme) and (parsed.scheme == "data" or bool(parsed.netloc))


def _validate(value: Any, schema: Mapping[str, Any], where: str, found: list[_Invalid]) -> None:
    kind = schema.get("type")
    checks = {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
    }
    if kind in checks and not checks[kind]:
        found.append(_Invalid("invalid_type", where, f"Invalid type. Expected: {kind}, given: {_type_name(value)}"))
        return
    short = where.rsplit(".", 1)[-1]
    if "enum" in schema and value not in schema["enum"]:
        options = ", ".join(json.dumps(option) for option in schema["enum"])
        found.append(_Invalid("enum", where, f"{short} must be one of the following: {options}"))
    if "maximum" in schema and value > schema["maximum"]:
        found.append(_Invalid("number_lte", where, f"Must be less than or equal to {schema['maximum']}"))
    if schema.get("format") == "uri" and not _is_uri(value):
        found.append(_Invalid("format", where, "Does not match format 'uri'"))
    if kind == "array":
        for i, item in enumerate(value):
            _validate(item, schema["items"], f"{where}.{i}", found)
    if kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                found.append(_Invalid("required", where, f"{name} is required"))
        for name, item in value.items():
            if name in properties:
                _validate(item, properties[name], name if where == "(root)" else f"{where}.{name}", found)
            else:
                found.append(
                    _Invalid("additional_property_not_allowed", where, f"Additional property {name} is not allowed")
                )


def _invalid(found: list[_Invalid]) -> _Problem:
    detail = "".join(f"- {i.field}: {i.description}\n" for i in found)
    fields = [{"type": i.type, "field": i.field, "description": i.description} for i in found]
    return _Problem(422, "Input validation failed", detail, invalid_fields=fields)


def _parse_duration(text: str) -> float | None:
    """Seconds in a ``Cancel-After`` value (``30s``, ``5m``, ``1h30m45s``, bare ``30``), None if malformed."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not text or match is None:
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _parse_prefer(value: str | None) -> int | None:
    """Seconds to hold the create request, or None; a malformed ``wait`` preference is a 400 [I]."""
    if value is None:
        return None
    for preference in (p.strip() for p in value.split(",")):
        if not preference.lower().startswith("wait"):
            continue  # RFC 7240: preferences a server does not know are ignored
        match = re.fullmatch(r"wait(?:\s*=\s*(\d+))?", preference, re.I)
        seconds = int(match.group(1)) if match and match.group(1) else MAX_WAIT_SECONDS
        if match is None or not 1 <= seconds <= MAX_WAIT_SECONDS:
            raise _Problem(400, "Invalid Prefer header", f"Prefer: wait=n needs n between 1 and {MAX_WAIT_SECONDS}")
        return seconds
    return None


# --------------------------------------------------------------------------------------------------
# State


@dataclass
class _File:
    id: str
    owner: str
    data: bytes
    content_type: str
    filename: str
    metadata: Any
    created_at: float


@dataclass(eq=False)
class _Prediction:
    """One prediction. Its timeline is fixed at creation; its status at any moment is computed from it
    (:meth:`state`), so nothing has to run while nobody looks. Only a cancel changes it afterwards."""

    id: str
    owner: str
    input: dict[str, Any]
    created_at: float
    start_at: float
    done_at: float
    """When the model would finish; ``inf`` for a stuck prediction."""
    deadline: float | None
    seed: int
    outcome: str
    error: str | None
    notes: list[str]
    render: asyncio.Future[StoredFile] | None
    """The output being rendered since creation (None when the prediction cannot succeed)."""
    canceled_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the prediction is canceled, so a held ``Prefer: wait`` request answers at once."""

    def state(self, now: float) -> tuple[str, float | None]:
        """(status, completed_at) at time ``now``."""
        cut = min(
            self.canceled_at if self.canceled_at is not None else math.inf,
            self.deadline if self.deadline is not None else math.inf,
        )
        if cut < self.done_at and cut <= now:
            aborted = cut == self.deadline and cut < self.start_at and self.canceled_at != cut
            return ("aborted" if aborted else "canceled"), cut
        if now >= self.done_at:
            return self.outcome, self.done_at
        return ("processing" if now >= self.start_at else "starting"), None

    def ends_at(self) -> float:
        """When the prediction becomes terminal if nobody cancels it."""
        return min(self.done_at, self.deadline if self.deadline is not None else math.inf)


def _iso(moment: float | None) -> str | None:
    if moment is None or math.isinf(moment):
        return None
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _new_id() -> str:
    return base64.b32encode(os.urandom(20)).decode("ascii").lower()[:26]


def _owner(request: Request) -> str:
    """The account a request acts for, from its token, without keeping the token itself."""
    header = request.headers.get("authorization", "").strip()
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise _Problem(401, "Unauthenticated", "You did not pass an authentication token")
    if scheme.lower() not in ("bearer", "token") or not token or token.lower().startswith("invalid"):
        raise _Problem(401, "Unauthenticated", "You did not pass a valid authentication token")
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def _decodes(data: bytes) -> bool:
    """Whether ``data`` is a whole JPEG, PNG or WebP image (a header alone, e.g. a cut-off upload, is not)."""
    if probe_image(data) is None:
        return False
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    return True


def _effective(given: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Every scalar input as the run uses it: the given value, else the schema's ``default`` [V]; the seed
    used; no size on an inpainting run ("Ignored if an inpainting image is given" [V])."""
    properties = INPUT_SCHEMA["properties"]
    values = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    values.update({k: v for k, v in given.items() if properties.get(k, {}).get("format") != "uri"})
    values["seed"] = seed
    if "image" in given:
        values.pop("aspect_ratio", None)
        values.pop("resolution", None)
    return values


def _output_size(given: Mapping[str, Any], base: bytes | None) -> tuple[int, int]:
    """The inpainting image's size; else ``resolution`` ("Overrides aspect ratio"); else the aspect ratio [V]."""
    info = probe_image(base) if base is not None else None
    if info is not None:
        return info.width, info.height
    if given.get("resolution", "None") != "None":
        width, height = given["resolution"].split("x")
        return int(width), int(height)
    return size_for_aspect_ratio(given.get("aspect_ratio", "1:1"))


# --------------------------------------------------------------------------------------------------
# The list's pages


def _newest_first(prediction: _Prediction) -> tuple[float, str]:
    """Sort key: newest first; the id breaks ties, so a page boundary between equal times is exact."""
    return -prediction.created_at, prediction.id


def _time_query(request: Request, name: str) -> float:
    """``created_after``/``created_before`` as seconds; absent: no bound."""
    value = request.query_params.get(name)
    if value is None:
        return -math.inf if name == "created_after" else math.inf
    try:
        # A "+hh:mm" offset sent unencoded arrives as " hh:mm"; "Z" is not read by Python 3.10.
        text = re.sub(r" (\d{2}:?\d{2})$", r"+\1", value.strip()).replace("Z", "+00:00")
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Problem(400, "Bad Request", f"{name} must be an ISO 8601 date-time, got {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _read_cursor(value: str | None) -> tuple[tuple[float, str], bool] | None:
    """The cursor's position (a prediction's sort key) and direction (True: towards newer ones)."""
    if value is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(value.encode("ascii") + b"==="))
        position = (float(data["p"]), str(data["i"]))
        return position, bool(data["r"])
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise _Problem(400, "Bad Request", "Invalid cursor")


def _cursor(position: tuple[float, str], *, reverse: bool) -> str:
    text = json.dumps({"p": position[0], "i": position[1], "r": int(reverse)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def _page(
    ordered: list[_Prediction], cursor: tuple[tuple[float, str], bool] | None, size: int
) -> tuple[list[_Prediction], tuple[float, str] | None, tuple[float, str] | None]:
    """The page ``cursor`` points at in the newest-first list ``ordered``, and the sort keys the previous
    and the next page are read from (None when there is no such page).

    A cursor holds a boundary, not an offset, so predictions created meanwhile shift nothing: forwards,
    the page starts after the boundary; backwards (``previous``), it ends before it.
    """
    keys = [_newest_first(p) for p in ordered]
    if cursor is None:
        start, stop = 0, size
    elif cursor[1]:
        stop = sum(1 for key in keys if key < cursor[0])
        start = max(0, stop - size)
    else:
        start = sum(1 for key in keys if key <= cursor[0])
        stop = start + size
    page = ordered[start:stop]
    before = keys[start] if page and start > 0 else None
    following = keys[start + len(page) - 1] if page and start + len(page) < len(ordered) else None
    return page, before, following


def _page_url(request: Request, base: str, position: tuple[float, str] | None, *, reverse: bool) -> str | None:
    if position is None:
        return None
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    params["cursor"] = _cursor(position, reverse=reverse)
    return f"{base}/v1/predictions?{urllib.parse.urlencode(params)}"


# --------------------------------------------------------------------------------------------------
# The routes


def _now() -> float:
    """Wall-clock seconds: what every prediction's timeline is read against."""
    return time.time()


def routes(kit: EmulatorKit, *, clock: Callable[[], float] | None = None) -> list[BaseRoute]:
    """Starlette routes for Replicate's paths, bound to ``kit``.

    ``clock`` (default :func:`_now`) drives every prediction's timeline and every uploaded file's life;
    tests give a fake one (or patch ``_now``) to move time (a deadline, the retention hour) without waiting.
    """
    from starlette.routing import Route

    emulator = _ReplicateEmulator(kit, clock or (lambda: _now()))  # looked up at each call: a test may patch it
    kit.shape_errors(_error_answer)
    kit.on_reset(emulator.clear)
    kit.on_reset(emulator.webhooks.clear)
    return [
        Route("/v1/models/{owner}/{name}/predictions", emulator.create, methods=["POST"], name="replicate.create"),
        Route("/v1/predictions", emulator.list_predictions, methods=["GET"], name="replicate.list"),
        Route("/v1/predictions/{id}", emulator.get, methods=["GET"], name="replicate.get"),
        Route("/v1/predictions/{id}/cancel", emulator.cancel, methods=["POST"], name="replicate.cancel"),
        Route("/v1/files", emulator.create_file, methods=["POST"], name="replicate.files.create"),
        Route("/v1/files/{id}", emulator.get_file, methods=["GET"], name="replicate.files.get"),
        Route(SECRET_PATH, emulator.webhooks.secret, methods=["GET"], name="replicate.webhooks.secret"),
    ]


class _ReplicateEmulator:
    def __init__(self, kit: EmulatorKit, clock: Callable[[], float]) -> None:
        self.kit = kit
        self.clock = clock
        self.predictions: dict[str, _Prediction] = {}
        self.files: dict[str, _File] = {}
        self.webhooks = _ReplicateWebhooks(kit, self)

    def clear(self) -> None:
        for prediction in self.predictions.values():
            if prediction.render is not None:
                prediction.render.cancel()
            prediction.changed.set()
        self.predictions.clear()
        self.files.clear()

    # -- plumbing shared by every route

    async def _guard(self, route: str, request: Request) -> tuple[str, Response | None]:
        if "host" not in request.headers:  # HTTP/1.1 requires it; in-process nothing else would notice
            raise _Problem(400, "Bad Request", "Missing Host header")
        owner = _owner(request)
        return owner, await self.kit.fault(route, request)

    @staticmethod
    def _answer(problem: _Problem) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(problem.body, status_code=problem.status, media_type="application/problem+json")

    # -- predictions

    async def create(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            owner, injected = await self._guard("create", request)
            if injected is not None:
                return injected
            model = f"{request.path_params['owner']}/{request.path_params['name']}"
            if model != MODEL:
                raise _Problem(404, "Not found", f"The requested model {model} was not found on this emulator.")
            wait = _parse_prefer(request.headers.get("prefer"))
            deadline_seconds = self._cancel_after(request.headers.get("cancel-after"))
            body = await self._json_body(request)
            prediction = self._new_prediction(owner, body, deadline_seconds, request)
        except _Problem as problem:
            return self._answer(problem)
        status_ok = 201
        if wait is not None:
            terminal = await self._hold(prediction, wait)
            status_ok = 201 if terminal else 202
        payload = await self._json(prediction, request, just_created=wait is None)
        return JSONResponse(payload, status_code=status_ok, headers={"Location": payload["urls"]["get"]})

    async def list_predictions(self, request: Request) -> Response:
        """The account's predictions, newest first: how a client finds a prediction whose create answer it lost."""
        from starlette.responses import JSONResponse

        try:
            owner, injected = await self._guard("list", request)
            if injected is not None:
                return injected
            since, until = _time_query(request, "created_after"), _time_query(request, "created_before")
            cursor = _read_cursor(request.query_params.get("cursor"))
        except _Problem as problem:
            return self._answer(problem)
        mine = sorted(
            (p for p in self.predictions.values() if p.owner == owner and since <= p.created_at < until),
            key=_newest_first,
        )
        page, before, after = _page(mine, cursor, LIST_PAGE_SIZE)
        return JSONResponse(
            {
                "next": _page_url(request, self.kit.base_url(request), after, reverse=False),
                "previous": _page_url(request, self.kit.base_url(request), before, reverse=True),
                "results": [await self._json(p, request) for p in page],
            }
        )

    async def get(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            owner, injected = await self._guard("get", request)
            if injected is not None:
                return injected
            prediction = self._find(request, owner)
        except _Problem as problem:
            return self._answer(problem)
        return JSONResponse(await self._json(prediction, request))

    async def cancel(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            owner, injected = await self._guard("cancel", request)
            if injected is not None:
                return injected
            prediction = self._find(request, owner)
        except _Problem as problem:
            return self._answer(problem)
        now = self.clock()
        status, _ = prediction.state(now)
        if status not in TERMINAL:
            prediction.canceled_at = now
            prediction.changed.set()
            if prediction.render is not None:
                prediction.render.cancel()
            if status == "starting":
                self.kit.void(prediction.id, "canceled before it started")
            self.webhooks.ended(prediction)
        return JSONResponse(await self._json(prediction, request))

    def _find(self, request: Request, owner: str) -> _Prediction:
        prediction = self.predictions.get(request.path_params["id"])
        if prediction is None or prediction.owner != owner:
            raise _Problem(404, "Not found", "Not found.")
        return prediction

    @staticmethod
    def _cancel_after(header: str | None) -> float | None:
        if header is None:
            return None
        seconds = _parse_duration(header)
        if seconds is None:
            raise _Problem(400, "Invalid Cancel-After header", f"Cannot parse Cancel-After {header!r} as a duration")
        if seconds < MIN_CANCEL_AFTER_SECONDS:
            raise _Problem(400, "Invalid Cancel-After header", "The minimum allowed Cancel-After is 5s")
        return seconds

    @staticmethod
    async def _json_body(request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _Problem(415, "Unsupported Media Type", "Request body must be JSON (Content-Type: application/json)")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Problem(400, "Invalid JSON", "The request body could not be parsed as JSON")
        found: list[_Invalid] = []
        _validate(body, REQUEST_SCHEMA, "(root)", found)
        if found:
            raise _invalid(found)
        assert isinstance(body, dict)
        return body

    def _new_prediction(
        self, owner: str, body: dict[str, Any], deadline_seconds: float | None, request: Request | None = None
    ) -> _Prediction:
        """Validate the images, fix the prediction's timeline, admit it, and start rendering its output."""
        given: dict[str, Any] = body["input"]
        notes: list[str] = []
        found: list[_Invalid] = []
        images = {
            name: self._read_image(given[name], name, notes, found)
            for name in ("character_reference_image", "image", "mask")
            if name in given
        }
        if ("image" in given) != ("mask" in given):
            found.append(_Invalid("dependency", "input", "image and mask must be given together (inpainting)"))
        if found:
            raise _invalid(found)
        speed = _effective(given, 0)["rendering_speed"]
        now = self.clock()
        total = max(0.0, self.kit.model_seconds)
        fault = self.kit.choose_fault("create")
        nsfw = MARKER_NSFW in given["prompt"]
        prediction = _Prediction(
            id=_new_id(),
            owner=owner,
            input=given,
            created_at=now,
            start_at=now + total * QUEUE_SHARE,
            done_at=math.inf if fault is not None and fault.kind == "stuck" else now + total,
            deadline=now + deadline_seconds if deadline_seconds is not None else None,
            seed=given["seed"] if "seed" in given else self.kit.random_seed(),
            outcome="failed" if nsfw else "succeeded",
            error=NSFW_ERROR if nsfw else None,
            notes=notes,
            render=None,
        )
        self.predictions[prediction.id] = prediction
        base = images.get("image")
        self.kit.admit(
            prediction.id,
            operation="edit" if "image" in given else "generate",
            images=1,
            cost_usd=PRICE_PER_IMAGE_USD[speed],
            rendering_speed=speed,
            inputs=_effective(given, prediction.seed),
        )
        if prediction.deadline is not None and prediction.deadline < prediction.start_at:
            self.kit.void(prediction.id, "aborted: its Cancel-After deadline passes before it can start")
        elif nsfw:
            self.kit.void(prediction.id, "failed: flagged as sensitive")
        elif prediction.ends_at() == prediction.done_at and not math.isinf(prediction.done_at):
            width, height = _output_size(given, base)
            render = functools.partial(
                self.kit.render_file,
                images.get("character_reference_image") or b"",
                given["prompt"],
                width=width,
                height=height,
                seed=prediction.seed,
                fmt="png",
                base=base,
                mask=images.get("mask"),
            )
            prediction.render = asyncio.ensure_future(self.kit.run_blocking(render))
            prediction.render.add_done_callback(_consume)
        if request is not None:
            self.webhooks.watch(prediction, body, request)
        if fault is not None and fault.kind == "drop_after_admit":
            raise ConnectionDropped("emulated fault: connection cut after the prediction was created", admitted=True)
        return prediction

    def _read_image(self, value: str, name: str, notes: list[str], found: list[_Invalid]) -> bytes | None:
        """The bytes behind an image input, None when it cannot be had here (and a note says so)."""
        field_name = f"input.{name}"
        if value.lower().startswith("data:"):
            decoded = decode_data_uri(value)
            if decoded is None or not _decodes(decoded[1]):
                found.append(_Invalid("format", field_name, "Data URI does not hold a JPEG, PNG or WebP image"))
                return None
            return decoded[1]
        match = re.search(r"/v1/files/([a-z0-9]+)$", urllib.parse.urlsplit(value).path)
        uploaded = self.files.get(match.group(1)) if match else None
        if uploaded is not None and self.clock() >= uploaded.created_at + FILE_LIFETIME_SECONDS:
            found.append(_Invalid("format", field_name, "The file has expired and can no longer be read"))
            return None
        if uploaded is not None:
            return uploaded.data
        served = self.kit.lookup(value)
        if served is not None:
            return served
        notes.append(
            f"emulator: {name} URL was not fetched (the emulator reads only its own files); rendered without it"
        )
        return None

    async def _hold(self, prediction: _Prediction, wait_seconds: int) -> bool:
        """Hold a ``Prefer: wait`` request until the prediction is terminal or the wait ends; True if terminal."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait_seconds
        while True:
            now = self.clock()
            if prediction.state(now)[0] in TERMINAL:
                return True
            left = give_up - loop.time()
            if left <= 0 or self.kit.stopping:
                return False
            # Sleep until the timeline's next terminal moment, the end of the wait, or a cancel.
            until_end = max(prediction.ends_at() - now, 0.0)
            await self.kit.wait_or_stop(prediction.changed.wait(), min(left, until_end))

    async def _json(self, prediction: _Prediction, request: Request, *, just_created: bool = False) -> dict[str, Any]:
        """The prediction object; an asynchronous create always answers "starting", as Replicate does."""
        now = prediction.created_at if just_created else self.clock()
        status, completed_at = ("starting", None) if just_created else prediction.state(now)
        output = None
        removed = now - prediction.created_at >= RETENTION_SECONDS
        if status == "succeeded" and not removed and prediction.render is not None:
            output = self.kit.file_url(request, await asyncio.shield(prediction.render))
        ran_until = completed_at if completed_at is not None else now
        started = status not in ("starting", "aborted") and prediction.start_at <= ran_until
        logs = ""
        if started:
            logs = f"Using seed: {prediction.seed}\n" + "".join(f"{note}\n" for note in prediction.notes)
            if status == "succeeded":
                logs += f"Prompt used: {prediction.input['prompt']}\n"
        metrics: dict[str, float] = {}
        if completed_at is not None:
            metrics["total_time"] = round(completed_at - prediction.created_at, 3)
            if started:
                metrics["predict_time"] = round(completed_at - prediction.start_at, 3)
        base = self.kit.base_url(request)
        return {
            "id": prediction.id,
            "model": MODEL,
            "version": "hidden",
            "input": {} if removed else prediction.input,
            "logs": "" if removed else logs,
            "output": output,
            "data_removed": removed,
            "error": prediction.error if status == "failed" else None,
            "status": status,
            "source": "api",
            "created_at": _iso(prediction.created_at),
            "started_at": _iso(prediction.start_at) if started else None,
            "completed_at": _iso(completed_at),
            **({"deadline": _iso(prediction.deadline)} if prediction.deadline is not None else {}),
            "urls": {
                "get": f"{base}/v1/predictions/{prediction.id}",
                "cancel": f"{base}/v1/predictions/{prediction.id}/cancel",
                "web": f"{base}/p/{prediction.id}",
            },
            "metrics": metrics,
        }

    # -- files

    async def create_file(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            owner, injected = await self._guard("files.create", request)
            if injected is not None:
                return injected
            upload = await self._read_upload(request, owner)
        except _Problem as problem:
            return self._answer(problem)
        self.files[upload.id] = upload
        self.kit.record_upload(upload.data)
        return JSONResponse(self._file_json(upload, request), status_code=201)

    async def get_file(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            owner, injected = await self._guard("files.get", request)
            if injected is not None:
                return injected
            upload = self.files.get(request.path_params["id"])
            if upload is None or upload.owner != owner:
                raise _Problem(404, "Not found", "File not found")
        except _Problem as problem:
            return self._answer(problem)
        return JSONResponse(self._file_json(upload, request))

    async def _read_upload(self, request: Request, owner: str) -> _File:
        """A ``POST /v1/files`` form: ``content`` (the file, required), optional ``filename``, ``type`` and
        ``metadata`` (JSON) fields [V: files.create]."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FILE_BYTES + 64 * 1024:
            raise _Problem(413, "Content Too Large", "Files must be less than 100MB in size")
        try:
            parts = parse_multipart(await request.body(), request.headers.get("content-type", ""))
        except MultipartError as exc:
            raise _Problem(400, "Bad Request", f"Expected a multipart/form-data body: {exc}")
        by_name = {}
        for part in parts:
            if part.name in by_name:
                raise _Problem(400, "Bad Request", f"Field {part.name!r} is given more than once")
            by_name[part.name] = part
        unknown = set(by_name) - {"content", "filename", "type", "metadata"}
        if unknown:
            raise _Problem(400, "Bad Request", f"Unknown fields: {', '.join(sorted(unknown))}")
        content = by_name.get("content")
        if content is None or not content.is_file:
            raise _Problem(400, "Bad Request", "The 'content' field (a file part) is required")
        if len(content.data) > MAX_FILE_BYTES:
            raise _Problem(413, "Content Too Large", "Files must be less than 100MB in size")
        try:
            filename = by_name["filename"].text() if "filename" in by_name else content.filename
            content_type = by_name["type"].text() if "type" in by_name else content.content_type
            metadata = json.loads(by_name["metadata"].data) if "metadata" in by_name else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Problem(400, "Bad Request", "filename and type must be UTF-8 text, metadata valid JSON")
        name = filename or "file"
        if len(name.encode("utf-8")) > 255:
            raise _Problem(400, "Bad Request", "filename must be at most 255 bytes")
        return _File(
            _new_id(), owner, content.data, content_type or "application/octet-stream", name, metadata, self.clock()
        )

    def _file_json(self, upload: _File, request: Request) -> dict[str, Any]:
        created = datetime.fromtimestamp(upload.created_at, timezone.utc)
        md5 = hashlib.md5(upload.data, usedforsecurity=False).hexdigest()
        return {
            "id": upload.id,
            "name": upload.filename,
            "content_type": upload.content_type,
            "size": len(upload.data),
            "etag": md5,
            "checksums": {"sha256": hashlib.sha256(upload.data).hexdigest(), "md5": md5},
            "metadata": upload.metadata,
            "created_at": _iso(upload.created_at),
            "expires_at": _iso((created + timedelta(seconds=FILE_LIFETIME_SECONDS)).timestamp()),
            "urls": {"get": f"{self.kit.base_url(request)}/v1/files/{upload.id}"},
        }


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a render's outcome so an abandoned one (canceled, never polled) logs no warning."""
    if not future.cancelled():
        future.exception()


def _error_answer(fault: Fault) -> Response:
    """An injected ``status``/``rate_limit`` fault as Replicate answers it (:data:`FAULT_BODIES`)."""
    from starlette.responses import JSONResponse

    status = fault.status or 500
    default = {"title": "Error", "detail": "The request failed.", "status": status}
    body = fault.body if fault.body is not None else FAULT_BODIES.get(status, default)
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


# --------------------------------------------------------------------------------------------------
# Webhooks
#
# A create with ``webhook`` is called back [V]: a POST of the prediction object for each event of
# ``webhook_events_filter`` (``start`` when it starts, ``completed`` when it is terminal, canceled and
# aborted included). Signed as Replicate signs [S replicate-python ``webhook.py``]: headers
# ``webhook-id`` (one per event, the same on retries), ``webhook-timestamp`` and ``webhook-signature``
# ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the account's secret. Each account
# (token) gets a secret of its own, served at ``GET /v1/webhooks/default/secret`` as ``{"key":
# "whsec_..."}``. Written with the standard library, so the library's verifier is checked against a
# second implementation. Sending, retries and callback faults are the emulator core's.

#: The account's signing secret [V: webhooks.default.secret.get].
SECRET_PATH = "/v1/webhooks/default/secret"  # noqa: S105 - a path, not a secret
#: The events sent when a create names no filter [I: Replicate also sends output and logs events].
DEFAULT_WEBHOOK_EVENTS = frozenset({"start", "completed"})


@dataclass(eq=False)
class _Watch:
    prediction: _Prediction
    url: str
    events: frozenset[str]
    request: Request
    sent: set[str] = field(default_factory=set)


class _ReplicateWebhooks:
    def __init__(self, kit: EmulatorKit, emulator: _ReplicateEmulator) -> None:
        self.kit = kit
        self.emulator = emulator
        self._secrets: dict[str, str] = {}
        """Owner (a hash of the token) -> ``whsec_`` secret, kept across resets as an account's is."""
        self._watched: dict[str, _Watch] = {}

    def secret_of(self, owner: str) -> str:
        if owner not in self._secrets:
            self._secrets[owner] = "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")
        return self._secrets[owner]

    async def secret(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        try:
            owner, injected = await self.emulator._guard("webhooks.secret", request)
        except _Problem as problem:
            return self.emulator._answer(problem)
        if injected is not None:
            return injected
        return JSONResponse({"key": self.secret_of(owner)})

    def watch(self, prediction: _Prediction, body: Mapping[str, Any], request: Request) -> None:
        """Schedule the callbacks a create asked for (its timeline is fixed, so their times are known)."""
        url = body.get("webhook")
        if not url:
            return
        watch = _Watch(prediction, url, frozenset(body.get("webhook_events_filter") or DEFAULT_WEBHOOK_EVENTS), request)
        self._watched[prediction.id] = watch
        now = self.emulator.clock()
        if "start" in watch.events and prediction.start_at < prediction.ends_at():
            self.kit.later(prediction.start_at - now, lambda: self._fire(watch, "start"))
        if "completed" in watch.events and not math.isinf(prediction.ends_at()):
            self.kit.later(prediction.ends_at() - now, lambda: self._fire(watch, "completed"))

    def ended(self, prediction: _Prediction) -> None:
        """A cancel made the prediction terminal now: its ``completed`` event goes now."""
        watch = self._watched.get(prediction.id)
        if watch is not None:
            self._fire(watch, "completed")

    def _fire(self, watch: _Watch, event: str) -> None:
        if event in watch.sent or event not in watch.events:
            return
        status, _ = watch.prediction.state(self.emulator.clock())
        if event == "completed" and status not in TERMINAL:  # a timer a hair early: look again
            self.kit.later(
                max(0.01, watch.prediction.ends_at() - self.emulator.clock()), lambda: self._fire(watch, event)
            )
            return
        watch.sent.add(event)
        task = asyncio.ensure_future(self._send(watch, event))
        task.add_done_callback(_consume)

    async def _send(self, watch: _Watch, event: str) -> None:
        from ideochar.emulator.kit import Callback

        document = await self.emulator._json(watch.prediction, watch.request)
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        message_id = "msg_" + _new_id()
        sign = functools.partial(_sign, self.secret_of(watch.prediction.owner), message_id)
        self.kit.call_back(Callback("replicate", watch.prediction.id, watch.url, body, sign, event))

    def clear(self) -> None:
        self._watched.clear()


def _sign(secret: str, message_id: str, body: bytes, at: float) -> dict[str, str]:
    """Replicate's signature headers for one try (written from its client's verifier, not from ours)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    timestamp = str(int(at))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }

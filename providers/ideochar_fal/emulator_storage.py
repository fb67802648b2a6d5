"""fal's storage and pricing routes, as the ideochar emulator speaks them (beside the queue in ``emulator``).

Written from ``reference/fal.md`` §3 (how fal_client 1.0.3 and fal-js upload) and fal's platform API docs
("Pricing"), not from our adapter. Routes, relative to the ``fal`` prefix (``rest`` is ``/rest``, the CDN
``/cdn``, the platform API ``/platform``); the name in brackets is the route name a fault profile uses:

- ``POST /rest/storage/auth/token?storage_type=fal-cdn-v3`` [``uploads.token``]: ``Authorization: Key``,
  a JSON object body (``{}``) -> ``{token, token_type: "Bearer", base_url, expires_at}`` [S]; the token
  lives :data:`TOKEN_SECONDS` [I].
- ``POST /cdn/files/upload`` [``uploads.cdn``]: ``Authorization: Bearer <token>`` (a token this
  emulator issued, not expired: else 401), the raw bytes with their ``Content-Type``, optional
  ``X-Fal-File-Name`` and lifecycle headers -> ``{"access_url"}`` [S].
- ``POST /rest/storage/upload/initiate?storage_type=gcs|fal-cdn-v3`` [``uploads.initiate``]: ``Key`` auth,
  ``{"file_name", "content_type"}`` -> ``{"upload_url", "file_url"}`` [S]; then ``PUT upload_url``
  [``uploads.put``] with the bytes (a signed URL: no auth; once; within :data:`INITIATED_SECONDS` [I]).
- ``GET /platform/v1/models/pricing?endpoint_id=...`` [``pricing``]: ``Key`` auth, 1 to 50 endpoint ids
  (comma-separated or repeated) -> ``{"prices": [{endpoint_id, unit_price, unit, currency}], "next_cursor":
  null, "has_more": false}`` [D]; the listed unit price is BALANCED's [I], unknown ids are left out [I].

Strict on purpose [I]: the lifecycle headers (``X-Fal-Object-Lifecycle``, ``X-Fal-Object-Lifecycle-Preference``)
must be JSON objects with a whole ``expiration_duration_seconds`` >= 1 when given; an upload's bytes must
be a JPEG, PNG or WebP image of the ``Content-Type`` declared (fal's CDN takes any file; ideochar uploads
only images, so anything else is an adapter bug); an unknown ``storage_type`` or body field is refused.
An uploaded file lives as long as its lifecycle asks (:data:`DEFAULT_RETENTION_SECONDS` without one [I]);
then its URL answers 404 and a job naming it is refused (``file_download_error``). Every upload is counted
(``state.uploads``): what "uploaded once per vendor" is asserted against.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ideochar.emulator.inputs import media_type, probe_image

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ideochar.emulator.kit import EmulatorKit

__all__ = [
    "DEFAULT_RETENTION_SECONDS",
    "INITIATED_SECONDS",
    "LISTED_SPEED",
    "MAX_UPLOAD_BYTES",
    "TOKEN_SECONDS",
    "storage_routes",
]

#: How long a CDN token lives [I: fal_client caches it until its expires_at; the length is not documented].
TOKEN_SECONDS = 30 * 60.0
#: How long an initiated upload waits for its PUT [I].
INITIATED_SECONDS = 3600.0
#: How long an uploaded file lives without lifecycle headers [I].
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0
#: Above this fal_client uploads in parts (``MULTIPART_THRESHOLD``, 100 MiB) [S]; one request here.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
#: The speed whose price the pricing endpoint lists for an endpoint [I: fal's default speed].
LISTED_SPEED = "BALANCED"
STORAGE_TYPES = frozenset({"fal-cdn-v3", "gcs"})
IMAGE_TYPES: Mapping[str, str] = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp"}
LIFECYCLE_HEADERS = ("x-fal-object-lifecycle", "x-fal-object-lifecycle-preference")
#: At most this many endpoint ids in one pricing request [D: "1-50"].
MAX_PRICED_ENDPOINTS = 50


class _Refused(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class _Pending:
    """An initiated upload waiting for its PUT."""

    file_id: str
    content_type: str
    expires_in: float
    until: float


def storage_routes(
    kit: EmulatorKit,
    *,
    owner_of: Callable[[Request], tuple[str | None, Response | None]],
    prices: Mapping[str, Decimal],
    endpoints: Mapping[str, str],
    clock: Callable[[], float] = time.time,
) -> list[BaseRoute]:
    """The storage and pricing routes, bound to ``kit``; ``owner_of`` is the queue's own Key check."""
    from starlette.routing import Route

    storage = _Storage(kit, owner_of, prices, endpoints, clock)
    return [
        Route("/rest/storage/auth/token", storage.token, methods=["POST"], name="fal.storage.token"),
        Route("/rest/storage/upload/initiate", storage.initiate, methods=["POST"], name="fal.storage.initiate"),
        Route("/cdn/files/upload", storage.upload, methods=["POST"], name="fal.storage.upload"),
        Route("/cdn/uploads/{ticket}", storage.put, methods=["PUT"], name="fal.storage.put"),
        Route("/platform/v1/models/pricing", storage.pricing, methods=["GET"], name="fal.pricing"),
    ]


class _Storage:
    def __init__(
        self,
        kit: EmulatorKit,
        owner_of: Callable[[Request], tuple[str | None, Response | None]],
        prices: Mapping[str, Decimal],
        endpoints: Mapping[str, str],
        clock: Callable[[], float],
    ) -> None:
        self.kit = kit
        self.owner_of = owner_of
        self.prices = prices
        self.endpoints = endpoints
        self.clock = clock
        self.tokens: dict[str, float] = {}
        """Issued CDN tokens (as a digest, never the token) -> when each expires."""
        self.pending: dict[str, _Pending] = {}
        kit.on_reset(self._reset)

    def _reset(self) -> None:
        self.tokens.clear()
        self.pending.clear()

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(body, status_code=status)

    def _refusal(self, refused: _Refused) -> Response:
        return self._json({"detail": refused.detail}, refused.status)

    # -- the CDN path

    async def token(self, request: Request) -> Response:
        _, denied = self.owner_of(request)
        if denied is not None:
            return denied
        injected = await self.kit.fault("uploads.token", request)
        if injected is not None:
            return injected
        try:
            _storage_type(request, {"fal-cdn-v3"})
            body = await _json_object(request)
            if body:
                raise _Refused(422, [_problem((name,), "Extra inputs are not permitted") for name in body])
        except _Refused as refused:
            return self._refusal(refused)
        token = secrets.token_urlsafe(24)
        expires = self.clock() + TOKEN_SECONDS
        self.tokens[_digest(token)] = expires
        return self._json({
            "token": token,
            "token_type": "Bearer",
            "base_url": self.kit.base_url(request, "cdn"),
            "expires_at": datetime.fromtimestamp(expires, timezone.utc).isoformat(),
        })  # fmt: skip

    async def upload(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expires = self.tokens.get(_digest(token.strip())) if scheme.lower() == "bearer" else None
        if expires is None or self.clock() >= expires:
            return self._json({"detail": "Invalid or expired token"}, 401)
        injected = await self.kit.fault("uploads.cdn", request)
        if injected is not None:
            return injected
        try:
            expires_in = _lifecycle(request)
            content_type = _image_type(request)
            data = await _body(request, content_type)
        except _Refused as refused:
            return self._refusal(refused)
        url = self.kit.store_upload(data, content_type, request, expires_in=expires_in)
        return self._json({"access_url": url})

    # -- the initiate-and-PUT path

    async def initiate(self, request: Request) -> Response:
        _, denied = self.owner_of(request)
        if denied is not None:
            return denied
        injected = await self.kit.fault("uploads.initiate", request)
        if injected is not None:
            return injected
        try:
            _storage_type(request, STORAGE_TYPES)
            expires_in = _lifecycle(request)
            body = await _json_object(request)
            problems = [_problem((n,), "Field required") for n in ("file_name", "content_type") if n not in body]
            problems += [_problem((n,), "Input should be a valid string") for n in body if not isinstance(body[n], str)]
            problems += [
                _problem((n,), "Extra inputs are not permitted") for n in body if n not in ("file_name", "content_type")
            ]
            if problems:
                raise _Refused(422, problems)
            if body["content_type"] not in IMAGE_TYPES:
                raise _Refused(422, [_problem(("content_type",), "Only JPEG, PNG or WebP images are accepted here")])
        except _Refused as refused:
            return self._refusal(refused)
        file_id = self.kit.new_file_id(body["content_type"])
        ticket = secrets.token_urlsafe(18)
        self.pending[ticket] = _Pending(file_id, body["content_type"], expires_in, self.clock() + INITIATED_SECONDS)
        return self._json({
            "upload_url": f"{self.kit.base_url(request, 'cdn')}/uploads/{ticket}",
            "file_url": self.kit.file_url_for(request, file_id),
        })  # fmt: skip

    async def put(self, request: Request) -> Response:
        from starlette.responses import Response

        pending = self.pending.pop(request.path_params["ticket"], None)
        if pending is None or self.clock() >= pending.until:
            return Response("Invalid or expired upload URL", status_code=403, media_type="text/plain")
        injected = await self.kit.fault("uploads.put", request)
        if injected is not None:
            return injected
        try:
            content_type = _image_type(request)
            if content_type != pending.content_type:
                raise _Refused(400, f"Content-Type {content_type} is not the {pending.content_type} initiated")
            data = await _body(request, content_type)
        except _Refused as refused:
            return Response(str(refused.detail), status_code=refused.status, media_type="text/plain")
        self.kit.store_upload(data, content_type, request, expires_in=pending.expires_in, file_id=pending.file_id)
        return Response(status_code=200)

    # -- pricing

    async def pricing(self, request: Request) -> Response:
        _, denied = self.owner_of(request)
        if denied is not None:
            return denied
        injected = await self.kit.fault("pricing", request)
        if injected is not None:
            return injected
        asked = [e.strip() for v in request.query_params.getlist("endpoint_id") for e in v.split(",") if e.strip()]
        if not 1 <= len(asked) <= MAX_PRICED_ENDPOINTS:
            detail = [{"loc": ["query", "endpoint_id"], "msg": "Provide 1 to 50 endpoint ids", "type": "value_error"}]
            return self._json({"detail": detail}, 422)
        prices = [
            {"endpoint_id": e, "unit_price": float(self.prices[LISTED_SPEED]), "unit": "image", "currency": "USD"}
            for e in dict.fromkeys(asked)
            if e in self.endpoints
        ]
        return self._json({"prices": prices, "next_cursor": None, "has_more": False})


# -- reading a storage request ------------------------------------------------------------------------------


def _problem(loc: tuple[str, ...], msg: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": "value_error"}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _storage_type(request: Request, allowed: frozenset[str] | set[str]) -> None:
    given = request.query_params.get("storage_type")
    if given not in allowed:
        msg = f"storage_type must be one of {', '.join(sorted(allowed))}"
        raise _Refused(422, [{"loc": ["query", "storage_type"], "msg": msg, "type": "literal_error"}])


async def _json_object(request: Request) -> dict[str, Any]:
    kind, _ = media_type(request.headers.get("content-type"))
    if kind != "application/json":
        raise _Refused(422, [_problem((), "Input should be a JSON object")])
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise _Refused(422, [_problem((), "JSON decode error")])
    if not isinstance(body, dict):
        raise _Refused(422, [_problem((), "Input should be a JSON object")])
    return body


def _lifecycle(request: Request) -> float:
    """Seconds the file is to live, from the lifecycle headers (the shortest asked), else the default."""
    found: list[float] = []
    for name in LIFECYCLE_HEADERS:
        raw = request.headers.get(name)
        if raw is None:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            raise _Refused(400, f"{name} is not JSON")
        seconds = value.get("expiration_duration_seconds") if isinstance(value, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise _Refused(400, f"{name} needs a whole expiration_duration_seconds of at least 1")
        found.append(float(seconds))
    return min(found) if found else DEFAULT_RETENTION_SECONDS


def _image_type(request: Request) -> str:
    kind, _ = media_type(request.headers.get("content-type"))
    if kind not in IMAGE_TYPES:
        raise _Refused(400, f"Content-Type {kind or 'none'} is not a JPEG, PNG or WebP image")
    return kind


async def _body(request: Request, content_type: str) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise _Refused(413, "File too large for a single upload")
    data = await request.body()
    if not data:
        raise _Refused(400, "The body is empty")
    info = probe_image(data)
    if info is None or info.format != IMAGE_TYPES[content_type]:
        raise _Refused(400, f"The bytes are not the {content_type} image declared")
    return data

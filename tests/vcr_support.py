"""Recorded HTTP for provider tests: one vcrpy configuration, readable and scrubbed cassettes.

Every provider's cassette tests go through this module, so every cassette is written the same way:
auth headers and cookies removed, JSON bodies stored parsed, image bytes replaced by placeholders, and
the *origin* of the recording in its path, so nothing can pass for a live recording::

    cassettes/<provider>/docs/<name>.yaml       written from the vendor's documented example bodies
    cassettes/<provider>/emulator/<name>.yaml   recorded against our own emulator
    cassettes/<provider>/live/<name>.yaml       recorded against the real vendor, with keys

Replay a cassette (the default: ``record_mode="none"``, a test never reaches the network, and a test
fails when the cassette holds interactions it did not play)::

    from vcr_support import cassette, acassette

    def test_generate_replays(...):
        with cassette("fal", "docs", "generate") as http:      # an httpx.Client
            result = drive(provider.exchange(request, ctx), http, fetch=http)

    async def test_generate_replays_async(...):
        async with acassette("fal", "docs", "generate") as http:  # an httpx.AsyncClient
            result = await adrive(provider.exchange(request, ctx), http, fetch=http)

Record a docs cassette from a handler that answers with the vendor's documented example bodies (an
``httpx.MockTransport`` handler): pass ``handler=`` to the same call. It records only when asked,
``IDEOCHAR_RECORD=docs`` (or ``emulator``, or a comma list), and replays otherwise, so the committed
cassette is what CI checks::

    with cassette("fal", "docs", "generate", handler=fal_docs_handler) as http:
        result = drive(provider.exchange(request, ctx), http, fetch=http)

    IDEOCHAR_RECORD=docs .venv/bin/pytest tests/providers/fal -k cassette     # rewrite docs cassettes

For emulator cassettes pass ``transport=`` (an ``httpx.ASGITransport`` over the emulator app, or any
transport) instead of ``handler=``. Live cassettes record through the real network, only with
``IDEOCHAR_RECORD=live`` *and* the vendor's key variables set; the test supplies the key it read from the
environment (``live_key("FAL_KEY")`` gives a dummy during replay). See ``cassettes/README.md``.

Placeholders (chosen so a cassette stays small and readable while a replay still works):

* image bytes in *requests* (raw bodies, multipart parts, data URIs and bare base64 inside JSON) become
  ``sha256:<hex> (<n> bytes)``; the same scrubbing runs on the live request before matching, so the
  digest still proves the same image was sent;
* image bytes in *responses* become ``<image png 1024x1024 sha256:<hex> (<n> bytes)>`` and are rebuilt
  on load as a solid grey image of that format and pixel size, so the code under test still decodes a
  real image (its bytes, hence its sha256, differ from the original's: only the format and size are kept).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.parser
import email.policy
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import httpx
import vcr
import vcr.cassette
import yaml  # type: ignore[import-untyped]
from vcr.filters import sensitive_data_hooks
from vcr.serializers import yamlserializer

from ideochar._secrets import REDACTED as REDACTED_BY_IDEOCHAR
from ideochar._secrets import redact

__all__ = [
    "AUTH_HEADERS",
    "CASSETTE_ROOT",
    "KEY_VARIABLES",
    "ORIGINS",
    "RECORD_ENV",
    "Origin",
    "acassette",
    "cassette",
    "cassette_path",
    "find_key_shaped",
    "image_placeholder",
    "live_key",
    "make_vcr",
    "recording",
]

Origin = Literal["docs", "emulator", "live"]
ORIGINS: tuple[Origin, ...] = ("docs", "emulator", "live")

CASSETTE_ROOT = Path(__file__).resolve().parents[1] / "cassettes"

#: Comma list of origins to (re)record in this run, e.g. ``IDEOCHAR_RECORD=docs`` or ``docs,live``.
RECORD_ENV = "IDEOCHAR_RECORD"

#: Every vendor's auth header (fal ``Key …`` and Replicate ``Bearer …`` in authorization, Segmind
#: ``x-api-key``, Ideogram ``api-key``) and cookies. Their values never reach a cassette.
AUTH_HEADERS = ("authorization", "x-api-key", "api-key", "cookie", "set-cookie", "proxy-authorization")

#: Environment variables holding vendor keys. Their values (and halves of them) are replaced anywhere in
#: a recording, in case a vendor echoes a key in a body or an error message.
KEY_VARIABLES = (
    "FAL_KEY",
    "FAL_KEY_ID",
    "FAL_KEY_SECRET",
    "SEGMIND_API_KEY",
    "IDEOGRAM_API_KEY",
    "REPLICATE_API_TOKEN",
)

REDACTED = "REDACTED"

#: Request headers worth keeping in a cassette (the rest is client noise: user-agent, accept-encoding...).
_KEPT_REQUEST_HEADERS = ("content-type", "accept", "prefer")
_KEPT_REQUEST_PREFIXES = ("x-fal-",)
#: Response headers dropped as noise or as recomputed (the body may have been replaced).
_DROPPED_RESPONSE_HEADERS = (
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "date",
    "connection",
    "keep-alive",
    "alt-svc",
    "nel",
    "report-to",
    "strict-transport-security",
    "server-timing",
    "via",
    "cf-ray",
    "cf-cache-status",
)

_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_RESPONSE_MARKER = re.compile(r"<image (png|jpeg|webp) (\d+)x(\d+) sha256:[0-9a-f]{64} \(\d+ bytes\)>")
_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*);base64,(.*)$", re.DOTALL)
#: A JSON string at least this long that decodes as base64 to an image is treated as one.
_MIN_BASE64_IMAGE_CHARS = 64


# -- paths and modes -------------------------------------------------------------------------------


def cassette_path(provider: str, origin: Origin, name: str) -> Path:
    """Where a cassette lives: the origin is a folder, so it is visible in every diff and listing."""
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, not {origin!r}")
    if not re.fullmatch(r"[a-z0-9_-]+", provider) or not re.fullmatch(r"[A-Za-z0-9_./-]+", name) or ".." in name:
        raise ValueError(f"bad cassette name {provider!r}/{name!r}")
    return CASSETTE_ROOT / provider / origin / (name if name.endswith(".yaml") else f"{name}.yaml")


def recording(origin: Origin) -> bool:
    """True when this run was asked to (re)record cassettes of ``origin`` (``IDEOCHAR_RECORD``)."""
    wanted = {part.strip() for part in os.environ.get(RECORD_ENV, "").split(",") if part.strip()}
    return origin in wanted or "all" in wanted


def live_key(variable: str, dummy: str = "replayed-without-a-key") -> str:
    """The vendor key when recording live, else a dummy (replays never send it anywhere)."""
    if recording("live"):
        value = os.environ.get(variable)
        if not value:
            raise RuntimeError(f"{RECORD_ENV}=live needs {variable} set")
        return value
    return dummy


# -- placeholders ----------------------------------------------------------------------------------


def _image_format(data: bytes) -> str | None:
    for magic, fmt in _IMAGE_MAGIC:
        if data.startswith(magic):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def image_placeholder(data: bytes) -> str:
    """The request-side stand-in for image bytes: enough to prove which image was sent."""
    return f"sha256:{hashlib.sha256(data).hexdigest()} ({len(data)} bytes)"


def _response_marker(data: bytes, fmt: str) -> str:
    """The response-side stand-in text; a stand-in image already rebuilt from one is left as it is.

    (vcrpy runs ``before_record_response`` again on every interaction it loads, after
    ``after_load_interaction`` rebuilt the images, so this must recognise its own stand-ins.)
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception:
        width, height = 1, 1  # undecodable (truncated?) bytes: keep the format, a 1x1 stand-in
    if data == _stand_in_image(fmt, width, height):
        return base64.b64encode(data).decode("ascii")
    return f"<image {fmt} {width}x{height} {image_placeholder(data)}>"


@functools.lru_cache(maxsize=32)
def _stand_in_image(fmt: str, width: int, height: int) -> bytes:
    """A solid grey image with the recorded format and pixel size (cached: replays reuse it)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(buffer, _PIL_FORMATS[fmt])
    return buffer.getvalue()


def _rehydrate(match: re.Match[str]) -> str:
    data = _stand_in_image(match.group(1), int(match.group(2)), int(match.group(3)))
    return base64.b64encode(data).decode("ascii")


def _decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _scrub_json_value(value: Any, replace: Callable[[bytes, str], str]) -> Any:
    """Walk a JSON value and replace image data URIs and bare base64 images with ``replace``'s text."""
    if isinstance(value, dict):
        return {key: _scrub_json_value(item, replace) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub_json_value(item, replace) for item in value]
    if not isinstance(value, str) or len(value) < _MIN_BASE64_IMAGE_CHARS:
        return value
    match = _DATA_URI.match(value)
    if match:
        data = _decode_base64(match.group(3))
        if data is not None and (fmt := _image_format(data)):
            return f"data:{match.group(1) or ''}{match.group(2)};base64,{replace(data, fmt)}"
        return value
    if re.fullmatch(r"[A-Za-z0-9+/=\s]+", value):
        data = _decode_base64(value)
        if data is not None and (fmt := _image_format(data)):
            return replace(data, fmt)
    return value


# -- request and response scrubbing --------------------------------------------------------------------


def _canonical_multipart(body: bytes, content_type: str) -> bytes | None:
    """A multipart body as JSON (boundaries vary per request; images become placeholders)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return None
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        entry: dict[str, Any] = {"name": part.get_param("name", header="content-disposition")}
        filename = part.get_filename()
        if filename is not None:
            entry["filename"] = filename
        if part.get("content-type") is not None:
            entry["content_type"] = part.get_content_type()
        if _image_format(data) is not None:
            entry["value"] = image_placeholder(data)
        else:
            try:
                entry["value"] = data.decode("utf-8")
            except UnicodeDecodeError:
                entry["value"] = image_placeholder(data)
        parts.append(entry)
    return json.dumps({"multipart/form-data": parts}, sort_keys=True).encode()


def _scrub_request_body(body: bytes | None, content_type: str) -> bytes | None:
    if not body:
        return body
    if body.startswith(b'{"multipart/form-data"'):
        return body  # already canonical
    if content_type.startswith("multipart/"):
        return _canonical_multipart(body, content_type) or body
    if _image_format(body) is not None:
        return image_placeholder(body).encode()
    try:
        parsed = json.loads(body)
    except ValueError:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return image_placeholder(body).encode()
        return body
    scrubbed = _scrub_json_value(parsed, lambda data, fmt: image_placeholder(data))
    return json.dumps(scrubbed, sort_keys=True).encode()


def _scrub_request(request: Any) -> Any:
    """before_record_request: runs on recorded requests AND on each live request before matching."""
    content_type = request.headers.get("content-type", "") or ""
    body = request.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body is not None and not isinstance(body, bytes):
        body = b"".join(body) if isinstance(body, Iterable) else bytes(body)
    request.body = _scrub_request_body(body, content_type.lower())
    kept = {}
    for name, value in request.headers.items():
        low = name.lower()
        if low in AUTH_HEADERS:
            kept[low] = REDACTED
        elif value == "*/*":
            continue
        elif low in _KEPT_REQUEST_HEADERS or low.startswith(_KEPT_REQUEST_PREFIXES):
            kept[low] = value.split(";")[0] if low == "content-type" and "multipart/" in value else value
    request.headers = kept
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """before_record_response: image bytes become markers, noisy and secret headers go."""
    headers = {
        name: [_hide_known_keys(v) if isinstance(v, str) else v for v in values]
        for name, values in response["headers"].items()
        if name.lower() not in _DROPPED_RESPONSE_HEADERS and name.lower() not in AUTH_HEADERS
    }
    response["headers"] = headers
    body = response["body"]["string"]
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not body:
        return response
    fmt = _image_format(body)
    if fmt is not None:
        marker = _response_marker(body, fmt)
        if marker.startswith("<image "):
            response["body"]["string"] = marker.encode()
        return response
    # Every key this process holds in a Secret (keys passed as keys=, not only the env's), echoed back
    # in an error body: found by tests/reliability/test_secrets.py recording whole jobs.
    text = body.decode("utf-8", "surrogateescape")
    if (hidden := _hide_known_keys(text)) != text:
        body = hidden.encode("utf-8", "surrogateescape")
        response["body"]["string"] = body
    try:
        parsed = json.loads(body)
    except ValueError:
        return response
    scrubbed = _still_valid(_drop_stated_sizes(_scrub_json_value(parsed, _response_marker)))
    if scrubbed != parsed:
        response["body"]["string"] = json.dumps(scrubbed).encode()
    return response


def _drop_stated_sizes(value: Any) -> Any:
    """A file's stated byte size beside its URL (fal's ``file_size``) is dropped: on replay the image is a
    stand-in of another size, and a client that checks downloads against it would rightly refuse it."""
    if isinstance(value, dict):
        return {
            key: _drop_stated_sizes(item) for key, item in value.items() if not (key == "file_size" and "url" in value)
        }
    if isinstance(value, list):
        return [_drop_stated_sizes(item) for item in value]
    return value


def _still_valid(value: Any) -> Any:
    """A stated expiry (``expires_at``: fal's storage token) is moved a day past now: the recording's own
    expiry has passed by the time it is replayed, and a client that honours it would rightly ask again."""
    if isinstance(value, dict):
        later = datetime.now(timezone.utc) + timedelta(days=1)
        return {
            key: later.isoformat() if key == "expires_at" and isinstance(item, str) else _still_valid(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_still_valid(item) for item in value]
    return value


def _hide_known_keys(text: str) -> str:
    """Every key held in an ideochar ``Secret`` in this process, as the ``<PLACEHOLDER>`` form cassettes use."""
    cleaned = redact(text)
    return cleaned.replace(REDACTED_BY_IDEOCHAR, "<REDACTED>") if cleaned != text else text


def _rehydrate_interaction(request: Any, response: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """after_load_interaction: turn response image markers back into decodable stand-in images."""
    body = response["body"]["string"]
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    whole = _RESPONSE_MARKER.fullmatch(text.strip())
    if whole:
        response["body"]["string"] = _stand_in_image(whole.group(1), int(whole.group(2)), int(whole.group(3)))
    elif _RESPONSE_MARKER.search(text):
        response["body"]["string"] = _RESPONSE_MARKER.sub(_rehydrate, text).encode()
    return request, response


def _key_values() -> list[tuple[str, str]]:
    """(placeholder, value) for every vendor key in the environment, plus each half of a ``id:secret``."""
    pairs = []
    for variable in KEY_VARIABLES:
        value = os.environ.get(variable, "")
        if len(value) >= 8:
            pairs.append((f"<{variable}>", value))
            pairs.extend((f"<{variable}>", half) for half in value.split(":") if len(half) >= 8)
    return pairs


# -- readable YAML -----------------------------------------------------------------------------------


class _ReadableYaml:
    """vcrpy's YAML with JSON bodies stored parsed (``parsed_body``), as pydantic-ai does."""

    @staticmethod
    def serialize(cassette_dict: dict[str, Any]) -> str:
        for interaction in cassette_dict["interactions"]:
            request = interaction["request"]
            parsed = _as_json(request.get("body"))
            if parsed is not None:
                del request["body"]
                request["parsed_body"] = parsed
            body = interaction["response"]["body"]
            parsed = _as_json(body.get("string"))
            if parsed is not None:
                del body["string"]
                body["parsed_body"] = parsed
        return str(yaml.dump(cassette_dict, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000))

    @staticmethod
    def deserialize(cassette_string: str) -> dict[str, Any]:
        data: dict[str, Any] = yamlserializer.deserialize(cassette_string)
        for interaction in data["interactions"]:
            request = interaction["request"]
            if "parsed_body" in request:
                request["body"] = json.dumps(request.pop("parsed_body"))
            body = interaction["response"]["body"]
            if "parsed_body" in body:
                body["string"] = json.dumps(body.pop("parsed_body"))
        return data


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Multi-line strings (SSE streams, tracebacks) as literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def _as_json(body: Any) -> Any:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(body, str) or not body.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


# -- matching --------------------------------------------------------------------------------------


def _body_value(request: Any) -> Any:
    body = request.body
    if body is None or body == b"" or body == "":
        return None
    if isinstance(body, str):
        body = body.encode("utf-8")
    try:
        return json.loads(body)
    except ValueError:
        return body


def _field_diff(left: Any, right: Any, path: str = "") -> list[str]:
    if isinstance(left, dict) and isinstance(right, dict):
        lines = [f"{path}.{k}: missing from the cassette" for k in sorted(set(left) - set(right))]
        lines += [f"{path}.{k}: only in the cassette" for k in sorted(set(right) - set(left))]
        for key in sorted(set(left) & set(right)):
            lines += _field_diff(left[key], right[key], f"{path}.{key}")
        return lines
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        pairs = enumerate(zip(left, right, strict=True))
        return [line for i, (a, b) in pairs for line in _field_diff(a, b, f"{path}[{i}]")]
    return [] if left == right else [f"{path or 'body'}: {left!r} != {right!r}"[:300]]


def body_matcher(r1: Any, r2: Any) -> None:
    """JSON bodies compare as parsed values (key order and spacing do not matter, every field does);
    multipart bodies were canonicalised to JSON by the scrubber; anything else compares as bytes."""
    left, right = _body_value(r1), _body_value(r2)
    if left != right:
        raise AssertionError("request bodies differ:\n" + "\n".join(_field_diff(left, right)))


# -- the configuration ---------------------------------------------------------------------------------


def make_vcr(record_mode: str = "none") -> vcr.VCR:
    """The one vcrpy configuration every provider's cassette tests use."""
    hide = _key_values()
    config = vcr.VCR(
        record_mode=record_mode,
        serializer="ideochar-yaml",
        match_on=("method", "path", "query", "ideochar_body"),
        filter_headers=[(name, REDACTED) for name in AUTH_HEADERS],
        filter_query_parameters=[("key", REDACTED), ("api_key", REDACTED), ("token", REDACTED)],
        before_record_request=_scrub_request,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
        before_save_interaction=sensitive_data_hooks(hide)[0] if hide else None,
        after_load_interaction=_rehydrate_interaction,
        record_on_exception=False,
    )
    config.register_serializer("ideochar-yaml", _ReadableYaml)
    config.register_matcher("ideochar_body", body_matcher)
    return config


def _refuse_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"replay reached the transport for {request.method} {request.url}: not in the cassette")


def _check_played(path: Path, cas: vcr.cassette.Cassette) -> None:
    unplayed = [i for i in range(len(cas.data)) if cas.play_counts[i] == 0]
    if unplayed:
        described = ", ".join(f"#{i} {cas.data[i][0].method} {cas.data[i][0].path}" for i in unplayed)
        raise AssertionError(
            f"{path.relative_to(CASSETTE_ROOT.parent)} played {cas.play_count}/{len(cas.data)} interactions; "
            f"unplayed: {described}"
        )


def _check_written(path: Path) -> None:
    found = find_key_shaped(path.read_text(encoding="utf-8"))
    if found:
        path.unlink()
        raise AssertionError(f"{path} held key-shaped text {found[:3]!r}: deleted, fix the scrubbing")


@contextlib.contextmanager
def _use(
    provider: str,
    origin: Origin,
    name: str,
    handler: Callable[[httpx.Request], Any] | None,
    transport: Any,
    allow_unplayed: bool,
) -> Iterator[tuple[Any, bool]]:
    path = cassette_path(provider, origin, name)
    if origin == "live" and (handler is not None or transport is not None):
        raise ValueError("a live cassette records the real vendor: no handler or transport")
    record = recording(origin) and (origin == "live" or handler is not None or transport is not None)
    if record:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        real = transport if transport is not None else (httpx.MockTransport(handler) if handler else None)
        with make_vcr("all").use_cassette(str(path)):
            yield real, True
        if not path.exists():
            raise AssertionError(f"recording {path} captured no request")
        _check_written(path)
        return
    if not path.exists() and origin == "live":
        import pytest

        pytest.skip(f"no live cassette {path.name} yet: record it with {RECORD_ENV}=live and the vendor's key")
    if not path.exists():
        raise AssertionError(
            f"no cassette {path.relative_to(CASSETTE_ROOT.parent)}; record it with {RECORD_ENV}={origin} "
            "(see cassettes/README.md)"
        )
    with make_vcr("none").use_cassette(str(path)) as cas:
        yield httpx.MockTransport(_refuse_network), False
    if not allow_unplayed:
        _check_played(path, cas)


@contextlib.contextmanager
def cassette(
    provider: str,
    origin: Origin,
    name: str,
    *,
    handler: Callable[[httpx.Request], httpx.Response] | None = None,
    transport: httpx.BaseTransport | None = None,
    allow_unplayed: bool = False,
) -> Iterator[httpx.Client]:
    """An ``httpx.Client`` replaying ``cassettes/<provider>/<origin>/<name>.yaml``, or recording it.

    Recording happens only when ``IDEOCHAR_RECORD`` names the origin: docs/emulator cassettes through
    ``handler``/``transport``, live ones through the real network. Replaying never reaches a transport.
    """
    with (
        _use(provider, origin, name, handler, transport, allow_unplayed) as (real, _),
        httpx.Client(transport=real) as http,
    ):
        yield http


@contextlib.asynccontextmanager
async def acassette(
    provider: str,
    origin: Origin,
    name: str,
    *,
    handler: Callable[[httpx.Request], Any] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    allow_unplayed: bool = False,
) -> AsyncIterator[httpx.AsyncClient]:
    """The async twin of :func:`cassette`: an ``httpx.AsyncClient`` on the same cassette."""
    with _use(provider, origin, name, handler, transport, allow_unplayed) as (real, _):
        async with httpx.AsyncClient(transport=real) as http:
            yield http


# -- key-shaped text -------------------------------------------------------------------------------

#: Shapes of vendor credentials. A cassette matching any of these fails tests/test_cassettes_scrubbed.py.
KEY_PATTERNS: dict[str, re.Pattern[str]] = {
    "canary key": re.compile(r"canary-KEY-[0-9a-f]{6,}|5f3a9c1e7b2d4068a1c3e5f7|canary-KEY"),
    "Key auth value": re.compile(r"\bKey [A-Za-z0-9_\-]{6,}"),
    "Bearer token": re.compile(r"\bBearer [A-Za-z0-9._~+/\-]{8,}"),
    "fal key id:secret": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{16,}"),
    "Segmind key": re.compile(r"\bSG_[0-9a-fA-F]{16}\b"),
    "Replicate token": re.compile(r"\br8_[A-Za-z0-9]{16,}"),
    "auth header value": re.compile(
        r"(?im)^[ \t]*['\"]?(?:authorization|x-api-key|api-key|cookie)['\"]?[ \t]*:[ \t]*"
        r"(?:\n[ \t]*-[ \t]*)?['\"]?(?!REDACTED\b|(?:Key |Bearer )?<[A-Z_]+>)[^\s\[\]{}'\"]"
    ),
}


def find_key_shaped(text: str) -> list[str]:
    """Every key-shaped fragment in ``text`` (labelled, truncated), plus any vendor key set in the env."""
    found = [f"{label}: {m.group(0)[:24]}" for label, pattern in KEY_PATTERNS.items() for m in pattern.finditer(text)]
    found += [f"{placeholder} value" for placeholder, value in _key_values() if value in text]
    return found

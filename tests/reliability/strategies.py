"""Hypothesis strategies for what a hostile or broken vendor can send back.

A fuzzed answer is built from the *valid* answer for the step (so the exchange gets deep enough to
meet the fuzz at every step: submit, poll, stream, result, download) and then, with decreasing
probability, left alone, mutated (keys dropped, types changed, URLs swapped for traps), given a
surprising status or headers, replaced by garbage, cut short, or replaced by a transport failure.
Hypothesis shrinks integers to 0, and choice 0 is always "the valid answer": a failing example
shrinks to the one step that broke.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import strategies as st

from conftest import CANARY_KEY, make_image

PNG = make_image(24, 16, "PNG")
JPEG = make_image(24, 16, "JPEG")
#: Strings a vendor might put where a URL belongs, to lure the client somewhere it must not go.
TRAP_URLS = (
    "",
    " ",
    "file:///etc/passwd",
    "ftp://example.com/x.png",
    "javascript:alert(1)",
    "http://169.254.169.254/latest/meta-data/",
    "https://evil.example/steal",
    "//evil.example/x",
    "../../../../etc/passwd",
    "/absolute/path.png",
    "data:image/png;base64,!!!!",
    "data:text/html;base64,PGgxPg==",
    "data:image/png;base64," + "iVBORw0KGgo=",
    "https://user:pass@evil.example:99999/x",
    "http://[::1",
    "https://example.com/" + "a" * 5000,
    # Lookalikes of the vendors' own hosts: the key must not follow them.
    "https://queue.fal.run:99999/x",
    "https://fal.run.evil.example/x",
    "https://evilfal.run/x",
    "https://api.segmind.com.evil.example/x",
    "https://api.replicate.com@evil.example/v1/predictions/x",
    "http://api.replicate.com/v1/predictions/x",
    "https://api.ideogram.ai.evil.example/x",
    "http://[::1]:8080/x",
    "\x00\n\r",
    CANARY_KEY,
)
#: Strings a vendor might put where an id or a file name belongs: traversal, odd characters, the key.
TRAP_IDS = (
    "../../evil",
    "/etc/passwd",
    "..",
    "a/b",
    "a b",
    "é",
    "x" * 300,
    "C:\\Windows\\evil.png",
    "\x00",
    CANARY_KEY,
)
INTERESTING_STATUS = (
    200,
    201,
    202,
    204,
    301,
    302,
    304,
    400,
    401,
    402,
    403,
    404,
    408,
    409,
    410,
    413,
    415,
    422,
    429,
    451,
    500,
    502,
    503,
    504,
    520,
    524,
    599,
)
CONTENT_TYPES = (
    "application/json",
    "text/html",
    "text/plain",
    "image/png",
    "image/jpeg",
    "image/webp",
    "application/octet-stream",
    "text/event-stream",
    "application/problem+json",
    "",
    "image/",
    "application/json; charset=utf-16",
    "multipart/form-data",
)
HEADER_VALUES = (
    "0",
    "-1",
    "1",
    "2.5",
    "1e400",
    "NaN",
    "inf",
    "abc",
    "",
    " ",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "2999-01-01T00:00:00Z",
    "99999999999999999999",
    CANARY_KEY,
    "0x10",
)
FUZZED_HEADERS = (
    "retry-after",
    "retry-after-ms",
    "x-request-id",
    "x-fal-request-id",
    "x-seed-value",
    "x-cost",
    "x-remaining-credits",
    "x-generation-time",
    "x-rate-limit-reset-at-utc",
    "x-fal-error-type",
    "x-fal-retryable",
    "location",
    "content-type",
)
#: Transport failures a real network produces, by whether the request can have reached the server.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
SENT = (
    httpx.ReadTimeout,
    httpx.ReadError,
    httpx.RemoteProtocolError,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.LocalProtocolError,
    httpx.NetworkError,
)

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(TRAP_URLS)
)
any_json = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` with some of its parts dropped, retyped or replaced (choice 0: unchanged)."""
    choice = draw(st.integers(0, 9))
    if isinstance(value, str) and value.startswith(("http", "data:")):
        # A URL is where a lie does most harm (where the key or the client goes): traps are likely.
        return value if choice <= 3 else draw(st.sampled_from(TRAP_URLS)) if choice <= 8 else draw(any_json)
    if choice <= 5 and isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            action = draw(st.integers(0, 5))
            if action == 5:
                continue  # dropped
            out[key] = draw(mutated(item, depth + 1)) if action >= 3 else item
        if draw(st.integers(0, 4)) == 4:
            out[draw(st.sampled_from([*value, "extra"]))] = draw(any_json)
        return out
    if choice <= 5 and isinstance(value, list):
        items = [draw(mutated(item, depth + 1)) for item in value]
        extra = draw(st.integers(0, 6))
        if extra == 5:
            return []
        if extra == 6:
            return items * 3
        return items
    if choice <= 5:
        return value
    if choice <= 7 and isinstance(value, str):
        return draw(st.sampled_from(TRAP_IDS))
    if choice == 8 and isinstance(value, (int, float)) and not isinstance(value, bool):
        return draw(st.sampled_from([-1, 0, 2**63, 1.5, "7", None, [value]]))
    return draw(any_json)


def sse_body(events: Any) -> bytes:
    """A text/event-stream body: one ``data:`` line per event; strings go as they are (comments, junk)."""
    if not isinstance(events, (list, tuple)):
        events = [events]
    lines = []
    for event in events:
        text = event if isinstance(event, str) else json.dumps(event, allow_nan=True)
        lines.append(
            text if text.startswith((":", "event:", "id:", "retry:", "data:")) else "data: " + text.replace("\n", " ")
        )
    return ("\n\n".join(lines) + "\n\n").encode()


def to_json_bytes(value: Any) -> bytes:
    """JSON as a vendor's server might write it: NaN and Infinity included (Python writes them)."""
    return json.dumps(value, allow_nan=True).encode()


class FailingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends ``head`` and then the connection drops (reset mid-body)."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        if self.head:
            yield self.head
        raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> Any:
        if self.head:
            yield self.head
        raise httpx.ReadError("connection reset by peer")


@dataclass(frozen=True)
class Valid:
    """The valid answer for one step, as data (so it can be mutated)."""

    status: int = 200
    json: Any = None
    content: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    sse: tuple[Any, ...] | None = None
    """Server-sent events: each a JSON document sent as one ``data:`` line (a str is sent as is)."""

    def body(self) -> bytes:
        if self.sse is not None:
            return sse_body(self.sse)
        return to_json_bytes(self.json) if self.json is not None else self.content

    def response(self) -> httpx.Response:
        headers = list(self.headers)
        if self.sse is not None:
            return httpx.Response(
                self.status, headers=[("content-type", "text/event-stream"), *headers], content=self.body()
            )
        if self.json is not None:
            return httpx.Response(
                self.status, headers=[("content-type", "application/json"), *headers], content=to_json_bytes(self.json)
            )
        return httpx.Response(self.status, headers=headers, content=self.content)


@dataclass(frozen=True)
class Outcome:
    """What the fake network does with one request."""

    response: httpx.Response | None = None
    raises: BaseException | None = None
    mode: str = "valid"

    @property
    def reached_server(self) -> bool:
        """False only for failures that prove the request never left (connect errors)."""
        return not isinstance(self.raises, NOT_SENT)


@st.composite
def fuzzed_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    names = draw(st.lists(st.sampled_from(FUZZED_HEADERS), max_size=3, unique=True))
    return [
        (
            name,
            draw(
                st.sampled_from(HEADER_VALUES)
                | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
            ),
        )
        for name in names
    ]


def _cut(data: bytes, draw: st.DrawFn) -> bytes:
    if not data:
        return data
    return data[: draw(st.integers(0, max(0, len(data) - 1)))]


@st.composite
def outcome(draw: st.DrawFn, valid: Valid) -> Outcome:
    """One fuzzed answer to a request whose valid answer is ``valid``. Choice 0 is the valid answer."""
    mode = draw(st.integers(0, 99))
    headers = list(valid.headers)
    if mode < 45:
        return Outcome(valid.response(), mode="valid")
    if mode < 60:  # the right shape, bent
        if valid.sse is not None:
            events = draw(mutated(list(valid.sse)))
            if draw(st.booleans()):
                events = [
                    *(events if isinstance(events, list) else [events]),
                    *draw(
                        st.lists(
                            st.sampled_from([": keep-alive", "event: log", "data: {", "retry: x", "data:", "\x00"]),
                            max_size=3,
                        )
                    ),
                ]
            return Outcome(
                Valid(
                    valid.status, sse=tuple(events) if isinstance(events, list) else (events,), headers=valid.headers
                ).response(),
                mode="mutated_events",
            )
        if valid.json is not None:
            bent = draw(mutated(valid.json))
            return Outcome(Valid(valid.status, bent, b"", valid.headers).response(), mode="mutated_json")
        kind = draw(st.sampled_from(["truncated", "flipped", "other_image", "empty"]))
        data = valid.content
        if kind == "truncated":
            data = _cut(data, draw)
        elif kind == "flipped" and data:
            index = draw(st.integers(0, len(data) - 1))
            data = data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]
        elif kind == "other_image":
            data = JPEG if data[:4] == PNG[:4] else PNG
        else:
            data = b""
        return Outcome(httpx.Response(valid.status, headers=headers, content=data), mode=f"bytes_{kind}")
    if mode < 70:  # surprising headers on the valid body
        extra = draw(fuzzed_headers())
        names = {name for name, _ in extra}
        kept = [(k, v) for k, v in headers if k not in names]
        body = valid.body()
        if valid.json is not None or valid.sse is not None:
            ctype = "application/json" if valid.json is not None else "text/event-stream"
            kept = [("content-type", ctype), *kept] if "content-type" not in names else kept
        return Outcome(httpx.Response(valid.status, headers=kept + extra, content=body), mode="headers")
    if mode < 80:  # a surprising status, with the valid body or an error-looking one
        status = draw(st.sampled_from(INTERESTING_STATUS) | st.integers(100, 599))
        body = draw(
            st.sampled_from(
                [
                    valid.body(),
                    to_json_bytes({"detail": "Internal Server Error"}),
                    to_json_bytes({"error": "bad", "message": f"invalid key {CANARY_KEY}"}),
                    b"<html><body>502 Bad Gateway</body></html>",
                    b"",
                ]
            )
        )
        extra = draw(fuzzed_headers())
        ctype = draw(st.sampled_from(CONTENT_TYPES))
        return Outcome(httpx.Response(status, headers=[("content-type", ctype), *extra], content=body), mode="status")
    if mode < 88:  # garbage
        ctype = draw(st.sampled_from(CONTENT_TYPES))
        body = draw(
            st.binary(max_size=64)
            | any_json.map(to_json_bytes)
            | st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # an image header and nothing more
            | st.just(b"\xff\xd8\xff" + b"junk")
            | st.just(b"RIFF\x00\x00\x00\x00WEBP")
            | st.just(b'{"images": [')
        )
        return Outcome(httpx.Response(valid.status, headers=[("content-type", ctype)], content=body), mode="garbage")
    if mode < 92:  # reset mid-body
        head = _cut(valid.body(), draw)
        response = httpx.Response(valid.status, headers=headers, stream=FailingStream(head))
        return Outcome(response, mode="reset_mid_body")
    kind = draw(st.sampled_from(NOT_SENT + SENT))
    return Outcome(raises=kind(f"fuzzed {kind.__name__}"), mode=f"raise_{kind.__name__}")

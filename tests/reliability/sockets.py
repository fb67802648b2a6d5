"""Raw loopback servers for faults no well-behaved HTTP server produces: a closed port (connection
refused), a server that accepts and never answers (hang), one that sends a body a byte at a time
forever (a trickle, which defeats a per-read timeout), and one that resets the connection mid-body.

Each runs in a daemon thread on 127.0.0.1 and stops when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

Behaviour = Callable[[socket.socket], None]


@contextlib.contextmanager
def held_closed_port() -> Iterator[int]:
    """A port bound but never listening, kept for the block: connecting is refused, and no other process
    (a test's Redis, another worker's server) can take it meanwhile, as it could a released one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(behaviour: Behaviour) -> Iterator[str]:
    """A server on a free port whose every connection is handled by ``behaviour``; yields its root URL."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()
    connections: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            connections.append(conn)
            threading.Thread(target=_handle, args=(behaviour, conn, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.close()


def _handle(behaviour: Behaviour, conn: socket.socket, stop: threading.Event) -> None:
    with contextlib.suppress(OSError):
        conn.settimeout(30)
        behaviour(conn)


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def hang(seconds: float = 60.0) -> Behaviour:
    """Read the request, then say nothing."""

    def behaviour(conn: socket.socket) -> None:
        _read_head(conn)
        time.sleep(seconds)

    return behaviour


def trickle(head: bytes, *, interval: float = 0.1, seconds: float = 60.0, content_type: str = "image/png") -> Behaviour:
    """Answer 200 with ``head`` and then one byte every ``interval`` (never finishing within ``seconds``)."""

    def behaviour(conn: socket.socket) -> None:
        _read_head(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + content_type.encode()
            + b"\r\nContent-Length: 100000000\r\n\r\n"
            + head
        )
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(interval)
            conn.sendall(b"\x00")

    return behaviour


def reset_mid_body(head: bytes, *, content_type: str = "image/png") -> Behaviour:
    """Announce a long body, send ``head``, then reset the connection (RST)."""

    def behaviour(conn: socket.socket) -> None:
        _read_head(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() + b"\r\nContent-Length: 100000\r\n\r\n" + head
        )
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

    return behaviour


def answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> Behaviour:
    """A plain, complete answer."""

    def behaviour(conn: socket.socket) -> None:
        _read_head(conn)
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return behaviour


def http(handler: Callable[[Any], Any]) -> Behaviour:
    """A minimal HTTP/1.1 server: one request per connection, answered by ``handler(httpx.Request)``."""
    import httpx

    def behaviour(conn: socket.socket) -> None:
        head = _read_head(conn)
        header_block, _, rest = head.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [tuple(line.split(":", 1)) for line in lines[1:] if ":" in line]
        length = int(next((v for k, v in headers if k.strip().lower() == "content-length"), "0") or 0)
        body = rest
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        host = next((v.strip() for k, v in headers if k.strip().lower() == "host"), "127.0.0.1")
        request = httpx.Request(
            method, f"http://{host}{target}", headers=[(k.strip(), v.strip()) for k, v in headers], content=body
        )
        response = handler(request)
        payload = response.content
        out = [f"HTTP/1.1 {response.status_code} X", f"Content-Length: {len(payload)}", "Connection: close"]
        out += [f"{k}: {v}" for k, v in response.headers.items() if k.lower() not in ("content-length", "connection")]
        conn.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + payload)

    return behaviour

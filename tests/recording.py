"""A real HTTP server on loopback that records every request it gets: the place a key must never reach.

Tests point a base URL (a found file's, an overridden one) at it and assert what arrived, if anything.
It answers every request with one status and an empty body, so a client that does reach it fails fast.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    url: str = ""
    """The server's root, ``http://127.0.0.1:PORT``."""
    requests: list[Recorded] = field(default_factory=list)

    def everything(self) -> str:
        """Every request line, header and body as text, to search for a key."""
        return "\n".join(f"{r.method} {r.path} {r.headers} {r.body.decode('utf-8', 'replace')}" for r in self.requests)


@contextlib.contextmanager
def recording_server(status: int = 503) -> Iterator[Recorder]:
    """Serve on a free loopback port until the block ends; yields the :class:`Recorder`."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            recorder.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _record

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)

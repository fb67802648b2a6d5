"""The benchmarks' servers, in a process of their own: the emulator, plus primaries that fail on purpose.

Started by :class:`_support.EmulatorProcess`. Prints one JSON line with the URLs, then serves until its
stdin closes::

    {"emulator": "http://127.0.0.1:PORT", "status_503": "...", "hang": "...", "refused": "..."}

* ``status_503`` answers every request with 503 (after reading it whole), keeping the connection.
* ``hang`` accepts, reads, and never answers.
* ``refused`` is a loopback port nobody listens on (the connection is refused at once).

Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import threading
from typing import Any

_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 33\r\n"
    b"retry-after: 30\r\n\r\n"
    b'{"detail": "Service Unavailable"}'
)


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one HTTP/1.1 request (headers, then a Content-Length or chunked body); False at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return False
    lines = head.decode("latin-1").lower().split("\r\n")
    length, chunked = 0, False
    for line in lines:
        if line.startswith("content-length:"):
            length = int(line.split(":", 1)[1])
        elif line.startswith("transfer-encoding:") and "chunked" in line:
            chunked = True
    try:
        if chunked:
            await reader.readuntil(b"0\r\n\r\n")
        elif length:
            await reader.readexactly(length)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return False
    return True


async def _answer_503(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while await _read_request(reader):
            writer.write(_503)
            await writer.drain()
    writer.close()


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
    writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fault_servers(ready: threading.Event, urls: dict[str, str]) -> None:
    async def main() -> None:
        bad = await asyncio.start_server(_answer_503, "127.0.0.1", 0, limit=1 << 20)
        hang = await asyncio.start_server(_hang, "127.0.0.1", 0)
        urls["status_503"] = f"http://127.0.0.1:{bad.sockets[0].getsockname()[1]}"
        urls["hang"] = f"http://127.0.0.1:{hang.sockets[0].getsockname()[1]}"
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def _start_emulator(model_seconds: float) -> Any:
    from ideochar.emulator.server import BackgroundServer

    return BackgroundServer(model_seconds=model_seconds).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-seconds", type=float, default=0.0)
    parser.add_argument(
        "--segmind-credits",
        help="USD each emulated Segmind key starts with (default $100: a long batch runs out and the "
        "batch rightly stops sending to Segmind, which is not what a throughput figure measures)",
    )
    args = parser.parse_args()
    if args.segmind_credits is not None:
        from decimal import Decimal

        import ideochar_segmind.emulator

        ideochar_segmind.emulator.STARTING_CREDITS = Decimal(args.segmind_credits)
    urls: dict[str, str] = {"refused": f"http://127.0.0.1:{_free_port()}"}
    ready = threading.Event()
    threading.Thread(target=_fault_servers, args=(ready, urls), daemon=True).start()
    ready.wait(10)
    server = _start_emulator(args.model_seconds)
    urls["emulator"] = server.url.rstrip("/")
    print(json.dumps(urls), flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


if __name__ == "__main__":
    main()

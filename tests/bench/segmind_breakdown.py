"""Where a Segmind v1 call's client time goes, step by step, next to raw httpx's.

Figure 2 measures Segmind's overhead over raw httpx; Segmind v1 is one request, so the whole job's
local work lands on it. This script shows that work's parts. The vendor is an ``httpx.MockTransport``
answering at once with a 1024x1024 JPEG, so only the client's own work is timed; each step is timed
by wrapping the function that does it (the wrappers add a little to every row). ``bench_overhead.py``
puts its figures in the report (figure 2); on its own::

    .venv/bin/python tests/bench/segmind_breakdown.py [calls]
"""

from __future__ import annotations

import collections
import functools
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _raw import segmind_generate
from bench_overhead import PROMPT, _reference
from PIL import Image

import ideochar
import ideochar.exchange
import ideochar_segmind.provider

ROOT = "http://segmind.invalid"


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), (100, 120, 140)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def measure(calls: int = 2000) -> dict[str, Any]:
    """Microseconds per call: ``ideochar`` and ``raw`` in all, ``steps`` of ideochar's, ``raw_send``."""
    jpeg = _jpeg()

    def vendor(request: httpx.Request) -> httpx.Response:
        request.read()
        headers = {"content-type": "image/jpeg", "x-cost": "0.125", "x-seed-value": "42", "x-request-id": "r1"}
        return httpx.Response(200, content=jpeg, headers=headers)

    spent: collections.Counter[str] = collections.Counter()

    def timed(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start

        setattr(owner, name, wrapper)

    http = httpx.Client(transport=httpx.MockTransport(vendor))
    timed(http, "send", "HTTP exchange (httpx send, body streamed)")
    timed(ideochar_segmind.provider, "_post", "multipart body and request built")
    timed(ideochar_segmind.provider, "image_from_bytes", "answer checked (format, size)")
    timed(ideochar.exchange, "_finished", "answer body kept")
    with (
        tempfile.TemporaryDirectory() as folder,
        ideochar.Client(["segmind"], emulator=ROOT, journal=False, http=http) as client,
    ):
        reference = _reference(Path(folder))
        timed(client, "build_request", "request built and validated")
        timed(client, "plan", "planned and quoted")
        for _ in range(50):
            client.generate(PROMPT, reference, aspect_ratio="1:1")
            segmind_generate(http, ROOT, reference, PROMPT)
        spent.clear()
        start = time.perf_counter()
        for _ in range(calls):
            client.generate(PROMPT, reference, aspect_ratio="1:1")
        ours = (time.perf_counter() - start) / calls
        steps = dict(spent)
        spent.clear()
        start = time.perf_counter()
        for _ in range(calls):
            segmind_generate(http, ROOT, reference, PROMPT)
        raw = (time.perf_counter() - start) / calls
        raw_send = spent["HTTP exchange (httpx send, body streamed)"] / calls
    rest = ours - sum(steps.values()) / calls
    return {
        "calls": calls,
        "ideochar": ours * 1e6,
        "raw": raw * 1e6,
        "raw_send": raw_send * 1e6,
        "steps": {label: seconds / calls * 1e6 for label, seconds in steps.items()}
        | {"the rest: routing, events, result records": rest * 1e6},
    }


def main() -> None:
    found = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
    print(f"ideochar Segmind generate: {found['ideochar']:7.0f} us per call (raw httpx: {found['raw']:.0f} us)")
    for label, micros in sorted(found["steps"].items(), key=lambda item: -item[1]):
        print(f"  {label:45s} {micros:7.0f} us")
    print(f"raw httpx: {found['raw_send']:.0f} us in send, {found['raw'] - found['raw_send']:.0f} us building the body")


if __name__ == "__main__":
    main()

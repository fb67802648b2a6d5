"""What the benchmarks rely on, checked on every ``make test`` (fast, no bench extra needed).

Each of these was found by a benchmark over real loopback sockets, where in-memory transports hide it:
a streamed upload sent without a Host header, a status stream holding its connection while the job's
next requests waited for the pool, the emulator answering every keep-alive request ~40 ms late, and
the completion time the completion benchmark reads back from the emulator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import ideochar
from ideochar.emulator.server import BackgroundServer

pytestmark = pytest.mark.socket


@pytest.fixture(scope="module")
def emulator() -> Iterator[BackgroundServer]:
    with BackgroundServer(model_seconds=0.05) as server:
        yield server


@pytest.fixture
def reference(tmp_path: Path, png: bytes) -> Path:
    path = tmp_path / "reference.png"
    path.write_bytes(png)
    return path


def test_streamed_uploads_reach_a_real_socket_with_a_host_header(emulator: BackgroundServer, reference: Path) -> None:
    # Segmind's multipart body and fal's data-URI body are both built with httpx's ``stream=``.
    for provider in ("segmind", "fal"):
        with ideochar.Client([provider], emulator=emulator.url, journal=False) as client:
            result = client.generate("a lighthouse keeper", reference, aspect_ratio="1:1")
        assert result.image.data


def test_a_status_stream_gives_back_its_connection_before_the_next_request(
    emulator: BackgroundServer, reference: Path
) -> None:
    # One connection in the pool: the result and image GETs can only run if the stream released it.
    http = httpx.Client(limits=httpx.Limits(max_connections=1), timeout=httpx.Timeout(10, pool=2))
    with ideochar.Client(
        ["fal"], emulator=emulator.url, journal=False, http=http, options={"fal": {"image_transport": "data_uri"}}
    ) as client:
        result = client.generate("a lighthouse keeper", reference, aspect_ratio="1:1")
    assert result.vendor_metadata["status_via"] == "stream"
    http.close()


def test_the_emulator_answers_keep_alive_requests_without_delayed_ack_stalls(emulator: BackgroundServer) -> None:
    with httpx.Client() as http:
        http.get(f"{emulator.url}/_emulator/health")
        started = time.perf_counter()
        for _ in range(5):
            http.get(f"{emulator.url}/_emulator/health")
        per_request = (time.perf_counter() - started) / 5
    assert per_request < 0.02  # ~0.04 s each when TCP_NODELAY is missing on the server's sockets


def test_the_emulator_reports_when_a_queue_job_was_marked_done(emulator: BackgroundServer, reference: Path) -> None:
    with ideochar.Client(
        ["fal"], emulator=emulator.url, journal=False, options={"fal": {"image_transport": "data_uri"}}
    ) as client:
        result = client.generate("a lighthouse keeper", reference, aspect_ratio="1:1")
    returned = time.time()
    job = httpx.get(f"{emulator.url}/_emulator/jobs/fal/{result.vendor_request_id}").json()
    assert job["phase"] == "done"
    assert job["submitted_at"] <= job["finished_at"] <= returned
    assert httpx.get(f"{emulator.url}/_emulator/jobs/fal/no-such-job").status_code == 404

"""Ideogram and Replicate routes over a real loopback socket: what an HTTP client outside the process sees.

In-process tests cannot show a cut TCP connection or a server's own HTTP/1.1 checks; these can.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from vendors_support import image_bytes, pixel_size

from ideochar.emulator.server import BackgroundServer

pytestmark = pytest.mark.socket

REF = image_bytes(40, 40, "PNG", "blue")


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer() as running:
        yield running


@pytest.fixture
def http(server: BackgroundServer) -> Iterator[httpx.Client]:
    server.state.reset()
    with httpx.Client(timeout=10) as client:
        yield client


def test_ideogram_generate_and_its_image_over_a_socket(server: BackgroundServer, http: httpx.Client) -> None:
    api = server.base_urls()["ideogram"]["api"]
    response = http.post(
        f"{api}/v1/ideogram-v3/generate",
        headers={"Api-Key": "org-key"},
        data={"prompt": "a knight", "resolution": "832x1248"},
        files={"character_reference_images": ("me.png", REF, "image/png")},
    )
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert pixel_size(http.get(item["url"]).content) == (832, 1248)
    assert server.state.ledger.count("ideogram") == 1


def test_ideogram_dropped_connection_is_a_broken_connection_on_a_socket(
    server: BackgroundServer, http: httpx.Client
) -> None:
    server.state.set_profile({"ideogram": [{"route": "generate", "kind": "drop_after_admit", "times": 1}]})
    api = server.base_urls()["ideogram"]["api"]
    with pytest.raises(httpx.TransportError):
        http.post(
            f"{api}/v1/ideogram-v3/generate",
            headers={"Api-Key": "org-key"},
            data={"prompt": "a knight"},
            files={"character_reference_images": ("me.png", REF, "image/png")},
        )
    assert server.state.ledger.count("ideogram") == 1


def test_replicate_prefer_wait_and_polling_over_a_socket(server: BackgroundServer, http: httpx.Client) -> None:
    api = server.base_urls()["replicate"]["api"]
    auth = {"Authorization": "Bearer r8_socket"}
    body = {
        "input": {
            "prompt": "a knight",
            "aspect_ratio": "3:2",
            "character_reference_image": "data:image/png;base64," + base64.b64encode(REF).decode(),
        }
    }
    done = http.post(
        f"{api}/v1/models/ideogram-ai/ideogram-character/predictions", json=body, headers={**auth, "Prefer": "wait=5"}
    )
    assert done.status_code == 201 and done.json()["status"] == "succeeded"
    polled = http.get(done.json()["urls"]["get"], headers=auth).json()
    assert polled["output"] == done.json()["output"]
    assert pixel_size(http.get(polled["output"]).content) == (1248, 832)
    assert server.state.ledger.count("replicate") == 1

"""examples/webhook-service, end to end on loopback: the service (uvicorn, a free port) and the emulator
(another), a user posting a prompt and a photo, the vendor calling the service back, the user fetching
the images."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from PIL import Image
from webhook_support import close_client, serving, webhook_client

from conftest import make_image
from ideochar import Client
from ideochar.emulator import testing

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webhook-service"


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import webhook_service

    return webhook_service


@pytest.fixture(params=["fal", "replicate"])
def running(request: pytest.FixtureRequest, service: ModuleType, tmp_path: Path) -> Iterator[tuple[str, Any, str]]:
    """(the service's root URL, the emulator, the vendor)."""
    vendor = request.param
    clients: list[Client] = []

    def build(root: str) -> Any:
        client = webhook_client(emulator.url, f"{root}/hooks/", [vendor], journal=tmp_path / "journal.sqlite3",
                                accept_inputs={"bytes"})  # fmt: skip
        clients.append(client)
        return service.create_app(client)

    with testing.running_emulator() as emulator, serving(factory=build) as root:
        yield root, emulator, vendor
    for client in clients:
        close_client(client)


def test_a_user_gets_a_job_id_at_once_and_the_images_once_the_vendor_called_back(running: Any) -> None:
    root, emulator, vendor = running
    with httpx.Client(base_url=root, timeout=10) as http:
        started = time.monotonic()
        posted = http.post(
            "/jobs", data={"prompt": "a knight in the rain"}, files={"photo": ("me.png", make_image(), "image/png")}
        )
        assert posted.status_code == 202, posted.text
        assert time.monotonic() - started < 5
        job_id = posted.json()["job_id"]
        assert posted.json()["status_url"] == f"/jobs/{job_id}"
        job = wait_for(http, job_id)
        assert job["status"] == "done" and job["error"] is None and len(job["images"]) == 1
        picture = http.get(job["images"][0])
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(picture.content)).size == (1024, 1024)
    delivered = [t for t in emulator.state.callbacks.tries(vendor) if t.delivered]
    assert [t.status for t in delivered] == [202]  # the callback finished it (the sweep's deadline is minutes)
    assert testing.billed(emulator, vendor) == 1


def test_what_the_service_refuses(running: Any) -> None:
    root, emulator, _ = running
    with httpx.Client(base_url=root, timeout=10) as http:
        not_an_image = http.post(
            "/jobs", data={"prompt": "p"}, files={"photo": ("x.png", b"not an image", "image/png")}
        )
        no_prompt = http.post("/jobs", files={"photo": ("me.png", make_image(), "image/png")})
        unknown = http.get("/jobs/0123456789abcdef")
        forged = http.post("/hooks/", json={"request_id": "x", "status": "OK"})
    assert (not_an_image.status_code, no_prompt.status_code, unknown.status_code) == (422, 422, 404)
    assert forged.status_code == 400  # no signature: not a vendor's callback
    assert testing.billed(emulator) == 0


def wait_for(http: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        if job["status"] != "pending":
            return job
        assert time.monotonic() < deadline, "the job was never completed"
        time.sleep(0.05)

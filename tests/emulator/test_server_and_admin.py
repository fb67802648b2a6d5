"""The emulator on a loopback socket, driven by ideochar's own clients; the admin routes and test helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ideochar import AsyncClient, Client, OutcomeUnknown
from ideochar.emulator import create_app, testing
from ideochar.emulator.server import BackgroundServer

from .support import FAL_GENERATE, FAL_KEY, fal_body, image, pixel_size

pytestmark = pytest.mark.socket


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "face.png"
    path.write_bytes(image(256, 256))
    return path


def test_the_background_server_binds_loopback_and_serves_every_vendor() -> None:
    with BackgroundServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        health = httpx.get(f"{server.url}/_emulator/health").json()
    assert health["status"] == "ok"
    assert {"fal", "segmind"} <= set(health["vendors"])
    assert health["vendors"]["fal"] == {
        "queue": f"{server.url}/fal",
        "run": f"{server.url}/fal/run",
        "rest": f"{server.url}/fal/rest",
        "cdn": f"{server.url}/fal/cdn",
        "platform": f"{server.url}/fal/platform",
    }
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/_emulator/health")


@pytest.mark.parametrize(
    ("provider", "options"), [("fal", {}), ("segmind", {"mode": "v1"}), ("segmind", {"mode": "v2"})]
)
def test_a_client_through_the_socket_is_charged_once(reference: Path, provider: str, options: dict[str, Any]) -> None:
    with testing.running_emulator(model_seconds=0.05) as server:
        with Client([provider], emulator=server.url, options={provider: options}, journal=False) as client:
            result = client.generate("a knight", reference, aspect_ratio="16:9", seed=3)
        assert result.provider == provider
        assert (result.images[0].width, result.images[0].height) == (1312, 736)
        assert testing.billed(server, provider) == 1


def test_a_dropped_submit_is_an_unknown_outcome_and_is_not_sent_again(reference: Path) -> None:
    with testing.running_emulator() as server:
        testing.set_faults(server, {"fal": [{"route": "submit", "kind": "drop_after_admit"}]})
        with Client(["fal"], emulator=server.url, journal=False) as client, pytest.raises(OutcomeUnknown):
            client.generate("a knight", reference)
        assert testing.billed(server, "fal") == 1, "the admitted POST was not repeated"


@pytest.mark.anyio
async def test_the_async_client_runs_in_process(reference: Path) -> None:
    app = testing.emulator_app(vendors=["fal"])
    async with AsyncClient(
        ["fal"], http=testing.async_client(app), base_urls=testing.base_urls(app), keys={"fal": "k"}, journal=False
    ) as client:
        result = await client.generate("a knight", reference, resolution="832x1248", seed=1)
    assert pixel_size(result.images[0].data) == (832, 1248)
    assert testing.billed(app, "fal") == 1


def test_the_sync_test_client_drives_an_app_in_process() -> None:
    app = create_app(vendors=["fal"])
    with testing.sync_client(app) as http:
        submitted = http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)
        assert submitted.status_code == 200
        assert [e.job_id for e in testing.ledger(app, "fal")] == [submitted.json()["request_id"]]


def test_the_ledger_and_reset_over_the_admin_endpoints() -> None:
    with testing.running_emulator() as server, httpx.Client(base_url=server.url) as http:
        http.post(FAL_GENERATE, json=fal_body(num_images=3), headers=FAL_KEY)
        document = http.get("/_emulator/ledger").json()
        assert document["fal"]["billed"] == 1 and document["fal"]["total_usd"] == "0.30"
        assert document["segmind"]["entries"] == []
        assert http.get("/_emulator/ledger", params={"vendor": "fal"}).json().keys() == {"fal"}
        [entry] = testing.ledger(server.url, "fal")  # the same, read as a remote client would
        assert (entry.images, str(entry.cost_usd)) == (3, "0.30")
        assert testing.billed(server.url) == 1
        http.post("/_emulator/config", json={"model_seconds": 1.5})
        assert http.get("/_emulator/health").json()["model_seconds"] == 1.5
        testing.reset(server.url)
        assert testing.ledger(server, "fal") == []


def test_a_vendor_whose_routes_fail_is_left_out_and_reported() -> None:
    from ideochar.hookspecs import hookimpl
    from ideochar.plugins import plugin_manager

    def broken(kit: Any) -> list[Any]:
        raise RuntimeError("boom")

    class Plugin:
        @hookimpl
        def ideochar_register_emulator(self, register: Any) -> None:
            register("broken", broken, {"api": "/broken"})

    app = create_app(plugin_manager(load_entrypoints=False, plugins=[Plugin()]))
    state = testing.state_of(app)
    assert state.broken == {"broken": "RuntimeError: boom"}
    assert state.vendors == {}


def test_a_route_that_chose_a_drop_may_raise_its_own_exception() -> None:
    """Vendor modules written before ConnectionDropped raise private exceptions after choose_fault."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from ideochar.hookspecs import hookimpl
    from ideochar.plugins import plugin_manager

    class Private(Exception):
        pass

    def routes(kit: Any) -> list[Any]:
        async def go(request: Any) -> Any:
            kit.admit("job-1", operation="generate", images=1, cost_usd=1)
            fault = kit.choose_fault("go")
            if fault is not None:
                raise Private("dropped")
            return JSONResponse({"ok": True})

        return [Route("/go", go, methods=["POST"])]

    class Plugin:
        @hookimpl
        def ideochar_register_emulator(self, register: Any) -> None:
            register("toy", routes, {"api": "/toy"})

    app = create_app(plugin_manager(load_entrypoints=False, plugins=[Plugin()]))
    testing.set_faults(app, {"toy": [{"route": "go", "kind": "drop_after_admit"}]})
    with testing.sync_client(app) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/toy/go")
    assert testing.billed(app, "toy") == 1


def test_serve_prints_each_vendors_base_url_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    profile = tmp_path / "faults.json"
    profile.write_text('{"fal": [{"route": "submit", "kind": "status", "status": 503}]}')
    code = f"from ideochar.emulator.server import serve; serve(port=0, profile={str(profile)!r}, model_seconds=0)"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline()]
        while "Ctrl-C" not in lines[-1]:
            lines.append(process.stdout.readline())
        url = lines[0].split()[3]
        assert url.startswith("http://127.0.0.1:")
        vendors = {line.split(":")[0].strip(): line.split(":", 1)[1].strip() for line in lines[1:-2]}
        assert vendors["fal"] == (
            f"cdn={url}/fal/cdn, platform={url}/fal/platform, queue={url}/fal, rest={url}/fal/rest, run={url}/fal/run"
        )
        assert vendors["segmind"] == f"api={url}/segmind"
        assert httpx.post(f"{url}{FAL_GENERATE}", json=fal_body(), headers=FAL_KEY).status_code == 503
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


def test_keys_are_never_kept_or_logged(canary_key: str, caplog: pytest.LogCaptureFixture) -> None:
    app = testing.emulator_app(vendors=["fal", "segmind"])
    with caplog.at_level("DEBUG"), testing.sync_client(app) as http:
        http.post(FAL_GENERATE, json=fal_body(), headers={"Authorization": f"Key {canary_key}"})
        http.post("/segmind/v1/ideogram-character", json={"prompt": "p", "character_reference_image": "https://x/y.png"},
                  headers={"x-api-key": canary_key})  # fmt: skip
        ledger = http.get("/_emulator/ledger").text
    state = testing.state_of(app)
    assert testing.billed(app) == 2
    for text in (ledger, caplog.text, repr(vars(state)), repr(state.ledger.entries())):
        assert canary_key not in text and canary_key[:12] not in text

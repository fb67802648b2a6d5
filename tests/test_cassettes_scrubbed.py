"""Every cassette is scrubbed, honest about its origin, and the recorder itself leaks nothing.

The first tests read the committed cassettes; the rest record throw-away cassettes in a temporary folder
through the same configuration (tests/vcr_support.py) the provider tests use.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image
from vcr.errors import CannotOverwriteExistingCassetteException

import vcr_support
from conftest import CANARY_KEY, make_image
from vcr_support import CASSETTE_ROOT, ORIGINS, acassette, cassette, find_key_shaped

SECRET_HALVES = (CANARY_KEY[:12], CANARY_KEY[12:], CANARY_KEY.split("-")[-1])


def _cassette_files() -> list[Path]:
    return sorted(p for p in CASSETTE_ROOT.rglob("*") if p.is_file() and p.name != "README.md")


def test_no_committed_cassette_holds_a_key_shaped_string() -> None:
    offenders = {}
    for path in _cassette_files():
        found = find_key_shaped(path.read_text(encoding="utf-8", errors="replace"))
        if found:
            offenders[str(path.relative_to(CASSETTE_ROOT))] = found[:3]
    assert offenders == {}


def test_every_cassette_names_its_provider_and_origin_in_its_path() -> None:
    misplaced = [
        str(p.relative_to(CASSETTE_ROOT))
        for p in _cassette_files()
        if len(p.relative_to(CASSETTE_ROOT).parts) < 3 or p.relative_to(CASSETTE_ROOT).parts[1] not in ORIGINS
    ]
    assert misplaced == []


@pytest.mark.parametrize(
    "text",
    [
        f"authorization: Key {CANARY_KEY}",
        "Authorization: Key 1c0ffee0-aaaa-bbbb-cccc-0123456789ab:0123456789abcdef0123456789abcdef",
        "headers:\n  authorization:\n  - Bearer r8_AbCdEfGhIjKlMnOpQrStUv",
        "x-api-key: SG_0123456789abcdef",
        "headers:\n  api-key:\n  - sk-live-something\n",
        'detail: "your token r8_0123456789abcdefghij is invalid"',
        "cookie: session=abc",
    ],
)
def test_key_patterns_catch_each_vendor_shape(text: str) -> None:
    assert find_key_shaped(text)


def test_key_patterns_leave_scrubbed_text_alone() -> None:
    clean = (
        "headers:\n  authorization:\n  - REDACTED\n  x-api-key:\n  - REDACTED\n"
        "parsed_body:\n  detail: Missing Authorization or x-api-key in header\n"
        "  access-control-allow-headers: authorization, content-type\n"
    )
    assert find_key_shaped(clean) == []


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cassettes go to a temporary folder for these tests; no vendor key variables are inherited."""
    monkeypatch.setattr(vcr_support, "CASSETTE_ROOT", tmp_path)
    for name in vcr_support.KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(vcr_support.RECORD_ENV, raising=False)
    return tmp_path


def _record(monkeypatch: pytest.MonkeyPatch, origin: str = "docs") -> None:
    monkeypatch.setenv(vcr_support.RECORD_ENV, origin)


def _replay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vcr_support.RECORD_ENV, raising=False)


def _echo(request: httpx.Request) -> httpx.Response:
    """A server that repeats every credential it was sent, the worst case for a recorder."""
    seen = {k: v for k, v in request.headers.items() if k in ("authorization", "x-api-key", "api-key")}
    return httpx.Response(
        401,
        json={"detail": f"No user found for {seen.get('authorization')}", "echo": seen},
        headers={"set-cookie": f"session={CANARY_KEY}", "x-fal-request-id": "req-1"},
    )


def _send_with_every_credential(http: httpx.Client) -> httpx.Response:
    headers = {
        "Authorization": f"Key {CANARY_KEY}",
        "x-api-key": CANARY_KEY,
        "Api-Key": CANARY_KEY,
        "Cookie": f"token={CANARY_KEY}",
    }
    http.post("https://queue.fal.run/fal-ai/ideogram/character", json={"prompt": "a"}, headers=headers)
    return http.get(
        "https://api.replicate.com/v1/predictions/abc",
        headers={"Authorization": f"Bearer {CANARY_KEY}"},
        params={"key": CANARY_KEY},
    )


def test_recording_with_the_canary_key_leaves_no_trace(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", CANARY_KEY)  # as during a live recording: echoed keys are hidden by value
    _record(monkeypatch)
    with cassette("fal", "docs", "canary", handler=_echo) as http:
        live = _send_with_every_credential(http)
    assert CANARY_KEY in live.text  # the echo did reach the code under test while recording

    text = (scratch / "fal" / "docs" / "canary.yaml").read_text()
    assert CANARY_KEY not in text
    assert not [half for half in SECRET_HALVES if half in text]
    assert find_key_shaped(text) == []
    assert "REDACTED" in text


def test_header_filtering_alone_removes_keys_sent_in_headers(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the key in the environment, only headers and the query carry it: the config still removes it."""
    _record(monkeypatch)
    with cassette("replicate", "docs", "headers", handler=lambda r: httpx.Response(200, json={"ok": True})) as http:
        _send_with_every_credential(http)
    text = (scratch / "replicate" / "docs" / "headers.yaml").read_text()
    assert CANARY_KEY not in text
    assert not [half for half in SECRET_HALVES if half in text]


def test_recording_then_replaying_plays_every_interaction(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"n": len(calls)})

    def run(http: httpx.Client) -> list[int]:
        first = http.post("https://x.test/a", json={"prompt": "p", "seed": 1}).json()["n"]
        second = http.get("https://x.test/b?logs=1").json()["n"]
        return [first, second]

    _record(monkeypatch)
    with cassette("fal", "docs", "roundtrip", handler=handler) as http:
        assert run(http) == [1, 2]
    _replay(monkeypatch)
    with cassette("fal", "docs", "roundtrip") as http:
        assert run(http) == [1, 2]
    assert calls == ["/a", "/b"]  # the replay never reached the handler


def test_json_bodies_match_regardless_of_key_order(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _record(monkeypatch)
    with cassette("fal", "docs", "order", handler=lambda r: httpx.Response(200, json={})) as http:
        http.post("https://x.test/a", content=b'{"a": 1, "b": [1, 2]}', headers={"content-type": "application/json"})
    _replay(monkeypatch)
    with cassette("fal", "docs", "order") as http:
        assert http.post("https://x.test/a", content=b'{"b":[1,2],"a":1}').status_code == 200


def test_a_changed_body_field_is_not_replayed(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _record(monkeypatch)
    with cassette("fal", "docs", "strict", handler=lambda r: httpx.Response(200, json={})) as http:
        http.post("https://x.test/a", json={"rendering_speed": "TURBO"})
    _replay(monkeypatch)
    with (
        pytest.raises(CannotOverwriteExistingCassetteException),
        cassette("fal", "docs", "strict", allow_unplayed=True) as http,
    ):
        http.post("https://x.test/a", json={"rendering_speed": "QUALITY"})


def test_unplayed_interactions_fail_the_test(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _record(monkeypatch)
    with cassette("fal", "docs", "unplayed", handler=lambda r: httpx.Response(200, json={})) as http:
        http.get("https://x.test/status")
        http.get("https://x.test/result")
    _replay(monkeypatch)
    with (
        pytest.raises(AssertionError, match=r"played 1/2 interactions; unplayed: #1 GET /result"),
        cassette("fal", "docs", "unplayed") as http,
    ):
        http.get("https://x.test/status")


def test_a_missing_cassette_fails_instead_of_reaching_the_network(scratch: Path) -> None:
    with pytest.raises(AssertionError, match="IDEOCHAR_RECORD=docs"), cassette("fal", "docs", "absent"):
        pass


def test_images_become_placeholders_and_replay_as_decodable_images(
    scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = make_image(32, 32, "PNG")
    output = make_image(300, 200, "JPEG", color="blue")
    data_uri = "data:image/png;base64," + base64.b64encode(output).decode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/image.jpg":
            return httpx.Response(200, content=output, headers={"content-type": "image/jpeg"})
        return httpx.Response(200, json={"images": [{"url": data_uri}], "seed": 7})

    def run(http: httpx.Client) -> tuple[bytes, bytes]:
        body = {"reference_image_urls": ["data:image/png;base64," + base64.b64encode(reference).decode()]}
        inline = http.post("https://x.test/run", json=body).json()["images"][0]["url"]
        http.post("https://x.test/upload", files={"image": ("ref.png", reference, "image/png")}, data={"a": "b"})
        fetched = http.get("https://x.test/image.jpg").content
        return base64.b64decode(inline.split(",", 1)[1]), fetched

    _record(monkeypatch)
    with cassette("fal", "docs", "images", handler=handler) as http:
        assert run(http) == (output, output)
    text = (scratch / "fal" / "docs" / "images.yaml").read_text()
    digest = vcr_support.image_placeholder(reference)
    assert text.count(digest) == 2  # the data URI in JSON and the multipart part
    assert "<image jpeg 300x200 sha256:" in text
    assert base64.b64encode(output).decode()[:40] not in text
    assert len(text) < 6000

    _replay(monkeypatch)
    with cassette("fal", "docs", "images") as http:
        inline, fetched = run(http)
    for data in (inline, fetched):
        with Image.open(io.BytesIO(data)) as img:
            assert (img.format, img.size) == ("JPEG", (300, 200))


def test_json_bodies_are_stored_parsed(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _record(monkeypatch)
    with cassette("fal", "docs", "parsed", handler=lambda r: httpx.Response(200, json={"status": "IN_QUEUE"})) as http:
        http.post("https://x.test/a", json={"prompt": "hello"})
    stored = vcr_support._ReadableYaml.deserialize((scratch / "fal" / "docs" / "parsed.yaml").read_text())
    text = (scratch / "fal" / "docs" / "parsed.yaml").read_text()
    assert "parsed_body:" in text and "prompt: hello" in text and "status: IN_QUEUE" in text
    assert json.loads(stored["interactions"][0]["request"]["body"]) == {"prompt": "hello"}


@pytest.mark.anyio
async def test_async_clients_replay_the_same_cassette(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _record(monkeypatch)
    with cassette("fal", "docs", "both", handler=lambda r: httpx.Response(202, json={"status": "IN_PROGRESS"})) as http:
        http.get("https://x.test/status?logs=1")
    _replay(monkeypatch)
    async with acassette("fal", "docs", "both") as client:
        response = await client.get("https://x.test/status?logs=1")
    assert (response.status_code, response.json()) == (202, {"status": "IN_PROGRESS"})


def test_live_cassettes_are_only_recorded_when_asked(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for docs recordings must not turn a live cassette into a network call, nor forge one."""
    _record(monkeypatch, "docs")
    with pytest.raises(pytest.skip.Exception, match="no live cassette"), cassette("fal", "live", "generate"):
        pass
    with pytest.raises(ValueError, match="live"), cassette("fal", "live", "x", handler=lambda r: httpx.Response(200)):
        pass

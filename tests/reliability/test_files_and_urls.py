"""Issue 7.5: file names never come from vendor data; URL inputs are http(s), capped and bounded.

* A vendor that names its files ``../../evil.png`` or ``/tmp/evil.png`` (fal's ``file_name``, a
  ``Content-Disposition`` header, the URL's path) cannot make ideochar write outside the output folder,
  through the library's journal or through the command line: every file is under the folder asked
  for, named by ideochar (job, position, hash; extension from the sniffed bytes).
* URL inputs: only http(s) is accepted, a body over the cap is refused, a download that takes longer
  than the job's deadline is stopped (also one that trickles a byte at a time), redirects are
  followed at most ``MAX_REDIRECTS`` times and never to another scheme.
* A data URI that lies about its type is refused, from the caller and from a vendor.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CANARY_KEY, make_image
from ideochar import Client
from ideochar._constants import MAX_REDIRECTS
from ideochar._netguard import fetch_client
from ideochar.errors import IdeocharError, InvalidRequest, UnexpectedResponse
from ideochar.exchange import download_image, drive, fetch_input
from ideochar.media import ImageInput
from reliability import sockets
from reliability.harness import providers

PNG = make_image(32, 32, "PNG")
JPEG = make_image(32, 32, "JPEG")
TRAVERSALS = ("../../evil.png", "/tmp/ideochar-evil-absolute.png", "..\\..\\evil.png", "evil/../../../x.png")
#: How long past a deadline an operation may take to stop (thread scheduling, socket close).
SLACK_SECONDS = 1.0
DEADLINE = 0.5


# -- file names ------------------------------------------------------------------------------------------


def _malicious_fal(base: str) -> Callable[[httpx.Request], httpx.Response]:
    """A fal that names its outputs with path traversals, in every field a client might trust."""
    job = f"{base}/fal-ai/ideogram/requests/req-1"

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            return httpx.Response(
                200,
                json={
                    "request_id": "req-1",
                    "status_url": f"{job}/status",
                    "response_url": job,
                    "cancel_url": f"{job}/cancel",
                },
            )
        if path.endswith("/status/stream"):
            return httpx.Response(404)
        if path.endswith("/status"):
            return httpx.Response(200, json={"status": "COMPLETED"})
        if path.endswith("/requests/req-1"):
            images = [
                {"url": f"{base}/files/{name}", "file_name": name, "content_type": "image/png"} for name in TRAVERSALS
            ]
            return httpx.Response(200, json={"images": images, "seed": 1})
        if request.method == "GET":  # the files, whatever httpx made of their dotted paths
            disposition = 'attachment; filename="../../evil.png"'
            return httpx.Response(
                200, content=PNG, headers={"content-type": "image/png/../../x", "content-disposition": disposition}
            )
        return httpx.Response(404)

    return handler


SAFE_NAME = re.compile(r"^[A-Za-z0-9_.~-]+$")


def _written(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.skipif("fal" not in providers(), reason="needs the fal provider")
def test_the_journal_names_output_files_itself_whatever_the_vendor_calls_them(tmp_path: Path) -> None:
    base = "https://queue.fal.run"
    out = tmp_path / "out"
    with Client(
        ["fal"],
        http=httpx.Client(transport=httpx.MockTransport(_malicious_fal(base))),
        keys={"fal": CANARY_KEY},
        journal=tmp_path / "j.sqlite3",
        output_dir=out,
        config=False,
        options={"fal": {"status": "poll", "image_transport": "data_uri"}},  # this fake fal has no storage
    ) as client:
        result = client.generate("a knight", PNG, num_images=len(TRAVERSALS))
    assert len(result.images) == len(TRAVERSALS)
    files = _written(out)
    assert len(files) == len(TRAVERSALS)
    for path in files:
        assert path.resolve().is_relative_to(out.resolve()), path
        assert SAFE_NAME.match(path.name), path.name
        assert "evil" not in str(path.relative_to(out))
        assert path.suffix == ".png"  # from the bytes, not the vendor's content type
    assert not list(tmp_path.parent.glob("evil*")) and not Path("/tmp/ideochar-evil-absolute.png").exists()


@pytest.mark.skipif("fal" not in providers(), reason="needs the fal provider")
def test_the_command_line_names_output_files_itself_whatever_the_vendor_calls_them(tmp_path: Path) -> None:
    def everything(request: httpx.Request) -> httpx.Response:
        return _malicious_fal(f"http://{request.url.netloc.decode()}/fal")(request)

    with sockets.serving(sockets.http(everything)) as root:
        server_url = root
        config = tmp_path / "ideochar.toml"
        config.write_text(
            f'journal = false\n[base_urls.fal]\nqueue = "{server_url}/fal"\n'
            '[options.fal]\nstatus = "poll"\nimage_transport = "data_uri"\n'  # this fake fal has no storage
        )
        reference = tmp_path / "hero.png"
        reference.write_bytes(PNG)
        out = tmp_path / "out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOCHAR_")}
        env.update(FAL_KEY=CANARY_KEY, IDEOCHAR_CONFIG=str(config))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ideochar.cli",
                "generate",
                "a knight",
                "-p",
                "fal",
                "-r",
                str(reference),
                "-n",
                str(len(TRAVERSALS)),
                "-o",
                str(out),
                "--json",
                "-q",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    files = _written(tmp_path)
    assert {p.parent for p in files if p.suffix != ".toml" and p.name != "hero.png"} == {out}
    for path in files:
        assert SAFE_NAME.match(path.name), path.name
        assert "evil" not in path.name
    images = [p for p in files if p.parent == out and p.suffix == ".png"]
    assert len(images) == len(TRAVERSALS)
    sidecar = json.loads(next(p for p in files if p.suffix == ".json").read_text())
    assert CANARY_KEY not in json.dumps(sidecar)


# -- URL inputs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "gopher://x/",
        "javascript:alert(1)",
        "data:,hello",
        "http://",
        "https://",
        "//example.com/a.png",
        "s3://bucket/a.png",
    ],
)
def test_only_http_and_https_urls_are_accepted_as_inputs(value: str) -> None:
    with pytest.raises(InvalidRequest):
        ImageInput.of(value)


def _run(flow: Any, transport: httpx.BaseTransport, deadline: float | None = None) -> Any:
    with httpx.Client(transport=transport) as http:
        return drive(flow, http, deadline=deadline, fetch=http)


def _causes(exc: BaseException) -> str:
    """What the generic message leaves out: the text of the cause chain."""
    texts, cause = [], exc.__cause__
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__
    return " / ".join(texts)


def test_a_url_input_larger_than_the_cap_is_refused_naming_the_field() -> None:
    big = PNG + b"\x00" * 4096
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=big))
    with pytest.raises(InvalidRequest) as caught:
        _run(fetch_input(ImageInput.of("https://inputs.test/big.png"), field="reference", max_bytes=2048), transport)
    assert caught.value.field == "reference"
    assert "is over 2,048 bytes" in _causes(caught.value)


def test_redirects_are_followed_a_bounded_number_of_times() -> None:
    seen: list[str] = []

    def loop(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": f"/hop{len(seen)}"})

    with pytest.raises(InvalidRequest) as caught:
        _run(fetch_input(ImageInput.of("https://inputs.test/a.png"), field="reference"), httpx.MockTransport(loop))
    assert len(seen) == MAX_REDIRECTS + 1
    assert "redirects" in _causes(caught.value)


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://inputs.test/a.png", "gopher://x/"])
def test_a_redirect_to_another_scheme_is_refused(location: str) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(302, headers={"location": location}))
    with pytest.raises(InvalidRequest) as caught:
        _run(fetch_input(ImageInput.of("https://inputs.test/a.png"), field="reference"), transport)
    assert "non-http" in _causes(caught.value)


def test_a_redirect_within_http_is_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/a.png":
            return httpx.Response(301, headers={"location": "https://cdn.test/b.png"})
        return httpx.Response(200, content=PNG)

    image = _run(
        fetch_input(ImageInput.of("https://inputs.test/a.png"), field="reference"), httpx.MockTransport(handler)
    )
    assert image.read() == PNG


def test_a_malformed_redirect_is_an_invalid_request_not_a_crash() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(302, headers={"location": "http://[::1"}))
    with pytest.raises(InvalidRequest):
        _run(fetch_input(ImageInput.of("https://inputs.test/a.png"), field="reference"), transport)


@pytest.mark.socket
@pytest.mark.parametrize("server", ["hang", "trickle"])
def test_a_url_input_download_stops_at_the_deadline(server: str) -> None:
    behaviour = sockets.hang(30) if server == "hang" else sockets.trickle(PNG[:16], interval=0.05, seconds=30)
    with sockets.serving(behaviour) as root, httpx.Client() as http, fetch_client(allow_private=True) as fetch:
        flow = fetch_input(ImageInput.of(f"{root}/slow.png"), field="reference")
        started = time.monotonic()
        with pytest.raises(InvalidRequest) as caught:
            drive(flow, http, deadline=started + DEADLINE, fetch=fetch)
        elapsed = time.monotonic() - started
    assert caught.value.field == "reference"
    assert elapsed < DEADLINE + SLACK_SECONDS, f"{server}: stopped after {elapsed:.2f} s for a {DEADLINE} s deadline"


@pytest.mark.socket
@pytest.mark.parametrize("server", ["hang", "trickle"])
def test_an_output_download_stops_at_the_deadline_and_says_it_was_billed(server: str) -> None:
    behaviour = sockets.hang(30) if server == "hang" else sockets.trickle(PNG[:16], interval=0.05, seconds=30)
    with sockets.serving(behaviour) as root, httpx.Client() as http, fetch_client(allow_private=True) as fetch:
        started = time.monotonic()
        with pytest.raises(IdeocharError) as caught:
            drive(download_image(f"{root}/out.png", attempts=2), http, deadline=started + DEADLINE, fetch=fetch)
        elapsed = time.monotonic() - started
    assert getattr(caught.value, "billed", None) == "yes"
    assert elapsed < DEADLINE + SLACK_SECONDS, f"{server}: stopped after {elapsed:.2f} s for a {DEADLINE} s deadline"


# -- data URIs --------------------------------------------------------------------------------------------


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(
    "uri",
    [
        _uri(PNG, "image/jpeg"),
        _uri(JPEG, "image/png"),
        _uri(PNG, "image/webp"),
        _uri(PNG, "text/plain"),
        _uri(b"GIF89a" + b"\x00" * 20, "image/gif"),
        _uri(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png"),
        "data:image/png;base64,not-base64!",
    ],
    ids=["png-as-jpeg", "jpeg-as-png", "png-as-webp", "png-as-text", "gif", "svg-as-png", "bad-base64"],
)
def test_a_data_uri_that_lies_about_its_type_is_refused(uri: str) -> None:
    with pytest.raises(InvalidRequest):
        ImageInput.of(uri)


def test_a_vendor_data_url_that_lies_is_an_unexpected_response_marked_billed() -> None:
    with pytest.raises(UnexpectedResponse) as caught:
        _run(download_image(_uri(PNG, "image/jpeg")), httpx.MockTransport(lambda r: httpx.Response(500)))
    assert caught.value.billed == "yes"


def test_an_honest_data_uri_is_accepted() -> None:
    assert ImageInput.of(_uri(PNG, "image/png")).read() == PNG
    assert ImageInput.of(_uri(JPEG, "image/jpg")).format == "jpeg"

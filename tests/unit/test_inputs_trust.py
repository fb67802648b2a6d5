"""Issue 13: which inputs a caller accepts, images that lie about themselves, and secrets in URLs.

* A server limits the kinds of input it accepts (URLs and bytes): a path is refused from the value
  alone, before any file is looked at, with one message whether the file exists or not; through the
  request (validation context), the client's convenience methods and ``run`` for requests built
  elsewhere.
* Decompression bombs and images over the pixel limit are InvalidRequest naming the field, never a
  raw Pillow error; a reference that is not a complete file is refused before anything is sent.
* URLs are shown with their userinfo and signature-like parameters hidden.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import pathlib
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from conftest import CANARY_KEY, make_image
from ideochar import AsyncClient, CharacterRequest, Client, Edit, InvalidRequest
from ideochar._constants import MAX_INPUT_PIXELS
from ideochar._secrets import REDACTED, Secret, redact_url
from ideochar.cli import CliState, cli
from ideochar.media import ALL_INPUTS, SERVER_INPUTS, ImageInput, InputKinds, input_kind

PNG = make_image(32, 32)
SERVER = SERVER_INPUTS.context()


def _noise(width: int, height: int, fmt: str, **save: Any) -> bytes:
    """An image whose bytes do not compress away, so a cut lands in the middle of its data."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, fmt, **save)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB pixels in a few dozen bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to declare another size."""
    data = bytearray(make_image(16, 16, "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _refused(**fields: Any) -> InvalidRequest:
    fields.setdefault("prompt", "a knight")
    fields.setdefault("reference", PNG)
    with pytest.raises(InvalidRequest) as caught:
        CharacterRequest(**fields)
    return caught.value


# -- which inputs a caller accepts -------------------------------------------------------------------------


def test_the_explicit_constructors_make_the_kind_they_name(tmp_path: Path) -> None:
    path = tmp_path / "face.png"
    path.write_bytes(PNG)
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert ImageInput.from_path(path).kind == "path"
    assert ImageInput.from_path(str(path)).read() == PNG
    assert ImageInput.from_url(" https://img.test/face.png ").url == "https://img.test/face.png"
    assert ImageInput.from_bytes(bytearray(PNG)).kind == "bytes"
    assert ImageInput.from_data_uri(uri).kind == "data_uri"


def test_from_url_never_reads_a_string_as_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "face.png").write_bytes(PNG)
    monkeypatch.chdir(tmp_path)
    assert ImageInput.of("face.png").kind == "path"  # the convenient door reads it as a path
    for value in ("face.png", "/etc/passwd", "file:///etc/passwd", "data:image/png;base64,AAAA"):
        with pytest.raises(InvalidRequest):
            ImageInput.from_url(value)
    with pytest.raises(InvalidRequest):
        ImageInput.from_bytes("face.png")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (PNG, "bytes"),
        (memoryview(PNG), "bytes"),
        ("data:image/png;base64,AAAA", "bytes"),
        (" DATA:image/png;base64,AAAA", "bytes"),
        ("https://img.test/a.png", "url"),
        ("ftp://img.test/a.png", "url"),
        ("face.png", "path"),
        ("~/face.png", "path"),
        (Path("face.png"), "path"),
        (ImageInput.of(PNG), "bytes"),
        (42, None),
    ],
)
def test_the_kind_is_judged_from_the_value_alone(value: Any, kind: str | None) -> None:
    assert input_kind(value) == kind


def _path_cases(tmp_path: Path) -> dict[str, str]:
    image = tmp_path / "face.png"
    image.write_bytes(PNG)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    locked = tmp_path / "locked.png"
    locked.write_bytes(PNG)
    locked.chmod(0)
    return {
        "an image": str(image),
        "missing": str(tmp_path / "missing.png"),
        "not an image": str(text),
        "unreadable": str(locked),
        "a folder": str(tmp_path),
        "home": "~/.ssh/id_rsa",
    }


def test_a_server_refuses_every_path_with_one_message_before_touching_a_file(tmp_path: Path) -> None:
    cases = _path_cases(tmp_path)
    touched: list[str] = []
    messages: dict[str, str] = {}
    with pytest.MonkeyPatch.context() as patch:
        for name in ("is_file", "exists", "stat", "open", "read_bytes", "expanduser", "resolve"):
            patch.setattr(pathlib.Path, name, _watching(getattr(pathlib.Path, name), tmp_path, touched))
        for case, value in cases.items():
            with pytest.raises(InvalidRequest) as caught:
                CharacterRequest.model_validate({"prompt": "a knight", "reference": value}, context=SERVER)
            assert caught.value.field == "reference", case
            messages[case] = str(caught.value)
    assert touched == []
    assert len(set(messages.values())) == 1, messages
    [message] = set(messages.values())
    assert "file paths are not accepted" in message
    assert "face" not in message and "missing" not in message and "ssh" not in message


def _watching(method: Any, root: Path, touched: list[str]) -> Any:
    """``method``, noting every call on a path under ``root`` or in the home folder."""

    def watched(self: pathlib.Path, *args: Any, **kwargs: Any) -> Any:
        if str(self).startswith((str(root), "~")):
            touched.append(f"{method.__name__}({self})")
        return method(self, *args, **kwargs)

    return watched


def test_a_server_refuses_a_path_object_and_a_path_input_in_every_image_field(tmp_path: Path) -> None:
    path = tmp_path / "face.png"
    path.write_bytes(PNG)
    given_path = ImageInput.from_path(path)
    for fields, field in [
        ({"reference": path}, "reference"),
        ({"reference": given_path}, "reference"),
        ({"reference_mask": str(path)}, "reference_mask"),
        ({"style_references": [PNG, str(path)]}, "style_references.1"),
        ({"operation": {"operation": "edit", "image": PNG, "mask": str(path)}}, "operation.mask"),
        ({"operation": {"operation": "remix", "image": str(path)}}, "operation.image"),
    ]:
        data = {"prompt": "a knight", "reference": PNG, **fields}
        with pytest.raises(InvalidRequest) as caught:
            CharacterRequest.model_validate(data, context=SERVER)
        assert caught.value.field == field


def test_a_server_accepts_urls_bytes_and_data_uris() -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    request = CharacterRequest.model_validate(
        {"prompt": "a knight", "reference": uri, "style_references": [PNG, "https://img.test/s.png"]},
        context=SERVER,
    )
    assert [image.kind for _, image in request.images()] == ["data_uri", "bytes", "url"]


def test_a_caller_may_accept_urls_only() -> None:
    only_urls = InputKinds.of("url").context()
    for value in (PNG, "data:image/png;base64," + base64.b64encode(PNG).decode()):
        with pytest.raises(InvalidRequest, match="bytes and data URIs are not accepted"):
            CharacterRequest.model_validate({"prompt": "p", "reference": value}, context=only_urls)


@pytest.mark.parametrize("value", [["urls"], "path,disk", []])
def test_an_unknown_or_empty_kind_list_is_refused_by_name(value: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        InputKinds.of(value)
    assert caught.value.field == "accept_inputs"


def test_kinds_are_read_from_what_a_caller_writes() -> None:
    assert InputKinds.of(None) == ALL_INPUTS
    assert InputKinds.of("url, bytes") == SERVER_INPUTS
    assert InputKinds.of({"URL", "bytes"}) == SERVER_INPUTS
    assert InputKinds.of(SERVER_INPUTS) is SERVER_INPUTS


def test_paths_are_accepted_by_default_and_their_messages_help_the_caller(tmp_path: Path) -> None:
    """The caller named the file, so missing and not-an-image read differently (docs/security.md)."""
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    missing = _refused(reference=str(tmp_path / "missing.png"))
    not_image = _refused(reference=str(text))
    assert "no such image file" in str(missing) and "not a JPEG, PNG or WebP" in str(not_image)


def _client(sent: list[httpx.Request], **kwargs: Any) -> Client:
    transport = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500))
    return Client(
        ["fal"], keys={"fal": CANARY_KEY}, http=httpx.Client(transport=transport), journal=False, config=False, **kwargs
    )


def test_a_client_that_accepts_urls_and_bytes_refuses_paths_in_every_method(tmp_path: Path) -> None:
    path = str(tmp_path / "face.png")
    Path(path).write_bytes(PNG)
    sent: list[httpx.Request] = []
    with _client(sent, accept_inputs={"url", "bytes"}) as client:
        calls = {
            "reference": lambda: client.generate("a knight", path),
            "operation.mask": lambda: client.edit("a knight", PNG, image=PNG, mask=path),
            "operation.image": lambda: client.remix("a knight", PNG, image=path),
            "style_references.0": lambda: client.generate("a knight", PNG, style_references=[path]),
        }
        for field, call in calls.items():
            with pytest.raises(InvalidRequest) as caught:
                call()
            assert caught.value.field == field
            assert "file paths are not accepted" in str(caught.value)
    assert sent == []


def test_run_refuses_a_request_built_elsewhere_with_a_path(tmp_path: Path) -> None:
    path = tmp_path / "face.png"
    path.write_bytes(PNG)
    built_elsewhere = [
        (CharacterRequest(prompt="a knight", reference=str(path)), "reference"),
        (CharacterRequest(prompt="a knight", reference=PNG, operation=Edit(image=PNG, mask=path)), "operation.mask"),
    ]
    sent: list[httpx.Request] = []
    with _client(sent, accept_inputs=SERVER_INPUTS) as client:
        for request, field in built_elsewhere:
            with pytest.raises(InvalidRequest) as caught:
                client.run(request)
            assert caught.value.field == field
    assert sent == []


def test_the_async_client_accepts_the_same_option(tmp_path: Path) -> None:
    path = tmp_path / "face.png"
    path.write_bytes(PNG)
    sent: list[httpx.Request] = []

    async def attempt() -> list[str | None]:
        transport = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500))
        fields: list[str | None] = []
        async with AsyncClient(
            ["fal"],
            keys={"fal": CANARY_KEY},
            http=httpx.AsyncClient(transport=transport),
            journal=False,
            config=False,
            accept_inputs="url,bytes",
        ) as client:
            for call in (
                lambda: client.generate("a knight", str(path)),
                lambda: client.run(CharacterRequest(prompt="a knight", reference=path)),
            ):
                try:
                    await call()
                except InvalidRequest as exc:
                    fields.append(exc.field)
        return fields

    assert asyncio.run(attempt()) == ["reference", "reference"]
    assert sent == []


# -- images checked before they cost anything ----------------------------------------------------------------


def test_a_69_byte_decompression_bomb_is_an_invalid_request_naming_the_field() -> None:
    bomb = _png_header_only(100_000, 100_000)
    assert len(bomb) < 70
    with pytest.raises(InvalidRequest, match="decompression bomb"):
        _ = ImageInput.of(bomb).dimensions
    for fields, field in [
        ({"reference": bomb}, "reference"),
        ({"reference_mask": bomb}, "reference_mask"),
        ({"operation": {"operation": "edit", "image": PNG, "mask": bomb}}, "operation.mask"),
        ({"style_references": [bomb]}, "style_references.0"),
    ]:
        assert _refused(**fields).field == field


@pytest.mark.parametrize(
    "data",
    [
        _png_header_only(MAX_INPUT_PIXELS // 4096 + 1, 4096),  # just over the limit, under Pillow's
        _png_header_only(10_000, 10_000),  # over Pillow's warning threshold, under its error
        _jpeg_declaring(65_535, 65_535),  # over Pillow's error threshold
        _jpeg_declaring(9_000, 9_000),
    ],
    ids=["png-over-limit", "png-pillow-warns", "jpeg-bomb", "jpeg-over-limit"],
)
def test_an_image_over_the_pixel_limit_is_refused_even_when_warnings_are_errors(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error = _refused(reference=data)
    assert error.field == "reference"
    assert f"{MAX_INPUT_PIXELS:,}" in str(error)


def test_an_image_at_the_pixel_limit_is_accepted() -> None:
    assert ImageInput.of(_png_header_only(8192, 8192)).dimensions == (8192, 8192)


def test_the_command_line_reports_a_bomb_as_an_invalid_request(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))
    config = tmp_path / "ideochar.toml"
    config.write_text("")
    sent: list[httpx.Request] = []
    state = CliState(
        http=httpx.Client(transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500))),
        environ={"FAL_KEY": CANARY_KEY, "IDEOCHAR_CONFIG": str(config), "IDEOCHAR_JOURNAL": "false"},
    )
    args = ["generate", "a knight", "-r", str(bomb), "-p", "fal", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args, obj=state, catch_exceptions=False)
    assert result.exit_code == InvalidRequest.exit_code, result.output
    assert result.stderr.startswith("error: invalid request: --reference:")  # the flag, as the command line says it
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert sent == []


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


PNG_NOISE = _noise(64, 48, "PNG")
JPEG_NOISE = _noise(64, 48, "JPEG", quality=95)
PROGRESSIVE = _noise(64, 48, "JPEG", quality=95, progressive=True)
WEBP_NOISE = _noise(64, 48, "WEBP", quality=90)


@pytest.mark.parametrize(
    "data",
    [
        PNG_NOISE[:-12],  # no IEND
        _cut(PNG_NOISE, 0.6),  # inside the image data
        _cut(JPEG_NOISE, 0.6),
        _cut(PROGRESSIVE, 0.7),
        _cut(WEBP_NOISE, 0.8),
    ],
    ids=["png-no-iend", "png-half", "jpeg-half", "progressive-jpeg", "webp"],
)
def test_a_cut_short_image_is_refused_before_anything_is_sent(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "face.img"
    path.write_bytes(data)
    for value in (data, str(path)):
        error = _refused(reference=value)
        assert error.field == "reference"
        assert "cut short" in str(error) or "cannot be read" in str(error)
    assert _refused(operation={"operation": "remix", "image": data}).field == "operation.image"


@pytest.mark.parametrize("data", [PNG_NOISE, JPEG_NOISE, PROGRESSIVE, WEBP_NOISE, JPEG_NOISE + b"ftypmp42" * 64])
def test_complete_images_pass_including_data_after_a_jpeg_end_marker(data: bytes) -> None:
    """Phones append a video after a photo's end marker (motion photos): the photo is still whole."""
    request = CharacterRequest(prompt="a knight", reference=data)
    request.reference.check()
    assert request.reference.dimensions == (64, 48)


# -- secrets in URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "hidden", "kept"),
    [
        ("https://user:pa55word@img.test/a.png", ["user", "pa55word"], ["img.test/a.png"]),
        ("https://user:p@ss@img.test/a.png", ["user", "p@ss"], ["@img.test/a.png"]),
        (
            "https://b.s3.amazonaws.com/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F2026"
            "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE"
            "&X-Amz-Signature=f00dfeedcafe",
            ["AKIAEXAMPLE", "FQoGZXIvYXdzEXAMPLE", "f00dfeedcafe"],
            ["X-Amz-Expires=3600", "X-Amz-Date=20260101T000000Z", "X-Amz-Signature="],
        ),
        (
            "https://storage.googleapis.com/b/a.png?X-Goog-Credential=svc%40p.iam&X-Goog-Signature=0badc0de",
            ["svc%40p.iam", "0badc0de"],
            ["storage.googleapis.com/b/a.png"],
        ),
        ("https://a.blob.core.windows.net/c/a.png?sv=2024&se=2026-01-01&sig=abc%2Bdef%3D", ["abc%2Bdef"], ["se="]),
        ("https://cdn.test/a.png?Policy=eyJ&Signature=xyz123&Key-Pair-Id=K2ID", ["eyJ", "xyz123", "K2ID"], []),
        ("https://img.test/a.png?token=t0k3n&w=512", ["t0k3n"], ["w=512"]),
        ("https://img.test/a.png?API_KEY=k3yk3y#access_token=frag123", ["k3yk3y", "frag123"], []),
        ("https://img.test/a.png?upload_token=ut99&x-custom-signature=cs99", ["ut99", "cs99"], []),
        ("http://[::1/a.png?key=unparsable1", ["unparsable1"], ["http://[::1/a.png"]),
    ],
)
def test_redact_url_hides_userinfo_and_signature_parameters(url: str, hidden: list[str], kept: list[str]) -> None:
    shown = redact_url(url)
    assert REDACTED in shown
    for secret in hidden:
        assert secret not in shown
    for text in kept:
        assert text in shown


def test_redact_url_leaves_a_plain_url_as_given() -> None:
    url = "https://img.test/a%20b.png?w=512&fit=cover&expires=60#top"
    assert redact_url(url) == url


def test_redact_url_also_hides_known_keys() -> None:
    Secret(CANARY_KEY)
    assert CANARY_KEY not in redact_url(f"https://img.test/{CANARY_KEY}/a.png")


SECRET_VALUES = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789%+/=-", min_size=8, max_size=40).filter(
    lambda secret: secret not in REDACTED
)
SECRET_NAMES = st.sampled_from(
    ["X-Amz-Signature", "x-amz-credential", "X-Goog-Signature", "sig", "Signature", "token", "access_token", "key"]
)


@given(name=SECRET_NAMES, secret=SECRET_VALUES, before=st.booleans(), userinfo=st.booleans())
def test_no_signature_value_survives_redaction(name: str, secret: str, before: bool, userinfo: bool) -> None:
    other = "w=512"
    query = f"{name}={secret}&{other}" if before else f"{other}&{name}={secret}"
    password = quote(secret, safe="")  # userinfo holds no raw "/"
    authority = f"u:{password}@img.test" if userinfo else "img.test"
    shown = redact_url(f"https://{authority}/a.png?{query}")
    assert secret not in shown and password not in shown
    assert other in shown


def test_an_image_url_is_shown_without_its_secrets() -> None:
    url = "https://user:hunter2@bucket.test/face.png?X-Amz-Expires=60&X-Amz-Signature=deadbeef99"
    image = ImageInput.of(url)
    assert image.url == url  # the vendor still gets the working URL
    request = CharacterRequest(prompt="a knight", reference=url)
    shown = [repr(image), str(image), image.describe(), str(request.model_dump(mode="json")), repr(request)]
    with pytest.raises(InvalidRequest) as caught:
        image.read()
    shown.append(str(caught.value))
    for text in shown:
        assert "hunter2" not in text and "deadbeef99" not in text, text
        assert "bucket.test/face.png" in text


def test_a_refused_url_does_not_echo_its_secrets() -> None:
    with pytest.raises(InvalidRequest) as caught:
        ImageInput.from_url("https://user:hunter2@/a.png?sig=deadbeef99")
    assert "hunter2" not in str(caught.value) and "deadbeef99" not in str(caught.value)


# -- the threat model names these tests ----------------------------------------------------------------------

"""Random neutral requests, valid and invalid, as keyword arguments for ``CharacterRequest``.

Every field is drawn from a mix of legal values, near misses (wrong case, out of range by one,
the wrong type) and nonsense, so the same strategy explores both the validator (what must raise
InvalidRequest naming a field) and the providers (what must become a payload a strict vendor
accepts). Images come in every form the caller may use: bytes of each format, a file path, an http(s)
URL served by :class:`InputServer`, a data URI (honest or lying about its type), and broken ones.
"""

from __future__ import annotations

import atexit
import base64
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st

from conftest import make_image
from ideochar.request import ASPECT_RATIOS, RESOLUTIONS

INPUT_HOST = "inputs.test"
_DIR = Path(tempfile.mkdtemp(prefix="ideochar-reliability-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)

IMAGES: dict[str, bytes] = {
    "png64": make_image(64, 64, "PNG"),
    "jpeg64": make_image(64, 64, "JPEG", "green"),
    "webp64": make_image(64, 64, "WEBP", "blue"),
    "png48x32": make_image(48, 32, "PNG", "white"),
    "mask64": make_image(64, 64, "PNG", "black"),
}


def _file(name: str, data: bytes) -> str:
    path = _DIR / name
    path.write_bytes(data)
    return str(path)


PNG_PATH = _file("hero.png", IMAGES["png64"])
JPEG_PATH = _file("hero.jpg", IMAGES["jpeg64"])
NOT_AN_IMAGE_PATH = _file("notes.png", b"this is text with a .png name")
# Sparse: a PNG header then 11 MB of holes, so the size check runs without writing 11 MB.
_big = _DIR / "huge.png"
with _big.open("wb") as handle:
    handle.write(IMAGES["png64"][:64])
    handle.truncate(11 * 1024 * 1024)
HUGE_PATH = str(_big)

#: What the fake input host serves, by path.
SERVED: dict[str, httpx.Response] = {
    "/hero.png": httpx.Response(200, content=IMAGES["png64"], headers={"content-type": "image/png"}),
    "/hero.jpg": httpx.Response(200, content=IMAGES["jpeg64"], headers={"content-type": "image/jpeg"}),
    "/scene-48x32.png": httpx.Response(200, content=IMAGES["png48x32"], headers={"content-type": "image/png"}),
    "/mask.png": httpx.Response(200, content=IMAGES["mask64"], headers={"content-type": "image/png"}),
    "/page.png": httpx.Response(200, content=b"<html>not an image</html>", headers={"content-type": "text/html"}),
    "/gone.png": httpx.Response(404, content=b"not found"),
    "/moved.png": httpx.Response(302, headers={"location": "/hero.png"}),
    "/loop.png": httpx.Response(302, headers={"location": "/loop.png"}),
    "/to-file.png": httpx.Response(302, headers={"location": "file:///etc/passwd"}),
}


def serve_input(request: httpx.Request) -> httpx.Response:
    """The caller's image host: what URL inputs point at."""
    answer = SERVED.get(request.url.path)
    if answer is None:
        return httpx.Response(404)
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


valid_images = st.sampled_from(
    [
        IMAGES["png64"],
        IMAGES["jpeg64"],
        IMAGES["webp64"],
        PNG_PATH,
        JPEG_PATH,
        Path(PNG_PATH),
        f"http://{INPUT_HOST}/hero.png",
        f"https://{INPUT_HOST}/hero.jpg",
        f"https://{INPUT_HOST}/moved.png",
        _data_uri(IMAGES["png64"], "image/png"),
        _data_uri(IMAGES["jpeg64"], "image/jpg"),
    ]
)
bad_images = st.sampled_from(
    [
        b"",
        b"GIF89a....",
        b"\x89PNG\r\n\x1a\n",  # a signature and nothing else
        NOT_AN_IMAGE_PATH,
        HUGE_PATH,
        str(_DIR / "missing.png"),
        "ftp://example.com/x.png",
        "file:///etc/passwd",
        "http://",
        "data:image/png;base64,!!!",
        _data_uri(IMAGES["png64"], "image/jpeg"),  # lies about its type
        _data_uri(b"<svg/>", "image/svg+xml"),
        f"https://{INPUT_HOST}/page.png",
        f"https://{INPUT_HOST}/gone.png",
        f"https://{INPUT_HOST}/loop.png",
        f"https://{INPUT_HOST}/to-file.png",
        12345,
        None,
    ]
)
images = st.one_of(valid_images, valid_images, bad_images)


@st.composite
def operations(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["none", "generate", "edit", "remix", "remix", "dict", "junk"]))
    if kind == "none":
        return None
    if kind == "generate":
        return {"operation": "generate"}
    if kind == "edit":
        scene = draw(st.sampled_from([IMAGES["png64"], IMAGES["jpeg64"], f"https://{INPUT_HOST}/hero.png"]))
        mask = draw(st.sampled_from([IMAGES["mask64"], IMAGES["png48x32"], f"https://{INPUT_HOST}/mask.png"]))
        return {"operation": "edit", "image": scene, "mask": draw(st.one_of(st.just(mask), images))}
    if kind == "remix":
        strength = draw(
            st.one_of(st.floats(0.01, 1.0), st.sampled_from([0.0, 0.009, 1.01, -1.0, float("nan"), "0.5", None]))
        )
        value: dict[str, Any] = {"operation": "remix", "image": draw(images)}
        if strength is not None:
            value["strength"] = strength
        return value
    if kind == "dict":
        return {"operation": draw(st.sampled_from(["paint", "", "EDIT"]))}
    return draw(st.sampled_from(["generate", 3, [], {"image": IMAGES["png64"]}]))


palettes = st.one_of(
    st.none(),
    st.sampled_from(["ember", "Jungle", "neon", "", {"preset": "magic"}, {"preset": "magic", "members": []}]),
    st.lists(
        st.one_of(
            st.sampled_from(["#FF0000", "#0f0", "red", "#12345G", "#ABCDEF"]),
            st.tuples(st.sampled_from(["#112233", "#abc", "nope"]), st.sampled_from([0.05, 0.5, 1.0, 0.0, 2.0])),
        ),
        min_size=0,
        max_size=9,
    ),
)
style_codes = st.one_of(
    st.none(), st.lists(st.sampled_from(["AABBCCDD", "0123abcd", "xyz", "AABBCCDDEE", ""]), max_size=3)
)
extras = st.one_of(
    st.just({}),
    st.sampled_from(
        [
            {"fal": {"sync_mode": True}},
            {"fal": {"mode": "run"}},
            {"fal": {"status": "poll"}},
            {"fal": {"priority": "low", "mode": "run"}},
            {"fal": {"bogus": 1}},
            {"segmind": {"mode": "v2"}},
            {"segmind": {"mode": "v3"}},
            {"ideogram": {"edit_path": "inpaint"}},
            {"ideogram": {"timeout_seconds": -1}},
            {"replicate": {}},
            {"replicate": {"nonsense": True}},
            {"nobody": {}},
        ]
    ),
)


@st.composite
def request_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments for ``CharacterRequest``: about half of them valid."""
    kwargs: dict[str, Any] = {
        "prompt": draw(
            st.one_of(
                st.sampled_from(["a knight in the rain", "Ünïcödé 騎士 🐉", "x"]),
                st.text(min_size=0, max_size=40),
                st.just("p" * 10_001),
            )
        ),
        "reference": draw(images),
    }
    optional: dict[str, Any] = {
        "reference_mask": st.one_of(st.just(IMAGES["mask64"]), images),
        "operation": operations(),
        "style": st.sampled_from(["auto", "REALISTIC", "fiction", "anime", "", 1]),
        "speed": st.sampled_from(["turbo", "default", "Quality", "fast"]),
        "magic_prompt": st.sampled_from(["auto", "on", "OFF", "maybe", True]),
        "aspect_ratio": st.one_of(st.sampled_from(ASPECT_RATIOS), st.sampled_from(["7:3", "16/9", "", "1:1 "])),
        "resolution": st.one_of(
            st.sampled_from(RESOLUTIONS), st.sampled_from(["1000x1000", "1024×1024", (1024, 1024), (1, 2, 3), "big"])
        ),
        "seed": st.one_of(st.integers(0, 2**31 - 1), st.sampled_from([-1, 2**31, 2**40, 1.5, "7", True])),
        "num_images": st.one_of(st.integers(1, 8), st.sampled_from([0, 9, -1, 2.0, "2"])),
        "negative_prompt": st.one_of(st.text(max_size=20), st.just("")),
        "color_palette": palettes,
        "style_codes": style_codes,
        "style_references": st.lists(images, max_size=2),
        "extra": extras,
        "unknown_field": st.just(1),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=6))
    for name in chosen:
        if name == "unknown_field" and draw(st.integers(0, 3)) != 0:
            continue
        value = draw(optional[name])
        if name == "operation":
            if value is None:
                continue
            if isinstance(value, dict) and value.get("operation") in ("generate", "edit", "remix"):
                from ideochar.request import Edit, Generate, Remix

                cls = {"generate": Generate, "edit": Edit, "remix": Remix}[value["operation"]]
                if draw(st.booleans()):
                    try:  # the model form (errors from it are part of the property too)
                        value = cls(**{k: v for k, v in value.items() if k != "operation"})
                    except Exception as exc:
                        kwargs["__construction_error__"] = exc
                        return kwargs
        kwargs[name] = value
    return kwargs

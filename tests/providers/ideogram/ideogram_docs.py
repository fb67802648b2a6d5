"""Ideogram's documented examples, as handlers that answer the way the docs show (for docs cassettes).

Every body here is copied from the ``x-fern-examples`` and schema examples of Ideogram's OpenAPI
document (api.ideogram.ai/openapi.json, as mirrored in ``reference/ideogram-openapi.json``):

* ``POST /v1/ideogram-v3/generate``: request ``{"prompt": "A photo of a cat sleeping on a couch.",
  "rendering_speed": "TURBO", "aspect_ratio": "1x1", "style_type": "AUTO"}``, response below;
* ``POST /v1/ideogram-v3/edit``: request ``{"prompt": "A photo of a cat wearing a hat.",
  "style_type": "AUTO"}`` (the curl sample adds ``rendering_speed=DEFAULT``), response below;
* ``POST /v1/ideogram-v3/remix``: request ``{"prompt": "A photo of a cat", "rendering_speed":
  "DEFAULT", "image_weight": 50, "aspect_ratio": "1x2", "style_type": "AUTO"}``, response below;
* ``GenerateImageSafetyError``'s example, the documented 422 body.

The image behind the documented URL is not documented: the handlers serve a PNG of the documented
``resolution`` (the URL ends in ``.png``). ``test_ideogram_cassettes.py`` checks these constants against
the reference document when it is beside the checkout.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

__all__ = [
    "DATA",
    "DOCS_IMAGE_URL",
    "EDIT_EXAMPLE",
    "GENERATE_EXAMPLE",
    "REMIX_EXAMPLE",
    "SAFETY_ERROR_EXAMPLE",
    "handler_for",
]

DATA = Path(__file__).parent / "data"

DOCS_IMAGE_URL = (
    "https://ideogram.ai/api/images/ephemeral/xtdZiqPwRxqY1Y7NExFmzB.png"
    "?exp=1743867804&sig=e13e12677633f646d8531a153d20e2d3698dca9ee7661ee5ba4f3b64e7ec3f89"
)


def _example(prompt: str, resolution: str, style_type: str) -> dict[str, Any]:
    return {
        "request": {},
        "response": {
            "body": {
                "created": "2000-01-23T04:56:07+00:00",
                "data": [
                    {
                        "prompt": prompt,
                        "resolution": resolution,
                        "is_image_safe": True,
                        "seed": 12345,
                        "url": DOCS_IMAGE_URL,
                        "style_type": style_type,
                    }
                ],
            }
        },
    }


GENERATE_EXAMPLE: dict[str, Any] = _example("A photo of a cat sleeping on a couch.", "1024x1024", "GENERAL")
GENERATE_EXAMPLE["request"] = {
    "prompt": "A photo of a cat sleeping on a couch.",
    "rendering_speed": "TURBO",
    "aspect_ratio": "1x1",
    "style_type": "AUTO",
}
EDIT_EXAMPLE: dict[str, Any] = _example("A photo of a cat wearing a hat.", "1024x1024", "AUTO")
EDIT_EXAMPLE["request"] = {"prompt": "A photo of a cat wearing a hat.", "style_type": "AUTO"}
REMIX_EXAMPLE: dict[str, Any] = _example("A photo of a cat", "1280x800", "GENERAL")
REMIX_EXAMPLE["request"] = {
    "prompt": "A photo of a cat",
    "rendering_speed": "DEFAULT",
    "image_weight": 50,
    "aspect_ratio": "1x2",
    "style_type": "AUTO",
}
SAFETY_ERROR_EXAMPLE: dict[str, Any] = {
    "error": "Prompt provided failed safety check due to the inclusion of prohibited content."
}


def _png(resolution: str) -> bytes:
    width, height = (int(n) for n in resolution.split("x"))
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (180, 160, 140)).save(buffer, "PNG")
    return buffer.getvalue()


def handler_for(example: dict[str, Any], route: str, *, status: int = 200) -> Any:
    """A fake Ideogram answering ``route`` with the example's response, and its image URL with a PNG."""
    body = example["response"]["body"] if status == 200 else example

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert request.url.path == route, request.url
            assert request.headers["content-type"].startswith("multipart/form-data")
            return httpx.Response(status, json=body)
        assert str(request.url) == DOCS_IMAGE_URL, request.url
        (item,) = body["data"]
        return httpx.Response(200, content=_png(item["resolution"]), headers={"content-type": "image/png"})

    return handler

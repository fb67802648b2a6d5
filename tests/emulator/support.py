"""Request builders shared by the emulator tests."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

FAL_KEY = {"Authorization": "Key test-key-123"}
SEGMIND_KEY = {"x-api-key": "SG_0123456789abcdef"}
FAL_GENERATE = "/fal/fal-ai/ideogram/character"
FAL_EDIT = "/fal/fal-ai/ideogram/character/edit"
FAL_REMIX = "/fal/fal-ai/ideogram/character/remix"
FAL_RUN = "/fal/run/fal-ai/ideogram/character"
SEGMIND_V1 = "/segmind/v1/ideogram-character"
SEGMIND_V2 = "/segmind/v2/ideogram-character"


def image(width: int = 64, height: int = 64, fmt: str = "PNG", color: Any = (12, 200, 34), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def fal_body(**fields: Any) -> dict[str, Any]:
    """A valid generate body, changed by ``fields`` (a value of ... removes the field)."""
    body: dict[str, Any] = {
        "prompt": "a knight in the rain",
        "reference_image_urls": [data_uri(image())],
        "rendering_speed": "TURBO",
        "image_size": {"width": 1024, "height": 1024},
        "seed": 7,
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


def edit_body(**fields: Any) -> dict[str, Any]:
    """A valid edit body (a 96x64 image and mask), changed by ``fields``."""
    body = fal_body(image_size=..., image_url=data_uri(image(96, 64)), mask_url=data_uri(image(96, 64, color="white")))
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


def pixel_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        return opened.size


def decode(data: bytes) -> Image.Image:
    opened = Image.open(io.BytesIO(data))
    opened.load()
    return opened.convert("RGB")


def mask_png(width: int, height: int, black: tuple[int, int, int, int]) -> bytes:
    """A white mask (keep) with a black rectangle (repaint)."""
    from PIL import ImageDraw

    mask = Image.new("L", (width, height), 255)
    ImageDraw.Draw(mask).rectangle(black, fill=0)
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()

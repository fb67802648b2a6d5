"""The comparison clients: the same HTTP requests ideochar makes, written by hand with raw httpx.

What a careful user would write without a library: build the body, send it, follow the job's URLs,
download the image. No validation, no events, no error mapping: the floor for the client's own work.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

FAL_ENDPOINT = "fal-ai/ideogram/character"
SEGMIND_V1 = "/v1/ideogram-character"
KEY = "ideochar-emulator-key"


def fal_body(reference: Path, prompt: str) -> dict[str, Any]:
    """The submit body ideochar sends for a generate with a local reference (checked by ``check_same_body``)."""
    data = reference.read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    return {
        "prompt": prompt,
        "reference_image_urls": [uri],
        "rendering_speed": "BALANCED",
        "num_images": 1,
        "image_size": {"width": 1024, "height": 1024},
        "style": "AUTO",
        "expand_prompt": True,
    }


def _sse_statuses(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data:"):
            yield json.loads(line[5:])


async def _asse_statuses(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    async for line in lines:
        if line.startswith("data:"):
            yield json.loads(line[5:])


def fal_generate(http: httpx.Client, root: str, reference: Path, prompt: str, ids: list[str] | None = None) -> bytes:
    """Submit, follow the status stream to COMPLETED, fetch the result, download the image: 4 requests.

    The job's request id is appended to ``ids`` when given."""
    headers = {"Authorization": f"Key {KEY}"}
    submitted = http.post(f"{root}/fal/{FAL_ENDPOINT}", json=fal_body(reference, prompt), headers=headers).json()
    if ids is not None:
        ids.append(submitted["request_id"])
    with http.stream("GET", submitted["status_url"] + "/stream", params={"logs": "1"}, headers=headers) as stream:
        for status in _sse_statuses(stream.iter_lines()):
            if status["status"] == "COMPLETED":
                break
    output = http.get(submitted["response_url"], headers=headers).json()
    image = http.get(output["images"][0]["url"])
    image.raise_for_status()
    return image.content


async def afal_generate(http: httpx.AsyncClient, root: str, reference: Path, prompt: str) -> bytes:
    headers = {"Authorization": f"Key {KEY}"}
    response = await http.post(f"{root}/fal/{FAL_ENDPOINT}", json=fal_body(reference, prompt), headers=headers)
    response.raise_for_status()
    submitted = response.json()
    async with http.stream("GET", submitted["status_url"] + "/stream", params={"logs": "1"}, headers=headers) as s:
        async for status in _asse_statuses(s.aiter_lines()):
            if status["status"] == "COMPLETED":
                break
    output = (await http.get(submitted["response_url"], headers=headers)).json()
    image = await http.get(output["images"][0]["url"])
    image.raise_for_status()
    return image.content


def segmind_generate(http: httpx.Client, root: str, reference: Path, prompt: str) -> bytes:
    """One multipart POST answered with the image's bytes (Segmind v1)."""
    response = http.post(
        f"{root}/segmind{SEGMIND_V1}",
        headers={"x-api-key": KEY},
        data={
            "prompt": prompt,
            "seed": "377385841",  # bench_overhead.SEGMIND_SEED
            "resolution": "1024x1024",
            "style_type": "Auto",
            "rendering_speed": "Default",
            "magic_prompt_option": "Auto",
        },
        files={"character_reference_image": (reference.name, reference.read_bytes(), "image/png")},
    )
    response.raise_for_status()
    return response.content

"""Handlers that answer the way Replicate documents, for the docs-origin cassettes.

Each body follows a documented source; ids, timestamps and output URLs are illustrative, not recorded:

* The example prediction of the model page (replicate.com/ideogram-ai/ideogram-character, "Examples"):
  its input (prompt, reference URL, ``Auto``/``1:1``/``Auto``), its logs ("Using seed: 144578042",
  "Prompt used: ...") and its metrics (predict_time 14.48 s).
* The prediction object and statuses of replicate.com/docs/topics/predictions/create-a-prediction and
  /lifecycle: a request that is not held returns the prediction ``starting`` at once, as does a held one
  (``Prefer: wait``) that times out; a finished one returns it terminal with ``output`` set;
  ``urls.get``/``urls.cancel``.
* The file object of ``POST /v1/files`` (replicate.com/docs/topics/predictions/input-files; the
  official Python client's ``File``: id, name, content_type, size, etag, checksums, metadata,
  created_at, expires_at, urls.get).
* The model's output schema: one URI string.

No edit example is published for this model: the edit exchange is assembled from the schema's
``image``/``mask`` fields and the documented prediction object above.
"""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

API = "https://api.replicate.com"
DOCS_PROMPT = "a close up photo of a woman in a fashion magazine photoshoot"
DOCS_REFERENCE = "https://replicate.delivery/pbxt/NUKxQppU8C2sCfleK0lGVI0vt9P3swKz3MnKs1z9fnHkdAV2/0_1.webp"
DOCS_SEED = 144578042
DOCS_USED_PROMPT = (
    "A striking fashion photograph showcasing a beautiful woman in a meticulously styled editorial setting."
)
DOCS_LOGS = f"Using seed: {DOCS_SEED}\nGenerating...\nPrompt used: {DOCS_USED_PROMPT}\n"
VERSION = "1f8e198263a0d8171b76c55907c294e933e1e7d55e2d0c54f319c0e4a42c723d"

GENERATE_ID = "0zq5d0w9xsrj40cs3p1b8kq2hw"
GENERATE_OUTPUT = "https://replicate.delivery/xezq/Ku9fKrTk1QbJNC4eX2CIwHhK/tmp8y3vd0gr.png"
EDIT_ID = "7mqk1e8c2nrj60cs3p1twv6hd8"
EDIT_OUTPUT = "https://replicate.delivery/xezq/Ad4bZt2zYcTq8Rk0fW1eGmSx/tmpc2o5ay1u.png"
EDIT_PROMPT = "the woman sitting at a cafe table by the window"
GENERATE_CREATED = "2026-03-02T10:00:00.000Z"
FILE_IDS = ("YzJkOGE0ZjMtMWE2Yi00", "ZmE3MzFiNDctYjNkMS00")


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (180, 150, 140)).save(buffer, "PNG")
    return buffer.getvalue()


def _prediction(
    prediction_id: str, status: str, input_: dict[str, Any], created_at: str, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": prediction_id,
        "model": "ideogram-ai/ideogram-character",
        "version": VERSION,
        "input": input_,
        "logs": "",
        "output": None,
        "data_removed": False,
        "error": None,
        "status": status,
        "created_at": created_at,
        "urls": {
            "cancel": f"{API}/v1/predictions/{prediction_id}/cancel",
            "get": f"{API}/v1/predictions/{prediction_id}",
            "web": f"https://replicate.com/p/{prediction_id}",
        },
    }
    body.update(fields)
    return body


class DocsGenerate:
    """The create request (not held) returns ``starting`` at once; polls see ``processing`` then ``succeeded``."""

    def __init__(self) -> None:
        self.polls = 0
        self.input: dict[str, Any] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        import json

        if request.method == "POST":
            assert request.url.path == "/v1/models/ideogram-ai/ideogram-character/predictions"
            self.input = json.loads(request.content)["input"]
            return httpx.Response(201, json=_prediction(GENERATE_ID, "starting", self.input, GENERATE_CREATED))
        if request.url.host == "replicate.delivery":
            return httpx.Response(200, content=_png(1024, 1024), headers={"content-type": "image/png"})
        self.polls += 1
        if self.polls == 1:
            body = _prediction(
                GENERATE_ID, "processing", self.input, GENERATE_CREATED, started_at="2026-03-02T10:00:01.200Z"
            )
            return httpx.Response(200, json=body)
        body = _prediction(
            GENERATE_ID,
            "succeeded",
            self.input,
            GENERATE_CREATED,
            output=GENERATE_OUTPUT,
            logs=DOCS_LOGS,
            started_at="2026-03-02T10:00:01.200Z",
            completed_at="2026-03-02T10:00:15.680Z",
            metrics={"predict_time": 14.48},
        )
        return httpx.Response(200, json=body)


class DocsEdit:
    """Both local images are uploaded to ``/v1/files``; the create request, held (``Prefer: wait=60``),
    answers finished."""

    def __init__(self) -> None:
        self.uploads = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        import json

        if request.url.path == "/v1/files":
            file_id = FILE_IDS[self.uploads]
            self.uploads += 1
            return httpx.Response(
                201,
                json={
                    "id": file_id,
                    "name": "upload.png",
                    "content_type": "image/png",
                    "size": len(request.content),
                    "etag": "5d2f4c0a1b9e8d7c6b5a4f3e2d1c0b9a",
                    "checksums": {"md5": "5d2f4c0a1b9e8d7c6b5a4f3e2d1c0b9a"},
                    "metadata": {},
                    "created_at": "2026-03-02T10:05:00.000Z",
                    "expires_at": "2026-03-03T10:05:00.000Z",
                    "urls": {"get": f"{API}/v1/files/{file_id}"},
                },
            )
        if request.method == "POST":
            input_ = json.loads(request.content)["input"]
            body = _prediction(
                EDIT_ID,
                "succeeded",
                input_,
                "2026-03-02T10:05:00.600Z",
                output=EDIT_OUTPUT,
                logs="Using seed: 402197\nGenerating...\nPrompt used: " + EDIT_PROMPT + "\n",
                started_at="2026-03-02T10:05:01.000Z",
                completed_at="2026-03-02T10:05:09.310Z",
                metrics={"predict_time": 8.31},
            )
            return httpx.Response(201, json=body)
        assert request.url.host == "replicate.delivery"
        return httpx.Response(200, content=_png(512, 512), headers={"content-type": "image/png"})

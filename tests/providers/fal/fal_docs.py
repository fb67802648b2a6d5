"""fal's documented example bodies, as a handler: the source of the ``cassettes/fal/docs/`` cassettes.

Each body follows the page named beside it (archived copies; see /work/shared/reference/fal.md). Where
a page shows a placeholder (``{request_id}``, ``...``), a value of the documented shape stands in:
the request id is the UUID from fal's queue docs, the output URL a ``v3.fal.media/files/...`` path as
in the model page's example. The image served for an output URL is a small PNG made here, not fal's.

Re-record the docs cassettes with::

    IDEOCHAR_RECORD=docs .venv/bin/pytest tests/providers/fal -k cassette
"""

from __future__ import annotations

from typing import Any

import httpx
from fal_fakes import sse

from conftest import make_image

#: https://fal.ai/docs/inference-api (queue): the request id used in its examples.
REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
QUEUE_JOB = f"https://queue.fal.run/fal-ai/ideogram/requests/{REQUEST_ID}"
#: https://fal.ai/models/fal-ai/ideogram/character/api (output example: one image and a seed).
OUTPUT_URL = "https://v3.fal.media/files/panda/ideogram-character-output.png"
SEED = 123456
#: The model page's input example passes its reference as a fal CDN URL.
REFERENCE_URL = "https://v3.fal.media/files/koala/character-reference.png"
IMAGE_URL = "https://v3.fal.media/files/tiger/scene.png"
MASK_URL = "https://v3.fal.media/files/tiger/scene-mask.png"

#: Submit: https://fal.ai/docs/inference-api -- "request_id, response_url, status_url, cancel_url" and
#: ``status: IN_QUEUE``; ``queue_position`` from the older queue docs.
SUBMITTED: dict[str, Any] = {
    "status": "IN_QUEUE",
    "request_id": REQUEST_ID,
    "response_url": QUEUE_JOB,
    "status_url": f"{QUEUE_JOB}/status",
    "cancel_url": f"{QUEUE_JOB}/cancel",
    "queue_position": 0,
}
#: Status documents: https://fal.ai/docs/inference-api/queue/status-stream (the same fields as a poll).
IN_QUEUE: dict[str, Any] = {"status": "IN_QUEUE", "queue_position": 0, "response_url": QUEUE_JOB}
IN_PROGRESS: dict[str, Any] = {
    "status": "IN_PROGRESS",
    "response_url": QUEUE_JOB,
    "logs": [{"message": "Generating image", "level": "INFO", "source": "stdout", "timestamp": "2025-01-01T00:00:00"}],
}
COMPLETED: dict[str, Any] = {
    "status": "COMPLETED",
    "response_url": QUEUE_JOB,
    "logs": [{"message": "Done", "level": "INFO", "source": "stdout", "timestamp": "2025-01-01T00:00:04"}],
    "metrics": {"inference_time": 4.1},
}
#: Output: the model page's example, ``{"images": [{"url": ...}], "seed": 123456}``.
OUTPUT: dict[str, Any] = {"images": [{"url": OUTPUT_URL}], "seed": SEED}
#: Cancel: https://fal.ai/docs/inference-api/queue/cancel -- body ``status``.
CANCELLED: dict[str, Any] = {"status": "CANCELLATION_REQUESTED"}
#: Storage, as fal_client 1.0.3 reads it (reference/fal.md §3): the CDN token's four fields
#: (``CDNTokenManager._refresh_token``), then ``access_url`` from ``POST {base_url}/files/upload``.
CDN_TOKEN: dict[str, Any] = {
    "token": "cdn-token-documented-shape",
    "token_type": "Bearer",
    "base_url": "https://v3.fal.media",
    "expires_at": "2099-01-01T00:00:00+00:00",
}
UPLOADED_URL = "https://v3.fal.media/files/lion/reference-upload.png"
CDN_UPLOADED: dict[str, Any] = {"access_url": UPLOADED_URL}


def docs_handler() -> Any:
    """A fal that answers every step of the queue protocol with the documented bodies above.

    Polling answers 202 IN_QUEUE, 202 IN_PROGRESS, then 200 COMPLETED (the documented status codes).
    """
    polls = [(202, IN_QUEUE), (202, IN_PROGRESS), (200, COMPLETED)]

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.url.host == "rest.fal.ai" and path == "/storage/auth/token":
            return httpx.Response(200, json=CDN_TOKEN)
        if request.url.host == "v3.fal.media" and path == "/files/upload":
            return httpx.Response(200, json=CDN_UPLOADED)
        if request.url.host == "v3.fal.media":
            return httpx.Response(200, content=make_image(96, 64, "PNG"), headers={"content-type": "image/png"})
        if request.method == "POST":
            return httpx.Response(200, json=SUBMITTED)
        if request.method == "PUT":
            return httpx.Response(202, json=CANCELLED)
        if path.endswith("/status/stream"):
            body = sse(IN_QUEUE, IN_PROGRESS, COMPLETED)
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        if path.endswith("/status"):
            status, document = polls.pop(0) if polls else (200, COMPLETED)
            return httpx.Response(status, json=document)
        if path.endswith(f"/requests/{REQUEST_ID}"):
            return httpx.Response(200, json=OUTPUT)
        return httpx.Response(404, json={"detail": "Not Found"})

    return handler

"""A small web service: post a prompt and a photo, get a job id at once, fetch the images once the vendor
has called back.

    POST /jobs                  form fields ``prompt`` and ``photo`` -> 202 {"job_id", "status_url"}
    GET  /jobs/{job_id}         {"status": "pending" | "done" | "failed", "images": [...urls], "error"}
    GET  /jobs/{job_id}/images/{n}   the n-th image (PNG or JPEG)
    POST /hooks/...             the vendors' callbacks (ideochar.webhooks), never called by users

No request waits for a model: ``client.submit`` returns once the vendor has admitted the job, and the
callback (fal or Replicate) finishes it in the background, downloading and journaling the images. The
journal is the only state: any worker process, or a restart, reads jobs from it. A job whose callback
never comes is finished by polling (the receiver's sweep, run by the lifespan).

Run it against the built-in emulator (no key, no network)::

    python webhook_service.py --emulator        # then open http://127.0.0.1:8000/docs

or against the vendors, where they can reach you at a public https URL::

    FAL_KEY=... IDEOCHAR_PUBLIC_URL=https://you.example python webhook_service.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ideochar import Client, IdeocharError, webhooks
from ideochar.journal import JobNotFound, JobRecord
from ideochar.request import Generate

#: The largest photo accepted (every vendor's limit for the character reference).
MAX_PHOTO_BYTES = 10 * 1024 * 1024
#: Where the vendors' callbacks arrive, under the service's public URL.
HOOKS_PATH = "/hooks"


def create_app(client: Client) -> FastAPI:
    """The service for ``client``, whose jobs carry this service's ``{public URL}/hooks/`` as callback URL."""
    receiver = webhooks.WebhookReceiver(client)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with receiver.running():  # finishes jobs whose callback never came; drains on shutdown
            yield
        receiver.close()

    api = FastAPI(title="ideochar webhook service", lifespan=lifespan)
    api.state.receiver = receiver
    api.mount(HOOKS_PATH, receiver.app)

    @api.post("/jobs", status_code=202)
    async def create_job(
        prompt: Annotated[str, Form(min_length=1)], photo: Annotated[UploadFile, File()]
    ) -> dict[str, str]:
        data = await photo.read(MAX_PHOTO_BYTES + 1)
        if len(data) > MAX_PHOTO_BYTES:
            raise HTTPException(413, f"the photo is over {MAX_PHOTO_BYTES // (1024 * 1024)} MB")
        try:
            request = client.build_request(Generate(), prompt, data)
            job_id = await run_in_threadpool(submit, client, request)
        except IdeocharError as exc:
            raise HTTPException(_status_of(exc), str(exc)) from None
        return {"job_id": job_id, "status_url": f"/jobs/{job_id}"}

    @api.get("/jobs/{job_id}")
    async def show_job(job_id: str) -> dict[str, Any]:
        record = await run_in_threadpool(_job, client, job_id)
        status = {"succeeded": "done", "partial": "done", "failed": "failed"}.get(record.status, "pending")
        return {
            "job_id": record.id,
            "status": status,
            "images": [f"/jobs/{record.id}/images/{n}" for n in range(len(record.outputs))],
            "error": record.error_message,
        }

    @api.get("/jobs/{job_id}/images/{index}")
    async def image(job_id: str, index: int) -> Response:
        record = await run_in_threadpool(_job, client, job_id)
        if not 0 <= index < len(record.outputs):
            raise HTTPException(404, "no such image")
        saved = await run_in_threadpool(record.outputs[index].read)
        return Response(saved.data, media_type=saved.content_type)

    return api


def submit(client: Client, request: Any) -> str:
    """Send the job; its id once the vendor has admitted it (the images come with the callback)."""
    handle = client.submit(request)
    return str(handle.job_id)


def _job(client: Client, job_id: str) -> JobRecord:
    journal = client.journal
    assert journal is not None
    try:
        record = journal.job(job_id)
    except JobNotFound:
        raise HTTPException(404, "no such job") from None
    if record.id != job_id:  # the journal takes unique prefixes; a service answers exact ids only
        raise HTTPException(404, "no such job")
    return record


def _status_of(error: IdeocharError) -> int:
    from ideochar import InvalidRequest, OverBudget, Unsupported

    if isinstance(error, (InvalidRequest, Unsupported)):
        return 422
    if isinstance(error, OverBudget):
        return 402
    return 502


def client_from_environment(public_url: str, emulator: str | bool = False) -> Client:
    """A client for the service: users' photos arrive as bytes (no paths, no URLs fetched for them), and
    every job carries the service's callback URL."""
    return Client(
        os.environ.get("IDEOCHAR_PROVIDERS", "fal,replicate"),
        emulator=emulator,
        accept_inputs={"bytes"},
        webhook_url=f"{public_url.rstrip('/')}{HOOKS_PATH}/",
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--emulator", action="store_true", help="use the built-in emulator (no key, no network)")
    args = parser.parse_args()
    public = os.environ.get("IDEOCHAR_PUBLIC_URL", f"http://{args.host}:{args.port}")
    uvicorn.run(create_app(client_from_environment(public, emulator=args.emulator)), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

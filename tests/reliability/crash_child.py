"""A job that kills itself (SIGKILL, no cleanup) at a chosen stage: run by test_crash_resume.py.

``python -m reliability.crash_child '<json>'`` with ``vendor``, ``stage``, ``base_urls``, ``journal``,
``out``, ``options``. Stages, in the order a job meets them:

``before_submit``      the job is journaled, nothing is sent yet
``submit_in_flight``   the billable request is about to leave (it never reaches the vendor)
``submit_answered``    the vendor admitted the job and answered; the answer is not yet read
``after_submit``       the vendor's id is journaled (the ``submitted`` event)
``while_polling``      the job is admitted and being followed (a status request, or a ``progress`` event)
``while_downloading``  the first bytes of the output image have arrived
``after_saving``       the image is saved and journaled; the job is not marked finished

Prints ``FINISHED`` if the job ended before the stage was met (the stage does not exist for it).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import httpx

from conftest import CANARY_KEY
from ideochar import Client
from ideochar.events import Event
from ideochar.journal import Journal


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


#: Uploads of the reference (Replicate's files, fal's storage) come before the billable request: not it.
_UPLOADS = ("/v1/files", "/rest/storage/", "/cdn/files/", "/cdn/uploads/")


def _admitting(request: httpx.Request) -> bool:
    path = request.url.path
    return request.method == "POST" and not path.endswith("/cancel") and not any(u in path for u in _UPLOADS)


class KillingTransport(httpx.HTTPTransport):
    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self.submitted = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.stage == "submit_in_flight" and _admitting(request):
            _die()
        polling = request.method == "GET" and "/_emulator/files/" not in request.url.path
        if self.stage == "while_polling" and self.submitted and polling:
            _die()  # the job is admitted and being followed: its status is being asked for
        response = super().handle_request(request)
        if self.stage == "submit_answered" and _admitting(request):
            _die()
        if self.stage == "while_downloading" and "/_emulator/files/" in request.url.path:
            for _ in response.stream:  # type: ignore[union-attr]
                _die()  # at the first chunk
        return response


def main() -> None:
    args: dict[str, Any] = json.loads(sys.argv[1])
    stage = args["stage"]
    if stage == "before_submit":
        create = Journal.create_job

        def create_then_die(self: Journal, *a: Any, **k: Any) -> Any:
            create(self, *a, **k)
            _die()

        Journal.create_job = create_then_die  # type: ignore[method-assign]
    if stage == "after_saving":
        record = Journal.record_outputs

        def record_then_die(self: Journal, *a: Any, **k: Any) -> Any:
            record(self, *a, **k)
            _die()

        Journal.record_outputs = record_then_die  # type: ignore[method-assign]

    transport = KillingTransport(stage)

    def on_event(event: Event) -> None:
        if (stage, event.kind) in (("after_submit", "submitted"), ("while_polling", "progress")):
            _die()
        if event.kind == "submitted":
            transport.submitted = True

    vendor = args["vendor"]
    client = Client(
        [vendor],
        http=httpx.Client(transport=transport),
        base_urls=args["base_urls"],
        keys={vendor: CANARY_KEY},
        options={vendor: args.get("options", {})},
        journal=args["journal"],
        output_dir=args["out"],
        config=False,
        deadline_seconds=30,
        on_event=on_event,
        limits={vendor: {"requests_per_minute": 1_000_000}},
    )
    # A path, as from the command line: the journal keeps its name and hash (never the bytes), so a job
    # stopped before anything was sent can be submitted again.
    result = client.generate("a knight in the rain", args["reference"], seed=11)
    print("FINISHED", len(result.images))


if __name__ == "__main__":
    main()

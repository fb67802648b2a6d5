"""A process whose job waits for a concurrency slot: ``python -m regressions.job_owner '<json>'``.

Arguments (JSON): ``vendor``, ``base_urls``, ``journal``, ``out``, ``reference``, ``limits`` (the client's),
``holder_images`` and ``waiter_images``. A first job (``holder_images``) takes the vendor's slots and keeps
them (the emulator is told to leave it stuck); once the vendor admitted it, a second job (``waiter_images``)
is started and waits for a slot. When the journal holds both, the process prints ``WAITING <job id>`` (the
waiting job's) and runs on until it is killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from ideochar import Client
from ideochar.events import Event
from ideochar.journal import Journal

KEY = "job-owner-key"
PROMPT = "a knight in the rain"


def _run(client: Client, reference: str, images: int, seed: int) -> None:
    try:
        client.generate(PROMPT, reference, seed=seed, num_images=images)
    except Exception as exc:  # the parent judges from the ledger and the journal; this only keeps a trace
        print("ENDED", type(exc).__name__, flush=True)


def main() -> None:
    args: dict[str, Any] = json.loads(sys.argv[1])
    vendor = args["vendor"]
    admitted = threading.Event()

    def on_event(event: Event) -> None:
        if event.kind == "submitted" or (event.kind == "attempt_started" and vendor == "ideogram"):
            admitted.set()

    client = Client(
        [vendor],
        base_urls=args["base_urls"],
        keys={vendor: KEY},
        journal=args["journal"],
        output_dir=args["out"],
        config=False,
        environ={},
        deadline_seconds=120,
        limits={vendor: args["limits"]},
        on_event=on_event,
    )
    run = (client, args["reference"])
    threading.Thread(target=_run, args=(*run, args["holder_images"], 1), daemon=True).start()
    if not admitted.wait(30):
        raise SystemExit("the first job was never admitted")
    time.sleep(0.2)  # the holder's request is at the vendor, holding its slots
    threading.Thread(target=_run, args=(*run, args["waiter_images"], 2), daemon=True).start()
    with Journal(args["journal"]) as journal:
        for _ in range(300):
            jobs = journal.jobs(limit=None)
            if len(jobs) == 2:
                print("WAITING", jobs[0].id, flush=True)
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the second job was never journaled")
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()

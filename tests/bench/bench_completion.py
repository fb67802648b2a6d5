"""Figure 3: how soon the caller has a fal queue job's result once the job is done.

Measured from the emulator's own completion time (the wall-clock moment its job board marked the job
done, read back from the emulator afterwards) to the moment the client call returns in the caller's
process (``time.time()`` in both: the same machine's clock). The emulator runs in its own process; before
each call its model time is set to a random value between 0.3 and 0.5 s, so completion falls at a random
moment relative to any polling schedule (a fixed model time would line up with a fixed poll interval).
Arms, alternating:

* ``ideochar``: ``Client(["fal"]).generate``, which follows fal's status stream (server-sent events).
* ``ideochar + journal``: the same with the journal on, as by default (in a temporary folder): the result
  comes back once the job and its image are recorded on disk.
* ``ideochar (polling fallback)``: the same with ``extra={"fal": {"status": "poll"}}``, what ideochar
  does when the stream is refused (polls start at 50 ms and back off by 1.5x).
* ``fal_client``: ``fal_client.SyncClient.subscribe`` (polls every 100 ms), pointed at the emulator
  (reference/fal.md §6 method B). It returns the result JSON with the image's URL.
* ``fal_client + download``: the same, then the image GET, so the caller holds the image as ideochar's does.
* ``raw httpx (stream)``: the same four requests as ideochar by hand (``_raw.fal_generate``): the floor
  for a client that follows the status stream.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _raw import fal_generate
from _support import EmulatorProcess, alternate, emulator_admin, log, ms, reps, summary, write_result

import ideochar

PROMPT = "the character waiting for a train"
#: Each job's model time is drawn from this range (seconds).
MODEL_SECONDS = (0.3, 0.5)
ENDPOINT = "fal-ai/ideogram/character"


def completed_at(url: str, request_id: str) -> float:
    """The wall-clock time at which the emulator marked fal job ``request_id`` done."""
    job = emulator_admin(url, f"/_emulator/jobs/fal/{request_id}")
    return float(job["finished_at"])


def _reference(folder: Path) -> tuple[Path, str]:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (128, 128), (30, 90, 160)).save(buffer, "PNG")
    path = folder / "reference.png"
    path.write_bytes(buffer.getvalue())
    return path, "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _set_model_seconds(url: str, seconds: float) -> None:
    httpx.post(f"{url}/_emulator/config", json={"model_seconds": seconds}, timeout=10).raise_for_status()


def main() -> None:
    import random

    rng = random.Random(5)
    rounds = reps(40, 4)
    import fal_client
    import fal_client.client as fal_module

    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(model_seconds=MODEL_SECONDS[0]) as emulator:
        url = emulator.url
        reference, data_uri = _reference(Path(tmp))
        fal_module.QUEUE_URL_FORMAT = fal_module.RUN_URL_FORMAT = f"{url}/fal/"
        official = fal_client.SyncClient(key="ideochar-emulator-key")
        ours = ideochar.Client(["fal"], emulator=url, journal=False, options={"fal": {"image_transport": "data_uri"}})
        journaled = ideochar.Client(
            ["fal"],
            emulator=url,
            journal=Path(tmp) / "journal.sqlite3",
            options={"fal": {"image_transport": "data_uri"}},
        )
        http = httpx.Client()
        arguments = {
            "prompt": PROMPT,
            "reference_image_urls": [data_uri],
            "image_size": {"width": 1024, "height": 1024},
        }

        def ideochar_call(status: str, client: ideochar.Client) -> Callable[[], tuple[str, float]]:
            extra = {"fal": {"status": status}}

            def call() -> tuple[str, float]:
                result = client.generate(PROMPT, reference, aspect_ratio="1:1", extra=extra)
                returned = time.time()
                assert result.image.data and result.vendor_request_id
                return result.vendor_request_id, returned

            return call

        def fal_call(download: bool) -> Callable[[], tuple[str, float]]:
            def call() -> tuple[str, float]:
                ids: list[str] = []
                output = official.subscribe(ENDPOINT, arguments=arguments, on_enqueue=ids.append)
                if download:
                    http.get(output["images"][0]["url"]).raise_for_status()
                returned = time.time()
                return ids[0], returned

            return call

        def raw_call() -> tuple[str, float]:
            ids: list[str] = []
            fal_generate(http, url, reference, PROMPT, ids)
            return ids[0], time.time()

        arms: dict[str, Callable[[], tuple[str, float]]] = {
            "ideochar": ideochar_call("stream", ours),
            "ideochar + journal": ideochar_call("stream", journaled),
            "ideochar (polling fallback)": ideochar_call("poll", ours),
            "fal_client": fal_call(False),
            "fal_client + download": fal_call(True),
            "raw httpx (stream)": raw_call,
        }
        for call in arms.values():  # warm: connections, plugins, schemas
            call()
        samples: dict[str, list[float]] = {name: [] for name in arms}
        for _, name in alternate(list(arms), rounds):
            _set_model_seconds(url, rng.uniform(*MODEL_SECONDS))
            request_id, returned = arms[name]()
            samples[name].append(ms(returned - completed_at(url, request_id)))
        ours.close()
        journaled.close()
        http.close()
    log("completion notice: " + ", ".join(f"{n} {summary(v)['median']:.1f} ms" for n, v in samples.items()))
    write_result(
        "completion",
        {
            "unit": "ms",
            "model_seconds": MODEL_SECONDS,
            "samples": samples,
            "summary": {name: summary(values) for name, values in samples.items()},
            "target": {"median_ms": 10.0},
            "method": (
                f"The emulator (its own process) holds each job for a random {MODEL_SECONDS[0]}-{MODEL_SECONDS[1]} s "
                "of model time (set before each call, so completion falls anywhere in a polling interval). Latency is "
                "from the emulator's own completion time (the wall-clock moment its job board marked the job "
                "done, read back from it afterwards) to the moment the client call returns in the caller's "
                "process. ideochar follows fal's status stream (server-sent events), with its journal off "
                "(*+ journal*: on, as by default, so the image is also written to disk before the call returns); "
                "*polling fallback* is what it "
                "does when the stream is refused (polls from 50 ms, backing off 1.5x); `fal_client.subscribe` polls "
                "every 100 ms and returns the result JSON (image URL); *+ download* adds the image GET so the caller "
                "holds the image, as with ideochar; *raw httpx (stream)* makes ideochar's four requests by hand, the "
                "floor for a client that follows the stream. Arms alternate in a shuffled order."
            ),
        },
    )


if __name__ == "__main__":
    main()

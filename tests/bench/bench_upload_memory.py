"""Figure 5: client memory while a 10 MB reference, given as a path, is uploaded.

Segmind gets it as a streamed multipart body, fal as a data URI inside the JSON body. Each arm runs in
a fresh process: one small call first (modules, schemas, connections), then the peak-RSS mark is reset
(``/proc/self/clear_refs``) and the 10 MB call is made. The *upload* peak is read when the response
to the upload arrives (an httpx response hook), so downloading the result image is not counted; the
whole call's peak is recorded too. Comparisons, in the same run:

* Segmind: raw httpx posting the same form with the file object (httpx streams file objects).
* fal: raw httpx building the same JSON the obvious way (read, base64, ``json=``), and ``fal_client``
  (``encode_file`` then ``subscribe``), pointed at the emulator (reference/fal.md §6 method B).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _support import HERE, EmulatorProcess, log, peak_rss_bytes, reps, reset_peak_rss, rss_bytes, write_result

PROMPT = "the character on a mountain pass"
#: The reference limit every vendor documents is 10 MB; the file is just under 10,000,000 bytes.
TARGET_BYTES = 10_000_000
ARMS = ("ideochar segmind", "raw httpx segmind", "ideochar fal", "raw httpx fal", "fal_client fal")


def make_reference(path: Path) -> int:
    """A PNG of noise (incompressible) just under 10 MB, so the file really is that large."""
    import random

    from PIL import Image

    side = 1800
    rng = random.Random(11)
    Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)).save(path, "PNG", compress_level=1)
    size = path.stat().st_size
    assert 9_000_000 < size <= 10 * 1024 * 1024, size
    return size


class _Probe:
    """Reads the peak RSS when the first response arrives: the upload is over by then."""

    def __init__(self) -> None:
        self.upload_peak: int | None = None

    def on_response(self, response: Any) -> None:
        if self.upload_peak is None:
            self.upload_peak = peak_rss_bytes()

    async def aon_response(self, response: Any) -> None:
        self.on_response(response)


def _call(arm: str, url: str, reference: Path, probe: _Probe) -> Callable[[], Any]:
    import httpx

    hooks = {"response": [probe.on_response]}
    if arm.startswith("ideochar"):
        import ideochar

        provider = arm.split()[-1]
        http = httpx.Client(event_hooks=hooks, timeout=120)
        # fal's arm measures the data URI body (the default uploads to fal's storage first instead).
        options = {"fal": {"image_transport": "data_uri"}} if provider == "fal" else None
        client = ideochar.Client([provider], emulator=url, journal=False, http=http, options=options)
        return lambda: client.generate(PROMPT, reference, aspect_ratio="1:1")
    if arm == "raw httpx segmind":
        http = httpx.Client(event_hooks=hooks, timeout=120)

        def segmind() -> bytes:
            with reference.open("rb") as file:
                response = http.post(
                    f"{url}/segmind/v1/ideogram-character",
                    headers={"x-api-key": "k"},
                    data={"prompt": PROMPT, "rendering_speed": "Default", "aspect_ratio": "1:1"},
                    files={"character_reference_image": (reference.name, file, "image/png")},
                )
            response.raise_for_status()
            return response.content

        return segmind
    if arm == "raw httpx fal":
        from _raw import fal_generate

        http = httpx.Client(event_hooks=hooks, timeout=120)
        return lambda: fal_generate(http, url, reference, PROMPT)
    if arm == "fal_client fal":
        return _fal_client(url, reference, probe)
    raise ValueError(arm)


def _fal_client(url: str, reference: Path, probe: _Probe) -> Callable[[], Any]:
    import fal_client
    import fal_client.client as fal_module

    fal_module.QUEUE_URL_FORMAT = fal_module.RUN_URL_FORMAT = f"{url}/fal/"
    client = fal_client.SyncClient(key="ideochar-emulator-key")
    client._client.event_hooks["response"].append(probe.on_response)

    def subscribe() -> Any:
        uri = fal_client.encode_file(reference)
        return client.subscribe(
            "fal-ai/ideogram/character",
            arguments={"prompt": PROMPT, "reference_image_urls": [uri], "image_size": {"width": 1024, "height": 1024}},
        )

    return subscribe


def _arm(arm: str, url: str, reference: Path, small: Path) -> None:
    """One arm in this fresh process; prints a JSON line for the parent."""
    import gc

    probe = _Probe()
    _call(arm, url, small, probe)()  # warm: imports, schemas, connections
    call = _call(arm, url, reference, probe)
    gc.collect()
    reset_peak_rss()
    probe.upload_peak = None
    baseline = rss_bytes()
    call()
    whole = peak_rss_bytes()
    upload = probe.upload_peak if probe.upload_peak is not None else whole
    print(
        json.dumps(
            {
                "arm": arm,
                "baseline_rss_bytes": baseline,
                "upload_peak_above_baseline_bytes": upload - baseline,
                "call_peak_above_baseline_bytes": whole - baseline,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm")
    parser.add_argument("--url")
    parser.add_argument("--reference")
    parser.add_argument("--small")
    args = parser.parse_args()
    if args.arm:
        _arm(args.arm, args.url, Path(args.reference), Path(args.small))
        return
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(model_seconds=0.0) as emulator:
        reference = Path(tmp) / "reference.png"
        size = make_reference(reference)
        small = Path(tmp) / "small.png"
        from PIL import Image

        Image.new("RGB", (64, 64), (10, 120, 200)).save(small, "PNG")
        for _ in range(reps(3, 1)):
            for arm in ARMS:
                command = [
                    sys.executable,
                    str(HERE / "bench_upload_memory.py"),
                    "--arm",
                    arm,
                    "--url",
                    emulator.url,
                    "--reference",
                    str(reference),
                    "--small",
                    str(small),
                ]
                out = subprocess.run(command, capture_output=True, text=True, timeout=300)
                if out.returncode != 0:
                    log(f"upload memory {arm} failed: {out.stderr[-1500:]}")
                    runs.append({"arm": arm, "error": out.stderr[-1500:]})
                    continue
                result = json.loads(out.stdout.strip().splitlines()[-1])
                log(f"upload memory {arm}: {result['upload_peak_above_baseline_bytes'] / 1e6:.1f} MB above baseline")
                runs.append(result)
    write_result(
        "upload_memory",
        {
            "file_bytes": size,
            "data_uri_bytes": len("data:image/png;base64,") + 4 * ((size + 2) // 3),
            "runs": runs,
            "target": {"multipart_above_baseline_bytes": 2_000_000, "data_uri_above_baseline_factor": 1.5},
        },
    )


if __name__ == "__main__":
    main()

"""Each built-in vendor as a fuzzable fake: its valid answer for every step, and a flow watcher.

A :class:`VendorCase` knows, for any request its provider sends, which step it is (``submit``,
``status``, ``stream``, ``result``, ``image``, ...) and the answer a healthy vendor would give. The
fuzzing server (:class:`FuzzServer`) answers each request with a fuzzed version of that answer
(see :mod:`reliability.strategies`) and records what reached it. :class:`Watch` wraps an exchange:
it records every step, answers ``Sleep`` at once (backoff costs no wall time here), and counts the
requests that may admit a billable job.

The fakes are written from ``reference/`` (fal.md, vendors.md), not from the providers' own tests.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from hypothesis import strategies as st
from PIL import Image

from conftest import CANARY_KEY, make_image
from ideochar._secrets import Secret
from ideochar.errors import IdeocharError
from ideochar.events import Event
from ideochar.exchange import Send, Sleep, Step
from ideochar.plugins import collect_providers, plugin_manager
from ideochar.request import CharacterRequest
from ideochar.spec import CallContext, Provider
from reliability.strategies import PNG, Outcome, Valid, outcome

T = TypeVar("T")
RID = "req-5e1d7a90c4b2"
REFERENCE_URL = "https://example.com/hero.png"
LOCAL_REFERENCE = make_image(40, 40, "PNG", "blue")


def providers() -> dict[str, Provider]:
    """The installed providers, found through entry points exactly as a user's client finds them."""
    return collect_providers(plugin_manager())


def big_png(min_bytes: int) -> bytes:
    """A real PNG of random pixels at least ``min_bytes`` long (forces Replicate's upload path)."""
    import os

    side = int((min_bytes / 3) ** 0.5) + 16
    img = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    img.save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


Classifier = Callable[[httpx.Request], str]
Answers = Callable[[str, httpx.Request], Valid]


@dataclass(frozen=True)
class VendorCase:
    """One way of using one vendor (a mode, a kind of reference) as a fuzz target."""

    id: str
    provider: str
    extra: dict[str, Any]
    reference: Any
    num_images: int
    classify: Classifier
    valid: Answers
    key_hosts: Callable[[str], bool]
    """Hosts that may receive the key (the configured API and the vendor's documented hosts)."""
    base_urls: dict[str, str] = field(default_factory=dict)
    refused: Callable[[httpx.Response], bool] = lambda response: response.status_code == 429
    """Answers that prove the vendor did not admit the job (DESIGN: a 429 before admission), so the
    router may send the request again without a double charge."""

    def request(self, **fields: Any) -> CharacterRequest:
        values: dict[str, Any] = {
            "prompt": "a knight in the rain",
            "reference": self.reference,
            "num_images": self.num_images,
            "seed": 7,
        }
        if self.extra:
            values["extra"] = {self.provider: self.extra}
        values.update(fields)
        return CharacterRequest(**values)

    def context(
        self, provider: Provider, request: CharacterRequest | None = None, key: str = CANARY_KEY
    ) -> CallContext:
        options = provider.options(request) if request is not None else provider.info.options_model()
        return CallContext(
            provider=self.provider,
            credentials=Secret(key),
            base_urls={**provider.info.base_urls, **self.base_urls},
            options=options,
            job_id="job-reliability",
            user_agent="ideochar-reliability/0",
        )


def _host(request: httpx.Request) -> str:
    return (request.url.host or "").lower()


def _image(n: int = 1) -> Valid:
    return Valid(200, content=PNG, headers=(("content-type", "image/png"),))


# -- fal -----------------------------------------------------------------------------------------------

FAL_QUEUE = "https://queue.fal.run"
FAL_BASE = f"{FAL_QUEUE}/fal-ai/ideogram/requests/{RID}"
FAL_IMAGE = "https://v3.fal.media/files/rabbit/out-{i}.png"


def _fal_classify(request: httpx.Request) -> str:
    path = request.url.path
    if request.method == "POST":
        return "submit"
    if request.method == "PUT":
        return "cancel"
    if _host(request).endswith("fal.media"):
        return "image"
    if path.endswith("/status/stream"):
        return "stream"
    if path.endswith("/status"):
        return "status"
    if "/requests/" in path:
        return "result"
    return "input"


def _fal_output(n: int) -> dict[str, Any]:
    return {
        "images": [
            {
                "url": FAL_IMAGE.format(i=i),
                "content_type": "image/png",
                "file_name": f"out-{i}.png",
                "file_size": len(PNG),
            }
            for i in range(n)
        ],
        "seed": 7,
    }


def _fal_valid(n: int, run: bool = False) -> Answers:
    def valid(kind: str, request: httpx.Request) -> Valid:
        if kind == "submit" and run:
            return Valid(200, json=_fal_output(n), headers=(("x-fal-request-id", RID),))
        if kind == "submit":
            return Valid(
                200,
                json={
                    "request_id": RID,
                    "status": "IN_QUEUE",
                    "queue_position": 0,
                    "status_url": f"{FAL_BASE}/status",
                    "response_url": FAL_BASE,
                    "cancel_url": f"{FAL_BASE}/cancel",
                },
            )
        if kind == "stream":
            return Valid(
                200,
                sse=(
                    {"status": "IN_QUEUE", "queue_position": 1},
                    {"status": "IN_PROGRESS", "logs": []},
                    {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 1.5}},
                ),
            )
        if kind == "status":
            return Valid(
                200,
                json={"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 1.5}, "response_url": FAL_BASE},
            )
        if kind == "result":
            return Valid(200, json=_fal_output(n))
        if kind in ("image", "input"):
            return _image()
        return Valid(404, json={"detail": "Not Found"})

    return valid


def _fal_refused(response: httpx.Response) -> bool:
    """429, or an ingress 502/503/504 without ``x-fal-request-id``: fal's edge answered before any app
    saw the request (reference/fal.md §2.2, "Make submits idempotent by design")."""
    ingress = response.status_code in (502, 503, 504) and not response.headers.get("x-fal-request-id", "").strip()
    return response.status_code == 429 or ingress


def _fal_hosts(host: str) -> bool:
    return any(host == d or host.endswith("." + d) for d in ("fal.run", "fal.ai", "falrun.com"))


# -- Segmind -------------------------------------------------------------------------------------------

SEGMIND_API = "https://api.segmind.com"
SEGMIND_IMAGE = f"https://images.segmind.com/outputs/{RID}.jpeg"


def _segmind_classify(request: httpx.Request) -> str:
    path = request.url.path
    if request.method == "POST":
        return "submit_v2" if path.startswith("/v2/") else "submit_v1"
    if _host(request) == "api.segmind.com" and path.endswith("/status"):
        return "status"
    if _host(request) == "api.segmind.com" and "/requests/" in path:
        return "result"
    if _host(request) == "images.segmind.com":
        return "image"
    return "input"


def _segmind_valid(kind: str, request: httpx.Request) -> Valid:
    from reliability.strategies import JPEG

    if kind == "submit_v1":
        return Valid(
            200,
            content=JPEG,
            headers=(
                ("content-type", "image/jpeg"),
                ("x-request-id", RID),
                ("x-seed-value", "7"),
                ("x-cost", "0.1875"),
                ("x-remaining-credits", "4.8"),
            ),
        )
    if kind == "submit_v2":
        return Valid(
            200,
            json={
                "request_id": RID,
                "status": "QUEUED",
                "status_url": f"{SEGMIND_API}/v2/requests/{RID}/status",
                "response_url": f"{SEGMIND_API}/v2/requests/{RID}",
            },
        )
    if kind == "status":
        return Valid(200, json={"status": "COMPLETED", "request_id": RID})
    if kind == "result":
        return Valid(
            200,
            json={
                "status": "COMPLETED",
                "output": SEGMIND_IMAGE,
                "request_id": RID,
                "metrics": {"cost": 0.1875, "remaining_credits": 4.6, "inference_time": 12.0},
            },
        )
    if kind == "image":
        return Valid(200, content=JPEG, headers=(("content-type", "image/jpeg"),))
    return _image()


def _segmind_hosts(host: str) -> bool:
    return host == "segmind.com" or host.endswith(".segmind.com")


# -- Ideogram ------------------------------------------------------------------------------------------

IDEOGRAM_IMAGE = "https://ideogram.ai/api/images/ephemeral/out-{i}.png?exp=1&signature=abc"


def _ideogram_classify(request: httpx.Request) -> str:
    if request.method == "POST":
        return "submit"
    if _host(request) == "ideogram.ai":
        return "image"
    return "input"


def _ideogram_valid(n: int) -> Answers:
    def valid(kind: str, request: httpx.Request) -> Valid:
        if kind == "submit":
            data = [
                {
                    "url": IDEOGRAM_IMAGE.format(i=i),
                    "is_image_safe": True,
                    "seed": 7 + i,
                    "prompt": "a knight",
                    "resolution": "1024x1024",
                    "style_type": "AUTO",
                }
                for i in range(n)
            ]
            return Valid(200, json={"created": "2026-01-10T16:19:34Z", "data": data})
        return _image()

    return valid


def _ideogram_hosts(host: str) -> bool:
    return host == "api.ideogram.ai"


# -- Replicate -----------------------------------------------------------------------------------------

REPLICATE_API = "https://api.replicate.com"
PREDICTION_ID = "q9r2m1d5xhrj00cs0v8t2b3k7c"
REPLICATE_IMAGE = "https://replicate.delivery/xezq/abc123/output.png"


def _prediction(status: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": PREDICTION_ID,
        "model": "ideogram-ai/ideogram-character",
        "version": "1f8e19",
        "status": status,
        "input": {"prompt": "a knight", "seed": 7},
        "logs": "",
        "output": None,
        "error": None,
        "data_removed": False,
        "urls": {
            "get": f"{REPLICATE_API}/v1/predictions/{PREDICTION_ID}",
            "cancel": f"{REPLICATE_API}/v1/predictions/{PREDICTION_ID}/cancel",
        },
    }
    if status == "succeeded":
        body.update(output=REPLICATE_IMAGE, logs="Using seed: 7\n", metrics={"predict_time": 4.2})
    body.update(fields)
    return body


def _replicate_classify(request: httpx.Request) -> str:
    path = request.url.path
    if request.method == "POST" and path == "/v1/files":
        return "upload"
    if request.method == "POST" and path.endswith("/cancel"):
        return "cancel"
    if request.method == "POST":
        return "submit"
    if _host(request) == "api.replicate.com" and path.startswith("/v1/predictions/"):
        return "status"
    if _host(request) == "replicate.delivery":
        return "image"
    return "input"


def _replicate_valid(kind: str, request: httpx.Request) -> Valid:
    if kind == "submit":
        return Valid(201, json=_prediction("starting"))
    if kind == "status":
        return Valid(200, json=_prediction("succeeded"))
    if kind == "upload":
        return Valid(
            201,
            json={
                "id": "file1",
                "name": "image.png",
                "content_type": "image/png",
                "size": 10,
                "urls": {"get": f"{REPLICATE_API}/v1/files/file1"},
            },
        )
    if kind == "cancel":
        return Valid(200, json=_prediction("canceled"))
    return _image()


def _replicate_hosts(host: str) -> bool:
    return host == "api.replicate.com"


# -- the cases -----------------------------------------------------------------------------------------


def cases(*, big_reference: bytes | None = None) -> list[VendorCase]:
    """Every vendor, in every mode that changes the protocol. ``big_reference`` adds Replicate's upload."""
    found = [
        VendorCase(
            "fal-queue-stream",
            "fal",
            {},
            REFERENCE_URL,
            2,
            _fal_classify,
            _fal_valid(2),
            _fal_hosts,
            refused=_fal_refused,
        ),
        VendorCase(
            "fal-queue-poll",
            "fal",
            {"status": "poll"},
            LOCAL_REFERENCE,
            1,
            _fal_classify,
            _fal_valid(1),
            _fal_hosts,
            refused=_fal_refused,
        ),
        VendorCase(
            "fal-run",
            "fal",
            {"mode": "run"},
            REFERENCE_URL,
            2,
            _fal_classify,
            _fal_valid(2, run=True),
            _fal_hosts,
            refused=_fal_refused,
        ),
        VendorCase("segmind-v1", "segmind", {}, LOCAL_REFERENCE, 1, _segmind_classify, _segmind_valid, _segmind_hosts),
        VendorCase(
            "segmind-v2", "segmind", {"mode": "v2"}, REFERENCE_URL, 1, _segmind_classify, _segmind_valid, _segmind_hosts
        ),
        VendorCase(
            "ideogram", "ideogram", {}, LOCAL_REFERENCE, 2, _ideogram_classify, _ideogram_valid(2), _ideogram_hosts
        ),
        VendorCase(
            "ideogram-url-reference",
            "ideogram",
            {},
            REFERENCE_URL,
            1,
            _ideogram_classify,
            _ideogram_valid(1),
            _ideogram_hosts,
        ),
        VendorCase(
            "replicate", "replicate", {}, LOCAL_REFERENCE, 1, _replicate_classify, _replicate_valid, _replicate_hosts
        ),
    ]
    if big_reference is not None:
        found.append(
            VendorCase(
                "replicate-upload",
                "replicate",
                {},
                big_reference,
                1,
                _replicate_classify,
                _replicate_valid,
                _replicate_hosts,
            )
        )
    installed = providers()
    return [case for case in found if case.provider in installed]


# -- watching a flow -----------------------------------------------------------------------------------


@dataclass
class Watch:
    """Records what an exchange does. Sleeps are answered at once (and recorded)."""

    steps: list[Step] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    admitting: list[httpx.Request] = field(default_factory=list)

    def wrap(self, flow: Generator[Any, Any, T]) -> Generator[Any, Any, T]:
        answer: Any = None
        failure: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.throw(failure) if failure is not None else flow.send(answer)
                except StopIteration as stop:
                    value: T = stop.value
                    return value
                answer, failure = None, None
                if isinstance(step, Sleep):
                    self.sleeps.append(step.seconds)
                    continue
                self.steps.append(step)
                if isinstance(step, Event):
                    self.events.append(step)
                if isinstance(step, Send) and step.admits:
                    self.admitting.append(step.request)
                try:
                    answer = yield step
                except Exception as exc:  # a driver's error, thrown back into the flow
                    failure = exc
        finally:
            flow.close()

    def is_admitting(self, request: httpx.Request) -> bool:
        return any(request is r for r in self.admitting)


class TooManyRequests(AssertionError):
    """The exchange kept sending after the network had been down for long: it would never end."""


@dataclass
class FuzzServer:
    """The fake network: answers each request with a fuzzed version of the vendor's valid answer.

    After ``budget`` requests the network goes down for good (connect errors), so every correct
    exchange must end; one that sends more than ``limit`` requests fails the test.
    """

    case: VendorCase
    draw: Callable[[Any], Any]
    watch: Watch
    budget: int = 14
    limit: int = 200
    seen: list[tuple[str, httpx.Request, Outcome]] = field(default_factory=list)
    key_leaks: list[str] = field(default_factory=list)
    echoed: bool = False
    """True once an answer carried the key (a URL built from it then proves nothing about the client)."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if len(self.seen) >= self.limit:
            raise TooManyRequests(f"{self.case.id}: more than {self.limit} requests: {self.trace()[-5:]}")
        kind = self.case.classify(request)
        self._check_key(request)
        if request.url.scheme not in ("http", "https") or not request.url.host:
            # What a real transport does (MockTransport would answer, and httpx then fail on cookies).
            result = Outcome(raises=httpx.UnsupportedProtocol(f"unsupported URL {request.url}"), mode="bad_url")
        elif len(self.seen) >= self.budget:
            result = Outcome(raises=httpx.ConnectError("network down"), mode="network_down")
        else:
            result = self.draw(outcome(self.case.valid(kind, request)))
        self.seen.append((kind, request, result))
        if result.response is not None:
            sent = list(result.response.headers.values())
            with contextlib.suppress(httpx.ResponseNotRead):  # a body that fails mid-way is never whole
                sent.append(result.response.content.decode("latin-1"))
            self.echoed = self.echoed or any(CANARY_KEY in text for text in sent)
        if result.raises is not None:
            raise result.raises
        assert result.response is not None
        return result.response

    def _check_key(self, request: httpx.Request) -> None:
        in_url = CANARY_KEY in str(request.url) and not self.echoed
        carried = any(CANARY_KEY in value for value in request.headers.values()) or in_url
        if carried and not self.case.key_hosts(_host(request)):
            self.key_leaks.append(f"{request.method} {request.url.scheme}://{request.url.host}{request.url.path}")

    def admissions(self) -> int:
        """Admitting requests that reached the vendor (connect errors prove one did not)."""
        return sum(
            1
            for _, req, res in self.seen
            if self.watch.is_admitting(req)
            and res.reached_server
            and not (res.response is not None and self.case.refused(res.response))
        )

    def trace(self) -> list[str]:
        return [f"{kind}:{res.mode}" for kind, _, res in self.seen]


def flatten(error: BaseException) -> Iterator[BaseException]:
    """An error and the errors an AllProvidersFailed carries."""
    yield error
    for inner in getattr(error, "errors", []) or []:
        yield from flatten(inner)


def is_typed(error: BaseException) -> bool:
    return isinstance(error, IdeocharError)


data_strategy = st.data()

"""Helpers for the webhook tests: signing like the vendors, serving an app on loopback, and the stand-ins
for client features that are landing separately.

**Stand-ins (until the client has them).** ``client.submit(...)`` (a job handle once the vendor admitted
the job) and the ``webhook_url=`` client option are the client's; while a client lacks them, :func:`submit`
stops a run at its ``submitted`` event (the journal then holds an admitted, resumable job, released by its
run) and :class:`WebhookRouting` adds the callback URL to fal's submit and Replicate's create on the way
out, in each vendor's form. Once the client has both, these use them instead.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import inspect
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ideochar import Client
from ideochar.events import Event
from ideochar.request import CharacterRequest

# -- signing like the vendors (independently of ideochar.webhooks) ----------------------------------------


class FalSigner:
    """A test key pair, its JWKS document, and fal-style signed callbacks."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()

    def jwks(self, *extra: Mapping[str, Any]) -> bytes:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return json.dumps({"keys": [*extra, {"kty": "OKP", "crv": "Ed25519", "x": x}]}).encode()

    def headers(
        self, body: bytes, *, request_id: str = "req-1", user_id: str = "user-1", at: float | None = None
    ) -> dict[str, str]:
        timestamp = str(int(time.time() if at is None else at))
        message = f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": self.key.sign(message).hex(),
        }


def fal_body(request_id: str = "req-1", status: str = "OK") -> bytes:
    payload = {"images": [{"url": "https://v3.fal.media/files/x.png"}], "seed": 1}
    return json.dumps(
        {
            "request_id": request_id,
            "gateway_request_id": request_id,
            "status": status,
            "payload": payload,
            "error": None,
        }
    ).encode()


REPLICATE_SECRET = "whsec_" + base64.b64encode(b"a test signing secret of 32 bytes").decode()


def replicate_headers(body: bytes, *, secret: str = REPLICATE_SECRET, message_id: str = "msg_1",
                      at: float | None = None) -> dict[str, str]:  # fmt: skip
    timestamp = str(int(time.time() if at is None else at))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def replicate_body(prediction: str = "p1", status: str = "succeeded") -> bytes:
    return json.dumps({"id": prediction, "status": status, "output": "https://replicate.delivery/x.png"}).encode()


# -- serving an ASGI app on loopback ------------------------------------------------------------------------


@contextlib.contextmanager
def serving(app: Any = None, *, factory: Callable[[str], Any] | None = None) -> Iterator[str]:
    """``app`` (or ``factory(root URL)``'s app) under uvicorn on 127.0.0.1, a free port, in a thread; yields
    its root URL. The socket is bound first, so an app that must know its own URL can be built with it."""
    from ideochar.emulator.server import _bind, _uvicorn_server

    sock = _bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    if factory is not None:
        app = factory(f"http://127.0.0.1:{port}")
    server = _uvicorn_server(app, access_log=False, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# -- stand-ins for submit and webhook_url ------------------------------------------------------------------


def client_has_webhooks() -> bool:
    """Whether the client takes ``webhook_url=`` and has ``submit`` (then the stand-ins step aside)."""
    from ideochar.client import _Base

    return hasattr(Client, "submit") and "webhook_url" in inspect.signature(_Base.__init__).parameters


class WebhookRouting(httpx.BaseTransport):
    """Adds the callback URL to fal's queue submits (``?fal_webhook=``) and Replicate's creates
    (``webhook`` + ``webhook_events_filter: ["completed"]``), as the adapters do with ``webhook_url``."""

    def __init__(self, inner: httpx.BaseTransport, hooks: str) -> None:
        self.inner = inner
        self.hooks = hooks.rstrip("/")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and "/fal/fal-ai/ideogram/character" in path:
            request = _copy(request, url=request.url.copy_add_param("fal_webhook", f"{self.hooks}/fal"))
        elif request.method == "POST" and "/replicate/v1/models/" in path:
            body = json.loads(request.read())
            body.update(webhook=f"{self.hooks}/replicate", webhook_events_filter=["completed"])
            request = _copy(request, content=json.dumps(body).encode())
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _copy(request: httpx.Request, *, url: httpx.URL | None = None, content: bytes | None = None) -> httpx.Request:
    headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
    return httpx.Request(
        request.method, url or request.url, headers=headers, content=request.read() if content is None else content,
        extensions=request.extensions,
    )  # fmt: skip


class _Stop(Exception):
    """Raised from the event observer at ``submitted``: the run stops there, the job admitted and journaled."""

    def __init__(self, event: Event) -> None:
        super().__init__(event.vendor_request_id)
        self.event = event


_submitting = threading.local()


def _stop_at_submitted(event: Event) -> None:
    if event.kind == "submitted" and getattr(_submitting, "on", False):
        raise _Stop(event)


@dataclass(frozen=True)
class Handle:
    """What ``client.submit`` returns (the stand-in's copy of it)."""

    job_id: str
    provider: str | None
    vendor_request_id: str | None


def webhook_client(
    emulator_url: str, hooks: str | None, providers: list[str], *, on_event: Callable[[Event], None] | None = None,
    **options: Any,
) -> Client:  # fmt: skip
    """A client against the emulator whose jobs carry ``hooks`` as their callback URL (None: no callbacks)."""
    if client_has_webhooks():
        return Client(providers, emulator=emulator_url, webhook_url=hooks, on_event=on_event, **options)

    def observe(event: Event) -> None:
        _stop_at_submitted(event)
        if on_event is not None:
            on_event(event)

    transport: httpx.BaseTransport = httpx.HTTPTransport(retries=0)
    if hooks is not None:
        transport = WebhookRouting(transport, hooks)
    http = httpx.Client(transport=transport, follow_redirects=False)
    client = Client(providers, emulator=emulator_url, http=http, on_event=observe, **options)
    client._webhook_test_http = http  # type: ignore[attr-defined]
    return client


def close_client(client: Client) -> None:
    client.close()
    http = getattr(client, "_webhook_test_http", None)
    if http is not None:
        http.close()


def submit(client: Client, request: CharacterRequest) -> Handle:
    """``client.submit(request)``, or the stand-in: the run stops once the vendor admitted the job."""
    if client_has_webhooks():
        handle = client.submit(request)  # type: ignore[attr-defined]
        return Handle(handle.job_id, handle.provider, handle.vendor_request_id)
    _submitting.on = True
    try:
        client.run(request)
    except _Stop as stopped:
        return Handle(str(stopped.event.job_id), stopped.event.provider, stopped.event.vendor_request_id)
    finally:
        _submitting.on = False
    raise AssertionError("the job finished before it was admitted: nothing was left for a callback")


def reference_path() -> str:
    return os.path.join(os.path.dirname(__file__), "..", "..", "src", "ideochar", "assets", "reference.png")

"""Helpers for the webhook tests: signing like the vendors, serving an app on loopback, clients whose jobs
carry a callback URL."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

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


# -- clients whose jobs carry a callback URL ----------------------------------------------------------------


@dataclass(frozen=True)
class Handle:
    """What a test needs of ``client.submit``'s handle: the job and its (one) vendor id."""

    job_id: str
    provider: str
    vendor_request_id: str


def webhook_client(
    emulator_url: str, hooks: str | None, providers: list[str], *, on_event: Callable[[Event], None] | None = None,
    **options: Any,
) -> Client:  # fmt: skip
    """A client against the emulator whose jobs carry ``hooks`` as their callback URL (None: no callbacks)."""
    return Client(providers, emulator=emulator_url, webhook_url=hooks, on_event=on_event, **options)


def close_client(client: Client) -> None:
    client.close()


def submit(client: Client, request: CharacterRequest) -> Handle:
    """``client.submit(request)``: returns once the vendor admitted the job (one call: one vendor id)."""
    handle = client.submit(request)
    [vendor_id] = handle.vendor_request_ids
    return Handle(handle.job_id, handle.provider, vendor_id)


def reference_path() -> str:
    return os.path.join(os.path.dirname(__file__), "..", "..", "src", "ideochar", "assets", "reference.png")

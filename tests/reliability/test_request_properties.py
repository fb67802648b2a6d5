"""Issue 7.3, first half: a random request is refused locally, or it becomes a payload the vendor accepts.

For random neutral requests, valid and invalid (every field, every kind of image input):

* building the request either succeeds or raises :class:`~ideochar.errors.InvalidRequest` naming a
  field; never a raw ValidationError, TypeError or OSError;
* a valid request, given to the client for each vendor in turn (through the router, so fan-out and
  capability checks apply), either is refused before anything reaches the vendor (InvalidRequest,
  Unsupported: the vendor saw no request) or runs to the end against that vendor's emulator, whose
  routes validate what they receive as strictly as the vendor documents (a payload it refuses comes
  back as RequestRejected and fails the property);
* the emulator's ledger shows at most one admission per call the router planned: no double charge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import assume, given

from conftest import CANARY_KEY
from ideochar import Client
from ideochar.errors import IdeocharError, InvalidRequest, Unsupported
from ideochar.request import CharacterRequest
from reliability.harness import providers
from reliability.profile import fuzz_settings, scaled
from reliability.requests_strategy import INPUT_HOST, request_kwargs, serve_input

testing = pytest.importorskip("ideochar.emulator.testing")

VENDORS = sorted({"fal", "segmind", "ideogram", "replicate"} & set(providers()))
#: Per-minute plan limits (Segmind's free plan: 5) would make a fanned-out request wait a minute here.
UNLIMITED = {vendor: {"requests_per_minute": 1_000_000} for vendor in VENDORS}


def _build(kwargs: dict[str, Any]) -> CharacterRequest | InvalidRequest:
    if "__construction_error__" in kwargs:
        error = kwargs["__construction_error__"]
        assert isinstance(error, InvalidRequest), f"building an operation raised {type(error).__name__}: {error!r}"
        return error
    try:
        return CharacterRequest(**kwargs)
    except InvalidRequest as exc:
        return exc


@fuzz_settings
@given(kwargs=request_kwargs())
def test_a_random_request_is_built_or_refused_with_invalid_request_naming_a_field(kwargs: dict[str, Any]) -> None:
    try:
        built = _build(kwargs)
    except Exception as exc:
        pytest.fail(f"{type(exc).__name__} escaped CharacterRequest(**{kwargs!r:.300}): {exc}")
    if isinstance(built, InvalidRequest):
        assert built.field, f"InvalidRequest without a field: {built}"
        assert str(built).strip()


@dataclass
class Network(httpx.BaseTransport):
    """The caller's image host (``inputs.test``) and, for everything else, the in-process emulator."""

    emulator: httpx.BaseTransport
    vendor: list[httpx.Request] = field(default_factory=list)
    inputs: list[httpx.Request] = field(default_factory=list)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == INPUT_HOST:
            self.inputs.append(request)
            return serve_input(request)
        self.vendor.append(request)
        return self.emulator.handle_request(request)


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[Any, Network]]:
    app = testing.emulator_app(model_seconds=0)
    transport = testing.SyncASGITransport(app)
    try:
        yield app, Network(transport)
    finally:
        transport.close()


def _billed(app: Any) -> dict[str, int]:
    return {vendor: testing.billed(app, vendor) for vendor in VENDORS}


@scaled(2)
@given(kwargs=request_kwargs())
def test_a_valid_request_runs_on_every_vendors_strict_emulator_or_is_refused_before_sending(
    kwargs: dict[str, Any], emulator: tuple[Any, Network]
) -> None:
    built = _build(kwargs)
    assume(isinstance(built, CharacterRequest))
    assert isinstance(built, CharacterRequest)
    app, network = emulator
    testing.reset(app)  # a fresh account each example (the emulated Segmind balance runs out)
    for vendor in VENDORS:
        network.vendor.clear()
        before = _billed(app)
        events: list[Any] = []
        client = Client(
            [vendor],
            http=httpx.Client(transport=network),
            base_urls=testing.base_urls(app),
            keys={vendor: CANARY_KEY},
            journal=False,
            config=False,
            deadline_seconds=60,
            on_event=events.append,
            limits=UNLIMITED,
        )
        try:
            with client:
                calls = client.plan(built).candidates[0].quote.calls
                result = client.run(built)
        except (InvalidRequest, Unsupported) as exc:
            if network.vendor:
                pytest.fail(f"{vendor}: {type(exc).__name__} after sending {network.vendor}: {exc}")
            continue
        except IdeocharError as exc:
            body = getattr(exc, "body", None)
            pytest.fail(
                f"{vendor} refused what ideochar sent for {built!r:.400}: {type(exc).__name__}: {exc} {body!r:.600}"
            )
        assert result.images, f"{vendor}: no image for {built!r:.300}"
        assert len(result.images) + len(result.failures) >= built.num_images
        added = _billed(app)[vendor] - before[vendor]
        assert 1 <= added <= calls, f"{vendor}: {added} admissions for {calls} planned call(s)"

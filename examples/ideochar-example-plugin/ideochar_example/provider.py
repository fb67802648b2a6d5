"""A provider for a made-up vendor, "Example Images", whose API is one synchronous JSON call:

    POST {api}/v1/images  {"prompt", "reference_url" | "reference_data", "speed": "fast"|"normal"|"best", "seed"?}
    200 -> {"id": "...", "images": [{"url": "...", "seed": 1}]}
    401 -> {"message": "..."}   429 -> Retry-After   5xx -> unavailable

It shows every part of the provider contract: declaring capabilities and prices, translating the neutral
request with a pure function, yielding requests instead of doing I/O, mapping errors at one place, and
downloading images with the shared helper.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from ideochar import (
    AuthenticationFailed,
    CallContext,
    CharacterRequest,
    ProviderError,
    ProviderInfo,
    ProviderOutput,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from ideochar.events import Event
from ideochar.exchange import Send, download_image, read_json
from ideochar.retry import parse_retry_after
from ideochar.spec import Exchange, Provider

_SPEEDS = {"turbo": "fast", "default": "normal", "quality": "best"}


class ExampleOptions(BaseModel):
    """What ``extra={"example": {...}}`` may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    watermark: bool = False


def to_wire(request: CharacterRequest, options: ExampleOptions) -> dict[str, Any]:
    """Neutral request -> the vendor's JSON. Pure, so it is tested without HTTP."""
    reference = request.reference
    body: dict[str, Any] = {"prompt": request.prompt, "speed": _SPEEDS[request.speed]}
    if reference.url:
        body["reference_url"] = reference.url
    else:
        body["reference_data"] = reference.data_uri()
    if request.seed is not None:
        body["seed"] = request.seed
    if options.watermark:
        body["watermark"] = True
    return body


def error_for(response: httpx.Response) -> ProviderError:
    """The vendor's error answers -> ideochar's error classes, in one table."""
    status = response.status_code
    try:
        message = str(response.json().get("message", response.text))
    except ValueError:
        message = response.text[:200]
    if status in (401, 403):
        return AuthenticationFailed(f"Example Images refused the key: {message}", status=status)
    if status == 429:
        return RateLimited(
            "Example Images is rate limiting", status=status, retry_after=parse_retry_after(response.headers)
        )
    if status >= 500:
        return ProviderUnavailable(f"Example Images failed ({status}): {message}", status=status)
    return RequestRejected(f"Example Images rejected the request: {message}", status=status)


class ExampleProvider(Provider):
    info = ProviderInfo(
        name="example",
        title="Example Images",
        operations=frozenset({"generate"}),
        supported_fields={"generate": frozenset({"seed"})},
        prices_usd={"generate": {"turbo": Decimal("0.02"), "default": Decimal("0.04"), "quality": Decimal("0.08")}},
        credential_variables=(("EXAMPLE_IMAGES_KEY",),),
        base_urls={"api": "https://api.example-images.test"},
        options_model=ExampleOptions,
    )

    def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        assert isinstance(ctx.options, ExampleOptions)
        response = yield Send(
            httpx.Request(
                "POST",
                ctx.url("api", "/v1/images"),
                json=to_wire(request, ctx.options),
                headers={"authorization": f"Bearer {ctx.credentials.reveal()}", "user-agent": ctx.user_agent},
            ),
            admits=True,  # a lost answer may still be a billed image: never sent twice
        )
        if response.status_code != 200:
            raise error_for(response)
        body = read_json(response)
        yield Event("submitted", vendor_request_id=body["id"])
        images = []
        for item in body["images"]:
            images.append((yield from download_image(item["url"], seed=item.get("seed"))))
        return ProviderOutput(images=images, vendor_request_id=body["id"])

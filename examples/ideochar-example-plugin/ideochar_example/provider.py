"""A provider for a made-up vendor, "Example Images", whose API is one synchronous JSON call:

    POST {api}/v1/images  {"prompt", "reference_url" | "reference_data", "speed": "fast"|"normal"|"best", "seed"?}
    200 -> {"id": "...", "images": [{"url": "...", "seed": 1}]}
    401 -> {"message": "..."}   429 -> Retry-After   5xx -> unavailable

It shows every part of the provider contract: declaring capabilities and prices, translating the neutral
request with a pure function, yielding requests instead of doing I/O, an error table, reading answers through
a wire model, and collecting images with the shared toolkit (``ideochar.toolkit``).
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
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.exchange import Send
from ideochar.spec import Exchange, Provider
from ideochar.toolkit import (
    CLIENT_ERRORS,
    SERVER_ERRORS,
    ErrorRule,
    NamedImage,
    Seed,
    Unreadable,
    VendorModel,
    collect_images,
    error_for,
    parse_reply,
    read_failure,
    statuses,
)

_SPEEDS = {"turbo": "fast", "default": "normal", "quality": "best"}


class ExampleOptions(BaseModel):
    """What ``extra={"example": {...}}`` may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    watermark: bool = False


class ImageItem(VendorModel):
    url: str
    seed: Seed | None = None


class Answer(VendorModel):
    """The vendor's answer, read through a model: a malformed optional field is dropped, never the id."""

    id: str
    images: list[ImageItem]


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


#: The vendor's error answers -> ideochar's error classes: one table, read top to bottom.
RULES = (
    ErrorRule("key", AuthenticationFailed, "Example Images refused the key: {detail}", statuses(401, 403)),
    ErrorRule("rate limit", RateLimited, "Example Images is rate limiting: {detail}", statuses(429)),
    ErrorRule("server", ProviderUnavailable, "Example Images failed (HTTP {status}): {detail}", SERVER_ERRORS),
    ErrorRule("refused", RequestRejected, "Example Images rejected the request: {detail}", CLIENT_ERRORS),
)


def error_from_response(response: httpx.Response) -> ProviderError:
    return error_for(read_failure(response), RULES, provider="example", title="Example Images")


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
            raise error_from_response(response)
        answer = parse_reply(response, Answer)
        if isinstance(answer, Unreadable):
            raise UnexpectedResponse(f"Example Images' answer is unreadable ({answer.reason})", body=answer.body)
        yield Event("submitted", vendor_request_id=answer.id)
        collected = yield from collect_images(
            [NamedImage(item.url, seed=item.seed) for item in answer.images],
            asked=request.num_images,
            most=self.info.max_images_per_call,
            provider=self.info.name,
            title=self.info.title,
        )
        if not collected.images:
            raise collected.errors[0] if collected.errors else UnexpectedResponse("Example Images returned no image")
        return ProviderOutput(
            images=collected.images,
            vendor_request_id=answer.id,
            failures=collected.failures,
            warnings=collected.warnings,
        )

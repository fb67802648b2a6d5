"""Ideogram's native API: Ideogram 3.0 with a character reference, generate / edit / remix.

The shape of one job::

    [GET <reference URL> ...]                  each URL input is fetched here, bounded (Ideogram
                                               takes files only), then checked: sizes, formats
    POST /v1/ideogram-v3/{generate|edit|inpaint|remix}   multipart, Api-Key, answered when done
    GET  data[i].url ...                       every image downloaded at once (the links expire)

Why it is built this way:

* The POST is the only request that can bill, it is synchronous (the answer holds the images) and
  Ideogram has no idempotency key: it is sent once (``admits=True``), with a long read timeout
  (:data:`GENERATE_TIMEOUT_SECONDS`); a lost answer is OutcomeUnknown, never a second generation.
* The routes return no job id, so a request in flight cannot be found again: a lost answer is
  unknown. The answer itself is kept: its image URLs go into a ``submitted`` event (journaled before
  the first download), so a process killed while downloading is resumed by downloading them again
  (:meth:`IdeogramProvider.resume`), within the links' lifetime, and nothing is sent twice.
* Everything that can be checked before the POST is: a URL input is fetched first (http(s) only,
  size-capped, redirects bounded, bytes sniffed) and then held to the rules that need its pixels
  (the reference mask has the reference's size, the edit mask the image's). A failure there is
  InvalidRequest naming the field, and nothing has been sent to Ideogram.
* An image the safety check withheld (``is_image_safe: false``, no URL) is billed all the same.
  It never vanishes: it becomes an :class:`~ideochar.result.ImageFailure` (``billed="yes"``) and a
  ``withheld`` warning on the result; when every image was withheld the call raises ContentFiltered
  marked billed. A download that fails after its retries is kept the same way, so the other paid
  images are still returned.
* The key goes only to the configured API base; images are downloaded without it (their URLs are
  signed).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ideochar._constants import MAX_REFERENCE_BYTES
from ideochar.errors import ContentFiltered, InvalidRequest, ProviderError, UnexpectedResponse
from ideochar.events import Event
from ideochar.exchange import Send, fetch_input
from ideochar.media import ImageInput, is_grayscale
from ideochar.request import CharacterRequest, Speed
from ideochar.spec import CallContext, Exchange, Provider, ProviderInfo, ProviderOutput
from ideochar.toolkit import Collected, NamedImage, Unreadable, collect_images, parse_reply
from ideochar_ideogram.errors import PROVIDER, error_from_response
from ideochar_ideogram.mapping import UNSET, request_images, route_path, to_form
from ideochar_ideogram.wire import HEADER_KEY, EditPath, GenerationResponse, ImageObject, MultipartBody

__all__ = ["GENERATE_TIMEOUT_SECONDS", "INFO", "PRICES_USD", "IdeogramOptions", "IdeogramProvider"]

#: Read timeout of the synchronous POST. Ideogram answers when every image is rendered: a few seconds
#: for one Turbo image, much longer for 8 Quality ones with a reference; 180 s leaves room for that
#: and still ends a hung connection (the job's own deadline bounds it further). Tunable per call.
GENERATE_TIMEOUT_SECONDS = 180.0

#: USD per output image, the same for generate, edit and remix, withheld images included
#: (ideogram.ai/features/api-pricing, "3.0 with Character Reference").
PRICES_USD: Mapping[Speed, Decimal] = MappingProxyType(
    {"turbo": Decimal("0.10"), "default": Decimal("0.15"), "quality": Decimal("0.20")}
)

#: Masks Ideogram takes only in shades of grey: the edit mask ("A black and white image") and the character
#: reference mask ("a grayscale image"), reference/ideogram-openapi.json (EditImageRequestV3 and the
#: character_reference_images_mask of every v3 route). Neutral field paths.
GRAYSCALE_FIELDS = ("operation.mask", "reference_mask")

_ALL_FIELDS = frozenset(
    {
        "reference_mask",
        "style",
        "aspect_ratio",
        "resolution",
        "seed",
        "negative_prompt",
        "color_palette",
        "style_codes",
        "style_references",
        "num_images",
        "magic_prompt",
    }
)


class IdeogramOptions(BaseModel):
    """Ideogram-only options: ``extra={"ideogram": {...}}`` or ``Client(options={"ideogram": {...}})``.

    There is deliberately no pass-through for ``style_type`` or ``style_preset``: their other values
    (GENERAL, DESIGN, presets) are not offered with a character reference, and whether the API takes
    them there is unknown.
    """

    # Built on first use, not when the plugin loads (the core does the same, docs/benchmarks.md).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    edit_path: EditPath = "edit"
    """Route for edits: ``"edit"`` (``/v1/ideogram-v3/edit``) or ``"inpaint"`` (the same schema)."""
    timeout_seconds: Annotated[float, Field(gt=0, le=900)] = GENERATE_TIMEOUT_SECONDS
    """How long to wait for the synchronous answer before it counts as lost (OutcomeUnknown)."""


INFO = ProviderInfo(
    name="ideogram",
    title="Ideogram",
    operations=frozenset({"generate", "edit", "remix"}),
    supported_fields={
        "generate": _ALL_FIELDS,
        # EditImageRequestV3 has no negative_prompt, aspect_ratio or resolution: the output keeps
        # the image's size.
        "edit": _ALL_FIELDS - {"negative_prompt", "aspect_ratio", "resolution"},
        "remix": _ALL_FIELDS,
    },
    prices_usd={"generate": PRICES_USD, "edit": PRICES_USD, "remix": PRICES_USD},
    credential_variables=(("IDEOGRAM_API_KEY",),),
    base_urls={"api": "https://api.ideogram.ai"},
    max_images_per_call=8,
    # Per organisation, each image of a request counts (developer.ideogram.ai rate limits).
    max_images_in_flight=10,
    # A job whose answer arrived: its image URLs are journaled before the downloads (module docstring).
    can_resume=True,
    options_model=IdeogramOptions,
    docs_url="https://developer.ideogram.ai/api-reference/api-reference/generate-v3",
    inferred={
        "image_weight": "remix image_weight = clamp(round(strength * 100), 1, 100): both read as how strongly "
        "the input image shapes the result (mapping.image_weight_from_strength)",
        "style_type": "AUTO is sent when no style is given (the schema default GENERAL is not offered with a "
        "character reference; mapping.STYLE_TYPE_WHEN_UNSET)",
        "reference_mask": "the character reference mask is passed through unchanged (its polarity is undocumented)",
        "gateway_timeouts": "504/524 from a gateway are OutcomeUnknown: the synchronous generation may have run",
    },
    defaults=UNSET,
)


class IdeogramProvider(Provider):
    """The Ideogram adapter. Sans-IO: every network step is yielded to the driver."""

    info = INFO

    def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        options = self._options(request, ctx)
        images = request_images(request)
        for field, image in list(images.items()):
            if not image.is_local:
                images[field] = yield from fetch_input(image, field=field)
        _check_fetched(images)
        body = MultipartBody(to_form(request, images))
        headers = {
            HEADER_KEY: ctx.credentials.reveal(),
            "content-type": body.content_type,
            "content-length": str(body.length),
            "accept": "application/json",
            "user-agent": ctx.user_agent,
        }
        url = ctx.url("api", route_path(request.operation_name, options.edit_path))
        http_request = httpx.Request("POST", url, headers=headers, stream=body.stream())
        response = yield Send(http_request, admits=True, timeout=options.timeout_seconds)
        if response.status_code != 200:
            raise error_from_response(response)
        answer = _parse_answer(response)
        # Journaled before the first download: the paid images can be fetched again after a crash.
        yield Event("submitted", status="completed", resume=_resume_state(answer, request.num_images))
        return (yield from _collect(answer, num_images=request.num_images))

    def resume(self, state: Mapping[str, Any], ctx: CallContext) -> Exchange[ProviderOutput]:
        """Download the images of an answer that arrived before the process stopped; sends no POST."""
        try:
            answer = GenerationResponse.model_validate(state.get("answer"))
            num_images = int(state.get("num_images") or len(answer.data))
        except (ValidationError, TypeError, ValueError):
            raise UnexpectedResponse(
                "the journaled Ideogram answer cannot be read; its images cannot be fetched again",
                provider=PROVIDER,
                billed="yes",
                admitted=True,
            ) from None
        return (yield from _collect(answer, num_images=num_images))

    def _options(self, request: CharacterRequest, ctx: CallContext) -> IdeogramOptions:
        """The context's options (client defaults) overlaid by the request's ``extra["ideogram"]``."""
        defaults = ctx.options.model_dump() if isinstance(ctx.options, IdeogramOptions) else None
        options = self.options(request, defaults)
        assert isinstance(options, IdeogramOptions)
        return options


# -- steps (pure, or sub-exchanges used with `yield from`) ---------------------------------------------


def _resume_state(answer: GenerationResponse, num_images: int) -> dict[str, Any]:
    """What a resume needs: the answer as Ideogram gave it (signed image URLs, seeds, prompts)."""
    return {"mode": "answer", "answer": answer.model_dump(mode="json", exclude_none=True), "num_images": num_images}


def _check_fetched(images: Mapping[str, ImageInput]) -> None:
    """The rules that need pixels, held again now that URL inputs are here (the neutral request could
    only check local ones): every image's header must be readable (bytes that only *start* like a
    PNG are refused here, not by Ideogram), masks must match their images' sizes and be grayscale,
    style references must stay within 10 MB in total. Raises InvalidRequest naming the field; nothing
    has been sent."""
    sizes = {field: _dimensions(field, image) for field, image in images.items()}  # every header readable
    for field in GRAYSCALE_FIELDS:
        if field in images:
            _check_grayscale(field, images[field])
    pairs = [("reference_mask", "reference"), ("operation.mask", "operation.image")]
    for field, other in pairs:
        if field not in images or other not in images:
            continue
        a, b = sizes[field], sizes[other]
        if a is not None and b is not None and a != b:
            raise InvalidRequest.for_field(
                field, f"is {a[0]}x{a[1]} but {other} is {b[0]}x{b[1]}; they must be the same size"
            )
    total = sum(image.size or 0 for field, image in images.items() if field.startswith("style_references."))
    if total > MAX_REFERENCE_BYTES:
        raise InvalidRequest.for_field(
            "style_references", f"total {total:,} bytes; the limit is {MAX_REFERENCE_BYTES:,} bytes (10 MB)"
        )


def _check_grayscale(field: str, image: ImageInput) -> None:
    """Ideogram takes masks only in shades of grey (every pixel R = G = B; alpha is ignored). Read in
    bounded memory (media.is_grayscale): a mask is small on disk and can be huge decoded."""
    try:
        grey = is_grayscale(image)
    except InvalidRequest as exc:
        raise InvalidRequest.for_field(field, exc.message) from None
    if not grey:
        raise InvalidRequest.for_field(
            field, "has colour in it; Ideogram takes a grayscale mask only (black = repaint, white = keep)"
        )


def _dimensions(field: str, image: ImageInput) -> tuple[int, int] | None:
    try:
        image.check()  # a complete file within the pixel limit: a fetched URL input is checked here
        return image.dimensions
    except InvalidRequest as exc:  # a header that sniffs right over bytes Pillow cannot read
        raise InvalidRequest.for_field(field, exc.message) from None


def _parse_answer(response: httpx.Response) -> GenerationResponse:
    """The 200 answer, read through the wire model. The request ran, so an unreadable answer may well
    have been billed: the error says so and keeps the body."""
    answer = parse_reply(response, GenerationResponse)
    if isinstance(answer, Unreadable):
        raise UnexpectedResponse(
            f"Ideogram answered 200 with no usable image list ({answer.reason}); the images may have been billed",
            provider=PROVIDER,
            status=200,
            billed="unknown",
            body=answer.body,
            admitted=True,
        )
    return answer


#: Why an image has no URL: Ideogram's safety check kept it back after making it.
WITHHELD = "withheld by Ideogram's safety check (billed; no image is given)"


def _collect(answer: GenerationResponse, *, num_images: int) -> Exchange[ProviderOutput]:
    """Download every image asked for now; account for each one that cannot be had."""
    named = [
        NamedImage(item.url, seed=item.seed, prompt=item.prompt, withheld=WITHHELD if item.withheld else None)
        for item in answer.data
    ]
    collected = yield from collect_images(
        named, asked=num_images, most=INFO.max_images_per_call, provider=PROVIDER, title="Ideogram"
    )
    if not collected.images:
        raise _nothing_delivered(answer, collected)
    return ProviderOutput(
        images=collected.images,
        failures=collected.failures,
        warnings=collected.warnings,
        metadata={"created": answer.created, "images": [_item_metadata(i, item) for i, item in enumerate(answer.data)]},
    )


def _nothing_delivered(answer: GenerationResponse, collected: Collected) -> ProviderError:
    """Why a paid call produced no image: every one withheld (ContentFiltered), or downloads failed."""
    body = {"data": [_item_metadata(i, item) for i, item in enumerate(answer.data)]}
    if not collected.errors:
        return ContentFiltered(
            f"Ideogram's safety check withheld all {collected.withheld} image(s) after generating them; "
            "they are billed all the same",
            provider=PROVIDER,
            status=200,
            billed="yes",
            body=body,
            admitted=True,
        )
    first = collected.errors[0]
    note = f" ({collected.withheld} more withheld by the safety check)" if collected.withheld else ""
    error = type(first)(
        f"none of the {collected.tried} generated image(s) could be downloaded{note}; they are billed: {first.message}",
        provider=PROVIDER,
        status=first.status,
        billed="yes",
        body=first.body,
        admitted=True,
    )
    error.__cause__ = first
    return error


def _item_metadata(index: int, item: ImageObject) -> dict[str, Any]:
    """What Ideogram said about one image, without its (signed, expiring) URL."""
    return {
        "index": index,
        "seed": item.seed,
        "resolution": item.resolution,
        "is_image_safe": item.is_image_safe,
        "style_type": item.style_type,
    }

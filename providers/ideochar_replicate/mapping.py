"""Neutral request -> Replicate wire, as pure functions and tables (no I/O, tested without HTTP).

Replicate's ``ideogram-ai/ideogram-character`` takes title-case enums (``Turbo``, ``Realistic``,
``Auto``), an aspect ratio written ``W:H`` and a resolution written ``WxH`` (the schema's ``"None"``
means unset; we leave the field out instead). Images are strings: an http(s) URL, a data URI
(recommended by Replicate only under 1 MB), or the ``urls.get`` of a file uploaded through
``POST /v1/files``. Which of the three an image becomes is decided here, from what is known locally.
One thing here is not a pure function of the request: a seed is drawn for a request that names none
(:func:`create_body`, with the toolkit's :func:`~ideochar.toolkit.draw_seed`), so that each prediction
can be told apart in Replicate's list, the images of a fan-out differ, and each reports its seed.

Nothing is left to a default the caller did not choose (:data:`UNSET`): speed, style (``Auto`` when
unset), magic prompt and, on a generation, the aspect ratio (``1:1`` when no size is given) are always
sent. ``resolution`` is left out unless given: Replicate's documented default, ``"None"``, is what an
unset resolution means (the aspect ratio decides).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ideochar._constants import MAX_REFERENCE_BYTES
from ideochar.media import ImageInput
from ideochar.request import CharacterRequest, Edit
from ideochar.toolkit import DEFAULT_ASPECT_RATIO, MAX_SEED, draw_seed, int_or_none
from ideochar_replicate.wire import CreatePrediction, PredictionInput, WebhookEvent

__all__ = [
    "CREATE_PATH",
    "DATA_URI_MAX_BYTES",
    "DEFAULT_WAIT_SECONDS",
    "MAX_SEED",
    "MODEL",
    "NEUTRAL_STATUS",
    "TITLE_CASE",
    "UNSET",
    "ImageRoute",
    "ReplicateOptions",
    "create_body",
    "create_headers",
    "image_route",
    "prediction_input",
    "prompt_from_logs",
    "request_images",
    "seed_from_logs",
]

MODEL = "ideogram-ai/ideogram-character"
#: The model endpoint runs the latest version (a pinned version would miss ``image``/``mask``).
CREATE_PATH = f"/v1/models/{MODEL}/predictions"
FILES_PATH = "/v1/files"

#: Replicate: data URIs are "only recommended if the file is less than 1MB" (input-files docs).
#: Measured on the raw file, before base64 (which adds a third).
DATA_URI_MAX_BYTES = 1_000_000

#: Our choice: the create request is not held (no ``Prefer: wait``). Held, it answers only when the
#: prediction is done or the wait is over, and until then the prediction id is unknown: a crash or a
#: lost connection in that window leaves a paid job that can only be found again in Replicate's list
#: of predictions (``reconcile.py``). Unheld, Replicate answers at once with the id and ``starting``
#: [V: HTTP API reference], the ``submitted`` event (which the journal records) follows within one
#: round trip, and polling, fast at first, costs well under a second of latency.
DEFAULT_WAIT_SECONDS = 0

#: Replicate's schema caps the seed at 2147483647, the toolkit's MAX_SEED [V: the model's input schema].
MAX_REPLICATE_SEED = MAX_SEED

#: What goes on the wire for a neutral setting left unset (``ProviderInfo.defaults`` and the docs say it).
UNSET: Mapping[str, str] = {
    "speed": "`rendering_speed` always sent; default: Default",
    "style": "`style_type` Auto",
    "magic_prompt": "auto: `magic_prompt_option` Auto",
    "size": "`aspect_ratio` 1:1 (a resolution as given); edit: the image's size",
    "seed": "drawn by ideochar, sent, reported on each image",
}

#: The one table of title-case enums: wire field -> neutral value -> Replicate value.
TITLE_CASE: Mapping[str, Mapping[str, str]] = {
    "rendering_speed": {"turbo": "Turbo", "default": "Default", "quality": "Quality"},
    "style_type": {"auto": "Auto", "fiction": "Fiction", "realistic": "Realistic"},
    "magic_prompt_option": {"auto": "Auto", "on": "On", "off": "Off"},
}

#: Replicate status -> neutral progress word (``progress`` events).
NEUTRAL_STATUS: Mapping[str, str] = {
    "starting": "queued",
    "processing": "running",
    "succeeded": "completed",
    "failed": "failed",
    "canceled": "canceled",
    "aborted": "aborted",
}

ImageRoute = Literal["url", "data_uri", "upload"]

# A Go-style duration, as in Replicate's examples (``Cancel-After: 1m``); the full grammar is [I].
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ReplicateOptions(BaseModel):
    """Vendor-only options, from ``extra={"replicate": {...}}`` or the client's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wait: int = Field(default=DEFAULT_WAIT_SECONDS, ge=0, le=60)
    """Seconds to hold the create request open for a finished answer (``Prefer: wait=N``). 0, the
    default, sends no ``Prefer``: the prediction id comes back at once and is polled. A wait widens
    the window in which an interruption loses the id (the job is then looked up in Replicate's list)."""
    cancel_after: str | None = None
    """A deadline for the prediction itself (``Cancel-After``), e.g. ``"30s"``, ``"5m"``, ``"1h30m"``
    (a number is taken as seconds). Past it Replicate aborts a prediction that has not started (not
    charged) or cancels a running one (charged for the time it ran)."""
    data_uri_max_bytes: int = Field(default=DATA_URI_MAX_BYTES, ge=0, le=MAX_REFERENCE_BYTES)
    """Local images smaller than this travel inline as data URIs; larger ones are uploaded first."""
    webhook: str | None = Field(default=None, pattern=r"^https://\S+$")
    """An https URL Replicate calls as the prediction progresses (for the caller's own systems;
    ideochar still polls for the result)."""
    webhook_events_filter: list[WebhookEvent] | None = Field(default=None, min_length=1)

    @field_validator("cancel_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value <= 0:
                raise ValueError("must be a positive duration")
            return f"{value:g}s"
        if isinstance(value, str):
            text = value.strip()
            if not _DURATION.match(text):
                raise ValueError(f"{value!r} is not a duration like '30s', '5m' or '1h30m'")
            total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
            if total <= 0:
                raise ValueError("must be a positive duration")
            return text
        return value


def image_route(image: ImageInput, data_uri_max_bytes: int = DATA_URI_MAX_BYTES) -> ImageRoute:
    """How ``image`` reaches Replicate: a URL as is, a small local image inline, a large one uploaded."""
    if not image.is_local:
        return "url"
    size = image.size or 0
    return "data_uri" if size < data_uri_max_bytes else "upload"


def request_images(request: CharacterRequest) -> Iterator[tuple[str, str, ImageInput]]:
    """``(wire field, neutral field path, image)`` for every image Replicate takes from ``request``.

    ``reference_mask`` and ``style_references`` have no Replicate field; ``Provider.check`` warns
    about them, so they are not sent (and never uploaded).
    """
    yield "character_reference_image", "reference", request.reference
    if isinstance(request.operation, Edit):
        yield "image", "operation.image", request.operation.image
        yield "mask", "operation.mask", request.operation.mask


def prediction_input(request: CharacterRequest, images: Mapping[str, str], seed: int | None = None) -> PredictionInput:
    """The ``input`` object. ``images`` maps wire field -> the string to send (URL or data URI).

    Speed, style and magic prompt are always sent explicitly (:data:`UNSET`); a generation always says
    its size (an aspect ratio, 1:1 when none is given, or the resolution). ``seed`` stands in for the
    request's when it has none. An edit carries no size: the neutral request forbids one, and Replicate
    ignores it with an image.
    """
    title = TITLE_CASE
    edit = isinstance(request.operation, Edit)
    ratio = request.aspect_ratio or (DEFAULT_ASPECT_RATIO if request.resolution is None else None)
    return PredictionInput(
        prompt=request.prompt,
        character_reference_image=images["character_reference_image"],
        rendering_speed=title["rendering_speed"][request.speed],
        style_type=title["style_type"][request.style or "auto"],
        magic_prompt_option=title["magic_prompt_option"][request.magic_prompt],
        aspect_ratio=None if edit else ratio,
        resolution=request.resolution,
        seed=request.seed if request.seed is not None else seed,
        image=images.get("image"),
        mask=images.get("mask"),
    )


def create_body(request: CharacterRequest, images: Mapping[str, str], options: ReplicateOptions) -> dict[str, Any]:
    """The exact JSON body of the create request.

    It always carries a seed: the caller's, else one drawn here (:func:`draw_seed`). A random seed is
    what Replicate uses anyway; drawing it here makes each prediction's input distinct, so a
    prediction whose answer was lost is told apart in Replicate's list from its siblings (the other
    calls of a fanned-out request have the same prompt and images) and found again (``reconcile.py``).
    """
    return CreatePrediction(
        input=prediction_input(request, images, draw_seed() if request.seed is None else None),
        webhook=options.webhook,
        webhook_events_filter=options.webhook_events_filter if options.webhook else None,
    ).payload()


def create_headers(options: ReplicateOptions) -> dict[str, str]:
    """``Prefer`` and ``Cancel-After`` for the create request (auth is added by the provider)."""
    headers: dict[str, str] = {}
    if options.wait > 0:
        headers["Prefer"] = f"wait={options.wait}"
    if options.cancel_after:
        headers["Cancel-After"] = options.cancel_after
    return headers


# Replicate prints these in the prediction logs [V3: a mirror of the model page's example logs].
_SEED_LINE = re.compile(r"Using seed:\s*(\d+)")
_PROMPT_LINE = re.compile(r"Prompt used:\s*(.+)")


def seed_from_logs(logs: str | None) -> int | None:
    """The seed the model used, from ``Using seed: N`` in the logs (Replicate returns no seed field)."""
    match = _SEED_LINE.search(logs or "")
    return int_or_none(match.group(1)) if match else None


def prompt_from_logs(logs: str | None) -> str | None:
    """The prompt after MagicPrompt, from ``Prompt used: ...`` (its line), when the logs have it."""
    match = _PROMPT_LINE.search(logs or "")
    return match.group(1).strip() if match else None

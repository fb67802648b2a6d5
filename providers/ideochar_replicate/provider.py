"""Replicate's ``ideogram-ai/ideogram-character``: predictions, polled to the end, as a sans-IO exchange.

The shape of one job::

    [POST /v1/files ...]                     only for a local image of 1 MB or more (not billable)
    POST /v1/models/ideogram-ai/ideogram-character/predictions   [Prefer: wait=N] [Cancel-After: 5m]
        -> submitted event (prediction id, get/cancel URLs: enough to resume)
    [GET /v1/predictions?created_after=...]  only when the create's answer was lost: found again by its input
    GET  urls.get ... until succeeded | failed | canceled | aborted     (fast first, then slower)
    GET  <output URL>                        the image, downloaded now (Replicate deletes it after 1 h)

Why it is built this way:

* The create request is the only one that can bill, and Replicate has no idempotency key, so it is
  sent once (``admits=True``), never a second time. It is not held (no ``Prefer: wait`` unless the
  caller asks): Replicate answers at once with the id, so the window in which a crash loses the id is
  one round trip. Its ``marker`` (``reconcile.create_marker``) is journaled with the intent to send.
* A lost answer (dropped connection, timeout, gateway 502/504, unreadable body) is looked up in
  Replicate's list of predictions by its input and time (``reconcile.py``): found, the job goes on as
  if the answer had come; not found, or not told apart from another, it is OutcomeUnknown.
* The ``submitted`` event is yielded the moment the id is known, before any other request, so a
  process killed afterwards can :meth:`ReplicateProvider.resume` from the journal.
* Polls and downloads are GETs: repeated freely on transport errors, 5xx and 429.
* The API token goes only to the configured API base URL. A ``urls.get`` from a reply is followed
  only when it lies under that base; otherwise the URL is rebuilt from the id. Output images are
  fetched without the token unless they, too, are under the API base.
* An upload (``POST /v1/files``) creates no billable job, so it is sent as a plain request; its lost
  answer is *not* repeated here either: the exchange ends with ProviderUnavailable, and the router
  repeats it only when it provably never left (connect error). An orphan file costs nothing and
  expires on Replicate's side.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx
from pydantic import ValidationError

from ideochar._constants import MAX_RETRY_AFTER_SECONDS, POLL_INITIAL_SECONDS, POLL_MAX_SECONDS
from ideochar.errors import (
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.exchange import Send, Sleep, download_image, read_json
from ideochar.media import ImageInput
from ideochar.multipart import FilePart, MultipartBody
from ideochar.request import CharacterRequest, Speed
from ideochar.result import GeneratedImage
from ideochar.spec import CallContext, Exchange, Provider, ProviderInfo, ProviderOutput
from ideochar_replicate.errors import PROVIDER, error_from_prediction, error_from_response
from ideochar_replicate.mapping import (
    CREATE_PATH,
    FILES_PATH,
    MODEL,
    NEUTRAL_STATUS,
    ReplicateOptions,
    create_body,
    create_headers,
    image_route,
    prompt_from_logs,
    request_images,
    seed_from_logs,
)
from ideochar_replicate.reconcile import (
    CLOCK_SKEW_SECONDS,
    LIST_PATH,
    LOST_ANSWER_LOOKS_SECONDS,
    Listing,
    create_marker,
    find_lost_create,
    find_prediction,
)
from ideochar_replicate.wire import Prediction, UploadedFile

__all__ = ["ReplicateProvider"]

#: The create request is held up to ``wait`` seconds (none by default); allow this much more for the answer.
CREATE_ANSWER_MARGIN_SECONDS = 30.0
#: Consecutive failed polls (transport errors, 5xx, 429, unreadable bodies) before giving up. The
#: prediction keeps running; the error carries its id so the job can be resumed later.
POLL_FAILURES_TOLERATED = 6

_PRICES: dict[Speed, Decimal] = {"turbo": Decimal("0.10"), "default": Decimal("0.15"), "quality": Decimal("0.20")}


def _poll_delay(polls: int) -> float:
    """Seconds before the next poll: doubling from ``POLL_INITIAL_SECONDS`` up to ``POLL_MAX_SECONDS``."""
    return float(min(POLL_INITIAL_SECONDS * (2.0 ** min(polls, 30)), POLL_MAX_SECONDS))


class ReplicateProvider(Provider):
    """Ideogram V3 Character on Replicate: generate and edit (inpainting), one image per prediction."""

    info = ProviderInfo(
        name="replicate",
        title="Replicate",
        operations=frozenset({"generate", "edit"}),
        supported_fields={
            "generate": frozenset({"style", "aspect_ratio", "resolution", "seed", "magic_prompt"}),
            # Replicate ignores aspect ratio and resolution with an inpainting image; the neutral
            # request already forbids a size on an edit.
            "edit": frozenset({"style", "seed", "magic_prompt"}),
        },
        prices_usd={"generate": _PRICES, "edit": _PRICES},
        credential_variables=(("REPLICATE_API_TOKEN",),),
        base_urls={"api": "https://api.replicate.com"},
        max_images_per_call=1,
        requests_per_minute=600,
        can_resume=True,
        can_reconcile=True,
        options_model=ReplicateOptions,
        docs_url="https://replicate.com/ideogram-ai/ideogram-character",
        inferred={
            "prices": "Replicate's own price box was not seen; a reseller mirroring this model bills "
            "Turbo $0.10 / Default $0.15 / Quality $0.20 per run, Ideogram's list price.",
            "safety": "A failed prediction whose error text reads as a safety refusal (NSFW, 'flagged as "
            "sensitive', E005, safety, content policy) is reported as ContentFiltered.",
            "billing of failures": "Whether failed or canceled predictions of this per-image model bill is "
            "undocumented: reported as billed 'unknown'. Aborted ones are not charged (documented).",
            "gateway 502/504": "A 502/504 answer to the create request is treated as a possibly created "
            "prediction (its answer lost): it is looked up in the list of predictions, and is OutcomeUnknown "
            "when not found there.",
            "lost predictions": "A prediction whose create answer was lost is found again in Replicate's list of "
            "predictions by its input (prompt, settings, seed, image digests) since the request was sent, less "
            f"{CLOCK_SKEW_SECONDS:g} s of clock skew. How the list echoes image inputs (whole data URIs?) is "
            "undocumented: an image rules a prediction out only when both sides are comparable. The list is "
            f"assumed to show a prediction within seconds: it is looked at {len(LOST_ANSWER_LOOKS_SECONDS)} times "
            f"over {sum(LOST_ANSWER_LOOKS_SECONDS):g} s. Several matches are never guessed between (OutcomeUnknown).",
            "cancel_after": "Durations are sent as written ('30s', '5m', '1h30m'); Replicate's full grammar "
            "was not seen.",
        },
    )

    # -- the protocol ------------------------------------------------------------------------------

    def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        options = _options(ctx)
        images: dict[str, str] = {}
        for wire_field, neutral_field, image in request_images(request):
            route = image_route(image, options.data_uri_max_bytes)
            if route == "url":
                images[wire_field] = image.url or ""
            elif route == "data_uri":
                images[wire_field] = image.data_uri()
            else:
                images[wire_field] = yield from self._upload(image, neutral_field, ctx)

        body = create_body(request, images, options)
        prediction, found_in_list = yield from self._create(body, options, ctx)
        yield Event(
            "submitted",
            vendor_request_id=prediction.id,
            status=NEUTRAL_STATUS[prediction.status],
            resume=_resume_state(prediction, ctx),
        )
        get_url = _get_url(prediction.id, prediction.urls.get, ctx)
        # A prediction found in the list is read again by its id before its status or output is trusted.
        return (yield from self._follow(prediction.id, get_url, ctx, first=None if found_in_list else prediction))

    def resume(self, state: Mapping[str, Any], ctx: CallContext) -> Exchange[ProviderOutput]:
        """Continue a prediction admitted earlier, from the ``resume`` data of its ``submitted`` event."""
        prediction_id = _state_id(state)
        get_url = _get_url(prediction_id, state.get("get_url"), ctx)
        return (yield from self._follow(prediction_id, get_url, ctx, first=None))

    def reconcile(
        self, marker: Mapping[str, Any], ctx: CallContext, *, sent_at: float
    ) -> Exchange[dict[str, Any] | None]:
        """Find in Replicate's list the prediction a create request with this ``marker`` made at ``sent_at``
        (see ``reconcile.py``): its resume data, None when the list shows none, OutcomeUnknown when
        several could be it."""
        found = yield from find_prediction(marker, sent_at=sent_at, listing=_listing(ctx))
        return None if found is None else _resume_state(found.as_prediction(), ctx)

    def cancel(self, state: Mapping[str, Any], ctx: CallContext) -> Exchange[str]:
        """Ask Replicate to stop a prediction; returns the status it then reports (``canceled``, or
        ``succeeded``/``failed`` when it had already ended: canceling a finished one changes nothing)."""
        prediction_id = _state_id(state)
        url = _trusted(state.get("cancel_url"), ctx) or ctx.url("api", f"/v1/predictions/{prediction_id}/cancel")
        response = yield Send(httpx.Request("POST", url, headers=_auth(ctx)))
        if not response.is_success:
            raise error_from_response(response, phase="cancel", vendor_request_id=prediction_id)
        try:
            return Prediction.model_validate(read_json(response)).status
        except (ValidationError, UnexpectedResponse):
            return "requested"  # accepted (2xx) but the body does not say the new status

    # -- steps -------------------------------------------------------------------------------------

    def _create(
        self, body: dict[str, Any], options: ReplicateOptions, ctx: CallContext
    ) -> Exchange[tuple[Prediction, bool]]:
        """Send the create request, once. A lost answer is looked up in Replicate's list before it is
        given up as OutcomeUnknown. Returns the prediction and whether it was found in the list."""
        marker = create_marker(body)
        headers = {**_auth(ctx), **create_headers(options)}
        sent_at = time.time()
        try:
            response = yield Send(
                httpx.Request("POST", ctx.url("api", CREATE_PATH), json=body, headers=headers),
                admits=True,
                timeout=options.wait + CREATE_ANSWER_MARGIN_SECONDS,
                marker=marker,
            )
            if not response.is_success:
                raise error_from_response(response, phase="create")
            return _created(response), False
        except OutcomeUnknown as lost:
            found = yield from find_lost_create(lost, marker, sent_at=sent_at, listing=_listing(ctx))
            return found.as_prediction(), True

    def _upload(self, image: ImageInput, neutral_field: str, ctx: CallContext) -> Exchange[str]:
        """Upload a large local image through ``POST /v1/files``, streamed; returns its ``urls.get``."""
        body = MultipartBody([FilePart("content", image)])
        headers = {**_auth(ctx), "Content-Type": body.content_type, "Content-Length": str(body.length)}
        response = yield Send(httpx.Request("POST", ctx.url("api", FILES_PATH), headers=headers, stream=body.stream()))
        if not response.is_success:
            raise error_from_response(response, phase="upload")
        try:
            uploaded = UploadedFile.model_validate(read_json(response))
        except ValidationError as exc:
            raise UnexpectedResponse(
                f"Replicate's answer to the upload of {neutral_field} has no file URL: {_first_error(exc)}",
                status=response.status_code,
                body=response.text[:500],
                billed="no",
            ) from None
        return uploaded.urls.get

    def _follow(
        self, prediction_id: str, get_url: str, ctx: CallContext, *, first: Prediction | None
    ) -> Exchange[ProviderOutput]:
        """Poll until the prediction ends, then return its image. Errors carry the prediction id."""
        try:
            prediction = first
            reported = first.status if first is not None else None  # the submitted event told it
            polls = failures = 0
            while prediction is None or not prediction.terminal:
                if prediction is not None:
                    if prediction.status != reported:
                        reported = prediction.status
                        yield Event(
                            "progress",
                            vendor_request_id=prediction_id,
                            status=NEUTRAL_STATUS[prediction.status],
                            message=f"Replicate prediction {prediction.status}",
                        )
                    yield Sleep(_poll_delay(polls))
                    polls += 1
                fetched = yield from self._poll(prediction_id, get_url, ctx)
                if isinstance(fetched, ProviderError):
                    failures += 1
                    if failures > POLL_FAILURES_TOLERATED:
                        raise fetched
                    if fetched.retry_after:
                        yield Sleep(min(fetched.retry_after, MAX_RETRY_AFTER_SECONDS))
                    elif prediction is None:  # no status yet, so the loop will not wait: wait here
                        yield Sleep(_poll_delay(failures))
                    continue
                failures = 0
                prediction = fetched
            return (yield from self._finish(prediction, ctx))
        except ProviderError as exc:
            exc.vendor_request_id = exc.vendor_request_id or prediction_id
            exc.admitted = True
            raise

    def _poll(self, prediction_id: str, get_url: str, ctx: CallContext) -> Exchange[Prediction | ProviderError]:
        """One GET of the prediction: the prediction, or the error when repeating the GET may help."""
        try:
            response = yield Send(httpx.Request("GET", get_url, headers=_auth(ctx)))
        except ProviderUnavailable as exc:
            return exc
        if response.status_code == 429 or response.status_code >= 500:
            return error_from_response(response, phase="poll", vendor_request_id=prediction_id)
        if not response.is_success:
            raise error_from_response(response, phase="poll", vendor_request_id=prediction_id)
        try:
            fetched = Prediction.model_validate(read_json(response))
        except (ValidationError, UnexpectedResponse) as exc:
            text = _first_error(exc) if isinstance(exc, ValidationError) else exc.message
        else:
            if fetched.id == prediction_id:
                return fetched
            text = f"it describes prediction {fetched.id}"
        return UnexpectedResponse(
            f"Replicate's status answer for prediction {prediction_id} is unreadable: {text}",
            status=response.status_code,
            body=response.text[:500],
        )

    def _finish(self, prediction: Prediction, ctx: CallContext) -> Exchange[ProviderOutput]:
        if prediction.status != "succeeded":
            raise error_from_prediction(prediction)
        urls = prediction.output_urls
        if not urls:
            removed = prediction.data_removed
            raise UnexpectedResponse(
                f"prediction {prediction.id} succeeded but "
                + (
                    "its output was already removed (Replicate keeps API outputs for an hour)"
                    if removed
                    else "returned no image"
                ),
                billed="yes" if removed else "unknown",
                body={"status": prediction.status, "output": prediction.output},
            )
        seed = seed_from_logs(prediction.logs)
        if seed is None and isinstance(prediction.input.get("seed"), int):
            seed = prediction.input["seed"]
        prompt = prompt_from_logs(prediction.logs)
        images: list[GeneratedImage] = []
        for url in urls:
            headers = _auth(ctx) if _trusted(url, ctx) else None
            images.append((yield from download_image(url, seed=seed, prompt=prompt, headers=headers)))
        metadata: dict[str, Any] = {"model": MODEL}
        if prediction.version:
            metadata["version"] = prediction.version
        if "predict_time" in prediction.metrics:
            metadata["predict_time_seconds"] = prediction.metrics["predict_time"]
        return ProviderOutput(images=images, vendor_request_id=prediction.id, metadata=metadata)


# -- helpers -----------------------------------------------------------------------------------------


def _options(ctx: CallContext) -> ReplicateOptions:
    if isinstance(ctx.options, ReplicateOptions):
        return ctx.options
    return ReplicateOptions.model_validate(ctx.options.model_dump())


def _auth(ctx: CallContext) -> dict[str, str]:
    return {"Authorization": f"Bearer {ctx.credentials.reveal()}", "User-Agent": ctx.user_agent}


def _trusted(url: object, ctx: CallContext) -> str | None:
    """``url`` when it lies under the configured API base (so the token may go there), else None."""
    if not isinstance(url, str) or not url:
        return None
    base = ctx.url("api").rstrip("/") + "/"
    return url if url.startswith(base) else None


def _listing(ctx: CallContext) -> Listing:
    return Listing(ctx.url("api", LIST_PATH), _auth(ctx), lambda url: _trusted(url, ctx))


def _get_url(prediction_id: str, candidate: object, ctx: CallContext) -> str:
    return _trusted(candidate, ctx) or ctx.url("api", f"/v1/predictions/{prediction_id}")


def _resume_state(prediction: Prediction, ctx: CallContext) -> dict[str, Any]:
    return {
        "id": prediction.id,
        "get_url": _get_url(prediction.id, prediction.urls.get, ctx),
        "cancel_url": _trusted(prediction.urls.cancel, ctx)
        or ctx.url("api", f"/v1/predictions/{prediction.id}/cancel"),
    }


def _state_id(state: Mapping[str, Any]) -> str:
    value = state.get("id")
    try:
        return Prediction.model_validate({"id": value, "status": "starting"}).id
    except ValidationError:
        raise InvalidRequest.for_field("state.id", f"{value!r} is not a Replicate prediction id") from None


def _created(response: httpx.Response) -> Prediction:
    """The prediction the create request returned. Unreadable means created-but-unknown, not failed."""
    try:
        return Prediction.model_validate(read_json(response))
    except (ValidationError, UnexpectedResponse) as exc:
        text = _first_error(exc) if isinstance(exc, ValidationError) else exc.message
        raise OutcomeUnknown(
            f"Replicate answered {response.status_code} to the prediction request, but without a readable "
            f"prediction ({text}); it may be running and billed",
            provider=PROVIDER,
            status=response.status_code,
            body=response.text[:500],
        ) from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"

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
  expires on Replicate's side. An uploaded file is reused by every later job with the same image while
  it lives (``CallContext.uploads``, :mod:`ideochar.uploads`): its ``expires_at``, else
  :data:`UPLOAD_LIFETIME_SECONDS`.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from pydantic import ValidationError

from ideochar._constants import POLL_INITIAL_SECONDS, POLL_MAX_SECONDS
from ideochar.errors import (
    InvalidRequest,
    OutcomeUnknown,
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.exchange import Send
from ideochar.media import ImageInput
from ideochar.multipart import FilePart, MultipartBody
from ideochar.request import CharacterRequest, Speed
from ideochar.spec import CallContext, Exchange, Provider, ProviderInfo, ProviderOutput
from ideochar.toolkit import (
    Done,
    NamedImage,
    Pending,
    PollSchedule,
    Retry,
    TrustedOrigins,
    Unreadable,
    collect_images,
    int_or_none,
    parse_reply,
    poll,
    reuse_upload,
    upload_scope,
)
from ideochar.uploads import Upload
from ideochar_replicate.errors import PROVIDER, error_from_prediction, error_from_response
from ideochar_replicate.mapping import (
    CREATE_PATH,
    FILES_PATH,
    MODEL,
    NEUTRAL_STATUS,
    UNSET,
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
#: Polls start fast and double up to a ceiling.
POLL_SCHEDULE = PollSchedule(POLL_INITIAL_SECONDS, POLL_MAX_SECONDS, 2.0, POLL_FAILURES_TOLERATED)
#: How long an uploaded file lives when Replicate's answer has no ``expires_at`` [I: the emulator's
#: day, which is also what Replicate's file objects showed in the examples read].
UPLOAD_LIFETIME_SECONDS = 24 * 3600.0

_PRICES: dict[Speed, Decimal] = {"turbo": Decimal("0.10"), "default": Decimal("0.15"), "quality": Decimal("0.20")}


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
        calls_back=True,
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
            "upload_lifetime": "an uploaded file without an expires_at is taken to live a day "
            "(provider.UPLOAD_LIFETIME_SECONDS); it is reused only while an hour of that remains",
        },
        defaults=UNSET,
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

        if ctx.webhook_url and not options.webhook:  # the neutral callback, in Replicate's words
            options = options.model_copy(update={"webhook": ctx.webhook_url, "webhook_events_filter": ["completed"]})
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
        answer = parse_reply(response, Prediction)
        # Accepted (2xx) but the body may not say the new status.
        return "requested" if isinstance(answer, Unreadable) else answer.status

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
        """A large local image's ``urls.get``: uploaded once, reused by later jobs while it lives."""
        upload = functools.partial(self._upload_file, image, neutral_field, ctx)
        return (yield from reuse_upload(ctx, image, scope=upload_scope(ctx, "api"), upload=upload))

    def _upload_file(self, image: ImageInput, neutral_field: str, ctx: CallContext) -> Exchange[Upload]:
        """Upload a local image through ``POST /v1/files``, streamed; its ``urls.get`` and expiry."""
        body = MultipartBody([FilePart("content", image)])
        headers = {**_auth(ctx), "Content-Type": body.content_type, "Content-Length": str(body.length)}
        response = yield Send(httpx.Request("POST", ctx.url("api", FILES_PATH), headers=headers, stream=body.stream()))
        if not response.is_success:
            raise error_from_response(response, phase="upload")
        uploaded = parse_reply(response, UploadedFile)
        if isinstance(uploaded, Unreadable):
            raise UnexpectedResponse(
                f"Replicate's answer to the upload of {neutral_field} has no file URL: {uploaded.reason}",
                status=response.status_code,
                body=uploaded.body,
                billed="no",
            )
        return Upload(uploaded.urls.get, _expiry(uploaded.expires_at))

    def _follow(
        self, prediction_id: str, get_url: str, ctx: CallContext, *, first: Prediction | None
    ) -> Exchange[ProviderOutput]:
        """Poll until the prediction ends, then return its image (the router stamps errors with its id)."""
        prediction = first
        if prediction is None or not prediction.terminal:
            schedule = POLL_SCHEDULE
            prediction = yield from poll(
                lambda: Send(httpx.Request("GET", get_url, headers=_auth(ctx))),
                functools.partial(_read_prediction, prediction_id),
                schedule,
                first_wait=0.0 if first is None else schedule.initial,
                reported=first.status if first is not None else None,  # the submitted event told it
            )
        return (yield from self._finish(prediction, ctx))

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
        seed, prompt = _seed(prediction), prompt_from_logs(prediction.logs)
        trusted = _trusted_origins(ctx)
        collected = yield from collect_images(
            [NamedImage(url, seed=seed, prompt=prompt) for url in urls],
            asked=self.info.max_images_per_call,  # one image per prediction
            most=self.info.max_images_per_call,
            provider=PROVIDER,
            title="Replicate",
            vendor_request_id=prediction.id,
            headers=lambda url: _auth(ctx) if trusted.trusts(url) else None,
        )
        if not collected.images:
            raise collected.errors[0]
        return ProviderOutput(
            images=collected.images,
            vendor_request_id=prediction.id,
            failures=collected.failures,
            warnings=collected.warnings,
            metadata=_metadata(prediction),
        )


# -- helpers -----------------------------------------------------------------------------------------


def _options(ctx: CallContext) -> ReplicateOptions:
    if isinstance(ctx.options, ReplicateOptions):
        return ctx.options
    return ReplicateOptions.model_validate(ctx.options.model_dump())


def _auth(ctx: CallContext) -> dict[str, str]:
    return {"Authorization": f"Bearer {ctx.credentials.reveal()}", "User-Agent": ctx.user_agent}


def _trusted_origins(ctx: CallContext) -> TrustedOrigins:
    return TrustedOrigins.of(ctx.base_urls.values())


def _trusted(url: object, ctx: CallContext) -> str | None:
    """``url`` when it is on the configured API origin (scheme, host and port), so the token may go there."""
    return url if isinstance(url, str) and _trusted_origins(ctx).trusts(url) else None


def _read_prediction(prediction_id: str, response: httpx.Response) -> Done[Prediction] | Pending | Retry:
    """One GET of the prediction: done, still running, or worth another GET (429, 5xx, unreadable)."""
    if response.status_code == 429 or response.status_code >= 500:
        return Retry(error_from_response(response, phase="poll", vendor_request_id=prediction_id))
    if not response.is_success:
        raise error_from_response(response, phase="poll", vendor_request_id=prediction_id)
    fetched = parse_reply(response, Prediction)
    if isinstance(fetched, Unreadable):
        text, body = fetched.reason, fetched.body
    elif fetched.id != prediction_id:
        text, body = f"it describes prediction {fetched.id}", None
    elif fetched.terminal:
        return Done(fetched)
    else:
        event = Event(
            "progress",
            vendor_request_id=prediction_id,
            status=NEUTRAL_STATUS[fetched.status],
            message=f"Replicate prediction {fetched.status}",
        )
        return Pending(fetched.status, event)
    return Retry(
        UnexpectedResponse(
            f"Replicate's status answer for prediction {prediction_id} is unreadable: {text}",
            status=response.status_code,
            body=body,
        )
    )


def _seed(prediction: Prediction) -> int | None:
    """The seed used: from the logs, else the input (Replicate returns no seed field)."""
    seed = seed_from_logs(prediction.logs)
    return seed if seed is not None else int_or_none(prediction.input.get("seed"))


def _metadata(prediction: Prediction) -> dict[str, Any]:
    metadata: dict[str, Any] = {"model": MODEL}
    if prediction.version:
        metadata["version"] = prediction.version
    predict_time = prediction.metrics.get("predict_time")
    if isinstance(predict_time, (int, float)) and not isinstance(predict_time, bool) and math.isfinite(predict_time):
        metadata["predict_time_seconds"] = predict_time
    return metadata


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


def _expiry(expires_at: str | None) -> float:
    """When an uploaded file goes (a ``time.time()`` value): Replicate's ``expires_at``, else a day from now."""
    if expires_at:
        try:
            moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.timestamp()
    return time.time() + UPLOAD_LIFETIME_SECONDS


def _created(response: httpx.Response) -> Prediction:
    """The prediction the create request returned. Unreadable means created-but-unknown, not failed."""
    prediction = parse_reply(response, Prediction)
    if isinstance(prediction, Unreadable):
        raise OutcomeUnknown(
            f"Replicate answered {response.status_code} to the prediction request, but without a readable "
            f"prediction ({prediction.reason}); it may be running and billed",
            provider=PROVIDER,
            status=response.status_code,
            body=prediction.body,
        )
    return prediction

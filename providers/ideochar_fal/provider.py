"""fal.ai's Ideogram V3 Character endpoints (generate, edit, remix) over fal's queue or ``fal.run``.

**Queue (default).** ``POST {queue}/{endpoint}`` admits the job and answers at once with its
``request_id`` and its ``status_url``, ``response_url`` and ``cancel_url``, which are used verbatim (fal:
"Do not build these URLs yourself"). A ``submitted`` event carries them before anything else is sent,
so a process killed mid-job resumes the paid job by id instead of paying twice (:meth:`FalProvider.resume`
also rebuilds them from a bare id). The job is then followed on the server-sent status stream
(``{status_url}/stream?logs=1``: one event per change, so progress costs no extra requests), falling back
to polling ``status_url`` with backoff when the stream is refused or breaks. ``COMPLETED`` can still
carry an ``error``. Then ``GET response_url`` gives ``{images: [{url}], seed}`` and every image is
downloaded (``data:`` URLs included); a download that fails keeps the images that arrived and reports the
rest as :class:`~ideochar.result.ImageFailure` rather than losing paid images.

**Run** (``extra={"fal": {"mode": "run"}}``). ``POST {run}/{endpoint}`` holds the connection for the
model's run and answers with the output. One request instead of three or more, but a lost answer cannot
be recovered (no id comes before the output), so it is not resumable.

Only a POST that creates a job is sent with ``admits=True`` and never repeated; status, stream and result
GETs are repeated freely (with backoff) when the network or fal's edge fails. The key goes only to fal's
hosts or the configured base URL's host, never to a CDN or to a URL a reply names elsewhere.

**Local images** go through fal's storage before the submit, as fal's own clients upload them
(:mod:`ideochar_fal.storage`); ``extra={"fal": {"image_transport": "data_uri"}}`` sends them inline instead.

**Results, honestly per image.** fal reports one seed per call: an image carries it only when the call
made one image; with several, each image's ``seed`` is None and the call's seed is in the result's
metadata (``seed``), since fal does not say how it derives the others. Each download is checked against
the ``file_size`` fal states (a different size is fetched again, then refused) and its ``content_type``
(bytes of another format are kept under their real type, with a warning). fal's queue logs (``logs=1``)
are passed on as ``progress`` events, and ``X-Fal-Retryable`` on an error as ``ProviderError.retryable``.

**Live prices** (:meth:`FalProvider.live_price`): ``GET {platform}/v1/models/pricing?endpoint_id=...``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import Self

from ideochar._constants import POLL_INITIAL_SECONDS, POLL_MAX_SECONDS
from ideochar._secrets import redact
from ideochar.errors import (
    GenerationFailed,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.exchange import ChunkReader, NextEvent, ReaderStream, Send, ServerSentEvent
from ideochar.request import CharacterRequest, OperationName, Speed
from ideochar.spec import CallContext, Exchange, Provider, ProviderInfo, ProviderOutput
from ideochar.toolkit import (
    Collected,
    Done,
    NamedImage,
    Pending,
    PollSchedule,
    Retry,
    TrustedOrigins,
    Unreadable,
    clip,
    collect_images,
    json_or_none,
    parse_reply,
    poll,
    read_body,
)
from ideochar_fal.errors import completed_error, error_from_response
from ideochar_fal.mapping import MASK_POLARITY_INFERRED, UNSET, Payload, live_unit_price, to_payload
from ideochar_fal.storage import UPLOAD_EXPIRATION_SECONDS, upload_local_images
from ideochar_fal.wire import (
    ENDPOINTS,
    HEADER_LIFECYCLE,
    HEADER_NO_RETRY,
    HEADER_PRIORITY,
    HEADER_REQUEST_ID,
    HEADER_REQUEST_TIMEOUT,
    HEADER_RUNNER_HINT,
    PRICING_PATH,
    LogLine,
    Output,
    PriceList,
    QueueStatus,
    ResumeState,
    Submitted,
    request_urls,
)

__all__ = ["INFO", "FalOptions", "FalProvider"]

PROVIDER = "fal"

#: Read timeouts per request (all further bounded by the job's deadline).
SUBMIT_TIMEOUT_SECONDS = 60.0
POLL_TIMEOUT_SECONDS = 30.0
RESULT_TIMEOUT_SECONDS = 60.0
#: fal sends a keep-alive comment every 15 s on the status stream; this much silence means it broke.
STREAM_READ_TIMEOUT_SECONDS = 45.0
#: ``fal.run`` holds the connection for the whole model run.
RUN_TIMEOUT_SECONDS = 300.0
#: Consecutive failed status polls (transport errors, 429, 5xx) tolerated before giving up.
POLL_RETRIES = 6
#: Each wait between polls is this much longer than the last, from POLL_INITIAL_SECONDS to POLL_MAX_SECONDS.
POLL_GROWTH = 1.5
#: Fetches of ``response_url`` (transport errors, 429, 5xx, or a result not ready yet).
RESULT_ATTEMPTS = 4
#: Hosts that may receive the key besides the configured base URLs' hosts (and their subdomains).
TRUSTED_DOMAINS: tuple[str, ...] = ("fal.run", "fal.ai", "falrun.com")
#: Read timeout of a pricing GET.
PRICING_TIMEOUT_SECONDS = 30.0
#: Log lines of one job passed on as ``progress`` events, at most (a chatty model cannot flood observers).
MAX_LOG_EVENTS = 100

#: USD per output image (reference/fal.md §5). Generate and remix are documented; edit is INFERRED to be
#: the same (Ideogram's own prices apply to all three), and per-image (not per-request) is INFERRED too.
PRICES_USD: Mapping[Speed, Decimal] = MappingProxyType(
    {"turbo": Decimal("0.10"), "default": Decimal("0.15"), "quality": Decimal("0.20")}
)

_NEUTRAL_STATUS = {"IN_QUEUE": "queued", "IN_PROGRESS": "running", "COMPLETED": "completed"}
_CANCEL_OUTCOMES = {"OK", "CANCELLATION_REQUESTED", "ALREADY_COMPLETED", "NOT_FOUND"}


class FalOptions(BaseModel):
    """fal-only options: ``extra={"fal": {...}}`` or ``Client(options={"fal": {...}})``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    mode: Literal["queue", "run"] = "queue"
    """``"queue"``: submit, follow, fetch (resumable). ``"run"``: one blocking call to fal.run (not resumable)."""
    status: Literal["stream", "poll"] = "stream"
    """Queue mode: follow the job on the server-sent status stream (polling if it fails), or only poll."""
    request_timeout: Annotated[float, Field(gt=1)] | None = None
    """Seconds fal may take to *start* the job (queue wait and runner start), sent as X-Fal-Request-Timeout."""
    priority: Literal["normal", "low"] | None = None
    """Queue priority (X-Fal-Queue-Priority); queue mode only."""
    runner_hint: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")] | None = None
    """Routing hint for fal's runners (X-Fal-Runner-Hint)."""
    no_retry: bool = False
    """Ask fal not to retry the job on its side (X-Fal-No-Retry: 1)."""
    sync_mode: bool = False
    """Ask fal to return the images inline as data URIs (they then stay out of fal's request history)."""
    object_expiration_seconds: Annotated[int, Field(ge=60)] | None = None
    """How long fal's CDN keeps the outputs (X-Fal-Object-Lifecycle-Preference); ideochar downloads them anyway."""
    image_transport: Literal["upload", "data_uri"] = "upload"
    """Local images: ``"upload"`` them to fal's storage first, as fal's clients do (reused by later jobs while
    they live), or send them inside the request as ``"data_uri"``."""
    upload_expiration_seconds: Annotated[int, Field(ge=60)] = UPLOAD_EXPIRATION_SECONDS
    """How long fal's storage keeps an uploaded image (lifecycle headers); reused while an hour of it remains."""

    @model_validator(mode="after")
    def _queue_only(self) -> Self:
        if self.mode == "run" and self.priority is not None:
            raise ValueError("priority applies to the queue only; fal.run has no queue priority")
        return self


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
_SUPPORTED: Mapping[OperationName, frozenset[str]] = MappingProxyType(
    {
        "generate": _ALL_FIELDS,
        "remix": _ALL_FIELDS,
        # The edit endpoint has no image_size or negative_prompt; CharacterEditInputV3 lists style.
        "edit": _ALL_FIELDS - {"aspect_ratio", "resolution", "negative_prompt"},
    }
)

INFO = ProviderInfo(
    name=PROVIDER,
    title="fal.ai",
    operations=frozenset({"generate", "edit", "remix"}),
    supported_fields=_SUPPORTED,
    prices_usd={"generate": PRICES_USD, "remix": PRICES_USD, "edit": PRICES_USD},
    credential_variables=(("FAL_KEY",), ("FAL_KEY_ID", "FAL_KEY_SECRET")),
    base_urls={
        "queue": "https://queue.fal.run",
        "run": "https://fal.run",
        "rest": "https://rest.fal.ai",
        "cdn": "https://v3.fal.media",
        "platform": "https://api.fal.ai",
    },
    max_images_per_call=8,
    can_resume=True,
    calls_back=True,
    options_model=FalOptions,
    docs_url="https://fal.ai/models/fal-ai/ideogram/character/api",
    inferred={
        "price_edit": "edit costs what generate and remix cost ($0.10/$0.15/$0.20); fal's page does not say",
        "price_per_image": "the price is per output image (fal says 'your request'; Ideogram prices per image)",
        "data_uri_inputs": "with image_transport data_uri, the character endpoints accept data URIs for local "
        "images (by default they are uploaded to fal's storage)",
        "mask": MASK_POLARITY_INFERRED,
        "strength": "remix strength is passed through: fal's 'strength of the input image' is read as how "
        "strongly the input shapes the result, the neutral meaning; fal documents no scale",
        "credits": "a 403 naming the balance or a locked account means out of credit (errors.CREDIT_WORDS)",
        "content_policy": "content-policy refusals are recognised by type and words (errors.CONTENT_POLICY_*)",
        "upload_lifetime": "an uploaded image lives as long as the lifecycle headers ask "
        f"({UPLOAD_EXPIRATION_SECONDS // 3600} h by default); it is reused while an hour of that remains",
        "upload_fallback": "the CDN path (token, then files/upload) failing for any reason but a refused key, "
        "the initiate-and-PUT path is tried, as fal_client falls back",
        "live_price_speeds": "fal's pricing endpoint lists one unit price per endpoint, taken as BALANCED's; "
        "TURBO and QUALITY keep their declared ratio to it (mapping.live_unit_price)",
        "seed_per_image": "with several images a call reports one seed; each image's own is not known",
    },
    defaults=UNSET,
)


class FalProvider(Provider):
    """The fal adapter. Sans-IO: every network step is yielded to the driver."""

    info = INFO

    # -- the protocol ------------------------------------------------------------------------------

    def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        options = self._options(request, ctx)
        uploaded: dict[str, str] = {}
        if options.image_transport == "upload":
            uploaded = yield from upload_local_images(
                request, ctx, key_headers=_headers(ctx), expiration_seconds=options.upload_expiration_seconds
            )
        payload = to_payload(request, sync_mode=options.sync_mode, uploaded=uploaded)
        if options.mode == "run":
            return (yield from self._run(payload, request, ctx, options))
        return (yield from self._queue(payload, request, ctx, options))

    def resume(self, state: Mapping[str, Any], ctx: CallContext) -> Exchange[ProviderOutput]:
        """Follow a queue job from its ``submitted`` event's resume data, or from ``{"request_id": ...}``."""
        job = _resume_state(state, ctx)
        options = ctx.options if isinstance(ctx.options, FalOptions) else FalOptions()
        return (yield from self._follow(job, ctx, options, first_wait=0.0))

    def live_price(self, request: CharacterRequest, ctx: CallContext) -> Exchange[Decimal | None]:
        """The current price per image from fal's platform API (``GET {platform}/v1/models/pricing``).

        Raises when it cannot be read; None when fal lists no per-image USD price for the endpoint (the
        client then shows the declared price, saying why).
        """
        endpoint = ENDPOINTS[request.operation_name]
        url = str(httpx.URL(ctx.url("platform", PRICING_PATH)).copy_merge_params({"endpoint_id": endpoint}))
        response = yield Send(httpx.Request("GET", url, headers=_headers(ctx)), timeout=PRICING_TIMEOUT_SECONDS)
        if not response.is_success:
            raise error_from_response(response)
        listed = parse_reply(response, PriceList)
        if isinstance(listed, Unreadable):
            raise UnexpectedResponse(
                f"fal's pricing answer is unreadable ({listed.reason})", provider=PROVIDER, body=listed.body
            )
        for price in listed.prices:
            if price.endpoint_id == endpoint and (price.unit or "image") == "image" and price.currency in (None, "USD"):
                return live_unit_price(price.unit_price, request.speed, PRICES_USD)
        return None

    def cancel(self, state: Mapping[str, Any], ctx: CallContext) -> Exchange[str]:
        """Ask fal to cancel a queue job: a queued job is removed, a running one is signalled.

        Returns fal's outcome in lower case: ``ok``, ``cancellation_requested``, ``already_completed``
        or ``not_found``. Sent once: a failure is reported, never hidden by a retry.
        """
        job = _resume_state(state, ctx)
        assert job.cancel_url is not None
        _require_trusted(job.cancel_url, ctx)
        response = yield Send(httpx.Request("PUT", job.cancel_url, headers=_headers(ctx)), timeout=POLL_TIMEOUT_SECONDS)
        answer = json_or_none(response)
        outcome = answer.get("status") if isinstance(answer, dict) else None
        if isinstance(outcome, str) and outcome.upper() in _CANCEL_OUTCOMES:
            return outcome.lower()
        if response.is_success:
            return "ok"
        raise error_from_response(response, admitted=True)

    # -- queue -------------------------------------------------------------------------------------

    def _queue(
        self, payload: Payload, request: CharacterRequest, ctx: CallContext, options: FalOptions
    ) -> Exchange[ProviderOutput]:
        url = ctx.url("queue", payload.endpoint)
        if ctx.webhook_url:  # fal calls back when the job ends (reference/fal.md §1.7)
            url = str(httpx.URL(url).copy_merge_params({"fal_webhook": ctx.webhook_url}))
        response = yield Send(_post(url, payload, ctx, options), admits=True, timeout=SUBMIT_TIMEOUT_SECONDS)
        if not response.is_success:
            raise error_from_response(response)
        submitted = parse_reply(response, Submitted)
        if isinstance(submitted, Unreadable):
            raise UnexpectedResponse(
                f"fal accepted the submit (HTTP {response.status_code}) but gave no request_id; the job may run "
                f"and be billed, and cannot be followed ({submitted.reason})",
                provider=PROVIDER,
                status=response.status_code,
                billed="unknown",
                body=submitted.body,
            )
        try:
            status_url, response_url, cancel_url = request_urls(ctx.url("queue"), submitted.request_id)
            job = ResumeState(
                request_id=submitted.request_id,
                endpoint=payload.endpoint,
                status_url=submitted.status_url or status_url,
                response_url=submitted.response_url or response_url,
                cancel_url=submitted.cancel_url or cancel_url,
                seed=request.seed,
                num_images=request.num_images,
            )
        except (ValidationError, ValueError):
            # Admitted, but with an id or URLs we cannot follow: record the id (it may be billed), then stop.
            yield Event("submitted", vendor_request_id=redact(submitted.request_id)[:200], status="queued")
            raise UnexpectedResponse(
                "fal admitted the job with a request id or URLs ideochar cannot follow; it may run and be billed",
                provider=PROVIDER,
                status=response.status_code,
                billed="unknown",
                admitted=True,
                body=read_body(response).kept(),
            ) from None
        yield Event(
            "submitted",
            vendor_request_id=job.request_id,
            status="queued",
            queue_position=submitted.queue_position,
            resume=job.model_dump(mode="json", exclude_none=True),
        )
        return (yield from self._follow(job, ctx, options, first_wait=POLL_INITIAL_SECONDS))

    def _follow(
        self, job: ResumeState, ctx: CallContext, options: FalOptions, *, first_wait: float
    ) -> Exchange[ProviderOutput]:
        """Wait for the job, fetch its output, download its images. (The router stamps every error with the
        job's id from the ``submitted`` event, and rules on its billing.)"""
        for url in (job.status_url, job.response_url):
            assert url is not None
            _require_trusted(url, ctx)
        done, transport, logs = None, "poll", _Logs(job.request_id)
        if options.status == "stream":
            done = yield from _stream_status(job, ctx, logs)
            transport = "stream" if done is not None else "poll"
        if done is None:
            done = yield from _poll_status(job, ctx, logs, first_wait=first_wait)
        yield from logs.events(done)
        if done.error is not None:
            raise completed_error(
                done.error, done.error_type, request_id=job.request_id, body=done.model_dump(mode="json")
            )
        output = yield from _fetch_result(job, ctx)
        metadata: dict[str, Any] = {"mode": "queue", "endpoint": job.endpoint, "status_via": transport}
        if done.metrics and isinstance(done.metrics.get("inference_time"), (int, float)):
            metadata["inference_seconds"] = float(done.metrics["inference_time"])
        return (yield from _collect(output, job.request_id, job.num_images, job.seed, metadata))

    # -- fal.run -----------------------------------------------------------------------------------

    def _run(
        self, payload: Payload, request: CharacterRequest, ctx: CallContext, options: FalOptions
    ) -> Exchange[ProviderOutput]:
        url = ctx.url("run", payload.endpoint)
        response = yield Send(_post(url, payload, ctx, options), admits=True, timeout=RUN_TIMEOUT_SECONDS)
        if not response.is_success:
            raise error_from_response(response)
        request_id = response.headers.get(HEADER_REQUEST_ID) or None
        if request_id:
            # After the fact: fal.run gives no id before the output; the journal still learns which job paid.
            yield Event("submitted", vendor_request_id=request_id, status="completed")
        output = _parse_output(response, request_id)
        metadata: dict[str, Any] = {"mode": "run", "endpoint": payload.endpoint}
        return (yield from _collect(output, request_id, request.num_images, request.seed, metadata))

    # -- helpers ------------------------------------------------------------------------------------

    def _options(self, request: CharacterRequest, ctx: CallContext) -> FalOptions:
        """The context's options (client defaults) overlaid by the request's ``extra["fal"]``."""
        defaults = ctx.options.model_dump(exclude_unset=True) if isinstance(ctx.options, FalOptions) else None
        options = self.options(request, defaults)
        assert isinstance(options, FalOptions)
        return options


# -- requests ---------------------------------------------------------------------------------------------


def _headers(ctx: CallContext) -> dict[str, str]:
    key = ctx.credentials.reveal()
    key = key[4:].strip() if key[:4].lower() == "key " else key  # accept a key pasted with its scheme
    return {"Authorization": f"Key {key}", "User-Agent": ctx.user_agent, "Accept": "application/json"}


def _post(url: str, payload: Payload, ctx: CallContext, options: FalOptions) -> httpx.Request:
    """The job-creating POST: plain JSON when every image is a URL, else a streamed body with data URIs."""
    headers = _headers(ctx)
    headers["Content-Type"] = "application/json"
    if options.request_timeout is not None:
        headers[HEADER_REQUEST_TIMEOUT] = str(float(options.request_timeout))
    if options.priority is not None:
        headers[HEADER_PRIORITY] = options.priority
    if options.runner_hint is not None:
        headers[HEADER_RUNNER_HINT] = options.runner_hint
    if options.no_retry:
        headers[HEADER_NO_RETRY] = "1"
    if options.object_expiration_seconds is not None:
        headers[HEADER_LIFECYCLE] = json.dumps({"expiration_duration_seconds": options.object_expiration_seconds})
    if not payload.inline:
        return httpx.Request("POST", url, headers=headers, json=payload.document())
    body = payload.streamed()
    size = body.content_length
    headers["Content-Length"] = str(size)
    stream = ReaderStream(lambda: ChunkReader(body.iter_bytes()), size=size)
    return httpx.Request("POST", url, headers=headers, stream=stream)


def _require_trusted(url: str, ctx: CallContext) -> None:
    """The key goes only to a configured base URL's origin (emulator, proxy) or to fal's own hosts over https."""
    TrustedOrigins.of(ctx.base_urls.values(), TRUSTED_DOMAINS).require(url, provider=PROVIDER, title="fal")


def _resume_state(state: Mapping[str, Any], ctx: CallContext) -> ResumeState:
    if state.get("mode", "queue") != "queue":
        raise InvalidRequest("only fal queue jobs can be resumed: a fal.run call leaves nothing to resume")
    try:
        job = ResumeState.model_validate(dict(state))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "state"
        raise InvalidRequest(f"this is not resume data for a fal job: {where}: {first['msg']}") from None
    status_url, response_url, cancel_url = request_urls(ctx.url("queue"), job.request_id)
    return job.model_copy(
        update={
            "status_url": job.status_url or status_url,
            "response_url": job.response_url or response_url,
            "cancel_url": job.cancel_url or cancel_url,
        }
    )


# -- following a job (sub-exchanges used with `yield from`) ------------------------------------------------


def _stream_url(status_url: str) -> str:
    url = httpx.URL(status_url)
    return str(url.copy_with(path=url.path.rstrip("/") + "/stream").copy_merge_params({"logs": "1"}))


class _Logs:
    """Which of a job's log lines were passed on. fal is taken to send them all again in every status
    document [I]; a line is known by its timestamp, source and words, so a document holding only new
    lines is read right too."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.seen: set[tuple[str | None, str | None, str]] = set()

    def new(self, document: QueueStatus) -> tuple[Event, ...]:
        """``progress`` events for the log lines not passed on yet (at most :data:`MAX_LOG_EVENTS` a job)."""
        found: list[Event] = []
        for item in document.logs or []:
            line = _log_line(item)
            if line is None or (key := (line.timestamp, line.source, line.message)) in self.seen:
                continue
            if len(self.seen) >= MAX_LOG_EVENTS:
                break
            self.seen.add(key)
            extra = {"level": line.level, "source": line.source, "timestamp": line.timestamp}
            found.append(
                Event(
                    "progress",
                    vendor_request_id=self.request_id,
                    status=_NEUTRAL_STATUS.get(document.status, "running"),
                    message=f"fal log: {clip(line.message, 300)}",
                    data={k: v for k, v in extra.items() if v},
                )
            )
        return tuple(found)

    def events(self, document: QueueStatus) -> Exchange[None]:
        yield from self.new(document)  # events are answered with None


def _log_line(item: Any) -> LogLine | None:
    try:
        return LogLine.model_validate(item)
    except ValidationError:
        return None


def _stream_status(job: ResumeState, ctx: CallContext, logs: _Logs) -> Exchange[QueueStatus | None]:
    """Follow the job on fal's status stream; None when the stream is refused or ends early (then poll)."""
    assert job.status_url is not None
    headers = {**_headers(ctx), "Accept": "text/event-stream", "Cache-Control": "no-store"}
    try:
        response = yield Send(
            httpx.Request("GET", _stream_url(job.status_url), headers=headers),
            stream=True,
            timeout=STREAM_READ_TIMEOUT_SECONDS,
        )
    except ProviderUnavailable:
        return None
    if response.status_code != 200:
        return None  # polling reads the same error with its body, or succeeds
    last: object = None
    while True:
        try:
            event = yield NextEvent(response)
        except ProviderUnavailable:
            return None  # the stream broke (or is not an event stream): polling takes over
        if event is None:
            return None  # closed before COMPLETED
        document = _event_document(event)
        if document is None:
            continue
        if document.status == "COMPLETED":
            return document
        yield from logs.events(document)
        pending = _pending(job, document)
        if pending.key != last and pending.event is not None:
            yield pending.event
        last = pending.key


def _event_document(event: ServerSentEvent) -> QueueStatus | None:
    if not event.data.strip():
        return None
    try:
        return QueueStatus.model_validate_json(event.data)
    except ValidationError:
        return None  # a log line or an event we do not know: not a status


def _pending(job: ResumeState, document: QueueStatus) -> Pending:
    """A job still queued or running; its ``progress`` event is sent when the status or the position changes."""
    event = Event(
        "progress",
        vendor_request_id=job.request_id,
        status=_NEUTRAL_STATUS.get(document.status, "running"),
        queue_position=document.queue_position,
        message=None if document.status in _NEUTRAL_STATUS else f"fal status {document.status}",
    )
    return Pending((document.status, document.queue_position), event)


def _poll_schedule() -> PollSchedule:
    return PollSchedule(POLL_INITIAL_SECONDS, POLL_MAX_SECONDS, POLL_GROWTH, POLL_RETRIES)


def _poll_status(job: ResumeState, ctx: CallContext, logs: _Logs, *, first_wait: float) -> Exchange[QueueStatus]:
    """Poll ``status_url`` until COMPLETED: fast at first, slower for a long queue. GETs are repeated
    on transport errors, 429 (honouring Retry-After), 5xx and unreadable answers, up to POLL_RETRIES in a row.
    Logs are asked for (``logs=1``) and passed on as ``progress`` events."""
    assert job.status_url is not None
    url = str(httpx.URL(job.status_url).copy_merge_params({"logs": "1"}))

    def send() -> Send:
        return Send(httpx.Request("GET", url, headers=_headers(ctx)), timeout=POLL_TIMEOUT_SECONDS)

    read = functools.partial(_read_status, job, logs)
    return (yield from poll(send, read, _poll_schedule(), first_wait=first_wait))


def _read_status(job: ResumeState, logs: _Logs, response: httpx.Response) -> Done[QueueStatus] | Pending | Retry:
    if response.status_code in (200, 202):
        document = parse_reply(response, QueueStatus)
        if isinstance(document, Unreadable):
            # A status GET is safe to repeat: an unreadable answer (a proxy's page, a cut body) is retried
            # like a 5xx; only a run of them ends the wait, with the job's id to resume by.
            return Retry(
                UnexpectedResponse(
                    f"fal's status for job {job.request_id} is not a status document "
                    f"(HTTP {response.status_code}: {document.reason})",
                    provider=PROVIDER,
                    status=response.status_code,
                    body=document.body,
                    admitted=True,
                )
            )
        if document.status == "COMPLETED":
            return Done(document)
        pending = _pending(job, document)
        return dataclasses.replace(pending, notes=logs.new(document))
    error = error_from_response(response, admitted=True)
    if response.status_code == 429 or response.status_code >= 500:
        return Retry(error)
    raise error


def _fetch_result(job: ResumeState, ctx: CallContext) -> Exchange[Output]:
    """``GET response_url``: repeated on transport errors, 429, 5xx and a result not ready yet."""
    assert job.response_url is not None
    url = job.response_url

    def send() -> Send:
        return Send(httpx.Request("GET", url, headers=_headers(ctx)), timeout=RESULT_TIMEOUT_SECONDS)

    schedule = PollSchedule(failures=RESULT_ATTEMPTS - 1)
    return (yield from poll(send, functools.partial(_read_result, job), schedule))


def _read_result(job: ResumeState, response: httpx.Response) -> Done[Output] | Pending | Retry:
    if response.status_code == 200:
        return Done(_parse_output(response, job.request_id))
    if response.status_code == 202 or (
        response.status_code == 400 and "in progress" in read_body(response).text[:500].lower()
    ):
        return Retry(
            ProviderUnavailable(
                f"fal's result for job {job.request_id} is not ready yet", provider=PROVIDER, status=202
            )
        )
    error = error_from_response(response, admitted=True)
    if response.status_code == 429 or response.status_code >= 500:
        return Retry(error)
    raise error  # the job's own failure (a 422 from the model, a content refusal)


def _parse_output(response: httpx.Response, request_id: str | None) -> Output:
    output = parse_reply(response, Output)
    if isinstance(output, Unreadable):
        raise UnexpectedResponse(
            f"fal's output for job {request_id or '(no id)'} is unreadable ({output.reason})",
            provider=PROVIDER,
            status=response.status_code,
            vendor_request_id=request_id,
            billed="yes",
            body=output.body,
        )
    return output


def _collect(
    output: Output, request_id: str | None, asked: int | None, seed: int | None, metadata: dict[str, Any]
) -> Exchange[ProviderOutput]:
    """Download the images asked for; keep those that arrived and report the others, never losing a paid one."""
    used_seed = output.seed if output.seed is not None else seed
    # One seed for the call: an image carries it only when it is the call's only image.
    image_seed = used_seed if len(output.images) == 1 else None
    named = [
        NamedImage(file.url, seed=image_seed, size=file.file_size, content_type=file.content_type)
        for file in output.images
    ]
    collected = yield from collect_images(
        named,
        asked=asked,
        most=INFO.max_images_per_call,
        provider=PROVIDER,
        title="fal",
        vendor_request_id=request_id,
        announce=True,
    )
    if not collected.images:
        raise _nothing_arrived(collected, request_id)
    if used_seed is not None:
        metadata["seed"] = used_seed  # the call's seed, whatever the number of images
    return ProviderOutput(
        images=collected.images,
        vendor_request_id=request_id,
        failures=collected.failures,
        warnings=collected.warnings,
        metadata=metadata,
    )


def _nothing_arrived(collected: Collected, request_id: str | None) -> ProviderError:
    if collected.tried:
        return UnexpectedResponse(
            f"none of the {collected.tried} images of fal job {request_id} could be downloaded: "
            + "; ".join(f.reason for f in collected.failures[:3]),
            provider=PROVIDER,
            vendor_request_id=request_id,
            billed="yes",
        )
    return GenerationFailed(
        f"fal job {request_id} completed without any image",
        provider=PROVIDER,
        vendor_request_id=request_id,
        billed="unknown",
    )

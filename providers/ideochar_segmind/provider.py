"""Segmind's ``ideogram-character``: generate and edit, one image per call, JSON or streamed multipart.

Two ways to run a job, chosen with ``extra={"segmind": {"mode": "v1" | "v2"}}`` (or client options):

**v1 (default)** — ``POST /v1/ideogram-character`` blocks for the model's run (~20 s) and answers with
the image's bytes, plus ``x-cost``, ``x-remaining-credits``, ``x-seed-value`` and ``x-request-id``
headers. One request per image. A lost answer cannot be recovered: Segmind gives no id before the
image, so it is :class:`~ideochar.errors.OutcomeUnknown` (possibly billed) and **v1 jobs cannot be
resumed**.

**v2** — ``POST /v2/ideogram-character`` admits the job and answers at once with ``request_id``,
``status_url`` and ``response_url`` (used verbatim); the job is polled with backoff and its image URL
downloaded. A ``submitted`` event carries what :meth:`SegmindProvider.resume` needs, so a process
killed mid-job, or a poll lost to the network, picks the paid job up again instead of paying twice.
FAILED jobs come back as HTTP 422 with a terminal body, which is read as the job's answer.

Why v1 is the default (``DEFAULT_MODE``, one constant to flip):

* it is the contract verified on this model's own API page (raw JPEG, accounting headers); v2's result
  shape for this model (``output`` = image URL) and its acceptance of multipart bodies are only
  third-party or inferred (reference/vendors.md §1.4-1.5);
* it costs one request per image, where v2 costs a submit, several polls, a result and a download —
  against a free plan of 5 requests a minute, if polls count (not documented);
* the cost comes back on the same answer as the image, and there is no output URL that expires.

Choose v2 when losing a paid image to a dropped connection matters more than those points: it is the
only Segmind mode the journal can resume. Segmind documents v1 as "in maintenance mode"; if it goes,
flip ``DEFAULT_MODE``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import Self

from ideochar.errors import (
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.exchange import Send, decode_base64_image, download_image, image_complete, image_from_bytes
from ideochar.media import sniff_format
from ideochar.request import CharacterRequest, Speed
from ideochar.result import GeneratedImage
from ideochar.spec import CallContext, Exchange, Provider, ProviderInfo, ProviderOutput
from ideochar.toolkit import (
    Done,
    Pending,
    PollSchedule,
    Retry,
    TrustedOrigins,
    draw_seed,
    int_or_none,
    json_or_none,
    poll,
    read_body,
)
from ideochar_segmind.errors import PARAMETER_WORDS, PROVIDER, error_from_response, failed_job_error, vendor_detail
from ideochar_segmind.mapping import MASK_POLARITY_INFERRED, UNSET, to_wire
from ideochar_segmind.wire import (
    HEADER_COST,
    HEADER_GENERATION_TIME,
    HEADER_KEY,
    HEADER_REMAINING_CREDITS,
    HEADER_REQUEST_ID,
    HEADER_SEED,
    V1_PATH,
    V2_PATH,
    V2_RESULT_PATH,
    V2_STATUS_PATH,
    CharacterInput,
    MultipartBody,
    ResumeState,
    Submitted,
    V2Metrics,
    V2Status,
    decimal_or_none,
    output_reference,
)

__all__ = ["DEFAULT_MODE", "INFO", "SegmindOptions", "SegmindProvider"]

Mode = Literal["v1", "v2"]
#: See the module docstring for why.
DEFAULT_MODE: Mode = "v1"

#: A v1 call holds the connection for the whole model run (~20 s typical); this bounds one that hangs.
V1_READ_TIMEOUT_SECONDS = 180.0
V2_SUBMIT_TIMEOUT_SECONDS = 60.0
V2_POLL_TIMEOUT_SECONDS = 30.0
#: Consecutive failed polls (transport errors, 429, 5xx) tolerated before giving up on following a job.
V2_POLL_RETRIES = 6
V2_POLL_GROWTH = 1.5
#: Fetches of the result document while it still says QUEUED/PROCESSING after a COMPLETED status.
V2_RESULT_ATTEMPTS = 3
#: Hosts besides the configured base URL's that may receive the key when Segmind names a URL to poll.
TRUSTED_HOST = "segmind.com"

#: USD per image. INFERRED: Segmind publishes "$0.125 - $0.250 per generation", exactly 1.25x Ideogram's
#: character prices ($0.10 / $0.15 / $0.20), so Default is taken as 1.25 x $0.15.
PRICES_USD: Mapping[Speed, Decimal] = MappingProxyType(
    {"turbo": Decimal("0.125"), "default": Decimal("0.1875"), "quality": Decimal("0.25")}
)

_NEUTRAL_STATUS = {"QUEUED": "queued", "PROCESSING": "running", "COMPLETED": "completed", "FAILED": "failed"}


class SegmindOptions(BaseModel):
    """Segmind-only options: ``extra={"segmind": {...}}`` or ``Client(options={"segmind": {...}})``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    mode: Mode = DEFAULT_MODE
    """``"v1"``: one blocking call returning the image (not resumable). ``"v2"``: submit, then poll (resumable)."""
    poll_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    """v2: the first wait between polls (Segmind's SDK polls every second); it grows by half each time."""
    poll_max_interval_seconds: Annotated[float, Field(gt=0, le=120)] = 5.0
    """v2: the longest wait between polls."""
    poll_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 600.0
    """v2: stop following a job still running after this much waiting (it can be resumed later;
    Segmind keeps job records for an hour)."""

    @model_validator(mode="after")
    def _intervals(self) -> Self:
        if self.poll_max_interval_seconds < self.poll_interval_seconds:
            raise ValueError("poll_max_interval_seconds must be at least poll_interval_seconds")
        return self


INFO = ProviderInfo(
    name="segmind",
    title="Segmind",
    operations=frozenset({"generate", "edit"}),
    supported_fields={
        "generate": frozenset({"style", "aspect_ratio", "resolution", "seed", "magic_prompt"}),
        # An edit keeps its image's size, so no size fields; style, speed, seed and magic prompt are
        # the same request fields on the same endpoint.
        "edit": frozenset({"style", "seed", "magic_prompt"}),
    },
    prices_usd={"generate": PRICES_USD, "edit": PRICES_USD},
    credential_variables=(("SEGMIND_API_KEY",),),
    base_urls={"api": "https://api.segmind.com"},
    max_images_per_call=1,
    # The free plan's limit; Pro allows 50 a minute, Enterprise more (reference/vendors.md §1.6).
    requests_per_minute=5,
    # v2 jobs only: v1 gives no id before the image (see the module docstring).
    can_resume=True,
    options_model=SegmindOptions,
    docs_url="https://www.segmind.com/models/ideogram-character/api",
    typical_seconds=20.0,  # "typical latency ~20 s" on Segmind's async-inference page (reference/vendors.md §1)
    inferred={
        "prices": "Turbo $0.125, Default $0.1875, Quality $0.25 per image, from the published $0.125-$0.250 range",
        "enums": "title-case Auto/Realistic/Fiction, Turbo/Default/Quality, Auto/On/Off (mapping.ENUMS)",
        "mask": MASK_POLARITY_INFERRED,
        "edit_price": "an edit costs what a generation does",
        "cost_units": "x-cost and metrics.cost are read as USD",
        "v2_multipart": "v2 accepts the same multipart body as v1 when an image is local",
        "v2_output": "a v2 result's `output` is the image URL",
        "safety": "safety refusals are recognised by words in the message (errors.SAFETY_WORDS)",
        "rate_limit_reset": "x-rate-limit-reset-at-utc is a date or a Unix time (errors.retry_after_seconds)",
        "resolution_default": "a missing resolution falls back to the documented 512x1536 and overrides an "
        "aspect ratio (as Replicate's schema for the same model says), so the size is always sent as a resolution",
        "406": "a 406 is out of credit unless its body names the Content-Type or a parameter "
        f"(errors.PARAMETER_WORDS: {', '.join(PARAMETER_WORDS)})",
    },
    defaults=UNSET,
)


class SegmindProvider(Provider):
    """The Segmind adapter. Sans-IO: every network step is yielded to the driver."""

    info = INFO

    # -- the protocol ------------------------------------------------------------------------------

    def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        options = self._options(request, ctx)
        seed = request.seed if request.seed is not None else draw_seed()  # Segmind's own default is 1
        payload = to_wire(request, seed=seed)
        if options.mode == "v2":
            return (yield from self._v2(payload, seed, ctx, options))
        return (yield from self._v1(payload, seed, ctx))

    def resume(self, state: Mapping[str, Any], ctx: CallContext) -> Exchange[ProviderOutput]:
        """Follow a v2 job from its ``submitted`` event's resume data. v1 jobs leave none to resume from."""
        try:
            job = ResumeState.model_validate(dict(state))
        except ValidationError as exc:
            raise InvalidRequest(
                f"this is not resume data for a Segmind v2 job (v1 jobs cannot be resumed): {exc.errors()[0]['msg']}"
            ) from None
        options = ctx.options if isinstance(ctx.options, SegmindOptions) else SegmindOptions()
        return (yield from self._follow(job, ctx, options, first_wait=0.0))

    # -- v1: one blocking call --------------------------------------------------------------------

    def _v1(self, payload: CharacterInput, sent_seed: int, ctx: CallContext) -> Exchange[ProviderOutput]:
        http_request = _post(ctx.url("api", V1_PATH), payload, ctx)
        response = yield Send(http_request, admits=True, timeout=V1_READ_TIMEOUT_SECONDS)
        if response.status_code != 200:
            raise error_from_response(response)
        request_id = response.headers.get(HEADER_REQUEST_ID) or None
        if request_id:
            # After the fact: v1 has no id before the image; the journal still learns which job paid.
            yield Event("submitted", vendor_request_id=request_id, status="completed")
        seed = int_or_none(response.headers.get(HEADER_SEED))
        image = yield from _v1_image(response, seed=seed if seed is not None else sent_seed)
        metadata: dict[str, Any] = {"mode": "v1"}
        if (credits := decimal_or_none(response.headers.get(HEADER_REMAINING_CREDITS))) is not None:
            metadata["remaining_credits"] = credits
        if (seconds := _float_or_none(response.headers.get(HEADER_GENERATION_TIME))) is not None:
            metadata["generation_seconds"] = seconds
        return ProviderOutput(
            images=[image],
            vendor_request_id=request_id,
            cost_usd=decimal_or_none(response.headers.get(HEADER_COST)),
            metadata=metadata,
        )

    # -- v2: submit, poll, fetch ------------------------------------------------------------------

    def _v2(
        self, payload: CharacterInput, sent_seed: int, ctx: CallContext, options: SegmindOptions
    ) -> Exchange[ProviderOutput]:
        http_request = _post(ctx.url("api", V2_PATH), payload, ctx)
        response = yield Send(http_request, admits=True, timeout=V2_SUBMIT_TIMEOUT_SECONDS)
        body = json_or_none(response)
        if response.status_code != 200:
            document = _status_document(body)
            if document is not None and document.status == "FAILED":
                raise failed_job_error(
                    document.error, request_id=document.request_id, body=body, status=response.status_code
                )
            raise error_from_response(response)
        try:
            submitted = Submitted.model_validate(body)
        except ValidationError:
            detail, kept = vendor_detail(response)
            raise UnexpectedResponse(
                f"Segmind accepted the v2 submit but gave no request_id ({detail}); the job may run and be "
                "billed, and cannot be followed",
                status=response.status_code,
                billed="unknown",
                body=kept,
            ) from None
        job = ResumeState(
            request_id=submitted.request_id,
            status_url=submitted.status_url or ctx.url("api", V2_STATUS_PATH.format(request_id=submitted.request_id)),
            response_url=submitted.response_url
            or ctx.url("api", V2_RESULT_PATH.format(request_id=submitted.request_id)),
            seed=sent_seed,
        )
        yield Event("submitted", vendor_request_id=job.request_id, status="queued", resume=job.model_dump(mode="json"))
        return (yield from self._follow(job, ctx, options, first_wait=options.poll_interval_seconds))

    def _follow(
        self, job: ResumeState, ctx: CallContext, options: SegmindOptions, *, first_wait: float
    ) -> Exchange[ProviderOutput]:
        """Poll until the job ends, fetch its result, download the image. (The router stamps every error
        with the job's id from the ``submitted`` event, and rules on its billing.)"""
        for url in (job.status_url, job.response_url):
            _require_trusted(url, ctx)
        schedule = PollSchedule(
            options.poll_interval_seconds, options.poll_max_interval_seconds, V2_POLL_GROWTH, V2_POLL_RETRIES
        )
        document = yield from poll(
            _getter(job.status_url, ctx),
            functools.partial(_read_status, job),
            schedule,
            first_wait=first_wait,
            give_up=functools.partial(_still_running, job, options.poll_timeout_seconds),
        )
        result = document
        if output_reference(document) is None:
            result = yield from poll(
                _getter(job.response_url, ctx),
                functools.partial(_read_result, job),
                schedule,
                give_up=functools.partial(_result_lagging, job),
            )
        reference = output_reference(result)
        if reference is None:
            raise _no_image(job, result)
        image = yield from _image_from_reference(reference, seed=job.seed)
        metrics = result.metrics or document.metrics
        return ProviderOutput(
            images=[image],
            vendor_request_id=job.request_id,
            cost_usd=metrics.cost if metrics is not None else None,
            metadata=_v2_metadata(metrics),
        )

    # -- helpers ----------------------------------------------------------------------------------

    def _options(self, request: CharacterRequest, ctx: CallContext) -> SegmindOptions:
        """The context's options (client defaults) overlaid by the request's ``extra["segmind"]``."""
        defaults = ctx.options.model_dump() if isinstance(ctx.options, SegmindOptions) else None
        options = self.options(request, defaults)
        assert isinstance(options, SegmindOptions)
        return options


# -- module-level steps (pure, or sub-exchanges used with `yield from`) ------------------------------------


def _headers(ctx: CallContext) -> dict[str, str]:
    return {HEADER_KEY: ctx.credentials.reveal(), "user-agent": ctx.user_agent, "accept": "*/*"}


def _post(url: str, payload: CharacterInput, ctx: CallContext) -> httpx.Request:
    """JSON when every image is a URL; otherwise a multipart body streamed from the files."""
    headers = _headers(ctx)
    if not payload.needs_multipart:
        return httpx.Request("POST", url, headers=headers, json=payload.json_body())
    body = MultipartBody(payload.multipart_parts())
    headers["content-type"] = body.content_type
    headers["content-length"] = str(body.length)
    return httpx.Request("POST", url, headers=headers, stream=body.stream())


def _getter(url: str, ctx: CallContext) -> Callable[[], Send]:
    """A job document's GET, built afresh for each poll (a GET is safe to repeat)."""
    return lambda: Send(httpx.Request("GET", url, headers=_headers(ctx)), timeout=V2_POLL_TIMEOUT_SECONDS)


def _document(job: ResumeState, response: httpx.Response) -> V2Status | Retry:
    """A job document (FAILED ends the job here), or a Retry for what another GET may cure."""
    body = json_or_none(response)
    document = _status_document(body)
    if document is not None and (document.terminal or response.status_code == 200):
        if document.status == "FAILED":  # comes with 422: the job's answer, not a refusal
            raise failed_job_error(document.error, request_id=job.request_id, body=document.model_dump(mode="json"))
        return document
    if response.status_code == 404:
        raise OutcomeUnknown(
            f"Segmind no longer knows job {job.request_id} (its records are kept for an hour); it may have "
            "run and been billed, and its image cannot be fetched through the API",
            provider=PROVIDER,
            status=404,
            body=body,
        )
    if response.status_code == 429 or response.status_code >= 500:
        return Retry(error_from_response(response, admitted=True))
    if response.status_code == 200:
        detail, kept = vendor_detail(response)
        raise UnexpectedResponse(f"Segmind's job document is not readable JSON: {detail}", status=200, body=kept)
    raise error_from_response(response, admitted=True)


def _read_status(job: ResumeState, response: httpx.Response) -> Done[V2Status] | Pending | Retry:
    document = _document(job, response)
    if isinstance(document, Retry):
        return document
    if document.status == "COMPLETED" or (document.status is None and output_reference(document)):
        return Done(document)
    status = _NEUTRAL_STATUS.get(document.status or "", "running")
    return Pending(document.status, Event("progress", vendor_request_id=job.request_id, status=status))


def _still_running(
    job: ResumeState, timeout: float, pending: Pending, polls: int, waited: float
) -> ProviderError | None:
    if waited < timeout:
        return None
    return OutcomeUnknown(
        f"Segmind job {job.request_id} is still {pending.key or 'running'} after {waited:.0f} s; it may still "
        "finish and be billed: resume it by its id within the hour",
        provider=PROVIDER,
    )


def _read_result(job: ResumeState, response: httpx.Response) -> Done[V2Status] | Pending | Retry:
    document = _document(job, response)
    if isinstance(document, Retry):
        return document
    if output_reference(document) or document.status == "COMPLETED":
        return Done(document)
    return Pending(document.status, body=document)  # the result lagging behind a COMPLETED status


def _result_lagging(job: ResumeState, pending: Pending, polls: int, waited: float) -> ProviderError | None:
    return _no_image(job, pending.body) if polls >= V2_RESULT_ATTEMPTS else None


def _no_image(job: ResumeState, result: Any) -> ProviderError:
    return UnexpectedResponse(
        f"Segmind job {job.request_id} completed without an image in its result",
        provider=PROVIDER,
        billed="yes",
        body=result.model_dump(mode="json") if isinstance(result, BaseModel) else None,
    )


def _v2_metadata(metrics: V2Metrics | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"mode": "v2"}
    if metrics is not None:
        if metrics.remaining_credits is not None:
            metadata["remaining_credits"] = metrics.remaining_credits
        for name in ("inference_time", "queue_time", "total_time"):
            if (value := getattr(metrics, name)) is not None:
                metadata[f"{name}_seconds"] = value
    return metadata


def _v1_image(response: httpx.Response, *, seed: int | None) -> Exchange[GeneratedImage]:
    """The image in a v1 answer, checked by content type and by its bytes.

    A paid image is not thrown away over a header: an image/* type whose bytes are another image
    format is kept under the sniffed type. JSON is searched for an image (Segmind's newer snippets
    read v1 answers as JSON); anything else is UnexpectedResponse, never garbage in a result.
    """
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    data = response.content
    if media.endswith("json") or (not media and data.lstrip()[:1] in (b"{", b"[")):
        body = json_or_none(response)
        reference = output_reference(body)
        if reference is None:
            detail, kept = vendor_detail(response)
            raise UnexpectedResponse(
                f"Segmind answered 200 with JSON and no image: {detail}", status=200, billed="unknown", body=kept
            )
        return (yield from _image_from_reference(reference, seed=seed))
    if media and not (media.startswith("image/") or media == "application/octet-stream"):
        detail, kept = vendor_detail(response)
        raise UnexpectedResponse(
            f"Segmind answered 200 with {media} instead of an image: {detail}", status=200, billed="unknown", body=kept
        )
    if sniff_format(data[:16]) is None:
        raise UnexpectedResponse(
            f"Segmind answered 200 with {media or 'no content type'} but the bytes are not JPEG, PNG or WebP "
            f"({len(data)} bytes starting {read_body(response).text[:8]!r})",  # redacted, then cut
            status=200,
            billed="yes",
        )
    if not image_complete(data):
        raise UnexpectedResponse(f"Segmind's image is truncated ({len(data)} bytes)", status=200, billed="yes")
    return image_from_bytes(data, seed=seed)


def _image_from_reference(reference: str, *, seed: int | None) -> Exchange[GeneratedImage]:
    """An image named in a JSON document: downloaded (URL, data URI) or decoded (bare base64)."""
    if reference.lower().startswith(("http://", "https://", "data:")):
        return (yield from download_image(reference, seed=seed))
    data = decode_base64_image(reference)
    return image_from_bytes(data, seed=seed)


def _status_document(body: Any) -> V2Status | None:
    if not isinstance(body, dict):
        return None
    try:
        return V2Status.model_validate(body)
    except ValidationError:
        return None


def _require_trusted(url: str, ctx: CallContext) -> None:
    """The key goes only to the configured API origin or to Segmind's own hosts over https."""
    TrustedOrigins.of(ctx.base_urls.values(), (TRUSTED_HOST,)).require(url, provider=PROVIDER, title="Segmind")


def _float_or_none(value: str | None) -> float | None:
    try:
        return None if value is None else float(value.strip())
    except ValueError:
        return None

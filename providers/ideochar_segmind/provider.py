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

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import Self

from ideochar._constants import MAX_RETRY_AFTER_SECONDS
from ideochar.errors import (
    ContentFiltered,
    GenerationFailed,
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    UnexpectedResponse,
)
from ideochar.events import Event
from ideochar.exchange import Send, Sleep, decode_base64_image, download_image, image_complete, image_from_bytes
from ideochar.media import sniff_format
from ideochar.request import CharacterRequest, Speed
from ideochar.result import GeneratedImage
from ideochar.retry import backoff_seconds
from ideochar.spec import CallContext, Exchange, Provider, ProviderInfo, ProviderOutput
from ideochar_segmind.errors import error_from_response, failed_job_error, vendor_detail
from ideochar_segmind.mapping import MASK_POLARITY_INFERRED, to_wire
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
    },
)


class SegmindProvider(Provider):
    """The Segmind adapter. Sans-IO: every network step is yielded to the driver."""

    info = INFO

    # -- the protocol ------------------------------------------------------------------------------

    def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        options = self._options(request, ctx)
        payload = to_wire(request)
        if options.mode == "v2":
            return (yield from self._v2(payload, request, ctx, options))
        return (yield from self._v1(payload, request, ctx))

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

    def _v1(self, payload: CharacterInput, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        http_request = _post(ctx.url("api", V1_PATH), payload, ctx)
        response = yield Send(http_request, admits=True, timeout=V1_READ_TIMEOUT_SECONDS)
        if response.status_code != 200:
            raise error_from_response(response)
        request_id = response.headers.get(HEADER_REQUEST_ID) or None
        if request_id:
            # After the fact: v1 has no id before the image; the journal still learns which job paid.
            yield Event("submitted", vendor_request_id=request_id, status="completed")
        seed = _int_or_none(response.headers.get(HEADER_SEED))
        image = yield from _v1_image(response, seed=seed if seed is not None else request.seed)
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
        self, payload: CharacterInput, request: CharacterRequest, ctx: CallContext, options: SegmindOptions
    ) -> Exchange[ProviderOutput]:
        http_request = _post(ctx.url("api", V2_PATH), payload, ctx)
        response = yield Send(http_request, admits=True, timeout=V2_SUBMIT_TIMEOUT_SECONDS)
        body = _json_or_none(response)
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
            seed=request.seed,
        )
        yield Event("submitted", vendor_request_id=job.request_id, status="queued", resume=job.model_dump(mode="json"))
        return (yield from self._follow(job, ctx, options, first_wait=options.poll_interval_seconds))

    def _follow(
        self, job: ResumeState, ctx: CallContext, options: SegmindOptions, *, first_wait: float
    ) -> Exchange[ProviderOutput]:
        """Poll until the job ends, fetch its result, download the image. Every error names the job."""
        try:
            return (yield from self._follow_unstamped(job, ctx, options, first_wait=first_wait))
        except ProviderError as exc:
            converted = _admitted(exc, job)
            if converted is exc:
                raise
            raise converted from exc

    def _follow_unstamped(
        self, job: ResumeState, ctx: CallContext, options: SegmindOptions, *, first_wait: float
    ) -> Exchange[ProviderOutput]:
        for url in (job.status_url, job.response_url):
            _require_trusted(url, ctx)
        wait, waited, last = first_wait, 0.0, None
        while True:
            if wait > 0:
                yield Sleep(wait)
                waited += wait
            document = yield from _poll(job.status_url, ctx, job)
            if document.status == "FAILED":
                raise failed_job_error(document.error, request_id=job.request_id, body=document.model_dump(mode="json"))
            if document.status == "COMPLETED" or (document.status is None and output_reference(document)):
                break
            if document.status != last:
                last = document.status
                yield Event(
                    "progress",
                    vendor_request_id=job.request_id,
                    status=_NEUTRAL_STATUS.get(document.status or "", "running"),
                )
            if waited >= options.poll_timeout_seconds:
                raise OutcomeUnknown(
                    f"Segmind job {job.request_id} is still {document.status or 'running'} after "
                    f"{waited:.0f} s; it may still finish and be billed: resume it by its id within the hour"
                )
            wait = min(max(wait, options.poll_interval_seconds) * V2_POLL_GROWTH, options.poll_max_interval_seconds)
        result = document
        for attempt in range(V2_RESULT_ATTEMPTS):
            if output_reference(result):
                break
            if attempt:  # the result lagging behind a COMPLETED status: give it a moment
                yield Sleep(options.poll_interval_seconds)
            result = yield from _poll(job.response_url, ctx, job)
            if result.status == "FAILED":
                raise failed_job_error(result.error, request_id=job.request_id, body=result.model_dump(mode="json"))
            if result.status == "COMPLETED":
                break
        reference = output_reference(result)
        if reference is None:
            raise UnexpectedResponse(
                f"Segmind job {job.request_id} completed without an image in its result",
                billed="yes",
                body=result.model_dump(mode="json"),
            )
        image = yield from _image_from_reference(reference, seed=job.seed)
        metrics = result.metrics or document.metrics
        metadata: dict[str, Any] = {"mode": "v2"}
        if metrics is not None:
            if metrics.remaining_credits is not None:
                metadata["remaining_credits"] = metrics.remaining_credits
            for name in ("inference_time", "queue_time", "total_time"):
                if (value := getattr(metrics, name)) is not None:
                    metadata[f"{name}_seconds"] = value
        return ProviderOutput(
            images=[image],
            vendor_request_id=job.request_id,
            cost_usd=metrics.cost if metrics is not None else None,
            metadata=metadata,
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


def _poll(url: str, ctx: CallContext, job: ResumeState) -> Exchange[V2Status]:
    """GET a job document. A GET is safe to repeat: transport errors, 429 and 5xx are retried here."""
    failures = 0
    last: ProviderError | None = None
    while True:
        if failures:
            if failures > V2_POLL_RETRIES:
                assert last is not None
                raise last
            delay = last.retry_after if last is not None and last.retry_after is not None else None
            yield Sleep(min(delay, MAX_RETRY_AFTER_SECONDS) if delay is not None else backoff_seconds(failures))
        try:
            response = yield Send(httpx.Request("GET", url, headers=_headers(ctx)), timeout=V2_POLL_TIMEOUT_SECONDS)
        except ProviderUnavailable as exc:
            failures, last = failures + 1, exc
            continue
        body = _json_or_none(response)
        document = _status_document(body)
        if document is not None and (document.terminal or response.status_code == 200):
            return document  # a FAILED body comes with 422: it is the job's answer, not a refusal
        if response.status_code == 404:
            raise OutcomeUnknown(
                f"Segmind no longer knows job {job.request_id} (its records are kept for an hour); it may have "
                "run and been billed, and its image cannot be fetched through the API",
                status=404,
                body=body,
            )
        if response.status_code == 429 or response.status_code >= 500:
            failures, last = failures + 1, error_from_response(response, admitted=True)
            continue
        if response.status_code == 200:
            detail, kept = vendor_detail(response)
            raise UnexpectedResponse(f"Segmind's job document is not readable JSON: {detail}", status=200, body=kept)
        raise error_from_response(response, admitted=True)


def _v1_image(response: httpx.Response, *, seed: int | None) -> Exchange[GeneratedImage]:
    """The image in a v1 answer, checked by content type and by its bytes.

    A paid image is not thrown away over a header: an image/* type whose bytes are another image
    format is kept under the sniffed type. JSON is searched for an image (Segmind's newer snippets
    read v1 answers as JSON); anything else is UnexpectedResponse, never garbage in a result.
    """
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    data = response.content
    if media.endswith("json") or (not media and data.lstrip()[:1] in (b"{", b"[")):
        body = _json_or_none(response)
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
            f"({len(data)} bytes starting {data[:8]!r})",
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


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def _status_document(body: Any) -> V2Status | None:
    if not isinstance(body, dict):
        return None
    try:
        return V2Status.model_validate(body)
    except ValidationError:
        return None


def _require_trusted(url: str, ctx: CallContext) -> None:
    """The key goes only to the configured API origin or to Segmind's own hosts over https."""
    try:
        urlsplit(url).port  # noqa: B018 - urlsplit and .port raise ValueError on a malformed URL
        httpx.URL(url)  # and httpx refuses more (control characters): found by tests/reliability fuzzing
    except (ValueError, httpx.InvalidURL):
        raise UnexpectedResponse(f"Segmind named an unusable job URL ({url[:100]!r})", billed="unknown") from None
    target, base = urlsplit(url), urlsplit(ctx.url("api"))
    same_origin = (target.scheme, target.hostname, target.port) == (base.scheme, base.hostname, base.port)
    host = (target.hostname or "").lower()
    segmind_host = target.scheme == "https" and (host == TRUSTED_HOST or host.endswith("." + TRUSTED_HOST))
    if not (same_origin or segmind_host):
        raise UnexpectedResponse(
            f"Segmind asked to follow the job at {target.scheme}://{target.netloc}, which is neither the "
            "configured API nor a segmind.com host; the key is not sent there",
            billed="unknown",
        )


def _admitted(exc: ProviderError, job: ResumeState) -> ProviderError:
    """Stamp an error met while following an admitted job with its id.

    Only a job's own end is final: FAILED (GenerationFailed, ContentFiltered), or a result that was
    billed and unusable. Anything else met on the way (the vendor unreachable, rate limits, a refused
    poll, a URL we will not follow) leaves a job that may still finish and bill, so it becomes
    OutcomeUnknown: the router must not send the request elsewhere as if nothing had been spent.
    """
    exc.vendor_request_id = exc.vendor_request_id or job.request_id
    exc.admitted = True
    if isinstance(exc, (OutcomeUnknown, GenerationFailed, ContentFiltered)) or exc.billed == "yes":
        return exc
    return OutcomeUnknown(
        f"Segmind admitted job {job.request_id}, then: {exc.message}. It may still finish and be billed; "
        "resume it by its id within the hour",
        provider=exc.provider,
        status=exc.status,
        vendor_request_id=job.request_id,
        body=exc.body,
        admitted=True,
    )


def _int_or_none(value: str | None) -> int | None:
    try:
        return None if value is None else int(value.strip())
    except ValueError:
        return None


def _float_or_none(value: str | None) -> float | None:
    try:
        return None if value is None else float(value.strip())
    except ValueError:
        return None

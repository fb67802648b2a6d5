"""``Client`` and ``AsyncClient``: the same methods, one blocking and one awaitable.

Both are thin: they build the neutral request, ask the router for a plan (all local, nothing sent),
and drive the router's exchange with ``httpx.Client`` or ``httpx.AsyncClient``. Vendor logic is
written once, in the providers; the two classes differ only in the lines that perform I/O.

Example::

    with Client(providers=["fal", "segmind"]) as client:
        result = client.generate("a knight in the rain", reference="face.png", aspect_ratio="16:9")
        result.image.save("knight")
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import httpx
import pluggy
from typing_extensions import Self, Unpack

from ideochar._pool import ShardedAsyncTransport, ShardedTransport
from ideochar._secrets import RedactingFilter, Secret
from ideochar.breaker import CircuitBreaker
from ideochar.errors import IdeocharError, InvalidRequest, MissingCredentials
from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.limits import Acquire, AnyioLimiter, Permit, ProviderLimits, ThreadLimiter, limits_for
from ideochar.media import ImageInput
from ideochar.request import CharacterRequest, Edit, Generate, Remix
from ideochar.result import CharacterResult
from ideochar.router import (
    Candidate,
    FailurePolicy,
    ObservedLatency,
    Plan,
    Spend,
    Strategy,
    fan_out_parts,
    merge_parts,
    plan,
    resume_attempt,
    route,
    run_provider,
    stops_fan_out,
)
from ideochar.spec import CallContext, Provider, ProviderOutput, Quote

if TYPE_CHECKING:
    from ideochar._resume import ResumeWork
    from ideochar.config import Settings
    from ideochar.journal import Journal

__all__ = ["EMULATOR_KEY", "AsyncClient", "Client", "RequestFields"]

logger = logging.getLogger("ideochar")
logger.addFilter(RedactingFilter())

#: The key every provider uses against the built-in emulator (which accepts any non-empty key).
EMULATOR_KEY = "ideochar-emulator-key"
#: The total across the many small pools (ideochar._pool: httpx's one pool slows down with many connections);
#: the keep-alive figure applies to proxy transports only, which httpx builds itself.
_LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=64)


class RequestFields(TypedDict, total=False):
    """Optional fields of :class:`~ideochar.request.CharacterRequest`, as keyword arguments."""

    reference_mask: Any
    style: str
    speed: str
    magic_prompt: str
    aspect_ratio: str
    resolution: Any
    seed: int
    num_images: int
    negative_prompt: str
    color_palette: Any
    style_codes: list[str]
    style_references: list[Any]
    extra: dict[str, dict[str, Any]]


class _Base:
    def __init__(
        self,
        providers: str | Sequence[str] | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        base_urls: Mapping[str, Mapping[str, str]] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        strict: bool | None = None,
        fan_out: bool | None = None,
        max_cost_usd: Decimal | float | str | None = None,
        strategy: Strategy | None = None,
        deadline_seconds: float | None = None,
        policy: FailurePolicy | None = None,
        on_event: Callable[[Event], None] | None = None,
        emulator: bool | str = False,
        plugin_manager: pluggy.PluginManager | None = None,
        environ: Mapping[str, str] | None = None,
        config: str | os.PathLike[str] | Mapping[str, Any] | Literal[False] | None = None,
        journal: Journal | str | os.PathLike[str] | bool | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        breaker: CircuitBreaker | None = None,
        limits: Mapping[str, Mapping[str, Any]] | None = None,
        allow_private_urls: bool = False,
    ) -> None:
        """
        Every argument left at None comes from the configuration (:mod:`ideochar.config`: an
        ``ideochar.toml`` or ``[tool.ideochar]``, then ``IDEOCHAR_*`` variables), else its default.

        Args:
            providers: names in failover order (``"fal,segmind"`` or a list); default
                ``IDEOCHAR_PROVIDERS``, else every installed provider.
            keys: explicit keys by provider name; otherwise plugins, then each provider's variables.
                (Never from a configuration file.)
            base_urls: per provider, named base URLs to override (``{"fal": {"queue": "http://..."}}``).
            options: vendor-only defaults per provider, overlaid by ``request.extra``.
            strict: turn every warning (a field a vendor would ignore) into skipping that vendor.
            fan_out: allow a count a vendor cannot make in one call to be split into several calls.
            max_cost_usd: refuse providers whose quote is above this, before anything is sent
                (``math.inf``: no budget, whatever the configuration says).
            strategy: ``"as_listed"``, ``"cheapest"`` or ``"fastest"`` (observed latency).
            deadline_seconds: bounds every HTTP call of one request, retries, waits for a slot and
                failover included; default 300 (``math.inf``: no deadline).
            policy: retry and failover rules; default from the configuration.
            emulator: True to run against the built-in emulator (started on a loopback port), or the
                root URL of one already running (``ideochar emulator serve``).
            config: a configuration file or mapping; False to read none; None to find one.
            journal: a :class:`~ideochar.journal.Journal`, its file, True (the user data folder) or
                False (no journal). Default: on, in the user data folder.
            output_dir: where the journal writes images as they arrive (default: beside the journal).
            breaker: a circuit breaker to use (share one between clients of the same account).
            limits: per provider, ``max_images_in_flight`` / ``requests_per_minute`` overriding the
                provider's declared limits (your plan's RPM).
            allow_private_urls: fetch URLs from inputs and vendor answers even when they point at
                loopback, private or link-local addresses (an internal CDN). Off by default: such URLs
                are refused at every redirect (:mod:`ideochar._netguard`). URLs on the origin of a
                base URL this client sends vendor calls to (the emulator's included) are always fetched.
        """
        from ideochar.config import load_settings  # deferred: pydantic builds its models on first use

        given_journal = journal if isinstance(journal, (bool, str, os.PathLike)) else None
        settings = load_settings(
            config=config,
            environ=environ,
            overrides={
                "providers": _names(providers) if providers is not None else None,
                "strict": strict,
                "fan_out": fan_out,
                "max_cost_usd": None if max_cost_usd is None or _infinite(max_cost_usd) else str(max_cost_usd),
                "strategy": strategy,
                "deadline_seconds": None
                if deadline_seconds is None or _infinite(deadline_seconds)
                else deadline_seconds,
                "base_urls": base_urls,
                "options": options,
                "limits": limits,
                "journal": str(given_journal) if isinstance(given_journal, os.PathLike) else given_journal,
                "output_dir": None if output_dir is None else str(output_dir),
            },
        )
        self.settings: Settings = settings
        self._names = list(settings.providers or [])
        self._keys = dict(keys or {})
        self._base_overrides = {k: dict(v) for k, v in settings.base_urls.items()}
        self._options = {k: dict(v) for k, v in settings.options.items()}
        self.strict = settings.strict
        self.fan_out = settings.fan_out
        self.max_cost_usd = None if max_cost_usd is not None and _infinite(max_cost_usd) else settings.max_cost_usd
        self.strategy: Strategy = settings.strategy
        self.deadline_seconds = (
            None if deadline_seconds is not None and _infinite(deadline_seconds) else settings.deadline_seconds
        )
        self.policy = policy or FailurePolicy(
            connect_retries=settings.connect_retries,
            rate_limit_retries=settings.rate_limit_retries,
            max_retry_after_seconds=settings.max_retry_after_seconds,
            on_outcome_unknown=settings.on_outcome_unknown,
        )
        self.breaker = breaker or CircuitBreaker(settings.breaker.failure_threshold, settings.breaker.cooldown_seconds)
        self.latency = ObservedLatency()
        self._on_event = on_event
        self._emulator = emulator
        self._emulator_root: str | None = emulator if isinstance(emulator, str) else None
        self._emulated: tuple[str, dict[str, dict[str, str]]] | None = None
        self._pm = plugin_manager
        self._environ = environ
        self._providers: dict[str, Provider] | None = None
        self._journal: Journal | None = None if journal is None or given_journal is not None else journal  # type: ignore[assignment]
        self._owns_journal = self._journal is None
        self._journal_lock = threading.Lock()
        self._journal_opened = self._journal is not None
        self.allow_private_urls = allow_private_urls

    # -- plugins and providers (loaded on first use, not at import) ---------------------------------

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        if self._pm is None:
            from ideochar.plugins import get_plugin_manager

            self._pm = get_plugin_manager()
        return self._pm

    @property
    def available(self) -> dict[str, Provider]:
        """Every installed provider by name."""
        if self._providers is None:
            from ideochar.plugins import collect_providers

            self._providers = collect_providers(self.plugin_manager)
        return self._providers

    @property
    def providers(self) -> list[Provider]:
        """The providers this client uses, in order."""
        available = self.available
        if not self._names:
            return [available[n] for n in sorted(available)]
        missing = [n for n in self._names if n not in available]
        if missing:
            raise InvalidRequest.for_field(
                "providers", f"{missing[0]!r} is not installed; installed: {', '.join(sorted(available)) or 'none'}"
            )
        return [available[n] for n in self._names]

    # -- building requests and plans (no I/O) -------------------------------------------------------

    @staticmethod
    def build_request(
        operation: Generate | Edit | Remix | dict[str, Any], prompt: str, reference: Any, **fields: Any
    ) -> CharacterRequest:
        """The request for the convenience methods. An operation given as a dict is validated inside the
        request, so a bad value is reported with its full path (``operation.strength``)."""
        return CharacterRequest(prompt=prompt, reference=reference, operation=operation, **fields)

    def quote(self, request: CharacterRequest) -> list[Quote]:
        """Price and support of every configured provider for ``request``. Sends nothing."""
        return [p.quote(request, fan_out=self.fan_out) for p in self.providers]

    def plan(self, request: CharacterRequest, *, job_id: str | None = None, strict: bool | None = None) -> Plan:
        """Who would serve ``request``, in which order, and why the others would not. Sends nothing."""
        return plan(
            request,
            self.providers,
            context_for=lambda p: self._context(p, request, job_id),
            strict=self.strict if strict is None else strict,
            fan_out=self.fan_out,
            max_cost_usd=self.max_cost_usd,
            strategy=self.strategy,
            latency=self.latency.snapshot(),
            known_providers=list(self.available),
            breaker=self.breaker,
        )

    def _context(self, provider: Provider, request: CharacterRequest | None, job_id: str | None) -> CallContext:
        name = provider.info.name
        base_urls = self._base_urls(provider)
        defaults = self._options.get(name, {})
        options = (
            provider.options(request, defaults)
            if request is not None
            else provider.info.options_model.model_validate(defaults)
        )
        return CallContext(
            provider=name,
            credentials=self._credentials(provider),
            base_urls=base_urls,
            options=options,
            job_id=job_id,
            user_agent=_user_agent(),
        )

    def _base_urls(self, provider: Provider) -> dict[str, str]:
        """The base URLs this client sends ``provider``'s calls to: its own, the emulator's, the caller's."""
        name = provider.info.name
        base_urls = dict(provider.info.base_urls)
        if self._emulator:
            base_urls.update(self._emulated_urls().get(name, {}))
        base_urls.update(self._base_overrides.get(name, {}))
        return base_urls

    def _on_configured_origin(self, url: httpx.URL) -> bool:
        """Whether ``url`` shares its origin with a base URL this client sends vendor calls to. Such a URL
        is the caller's configuration: the fetch client sends it through :attr:`http`, wherever it points."""
        from ideochar._netguard import origin_of

        origin = origin_of(url)
        return any(
            origin_of(base) == origin
            for provider in self.available.values()
            for base in self._base_urls(provider).values()
        )

    def _credentials(self, provider: Provider) -> Secret:
        name = provider.info.name
        if name in self._keys:
            return Secret(self._keys[name])
        if self._emulator:
            return Secret(EMULATOR_KEY)
        environ = os.environ if self._environ is None else self._environ
        found = self.plugin_manager.hook.ideochar_resolve_credentials(provider=provider.info, environ=environ)
        if found:
            return Secret(str(found))
        secret = provider.credentials(environ)
        if secret is None:
            raise MissingCredentials(name, [" + ".join(v) for v in provider.info.credential_variables])
        return secret

    def _emulated_urls(self) -> dict[str, dict[str, str]]:
        root = self._emulator_url()
        if self._emulated is None or self._emulated[0] != root:  # asking every plugin costs, once per job
            from ideochar.emulator.registry import emulated_base_urls

            self._emulated = (root, emulated_base_urls(self.plugin_manager, root))
        return self._emulated[1]

    def _emulator_url(self) -> str:
        raise NotImplementedError

    def _dispatch(self, event: Event) -> None:
        journal = self.journal
        if journal is not None:
            try:
                journal.record(event)  # committed before the driver sends anything else
            except Exception:  # a full disk must not abandon a paid job; the error is logged loudly
                logger.exception("the journal could not record %s for job %s", event.kind, event.job_id)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s %s", event.kind, event.provider or "-", event.message or event.vendor_request_id or "")
        try:
            self.plugin_manager.hook.ideochar_event(event=event)
        except Exception:  # an observer must never break a paid job
            logger.exception("an ideochar_event hook failed")
        if self._on_event is not None:
            self._on_event(event)

    def _deadline(self) -> float | None:
        return None if self.deadline_seconds is None else time.monotonic() + self.deadline_seconds

    def _start(
        self, request: CharacterRequest, strict: bool | None, job_id: str | None = None
    ) -> tuple[str, Plan, float | None]:
        """Plan (all local: an invalid or over-budget request stops here), then journal the job."""
        job_id = job_id or uuid.uuid4().hex
        chosen = self.plan(request, job_id=job_id, strict=strict)
        deadline = self._deadline()
        if self.journal is not None:
            self.journal.create_job(job_id, request, plan=chosen.to_dict(), max_cost_usd=self.max_cost_usd)
        return job_id, chosen, deadline

    # -- the journal ---------------------------------------------------------------------------------

    @property
    def journal(self) -> Journal | None:
        """The journal this client records into (opened on first use), or None when it is off."""
        if not self._journal_opened:
            with self._journal_lock:
                if not self._journal_opened:
                    path = self.settings.journal_path
                    if path is not None:
                        from ideochar.journal import Journal

                        self._journal = Journal(path, output_dir=self.settings.outputs_path)
                    self._journal_opened = True
        return self._journal

    def _close_journal(self) -> None:
        if self._journal is not None and self._owns_journal:
            self._journal.close()
            self._journal = None
            self._journal_opened = False

    def _keep(self, job_id: str, label: str, result: CharacterResult) -> None:
        """Write a call's images to the output folder and the journal as soon as they are here."""
        if self.journal is None or not result.images:
            return
        try:
            self.journal.record_outputs(
                job_id, result.images, part=label, provider=result.provider, vendor_request_id=result.vendor_request_id
            )
        except Exception:  # the caller still gets the images in memory
            logger.exception("the journal could not save the images of job %s", job_id)

    def _finish(self, job_id: str, result: CharacterResult | None = None, error: BaseException | None = None) -> None:
        if self.journal is None:
            return
        try:
            self.journal.finish_job(job_id, result=result, error=error)
        except Exception:
            logger.exception("the journal could not record the end of job %s", job_id)

    def _route(
        self, part: CharacterRequest, chosen: Plan, job_id: str, deadline: float | None, spend: Spend, label: str
    ) -> Any:
        return route(
            part,
            chosen.candidates,
            policy=self.policy,
            job_id=job_id,
            deadline=deadline,
            breaker=self.breaker,
            latency=self.latency,
            limited=self._limited(),
            max_cost_usd=self.max_cost_usd,
            spend=spend,
            part=label,
        )

    def _merge(
        self, request: CharacterRequest, parts: list[CharacterRequest], outcomes: list[Any], job_id: str
    ) -> CharacterResult:
        """The request's result (or its error) from its calls' outcomes; journals the end of the job."""
        try:
            if len(parts) == 1:
                if isinstance(outcomes[0], BaseException):
                    raise outcomes[0]
                result: CharacterResult = outcomes[0]
            else:
                result = merge_parts(request, parts, outcomes, job_id=job_id)
        except IdeocharError as exc:
            exc.job_id = job_id  # what `ideochar jobs resume` takes
            self._finish(job_id, error=exc)
            raise
        self._finish(job_id, result=result)
        return result

    # -- limits ----------------------------------------------------------------------------------------

    def _provider_limits(self) -> dict[str, ProviderLimits]:
        """Declared limits overridden by configured ones. Against the emulator a declared rate is dropped
        (it protects a vendor account's quota, e.g. Segmind's free 5 a minute, which the emulator has not),
        but a declared concurrency limit is kept: the emulator enforces it as the vendor does (Ideogram's
        10 images in flight per organisation), so without it concurrent jobs would fail there."""
        found: dict[str, ProviderLimits] = {}
        for provider in self.providers:
            name = provider.info.name
            override = self.settings.limits.get(name)
            if self._emulator and override is None:
                limits = limits_for(provider.info, {"requests_per_minute": None})
            else:
                limits = limits_for(provider.info, override.model_dump(exclude_none=True) if override else None)
            if limits is not None:
                found[name] = limits
        return found

    def _limited(self) -> frozenset[str]:
        raise NotImplementedError

    # -- resuming from the journal ----------------------------------------------------------------------

    def _resume_work(self, job_id: str) -> ResumeWork:
        from ideochar._resume import plan_resume

        if self.journal is None:
            raise InvalidRequest.for_field("journal", "this client has no journal to resume jobs from")
        return plan_resume(self.journal.job(job_id))

    def _resume_flows(self, work: ResumeWork) -> list[Any]:
        """One exchange per admitted attempt, each resuming it by vendor id (never resubmitting)."""
        job = work.job
        flows = []
        for attempt in work.resume:
            provider, ctx = self._resume_flow(attempt.provider, attempt.resume or {})
            ctx = CallContext(
                provider=ctx.provider,
                credentials=ctx.credentials,
                base_urls=ctx.base_urls,
                options=ctx.options,
                job_id=job.id,
                user_agent=ctx.user_agent,
            )
            if not provider.info.can_resume:
                raise InvalidRequest.for_field("job_id", f"{provider.info.name} jobs cannot be resumed")
            speed = str(job.request.get("speed", "default"))
            unit = provider.info.price(job.operation, speed)  # type: ignore[arg-type]
            flows.append(
                resume_attempt(
                    provider,
                    ctx,
                    attempt.resume or {},
                    job_id=job.id,
                    attempt=attempt.key,
                    vendor_request_id=attempt.vendor_request_id,
                    num_images=attempt.num_images,
                    unit_price_usd=unit,
                    part=attempt.part,
                )
            )
        return flows

    def _resumed(self, work: ResumeWork, outcomes: list[Any]) -> CharacterResult:
        from ideochar._resume import assemble

        journal = self.journal
        assert journal is not None
        for outcome, attempt in zip(outcomes, work.resume, strict=True):
            if isinstance(outcome, CharacterResult):
                self._keep(work.job.id, attempt.part, outcome)
        spent = journal.job(work.job.id).spent_usd
        try:
            result = assemble(work, outcomes, spent_usd=spent)
        except BaseException as exc:
            self._finish(work.job.id, error=exc)
            raise
        self._finish(work.job.id, result=result)
        return result

    def _resume_flow(self, provider: str, state: Mapping[str, Any]) -> tuple[Provider, CallContext]:
        try:
            chosen = self.available[provider]
        except KeyError:
            raise InvalidRequest.for_field("provider", f"{provider!r} is not installed") from None
        return chosen, self._context(chosen, None, None)


def _names(providers: str | Sequence[str]) -> list[str]:
    if isinstance(providers, str):
        providers = providers.split(",")
    return [p.strip() for p in providers if p and p.strip()]


def _infinite(value: Decimal | float | str) -> bool:
    try:
        return math.isinf(float(value))
    except (TypeError, ValueError):
        return False


def _user_agent() -> str:
    from ideochar import __version__

    return f"ideochar/{__version__}"


class Client(_Base):
    """The blocking client. Thread-safe; use it as a context manager or call :meth:`close`.

    ``http`` is your own client for vendor calls (its TLS, proxies, transport). ``fetch_http`` is the one
    for URLs from inputs and vendor answers, ideochar's guarded client unless given (a test's mock of a CDN);
    whatever ``http`` is, those URLs never go through it unless they are on a configured vendor origin.
    """

    def __init__(
        self,
        providers: str | Sequence[str] | None = None,
        *,
        http: httpx.Client | None = None,
        fetch_http: httpx.Client | None = None,
        limiter: ThreadLimiter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(providers, **kwargs)
        self._http = http
        self._owns_http = http is None
        self._fetch = fetch_http
        self._owns_fetch = fetch_http is None
        self._fetch_lock = threading.Lock()
        self._server: Any = None
        self._limiter = limiter

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                transport=ShardedTransport(limits=_LIMITS), follow_redirects=False, limits=_LIMITS, trust_env=True
            )
        return self._http

    @property
    def fetch_http(self) -> httpx.Client:
        """The client for URLs from inputs and vendor answers (``drive(fetch=)``): every connection checked
        (:mod:`ideochar._netguard`), configured origins through :attr:`http`. The caller's own
        ``fetch_http=`` replaces it (and the guard with it: a test's mock of the vendors' CDNs)."""
        if self._fetch is None:
            from ideochar._netguard import fetch_client

            with self._fetch_lock:  # threads share this client: one fetch client, not one leaked per race
                if self._fetch is None:
                    self._fetch = fetch_client(
                        allow_private=self.allow_private_urls, vendor=self.http, trusted=self._on_configured_origin
                    )
        return self._fetch

    def _emulator_url(self) -> str:
        if self._emulator_root is None:
            from ideochar.emulator.server import BackgroundServer

            self._server = BackgroundServer(self.plugin_manager).start()
            self._emulator_root = self._server.url
        return self._emulator_root

    def generate(
        self, prompt: str, reference: Any, *, strict: bool | None = None, **fields: Unpack[RequestFields]
    ) -> CharacterResult:
        """A new image of the character in ``reference``, as ``prompt`` describes."""
        return self.run(self.build_request(Generate(), prompt, reference, **fields), strict=strict)

    def edit(
        self,
        prompt: str,
        reference: Any,
        *,
        image: Any,
        mask: Any,
        strict: bool | None = None,
        **fields: Unpack[RequestFields],
    ) -> CharacterResult:
        """Repaint the black area of ``mask`` on ``image``, keeping the character."""
        return self.run(
            self.build_request({"operation": "edit", "image": image, "mask": mask}, prompt, reference, **fields),
            strict=strict,
        )

    def remix(
        self,
        prompt: str,
        reference: Any,
        *,
        image: Any,
        strength: float = 0.8,
        strict: bool | None = None,
        **fields: Unpack[RequestFields],
    ) -> CharacterResult:
        """A new image from ``image``, which shapes it as strongly as ``strength`` says (0.01 barely, 1 most)."""
        return self.run(
            self.build_request(
                {"operation": "remix", "image": image, "strength": strength}, prompt, reference, **fields
            ),
            strict=strict,
        )

    def run(self, request: CharacterRequest, *, strict: bool | None = None) -> CharacterResult:
        """Serve a prepared request, failing over as configured."""
        return self._run(request, strict=strict)

    def _run(self, request: CharacterRequest, *, strict: bool | None, job_id: str | None = None) -> CharacterResult:
        job_id, chosen, deadline = self._start(request, strict, job_id)
        parts = fan_out_parts(request, chosen.candidates)
        spend = Spend()
        outcomes: list[CharacterResult | IdeocharError | None] = []
        stop = False
        for index, part in enumerate(parts):  # one call after another; each fails over on its own
            if stop:
                outcomes.append(None)
                continue
            label = str(index)
            flow = self._route(part, chosen, job_id, deadline, spend, label)
            try:
                result = drive(
                    flow,
                    self.http,
                    deadline=deadline,
                    on_event=self._dispatch,
                    perform=self._perform,
                    fetch=self.fetch_http,
                )
            except IdeocharError as exc:
                outcomes.append(exc)
                stop = stops_fan_out(exc)
                continue
            # Anything else (KeyboardInterrupt, a bug) leaves the job "running" in the journal: resumable.
            self._keep(job_id, label, result)
            outcomes.append(result)
        return self._merge(request, parts, outcomes, job_id)

    def resume(self, job_id: str) -> CharacterResult:
        """Finish a journaled job: admitted jobs are picked up by vendor id, never submitted again.

        A job stopped before anything was sent is submitted anew (the journal proves nothing left);
        images already saved are returned from the output folder. See :mod:`ideochar._resume`.
        """
        work = self._resume_work(job_id)
        if work.fresh is not None:
            return self._run(work.fresh, strict=None, job_id=work.job.id)
        outcomes: list[Any] = []
        for flow in self._resume_flows(work):
            try:
                outcomes.append(
                    drive(flow, self.http, deadline=self._deadline(), on_event=self._dispatch, fetch=self.fetch_http)
                )
            except IdeocharError as exc:
                outcomes.append(exc)
        return self._resumed(work, outcomes)

    def resume_vendor(self, provider: str, state: Mapping[str, Any]) -> ProviderOutput:
        """Fetch the result of a job a vendor admitted earlier, from its ``submitted`` event's resume data."""
        chosen, ctx = self._resume_flow(provider, state)
        flow = run_provider(chosen, chosen.resume(state, ctx), ctx)
        return drive(flow, self.http, deadline=self._deadline(), on_event=self._dispatch, fetch=self.fetch_http)

    @property
    def limiter(self) -> ThreadLimiter:
        """Concurrency and rate limits per provider, shared by every thread using this client."""
        if self._limiter is None:
            self._limiter = ThreadLimiter(self._provider_limits())
        return self._limiter

    def _limited(self) -> frozenset[str]:
        return self.limiter.providers

    def _perform(self, step: Any) -> Permit:
        if not isinstance(step, Acquire):
            raise TypeError(f"the client has no handler for the step {step!r}")
        return self.limiter.acquire(step)

    def close(self) -> None:
        self._close_journal()
        if self._fetch is not None and self._owns_fetch:
            self._fetch.close()
        if self._http is not None and self._owns_http:
            self._http.close()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(providers={self._names or 'all'!r}, strategy={self.strategy!r})"


class AsyncClient(_Base):
    """The awaitable client; the same methods as :class:`Client`. ``async with AsyncClient() as c: ...``"""

    def __init__(
        self,
        providers: str | Sequence[str] | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        fetch_http: httpx.AsyncClient | None = None,
        limiter: AnyioLimiter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(providers, **kwargs)
        self._http = http
        self._owns_http = http is None
        self._fetch = fetch_http
        self._owns_fetch = fetch_http is None
        self._limiter = limiter

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            transport: httpx.AsyncBaseTransport | None = None
            if self._emulator is True:
                from ideochar.emulator import create_app
                from ideochar.emulator.testing import ASGITransport  # honours read timeouts, unlike httpx's

                transport = ASGITransport(app=create_app(self.plugin_manager))
                self._emulator_root = "http://emulator.invalid"
            if transport is None:
                transport = ShardedAsyncTransport(limits=_LIMITS)
            self._http = httpx.AsyncClient(transport=transport, follow_redirects=False, limits=_LIMITS)
        return self._http

    @property
    def fetch_http(self) -> httpx.AsyncClient:
        """The async twin of :attr:`Client.fetch_http`."""
        if self._fetch is None:
            from ideochar._netguard import async_fetch_client

            self._fetch = async_fetch_client(
                allow_private=self.allow_private_urls, vendor=self.http, trusted=self._on_configured_origin
            )
        return self._fetch

    def _emulator_url(self) -> str:
        self.http  # noqa: B018 - creating the transport sets the in-process root
        assert self._emulator_root is not None
        return self._emulator_root

    async def generate(
        self, prompt: str, reference: Any, *, strict: bool | None = None, **fields: Unpack[RequestFields]
    ) -> CharacterResult:
        return await self.run(self.build_request(Generate(), prompt, reference, **fields), strict=strict)

    async def edit(
        self,
        prompt: str,
        reference: Any,
        *,
        image: Any,
        mask: Any,
        strict: bool | None = None,
        **fields: Unpack[RequestFields],
    ) -> CharacterResult:
        return await self.run(
            self.build_request({"operation": "edit", "image": image, "mask": mask}, prompt, reference, **fields),
            strict=strict,
        )

    async def remix(
        self,
        prompt: str,
        reference: Any,
        *,
        image: Any,
        strength: float = 0.8,
        strict: bool | None = None,
        **fields: Unpack[RequestFields],
    ) -> CharacterResult:
        return await self.run(
            self.build_request(
                {"operation": "remix", "image": image, "strength": strength}, prompt, reference, **fields
            ),
            strict=strict,
        )

    async def run(self, request: CharacterRequest, *, strict: bool | None = None) -> CharacterResult:
        return await self._run(request, strict=strict)

    async def _run(
        self, request: CharacterRequest, *, strict: bool | None, job_id: str | None = None
    ) -> CharacterResult:
        import anyio
        import anyio.to_thread

        job_id, chosen, deadline = self._start(request, strict, job_id)
        parts = fan_out_parts(request, chosen.candidates)
        spend = Spend()
        outcomes: list[CharacterResult | IdeocharError | None] = [None] * len(parts)

        async def call(index: int, part: CharacterRequest) -> None:
            label = str(index)
            flow = self._route(part, chosen, job_id, deadline, spend, label)
            try:
                result = await adrive(
                    flow,
                    self.http,
                    deadline=deadline,
                    on_event=self._dispatch,
                    perform=self._perform,
                    fetch=self.fetch_http,
                )
            except IdeocharError as exc:
                outcomes[index] = exc
                return
            outcomes[index] = result
            if self.journal is not None:  # a thread hop per job costs, even with nothing to write
                await anyio.to_thread.run_sync(self._keep, job_id, label, result)

        if len(parts) == 1:
            await call(0, parts[0])
        else:  # the calls of a fan-out run concurrently, each failing over on its own
            async with anyio.create_task_group() as group:
                for index, part in enumerate(parts):
                    group.start_soon(call, index, part)
        # A cancellation or a bug propagates and leaves the job "running" in the journal: resumable.
        return self._merge(request, parts, list(outcomes), job_id)

    async def resume(self, job_id: str) -> CharacterResult:
        """Finish a journaled job; the same rules as :meth:`Client.resume`."""
        work = self._resume_work(job_id)
        if work.fresh is not None:
            return await self._run(work.fresh, strict=None, job_id=work.job.id)
        outcomes: list[Any] = []
        for flow in self._resume_flows(work):
            try:
                outcomes.append(
                    await adrive(
                        flow, self.http, deadline=self._deadline(), on_event=self._dispatch, fetch=self.fetch_http
                    )
                )
            except IdeocharError as exc:
                outcomes.append(exc)
        return self._resumed(work, outcomes)

    async def resume_vendor(self, provider: str, state: Mapping[str, Any]) -> ProviderOutput:
        chosen, ctx = self._resume_flow(provider, state)
        flow = run_provider(chosen, chosen.resume(state, ctx), ctx)
        return await adrive(flow, self.http, deadline=self._deadline(), on_event=self._dispatch, fetch=self.fetch_http)

    @property
    def limiter(self) -> AnyioLimiter:
        """Concurrency and rate limits per provider, shared by every task using this client."""
        if self._limiter is None:
            self._limiter = AnyioLimiter(self._provider_limits())
        return self._limiter

    def _limited(self) -> frozenset[str]:
        return self.limiter.providers

    async def _perform(self, step: Any) -> Permit:
        if not isinstance(step, Acquire):
            raise TypeError(f"the client has no handler for the step {step!r}")
        return await self.limiter.acquire(step)

    async def aclose(self) -> None:
        self._close_journal()
        if self._fetch is not None and self._owns_fetch:
            await self._fetch.aclose()
        if self._http is not None and self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient(providers={self._names or 'all'!r}, strategy={self.strategy!r})"


# Candidate and ImageInput are part of the client's vocabulary for type checkers and docs.
_ = (Candidate, ImageInput)

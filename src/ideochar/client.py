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

import functools
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, overload

import httpx
import pluggy
from typing_extensions import Self, Unpack

from ideochar._constants import WAIT_BUSY_SECONDS
from ideochar._owner import Owner
from ideochar._pool import ShardedAsyncTransport, ShardedTransport
from ideochar._secrets import RedactingFilter, Secret
from ideochar.breaker import CircuitBreaker
from ideochar.errors import IdeocharError, InvalidRequest, JobBusy, JournalUnavailable, MissingCredentials
from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.job import Job, Record
from ideochar.limits import Acquire, AsyncLimiter, Budget, Limiter, ProviderLimits, limits_for
from ideochar.media import ImageInput, InputKinds
from ideochar.request import CharacterRequest, Edit, Generate, Remix
from ideochar.result import CharacterResult, JobHandle
from ideochar.router import (
    Candidate,
    FailurePolicy,
    ObservedLatency,
    Plan,
    RouteContext,
    Strategy,
    plan,
    provider_flow,
)
from ideochar.spec import CallContext, Provider, ProviderOutput, Quote

if TYPE_CHECKING:
    from ideochar.batch import AsyncBatch, Batch, BatchKeywords, Requests
    from ideochar.config import Settings
    from ideochar.journal import JobRecord, Journal
    from ideochar.state import StateBackend
    from ideochar.uploads import UploadCache

__all__ = ["EMULATOR_KEY", "AsyncClient", "Client", "RequestFields"]

logger = logging.getLogger("ideochar")
T = TypeVar("T")
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
        accept_inputs: InputKinds | Iterable[str] | None = None,
        allow_private_urls: bool = False,
        webhook_url: str | None = None,
        state: StateBackend | str | None = None,
        state_fallback: Literal["fail_closed", "local"] | None = None,
        budget_usd: Decimal | float | str | None = None,
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
            accept_inputs: the kinds of image input accepted, of ``"path"``, ``"url"``, ``"bytes"`` (data
                URIs are bytes); default all. A server passing on its users' strings gives
                ``{"url", "bytes"}``: a path is then refused before any file is looked at.
            allow_private_urls: fetch URLs from inputs and vendor answers even when they point at
                loopback, private or link-local addresses (an internal CDN). Off by default: such URLs
                are refused at every redirect (:mod:`ideochar._netguard`). URLs on the origin of a
                base URL this client sends vendor calls to (the emulator's included) are always fetched.
            webhook_url: where vendors that call back (fal, Replicate: ``ProviderInfo.calls_back``) should
                call when a job ends; https unless the host is this machine. Mount
                :func:`ideochar.webhooks.app` there. Per job: ``submit(..., webhook_url=...)``.
            state: where limits, breakers and spend are kept (:mod:`ideochar.state`): a backend object
                (share one between clients), a ``redis://`` URL a fleet shares, or ``"memory"``;
                default ``IDEOCHAR_STATE_URL``, else this process only. ``journal=`` takes a
                ``postgresql://`` URL likewise: a fleet shares both (docs/howto/fleet.md).
            state_fallback: when the shared state cannot be reached, ``"fail_closed"`` (the default: nothing
                is admitted that cannot be accounted for) or ``"local"`` (this process's own limits
                meanwhile, logged; a budget never falls back).
            budget_usd: what every job together may spend, each quote reserved before it is sent (the
                whole fleet's with a shared ``state``; counted under ``budget_name``).
        """
        given_journal = journal if isinstance(journal, (bool, str, os.PathLike)) else None
        settings = _load_settings(
            config,
            environ,
            providers=_names(providers) if providers is not None else None,
            strict=strict,
            fan_out=fan_out,
            max_cost_usd=max_cost_usd,
            strategy=strategy,
            deadline_seconds=deadline_seconds,
            base_urls=base_urls,
            options=options,
            limits=limits,
            journal=given_journal,
            output_dir=output_dir,
            state=state,
            state_fallback=state_fallback,
            budget_usd=budget_usd,
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
        self.policy = policy or _policy(settings)
        from ideochar.state import open_state

        self._owns_state = state is None or isinstance(state, str)
        self.state: StateBackend = (
            open_state(settings.state_url, fallback=settings.state_fallback) if self._owns_state else state  # type: ignore[assignment]
        )
        self.budget = None if settings.budget_usd is None else Budget(settings.budget_usd, settings.budget_name)
        self.breaker = breaker or self.state.breaker(
            settings.breaker.failure_threshold, settings.breaker.cooldown_seconds
        )
        self.latency = ObservedLatency()
        self._on_event = on_event
        if emulator is True:
            _require_emulator()
        self._emulator = emulator
        if emulator and base_urls:
            # The emulator wins (docs/security.md); a caller naming both should hear which of theirs is unused.
            logger.warning(
                "base_urls= for %s is not used: with the emulator, every vendor's calls go to the emulator",
                ", ".join(sorted(base_urls)),
            )
        self._emulator_root: str | None = emulator if isinstance(emulator, str) else None
        self._emulated: tuple[str, dict[str, dict[str, str]]] | None = None
        self._pm = plugin_manager
        self._environ = environ
        self._providers: dict[str, Provider] | None = None
        self._journal: Journal | None = None if journal is None or given_journal is not None else journal  # type: ignore[assignment]
        self._owns_journal = self._journal is None
        self._journal_lock = threading.Lock()
        self._journal_opened = self._journal is not None
        self.accept_inputs = InputKinds.of(accept_inputs)
        self.allow_private_urls = allow_private_urls
        self._checked_base_urls: dict[str, dict[str, str]] = {}
        self._configured_origins: frozenset[Any] | None = None
        self.webhook_url = _webhook(webhook_url)
        self._uploads: UploadCache | None = None

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

    def build_request(
        self, operation: Generate | Edit | Remix | dict[str, Any], prompt: str, reference: Any, **fields: Any
    ) -> CharacterRequest:
        """The request for the convenience methods. An operation given as a dict is validated inside the
        request, so a bad value is reported with its full path (``operation.strength``); images of a kind
        this client does not accept are refused before any file is looked at."""
        data = {"prompt": prompt, "reference": reference, "operation": operation, **fields}
        return CharacterRequest.model_validate(data, context=self.accept_inputs.context())

    def quote(self, request: CharacterRequest) -> list[Quote]:
        """Price and support of every configured provider for ``request``. Sends nothing."""
        return [p.quote(request, fan_out=self.fan_out) for p in self.providers]

    def _live_quotes(self, request: CharacterRequest) -> Any:
        """An exchange: each provider's quote with its vendor's current price where one is published
        (:meth:`~ideochar.spec.Provider.live_quote`), the declared price with a warning where it cannot be had."""
        quotes: list[Quote] = []
        for provider in self.providers:
            context = functools.partial(self._context, provider, request, None)
            quotes.append((yield from provider.live_quote(request, context, fan_out=self.fan_out)))
        return quotes

    def plan(
        self,
        request: CharacterRequest,
        *,
        job_id: str | None = None,
        strict: bool | None = None,
        webhook_url: str | None = None,
    ) -> Plan:
        """Who would serve ``request``, in which order, and why the others would not. Sends nothing."""
        callback = _webhook(webhook_url) or self.webhook_url
        return plan(
            request,
            self.providers,
            context_for=lambda p: self._context(p, request, job_id, callback),
            strict=self.strict if strict is None else strict,
            fan_out=self.fan_out,
            max_cost_usd=self.max_cost_usd,
            strategy=self.strategy,
            latency=self.latency.snapshot(),
            known_providers=list(self.available),
            breaker=self.breaker,
        )

    def _context(
        self,
        provider: Provider,
        request: CharacterRequest | None,
        job_id: str | None,
        webhook_url: str | None = None,
    ) -> CallContext:
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
            webhook_url=webhook_url if provider.info.calls_back else None,
            uploads=self.uploads,
        )

    def _base_urls(self, provider: Provider) -> dict[str, str]:
        """The base URLs this client sends ``provider``'s calls to, where its key may go: under the emulator
        the emulator's alone (it wins over every configured one), else its own with the caller's on top,
        each checked (:func:`ideochar.config.effective_base_urls`; a refused one is a ``ConfigError``)."""
        from ideochar.config import effective_base_urls

        name = provider.info.name
        known = self._checked_base_urls.get(name)
        if known is None:  # checked once per client: parsing every URL per job costs (benchmark figure 2)
            emulated = self._emulated_urls().get(name, {}) if self._emulator else None
            known = effective_base_urls(provider.info, self._base_overrides.get(name, {}), emulated)
            self._checked_base_urls[name] = known
        return dict(known)

    def _trusted_base_urls(self, provider: Provider) -> list[str]:
        """:meth:`_base_urls`, or none for a provider whose base URLs are refused (it sends nothing)."""
        try:
            return list(self._base_urls(provider).values())
        except InvalidRequest:
            return []

    def _on_configured_origin(self, url: httpx.URL) -> bool:
        """Whether ``url`` shares its origin with a base URL this client sends vendor calls to. Such a URL
        is the caller's configuration: the fetch client sends it through :attr:`http`, wherever it points."""
        from ideochar._netguard import origin_of

        if self._configured_origins is None:
            self._configured_origins = frozenset(
                origin_of(base) for provider in self.available.values() for base in self._trusted_base_urls(provider)
            )
        return origin_of(url) in self._configured_origins

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
        """Hand one event to the observers (logging, plugins, the caller's callback). The journal is not one
        of them: the job writes it through :class:`~ideochar.job.Record` steps, which can stop a send."""
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

    def _route_context(self, job_id: str, timeout: float | None = None) -> RouteContext:
        return RouteContext(
            policy=self.policy,
            job_id=job_id,
            deadline=self._deadline() if timeout is None else time.monotonic() + timeout,
            breaker=self.breaker,
            latency=self.latency,
            limited=self._limited(),
            max_cost_usd=self.max_cost_usd,
        )

    def _new_job(
        self,
        request: CharacterRequest,
        strict: bool | None,
        *,
        submit: bool = False,
        webhook_url: str | None = None,
        job_id: str | None = None,
        shape: Callable[[Plan, RouteContext], Plan] | None = None,
    ) -> Job:
        """Plan (all local: an invalid or over-budget request stops here) and build the job.

        ``job_id`` and ``shape`` serve a caller that schedules jobs itself (:mod:`ideochar.batch`): an id it
        recorded before the job exists, and a last word on the plan and the route (the order of the
        candidates, a tighter budget, a provider's slot it already holds), before anything is journaled.
        """
        if submit:
            self._journal_for("submit")  # wait() finishes a submitted job from the journal
        job_id = job_id or uuid.uuid4().hex
        chosen = self.plan(request, job_id=job_id, strict=strict, webhook_url=webhook_url)
        route = self._route_context(job_id)
        if shape is not None:
            chosen = shape(chosen, route)
        job = Job.new(
            job_id,
            request,
            chosen,
            route,
            journal=self.journal,
            max_cost_usd=route.max_cost_usd,
            emulated=bool(self._emulator),
        )
        job.detach = submit
        return job

    def _resuming(self, record: JobRecord, owner: Owner, timeout: float | None = None) -> Job:
        journal = self.journal
        assert journal is not None
        return Job.resuming(
            record,
            self._route_context(record.id, timeout),
            journal=journal,
            owner=owner,
            providers=self.available,
            context_for=lambda p: self._context(p, None, record.id),
            planner=lambda r: self.plan(r, job_id=record.id),
            emulated=bool(self._emulator),
        )

    def _journal_for(self, what: str) -> Journal:
        journal = self.journal
        if journal is None:
            raise InvalidRequest.for_field("journal", f"this client has no journal to {what} jobs with")
        return journal

    def _cancel_flows(self, job: JobHandle | str) -> list[tuple[str, Any]]:
        """One cancel exchange per call a vendor may still be running (by its resume data), sent once each."""
        record = self._journal_for("cancel").job(_job_id(job))
        flows: list[tuple[str, Any]] = []
        for attempt in record.attempts:
            provider = self.available.get(attempt.provider)
            if not attempt.open or attempt.resume is None or provider is None:
                continue
            ctx = self._context(provider, None, record.id)
            flows.append((attempt.vendor_request_id or attempt.key, provider.cancel(attempt.resume, ctx)))
        return flows

    def _write(self, record: Record) -> Any:
        """Perform one journal write; a required one that fails stops the send it guards."""
        try:
            return record.write()
        except IdeocharError:
            raise  # JobBusy, JobNotFound: the journal's answer, not its failure
        except Exception as exc:
            if record.required:
                raise JournalUnavailable(
                    f"the journal could not record {record.what} ({type(exc).__name__}: {exc}); nothing was "
                    "sent, so nothing was billed"
                ) from exc
            logger.exception("the journal could not record %s", record.what)
            return None

    # -- the journal ---------------------------------------------------------------------------------

    @property
    def journal(self) -> Journal | None:
        """The journal this client records into (opened on first use), or None when it is off."""
        if not self._journal_opened:
            with self._journal_lock:
                if not self._journal_opened:
                    location = self.settings.journal_location
                    if location is not None:
                        from ideochar.journal import Journal

                        self._journal = Journal(location, output_dir=self.settings.outputs_path)
                    self._journal_opened = True
        return self._journal

    def _close_journal(self) -> None:
        if self._uploads is not None:
            self._uploads.close()
        if self._journal is not None and self._owns_journal:
            self._journal.close()
            self._journal = None
            self._journal_opened = False

    @property
    def uploads(self) -> UploadCache:
        """Local images this client uploaded to vendors' storage, reused while their URLs live
        (:mod:`ideochar.uploads`): in the journal's file, or in memory when the journal is off."""
        if self._uploads is None:
            from ideochar.uploads import UploadCache

            with self._journal_lock:
                if self._uploads is None:
                    # A journal given as an object: its database (PostgreSQL's URL, or SQLite's file).
                    given = getattr(self._journal, "url", None) or getattr(self._journal, "path", None)
                    self._uploads = UploadCache(given or self.settings.journal_location)
        return self._uploads

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

    def _names_for_state(self) -> list[str]:
        """The providers whose attempts go through the state (all of them: a budget or a shared breaker
        applies to every one), or none when there is neither."""
        if self.budget is None and not getattr(self.state, "shared", False):
            return []
        try:
            return [p.info.name for p in self.providers]
        except InvalidRequest:
            return []

    def _resume_flow(self, provider: str, state: Mapping[str, Any]) -> Any:
        """A vendor job picked up by its resume data alone, outside any journaled job."""
        try:
            chosen = self.available[provider]
        except KeyError:
            raise InvalidRequest.for_field("provider", f"{provider!r} is not installed") from None
        ctx = self._context(chosen, None, None)
        vendor_id = str(state.get("id") or state.get("request_id") or "resumed")
        return provider_flow(chosen, chosen.resume(state, ctx), ctx, vendor_id=vendor_id)


def _load_settings(
    config: str | os.PathLike[str] | Mapping[str, Any] | Literal[False] | None,
    environ: Mapping[str, str] | None,
    *,
    journal: bool | str | os.PathLike[str] | None,
    output_dir: str | os.PathLike[str] | None,
    max_cost_usd: Decimal | float | str | None,
    deadline_seconds: float | None,
    state: object,
    budget_usd: Decimal | float | str | None,
    **given: Any,
) -> Settings:
    """The client's settings: its arguments over the configuration. An argument of ``math.inf`` (no budget,
    no deadline) is not passed on: the client turns it into None after reading, whatever the file says."""
    from ideochar.config import load_settings  # deferred: pydantic builds its models on first use

    overrides = {
        **given,
        "max_cost_usd": None if max_cost_usd is None or _infinite(max_cost_usd) else str(max_cost_usd),
        "deadline_seconds": None if deadline_seconds is None or _infinite(deadline_seconds) else deadline_seconds,
        "journal": str(journal) if isinstance(journal, os.PathLike) else journal,
        **_journal_url(journal),
        "output_dir": None if output_dir is None else str(output_dir),
        "state_url": state if isinstance(state, str) else None,
        "budget_usd": None if budget_usd is None else str(budget_usd),
    }
    return load_settings(config=config, environ=environ, overrides=overrides)


def _policy(settings: Settings) -> FailurePolicy:
    return FailurePolicy(
        connect_retries=settings.connect_retries,
        rate_limit_retries=settings.rate_limit_retries,
        max_retry_after_seconds=settings.max_retry_after_seconds,
        on_outcome_unknown=settings.on_outcome_unknown,
    )


def _require_emulator() -> None:
    """``emulator=True`` without the emulator's extra: a clear error naming the install, not an ImportError
    from a later request."""
    from ideochar.emulator import INSTALL_HINT, missing_dependencies

    if missing := missing_dependencies():
        raise InvalidRequest.for_field(
            "emulator",
            f"needs the emulator, which is not installed (missing: {', '.join(missing)}); "
            f"install it with: {INSTALL_HINT}",
        )


def _journal_url(given: object) -> dict[str, Any]:
    """The ``journal=`` argument as settings: a PostgreSQL URL is ``journal_url``; a file given by the
    caller wins over a ``journal_url`` from the configuration."""
    from ideochar._database import is_postgres_url

    if is_postgres_url(given):
        return {"journal": True, "journal_url": given}
    if isinstance(given, (str, os.PathLike)):
        return {"journal_url": "off"}
    return {}


def _job_id(job: JobHandle | str) -> str:
    return job.job_id if isinstance(job, JobHandle) else job


def _webhook(url: str | None) -> str | None:
    """A callback URL a vendor may be given: https, or http to this machine (the emulator, tests)."""
    if url is None:
        return None
    from ideochar.config import plain_http_allowed

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise InvalidRequest.for_field("webhook_url", "is not a URL") from None
    if parsed.scheme == "https" or (parsed.scheme == "http" and plain_http_allowed(parsed.host)):
        return url
    raise InvalidRequest.for_field("webhook_url", "must be https (plain http only to this machine)")


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
        limiter: Limiter | None = None,
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

    def quote(self, request: CharacterRequest, *, live: bool = False) -> list[Quote]:
        """Price and support of every configured provider for ``request``; nothing billable is sent.

        ``live=True`` asks each vendor that publishes prices (fal's pricing endpoint) for its current unit
        price, with that provider's key; where it cannot be had the declared price is shown, with a warning
        saying why (``Quote.price_source`` tells which).
        """
        if not live:
            return super().quote(request)
        quotes: list[Quote] = self._drive(self._live_quotes(request))
        return quotes

    def run(self, request: CharacterRequest, *, strict: bool | None = None) -> CharacterResult:
        """Serve a prepared request, failing over as configured."""
        self.accept_inputs.check_images(request.images())  # a request built elsewhere: its kinds again
        return self._run(request, strict=strict)

    def _run(self, request: CharacterRequest, *, strict: bool | None) -> CharacterResult:
        result: CharacterResult = self._drive_job(self._new_job(request, strict))
        return result

    def _drive_job(self, job: Job) -> Any:
        """Drive a job to its end (a result), or in submit mode until its vendors admitted it (a handle):
        its calls one after another, each failing over on its own."""
        try:
            return self._drive(job.whole(), job)
        finally:  # however the run ends (an interrupt included), another process may now resume the job
            if job.journal is not None:
                self._drive(job.release(), job)

    def submit(
        self, request: CharacterRequest, *, webhook_url: str | None = None, strict: bool | None = None
    ) -> JobHandle:
        """Send ``request`` and return as soon as the vendors admitted it, without waiting for the images.

        The job is journaled and runs at the vendors; finish it with :meth:`wait` (here, later, or in
        another process), or stop it with :meth:`cancel`. With ``webhook_url`` (or the client's), vendors
        that call back do so when the job ends (:mod:`ideochar.webhooks`). A vendor that answers only with
        the finished image is waited for here (``handle.finished``). Needs the journal.
        """
        handle: JobHandle = self._drive_job(self._new_job(request, strict, submit=True, webhook_url=webhook_url))
        return handle

    def wait(self, job: JobHandle | str, *, timeout: float | None = None) -> CharacterResult:
        """Finish a submitted (or any journaled) job and return its result; nothing is sent twice.

        The job's calls are picked up by their vendor ids and followed to their end. While another live
        process runs the job (a webhook completing it, another worker), this waits for it to let go, then
        returns the saved images. ``timeout`` bounds the whole wait (default: the client's deadline).
        """
        give_up = time.monotonic() + (timeout if timeout is not None else self.deadline_seconds or math.inf)
        while True:
            try:
                return self._resume(_job_id(job), timeout=None if timeout is None else give_up - time.monotonic())
            except JobBusy:
                if time.monotonic() + WAIT_BUSY_SECONDS >= give_up:
                    raise
                time.sleep(WAIT_BUSY_SECONDS)

    def cancel(self, job: JobHandle | str) -> dict[str, str]:
        """Ask every vendor still running a call of the job to stop it; ``{vendor id: outcome}``.

        Each request is sent once (a failure is raised, never retried into silence). A call that had
        already finished stays billed; one stopped in time may not be (the vendor decides). ``wait`` then
        reports how each call ended.
        """
        return {vendor_id: self._drive(flow) for vendor_id, flow in self._cancel_flows(job)}

    def batch(self, requests: Requests, **options: Unpack[BatchKeywords]) -> Batch:
        """Run many requests as one batch, spread over the providers by their capacity, under one budget,
        resumable by running it again; yields each row's result as it finishes (:mod:`ideochar.batch`).

        ``with client.batch(rows, out="out/", max_cost_usd=20) as batch: for row in batch: ...``
        """
        from ideochar.batch import start_sync

        return start_sync(self, requests, options)

    def _drive(self, flow: Any, job: Job | None = None) -> Any:
        deadline = job.deadline if job is not None else self._deadline()
        return drive(
            flow,
            self.http,
            deadline=deadline,
            on_event=self._dispatch,
            perform=self._perform,
            fetch=self.fetch_http,
            vendor_origin=self._on_configured_origin,
        )

    def resume(self, job_id: str) -> CharacterResult:
        """Finish a journaled job: admitted jobs are picked up by vendor id, never submitted again.

        A part the journal proves was never sent is sent now; an attempt whose answer was lost is found in
        the vendor's listing where there is one; images already saved are returned from the output folder.
        Raises :class:`~ideochar.errors.JobBusy` while another live process runs the job. See
        :mod:`ideochar._pickup`.
        """
        return self._resume(job_id)

    def _resume(self, job_id: str, *, timeout: float | None = None) -> CharacterResult:
        journal = self._journal_for("resume")
        owner = Owner.current()
        record = self._drive(Job.claim(journal, journal.job(job_id).id, owner))
        try:
            job = self._resuming(record, owner, timeout)
        except BaseException:
            journal.release(record.id, owner)
            raise
        result: CharacterResult = self._drive_job(job)
        return result

    def resume_vendor(self, provider: str, state: Mapping[str, Any]) -> ProviderOutput:
        """Fetch the result of a job a vendor admitted earlier, from its ``submitted`` event's resume data."""
        output: ProviderOutput = self._drive(self._resume_flow(provider, state))
        return output

    @property
    def limiter(self) -> Limiter:
        """Concurrency and rate limits per provider, and the budget, shared by every thread using this
        client (and by the fleet, with a shared :attr:`state`)."""
        if self._limiter is None:
            self._limiter = self.state.limiter(
                self._provider_limits(), providers=self._names_for_state(), budget=self.budget, breaker=self.breaker
            )
        return self._limiter

    def _limited(self) -> frozenset[str]:
        return self.limiter.providers

    def _perform(self, step: Any) -> Any:
        if isinstance(step, Record):
            return self._write(step)
        if isinstance(step, Acquire):
            return self.limiter.acquire(step)
        raise TypeError(f"the client has no handler for the step {step!r}")

    def close(self) -> None:
        self._close_journal()
        if self._owns_state:
            self.state.close()
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
        limiter: AsyncLimiter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(providers, **kwargs)
        self._http = http
        self._owns_http = http is None
        self._fetch = fetch_http
        self._owns_fetch = fetch_http is None
        self._limiter = limiter
        self._journal_limiter: Any = None

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

    @overload
    def quote(self, request: CharacterRequest, *, live: Literal[False] = False) -> list[Quote]: ...
    @overload
    def quote(self, request: CharacterRequest, *, live: Literal[True]) -> Awaitable[list[Quote]]: ...
    def quote(self, request: CharacterRequest, *, live: bool = False) -> list[Quote] | Awaitable[list[Quote]]:
        """As :meth:`Client.quote`; with ``live=True`` it asks the vendors, so await it:
        ``quotes = await client.quote(request, live=True)``."""
        if not live:
            return super().quote(request)
        return self._drive(self._live_quotes(request))

    async def run(self, request: CharacterRequest, *, strict: bool | None = None) -> CharacterResult:
        self.accept_inputs.check_images(request.images())  # a request built elsewhere: its kinds again
        return await self._run(request, strict=strict)

    async def _run(self, request: CharacterRequest, *, strict: bool | None) -> CharacterResult:
        await self._open_journal()
        result: CharacterResult = await self._drive_job(self._new_job(request, strict))
        return result

    async def _drive_job(self, job: Job) -> Any:
        """Drive a job to its end (or, submitting, until admitted); the calls of a fan-out run concurrently."""
        import anyio

        try:
            if job.calls_count == 1:
                return await self._drive(job.whole(), job)
            await self._drive(job.begin(), job)
            async with anyio.create_task_group() as group:
                for call in job.calls():
                    group.start_soon(self._drive, call, job)
            return await self._drive(job.handle() if job.detach else job.end(), job)
        finally:  # a cancellation included: shielded, so the release is written before the task ends
            if job.journal is not None:
                with anyio.CancelScope(shield=True):
                    await self._drive(job.release(), job)

    async def _drive(self, flow: Any, job: Job | None = None) -> Any:
        deadline = job.deadline if job is not None else self._deadline()
        return await adrive(
            flow,
            self.http,
            deadline=deadline,
            on_event=self._dispatch,
            perform=self._perform,
            fetch=self.fetch_http,
            vendor_origin=self._on_configured_origin,
        )

    async def resume(self, job_id: str) -> CharacterResult:
        """Finish a journaled job; the same rules as :meth:`Client.resume`."""
        return await self._resume(job_id)

    async def _resume(self, job_id: str, *, timeout: float | None = None) -> CharacterResult:
        await self._open_journal()
        journal = self._journal_for("resume")
        owner = Owner.current()
        found: JobRecord = await self._off_loop(journal.job, job_id)
        record = await self._drive(Job.claim(journal, found.id, owner))
        try:
            job = self._resuming(record, owner, timeout)
        except BaseException:
            await self._off_loop(journal.release, record.id, owner)
            raise
        result: CharacterResult = await self._drive_job(job)
        return result

    async def submit(
        self, request: CharacterRequest, *, webhook_url: str | None = None, strict: bool | None = None
    ) -> JobHandle:
        """The awaitable :meth:`Client.submit`."""
        await self._open_journal()
        handle: JobHandle = await self._drive_job(self._new_job(request, strict, submit=True, webhook_url=webhook_url))
        return handle

    async def wait(self, job: JobHandle | str, *, timeout: float | None = None) -> CharacterResult:
        """The awaitable :meth:`Client.wait`."""
        import anyio

        give_up = time.monotonic() + (timeout if timeout is not None else self.deadline_seconds or math.inf)
        while True:
            try:
                return await self._resume(_job_id(job), timeout=None if timeout is None else give_up - time.monotonic())
            except JobBusy:
                if time.monotonic() + WAIT_BUSY_SECONDS >= give_up:
                    raise
                await anyio.sleep(WAIT_BUSY_SECONDS)

    async def cancel(self, job: JobHandle | str) -> dict[str, str]:
        """The awaitable :meth:`Client.cancel`."""
        flows = await self._off_loop(self._cancel_flows, job)
        return {vendor_id: await self._drive(flow) for vendor_id, flow in flows}

    async def resume_vendor(self, provider: str, state: Mapping[str, Any]) -> ProviderOutput:
        output: ProviderOutput = await self._drive(self._resume_flow(provider, state))
        return output

    def batch(self, requests: Requests, **options: Unpack[BatchKeywords]) -> AsyncBatch:
        """Run many requests as one batch, spread over the providers by their capacity, under one budget,
        resumable by running it again; an async iterator of each row's result as it finishes
        (:mod:`ideochar.batch`).

        ``async with client.batch(rows, out="out/", max_cost_usd=20) as batch: async for row in batch: ...``
        """
        from ideochar.batch import start_async

        return start_async(self, requests, options)

    async def _open_journal(self) -> None:
        """Open the journal on first use off the event loop: opening may wait for a lock another process holds."""
        if not self._journal_opened:
            await self._off_loop(lambda: self.journal)

    async def _off_loop(self, function: Callable[..., T], *args: Any) -> T:
        """Run a journal call on the journal's worker thread: SQLite may wait for a lock held by another
        process (up to its busy timeout), and the event loop must not wait with it."""
        import anyio
        import anyio.to_thread

        if self._journal_limiter is None:
            self._journal_limiter = anyio.CapacityLimiter(1)  # one writer at a time, in order
        return await anyio.to_thread.run_sync(function, *args, limiter=self._journal_limiter)

    @property
    def limiter(self) -> AsyncLimiter:
        """Concurrency and rate limits per provider, and the budget, shared by every task using this
        client (and by the fleet, with a shared :attr:`state`)."""
        if self._limiter is None:
            self._limiter = self.state.async_limiter(
                self._provider_limits(), providers=self._names_for_state(), budget=self.budget, breaker=self.breaker
            )
        return self._limiter

    def _limited(self) -> frozenset[str]:
        return self.limiter.providers

    async def _perform(self, step: Any) -> Any:
        if isinstance(step, Record):
            return await self._off_loop(self._write, step)
        if isinstance(step, Acquire):
            return await self.limiter.acquire(step)
        raise TypeError(f"the client has no handler for the step {step!r}")

    async def aclose(self) -> None:
        self._close_journal()
        if self._owns_state:
            await self.state.aclose()
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

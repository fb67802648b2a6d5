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
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypedDict

import httpx
import pluggy
from typing_extensions import Self, Unpack

from ideochar._constants import DEFAULT_DEADLINE_SECONDS
from ideochar._secrets import RedactingFilter, Secret
from ideochar.errors import InvalidRequest, MissingCredentials
from ideochar.events import Event
from ideochar.exchange import adrive, drive
from ideochar.media import ImageInput
from ideochar.request import CharacterRequest, Edit, Generate, Remix
from ideochar.result import CharacterResult
from ideochar.router import Candidate, FailurePolicy, Plan, Strategy, plan, route, run_provider
from ideochar.spec import CallContext, Provider, ProviderOutput, Quote

__all__ = ["EMULATOR_KEY", "AsyncClient", "Client", "RequestFields"]

logger = logging.getLogger("ideochar")
logger.addFilter(RedactingFilter())

#: The key every provider uses against the built-in emulator (which accepts any non-empty key).
EMULATOR_KEY = "ideochar-emulator-key"
_MAX_CONNECTIONS = 1024


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
        strict: bool = False,
        fan_out: bool = True,
        max_cost_usd: Decimal | float | str | None = None,
        strategy: Strategy = "as_listed",
        deadline_seconds: float | None = DEFAULT_DEADLINE_SECONDS,
        policy: FailurePolicy | None = None,
        on_event: Callable[[Event], None] | None = None,
        emulator: bool | str = False,
        plugin_manager: pluggy.PluginManager | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """
        Args:
            providers: names in failover order (``"fal,segmind"`` or a list); default
                ``IDEOCHAR_PROVIDERS``, else every installed provider.
            keys: explicit keys by provider name; otherwise plugins, then each provider's variables.
            base_urls: per provider, named base URLs to override (``{"fal": {"queue": "http://..."}}``).
            options: vendor-only defaults per provider, overlaid by ``request.extra``.
            strict: turn every warning (a field a vendor would ignore) into skipping that vendor.
            max_cost_usd: refuse providers whose quote is above this, before anything is sent.
            deadline_seconds: bounds every HTTP call of one request, retries and failover included.
            emulator: True to run against the built-in emulator (started on a loopback port), or the
                root URL of one already running (``ideochar emulator serve``).
        """
        self._names = _names(providers, environ)
        self._keys = dict(keys or {})
        self._base_overrides = {k: dict(v) for k, v in (base_urls or {}).items()}
        self._options = {k: dict(v) for k, v in (options or {}).items()}
        self.strict = strict
        self.fan_out = fan_out
        self.max_cost_usd = None if max_cost_usd is None else Decimal(str(max_cost_usd))
        self.strategy: Strategy = strategy
        self.deadline_seconds = deadline_seconds
        self.policy = policy or FailurePolicy()
        self._on_event = on_event
        self._emulator = emulator
        self._emulator_root: str | None = emulator if isinstance(emulator, str) else None
        self._pm = plugin_manager
        self._environ = environ
        self._providers: dict[str, Provider] | None = None
        self._latency: dict[str, float] = {}

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
    def build_request(operation: Generate | Edit | Remix, prompt: str, reference: Any, **fields: Any) -> CharacterRequest:
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
            latency=self._latency,
            known_providers=list(self.available),
        )

    def _context(self, provider: Provider, request: CharacterRequest | None, job_id: str | None) -> CallContext:
        name = provider.info.name
        base_urls = dict(provider.info.base_urls)
        if self._emulator:
            base_urls.update(self._emulated_urls().get(name, {}))
        base_urls.update(self._base_overrides.get(name, {}))
        defaults = self._options.get(name, {})
        options = provider.options(request, defaults) if request is not None else provider.info.options_model.model_validate(defaults)
        return CallContext(
            provider=name,
            credentials=self._credentials(provider),
            base_urls=base_urls,
            options=options,
            job_id=job_id,
            user_agent=_user_agent(),
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
        from ideochar.emulator.registry import emulated_base_urls

        return emulated_base_urls(self.plugin_manager, self._emulator_url())

    def _emulator_url(self) -> str:
        raise NotImplementedError

    def _dispatch(self, event: Event) -> None:
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

    def _start(self, request: CharacterRequest, strict: bool | None) -> tuple[str, Plan, float | None]:
        job_id = uuid.uuid4().hex
        return job_id, self.plan(request, job_id=job_id, strict=strict), self._deadline()

    def _resume_flow(self, provider: str, state: Mapping[str, Any]) -> tuple[Provider, CallContext]:
        try:
            chosen = self.available[provider]
        except KeyError:
            raise InvalidRequest.for_field("provider", f"{provider!r} is not installed") from None
        return chosen, self._context(chosen, None, None)


def _names(providers: str | Sequence[str] | None, environ: Mapping[str, str] | None) -> list[str]:
    if providers is None:
        providers = (os.environ if environ is None else environ).get("IDEOCHAR_PROVIDERS", "")
    if isinstance(providers, str):
        providers = providers.split(",")
    return [p.strip() for p in providers if p and p.strip()]


def _user_agent() -> str:
    from ideochar import __version__

    return f"ideochar/{__version__}"


class Client(_Base):
    """The blocking client. Thread-safe; use it as a context manager or call :meth:`close`."""

    def __init__(self, providers: str | Sequence[str] | None = None, *, http: httpx.Client | None = None, **kwargs: Any) -> None:
        super().__init__(providers, **kwargs)
        self._http = http
        self._owns_http = http is None
        self._server: Any = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                follow_redirects=False,
                limits=httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=64),
                trust_env=True,
            )
        return self._http

    def _emulator_url(self) -> str:
        if self._emulator_root is None:
            from ideochar.emulator.server import BackgroundServer

            self._server = BackgroundServer().start()
            self._emulator_root = self._server.url
        return self._emulator_root

    def generate(self, prompt: str, reference: Any, *, strict: bool | None = None, **fields: Unpack[RequestFields]) -> CharacterResult:
        """A new image of the character in ``reference``, as ``prompt`` describes."""
        return self.run(self.build_request(Generate(), prompt, reference, **fields), strict=strict)

    def edit(
        self, prompt: str, reference: Any, *, image: Any, mask: Any, strict: bool | None = None, **fields: Unpack[RequestFields]
    ) -> CharacterResult:
        """Repaint the black area of ``mask`` on ``image``, keeping the character."""
        return self.run(self.build_request(Edit(image=image, mask=mask), prompt, reference, **fields), strict=strict)

    def remix(
        self, prompt: str, reference: Any, *, image: Any, strength: float = 0.8, strict: bool | None = None,
        **fields: Unpack[RequestFields],
    ) -> CharacterResult:
        """A new image from ``image``, changed by ``strength`` (0.01 a little, 1 the most)."""
        return self.run(self.build_request(Remix(image=image, strength=strength), prompt, reference, **fields), strict=strict)

    def run(self, request: CharacterRequest, *, strict: bool | None = None) -> CharacterResult:
        """Serve a prepared request, failing over as configured."""
        job_id, chosen, deadline = self._start(request, strict)
        flow = route(request, chosen.candidates, policy=self.policy, job_id=job_id, deadline=deadline)
        return drive(flow, self.http, deadline=deadline, on_event=self._dispatch)

    def resume_vendor(self, provider: str, state: Mapping[str, Any]) -> ProviderOutput:
        """Fetch the result of a job a vendor admitted earlier, from its ``submitted`` event's resume data."""
        chosen, ctx = self._resume_flow(provider, state)
        flow = run_provider(chosen, chosen.resume(state, ctx), ctx)
        return drive(flow, self.http, deadline=self._deadline(), on_event=self._dispatch)

    def close(self) -> None:
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
        self, providers: str | Sequence[str] | None = None, *, http: httpx.AsyncClient | None = None, **kwargs: Any
    ) -> None:
        super().__init__(providers, **kwargs)
        self._http = http
        self._owns_http = http is None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            transport: httpx.AsyncBaseTransport | None = None
            if self._emulator is True:
                from ideochar.emulator import create_app

                transport = httpx.ASGITransport(app=create_app(self.plugin_manager))
                self._emulator_root = "http://emulator.invalid"
            self._http = httpx.AsyncClient(
                transport=transport,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=64),
            )
        return self._http

    def _emulator_url(self) -> str:
        self.http  # noqa: B018 - creating the transport sets the in-process root
        assert self._emulator_root is not None
        return self._emulator_root

    async def generate(self, prompt: str, reference: Any, *, strict: bool | None = None, **fields: Unpack[RequestFields]) -> CharacterResult:
        return await self.run(self.build_request(Generate(), prompt, reference, **fields), strict=strict)

    async def edit(
        self, prompt: str, reference: Any, *, image: Any, mask: Any, strict: bool | None = None, **fields: Unpack[RequestFields]
    ) -> CharacterResult:
        return await self.run(self.build_request(Edit(image=image, mask=mask), prompt, reference, **fields), strict=strict)

    async def remix(
        self, prompt: str, reference: Any, *, image: Any, strength: float = 0.8, strict: bool | None = None,
        **fields: Unpack[RequestFields],
    ) -> CharacterResult:
        return await self.run(self.build_request(Remix(image=image, strength=strength), prompt, reference, **fields), strict=strict)

    async def run(self, request: CharacterRequest, *, strict: bool | None = None) -> CharacterResult:
        job_id, chosen, deadline = self._start(request, strict)
        flow = route(request, chosen.candidates, policy=self.policy, job_id=job_id, deadline=deadline)
        return await adrive(flow, self.http, deadline=deadline, on_event=self._dispatch)

    async def resume_vendor(self, provider: str, state: Mapping[str, Any]) -> ProviderOutput:
        chosen, ctx = self._resume_flow(provider, state)
        flow = run_provider(chosen, chosen.resume(state, ctx), ctx)
        return await adrive(flow, self.http, deadline=self._deadline(), on_event=self._dispatch)

    async def aclose(self) -> None:
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

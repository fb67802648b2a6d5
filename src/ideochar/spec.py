"""What a provider is: the contract every vendor plugin implements, built-in or third-party.

A provider declares itself in a :class:`ProviderInfo` (operations, the neutral fields it supports,
images per call, prices, where its key comes from, its base URLs) and turns a request into an
**exchange**: a generator that yields HTTP requests and receives responses (see
:mod:`ideochar.exchange`). It never opens a socket, so one implementation serves the sync and the
async client, and a test can drive it with canned responses.

Example, a minimal provider::

    class EchoProvider(Provider):
        info = ProviderInfo(name="echo", title="Echo", operations=frozenset({"generate"}),
                            supported_fields={"generate": frozenset({"seed"})},
                            prices_usd={"generate": {"turbo": Decimal("0.01"), ...}},
                            credential_variables=(("ECHO_KEY",),),
                            base_urls={"api": "https://echo.example"})

        def exchange(self, request, ctx):
            response = yield Send(httpx.Request("POST", ctx.url("api", "/v1/echo"), json={...}), admits=True)
            ...
            return ProviderOutput(images=[...], vendor_request_id=...)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ideochar._secrets import Secret
from ideochar.errors import IdeocharError, InvalidRequest, Unsupported
from ideochar.request import NEUTRAL_FIELDS, CharacterRequest, OperationName, Speed
from ideochar.result import GeneratedImage, ImageFailure, RequestWarning

if TYPE_CHECKING:
    from ideochar.exchange import Step
    from ideochar.uploads import UploadCache

__all__ = [
    "DEFAULT_TOPICS",
    "CallContext",
    "Exchange",
    "NoOptions",
    "Provider",
    "ProviderInfo",
    "ProviderOutput",
    "Quote",
]

T = TypeVar("T")
#: What ``ProviderInfo.defaults`` may describe: the neutral settings a caller can leave unset (or at "auto").
DEFAULT_TOPICS: tuple[str, ...] = ("speed", "style", "magic_prompt", "size", "seed")
#: A provider's protocol, written once: yields steps, receives responses, returns its output.
Exchange = Generator["Step", Any, T]


class NoOptions(BaseModel):
    """A provider without vendor-only options accepts an empty ``extra`` namespace only."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass(frozen=True)
class ProviderInfo:
    """Everything the router, the price table, the CLI and the docs need to know about a provider."""

    name: str
    """Stable id used in config, ``extra`` and the journal (``"fal"``). Renaming it breaks all three."""
    title: str
    operations: frozenset[OperationName]
    supported_fields: Mapping[OperationName, frozenset[str]]
    """Neutral optional fields honoured per operation (see ``CharacterRequest.fields_used``)."""
    prices_usd: Mapping[OperationName, Mapping[Speed, Decimal]]
    """Price per output image by operation and speed."""
    credential_variables: tuple[tuple[str, ...], ...]
    """Environment variables that give a key, as alternatives: ``(("FAL_KEY",), ("FAL_KEY_ID", "FAL_KEY_SECRET"))``."""
    base_urls: Mapping[str, str]
    """Named base URLs, scheme included, each overridable at call time (``{"queue": "https://queue.fal.run"}``)."""
    max_images_per_call: int = 1
    max_images_in_flight: int | None = None
    """Vendor cap on images in progress at once (Ideogram: 10 per organisation)."""
    requests_per_minute: int | None = None
    can_resume: bool = False
    """True when a job submitted earlier can be picked up again by its vendor id."""
    calls_back: bool = False
    """True when the vendor can call a webhook URL when a job ends (``CallContext.webhook_url``)."""
    can_reconcile: bool = False
    """True when a job whose id was lost (the answer to its admitting request never came) can be found
    again in the vendor's listing by its marker (:meth:`Provider.reconcile`)."""
    options_model: type[BaseModel] = NoOptions
    """Validates ``request.extra[name]`` and client-level options for this provider."""
    docs_url: str | None = None
    inferred: Mapping[str, str] = field(default_factory=dict)
    """Facts this provider relies on that are inferred, not verified (topic -> note); shown in the docs."""
    typical_seconds: float | None = None
    """How long one call usually takes, submission to downloaded image, as the vendor documents it; None when
    it does not say. ``ideochar quote`` shows it (or what the journal has seen) next to the price."""
    defaults: Mapping[str, str] = field(default_factory=dict)
    """What goes on the wire when the caller leaves a setting unset or at "auto", in the vendor's words, by
    topic (:data:`DEFAULT_TOPICS`): ``{"style": "style AUTO, sent"}``. Nothing is left to a vendor default
    the caller did not choose: a field is left out only where the vendor documents the same value. Shown
    in the provider matrix, so what "auto" means at each vendor is written down."""

    def supports(self, operation: OperationName, field_name: str) -> bool:
        return field_name in self.supported_fields.get(operation, frozenset())

    def price(self, operation: OperationName, speed: Speed) -> Decimal | None:
        return self.prices_usd.get(operation, {}).get(speed)

    def __post_init__(self) -> None:
        unknown = {f for fields in self.supported_fields.values() for f in fields} - NEUTRAL_FIELDS
        if unknown:
            raise ValueError(f"{self.name}: supported_fields names unknown fields {sorted(unknown)}")
        if self.max_images_per_call < 1:
            raise ValueError(f"{self.name}: max_images_per_call must be at least 1")
        unknown_topics = set(self.defaults) - set(DEFAULT_TOPICS)
        if unknown_topics:
            raise ValueError(f"{self.name}: defaults names unknown topics {sorted(unknown_topics)}")


@dataclass(frozen=True)
class CallContext:
    """What one call needs besides the request: key, URLs, options. Built by the client per attempt."""

    provider: str
    credentials: Secret
    base_urls: Mapping[str, str]
    options: BaseModel = field(default_factory=NoOptions)
    job_id: str | None = None
    user_agent: str = "ideochar"
    webhook_url: str | None = None
    """Where the vendor should call back when the job ends (``ProviderInfo.calls_back``); None: no callback."""
    uploads: UploadCache | None = None
    """Images already uploaded to vendors' storage (:mod:`ideochar.uploads`); None: upload every time."""

    def url(self, name: str, path: str = "") -> str:
        """Join a named base URL and a path: ``ctx.url("queue", "/fal-ai/ideogram/character")``."""
        try:
            base = self.base_urls[name]
        except KeyError:
            raise InvalidRequest(f"{self.provider} has no base URL named {name!r}") from None
        if not path:
            return base
        return base.rstrip("/") + "/" + path.lstrip("/")

    def __repr__(self) -> str:
        return f"CallContext(provider={self.provider!r}, base_urls={dict(self.base_urls)!r}, job_id={self.job_id!r})"


@dataclass
class ProviderOutput:
    """What an exchange returns; the client adds provider, attempts, prices and warnings."""

    images: list[GeneratedImage]
    vendor_request_id: str | None = None
    cost_usd: Decimal | None = None
    """Only when the vendor reported it; otherwise the price table is used."""
    failures: list[ImageFailure] = field(default_factory=list)
    warnings: list[RequestWarning] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Quote:
    """A provider's price and support for a request, before anything is sent."""

    provider: str
    supported: bool
    unit_price_usd: Decimal | None
    images: int
    calls: int
    warnings: tuple[RequestWarning, ...] = ()
    reason: str | None = None
    """Why it is not supported (or the first warning), as a sentence."""
    price_inferred: bool = False
    price_source: Literal["declared", "live"] = "declared"
    """``"live"`` when the unit price was just read from the vendor (``Client.quote(request, live=True)``)."""

    @property
    def total_usd(self) -> Decimal | None:
        return None if self.unit_price_usd is None else self.unit_price_usd * self.images


class Provider(ABC):
    """Base class for a vendor adapter. Subclasses set ``info`` and write :meth:`exchange`."""

    info: ProviderInfo

    # -- before any I/O --------------------------------------------------------------------------

    def check(self, request: CharacterRequest, *, fan_out: bool = True) -> list[RequestWarning]:
        """Warnings for what this provider would not honour; raises Unsupported if it cannot serve at all.

        The default reads ``info``; override to add vendor rules, calling ``super().check``.
        """
        op = request.operation_name
        if op not in self.info.operations:
            raise Unsupported(f"{self.info.name} cannot {op}", reasons={self.info.name: f"no {op} operation"})
        warnings = [
            RequestWarning(
                kind="unsupported",
                field=name,
                message=f"{self.info.title} ignores {name} for {op}",
                provider=self.info.name,
            )
            for name in sorted(request.fields_used() - {"num_images"})
            if not self.info.supports(op, name)
        ]
        if request.num_images > self.info.max_images_per_call:
            if not fan_out:
                raise Unsupported(
                    f"{self.info.name} makes at most {self.info.max_images_per_call} image(s) per call",
                    reasons={self.info.name: f"num_images > {self.info.max_images_per_call} and fan-out is off"},
                )
            calls = -(-request.num_images // self.info.max_images_per_call)
            warnings.append(
                RequestWarning(
                    kind="fanned_out",
                    field="num_images",
                    message=f"{self.info.title} makes {self.info.max_images_per_call} per call: {calls} calls",
                    provider=self.info.name,
                )
            )
        self.options(request)  # validates extra[name]
        return warnings

    def options(self, request: CharacterRequest, defaults: Mapping[str, Any] | None = None) -> BaseModel:
        """This provider's vendor-only options: client defaults overlaid by ``request.extra[name]``."""
        raw = {**(defaults or {}), **request.extra.get(self.info.name, {})}
        try:
            return self.info.options_model.model_validate(raw)
        except ValidationError as exc:
            from ideochar.request import invalid_request_from

            raise invalid_request_from(exc, prefix=("extra", self.info.name)) from None

    def quote(self, request: CharacterRequest, *, fan_out: bool = True) -> Quote:
        name, per_call = self.info.name, self.info.max_images_per_call
        calls = -(-request.num_images // per_call)
        unit = self.info.price(request.operation_name, request.speed)
        inferred = any(k.startswith("price") for k in self.info.inferred)
        try:
            warnings = self.check(request, fan_out=fan_out)
        except (Unsupported, InvalidRequest) as exc:
            reason = exc.reasons.get(name, str(exc)) if isinstance(exc, Unsupported) else str(exc)
            return Quote(name, False, unit, request.num_images, calls, reason=reason, price_inferred=inferred)
        note = warnings[0].message if warnings else None
        return Quote(name, True, unit, request.num_images, calls, tuple(warnings), note, inferred)

    # -- live prices ----------------------------------------------------------------------------------

    def live_price(self, request: CharacterRequest, ctx: CallContext) -> Exchange[Decimal | None]:
        """The vendor's current price per output image for ``request``, asked of its pricing endpoint.

        Override where a vendor publishes one (fal's platform API). Returns None when it has none for
        this request; raises an ideochar error when it cannot be read. Never billable: a GET.
        """
        return None
        yield  # pragma: no cover  (makes this a generator)

    @property
    def has_live_price(self) -> bool:
        """True when this provider can ask its vendor for the current price (:meth:`live_price`)."""
        return type(self).live_price is not Provider.live_price

    def live_quote(
        self, request: CharacterRequest, context: Callable[[], CallContext], *, fan_out: bool = True
    ) -> Exchange[Quote]:
        """:meth:`quote` with the vendor's current unit price where it publishes one; the declared price,
        with a warning saying why, when the live one cannot be read (no key, no answer, no such price).

        ``context`` builds the call's context only when a live price is asked for: a provider that
        publishes none needs no key to be quoted.
        """
        quote = self.quote(request, fan_out=fan_out)
        if not quote.supported or not self.has_live_price:
            return quote
        try:
            price = yield from self.live_price(request, context())
        except IdeocharError as exc:
            return _with_warning(quote, self.info, f"its live price could not be read ({exc.message})")
        if price is None:
            return _with_warning(quote, self.info, "it published no live price for this request")
        return replace(quote, unit_price_usd=price, price_source="live")

    def credentials(self, environ: Mapping[str, str]) -> Secret | None:
        """The key from the environment: the first alternative whose variables are all set (joined by ':')."""
        for names in self.info.credential_variables:
            values = [environ.get(n, "").strip() for n in names]
            if all(values):
                return Secret(":".join(values))
        return None

    # -- the protocol ------------------------------------------------------------------------------

    @abstractmethod
    def exchange(self, request: CharacterRequest, ctx: CallContext) -> Exchange[ProviderOutput]:
        """Run the request: yield :class:`~ideochar.exchange.Send` steps (and events, sleeps), return the output."""

    def resume(self, state: Mapping[str, Any], ctx: CallContext) -> Exchange[ProviderOutput]:
        """Pick up a job admitted earlier, from the ``resume`` data of its ``submitted`` event."""
        raise Unsupported(f"{self.info.name} jobs cannot be resumed", reasons={self.info.name: "no resume"})
        yield  # pragma: no cover  (makes this a generator)

    def reconcile(
        self, marker: Mapping[str, Any], ctx: CallContext, *, sent_at: float
    ) -> Exchange[dict[str, Any] | None]:
        """Find the job an admitting request created when its answer (and so its id) was lost.

        ``marker`` is what the provider put on that ``Send(admits=True, marker=...)``; ``sent_at`` is
        when the intent to send was journaled (a ``time.time()`` value: the job cannot be older). Returns
        the resume data a ``submitted`` event would have carried, or None when no job matches. When
        several match, raise :class:`~ideochar.errors.OutcomeUnknown` rather than guess: sending again or
        picking the wrong one could both cost money.
        """
        raise Unsupported(f"{self.info.name} jobs cannot be reconciled", reasons={self.info.name: "no listing"})
        yield  # pragma: no cover  (makes this a generator)

    def cancel(self, state: Mapping[str, Any], ctx: CallContext) -> Exchange[str]:
        """Ask the vendor to cancel a job admitted earlier (same ``resume`` data); returns the vendor's
        outcome as a short lower-case word. Sent once: a failure is raised, never retried into silence."""
        raise Unsupported(f"{self.info.name} jobs cannot be cancelled", reasons={self.info.name: "no cancel"})
        yield  # pragma: no cover  (makes this a generator)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.name}>"


def _with_warning(quote: Quote, info: ProviderInfo, why: str) -> Quote:
    """``quote`` at its declared price, saying why the live one is not shown."""
    warning = RequestWarning(
        kind="other", field=None, message=f"{info.title}: {why}; the declared price is shown", provider=info.name
    )
    return replace(quote, warnings=(*quote.warnings, warning), reason=quote.reason or warning.message)

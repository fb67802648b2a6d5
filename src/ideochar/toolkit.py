"""What a vendor adapter gets from the core: the pieces every adapter would otherwise write again.

The emulator gives each vendor's routes one :class:`~ideochar.emulator.kit.EmulatorKit`; this module is
the same thing for the other side, the adapters. Each piece exists because four adapters had each
written it differently, and a difference here is a defect somewhere (a key cut in half before it was
redacted, a key sent to another port of a trusted host, 300 downloads for one image asked):

* **errors as a table** -- :class:`Failure` (an error answer, read once), :class:`ErrorRule` (status set,
  named :class:`Condition`, error class, message, billed hint, sent flag) and :func:`classify` /
  :func:`error_for`; a vendor's ``errors.py`` keeps only its table and its own conditions;
* **error bodies** -- :func:`read_body` never assumes JSON (HTML pages from a gateway, wrong
  charsets, empty bodies) and **redacts before it cuts**; :func:`parse_reply` reads a success through
  its wire model with the same care;
* **the poll loop** -- :func:`poll` with a :class:`PollSchedule`: waits grow while the job is pending,
  failed fetches are retried after Retry-After or a backoff, a run of them ends the wait;
* **where the key may go** -- :class:`TrustedOrigins` compares scheme, host and port of a URL a vendor
  names with the configured base URLs (plus a vendor's documented https domains);
* **collecting images** -- :func:`collect_images` downloads at most the number asked, keeps those that
  arrived and reports the rest as :class:`~ideochar.result.ImageFailure`;
* **vendor numbers** -- :class:`VendorModel`, the base of every reply model: a malformed optional field is
  dropped (with a log line) instead of making the whole answer unreadable, and :data:`Seed`,
  :data:`QueuePosition`, :data:`Count` and :data:`Seconds` keep numbers inside what the journal can store;
* **explicit defaults** -- :func:`draw_seed` (the seed ideochar chooses for a vendor that makes one image
  per call, so the images of a fan-out differ and each reports its seed) and :func:`output_size` (the
  pixels a request means, an unset size being :data:`DEFAULT_ASPECT_RATIO`), so no vendor default the
  caller did not choose decides what is made;
* **uploads** -- :func:`reuse_upload` uploads a local image once per vendor and scope while its URL
  lives (:mod:`ideochar.uploads`), as ``Send`` steps of the provider's own exchange.

Nothing here decides billing: rules carry the vendor's *hint* (what its documentation says a refusal
costs), and the router decides what an attempt was billed from what happened on the wire.

A vendor's error table, in short::

    RULES = (
        ErrorRule("auth", AuthenticationFailed, "Acme refused the key: {detail}", statuses(401, 403)),
        ErrorRule("rate limit", RateLimited, "Acme asks to slow down: {detail}", statuses(429)),
        ErrorRule("server", ProviderUnavailable, "Acme is unavailable (HTTP {status}): {detail}", SERVER_ERRORS),
        ErrorRule("other 4xx", RequestRejected, "Acme refused the request (HTTP {status}): {detail}", CLIENT_ERRORS),
    )

    def error_from_response(response):
        return error_for(read_failure(response), RULES, provider="acme", title="Acme")
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import secrets
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ideochar._constants import MAX_RETRY_AFTER_SECONDS, POLL_INITIAL_SECONDS, POLL_MAX_SECONDS
from ideochar._secrets import redact, redact_any
from ideochar.errors import Billed, ProviderError, ProviderUnavailable, UnexpectedResponse
from ideochar.events import Event
from ideochar.exchange import Send, Sleep, download_image
from ideochar.media import ImageInput
from ideochar.request import CharacterRequest, Edit
from ideochar.result import GeneratedImage, ImageFailure, RequestWarning
from ideochar.retry import backoff_seconds, parse_retry_after
from ideochar.spec import CallContext, Exchange
from ideochar.uploads import Upload, account_fingerprint

__all__ = [
    "ALWAYS",
    "CLIENT_ERRORS",
    "DEFAULT_ASPECT_RATIO",
    "DETAIL_CHARS",
    "INT64_MAX",
    "INT64_MIN",
    "KEPT_BODY_CHARS",
    "MAX_SEED",
    "RATIO_SIZES",
    "SERVER_ERRORS",
    "UPLOAD_WAIT_SECONDS",
    "Collected",
    "Condition",
    "Count",
    "Done",
    "ErrorRule",
    "Failure",
    "NamedImage",
    "Origin",
    "Pending",
    "PollSchedule",
    "QueuePosition",
    "Retry",
    "Seconds",
    "Seed",
    "TrustedOrigins",
    "Unreadable",
    "VendorBody",
    "VendorModel",
    "classify",
    "clip",
    "collect_images",
    "draw_seed",
    "error_for",
    "first_problem",
    "has_code",
    "image_digest",
    "int_or_none",
    "json_or_none",
    "json_summary",
    "mentions",
    "on_phase",
    "output_size",
    "parse_reply",
    "poll",
    "read_body",
    "read_failure",
    "retryable_hint",
    "reuse_upload",
    "statuses",
    "upload_scope",
]

logger = logging.getLogger("ideochar.toolkit")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: A vendor's words in an error message, at most this long (after redaction).
DETAIL_CHARS = 600
#: A non-JSON error body kept on an exception, at most this long (after redaction).
KEPT_BODY_CHARS = 2000

#: SQLite's INTEGER range: a vendor number outside it cannot be journaled.
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
#: A queue longer than this is not a queue position but garbage.
MAX_QUEUE_POSITION = 2**31 - 1


# -- reading an error body ---------------------------------------------------------------------------------


def clip(text: str, limit: int = DETAIL_CHARS) -> str:
    """``text`` with its runs of white space folded, cut to ``limit`` characters.

    Call it on redacted text only: a key cut in half no longer matches the redactor.
    """
    return " ".join(text.split())[:limit]


def _decoded(response: httpx.Response) -> str:
    """The body as text, whatever its declared charset (a wrong or unknown one reads as UTF-8)."""
    if not response.content:
        return ""
    try:
        return response.text
    except (UnicodeError, LookupError):
        return response.content.decode("utf-8", "replace")


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_DETAIL_KEYS = ("error", "message", "detail")


@dataclass(frozen=True)
class VendorBody:
    """A vendor answer's body, read once and redacted whole: cutting it afterwards cannot halve a key."""

    kind: Literal["json", "html", "text", "empty"]
    text: str
    """The whole body as text, redacted."""
    data: Any = None
    """The parsed JSON, redacted (None unless ``kind == "json"``)."""

    def excerpt(self, limit: int = KEPT_BODY_CHARS) -> str | None:
        """The start of the body as text, for an exception's ``body``; None when empty."""
        return self.text[:limit] or None

    def kept(self, limit: int = KEPT_BODY_CHARS) -> Any:
        """What an exception keeps: the JSON as parsed, else the start of the text."""
        return self.data if self.kind == "json" else self.excerpt(limit)

    def summary(self, keys: Sequence[str] = _DETAIL_KEYS, limit: int = DETAIL_CHARS) -> str:
        """A readable detail: the JSON members named by ``keys`` (joined), an HTML page's title, the
        text itself, or ``"no message"``."""
        if self.kind == "json":
            return json_summary(self.data, keys, limit)
        if self.kind == "html":
            match = _TITLE.search(self.text)
            title = clip(html.unescape(match.group(1)), limit) if match else ""
            return f"an HTML page titled {title!r}" if title else "an HTML page"
        return clip(self.text, limit) or "no message"


def json_summary(data: Any, keys: Sequence[str] = _DETAIL_KEYS, limit: int = DETAIL_CHARS) -> str:
    """The string members ``keys`` of a JSON object, joined with `` — ``; else the whole value, folded."""
    if isinstance(data, dict):
        parts = [
            str(data[key]).strip()
            for key in keys
            if isinstance(data.get(key), (str, int, float)) and str(data[key]).strip()
        ]
        if parts:
            return clip(" — ".join(dict.fromkeys(parts)), limit)
    return clip(str(data), limit) or "no message"


def read_body(response: httpx.Response) -> VendorBody:
    """Read any answer's body: JSON (by content type or by its first character), HTML, text, or nothing."""
    text = redact(_decoded(response))
    content_type = response.headers.get("content-type", "").lower()
    stripped = text.lstrip()
    if not stripped:
        return VendorBody("empty", text)
    if "json" in content_type or stripped.startswith(("{", "[")):
        try:
            return VendorBody("json", text, redact_any(response.json()))
        except (ValueError, UnicodeError):
            pass
    if "html" in content_type or stripped[:15].lower().startswith(("<!doctype", "<html")):
        return VendorBody("html", text)
    return VendorBody("text", text)


def json_or_none(response: httpx.Response) -> Any:
    """The body as JSON, or None when it is not JSON (a proxy's page, a cut body, nothing)."""
    if not response.content:
        return None
    try:
        return response.json()
    except (ValueError, UnicodeError):
        return None


@dataclass(frozen=True)
class Unreadable:
    """Why a success answer could not be read through its wire model, and its body (redacted, bounded)."""

    reason: str
    body: Any


def parse_reply(response: httpx.Response, model: type[M]) -> M | Unreadable:
    """``response`` read through ``model``; :class:`Unreadable` (never an exception) when it cannot be.

    The reason names the first problem (``images.0.url: Field required``) or says the body is not JSON
    (quoting its start, redacted first).
    """
    data = json_or_none(response)
    if data is None:
        body = read_body(response)
        snippet = body.excerpt(200) or "(empty)"
        return Unreadable(f"the body is not JSON ({snippet!r})", body.excerpt())
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return Unreadable(first_problem(exc), read_body(response).kept())


def first_problem(exc: ValidationError) -> str:
    """``where: what`` of a validation error's first problem (``body`` when it is about the whole)."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


# -- an error answer and the rule table --------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Everything an error answer says, read once, whatever its shape. Vendors refine it with
    :func:`dataclasses.replace` (their symbolic codes, where their request id is)."""

    status: int
    detail: str
    """A readable summary of the vendor's words (redacted, then cut)."""
    body: Any = field(default=None, repr=False)
    """What the exception keeps: JSON as parsed, or the start of the text (redacted, then cut)."""
    codes: frozenset[str] = frozenset()
    """The vendor's symbolic codes (fal's ``type``, Ideogram's ``reject_reason``...)."""
    request_id: str | None = None
    retry_after: float | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers, repr=False)
    phase: str | None = None
    """Which route answered, for vendors where one status means different things per route."""
    problems: tuple[tuple[str, str], ...] = ()
    """``(field, message)`` pairs, for vendors that name the fields they refused."""
    retryable: bool | None = None
    """The vendor's own hint whether the same request may succeed if repeated (fal's ``X-Fal-Retryable``);
    None when it gave none. Kept on the error (``ProviderError.retryable``) for the router to read: a hint,
    never a decision taken here."""

    def mentions(self, words: Iterable[str]) -> bool:
        text = self.detail.lower()
        return any(word in text for word in words)


def read_failure(
    response: httpx.Response,
    *,
    detail_keys: Sequence[str] = _DETAIL_KEYS,
    request_id_header: str | None = None,
    phase: str | None = None,
    body: VendorBody | None = None,
) -> Failure:
    """A :class:`Failure` from any error answer, with Retry-After read and the body redacted before it
    is cut (``body``: the answer's body if the caller has read it already)."""
    body = body or read_body(response)
    request_id = response.headers.get(request_id_header) if request_id_header else None
    return Failure(
        status=response.status_code,
        detail=body.summary(detail_keys),
        body=body.kept(),
        request_id=redact(request_id) if request_id else None,
        retry_after=parse_retry_after(response.headers),
        headers=response.headers,
        phase=phase,
    )


@dataclass(frozen=True)
class Condition:
    """A named test on a :class:`Failure`; the name keeps a rule table printable and its tests readable."""

    name: str
    test: Callable[[Failure], bool] = field(repr=False, compare=False)

    def __call__(self, failure: Failure) -> bool:
        return self.test(failure)


ALWAYS = Condition("always", lambda failure: True)


def mentions(name: str, words: Sequence[str]) -> Condition:
    """True when the vendor's detail contains one of ``words`` (lower case)."""
    return Condition(name, lambda failure: failure.mentions(words))


def has_code(name: str, codes: Iterable[str]) -> Condition:
    """True when the vendor gave one of ``codes`` (its own symbolic error codes)."""
    wanted = frozenset(codes)
    return Condition(name, lambda failure: bool(failure.codes & wanted))


def on_phase(*phases: str) -> Condition:
    """True when the answer came from one of these routes (``Failure.phase``)."""
    return Condition("on " + "/".join(phases), lambda failure: failure.phase in phases)


def statuses(*codes: int) -> frozenset[int]:
    return frozenset(codes)


CLIENT_ERRORS: frozenset[int] = frozenset(range(400, 500))
SERVER_ERRORS: frozenset[int] = frozenset(range(500, 600))


@dataclass(frozen=True)
class ErrorRule:
    """One row of a vendor's table: when the status is in ``statuses`` and ``when`` holds, raise ``error``."""

    name: str
    error: type[ProviderError]
    message: str
    """A sentence; ``{detail}`` is the vendor's words, ``{status}`` the HTTP status, ``{title}`` the
    vendor's name, and a vendor may pass more values to :func:`error_for`."""
    statuses: frozenset[int] = SERVER_ERRORS | CLIENT_ERRORS
    when: Condition = ALWAYS
    billed: Billed = "no"
    """What the vendor's documentation says this refusal costs (a hint: the router decides)."""
    sent: bool = True
    """False only when the answer proves the request never reached the vendor's application."""

    def matches(self, failure: Failure) -> bool:
        return failure.status in self.statuses and self.when(failure)

    def build(self, failure: Failure, *, provider: str, admitted: bool = False, **values: Any) -> ProviderError:
        """The exception, carrying everything the failure knows."""
        return self.error(
            self.message.format(detail=failure.detail, status=failure.status, **values),
            provider=provider,
            status=failure.status,
            vendor_request_id=failure.request_id,
            billed=self.billed,
            body=failure.body,
            retry_after=failure.retry_after,
            admitted=admitted,
            sent=self.sent or admitted,
            retryable=failure.retryable,
        )


#: Used when no row matches: an answer the table did not foresee is unreadable, billing unknown.
UNEXPECTED = ErrorRule(
    "unexpected",
    UnexpectedResponse,
    "{title} answered HTTP {status}, which ideochar does not expect: {detail}",
    frozenset(range(100, 1000)),
    billed="unknown",
)


def classify(failure: Failure, rules: Iterable[ErrorRule]) -> ErrorRule | None:
    """The first rule that matches ``failure``, or None."""
    return next((rule for rule in rules if rule.matches(failure)), None)


def error_for(
    failure: Failure,
    rules: Iterable[ErrorRule],
    *,
    provider: str,
    title: str,
    admitted: bool = False,
    **values: Any,
) -> ProviderError:
    """The exception for ``failure`` from the first matching rule (:data:`UNEXPECTED` if none)."""
    rule = classify(failure, rules) or UNEXPECTED
    return rule.build(failure, provider=provider, admitted=admitted, title=title, **values)


# -- the poll loop -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Done(Generic[T]):
    """The job (or the document asked for) is there: the loop returns ``value``."""

    value: T


@dataclass(frozen=True)
class Pending:
    """Still queued or running: poll again after a longer wait. ``event`` is yielded when ``key`` changes."""

    key: Hashable
    event: Event | None = None
    body: Any = None
    """What the vendor said, for the error a give-up raises."""
    notes: tuple[Event, ...] = ()
    """Events yielded whatever the key (new log lines a vendor sent with this answer)."""


@dataclass(frozen=True)
class Retry:
    """This fetch failed in a way a repeated GET may cure (transport error, 429, 5xx, an unreadable body)."""

    error: ProviderError


@dataclass(frozen=True)
class PollSchedule:
    """How a job is followed. While it is pending, waits grow from ``initial`` by ``growth`` up to
    ``maximum``; a failed fetch is retried after its Retry-After (at most ``MAX_RETRY_AFTER_SECONDS``)
    or a jittered backoff; more than ``failures`` failed fetches in a row end the wait with the last."""

    initial: float = POLL_INITIAL_SECONDS
    maximum: float = POLL_MAX_SECONDS
    growth: float = 1.5
    failures: int = 6

    def after_pending(self, wait: float) -> float:
        return float(min(max(wait, self.initial) * self.growth, self.maximum))

    def after_failure(self, error: ProviderError, failures: int) -> float:
        if error.retry_after is not None:
            return float(min(error.retry_after, MAX_RETRY_AFTER_SECONDS))
        return backoff_seconds(failures)


GiveUp = Callable[[Pending, int, float], "ProviderError | None"]
"""``(the pending answer, how many pending answers so far, seconds slept so far)`` -> an error to stop with."""


def poll(
    send: Callable[[], Send],
    read: Callable[[httpx.Response], Done[T] | Pending | Retry],
    schedule: PollSchedule,
    *,
    first_wait: float = 0.0,
    reported: Hashable = None,
    give_up: GiveUp | None = None,
) -> Exchange[T]:
    """Fetch until ``read`` says :class:`Done`; a sub-exchange used with ``yield from``.

    ``send`` builds each GET (a status fetch is safe to repeat: never ``admits``); ``read`` classifies
    each answer as done, pending or worth retrying, and raises a final error itself. ``reported`` is
    the key the caller already announced (no event is repeated for it); ``give_up`` may end a long wait.
    """
    wait, failures, pending, slept = first_wait, 0, 0, 0.0
    while True:
        if wait > 0:
            yield Sleep(wait)
            slept += wait
        try:
            response = yield send()
        except ProviderUnavailable as exc:  # the driver's transport failures: worth another GET
            answer: Done[T] | Pending | Retry = Retry(exc)
        else:
            answer = read(response)
        if isinstance(answer, Done):
            return answer.value
        if isinstance(answer, Retry):
            failures += 1
            if failures > schedule.failures:
                raise answer.error
            wait = schedule.after_failure(answer.error, failures)
            continue
        failures, pending = 0, pending + 1
        yield from answer.notes  # events are answered with None
        if answer.key != reported:
            reported = answer.key
            if answer.event is not None:
                yield answer.event
        stop = give_up(answer, pending, slept) if give_up is not None else None
        if stop is not None:
            raise stop
        wait = schedule.after_pending(wait)


# -- where the key may go ----------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port, as the driver will connect: host in ASCII (IDNA), lower case, without a
    trailing dot; the scheme's default port filled in."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: object) -> Origin | None:
        """The origin of ``url``; None for anything a key must never go to: not a string, unparsable,
        not http(s), no host, or carrying userinfo (``https://api.vendor.com@evil.example/``)."""
        if isinstance(url, str):
            return _origin_of_text(url)  # the same status URL is checked at every poll: parsed once
        if not isinstance(url, httpx.URL):
            return None
        return cls._parse(url)

    @classmethod
    def _parse(cls, url: str | httpx.URL) -> Origin | None:
        try:
            parsed = httpx.URL(url)  # the parser the driver uses: no second opinion to disagree with
            port = parsed.port
        except (httpx.InvalidURL, ValueError):  # IDNA errors are ValueErrors
            return None
        scheme = parsed.scheme.lower()
        host = parsed.raw_host.decode("ascii", "replace").lower().rstrip(".")
        if scheme not in _DEFAULT_PORTS or not host or parsed.userinfo:
            return None
        return cls(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def _origin_of_text(url: str) -> Origin | None:
    """The origin of ``url`` from its scheme and authority alone (what ends at the first ``/``, ``?`` or
    ``#`` after ``//``, as httpx splits it), parsed by httpx and remembered: a job's status URL differs
    only in its path, and parsing the whole URL at every poll costs (benchmark figure 2)."""
    start = url.find("//")
    if start < 0 or not (url.isascii() and url.isprintable()):
        return Origin._parse(url)  # whatever httpx would refuse later is refused here, whole
    ends = [i for i in (url.find(c, start + 2) for c in "/?#") if i >= 0]
    return _origin_of_prefix(url[: min(ends)] if ends else url)


@functools.lru_cache(maxsize=1024)
def _origin_of_prefix(prefix: str) -> Origin | None:
    return Origin._parse(prefix)


@dataclass(frozen=True)
class TrustedOrigins:
    """Where a vendor's key may be sent: the configured base URLs' origins, exactly, and the vendor's
    documented ``domains`` (and their subdomains) over https on the default port.

    Example::

        trusted = TrustedOrigins.of(ctx.base_urls.values(), domains=("fal.run",))
        trusted.trusts("https://queue.fal.run/fal-ai/ideogram/requests/1/status")   # True
        trusted.trusts("http://queue.fal.run:8080/x")                               # False: scheme, port
    """

    origins: frozenset[Origin]
    domains: tuple[str, ...] = ()

    @classmethod
    def of(cls, base_urls: Iterable[str], domains: Iterable[str] = ()) -> TrustedOrigins:
        return _trusted_origins(tuple(base_urls), tuple(domains))

    def trusts(self, url: object) -> bool:
        origin = Origin.of(url)
        if origin is None:
            return False
        if origin in self.origins:
            return True
        return (
            origin.scheme == "https"
            and origin.port == _DEFAULT_PORTS["https"]
            and any(origin.host == d or origin.host.endswith("." + d) for d in self.domains)
        )

    def require(self, url: str, *, provider: str, title: str, what: str = "a job URL") -> str:
        """``url`` when it may receive the key; else UnexpectedResponse (billing unknown: the job it
        names may run), and nothing is sent there."""
        if self.trusts(url):
            return url
        origin = Origin.of(url)
        shown = str(origin) if origin is not None else repr(redact(url)[:100])
        raise UnexpectedResponse(
            f"{title} named {what} at {shown}, which is not the origin configured for {title} nor one of its "
            "own hosts; ideochar will not send the key there",
            provider=provider,
            billed="unknown",
        )


# -- collecting images -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamedImage:
    """One output image as a vendor's answer names it."""

    url: str | None
    seed: int | None = None
    prompt: str | None = None
    withheld: str | None = None
    """Why the vendor gives no image (a safety check); such an image was made, and billed."""
    size: int | None = None
    """The byte size the vendor states (fal's ``file_size``): a download of another size is not the file."""
    content_type: str | None = None
    """The type the vendor states (fal's ``content_type``): bytes of another format are kept, with a warning."""


@dataclass
class Collected:
    """The images that arrived, and an account of every other image asked for or named."""

    images: list[GeneratedImage] = field(default_factory=list)
    failures: list[ImageFailure] = field(default_factory=list)
    warnings: list[RequestWarning] = field(default_factory=list)
    errors: list[ProviderError] = field(default_factory=list)
    """Why downloads failed, in order (the first explains an answer with no image at all)."""
    named: int = 0
    """How many images the vendor's answer named."""
    tried: int = 0
    """How many of them were taken (at most the number asked)."""
    withheld: int = 0


@functools.lru_cache(maxsize=256)
def _trusted_origins(base_urls: tuple[str, ...], domains: tuple[str, ...]) -> TrustedOrigins:
    """Built once per set of base URLs: parsing them for every status poll costs (benchmark figure 2)."""
    origins = frozenset(o for o in (Origin.of(url) for url in base_urls) if o is not None)
    return TrustedOrigins(origins, tuple(d.lower().strip(".") for d in domains))


def collect_images(
    named: Sequence[NamedImage],
    *,
    asked: int | None,
    most: int,
    provider: str,
    title: str,
    vendor_request_id: str | None = None,
    headers: Callable[[str], dict[str, str] | None] | None = None,
    announce: bool = False,
) -> Exchange[Collected]:
    """Download the images a vendor named, at most ``asked`` (``most`` when the count asked is unknown).

    A vendor naming more than asked gets a warning, not more downloads; one naming fewer leaves a
    failure per missing image (billing unknown). A failed download keeps the others and becomes a
    failure (billed: the image was made). ``headers(url)`` gives a URL's headers (the key only to a
    trusted origin); ``announce`` yields a ``downloaded`` event per image.
    """
    limit = max(0, min(asked, most) if asked is not None else most)
    collected = Collected(named=len(named), tried=min(len(named), limit))
    for index, item in enumerate(named[:limit]):
        image = yield from _one_image(index, item, collected, provider, headers)
        if image is not None and announce:
            data = {"index": index, "sha256": image.sha256}
            yield Event("downloaded", vendor_request_id=vendor_request_id, data=data)
    _account(collected, asked=asked, limit=limit, provider=provider, title=title)
    return collected


def _one_image(
    index: int,
    item: NamedImage,
    collected: Collected,
    provider: str,
    headers: Callable[[str], dict[str, str] | None] | None,
) -> Exchange[GeneratedImage | None]:
    if item.withheld is not None or not item.url:
        reason = item.withheld or "named without a URL"
        collected.withheld += 1
        collected.failures.append(
            ImageFailure(index=index, reason=reason, billed="yes", provider=provider, error_type="ContentFiltered")
        )
        collected.warnings.append(
            RequestWarning(kind="withheld", field=None, message=f"image {index + 1}: {reason}", provider=provider)
        )
        return None
    try:
        image = yield from _download_checked(item, headers(item.url) if headers else None)
    except ProviderError as exc:
        exc.provider = exc.provider or provider
        collected.errors.append(exc)
        collected.failures.append(
            ImageFailure(
                index=index,
                reason=f"image {index + 1} could not be downloaded: {exc.message}",
                billed="yes",
                provider=provider,
                error_type=type(exc).__name__,
            )
        )
        return None
    if item.content_type and item.content_type.split(";", 1)[0].strip().lower() != image.content_type:
        collected.warnings.append(
            RequestWarning(
                kind="other",
                field=None,
                message=f"image {index + 1}: the vendor called it {clip(item.content_type, 60)}, its bytes are "
                f"{image.content_type} (kept as {image.content_type})",
                provider=provider,
            )
        )
    collected.images.append(image)
    return image


#: Downloads of an image whose size is not the size its vendor stated, before it counts as failed.
SIZE_CHECK_ATTEMPTS = 2


def _download_checked(item: NamedImage, headers: dict[str, str] | None) -> Exchange[GeneratedImage]:
    """Download ``item``; when the vendor stated its size and another arrived, fetch it again, then fail."""
    assert item.url is not None
    for attempt in range(1, SIZE_CHECK_ATTEMPTS + 1):
        image = yield from download_image(item.url, seed=item.seed, prompt=item.prompt, headers=headers)
        if item.size is None or len(image.data) == item.size:
            return image
        if attempt < SIZE_CHECK_ATTEMPTS:
            yield Sleep(backoff_seconds(attempt))
    raise UnexpectedResponse(
        f"the download is {len(image.data):,} bytes where the vendor stated {item.size:,}", billed="yes"
    )


def _account(collected: Collected, *, asked: int | None, limit: int, provider: str, title: str) -> None:
    """Failures for images asked and not named; a warning (and a log line) for images named beyond it."""
    for index in range(collected.named, asked or 0):
        collected.failures.append(
            ImageFailure(
                index=index,
                reason=f"{title} returned {collected.named} of the {asked} images asked for",
                billed="unknown",
                provider=provider,
            )
        )
    surplus = collected.named - limit
    if surplus > 0:
        message = (
            f"{title} named {collected.named} images for the {limit} asked; the other {surplus} were not downloaded"
        )
        logger.warning(message)
        collected.warnings.append(RequestWarning(kind="other", field="num_images", message=message, provider=provider))


# -- vendor numbers and reply models -----------------------------------------------------------------------


def _whole_number(value: Any) -> Any:
    """Booleans are not numbers (pydantic would read ``true`` as 1 and ``false`` as 0.0)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


_WHOLE = re.compile(r"[+-]?[0-9]{1,20}")


def int_or_none(text: object, *, low: int = INT64_MIN, high: int = INT64_MAX) -> int | None:
    """A whole number from a header or a log line, or None when it is not one or lies outside
    ``[low, high]`` (by default what the journal can store)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        return None
    if isinstance(text, str):
        if not _WHOLE.fullmatch(text.strip()):
            return None
        text = int(text.strip())
    return text if low <= text <= high else None


#: A seed a vendor reports: any whole number the journal can store.
Seed = Annotated[int, BeforeValidator(_whole_number), Field(ge=INT64_MIN, le=INT64_MAX)]
#: A position in a vendor's queue.
QueuePosition = Annotated[int, BeforeValidator(_whole_number), Field(ge=0, le=MAX_QUEUE_POSITION)]
#: A size or a count a vendor reports.
Count = Annotated[int, BeforeValidator(_whole_number), Field(ge=0, le=INT64_MAX)]
#: A duration a vendor reports: finite, not negative.
Seconds = Annotated[float, BeforeValidator(_whole_number), Field(ge=0, allow_inf_nan=False)]


class VendorModel(BaseModel):
    """Base of every model of a vendor's answer.

    A vendor's answer is data we do not trust to be well formed, and it may carry what we must not
    lose (a request id, a paid image's URL). So an *optional* field whose value is malformed or out of
    range (a queue position of 2**64, a seed of 3.5, a URL that is a number) is dropped, with a log
    line naming it, and the rest of the answer is read; only a bad *required* field makes the answer
    unreadable. Unknown fields are ignored unless a subclass says otherwise.
    """

    # Built on first use: a plugin's import stays cheap (the core does the same, docs/benchmarks.md).
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    @model_validator(mode="wrap")
    @classmethod
    def _drop_malformed_optionals(cls, data: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            bad = _droppable(cls, data, exc)
            if not bad:
                raise
            logger.warning("ignored %s from a vendor answer: malformed or out of range", _names(cls, bad))
            return handler({key: value for key, value in data.items() if key not in bad})


def _droppable(model: type[BaseModel], data: Any, exc: ValidationError) -> frozenset[str]:
    """The keys of ``data`` whose errors are all on optional fields; empty when any error is not."""
    if not isinstance(data, Mapping):
        return frozenset()
    optional = {info.alias or name for name, info in model.model_fields.items() if not info.is_required()}
    keys = {error["loc"][0] if error["loc"] else None for error in exc.errors()}
    if not keys or not all(isinstance(key, str) and key in optional and key in data for key in keys):
        return frozenset()
    return frozenset(str(key) for key in keys)


def _names(model: type[BaseModel], keys: Iterable[str]) -> str:
    return ", ".join(f"{model.__name__}.{key}" for key in sorted(keys))


# -- explicit defaults ----------------------------------------------------------------------------------------

#: The largest seed every vendor takes (Ideogram's and Replicate's schemas; Segmind's is unstated).
MAX_SEED = 2_147_483_647

#: What an unset size means, at every vendor: a square image (fal's ``square_hd``, Ideogram's and
#: Replicate's documented default). Sent explicitly, so a vendor whose default differs (Segmind documents
#: 512x1536) cannot decide it.
DEFAULT_ASPECT_RATIO = "1:1"

#: Each of the 15 neutral aspect ratios as the legal Ideogram resolution of that ratio nearest one megapixel
#: (reference/vendors.md §4). 16:9 and 9:16 have no exact legal size: 1312x736 is within 0.3 %.
RATIO_SIZES: Mapping[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "1:3": (512, 1536),
    "3:1": (1536, 512),
    "1:2": (704, 1408),
    "2:1": (1408, 704),
    "9:16": (736, 1312),
    "16:9": (1312, 736),
    "10:16": (800, 1280),
    "16:10": (1280, 800),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1152),
    "4:3": (1152, 864),
    "4:5": (896, 1120),
    "5:4": (1120, 896),
}


def draw_seed() -> int:
    """A random seed for a request that names none, chosen here rather than left to the vendor.

    For vendors that make one image per call (Segmind, Replicate): each call of a fan-out gets its own,
    so the images differ (Segmind's documented default seed is 1: every unseeded call would draw the same
    image), and each image can report the seed that made it.
    """
    return _random_below(MAX_SEED + 1)


#: Where drawn seeds come from (a test may pin it: ``monkeypatch.setattr(toolkit, "_random_below", ...)``).
_random_below: Callable[[int], int] = secrets.randbelow


def output_size(request: CharacterRequest) -> tuple[int, int] | None:
    """The pixels ``request`` asks for: its resolution, its aspect ratio's size (:data:`RATIO_SIZES`), or,
    unset, :data:`DEFAULT_ASPECT_RATIO`'s. None for an edit, which keeps the size of its image."""
    if isinstance(request.operation, Edit):
        return None
    if request.resolution is not None:
        width, height = (int(v) for v in request.resolution.split("x"))
        return width, height
    return RATIO_SIZES[request.aspect_ratio or DEFAULT_ASPECT_RATIO]


def retryable_hint(headers: httpx.Headers, *names: str) -> bool | None:
    """A vendor's yes/no header (``X-Fal-Retryable: true``) as a bool; None when absent or unreadable."""
    for name in names:
        value = headers.get(name, "").strip().lower()
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no"):
            return False
    return None


# -- uploads ------------------------------------------------------------------------------------------------

#: Between two looks at an upload another job of this process is making (a sleep step: both drivers wait).
UPLOAD_WAIT_SECONDS = 0.05


def upload_scope(ctx: CallContext, base_url: str) -> str:
    """Who an upload belongs to: the provider, the origin it goes to (an emulator's URL is not fal's),
    and a one-way fingerprint of the key (an account's files are not assumed readable by another)."""
    origin = Origin.of(ctx.base_urls.get(base_url, ""))
    return f"{ctx.provider}|{origin or '-'}|{account_fingerprint(ctx.credentials)}"


def reuse_upload(
    ctx: CallContext, image: ImageInput, *, scope: str, upload: Callable[[], Exchange[Upload]]
) -> Exchange[str]:
    """The URL of ``image`` in a vendor's storage: a cached upload that still lives, else ``upload()``.

    ``upload`` is the vendor's upload as an exchange (its requests are ``Send`` steps of the provider's
    own flow, never admitting). Within one process one job uploads an image and the others wait for it
    (short :class:`~ideochar.exchange.Sleep` steps); an upload that fails frees the claim for the next.
    Without a cache (``ctx.uploads`` None) every call uploads.
    """
    cache = ctx.uploads
    if cache is None:
        made = yield from upload()
        return made.url
    digest = image_digest(image)
    found = cache.find(scope, digest)  # memory, then the journal's file (another process's upload)
    while found is None:
        if cache.claim(scope, digest):
            break
        yield Sleep(UPLOAD_WAIT_SECONDS)
        found = cache.find(scope, digest, memory_only=True)  # another job of this process is uploading it
    if found is not None:
        return found.url
    try:
        made = yield from upload()
    except BaseException:
        cache.release(scope, digest)
        raise
    cache.store(scope, digest, made)
    return made.url


_DIGESTS: dict[tuple[str, int, int], str] = {}


def image_digest(image: ImageInput) -> str:
    """The image's SHA-256, remembered per file (path, size, modification time): a thousand jobs naming
    one 10 MB reference hash it once, not a thousand times."""
    path = image.path
    if path is None:
        return image.sha256
    try:
        stat = os.stat(path)
    except OSError:
        return image.sha256
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    found = _DIGESTS.get(key)
    if found is None:
        if len(_DIGESTS) > 1024:
            _DIGESTS.clear()
        found = _DIGESTS[key] = image.sha256
    return found

"""The one error tree of ideochar.

::

    IdeocharError
    ├── InvalidRequest          checked locally; nothing was sent, nothing is billed
    ├── OverBudget              every quote is above max_cost_usd; nothing was sent
    ├── JournalUnavailable      the journal could not record what was about to be sent; nothing was
    ├── JobBusy                 a job to resume is still owned by a live process; nothing was sent
    ├── StateUnavailable        the shared state (Redis) cannot be reached; nothing was sent
    ├── Unsupported             no chosen provider can do this request (reasons per provider)
    ├── ProviderError           a vendor was involved; carries provider, status, vendor id, billed, body
    │   ├── AuthenticationFailed    401/403, or no key configured (MissingCredentials)
    │   ├── InsufficientCredits     out of credit, daily or team spend limit
    │   ├── RateLimited             429; ``retry_after`` in seconds when the vendor says
    │   ├── ContentFiltered         a safety check refused; ``billed`` says whether it cost money
    │   ├── RequestRejected         the vendor refused the request as invalid (what we could not check)
    │   ├── GenerationFailed        the job ran and failed on the vendor's side
    │   ├── UnexpectedResponse      an answer we cannot read (bad JSON, wrong type, truncated image)
    │   ├── ProviderUnavailable     5xx, connection refused, overloaded: did not produce a job
    │   └── OutcomeUnknown          sent, no answer: it may be running and billed
    └── AllProvidersFailed      every provider tried failed; ``attempts`` and ``errors`` say how

Messages are sentences a user can act on. Vendor detail stays on attributes. Every message and body
passes through :func:`ideochar._secrets.redact`, so no key appears in ``str``, ``repr`` or a pickle.
Errors pickle with their attributes (for multiprocessing and job queues).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ideochar._secrets import redact, redact_any

if TYPE_CHECKING:
    from ideochar.result import Attempt

__all__ = [
    "AllProvidersFailed",
    "AuthenticationFailed",
    "Billed",
    "ContentFiltered",
    "FieldProblem",
    "GenerationFailed",
    "IdeocharError",
    "InsufficientCredits",
    "InvalidRequest",
    "JobBusy",
    "JournalUnavailable",
    "MissingCredentials",
    "OutcomeUnknown",
    "OverBudget",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "RequestRejected",
    "StateUnavailable",
    "UnexpectedResponse",
    "Unsupported",
]

Billed = Literal["yes", "no", "unknown"]


class IdeocharError(Exception):
    """Root of every error ideochar raises on purpose."""

    #: CLI exit code for this class of error (stable: scripts may branch on it).
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        self.message = redact(message)
        super().__init__(self.message)
        #: Every attempt made on the way to this error, in order (empty for errors raised before any).
        self.attempts: list[Attempt] = []
        #: The journaled job this error ended, for ``Client.resume`` / ``ideochar jobs resume``.
        self.job_id: str | None = None

    def __str__(self) -> str:
        return self.message

    def _state(self) -> dict[str, Any]:
        # Text attributes may be set after __init__ (a vendor id stamped by the router): scrub them too.
        return {k: redact(v) if isinstance(v, str) else v for k, v in self.__dict__.items() if k != "message"}

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, self._state()))


def _rebuild(cls: type[IdeocharError], message: str, state: dict[str, Any]) -> IdeocharError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.message = message
    error.__dict__.update(state)
    return error


class FieldProblem(tuple[str, str]):
    """``(field path, what is wrong)``, e.g. ``("operation.strength", "must be at most 1")``."""

    __slots__ = ()

    @property
    def field(self) -> str:
        return self[0]

    @property
    def problem(self) -> str:
        return self[1]


class InvalidRequest(IdeocharError, ValueError):
    """The request cannot be valid for any vendor; it was rejected before anything was sent."""

    exit_code = 2

    def __init__(self, message: str, *, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = [FieldProblem((redact(f), redact(p))) for f, p in problems]

    @property
    def field(self) -> str | None:
        """The first offending field path, the one the message starts with."""
        return self.problems[0].field if self.problems else None

    @classmethod
    def for_field(cls, field: str, problem: str) -> InvalidRequest:
        return cls(f"{field}: {problem}", problems=[(field, problem)])


class OverBudget(IdeocharError):
    """Every provider's quote is above the budget; nothing was sent."""

    exit_code = 3

    def __init__(self, message: str, *, quotes: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.quotes = dict(quotes or {})


class JournalUnavailable(IdeocharError):
    """The journal could not record an attempt before its billable request; so the request was not sent.

    The journal fails closed: a job it cannot record is a job nobody could resume or reconcile, so it is
    stopped before anything that could bill. The cause (a full disk, a lock held past the busy timeout)
    is chained. Nothing was billed.
    """

    exit_code = 5
    billed: Billed = "no"


class StateUnavailable(IdeocharError):
    """The state a fleet shares (limits, breakers, spend; ``state_url``) cannot be reached, so no request
    is admitted: nothing that could not be accounted for was sent, nothing was billed. Set
    ``state_fallback = "local"`` to fall back to this process's own limits instead."""

    exit_code = 7


class JobBusy(IdeocharError):
    """The job is being run by a live process (``owner``); resuming it too could charge twice."""

    exit_code = 6

    def __init__(self, message: str, *, owner: str | None = None) -> None:
        super().__init__(message)
        self.owner = owner


class Unsupported(IdeocharError):
    """None of the chosen providers can serve the request; ``reasons`` says why, per provider."""

    exit_code = 4

    def __init__(self, message: str, *, reasons: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reasons = {k: redact(v) for k, v in (reasons or {}).items()}


class ProviderError(IdeocharError):
    """A vendor refused, failed, or could not be reached. The attributes say what is known."""

    exit_code = 10
    #: May another provider be tried? (Set per class; the router reads it.)
    fail_over: ClassVar[bool] = True
    default_billed: ClassVar[Billed] = "no"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        vendor_request_id: str | None = None,
        billed: Billed | None = None,
        body: Any = None,
        retry_after: float | None = None,
        admitted: bool = False,
        sent: bool = True,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        # A vendor id comes from the vendor's answer, which may echo anything back (the key included).
        self.vendor_request_id = redact(vendor_request_id) if vendor_request_id else vendor_request_id
        self.billed: Billed = billed or self.default_billed
        self.body = redact_any(body)
        self.retry_after = retry_after
        #: The vendor's own hint whether repeating the request may succeed (fal's ``X-Fal-Retryable``),
        #: None when it gave none. Data for the router, which alone decides what happens next.
        self.retryable = retryable
        #: True when the vendor accepted the job (a later error must not lead to a resubmission).
        self.admitted = admitted
        #: False only when the request provably never reached the vendor (connect error): safe to repeat.
        self.sent = sent

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        for name in ("provider", "status", "vendor_request_id", "billed"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return redact(f"{type(self).__name__}({', '.join(parts)})")  # attributes may be set after __init__


class AuthenticationFailed(ProviderError):
    """The key was missing, malformed or refused. Another provider may still serve."""

    exit_code = 11


class MissingCredentials(AuthenticationFailed):
    """No key is configured for the provider (or for any of several); nothing was sent.

    ``by_provider`` maps each provider without a key to the variables that would configure it, so a
    message can say, provider by provider, what to set. The message speaks to a Python caller
    (``keys=``, ``emulator=True``); the command line renders its own lines (``--emulator``).
    """

    exit_code = 11

    def __init__(
        self, provider: str, variables: Sequence[str], *, by_provider: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        wanted = {name: list(found) for name, found in (by_provider or {provider: variables}).items()}
        super().__init__(_missing_key_message(wanted), provider=provider)
        self.variables = list(variables) or [v for found in wanted.values() for v in found]
        self.by_provider = wanted

    @classmethod
    def combine(cls, errors: Sequence[MissingCredentials]) -> MissingCredentials:
        """One error for several providers without a key (each keeps its own variables)."""
        wanted: dict[str, list[str]] = {}
        for error in errors:
            wanted.update(error.by_provider)
        return cls(", ".join(wanted), [v for found in wanted.values() for v in found], by_provider=wanted)


def _missing_key_message(wanted: Mapping[str, Sequence[str]]) -> str:
    """What to do, provider by provider: its variables, a stored key, or ``keys=``; else the emulator."""

    def ways(variables: Sequence[str]) -> str:
        return " or ".join(variables) if variables else "its key variable (ideochar providers lists it)"

    emulator = "To try ideochar without keys, use the built-in emulator: emulator=True."
    if len(wanted) == 1:
        name, variables = next(iter(wanted.items()))
        return (
            f"No key for {name}: set {ways(variables)}, store one with `ideochar keys set {name}`, "
            f"or pass keys={{'{name}': ...}} to the client. {emulator}"
        )
    each = ", ".join(f"{name} (set {ways(variables)})" for name, variables in wanted.items())
    passes = " or ".join(f"keys={{'{name}': ...}}" for name in wanted)
    return (
        f"No key for any chosen provider: {each}. Store one with `ideochar keys set NAME`, or pass {passes} "
        f"to the client. {emulator}"
    )


class InsufficientCredits(ProviderError):
    """The account cannot pay for this request (credit, daily or team limit)."""

    exit_code = 12


class RateLimited(ProviderError):
    """The vendor asked us to slow down. ``retry_after`` is in seconds when known."""

    exit_code = 13


class ContentFiltered(ProviderError):
    """A safety check refused the prompt, an input or the output. Failing over would not help."""

    exit_code = 14
    fail_over = False


class RequestRejected(ProviderError):
    """The vendor refused the request as invalid: something we could not check locally."""

    exit_code = 15
    fail_over = False


class GenerationFailed(ProviderError):
    """The vendor accepted the job and it failed there."""

    exit_code = 16


class UnexpectedResponse(ProviderError):
    """The vendor answered in a shape we cannot read; its body is kept (redacted) on ``body``."""

    exit_code = 17
    default_billed = "unknown"


class ProviderUnavailable(ProviderError):
    """The vendor could not take the job: down, overloaded, unreachable."""

    exit_code = 18


class OutcomeUnknown(ProviderError):
    """The request was sent and no answer came: the job may be running, and may be billed.

    Never resubmit blindly. When ``vendor_request_id`` is set the job can be resumed by that id
    (``Client.resume``); otherwise only the vendor's dashboard can tell.
    """

    exit_code = 19
    default_billed = "unknown"


class AllProvidersFailed(IdeocharError):
    """Every provider tried has failed. ``errors`` holds each provider's error, in order."""

    exit_code = 20

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[IdeocharError] = (),
        attempts: Sequence[Attempt] = (),
    ) -> None:
        super().__init__(message)
        self.errors = list(errors)
        self.attempts = list(attempts)

    @property
    def billed(self) -> Billed:
        """ "yes" if any attempt was billed, "unknown" if any may have been, else "no"."""
        states = {getattr(e, "billed", "no") for e in self.errors}
        return "yes" if "yes" in states else "unknown" if "unknown" in states else "no"

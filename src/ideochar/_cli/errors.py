"""Errors as a person and a script need them: a readable message on stderr, a stable exit code.

The first line is the error's own message (already redacted by :mod:`ideochar.errors`), with the command
line's flags where the library names fields (``--num-images``, not ``num_images``); the lines after it
say what to do next where that is specific: which variable to set (or key to store) for which provider,
how to install the emulator, which job to resume. No traceback unless ``--debug``. ``--json`` adds the
same facts as an object on stdout. Every line goes through :func:`~ideochar._secrets.redact` once more.

While ``ideochar jobs resume`` runs, the library's advice to "resume it by its id" is what the user is
already doing: it is taken out of the message and replaced by what to do instead (run it again later,
or look at the vendor's dashboard).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ideochar._cli.options import flag_for
from ideochar._cli.session import EMULATOR_EXTRA, emulator_missing
from ideochar._secrets import redact, redact_any
from ideochar.config import ConfigError
from ideochar.errors import (
    AllProvidersFailed,
    IdeocharError,
    InvalidRequest,
    MissingCredentials,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    Unsupported,
)
from ideochar.spec import ProviderInfo

__all__ = ["error_document", "error_lines", "without_resume_advice"]

#: The library's advice to a caller who is not resuming (router.py, the providers): taken out while resuming.
_RESUME_ADVICE = re.compile(r"\s*[;:,]?\s*resume it by (?:its|the vendor's) id(?: within [^.;]*)?", re.IGNORECASE)


def without_resume_advice(message: str) -> str:
    """``message`` without "resume it by its id" (the user of ``jobs resume`` is doing just that)."""
    cleaned = _RESUME_ADVICE.sub("", message).strip()
    return cleaned if cleaned.endswith((".", "!", "?")) else cleaned + "."


def _emulator_hint() -> str:
    if emulator_missing():
        return (
            f"or try ideochar without keys on the built-in emulator: install it ({EMULATOR_EXTRA}), then add "
            "--emulator (no network, no cost)."
        )
    return "or add --emulator to try ideochar without keys (the built-in emulator: no network, no cost)."


def _missing_credentials(exc: MissingCredentials, infos: Mapping[str, ProviderInfo]) -> list[str]:
    """One line per provider with the variable(s) that would configure it, then the keyless way out."""
    names = list(getattr(exc, "by_provider", {}) or {}) or [
        n.strip() for n in (exc.provider or "").split(",") if n.strip()
    ]
    rows = []
    for name in names:
        info = infos.get(name)
        if info is not None and info.credential_variables:
            ways = " or ".join(" + ".join(alt) for alt in info.credential_variables)
        else:
            ways = "a key (see `ideochar providers`)"
        rows.append((name, ways))
    if not rows:
        return [f"error: {exc.message}"]
    width = max(len(n) for n, _ in rows)
    head = "no key for " + (rows[0][0] + "; set" if len(rows) == 1 else "any of the chosen providers; set one of")
    lines = [f"error: {head}" + (":" if len(rows) > 1 else f" {rows[0][1]}")]
    if len(rows) > 1:
        lines += [f"  {name.ljust(width)}  {ways}" for name, ways in rows]
    store = rows[0][0] if len(rows) == 1 else "PROVIDER"
    lines.append(f"or store one once: ideochar keys set {store}")
    lines.append(_emulator_hint())
    return lines


def _ways(name: str, infos: Mapping[str, ProviderInfo]) -> str:
    info = infos.get(name)
    if info is not None and info.credential_variables:
        return " or ".join(" + ".join(alt) for alt in info.credential_variables)
    return "a key (see `ideochar providers`)"


def _unsupported(exc: Unsupported, infos: Mapping[str, ProviderInfo]) -> list[str]:
    """Why each provider cannot serve; those only missing a key say how to give one (the library's reason
    speaks to Python, this speaks to the command line)."""
    lines = ["error: no chosen provider can serve this request:"]
    keyless = []
    for name, reason in exc.reasons.items():
        if reason.startswith(f"No key for {name}"):
            keyless.append(name)
            lines.append(f"  {name}: no key (set {_ways(name, infos)})")
        else:
            lines.append(f"  {name}: {reason}")
    if keyless:
        lines.append(f"or store one once: ideochar keys set {keyless[0] if len(keyless) == 1 else 'PROVIDER'}")
        lines.append(_emulator_hint())
    return lines


def _with_flags(exc: InvalidRequest) -> str:
    """The message with each request field it names as the flag that sets it (not a configuration key)."""
    message = exc.message
    if isinstance(exc, ConfigError):
        return message
    for problem in exc.problems:
        flag = flag_for(problem.field)
        if flag is not None:
            message = message.replace(f"{problem.field}: ", f"{flag}: ", 1)
    return message


def _provider_detail(exc: ProviderError) -> str:
    bits = []
    if exc.status is not None:
        bits.append(f"HTTP {exc.status}")
    if exc.vendor_request_id:
        bits.append(f"vendor id {exc.vendor_request_id}")
    bits.append(f"billed: {exc.billed}")
    return ", ".join(bits)


def _outcome_unknown(exc: OutcomeUnknown, resume_command: str | None, resuming: str | None) -> str:
    """What to do about a job that may run and bill without us: fetch it later, never send it again."""
    if resuming is not None:
        which = f"job {exc.vendor_request_id}" if exc.vendor_request_id else "the job"
        return (
            f"the vendor has not finished {which} yet; it may still finish and be billed, and nothing was sent "
            f"again. Run ideochar jobs resume {resuming[:12]} again later (--deadline SECONDS waits longer), "
            "or check the vendor's dashboard."
        )
    if not exc.vendor_request_id:
        return "the job may have been admitted and billed; check the vendor's dashboard before retrying."
    how = f": {resume_command}" if resume_command else " (no journal recorded it: keep that id)"
    return (
        f"the job may still finish and be billed; do not send it again. Fetch its result by the vendor id "
        f"{exc.vendor_request_id}{how}"
    )


def _message(error: IdeocharError, resuming: str | None) -> str:
    return without_resume_advice(error.message) if resuming is not None else error.message


def _lines(
    exc: IdeocharError, infos: Mapping[str, ProviderInfo], resume_command: str | None, resuming: str | None
) -> list[str]:
    if isinstance(exc, MissingCredentials):
        return _missing_credentials(exc, infos)
    if isinstance(exc, AllProvidersFailed):
        lines = ["error: every provider failed (billed: " + exc.billed + ")"]
        for error in exc.errors:
            who = getattr(error, "provider", None) or "?"
            detail = f" ({_provider_detail(error)})" if isinstance(error, ProviderError) else ""
            lines.append(f"  {who}: {_message(error, resuming)}{detail}")
        return lines
    if isinstance(exc, Unsupported) and exc.reasons:
        return _unsupported(exc, infos)
    if isinstance(exc, InvalidRequest):
        return [f"error: {_with_flags(exc)}"]
    if not isinstance(exc, ProviderError):
        return [f"error: {exc.message}"]
    message = _message(exc, resuming)
    who = f"{exc.provider}: " if exc.provider and not message.startswith(exc.provider) else ""
    lines = [f"error: {who}{message} ({_provider_detail(exc)})"]
    if isinstance(exc, OutcomeUnknown):
        lines.append(_outcome_unknown(exc, resume_command, resuming))
    elif isinstance(exc, RateLimited) and exc.retry_after is not None:
        lines.append(f"the vendor asks to retry after {exc.retry_after:g} s.")
    return lines


def error_lines(
    exc: IdeocharError,
    infos: Mapping[str, ProviderInfo] | None = None,
    *,
    resume_command: str | None = None,
    resuming: str | None = None,
    emulated_here: bool = False,
) -> list[str]:
    """The lines to show on stderr for ``exc``.

    ``resume_command``: how to resume the job this run journaled (None: it cannot be); ``resuming``: the
    id of the job ``ideochar jobs resume`` is resuming; ``emulated_here``: the run's emulator stopped with
    the command (its jobs cannot be fetched again, and nothing was charged).
    """
    lines = _lines(exc, infos or {}, resume_command, resuming)
    if resuming is not None and _paid_and_open(exc) and not isinstance(exc, OutcomeUnknown):
        lines.append(f"a vendor still holds this job; run ideochar jobs resume {resuming[:12]} again later.")
    elif resume_command and not isinstance(exc, OutcomeUnknown) and _paid_and_open(exc):
        lines.append(f"a vendor admitted this job; fetch what it produced with: {resume_command}")
    if emulated_here and _paid_and_open(exc):
        lines.append("this ran against the emulator, which stopped with this command: nothing was charged.")
    return [redact(line) for line in lines]


def _paid_and_open(exc: IdeocharError) -> bool:
    """Did a vendor admit the job without us getting its result (so resuming may recover paid images)?"""
    errors = exc.errors if isinstance(exc, AllProvidersFailed) else [exc]
    return any(isinstance(e, OutcomeUnknown) and e.vendor_request_id for e in errors)


def error_document(exc: IdeocharError) -> dict[str, Any]:
    """The error as JSON-safe data (``--json``): type, message, exit code and what the vendor said."""
    doc: dict[str, Any] = {"type": type(exc).__name__, "message": exc.message, "exit_code": exc.exit_code}
    if isinstance(exc, ProviderError):
        doc.update(
            provider=exc.provider,
            status=exc.status,
            vendor_request_id=exc.vendor_request_id,
            billed=exc.billed,
            retry_after=exc.retry_after,
            admitted=exc.admitted,
        )
    if isinstance(exc, MissingCredentials):
        doc["variables"] = list(exc.variables)
    if isinstance(exc, InvalidRequest):
        flags = not isinstance(exc, ConfigError)
        doc["problems"] = [
            {"field": p.field, "flag": flag_for(p.field) if flags else None, "problem": p.problem} for p in exc.problems
        ]
    if isinstance(exc, Unsupported):
        doc["reasons"] = dict(exc.reasons)
    if isinstance(exc, AllProvidersFailed):
        doc["billed"] = exc.billed
        doc["errors"] = [error_document(e) for e in exc.errors]
    attempts = getattr(exc, "attempts", None)
    if attempts:
        doc["attempts"] = [a.model_dump(mode="json") for a in attempts]
    return redact_any(doc)  # type: ignore[no-any-return]

"""Errors as a person and a script need them: a readable message on stderr, a stable exit code.

The first line is the error's own message (already redacted by :mod:`ideochar.errors`); the lines after
it say what to do next where that is specific: which variable to set for which provider, which vendor
id to resume, what each provider said. No traceback unless ``--debug``. ``--json`` adds the same facts
as an object on stdout. Every line goes through :func:`~ideochar._secrets.redact` once more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ideochar._secrets import redact, redact_any
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

__all__ = ["error_document", "error_lines"]


def _missing_credentials(exc: MissingCredentials, infos: Mapping[str, ProviderInfo]) -> list[str]:
    """One line per provider with the variable(s) that would configure it, then the keyless way out."""
    names = [n.strip() for n in (exc.provider or "").split(",") if n.strip()]
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
    lines.append("or add --emulator to try ideochar without keys (the built-in emulator: no network, no cost).")
    return lines


def _provider_detail(exc: ProviderError) -> str:
    bits = []
    if exc.status is not None:
        bits.append(f"HTTP {exc.status}")
    if exc.vendor_request_id:
        bits.append(f"vendor id {exc.vendor_request_id}")
    bits.append(f"billed: {exc.billed}")
    return ", ".join(bits)


def error_lines(
    exc: IdeocharError, infos: Mapping[str, ProviderInfo] | None = None, *, resume_job: str | None = None
) -> list[str]:
    """``resume_job``: the journaled job id, when a journal recorded this run (for the resume hint)."""
    infos = infos or {}
    if isinstance(exc, MissingCredentials):
        lines = _missing_credentials(exc, infos)
    elif isinstance(exc, AllProvidersFailed):
        lines = ["error: every provider failed (billed: " + exc.billed + ")"]
        for error in exc.errors:
            who = getattr(error, "provider", None) or "?"
            detail = f" ({_provider_detail(error)})" if isinstance(error, ProviderError) else ""
            lines.append(f"  {who}: {error.message}{detail}")
    elif isinstance(exc, Unsupported) and exc.reasons:
        lines = ["error: no chosen provider can serve this request:"]
        lines += [f"  {name}: {reason}" for name, reason in exc.reasons.items()]
    elif isinstance(exc, InvalidRequest):
        lines = [f"error: {exc.message}"]
    elif isinstance(exc, ProviderError):
        who = f"{exc.provider}: " if exc.provider and not exc.message.startswith(exc.provider) else ""
        lines = [f"error: {who}{exc.message} ({_provider_detail(exc)})"]
        if isinstance(exc, OutcomeUnknown):
            if exc.vendor_request_id:
                how = f"ideochar jobs resume {resume_job}" if resume_job else "Client.resume_vendor"
                lines.append(
                    f"the job may still finish and be billed; do not send it again. Fetch its result by the "
                    f"vendor id {exc.vendor_request_id}: {how}"
                )
            else:
                lines.append("the job may have been admitted and billed; check the vendor's dashboard before retrying.")
        elif isinstance(exc, RateLimited) and exc.retry_after is not None:
            lines.append(f"the vendor asks to retry after {exc.retry_after:g} s.")
    else:
        lines = [f"error: {exc.message}"]
    if resume_job and not isinstance(exc, OutcomeUnknown) and _paid_and_open(exc):
        lines.append(f"a vendor admitted this job; fetch what it produced with: ideochar jobs resume {resume_job}")
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
        doc["problems"] = [{"field": p.field, "problem": p.problem} for p in exc.problems]
    if isinstance(exc, Unsupported):
        doc["reasons"] = dict(exc.reasons)
    if isinstance(exc, AllProvidersFailed):
        doc["billed"] = exc.billed
        doc["errors"] = [error_document(e) for e in exc.errors]
    attempts = getattr(exc, "attempts", None)
    if attempts:
        doc["attempts"] = [a.model_dump(mode="json") for a in attempts]
    return redact_any(doc)  # type: ignore[no-any-return]

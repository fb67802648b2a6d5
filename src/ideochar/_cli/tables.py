"""Plain-text tables for ``quote``, ``providers`` and the demo's cost table.

No dependency: columns are padded to their widest cell, numbers right-aligned, and the last column
(free text) is left to run. The rows are built by pure functions from the library's own objects
(:class:`~ideochar.spec.Quote`, :class:`~ideochar.spec.ProviderInfo`), so ``--json`` and the table
cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence, Set
from decimal import Decimal
from typing import Any

from ideochar._cli.output import money
from ideochar._cli.timing import Estimate
from ideochar.journal import JobRecord, SpendTotals
from ideochar.request import OperationName, Speed
from ideochar.result import CharacterResult
from ideochar.spec import ProviderInfo, Quote

__all__ = [
    "attempt_rows",
    "cost_rows",
    "job_lines",
    "job_rows",
    "provider_document",
    "provider_rows",
    "quote_document",
    "quote_rows",
    "quote_summary",
    "render",
    "resume_cost_note",
    "supported_fields_rows",
    "totals_line",
]

_OPERATIONS: tuple[OperationName, ...] = ("generate", "edit", "remix")
_SPEEDS: tuple[Speed, ...] = ("turbo", "default", "quality")
_FIELDS = ("num_images", "negative_prompt", "color_palette", "style_codes", "style_references", "reference_mask",
           "style", "aspect_ratio", "resolution", "seed", "magic_prompt")  # fmt: skip


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()) -> str:
    """Columns padded to fit; ``right`` lists the columns to right-align (prices, counts)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    last = len(headers) - 1

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if i == last:
                out.append(cell)
            elif i in right:
                out.append(cell.rjust(widths[i]))
            else:
                out.append(cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


# -- quote ----------------------------------------------------------------------------------------------


def _quote_notes(quote: Quote, max_cost: Decimal | None, strict: bool) -> str:
    notes: list[str] = []
    if not quote.supported:
        notes.append(quote.reason or "cannot serve this request")
    else:
        notes.extend(w.message for w in quote.warnings)
        if strict and quote.warnings:
            notes.append("skipped with --strict")
        total = quote.total_usd
        if max_cost is not None and total is not None and total > max_cost:
            notes.append(f"over --max-cost {money(max_cost)}")
    if quote.price_inferred:
        notes.append("price inferred")
    return "; ".join(notes)


QUOTE_HEADERS = ("provider", "supported", "unit price", "images", "calls", "total", "time", "notes")
QUOTE_RIGHT = (2, 3, 4, 5, 6)


def _seconds(estimate: Estimate | None) -> str:
    if estimate is None:
        return "?"
    if estimate.seconds < 90:
        return f"~{estimate.seconds:.0f} s"
    return f"~{estimate.seconds / 60:.0f} min"


def quote_rows(
    quotes: Sequence[Quote],
    *,
    max_cost: Decimal | None = None,
    strict: bool = False,
    times: Mapping[str, Estimate] | None = None,
) -> list[list[str]]:
    times = times or {}
    return [
        [
            q.provider,
            "yes" if q.supported else "no",
            money(q.unit_price_usd),
            str(q.images),
            str(q.calls),
            money(q.total_usd),
            _seconds(times.get(q.provider)) if q.supported else "",
            _quote_notes(q, max_cost, strict),
        ]
        for q in quotes
    ]


def quote_document(
    quotes: Sequence[Quote],
    *,
    max_cost: Decimal | None = None,
    strict: bool = False,
    times: Mapping[str, Estimate] | None = None,
) -> list[dict[str, Any]]:
    times = times or {}
    return [
        {
            "provider": q.provider,
            "supported": q.supported,
            "unit_price_usd": None if q.unit_price_usd is None else str(q.unit_price_usd),
            "images": q.images,
            "calls": q.calls,
            "total_usd": None if q.total_usd is None else str(q.total_usd),
            "price_inferred": q.price_inferred,
            "typical_seconds": times[q.provider].seconds if q.provider in times else None,
            "time_source": times[q.provider].source if q.provider in times else None,
            "reason": q.reason if not q.supported else None,
            "warnings": [{"field": w.field, "kind": w.kind, "message": w.message} for w in q.warnings],
            "notes": _quote_notes(q, max_cost, strict),
        }
        for q in quotes
    ]


def _eligible(quote: Quote, max_cost: Decimal | None, strict: bool) -> bool:
    """Would a client with these rules send this quote's request (supported, priced, within the rules)?"""
    if not quote.supported or quote.total_usd is None or (strict and quote.warnings):
        return False
    return max_cost is None or quote.total_usd <= max_cost


def quote_summary(
    quotes: Sequence[Quote],
    *,
    max_cost: Decimal | None = None,
    strict: bool = False,
    times: Mapping[str, Estimate] | None = None,
) -> list[str]:
    """The line under the table: the cheapest provider the rules allow, or why there is none."""
    times = times or {}
    lines: list[str] = []
    eligible = [q for q in quotes if _eligible(q, max_cost, strict)]
    priced = [q for q in quotes if q.supported and q.total_usd is not None]
    if eligible:
        low = min(q.total_usd for q in eligible if q.total_usd is not None)
        best = [q.provider for q in eligible if q.total_usd == low]
        lines.append(
            f"cheapest: {', '.join(best)} at {money(low)} for {eligible[0].images} image(s). Nothing was sent."
        )
    elif priced:
        rules = [r for r, on in ((f"--max-cost {money(max_cost)}", max_cost is not None), ("--strict", strict)) if on]
        low = min(q.total_usd for q in priced if q.total_usd is not None)
        best = [q.provider for q in priced if q.total_usd == low]
        lines.append(
            f"no provider can serve this within {' and '.join(rules) or 'the rules'}; without them the "
            f"cheapest would be {', '.join(best)} at {money(low)}. Nothing was sent."
        )
    else:
        lines.append("no provider can serve this request. Nothing was sent.")
    if times:
        seen = sorted(p for p, e in times.items() if e.source == "seen")
        documented = sorted(p for p, e in times.items() if e.source == "declared")
        basis = [f"seen in your journal for {', '.join(seen)}"] if seen else []
        basis += [f"as documented for {', '.join(documented)}"] if documented else []
        lines.append(f"time: {'; '.join(basis)}; ? where neither is known.")
    return lines


# -- providers ------------------------------------------------------------------------------------------


def key_variables(info: ProviderInfo) -> str:
    return " or ".join("+".join(alt) for alt in info.credential_variables) or "-"


def key_is_set(info: ProviderInfo, environ: Mapping[str, str] | None = None) -> bool:
    """Whether some alternative's variables are all set. Reads presence only, never shows a value."""
    env = os.environ if environ is None else environ
    return any(all(env.get(v, "").strip() for v in alt) for alt in info.credential_variables)


PROVIDER_HEADERS = ("provider", "operation", "turbo", "default", "quality", "per call", "in flight", "per min",
                    "resume", "key")  # fmt: skip
PROVIDER_RIGHT = (2, 3, 4, 5, 6, 7)


def _key_state(info: ProviderInfo, environ: Mapping[str, str] | None, stored: bool) -> str:
    if key_is_set(info, environ):
        return "set"
    return "stored" if stored else "not set"


def provider_rows(
    infos: Sequence[ProviderInfo], environ: Mapping[str, str] | None = None, *, stored: Set[str] = frozenset()
) -> list[list[str]]:
    """One row per provider and operation: prices by speed, limits, resume support, key variables."""
    rows: list[list[str]] = []
    for info in infos:
        key = f"{key_variables(info)} ({_key_state(info, environ, info.name in stored)})"
        inferred = any(k.startswith("price") for k in info.inferred)
        first = True
        for op in _OPERATIONS:
            if op not in info.operations:
                continue
            prices = [money(info.price(op, s)) if info.price(op, s) is not None else "-" for s in _SPEEDS]
            if inferred:
                prices = [p + "*" if p != "-" else p for p in prices]
            rows.append(
                [
                    info.name if first else "",
                    op,
                    *prices,
                    str(info.max_images_per_call) if first else "",
                    (str(info.max_images_in_flight) if info.max_images_in_flight else "-") if first else "",
                    (str(info.requests_per_minute) if info.requests_per_minute else "-") if first else "",
                    ("yes" if info.can_resume else "no") if first else "",
                    key if first else "",
                ]
            )
            first = False
    return rows


def supported_fields_rows(infos: Sequence[ProviderInfo]) -> tuple[list[str], list[list[str]]]:
    """Which optional fields each provider honours: G/E/R for generate/edit/remix, ``-`` for none."""
    headers = ["field", *(i.name for i in infos)]
    rows = []
    for name in _FIELDS:
        cells = []
        for info in infos:
            if name == "num_images":
                cells.append(f"{info.max_images_per_call}/call" if info.max_images_per_call > 1 else "fan-out")
                continue
            ops = [op[0].upper() for op in _OPERATIONS if op in info.operations and info.supports(op, name)]
            cells.append("/".join(ops) or "-")
        rows.append([name, *cells])
    return headers, rows


def provider_document(
    info: ProviderInfo, environ: Mapping[str, str] | None = None, *, stored: bool = False
) -> dict[str, Any]:
    return {
        "name": info.name,
        "title": info.title,
        "operations": [op for op in _OPERATIONS if op in info.operations],
        "supported_fields": {
            op: sorted(info.supported_fields.get(op, ())) for op in _OPERATIONS if op in info.operations
        },
        "prices_usd": {
            op: {s: (None if info.price(op, s) is None else str(info.price(op, s))) for s in _SPEEDS}
            for op in _OPERATIONS
            if op in info.operations
        },
        "max_images_per_call": info.max_images_per_call,
        "max_images_in_flight": info.max_images_in_flight,
        "requests_per_minute": info.requests_per_minute,
        "can_resume": info.can_resume,
        "credential_variables": [list(alt) for alt in info.credential_variables],
        "key_set": key_is_set(info, environ),
        "key_stored": stored,
        "base_urls": dict(info.base_urls),
        "docs_url": info.docs_url,
        "inferred": dict(info.inferred),
        "typical_seconds": info.typical_seconds,
    }


# -- the demo's cost table --------------------------------------------------------------------------------

COST_HEADERS = ("provider", "images", "unit price", "cost", "source", "seconds", "vendor id")
COST_RIGHT = (1, 2, 3, 5)


def cost_rows(results: Sequence[tuple[CharacterResult, Quote | None]]) -> list[list[str]]:
    rows = []
    for result, quote in results:
        seconds = sum(a.elapsed_seconds for a in result.attempts)
        rows.append(
            [
                result.provider,
                str(len(result.images)),
                money(quote.unit_price_usd) if quote else "?",
                money(result.cost_usd),
                result.cost_source.replace("_", " "),
                f"{seconds:.1f}",
                result.vendor_request_id or "-",
            ]
        )
    return rows


# -- the journal (ideochar jobs) -------------------------------------------------------------------------------

JOB_HEADERS = ("job", "created", "status", "operation", "provider", "images", "spent", "resume", "prompt")
JOB_RIGHT = (5, 6)
_PROMPT_WIDTH = 48


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _can_resume(job: JobRecord) -> bool:
    return bool(job.resumable) or (job.status == "running" and not job.attempts)


def job_rows(jobs: Sequence[JobRecord]) -> list[list[str]]:
    """One row per job, newest first; ``resume`` says whether ``ideochar jobs resume`` has work to do."""
    return [
        [
            job.id[:12],
            job.created_at.astimezone().strftime("%Y-%m-%d %H:%M"),
            job.status,
            job.operation,
            job.provider or "-",
            f"{len(job.outputs)}/{job.num_images}",
            "emulated" if job.emulated else money(job.spent_usd),
            "yes" if _can_resume(job) else "",
            _short(job.prompt, _PROMPT_WIDTH),
        ]
        for job in jobs
    ]


ATTEMPT_HEADERS = ("part", "provider", "try", "status", "vendor id", "billed", "cost", "note")
ATTEMPT_RIGHT = (2, 6)


def attempt_rows(job: JobRecord) -> list[list[str]]:
    rows = []
    for attempt in job.attempts:
        cost = attempt.cost_usd if attempt.cost_usd is not None else attempt.quote_usd
        note = attempt.message or attempt.error_type or ""
        if attempt.open:
            note = ("may still run and bill; " + note).rstrip("; ")
        rows.append(
            [
                attempt.part,
                attempt.provider,
                str(attempt.try_number),
                attempt.status,
                attempt.vendor_request_id or "-",
                attempt.billed or "?",
                money(cost) + ("" if attempt.cost_usd is not None or cost is None else " (quote)"),
                _short(note, 80),
            ]
        )
    return rows


def job_lines(job: JobRecord) -> list[str]:
    """``ideochar jobs show``: the job, then its attempts and its saved images."""
    lines = [
        f"job {job.id} ({job.status})",
        f"created {job.created_at.astimezone():%Y-%m-%d %H:%M:%S %Z}, {job.operation}, "
        f"{job.num_images} image(s): {_short(job.prompt, 200)}",
    ]
    if job.provider:
        vendor = f", vendor id {job.vendor_request_id}" if job.vendor_request_id else ""
        lines.append(f"provider {job.provider}{vendor}")
    if job.emulated:
        lines.append(
            f"emulated: nothing was charged (a vendor would have charged {money(job.emulated_cost_usd)}); "
            "it can be resumed only against the emulator that ran it"
        )
    else:
        spent = f"spent {money(job.spent_usd)}"
        if job.possibly_billed_usd:
            spent += f", possibly billed {money(job.possibly_billed_usd)} more (outcome unknown)"
        lines.append(spent)
    if job.error_type:
        lines.append(f"error: {job.error_type}: {job.error_message or ''}".rstrip(": "))
    if job.attempts:
        lines += ["", render(ATTEMPT_HEADERS, attempt_rows(job), right=ATTEMPT_RIGHT)]
    if job.outputs:
        lines += ["", "images:"]
        for output in job.outputs:
            size = f"{output.width}x{output.height}" if output.width and output.height else "size unknown"
            lines.append(f"  {output.path}  ({size}, sha256 {output.sha256[:12]})")
    if _can_resume(job):
        where = " --emulator-url URL" if job.emulated else ""
        lines += ["", f"resume it (nothing is sent twice): ideochar jobs resume {job.id[:12]}{where}"]
    return lines


def totals_line(totals: SpendTotals) -> str:
    """``ideochar jobs list``'s last line: what the vendors' jobs cost; emulated ones counted apart."""
    line = f"{totals.jobs} job(s), {totals.images} image(s), spent {money(totals.spent_usd)}"
    if totals.possibly_billed_usd:
        line += f", possibly billed {money(totals.possibly_billed_usd)} more (outcome unknown)"
    if totals.emulated_jobs:
        line += f"; {totals.emulated_jobs} emulated job(s), not counted"
    return line


def resume_cost_note(before: JobRecord, after: JobRecord) -> str:
    """What resuming itself cost: the attempts it started (parts never sent before); picking up an admitted
    job, or reading saved images, charges nothing new."""
    known = {a.key for a in before.attempts}
    new = [a for a in after.attempts if a.key not in known]
    if not new:
        return "charged when the job first ran; resuming charged nothing more"
    fresh = sum((a.spent_usd for a in new), Decimal(0))
    return f"of which {money(fresh)} for the calls resuming sent"

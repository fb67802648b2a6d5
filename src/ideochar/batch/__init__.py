"""Batches: many requests, one budget, spread over vendors by their capacity, resumable by running again.

A batch is a sequence of rows (a JSONL or CSV file, :class:`RowSource`; or requests and mappings from
Python), each one job. :meth:`AsyncClient.batch <ideochar.client.AsyncClient.batch>` (and its blocking
twin :meth:`Client.batch <ideochar.client.Client.batch>`) runs them and yields each row's
:class:`RowResult` as it finishes::

    async with AsyncClient(["fal", "segmind"]) as client:
        async with client.batch(RowSource("rows.jsonl"), out="out/", max_cost_usd=25) as batch:
            async for row in batch:
                print(row.row, row.status, row.provider, row.cost_usd, row.files)
        print(batch.summary)

What it guarantees, and where each guarantee lives:

* **Checked before paid**: every row is validated locally (:mod:`~ideochar.batch._rows`); :func:`plan`
  prices the whole batch per vendor and strategy and estimates its duration from each vendor's limits,
  sending nothing (``ideochar batch --dry-run``).
* **A cap on the whole batch** (``max_cost_usd``): each job's quote is reserved in the journal's file,
  in the transaction that claims its row, before the job exists; a row whose quote no longer fits is not
  sent (``over_budget``); the job's own budget is its reservation, so failing over cannot pass it.
* **Spread by capacity**: a row goes to its first provider (in the strategy's order) that has a free
  slot now, within its concurrency and rate limits (an ``Acquire`` whose deadline has passed, asked of
  the client's own limiter: a slot now, or an answer at once);
  a saturated provider is passed over for the next within the price cap (``spill=False``: wait for the
  first); a provider whose breaker is open gets nothing until it lets a probe through; one that refuses
  the key or is out of credit gets nothing more from this batch.
* **Resumable by running again**: rows are identified by content (:func:`~ideochar.batch._rows.row_key`);
  the batch's state (:mod:`~ideochar.batch._state`) says which job each row became. Settled rows are
  reported and skipped; a job a stopped run left is finished by its vendor ids (``client.resume``);
  nothing is sent twice. An edited row is a new row; the rest are untouched.
* **Memory flat in the number of rows**: rows are read as they can be sent; counters, rates and
  latency histograms have fixed sizes (:mod:`~ideochar.batch._stats`).

The same batch can run from several processes at once, and from several machines when they share the
journal (PostgreSQL) and the router's state (Redis, :mod:`ideochar.state`): a row is claimed by one of them
in the journal's database, a claimed row held by a live process is left to it, and the cap is reserved
against in the same transaction.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sized
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from ideochar.batch._core import DEFAULT_IN_FLIGHT, BatchOptions, RowResult, RowStatus, SavedFile
from ideochar.batch._estimate import BatchPlan, plan
from ideochar.batch._manifest import MANIFEST_NAME
from ideochar.batch._rows import FIELDS, Row, RowError, RowSource, row_key, rows_of
from ideochar.batch._stats import BatchProgress, BatchSummary, Snapshot, VendorSummary
from ideochar.request import CharacterRequest

if TYPE_CHECKING:
    from ideochar.batch._async import AsyncBatch
    from ideochar.batch._sync import Batch
    from ideochar.client import AsyncClient, Client

__all__ = [
    "DEFAULT_IN_FLIGHT",
    "FIELDS",
    "MANIFEST_NAME",
    "AsyncBatch",
    "Batch",
    "BatchKeywords",
    "BatchOptions",
    "BatchPlan",
    "BatchProgress",
    "BatchSummary",
    "Row",
    "RowError",
    "RowResult",
    "RowSource",
    "RowStatus",
    "SavedFile",
    "Snapshot",
    "VendorSummary",
    "batch_options",
    "plan",
    "row_key",
    "rows_of",
]

Requests = Iterable[CharacterRequest | Mapping[str, Any] | Row] | RowSource


class BatchKeywords(TypedDict, total=False):
    """The keyword arguments of ``client.batch(requests, ...)``."""

    out: str | os.PathLike[str] | None
    """Where the images and ``manifest.jsonl`` go (None: images stay in the journal's output folder)."""
    name: str | None
    """The batch's identity in the journal (default: the output folder, else ``"default"``)."""
    defaults: Mapping[str, Any] | None
    """Fields for every row that leaves them out (a row's own value wins)."""
    max_cost_usd: Decimal | float | str | None
    """The cap on the whole batch, over all its runs (each job's quote reserved before it is sent)."""
    spill: bool
    """Send a row to the next provider within the price cap when the preferred one is saturated (default)."""
    retry_failed: bool
    """Send again rows that failed after a vendor may have charged for them."""
    in_flight: int | None
    """Images in flight per provider where neither vendor nor configuration sets a limit."""
    strict: bool | None
    total: int | None
    """How many rows there are, when known (for progress displays)."""


def batch_options(
    *,
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    max_cost_usd: Decimal | float | str | None = None,
    spill: bool = True,
    retry_failed: bool = False,
    in_flight: int | None = None,
    strict: bool | None = None,
) -> BatchOptions:
    """The options of ``client.batch(...)``, checked. The batch's ``name`` defaults to its output folder
    (one folder, one batch), else ``"default"``."""
    from ideochar.errors import InvalidRequest

    folder = None if out is None else Path(out).expanduser()
    if name is None:
        name = str(folder.resolve()) if folder is not None else "default"
    cap = None if max_cost_usd is None else Decimal(str(max_cost_usd))
    if cap is not None and (not cap.is_finite() or cap < 0):
        raise InvalidRequest.for_field("max_cost_usd", "must be zero or more")
    if in_flight is not None and in_flight < 1:
        raise InvalidRequest.for_field("in_flight", "must be at least 1")
    return BatchOptions(
        name=name,
        out=folder,
        max_cost_usd=cap,
        spill=spill,
        retry_failed=retry_failed,
        in_flight=in_flight or DEFAULT_IN_FLIGHT,
        strict=strict,
    )


def start_async(client: AsyncClient, requests: Requests, options: BatchKeywords) -> AsyncBatch:
    """What :meth:`AsyncClient.batch <ideochar.client.AsyncClient.batch>` does."""
    from ideochar.batch._async import AsyncBatch

    rows, compact, total, checked = _prepared(client, requests, options)
    return AsyncBatch(client, rows, checked, total=total, compact=compact)


def start_sync(client: Client, requests: Requests, options: BatchKeywords) -> Batch:
    """What :meth:`Client.batch <ideochar.client.Client.batch>` does."""
    from ideochar.batch._sync import Batch

    rows, compact, total, checked = _prepared(client, requests, options)
    return Batch(client, rows, checked, total=total, compact=compact)


def _prepared(
    client: Client | AsyncClient, requests: Requests, options: BatchKeywords
) -> tuple[Iterable[Row], RowSource | None, int | None, BatchOptions]:
    given: dict[str, Any] = dict(options)
    defaults: Mapping[str, Any] | None = given.pop("defaults", None)
    total: int | None = given.pop("total", None)
    if total is None and isinstance(requests, Sized):
        total = len(requests)
    rows = rows_of(requests, defaults=defaults, accept_inputs=client.accept_inputs)
    compact = requests if isinstance(requests, RowSource) else None
    return rows, compact, total, batch_options(**given)


def __getattr__(name: str) -> Any:
    """``AsyncBatch`` and ``Batch`` load their drivers on first use (anyio, threads)."""
    if name == "AsyncBatch":
        from ideochar.batch._async import AsyncBatch

        return AsyncBatch
    if name == "Batch":
        from ideochar.batch._sync import Batch

        return Batch
    raise AttributeError(name)

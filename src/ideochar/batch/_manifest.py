"""The manifest: one JSON line per row, written as rows end and put in the file's order at the end.

While a batch runs, each row's line is appended as the row is settled (flushed at once, so a killed run
leaves every line it reported); a row already settled by an earlier run is reported again, from the
batch's state. When the run ends the manifest is rewritten (a temporary file, then a rename) with
exactly one line per row of the file as it is now, in its order: rows not reached are ``pending``,
invalid rows carry every problem found. Until then a reader takes the last line of each ``key``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from ideochar.batch._core import RowResult
from ideochar.batch._rows import Row
from ideochar.batch._state import State

__all__ = ["MANIFEST_NAME", "Manifest", "invalid_result", "line"]

MANIFEST_NAME = "manifest.jsonl"


def line(document: dict[str, Any]) -> str:
    """One manifest line (compact JSON, no newline)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str)


def invalid_result(row: Row) -> RowResult:
    """The result of a row that was not sent because it is not valid (every problem named)."""
    problems = tuple((e.field, e.problem) for e in row.errors)
    return RowResult(
        row=row.number,
        key=row.key,
        status="invalid",
        label=row.label,
        billed="no",
        error="; ".join(f"{f}: {p}" for f, p in problems),
        error_type="InvalidRequest",
        problems=problems,
    )


class Manifest:
    """``manifest.jsonl`` in a batch's output folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST_NAME
        self._handle: IO[str] | None = None

    def append(self, result: RowResult) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(line(result.to_json()) + "\n")
        self._handle.flush()

    def compact(self, rows: Iterable[Row], state: State) -> int:
        """Rewrite the manifest: one line per row of ``rows``, in order, from the batch's state."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".manifest-", suffix=".part", dir=self.path.parent)
        count = 0
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                for row in rows:
                    out.write(line(self._document(row, state)) + "\n")
                    count += 1
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        return count

    @staticmethod
    def _document(row: Row, state: State) -> dict[str, Any]:
        if not row.valid:
            return invalid_result(row).to_json()
        found = state.look(row.key)
        if found is None or found.record is None:
            document = RowResult(row=row.number, key=row.key, status="failed", label=row.label).to_json()
            document["status"] = "pending" if found is None or found.open else found.status
            if found is not None:
                document["job_id"] = found.job_id
            return document
        document = RowResult.from_json(found.record, row=row.number, earlier=False).to_json()
        if found.open:
            document["status"] = "unknown"
        return document

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

"""The ledger: every job a vendor admitted, which is what a vendor would bill.

Tests assert "charged once" against it: a retry that resubmitted an admitted job shows up as a second
entry. An entry is voided, not removed, when the vendor would not charge after all (a queued job
cancelled, a run that failed), so the history stays readable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from decimal import Decimal
from typing import Any

from ideochar.emulator.kit import LedgerEntry

__all__ = ["Ledger", "UploadEntry", "Uploads"]


class Ledger:
    """Admitted jobs per vendor, in admission order. Thread-safe (a test thread reads what a server writes)."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: LedgerEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def void(self, vendor: str, job_id: str, reason: str) -> bool:
        """Mark ``job_id``'s entry as not charged; False when no billed entry has that id."""
        with self._lock:
            for index, entry in enumerate(self._entries):
                if entry.vendor == vendor and entry.job_id == job_id and entry.voided is None:
                    self._entries[index] = dataclasses.replace(entry, voided=reason)
                    return True
        return False

    def entries(self, vendor: str | None = None, *, billed_only: bool = False) -> list[LedgerEntry]:
        with self._lock:
            return [
                e for e in self._entries if (vendor is None or e.vendor == vendor) and (e.billed or not billed_only)
            ]

    def billed(self, vendor: str | None = None) -> list[LedgerEntry]:
        """The entries a vendor would charge for."""
        return self.entries(vendor, billed_only=True)

    def count(self, vendor: str | None = None) -> int:
        """How many billed admissions (the number "charged once" is about)."""
        return len(self.billed(vendor))

    def job_ids(self, vendor: str | None = None) -> list[str]:
        return [e.job_id for e in self.billed(vendor)]

    def total_usd(self, vendor: str | None = None) -> Decimal:
        return sum((e.cost_usd for e in self.billed(vendor)), start=Decimal(0))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def to_json(self, vendors: list[str] | None = None) -> dict[str, Any]:
        """``{vendor: {"entries": [...], "billed": n, "total_usd": "0.30"}}`` for every vendor named."""
        names = vendors if vendors is not None else sorted({e.vendor for e in self.entries()})
        return {
            name: {
                "entries": [e.to_json() for e in self.entries(name)],
                "billed": self.count(name),
                "total_usd": str(self.total_usd(name)),
            }
            for name in names
        }

    def __len__(self) -> int:
        return self.count()


@dataclasses.dataclass(frozen=True)
class UploadEntry:
    """One file a client uploaded to a vendor's storage."""

    vendor: str
    sha256: str
    size: int
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "sha256": self.sha256, "size": self.size, "at": self.at}


class Uploads:
    """Every upload to a vendor's storage, in order: tests assert "uploaded once per vendor" against it."""

    def __init__(self) -> None:
        self._entries: list[UploadEntry] = []
        self._lock = threading.Lock()

    def add(self, vendor: str, data: bytes) -> UploadEntry:
        entry = UploadEntry(vendor, hashlib.sha256(data).hexdigest(), len(data), time.time())
        with self._lock:
            self._entries.append(entry)
        return entry

    def entries(self, vendor: str | None = None) -> list[UploadEntry]:
        with self._lock:
            return [e for e in self._entries if vendor is None or e.vendor == vendor]

    def count(self, vendor: str | None = None, sha256: str | None = None) -> int:
        """How many uploads (of one vendor, of one image's digest)."""
        return sum(1 for e in self.entries(vendor) if sha256 is None or e.sha256 == sha256)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def to_json(self, vendors: list[str]) -> dict[str, Any]:
        return {
            name: {"uploads": [e.to_json() for e in self.entries(name)], "count": self.count(name)} for name in vendors
        }

    def __len__(self) -> int:
        return self.count()

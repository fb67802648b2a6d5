"""``ideochar jobs prune``: forget old jobs without losing anything a vendor may still bill.

A job is forgotten (its journal rows, and the images the journal saved for it in its output folder) when
it was last touched before the cutoff and it is finished: succeeded, partial or failed, with no attempt
still open at a vendor. A running or unknown job, or a finished one with an open attempt, is the only
record of something a vendor may still run and bill, so it goes only with ``--force``. A job a live
process holds is never removed: each job is claimed first (:meth:`~ideochar.journal.Journal.claim`),
as a resume would, and a busy one is kept.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ideochar._owner import Owner
from ideochar.errors import JobBusy
from ideochar.journal import JobRecord, Journal

__all__ = ["FINISHED", "PruneReport", "prune_jobs"]

FINISHED: frozenset[str] = frozenset({"succeeded", "partial", "failed"})


@dataclass
class PruneReport:
    cutoff: datetime
    dry_run: bool
    journal: str
    """Where the journal is: its file, or its database's URL without a password (``Journal.where``)."""
    removed: list[JobRecord] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    open_kept: list[JobRecord] = field(default_factory=list)
    """Running, unknown, or with an attempt still open at a vendor: kept without --force."""
    busy_kept: list[tuple[JobRecord, str]] = field(default_factory=list)
    """Held by a live process (who)."""

    def lines(self) -> list[str]:
        verb = "would forget" if self.dry_run else "forgot"
        when = self.cutoff.astimezone().strftime("%Y-%m-%d %H:%M")
        images = sum(len(job.outputs) for job in self.removed) if self.dry_run else len(self.files)
        lines = [
            f"{verb} {len(self.removed)} job(s) last changed before {when}, and {images} image(s) the journal "
            f"saved for them (journal {self.journal})"
        ]
        if self.open_kept:
            ids = ", ".join(job.id[:12] for job in self.open_kept[:5]) + (", ..." if len(self.open_kept) > 5 else "")
            lines.append(
                f"kept {len(self.open_kept)} job(s) a vendor may still run and bill ({ids}): resume them "
                "(ideochar jobs resume ID), or forget them anyway with --force"
            )
        for job, who in self.busy_kept:
            lines.append(f"kept job {job.id[:12]}: {who} is running it")
        return lines

    def document(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cutoff": self.cutoff.isoformat(),
            "journal": self.journal,
            "removed": [job.id for job in self.removed],
            "files_removed": [str(path) for path in self.files],
            "kept_open": [job.id for job in self.open_kept],
            "kept_busy": [job.id for job, _ in self.busy_kept],
        }


def _open(job: JobRecord) -> bool:
    """Might a vendor still run (and bill) something of this job?"""
    return job.status not in FINISHED or any(attempt.open for attempt in job.attempts)


def prune_jobs(
    journal: Journal, cutoff: datetime, *, statuses: Set[str] = frozenset(), force: bool = False, dry_run: bool = False
) -> PruneReport:
    """Forget the jobs last changed before ``cutoff`` (of ``statuses``, if given): the finished ones, and
    with ``force`` the open ones too; open ones left are reported, so none is kept in silence."""
    report = PruneReport(cutoff, dry_run, journal.where)
    chosen: list[JobRecord] = []
    for job in journal.jobs(limit=None):
        if job.updated_at >= cutoff or (statuses and job.status not in statuses):
            continue
        if _open(job) and not force:
            report.open_kept.append(job)
        elif dry_run and job.owner is not None and job.status == "running":
            report.busy_kept.append((job, job.owner))
        else:
            chosen.append(job)
    if dry_run:
        report.removed = chosen
        return report
    owner = Owner.current()
    for job in chosen:
        try:
            journal.claim(job.id, owner)  # never under a live process's feet
        except JobBusy as busy:
            report.busy_kept.append((job, busy.owner or "another process"))
            continue
        report.removed.append(job)
    report.files = journal.delete_jobs([job.id for job in report.removed])
    for job in report.removed:
        journal.release(job.id, owner)  # the claim's lease: nothing is left to renew
    return report

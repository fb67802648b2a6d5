"""Queued jobs that take emulated model time: queued, then running, then done.

For vendors with a queue (submit now, poll or stream later). A job's timeline is fixed when it is
admitted: it waits in the queue for ``queue_share`` of the model time, runs for the rest, and is done
at ``model_seconds`` — or, if rendering its images took longer, when they are ready. Rendering starts at
admission, so it overlaps the emulated wait.

Why timers and events rather than a task per job: a benchmark holds a thousand jobs at once, and a
client waiting on a status stream must hear "done" within milliseconds. Each job has two loop timers
and one event that is set (and replaced) on every change; a stream awaiting it wakes at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from ideochar.emulator.kit import EmulatorKit

__all__ = ["JobBoard", "Phase", "TimedJob"]

Phase = Literal["queued", "running", "done"]
R = TypeVar("R")

#: How long a finished job stays readable by id (Segmind and fal keep results for about an hour).
DEFAULT_RETENTION_SECONDS = 3600.0


@dataclass(eq=False)
class TimedJob(Generic[R]):
    id: str
    owner: str
    submitted_at: float
    """Wall-clock time (for documents)."""
    start_at: float
    """Loop time at which it leaves the queue."""
    done_at: float | None
    """Loop time at which it is due; None when it is stuck (never finishes)."""
    position: int
    """Jobs ahead of it when it was queued."""
    queued_at: float
    """Loop time at which it was queued."""
    data: Any = None
    """What the vendor module keeps about the job (its validated input, its seed...)."""
    phase: Phase = "queued"
    result: R | None = None
    error: BaseException | None = None
    outcome: str | None = None
    """How it ended when not by its work: ``"cancelled"``, or a vendor's failure code."""
    started_at: float | None = None
    finished_at: float | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event | None = None
    _timers: list[Callable[[], None]] = field(default_factory=list)
    _retention: Callable[[], None] | None = None
    _work: asyncio.Future[R] | None = None
    _on_done: Callable[[TimedJob[R]], None] | None = None

    def queue_position(self, now: float) -> int:
        """Jobs still ahead: the position it was queued at, shrinking evenly until it starts."""
        span = self.start_at - self.queued_at
        if self.phase != "queued" or self.position <= 0 or span <= 0:
            return 0
        remaining = max(0.0, self.start_at - now)
        return min(self.position, math.ceil(self.position * remaining / span))

    def changed(self) -> asyncio.Event:
        """An event set at the job's next change (each change sets the current one and starts a new one)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    def log(self, message: str, level: str = "INFO") -> None:
        self.logs.append({
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
            "level": level,
            "source": "emulator",
            "message": message,
        })  # fmt: skip


class JobBoard(Generic[R]):
    """A vendor's queued jobs, by id."""

    def __init__(
        self, kit: EmulatorKit, *, queue_share: float, retention_seconds: float = DEFAULT_RETENTION_SECONDS
    ) -> None:
        self.kit = kit
        self.queue_share = queue_share
        self.retention_seconds = retention_seconds
        self.jobs: dict[str, TimedJob[R]] = {}
        self.queued = 0
        kit.on_reset(self.clear)
        track = getattr(kit, "track_jobs", None)  # optional: lets /_emulator/jobs/{vendor}/{id} report timelines
        if callable(track):
            track(self)

    def submit(
        self,
        job_id: str,
        *,
        owner: str,
        work: Callable[[], Awaitable[R]] | None,
        stuck: bool = False,
        data: Any = None,
        on_start: Callable[[TimedJob[R]], None] | None = None,
        on_done: Callable[[TimedJob[R]], None] | None = None,
    ) -> TimedJob[R]:
        """Queue a job now. ``work`` (rendering) starts at once, overlapping the wait; its value is the result.
        ``on_done`` is called once the job is done, however it ended (a vendor's callback goes out then)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        total = max(0.0, self.kit.model_seconds)
        queue_time = total * self.queue_share
        job: TimedJob[R] = TimedJob(
            id=job_id,
            owner=owner,
            submitted_at=time.time(),
            start_at=now + queue_time,
            done_at=None if stuck else now + total,
            position=self.queued if queue_time > 0 else 0,
            queued_at=now,
            data=data,
            _on_done=on_done,
        )
        self.jobs[job_id] = job
        self.queued += 1
        self._in_flight(+1)
        if work is not None and not stuck:
            job._work = asyncio.ensure_future(work())
        job._timers.append(self.kit.later(queue_time, lambda: self._start(job, on_start)))
        if job.done_at is not None:
            job._timers.append(self.kit.later(total, lambda: self._due(job)))
        job._retention = self.kit.later(self.retention_seconds, lambda: self._forget(job))
        return job

    def _in_flight(self, delta: int) -> None:
        """Jobs submitted and not done, reported to the emulator's in-flight gauge (its high-water mark)."""
        add = getattr(self.kit, "add_in_flight", None)
        if callable(add):
            add(delta)

    def get(self, job_id: str) -> TimedJob[R] | None:
        return self.jobs.get(job_id)

    def _start(self, job: TimedJob[R], on_start: Callable[[TimedJob[R]], None] | None) -> None:
        if job.phase != "queued":
            return
        self.queued -= 1
        job.phase = "running"
        job.started_at = time.time()
        job.log("emulated model started")
        if on_start is not None:
            on_start(job)
        job._notify()

    def _due(self, job: TimedJob[R]) -> None:
        if job.phase == "done":
            return
        if job.phase == "queued":
            self._start(job, None)
        work = job._work
        if work is None or work.done():
            self._finish(job)
        else:
            work.add_done_callback(lambda _: self._finish(job))

    def _finish(self, job: TimedJob[R]) -> None:
        if job.phase == "done":
            return
        work = job._work
        if work is not None and work.done() and not work.cancelled():
            job.error = work.exception()
            if job.error is None:
                job.result = work.result()
        job.phase = "done"
        self._in_flight(-1)
        job.finished_at = time.time()
        job.log("emulated model finished" if job.error is None else f"emulated model failed: {job.error}")
        job._notify()
        _done(job)

    def end(self, job: TimedJob[R], outcome: str) -> None:
        """Finish ``job`` now without its result (cancelled, or failed with ``outcome``)."""
        if job.phase == "done":
            return
        if job.phase == "queued":
            self.queued -= 1
        for cancel in job._timers:
            cancel()
        if job._work is not None:
            job._work.cancel()
        job.phase = "done"
        self._in_flight(-1)
        job.outcome = outcome
        job.finished_at = time.time()
        job.log(f"job ended: {outcome}")
        job._notify()
        _done(job)

    def _forget(self, job: TimedJob[R]) -> None:
        if self.jobs.get(job.id) is job:
            if job.phase == "queued":
                self.queued -= 1
            del self.jobs[job.id]

    def clear(self) -> None:
        for job in self.jobs.values():
            for cancel in [*job._timers, *([job._retention] if job._retention else [])]:
                cancel()
            if job._work is not None:
                job._work.cancel()
            job._notify()
        self.jobs.clear()
        self.queued = 0


def _done(job: TimedJob[Any]) -> None:
    """Tell the job's ``on_done`` (once): a failing listener must not break the board."""
    listener, job._on_done = job._on_done, None
    if listener is None:
        return
    try:
        listener(job)
    except Exception:
        import logging

        logging.getLogger("ideochar.emulator").exception("a job's on_done listener failed")

"""Progress on stderr while a job is queued or running.

On a terminal one status line is redrawn in place (carriage return and "erase line", no dependency):
provider, status, queue position, elapsed time and, once known, the vendor's id. Anything worth keeping
(the vendor id of an admitted job, a failure, a failover) is also printed as a permanent line above it,
because that id is what a user needs to resume a paid job if the process dies. Elsewhere (a pipe, a CI
log) the same facts come as plain lines, one per change, never one per poll.

The display is a ``Client(on_event=...)`` callback; events arrive on the job's thread while a ticker
thread keeps the elapsed time moving, so writes are serialised by a lock.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TextIO

from ideochar.events import Event

if TYPE_CHECKING:
    from ideochar.journal import JobRecord

__all__ = ["Progress", "ProgressMode", "Submitted"]

ProgressMode = Literal["auto", "live", "plain", "off"]

_TICK_SECONDS = 0.1
_ERASE_LINE = "\r\x1b[2K"
_SPINNER_UNICODE = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_SPINNER_ASCII = "|/-\\"


@dataclass(frozen=True)
class Submitted:
    """A job a vendor admitted during this run: it may bill even if this process stops."""

    provider: str
    vendor_request_id: str
    job_id: str | None = None


@dataclass
class _State:
    provider: str | None = None
    status: str = "starting"
    queue_position: int | None = None
    vendor_id: str | None = None
    attempt_started: float = field(default_factory=time.monotonic)


class Progress:
    """Renders job events on ``stream``. Use as a context manager around the job.

    ``mode``: ``live`` redraws one line (for a terminal), ``plain`` prints one line per change, ``off``
    prints nothing, ``auto`` picks ``live`` when ``stream`` is a terminal.
    """

    def __init__(self, stream: TextIO, mode: ProgressMode = "auto") -> None:
        if mode == "auto":
            mode = "live" if _is_tty(stream) else "plain"
        self.mode: ProgressMode = mode
        self.stream = stream
        self.submitted: list[Submitted] = []
        self.job_id: str | None = None
        """The client's job id, from the first event (the journal's key for ``ideochar jobs``)."""
        self.resuming = False
        """Set by :meth:`note_resuming`: a failure's advice to resume is what the user is doing already."""
        self._state = _State()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._shown = ""
        self._last_plain: tuple[object, ...] | None = None
        self._frame = 0
        self._unicode = "utf" in (getattr(stream, "encoding", None) or "ascii").lower()
        self._spinner = _SPINNER_UNICODE if self._unicode else _SPINNER_ASCII

    # -- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self.mode == "live":
            self._ticker = threading.Thread(target=self._tick, name="ideochar-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
            self._ticker = None
        with self._lock:
            self._clear()

    def _tick(self) -> None:
        while not self._stop.wait(_TICK_SECONDS):
            with self._lock:
                self._frame += 1
                self._redraw()

    # -- events --------------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """The ``on_event`` callback. Never raises: a display must not break a paid job."""
        try:
            with self._lock:
                self._handle(event)
        except Exception:  # noqa: S110 - e.g. a closed stream; the job matters more than the display
            pass

    def _handle(self, event: Event) -> None:
        state = self._state
        self.job_id = self.job_id or event.job_id
        provider = event.provider or state.provider or "?"
        if event.kind == "attempt_started":
            tries = event.try_number or 1
            self._state = _State(provider=provider, status="starting" if tries == 1 else f"try {tries}")
        elif event.kind == "submitted":
            state.provider = provider
            state.status = "submitted"
            if event.vendor_request_id:
                state.vendor_id = event.vendor_request_id
                self.submitted.append(Submitted(provider, event.vendor_request_id, event.job_id))
                self._note(f"{provider}: job admitted, vendor id {event.vendor_request_id}")
        elif event.kind == "progress":
            state.provider = provider
            state.status = event.status or state.status
            state.queue_position = event.queue_position
            if event.vendor_request_id:
                state.vendor_id = event.vendor_request_id
        elif event.kind == "retried":
            self._note(f"{provider}: {event.message or 'retrying'}")
        elif event.kind == "attempt_failed":
            billed = event.billed
            suffix = f" (billed: {billed})" if billed else ""
            message = event.message or event.error_type or "error"
            if self.resuming:
                from ideochar._cli.errors import without_resume_advice

                message = without_resume_advice(message)
            self._note(f"{provider} failed: {message}{suffix}")
        elif event.kind == "failed_over":
            self._note(f"{provider}: failing over to the next provider")
        elif event.kind == "finished":
            state.status = "done"
            state.queue_position = None
            if event.vendor_request_id:
                state.vendor_id = event.vendor_request_id
        else:
            return
        if self.mode == "live":
            self._redraw()
        elif self.mode == "plain" and event.kind in ("attempt_started", "progress", "finished"):
            key = (self._state.provider, self._state.status, self._state.queue_position, self._state.vendor_id)
            if key != self._last_plain:
                self._last_plain = key
                self._write(self._status_line(spinner=False) + "\n")

    def note_resuming(self, job: JobRecord) -> None:
        """Say at once what resuming ``job`` will do, so a wait on a vendor never starts in silence."""
        self.job_id = job.id
        self.resuming = True
        picked = [f"{a.provider} {a.vendor_request_id or '(answer journaled)'}" for a in job.resumable]
        lost = [a for a in job.attempts if a.lost]
        planned = [p for p in job.parts if p.state == "planned"]
        plan = []
        if picked:
            plan.append(f"picking up {len(picked)} admitted call(s): {', '.join(picked)}")
        if lost:
            plan.append(f"looking for {len(lost)} call(s) whose answer was lost (never sent again)")
        if planned:
            plan.append(f"sending {len(planned)} call(s) never sent")
        if job.outputs:
            plan.append(f"reading {len(job.outputs)} saved image(s)")
        with self._lock:
            self._note(f"resuming job {job.id[:12]} ({job.status}): " + ("; ".join(plan) or "nothing left to fetch"))

    # -- rendering -----------------------------------------------------------------------------------

    def _status_line(self, *, spinner: bool) -> str:
        state = self._state
        parts = [state.provider, state.status] if state.provider else ["preparing"]
        if state.queue_position is not None:
            parts[-1] += f" (position {state.queue_position})"
        parts.append(f"{time.monotonic() - self._started:.1f}s")
        if state.vendor_id:
            parts.append(f"vendor id {state.vendor_id}")
        if not spinner:
            return ", ".join(parts)
        separator = " · " if self._unicode else ", "
        return f"{self._spinner[self._frame % len(self._spinner)]} {separator.join(parts)}"

    def _note(self, text: str) -> None:
        """A permanent line (above the live one, which is redrawn after it)."""
        if self.mode == "off":
            return
        if self.mode == "live":
            self._clear()
        self._write(text + "\n")

    def _redraw(self) -> None:
        if self.mode != "live" or self._stop.is_set():
            return
        line = self._status_line(spinner=True)
        width = shutil.get_terminal_size((100, 24)).columns - 1
        if len(line) > width:  # a wrapped line cannot be redrawn in place
            line = line[: max(width - 1, 1)] + "…" if self._unicode else line[:width]
        self._write(_ERASE_LINE + line)
        self._shown = line

    def _clear(self) -> None:
        if self._shown:
            self._write(_ERASE_LINE)
            self._shown = ""

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

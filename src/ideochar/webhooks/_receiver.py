"""The receiving end: verify a callback, answer at once, finish the journaled job after answering.

A callback is only a signal. The receiver never takes images or costs from its body: it finds the job
the vendor id belongs to in the journal and finishes it as ``client.wait`` would (the pickup of a
journaled job: results fetched by vendor id, with the client's key, from the client's configured
origins, images downloaded and journaled, nothing sent again; see :mod:`ideochar.webhooks._client`).
So a forged body, even one that passed the signature, can at worst make the receiver look at a job early.

Answers (each logged, never with the body, a signature or a secret):

======  ==============================================================================================
202     accepted: the job is finished in the background (or is already being finished here)
200     acknowledged and ignored: a duplicate delivery, a job already finished, a job not finished yet
400     malformed: a signature header missing or unreadable, a body that is not the vendor's JSON
401     bad signature, a timestamp outside the tolerance, or no key to check with
404     no journaled job has this vendor id (yet): the vendor retries, and by then the journal may have
        it (a callback can overtake the journal's record of the vendor id); else polling finishes it
413     the body is over the limit (not read past it)
503     fal's keys or Replicate's secret could not be fetched: the vendor retries
======  ==============================================================================================

A duplicate is answered 200, not refused: a vendor retries a delivery whose 2xx it did not get in time,
so a repeated id within the tolerance is most often a genuine retry, and a 4xx would only make it retry
for hours. A replay outside the tolerance is refused as stale (401) before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ideochar.errors import IdeocharError, JobBusy
from ideochar.events import Event
from ideochar.webhooks import _client
from ideochar.webhooks._common import DEFAULT_TOLERANCE_SECONDS, MAX_BODY_BYTES, WebhookEvent, check_tolerance
from ideochar.webhooks._deliveries import DatabaseDeliveries, DeliveryLog
from ideochar.webhooks._errors import CallbackTooLarge, SigningKeysUnavailable, WebhookRefused
from ideochar.webhooks._fal import FalKeys
from ideochar.webhooks._replicate import ReplicateSecret
from ideochar.webhooks._verify import VENDORS, averify, verify

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ideochar.client import AsyncClient, Client
    from ideochar.journal import JobRecord
    from ideochar.result import CharacterResult

__all__ = [
    "BUSY_RETRY_SECONDS",
    "CALLBACK_DEADLINE_SECONDS",
    "SWEEP_EVERY_SECONDS",
    "ResultCallback",
    "WebhookReceiver",
    "app",
]

logger = logging.getLogger("ideochar.webhooks")

#: A job whose callback has not come this long after its vendor admitted it is finished by polling.
CALLBACK_DEADLINE_SECONDS = 600.0
#: How often :meth:`WebhookReceiver.running` looks for such jobs.
SWEEP_EVERY_SECONDS = 60.0
#: When another run holds the job (the submitting request not yet done with it), try again after these.
BUSY_RETRY_SECONDS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)
#: Completions run at once; more wait their turn (each downloads images and writes the journal).
MAX_CONCURRENT = 8
#: On shutdown, completions under way get this long to end (the rest stay resumable).
DRAIN_SECONDS = 10.0
#: The journal's job states after which there is nothing to complete.
_ENDED = frozenset({"succeeded", "partial", "failed"})

ResultCallback = Callable[[str, "CharacterResult | BaseException"], None]
"""``on_result(job_id, result_or_error)``: told when the receiver has finished (or failed to finish) a job."""


def _ended(record: JobRecord) -> bool:
    return record.status in _ENDED and not record.resumable


class WebhookReceiver:
    """Receives fal's and Replicate's callbacks for the jobs ``client`` journals.

    Mount :attr:`app` in a FastAPI or Starlette app; give the vendors its URL (``.../fal``,
    ``.../replicate``, or its root for both: the signature header tells them apart). Run
    :meth:`running` in the host app's lifespan so that jobs whose callback never comes are finished by
    polling, and completions under way end cleanly on shutdown.

    Example::

        receiver = WebhookReceiver(client)

        @contextlib.asynccontextmanager
        async def lifespan(app):
            async with receiver.running():
                yield

        api = FastAPI(lifespan=lifespan)
        api.mount("/hooks", receiver.app)          # fal: https://you.example/hooks/fal
    """

    def __init__(
        self,
        client: Client | AsyncClient,
        *,
        fal_keys: FalKeys | None = None,
        replicate_secret: ReplicateSecret | str | None = None,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
        max_body_bytes: int = MAX_BODY_BYTES,
        deliveries: DeliveryLog | None = None,
        max_concurrent: int = MAX_CONCURRENT,
        on_result: ResultCallback | None = None,
        callback_deadline_seconds: float = CALLBACK_DEADLINE_SECONDS,
        sweep_every_seconds: float = SWEEP_EVERY_SECONDS,
        busy_retry_seconds: Sequence[float] = BUSY_RETRY_SECONDS,
    ) -> None:
        journal = _client.journal_of(client)
        if journal is None:
            raise ValueError("the webhook receiver finishes journaled jobs: the client needs a journal")
        self.client = client
        self.journal = journal
        self.tolerance_seconds = check_tolerance(tolerance_seconds)
        self.max_body_bytes = max_body_bytes
        if deliveries is None:  # the journal's database, whichever it is: every receiver sharing it sees them
            deliveries = DatabaseDeliveries(journal.url or journal.path)
        self.deliveries: DeliveryLog = deliveries
        self.on_result = on_result
        self.callback_deadline_seconds = callback_deadline_seconds
        self.sweep_every_seconds = sweep_every_seconds
        self.busy_retry_seconds = tuple(busy_retry_seconds)
        self._fal_keys = fal_keys
        self._replicate_secret = (
            ReplicateSecret(replicate_secret) if isinstance(replicate_secret, str) else replicate_secret
        )
        self._sources_lock = threading.Lock()
        self._async = _client.is_async(client)
        self._completions: _Completions = (
            _TaskCompletions(self._acomplete, max_concurrent)
            if self._async
            else _ThreadCompletions(self._complete, max_concurrent)
        )
        self.app: Starlette = self._build_app()

    # -- the app -------------------------------------------------------------------------------------

    @property
    def routes(self) -> list[BaseRoute]:
        """The three routes (``/``, ``/fal``, ``/replicate``, POST), to add to a router of your own."""
        from starlette.routing import Route

        routes: list[BaseRoute] = [
            Route("/", functools.partial(self.handle, vendor=None), methods=["POST"], name="webhooks")
        ]
        for name in VENDORS:
            handler = functools.partial(self.handle, vendor=name)
            routes.append(Route(f"/{name}", handler, methods=["POST"], name=f"webhooks.{name}"))
        return routes

    def _build_app(self) -> Starlette:
        from starlette.applications import Starlette

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with self.running():
                yield

        built = Starlette(routes=self.routes, lifespan=lifespan)
        built.state.webhooks = self
        return built

    async def handle(self, request: Request, vendor: str | None = None) -> Response:
        """Answer one callback (see the module docstring for the answers)."""
        try:
            body = await _read_body(request, self.max_body_bytes)
            event = await self._verify(vendor, request, body)
        except WebhookRefused as refused:
            _log_refusal(refused, vendor)
            return _answer(refused.http_status, error=refused.message)
        return await self._take(event)

    # -- verifying -----------------------------------------------------------------------------------

    def _sources(self) -> tuple[FalKeys | None, ReplicateSecret | None]:
        """The key sources, made on first use from the client (its base URLs, its guarded fetch, its token)."""
        with self._sources_lock:
            if self._fal_keys is None and "fal" in self.client.available:
                self._fal_keys = _client.fal_keys_for(self.client)
            if self._replicate_secret is None and "replicate" in self.client.available:
                self._replicate_secret = _client.replicate_secret_for(self.client)
        return self._fal_keys, self._replicate_secret

    async def _verify(self, vendor: str | None, request: Request, body: bytes) -> WebhookEvent:
        headers = list(request.headers.items())
        try:
            if not self._async:
                event: WebhookEvent = await self._off_loop(self._verify_blocking, vendor, headers, body)
                return event
            fal_keys, secret = self._sources()
            return await averify(
                vendor,
                headers,
                body,
                fal_keys=fal_keys,
                replicate_secret=secret,
                tolerance_seconds=self.tolerance_seconds,
                max_body_bytes=self.max_body_bytes,
            )
        except ValueError as exc:  # no way to verify this vendor's callbacks here (not configured)
            raise SigningKeysUnavailable(str(exc), vendor=vendor) from None

    def _verify_blocking(self, vendor: str | None, headers: list[tuple[str, str]], body: bytes) -> WebhookEvent:
        fal_keys, secret = self._sources()
        return verify(
            vendor,
            headers,
            body,
            fal_keys=fal_keys,
            replicate_secret=secret,
            tolerance_seconds=self.tolerance_seconds,
            max_body_bytes=self.max_body_bytes,
        )

    # -- taking a verified callback ------------------------------------------------------------------

    async def _take(self, event: WebhookEvent) -> Response:
        if not event.terminal:
            return _answer(200, status="ignored", reason="the job is not finished yet")
        record = await self._off_loop(_client.find_job, self.journal, event.vendor, event.vendor_job_id)
        if record is None:
            logger.info("a %s callback names %r, which no journaled job has (yet)", event.vendor, event.vendor_job_id)
            return _answer(404, error="no journaled job has this vendor id")
        if not await self._off_loop(self.deliveries.first, event.vendor, event.delivery_id, record.id):
            logger.info("a %s delivery for job %s came again; acknowledged", event.vendor, record.id)
            return _answer(200, status="duplicate")
        if _ended(record):
            return _answer(200, status="finished")
        self._notify(event, record)
        started = self._completions.start(record.id)
        return _answer(202, status="accepted" if started else "in progress")

    def _notify(self, event: WebhookEvent, record: JobRecord) -> None:
        try:
            _client.dispatch(
                self.client,
                Event(
                    "progress",
                    provider=event.vendor,
                    job_id=record.id,
                    vendor_request_id=event.vendor_job_id,
                    status="completed",
                    message=f"{event.vendor} called back: the job {event.status}",
                    data={"callback": event.status},
                ),
            )
        except Exception:  # an observer must not lose the callback
            logger.exception("an event observer failed on a callback")

    async def _off_loop(self, function: Callable[..., Any], *args: Any) -> Any:
        """Journal reads and blocking verification run on a worker thread (SQLite may wait for a lock)."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(functools.partial(function, *args))

    # -- finishing jobs ------------------------------------------------------------------------------

    def _complete(self, job_id: str) -> None:
        """Finish ``job_id`` with a blocking client (on a worker thread)."""
        for delay in (0.0, *self.busy_retry_seconds):
            time.sleep(delay)
            if _ended(self.journal.job(job_id)):
                return
            try:
                result = _client.finish(self.client, job_id)  # type: ignore[arg-type]
            except JobBusy:
                continue
            except Exception as exc:
                self._failed(job_id, exc)
                return
            self._report(job_id, result)
            return
        logger.info("job %s is still run by another process, which will finish it", job_id)

    async def _acomplete(self, job_id: str) -> None:
        """Finish ``job_id`` with an ``AsyncClient``."""
        import anyio

        for delay in (0.0, *self.busy_retry_seconds):
            await anyio.sleep(delay)
            if _ended(await self._off_loop(self.journal.job, job_id)):
                return
            try:
                result = await _client.await_job(self.client, job_id)  # type: ignore[arg-type]
            except JobBusy:
                continue
            except Exception as exc:
                self._failed(job_id, exc)
                return
            self._report(job_id, result)
            return
        logger.info("job %s is still run by another process, which will finish it", job_id)

    def _failed(self, job_id: str, exc: BaseException) -> None:
        if isinstance(exc, IdeocharError):
            logger.warning("job %s could not be finished after its callback: %s", job_id, exc)
        else:
            logger.exception("job %s could not be finished after its callback", job_id, exc_info=exc)
        self._report(job_id, exc)

    def _report(self, job_id: str, outcome: CharacterResult | BaseException) -> None:
        if self.on_result is None:
            return
        try:
            self.on_result(job_id, outcome)
        except Exception:
            logger.exception("on_result failed for job %s", job_id)

    # -- jobs whose callback never came -----------------------------------------------------------------

    def overdue(self, now: float | None = None) -> list[str]:
        """Open jobs whose callback is overdue: every part sent, and each open attempt at a vendor that
        calls back admitted more than ``callback_deadline_seconds`` ago. (A job with a part never sent is
        left alone: sending it is its owner's decision, not a sweep's.)"""
        cutoff = (time.time() if now is None else now) - self.callback_deadline_seconds
        found = []
        for status in ("running", "unknown"):
            for record in self.journal.jobs(limit=None, status=status):
                waiting = [a for a in record.resumable if a.provider in VENDORS]
                if (
                    waiting
                    and all(a.started_at.timestamp() <= cutoff for a in waiting)
                    and all(p.state != "planned" for p in record.parts)
                ):
                    found.append(record.id)
        return found

    async def sweep(self, now: float | None = None) -> list[str]:
        """Start finishing every overdue job (by polling the vendor, as ``client.wait`` does); their ids."""
        overdue: list[str] = await self._off_loop(self.overdue, now)
        return [job_id for job_id in overdue if self._completions.start(job_id)]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WebhookReceiver]:
        """Sweep for overdue jobs every ``sweep_every_seconds`` while the block runs; on leaving, let the
        completions under way end (up to :data:`DRAIN_SECONDS`; any cut short stays resumable)."""

        async def sweeper() -> None:
            while True:
                await asyncio.sleep(self.sweep_every_seconds)
                try:
                    await self.sweep()
                except Exception:
                    logger.exception("the sweep for overdue callbacks failed")

        task = asyncio.get_running_loop().create_task(sweeper())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.drain(DRAIN_SECONDS)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until no completion is under way (or ``timeout`` passed); True when none is."""
        return await self._completions.drain(timeout)

    @property
    def in_progress(self) -> frozenset[str]:
        """The jobs being finished now."""
        return self._completions.in_progress

    def close(self) -> None:
        """Stop taking completions, wait for those under way, close the delivery store."""
        self._completions.close()
        self.deliveries.close()

    def __repr__(self) -> str:
        return f"WebhookReceiver({self.client!r})"


def app(client: Client | AsyncClient, **options: Any) -> Starlette:
    """The webhook receiver of ``client`` as an ASGI app (``app.state.webhooks`` is the
    :class:`WebhookReceiver`); ``options`` are the receiver's. Mount it in FastAPI or Starlette.

    Example::

        api.mount("/hooks", webhooks.app(client))   # give fal https://you.example/hooks/fal
    """
    return WebhookReceiver(client, **options).app


# -- the completions -----------------------------------------------------------------------------------------


class _Completions:
    """Runs job completions off the request path, one at a time per job."""

    @property
    def in_progress(self) -> frozenset[str]:
        raise NotImplementedError

    def start(self, job_id: str) -> bool:
        """Start finishing ``job_id``; False when it is already being finished here."""
        raise NotImplementedError

    async def drain(self, timeout: float | None) -> bool:
        import anyio

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.in_progress:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await anyio.sleep(0.01)
        return True

    def close(self) -> None:
        pass


class _ThreadCompletions(_Completions):
    """For a blocking ``Client``: a small pool of worker threads."""

    def __init__(self, run: Callable[[str], None], max_concurrent: int) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="ideochar-webhooks")
        self._running: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    @property
    def in_progress(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._running)

    def start(self, job_id: str) -> bool:
        with self._lock:
            if job_id in self._running:
                return False
            future = self._pool.submit(self._run, job_id)
            self._running[job_id] = future
        future.add_done_callback(lambda _: self._ended(job_id))
        return True

    def _ended(self, job_id: str) -> None:
        with self._lock:
            self._running.pop(job_id, None)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _TaskCompletions(_Completions):
    """For an ``AsyncClient``: tasks on the serving event loop, a few at a time."""

    def __init__(self, run: Callable[[str], Awaitable[None]], max_concurrent: int) -> None:
        self._run = run
        self._max = max_concurrent
        self._slots: asyncio.Semaphore | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def in_progress(self) -> frozenset[str]:
        return frozenset(self._tasks)

    def start(self, job_id: str) -> bool:
        if job_id in self._tasks:
            return False
        task = asyncio.get_running_loop().create_task(self._limited(job_id))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        return True

    async def _limited(self, job_id: str) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
        async with self._slots:
            await self._run(job_id)

    def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()


# -- plumbing --------------------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused once it is over ``limit`` (by its declared length, else while it arrives)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise CallbackTooLarge(f"the callback's body is over {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise CallbackTooLarge(f"the callback's body is over {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(code: int, /, **fields: str) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(fields, status_code=code)


def _log_refusal(refused: WebhookRefused, route_vendor: str | None) -> None:
    vendor = refused.vendor or route_vendor or "unknown"
    delivery = f" (delivery {refused.delivery_id!r})" if refused.delivery_id else ""
    level = logging.ERROR if refused.http_status >= 500 else logging.WARNING
    logger.log(
        level, "refused a %s callback%s with HTTP %d: %s", vendor, delivery, refused.http_status, refused.message
    )

"""The router's shared state in Redis: leases, rate windows, breakers and spend, exact across a fleet.

Every admission is one Lua script (:data:`ADMIT`), run atomically by Redis on its own clock (``TIME``):

1. the vendor's **breaker** record: open and cooling down, or half-open with a probe in flight, refuses
   (``ProviderUnavailable``, nothing sent); half-open with no probe makes this attempt the fleet's probe
   (the record keeps its lease id: only the probe's success closes the breaker again, not the success of
   an attempt admitted before it opened);
2. the **budget**: spent plus reserved plus this quote above the cap refuses (``OverBudget``);
3. the **rate window** (a sorted set of admission times) and the **leases** (a sorted set of lease ids
   scored by expiry, with a hash of their images): expired leases are dropped first, so a killed
   worker's slots return within :data:`LEASE_SECONDS`; no room answers how long to wait.

Only when all three allow it does the script take the lease, the window entry, the probe and the
reservation, together. Releasing (:data:`RELEASE`) frees the lease, settles the reservation (the cost of a
served attempt, nothing for one billed "no", the whole quote otherwise) and records the outcome in the
breaker, again in one script. So the cap is never passed, whatever workers race, and no counter drifts:
there is nothing to flush, every count is the script's. Money is counted in micro-dollars (integers; a
reservation is rounded up).

Why Lua and not a library: ``limits`` keeps correct windows in Redis, but a window hit it takes cannot be
taken together with a slot, a probe and a reservation, and a hit for a request the budget then refuses
counts a request that was never sent. No library reserves a budget atomically either.

A live lease is renewed by a background thread (every third of its life) while its attempt runs. The
router's own breaker is a view (:class:`MirrorBreakerStore`) refreshed by each answer, its times moved
onto this machine's clock: it skips a vendor it saw open without asking; the scripts alone decide and
record (the router's own ``record`` leaves the view alone, so nothing is counted twice).

**When Redis cannot be reached** the admission fails closed: :class:`~ideochar.errors.StateUnavailable`,
nothing sent. With ``fallback="local"`` the limits and the breaker fall back to this process's own (a
fleet of N may then send N times a vendor's limit) and the event is logged; a budget never falls back.
A release that cannot reach Redis is logged: its lease lapses, its reservation stays counted as spent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from ideochar.breaker import BreakerRecord, CircuitBreaker
from ideochar.errors import InvalidRequest, OverBudget, ProviderUnavailable, StateUnavailable
from ideochar.limits import (
    Acquire,
    AnyioLimiter,
    Budget,
    Ended,
    Permit,
    ProviderLimits,
    SpendLedger,
    ThreadLimiter,
)

__all__ = [
    "ADMIT",
    "LEASE_SECONDS",
    "RELEASE",
    "MirrorBreakerStore",
    "RedisAsyncLimiter",
    "RedisLimiter",
    "RedisState",
    "ScriptAnswer",
]

logger = logging.getLogger("ideochar.state")

INSTALL_HINT = "pip install 'ideochar[redis]'"
#: How long a lease lives unless renewed: a killed worker's slots are free again within this.
LEASE_SECONDS = 10.0
#: How long the router's view of a shared breaker record is trusted before the script is asked again.
MIRROR_SECONDS = 1.0
#: The first and the longest pause between two admissions tried while a vendor has no room.
POLL_SECONDS = (0.005, 0.05)
#: Money in the scripts: integers of this many USD (a micro-dollar).
_UNIT = Decimal("0.000001")

ADMIT = """
-- KEYS: 1 leases (zset id -> expiry ms), 2 lease weights (hash id -> images), 3 rate window (zset),
--       4 breaker (hash failures, opened, probe), 5 budget (hash spent, reserved)
-- ARGV: 1 lease id, 2 images, 3 capacity (-1: none), 4 per window (-1: none), 5 window ms,
--       6 lease ms, 7 quote (micro-USD, -1: no budget), 8 cap (micro-USD), 9 cooldown ms, 10 check breaker (1/0)
-- Returns {status, wait ms or spent, failures, opened ms, probe ms, now ms, 1 if this is the probe}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local images, capacity, per_window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local window, lease_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local quote, cap, cooldown = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local failures = tonumber(redis.call('HGET', KEYS[4], 'failures') or '0')
local opened = tonumber(redis.call('HGET', KEYS[4], 'opened') or '-1')
local probe = tonumber(redis.call('HGET', KEYS[4], 'probe') or '-1')
local probing = 0
if ARGV[10] == '1' and opened >= 0 then
  if now - opened < cooldown then
    return {'open', opened + cooldown - now, failures, opened, probe, now, 0}
  end
  if probe >= 0 and now < probe then
    return {'probe', probe - now, failures, opened, probe, now, 0}
  end
  probing = 1
end
if quote >= 0 then
  local spent = tonumber(redis.call('HGET', KEYS[5], 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[5], 'reserved') or '0')
  if spent + reserved + quote > cap then
    return {'budget', spent + reserved, failures, opened, probe, now, 0}
  end
end
local wait = 0
if per_window >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  if redis.call('ZCARD', KEYS[3]) >= per_window then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    wait = math.max(1, tonumber(oldest[2]) + window - now)
  end
end
if capacity >= 0 and wait == 0 then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    redis.call('HDEL', KEYS[2], unpack(expired))
  end
  local used = 0
  for _, n in ipairs(redis.call('HVALS', KEYS[2])) do used = used + tonumber(n) end
  if used + images > capacity then wait = -1 end
end
if wait ~= 0 then
  return {'wait', wait, failures, opened, probe, now, 0}
end
if capacity >= 0 then
  redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], images)
end
if per_window >= 0 then
  redis.call('ZADD', KEYS[3], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[3], window + 1000)
end
if quote >= 0 then
  redis.call('HINCRBY', KEYS[5], 'reserved', quote)
end
if probing == 1 then
  probe = now + math.max(cooldown, 1)
  redis.call('HSET', KEYS[4], 'probe', probe, 'probe_lease', ARGV[1])
end
return {'ok', 0, failures, opened, probe, now, probing}
"""

RELEASE = """
-- KEYS: 1 leases, 2 lease weights, 3 breaker, 4 budget
-- ARGV: 1 lease id, 2 reserved (micro-USD), 3 spent (micro-USD), 4 outcome ('fault', 'success', ''),
--       5 failure threshold
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local reserved, spent = tonumber(ARGV[2]), tonumber(ARGV[3])
if reserved > 0 or spent > 0 then
  redis.call('HINCRBY', KEYS[4], 'reserved', -reserved)
  redis.call('HINCRBY', KEYS[4], 'spent', spent)
end
if ARGV[4] == 'success' then
  -- Open: only the fleet's probe closes it; an attempt admitted before it opened says nothing of now.
  if not redis.call('HGET', KEYS[3], 'opened') or redis.call('HGET', KEYS[3], 'probe_lease') == ARGV[1] then
    redis.call('DEL', KEYS[3])
  end
elseif ARGV[4] == 'fault' then
  local failures = redis.call('HINCRBY', KEYS[3], 'failures', 1)
  local opened = redis.call('HGET', KEYS[3], 'opened')
  if opened or failures >= tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[3], 'opened', now)
    redis.call('HDEL', KEYS[3], 'probe', 'probe_lease')
  end
end
local failures = tonumber(redis.call('HGET', KEYS[3], 'failures') or '0')
local opened = tonumber(redis.call('HGET', KEYS[3], 'opened') or '-1')
local probe = tonumber(redis.call('HGET', KEYS[3], 'probe') or '-1')
return {'released', 0, failures, opened, probe, now, 0}
"""

RENEW = """
-- KEYS: leases of one vendor; ARGV: lease ms, then lease ids (only live ones are renewed)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1
"""

try:
    import redis.exceptions as _redis_errors

    _CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
        OSError,
        _redis_errors.ConnectionError,
        _redis_errors.TimeoutError,
    )
except ImportError:  # RedisState says what to install
    _CONNECTION_ERRORS = (OSError,)


def _micro(amount: Decimal) -> int:
    return int((amount / _UNIT).to_integral_value(rounding=ROUND_CEILING))


def _usd(micro: int | str | bytes | None) -> Decimal:
    return Decimal(int(micro or 0)) * _UNIT


@dataclass(frozen=True)
class ScriptAnswer:
    """A script's reply. ``record`` is the breaker record on this machine's clock (``time.time``): Redis
    answered with its own, and the two may differ by more than a cooldown."""

    status: str
    wait_ms: int
    record: BreakerRecord
    at: float
    """When Redis ran the script, on Redis's clock (seconds): the moment an admission was decided."""
    opened: float | None
    """When the breaker last opened, on Redis's clock (None: closed)."""
    probe: bool
    """This admission is the fleet's probe."""

    @classmethod
    def of(cls, reply: list[Any], clock: Callable[[], float] = time.time) -> ScriptAnswer:
        status = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        failures, opened, probe, now = (int(v) for v in reply[2:6])
        ahead = clock() - now / 1000  # add to a Redis time to read it on our clock

        def local(ms: int) -> float | None:
            return None if ms < 0 else ms / 1000 + ahead

        record = BreakerRecord(failures=failures, opened_at=local(opened), probe_until=local(probe))
        probing = len(reply) > 6 and int(reply[6]) == 1
        return cls(status, int(reply[1]), record, now / 1000, None if opened < 0 else opened / 1000, probing)


class MirrorBreakerStore:
    """The router's view of the shared breaker records (:class:`~ideochar.breaker.BreakerStore`).

    Each admission and release answer overwrites a vendor's record (:meth:`observe`); the router's own
    updates (a probe it is about to ask for) apply locally until the next answer, but not its outcomes:
    the release script recorded them already. A record older than :data:`MIRROR_SECONDS` is forgotten
    (read as closed), so the router asks the script again rather than trust what it saw long ago.
    """

    records_outcomes = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._records: dict[str, tuple[BreakerRecord, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def load(self, provider: str) -> BreakerRecord:
        with self._lock:
            return self._fresh(provider)

    def _fresh(self, provider: str) -> BreakerRecord:
        found = self._records.get(provider)
        if found is None or self._clock() - found[1] > MIRROR_SECONDS:
            return BreakerRecord()
        return found[0]

    def update(self, provider: str, change: Callable[[BreakerRecord], BreakerRecord]) -> BreakerRecord:
        with self._lock:
            record = change(self._fresh(provider))
            self._records[provider] = (record, self._clock())
            return record

    def observe(self, provider: str, record: BreakerRecord) -> None:
        with self._lock:
            self._records[provider] = (record, self._clock())


@dataclass
class _Keys:
    leases: str
    weights: str
    rate: str
    breaker: str
    budget: str


class RedisState:
    """Limits, breakers and spend shared through one Redis (module docstring).

    ``prefix`` namespaces every key (several deployments on one Redis); ``lease_seconds`` is how long a
    killed worker's slots stay taken. The clients connect lazily; one ``RedisState`` may serve a
    ``Client`` and an ``AsyncClient`` (one event loop) at once.
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        fallback: str = "fail_closed",
        prefix: str = "ideochar",
        lease_seconds: float = LEASE_SECONDS,
        socket_timeout_seconds: float = 5.0,
        name: str | None = None,
    ) -> None:
        try:
            import redis
            import redis.asyncio
        except ImportError:
            raise InvalidRequest.for_field(
                "state", f"a Redis state needs the redis package, which is not installed: {INSTALL_HINT}"
            ) from None
        self.url = url
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        """Who holds a lease: each lease id starts with it (``leases()`` shows which worker holds which)."""
        self.fallback = fallback
        self.prefix = prefix
        self.lease_seconds = lease_seconds
        self._timeout = socket_timeout_seconds
        self._redis = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_seconds, socket_connect_timeout=socket_timeout_seconds
        )
        self._admit = self._redis.register_script(ADMIT)
        self._release = self._redis.register_script(RELEASE)
        self._renew = self._redis.register_script(RENEW)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._pending: set[asyncio.Task[None]] = set()
        self._live: dict[str, set[str]] = {}
        """Vendor -> ids of the leases this process holds (the renewer's work)."""
        self._live_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()
        self.mirror = MirrorBreakerStore()

    # -- keys -------------------------------------------------------------------------------------------

    def keys(self, provider: str, budget: Budget | None = None) -> _Keys:
        """The keys of one vendor's state (and of a budget); ``{provider}`` is a Redis Cluster hash tag."""
        base = f"{self.prefix}:{{{provider}}}"
        budget_key = f"{base}:budget:{budget.name}" if budget is not None else f"{base}:budget:-"
        return _Keys(f"{base}:leases", f"{base}:lease-images", f"{base}:rate", f"{base}:breaker", budget_key)

    def budget_key(self, budget: Budget) -> str:
        return f"{self.prefix}:budget:{budget.name}"

    # -- the backend ------------------------------------------------------------------------------------

    def breaker(self, failure_threshold: int, cooldown_seconds: float) -> CircuitBreaker:
        return CircuitBreaker(failure_threshold, cooldown_seconds, store=self.mirror, clock=time.time)

    def limiter(
        self,
        limits: Mapping[str, ProviderLimits],
        *,
        providers: Collection[str],
        budget: Budget | None,
        breaker: CircuitBreaker,
    ) -> RedisLimiter:
        return RedisLimiter(self, limits, providers=providers, budget=budget, breaker=breaker)

    def async_limiter(
        self,
        limits: Mapping[str, ProviderLimits],
        *,
        providers: Collection[str],
        budget: Budget | None,
        breaker: CircuitBreaker,
    ) -> RedisAsyncLimiter:
        return RedisAsyncLimiter(self, limits, providers=providers, budget=budget, breaker=breaker)

    def spent(self, budget: Budget) -> tuple[Decimal, Decimal]:
        values: Any = self._redis.hmget(self.budget_key(budget), ["spent", "reserved"])
        return _usd(values[0]), _usd(values[1])

    def leases(self, provider: str) -> dict[str, int]:
        """The live leases of one vendor (id -> images), as the fleet holds them now."""
        keys = self.keys(provider)
        now_ms = int(time.time() * 1000)
        members: Any = self._redis.zrangebyscore(keys.leases, now_ms, "+inf")
        live = {m.decode() for m in members}
        weights: Any = self._redis.hgetall(keys.weights)
        return {k.decode(): int(v) for k, v in weights.items() if k.decode() in live}

    def reset(self) -> None:
        """Forget every key under the prefix (tests, a new run)."""
        for key in self._redis.scan_iter(f"{self.prefix}:*"):
            self._redis.delete(key)

    def close(self) -> None:
        self._closed.set()
        self._redis.close()

    async def aclose(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        loop = asyncio.get_running_loop()
        client = self._async.pop(loop, None)
        if client is not None:
            await client.aclose()
        self.close()

    def __repr__(self) -> str:
        from ideochar._database import shown_url

        return f"RedisState({shown_url(self.url)!r})"

    # -- the script's arguments ---------------------------------------------------------------------------

    def admit_args(
        self, step: Acquire, limits: ProviderLimits | None, budget: Budget | None, breaker: CircuitBreaker, lease: str
    ) -> tuple[list[str], list[Any]]:
        keys = self.keys(step.provider)
        capacity = limits.max_images_in_flight if limits is not None else None
        images = min(step.images, capacity) if capacity else 0
        rate = limits.requests_per_minute if limits is not None else None
        window_ms = int((limits.window_seconds if limits is not None else 60.0) * 1000)
        if budget is not None and step.quote_usd is None:
            raise OverBudget(
                f"{step.provider} has no price to reserve against the budget {budget.name!r}; nothing was sent"
            )
        quote = _micro(step.quote_usd) if budget is not None and step.quote_usd is not None else -1
        cap = _micro(budget.cap_usd) if budget is not None else 0
        argv = [
            lease,
            images,
            capacity if capacity else -1,
            rate if rate else -1,
            window_ms,
            int(self.lease_seconds * 1000),
            quote,
            cap,
            int(breaker.cooldown_seconds * 1000),
            1,
        ]
        budget_key = self.budget_key(budget) if budget is not None else keys.budget
        return [keys.leases, keys.weights, keys.rate, keys.breaker, budget_key], argv

    def release_args(
        self, provider: str, lease: str, reserved: int, ended: Ended | None, budget: Budget | None, threshold: int
    ) -> tuple[list[str], list[Any]]:
        keys = self.keys(provider)
        # Interrupted, or billed at no known cost: the whole reservation stays spent.
        spent = reserved if ended is None or ended.spent_usd is None else _micro(ended.spent_usd)
        outcome = "" if ended is None else ("fault" if ended.fault else "success")
        budget_key = self.budget_key(budget) if budget is not None else keys.budget
        return [keys.leases, keys.weights, keys.breaker, budget_key], [lease, reserved, spent, outcome, threshold]

    def observe(self, provider: str, lease: str, answer: ScriptAnswer) -> None:
        """Every script's answer passes here (admissions, refusals, releases of ``lease``): the router's view
        learns the breaker record. A subclass may watch them too (the fleet's test records when each
        admission was decided, on Redis's clock)."""
        self.mirror.observe(provider, answer.record)

    def answer(self, provider: str, step: Acquire, reply: list[Any], budget: Budget | None, lease: str) -> ScriptAnswer:
        """Read an admission's reply (:meth:`observe`); a refusal becomes its error."""
        answer = ScriptAnswer.of(reply)
        self.observe(provider, lease, answer)
        if answer.status in ("open", "probe"):
            why = "open" if answer.status == "open" else "half-open: another worker's probe is in flight"
            raise ProviderUnavailable(
                f"{provider}'s circuit is {why} for the whole fleet (retry in {answer.wait_ms / 1000:.1f}s); "
                "nothing was sent",
                provider=provider,
                sent=False,
            )
        if answer.status == "budget" and budget is not None:
            raise OverBudget(
                f"${step.quote_usd} more would pass the fleet's budget {budget.name!r} of ${budget.cap_usd} "
                f"(${_usd(answer.wait_ms)} spent or reserved); nothing was sent"
            )
        return answer

    # -- leases this process holds ----------------------------------------------------------------------

    def hold(self, provider: str, lease: str) -> None:
        with self._live_lock:
            self._live.setdefault(provider, set()).add(lease)
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_forever, name="ideochar-state-leases", daemon=True)
                self._renewer.start()

    def drop(self, provider: str, lease: str) -> None:
        with self._live_lock:
            self._live.get(provider, set()).discard(lease)

    def _renew_forever(self) -> None:
        every = self.lease_seconds / 3
        while not self._closed.wait(every):
            with self._live_lock:
                held = {p: sorted(ids) for p, ids in self._live.items() if ids}
            for provider, ids in held.items():
                try:
                    self._renew(keys=[self.keys(provider).leases], args=[int(self.lease_seconds * 1000), *ids])
                except Exception:  # the lease lapses; the attempt goes on (its vendor admitted it)
                    logger.warning("could not renew %d lease(s) at %s", len(ids), provider, exc_info=True)

    def async_client(self) -> Any:
        """This event loop's asyncio client (redis-py's asyncio API; one per loop)."""
        import redis.asyncio

        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
            self._async[loop] = client
        return client

    def track(self, task: asyncio.Task[None]) -> None:
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _unreachable(error: BaseException) -> StateUnavailable:
    unavailable = StateUnavailable(
        f"the shared state cannot be reached ({type(error).__name__}: {error}); nothing was sent. "
        "Set state_fallback = 'local' to use this process's own limits meanwhile."
    )
    unavailable.__cause__ = error
    return unavailable


class _Shared:
    """What the two limiters share: the state, the limits, the budget and the breaker settings."""

    def __init__(
        self,
        state: RedisState,
        limits: Mapping[str, ProviderLimits],
        *,
        providers: Collection[str],
        budget: Budget | None,
        breaker: CircuitBreaker,
    ) -> None:
        self.state = state
        self.limits = {name: lim for name, lim in limits.items() if lim.active}
        self.budget = budget
        self.breaker = breaker
        # Every provider goes through the script: the breaker is shared even where nothing else is.
        self._names = frozenset(providers) | frozenset(self.limits)

    @property
    def providers(self) -> frozenset[str]:
        return self._names

    def _fell_back(self, error: BaseException) -> bool:
        if self.state.fallback != "local" or self.budget is not None:
            return False
        logger.warning("the shared state cannot be reached (%s); using this process's own limits", error)
        return True

    def _release_args(self, step: Acquire, lease: str, reserved: int, ended: Ended | None) -> Any:
        return self.state.release_args(
            step.provider, lease, reserved, ended, self.budget, self.breaker.failure_threshold
        )

    def _observe(self, provider: str, lease: str, reply: list[Any]) -> None:
        self.state.observe(provider, lease, ScriptAnswer.of(reply))


def _pause(attempt: int, hint_ms: int) -> float:
    low, high = POLL_SECONDS
    pause = float(min(high, low * (2 ** min(attempt, 6))))
    return min(pause, hint_ms / 1000) if hint_ms > 0 else pause


def _no_slot(step: Acquire) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"no free slot at {step.provider} in the fleet before the job's deadline; nothing was sent",
        provider=step.provider,
        sent=False,
    )


class RedisLimiter(_Shared):
    """The blocking client's limiter on Redis (redis-py's blocking client)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = ThreadLimiter(self.limits)

    def acquire(self, step: Acquire) -> Permit:
        lease = f"{self.state.name}:{uuid.uuid4().hex[:12]}"
        keys, argv = self.state.admit_args(step, self.limits.get(step.provider), self.budget, self.breaker, lease)
        tries = 0
        while True:
            try:
                reply = self.state._admit(keys=keys, args=argv)
            except _CONNECTION_ERRORS as exc:
                if self._fell_back(exc):
                    return self._local.acquire(step)
                raise _unreachable(exc) from exc
            answer = self.state.answer(step.provider, step, reply, self.budget, lease)
            if answer.status == "ok":
                break
            if step.deadline is not None and time.monotonic() >= step.deadline:
                raise _no_slot(step)
            tries += 1
            pause = _pause(tries, answer.wait_ms)
            if step.deadline is not None:
                pause = max(0.0, min(pause, step.deadline - time.monotonic()))
            time.sleep(pause)
        reserved = int(argv[6]) if int(argv[6]) > 0 else 0
        if int(argv[2]) > 0:
            self.state.hold(step.provider, lease)

        def release(ended: Ended | None) -> None:
            self.state.drop(step.provider, lease)
            release_keys, release_argv = self._release_args(step, lease, reserved, ended)
            try:
                self._observe(step.provider, lease, self.state._release(keys=release_keys, args=release_argv))
            except Exception:
                logger.warning("could not release a lease at %s; it lapses on its own", step.provider, exc_info=True)

        return Permit(release)


class RedisAsyncLimiter(_Shared):
    """The async client's limiter on Redis (redis-py's asyncio client, on the caller's event loop).

    Releases run as tasks on that loop (``Permit.release`` is synchronous: it is called where the router's
    attempt ends); :meth:`RedisState.aclose` waits for the ones still running."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = AnyioLimiter(self.limits)
        self._scripts: dict[int, tuple[Any, Any]] = {}

    def _loop_scripts(self) -> tuple[Any, Any]:
        client = self.state.async_client()
        found = self._scripts.get(id(client))
        if found is None:
            found = self._scripts[id(client)] = (client.register_script(ADMIT), client.register_script(RELEASE))
        return found

    async def acquire(self, step: Acquire) -> Permit:
        admit, release_script = self._loop_scripts()
        lease = f"{self.state.name}:{uuid.uuid4().hex[:12]}"
        keys, argv = self.state.admit_args(step, self.limits.get(step.provider), self.budget, self.breaker, lease)
        tries = 0
        while True:
            try:
                reply = await admit(keys=keys, args=argv)
            except _CONNECTION_ERRORS as exc:
                if self._fell_back(exc):
                    return await self._local.acquire(step)
                raise _unreachable(exc) from exc
            answer = self.state.answer(step.provider, step, reply, self.budget, lease)
            if answer.status == "ok":
                break
            if step.deadline is not None and time.monotonic() >= step.deadline:
                raise _no_slot(step)
            tries += 1
            pause = _pause(tries, answer.wait_ms)
            if step.deadline is not None:
                pause = max(0.0, min(pause, step.deadline - time.monotonic()))
            await asyncio.sleep(pause)
        reserved = int(argv[6]) if int(argv[6]) > 0 else 0
        if int(argv[2]) > 0:
            self.state.hold(step.provider, lease)

        async def send(ended: Ended | None) -> None:
            release_keys, release_argv = self._release_args(step, lease, reserved, ended)
            try:
                self._observe(step.provider, lease, await release_script(keys=release_keys, args=release_argv))
            except Exception:
                logger.warning("could not release a lease at %s; it lapses on its own", step.provider, exc_info=True)

        def release(ended: Ended | None) -> None:
            self.state.drop(step.provider, lease)
            self.state.track(asyncio.get_running_loop().create_task(send(ended)))

        return Permit(release)


# SpendLedger is the in-process twin of the budget hash; named here for readers comparing the two.
_ = SpendLedger

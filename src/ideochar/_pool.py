"""Many small connection pools instead of one large one, so a thousand jobs in flight stay cheap.

httpcore's pool (under httpx 0.28) walks every connection it holds each time a request is queued or
released, and its keep-alive check counts all connections for each idle one: the cost of a request
grows with the connections open, then with their square. A client holding 1,000 open status streams
spent most of its CPU there (``docs/benchmarks.md``, figure 4, with the profile; upstream:
encode/httpcore#1035, unmerged). It also closes an idle connection whenever the pool holds more
connections than ``max_keepalive_connections``, busy ones included, so under load nothing was reused.

Pools of two connections each keep both walks a few steps long. A request goes to the pool with the
fewest requests in flight, the lowest index on a tie: a client used one request at a time uses pool 0
alone and reuses its warm connection; only a crowd spreads out. Pools are made on first use.

HTTP itself stays httpx's: each pool is a plain :class:`httpx.AsyncHTTPTransport` (or
:class:`httpx.HTTPTransport` for the blocking client, whose threads share the in-flight counts under a
lock), and errors, timeouts and streaming behave exactly as there.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

import httpx

__all__ = ["CONNECTIONS_PER_SHARD", "ShardedAsyncTransport", "ShardedTransport"]

#: Connections per pool. Measured in figure 4's setup (1,000 jobs, 1,024 connections): 64 per pool
#: took 10.7 s of client CPU, 8 per pool 9.7 s, 4 per pool 7.7 s, 2 per pool 6.8 s, 1 per pool 6.9 s.
CONNECTIONS_PER_SHARD = 2

_T = TypeVar("_T", httpx.AsyncHTTPTransport, httpx.HTTPTransport)


class _Shards(Generic[_T]):
    """The pools, made on first use, and the requests in flight on each."""

    def __init__(
        self,
        make: Callable[..., _T],
        limits: httpx.Limits,
        per_shard: int,
        verify: ssl.SSLContext | bool,
        trust_env: bool,
    ) -> None:
        if per_shard < 1:
            raise ValueError("per_shard must be at least 1")
        total = limits.max_connections
        count = 1 if total is None else max(1, -(-total // per_shard))
        # Each pool keeps all its connections alive when idle (up to keepalive_expiry): it never holds more
        # than a couple, and closing one to respect a smaller total would undo the reuse.
        self._limits = httpx.Limits(
            max_connections=None if total is None else per_shard,
            max_keepalive_connections=None if total is None else per_shard,
            keepalive_expiry=limits.keepalive_expiry,
        )
        self._make: Callable[..., _T] = make
        self._verify, self._trust_env = verify, trust_env
        self._context: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None
        self.pools: list[_T | None] = [None] * count
        self.counts = [0] * count
        self._lock = threading.Lock()

    def take(self) -> tuple[int, _T]:
        """The least busy pool (the first on a tie), counted as one request busier."""
        with self._lock:
            counts = self.counts
            index = counts.index(min(counts))
            counts[index] += 1
            pool = self.pools[index]
            if pool is None:
                if self._context is None:  # loading the CA store is the costly part: once, for all pools
                    self._context = httpx.create_ssl_context(verify=self._verify, trust_env=self._trust_env)
                pool = self.pools[index] = self._make(verify=self._context, limits=self._limits)
            return index, pool

    def give_back(self, index: int) -> None:
        with self._lock:
            self.counts[index] -= 1


class _Sharded(Generic[_T]):
    """What both transports share: ``limits.max_connections`` is the total, split into pools of
    :data:`CONNECTIONS_PER_SHARD`."""

    _pool_type: Callable[..., _T]

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        per_shard: int = CONNECTIONS_PER_SHARD,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = True,
    ) -> None:
        self._shards: _Shards[_T] = _Shards(type(self)._pool_type, limits, per_shard, verify, trust_env)

    @property
    def in_flight(self) -> tuple[int, ...]:
        """Requests sent and not yet closed, per pool (for tests and diagnostics)."""
        return tuple(self._shards.counts)


class ShardedAsyncTransport(_Sharded[httpx.AsyncHTTPTransport], httpx.AsyncBaseTransport):
    """The async client's transport: many :class:`httpx.AsyncHTTPTransport` pools."""

    _pool_type = httpx.AsyncHTTPTransport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index, pool = self._shards.take()
        try:
            response = await pool.handle_async_request(request)
        except BaseException:
            self._shards.give_back(index)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CountedAsync(response.stream, self._shards, index)
        return response

    async def aclose(self) -> None:
        for pool in self._shards.pools:
            if pool is not None:
                await pool.aclose()


class ShardedTransport(_Sharded[httpx.HTTPTransport], httpx.BaseTransport):
    """The blocking twin of :class:`ShardedAsyncTransport`, for a client shared by many threads."""

    _pool_type = httpx.HTTPTransport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        index, pool = self._shards.take()
        try:
            response = pool.handle_request(request)
        except BaseException:
            self._shards.give_back(index)
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Counted(response.stream, self._shards, index)
        return response

    def close(self) -> None:
        for pool in self._shards.pools:
            if pool is not None:
                pool.close()


class _CountedAsync(httpx.AsyncByteStream):
    """The pool's body stream, which gives the slot back once, when closed."""

    __slots__ = ("_closed", "_index", "_shards", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, shards: _Shards[httpx.AsyncHTTPTransport], index: int) -> None:
        self._stream, self._shards, self._index, self._closed = stream, shards, index, False

    def __aiter__(self) -> AsyncIterator[bytes]:  # the pool's own iterator: no generator of ours to finalise
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._shards.give_back(self._index)
        await self._stream.aclose()


class _Counted(httpx.SyncByteStream):
    """The blocking pool's body stream, which gives the slot back once, when closed."""

    __slots__ = ("_closed", "_index", "_shards", "_stream")

    def __init__(self, stream: httpx.SyncByteStream, shards: _Shards[httpx.HTTPTransport], index: int) -> None:
        self._stream, self._shards, self._index, self._closed = stream, shards, index, False

    def __iter__(self) -> Iterator[bytes]:
        return self._stream.__iter__()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._shards.give_back(self._index)
        self._stream.close()

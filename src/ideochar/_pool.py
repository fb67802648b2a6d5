"""Many small connection pools instead of one large one, so a thousand jobs in flight stay cheap.

httpcore's pool (under httpx 0.28) walks every connection it holds each time a request is queued or
released, and its keep-alive check counts all connections for each idle one: the cost of a request
grows with the connections open, then with their square. A client holding 1,000 fal status streams
spent most of its CPU there (``docs/benchmarks.md``, figure 4, with the profile; upstream:
encode/httpcore#1035, unmerged). It also closes an idle connection whenever the pool holds more
connections than ``max_keepalive_connections``, busy ones included, so under load nothing was reused.

Pools of two connections each keep both walks a few steps long. A request goes to the pool with the
fewest requests in flight, the lowest index on a tie: a client used one request at a time uses pool 0
alone and reuses its warm connection; only a crowd spreads out. Pools are made on first use.

HTTP itself stays httpx's: each pool is a plain :class:`httpx.AsyncHTTPTransport`, and errors,
timeouts and streaming behave exactly as there.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx

__all__ = ["CONNECTIONS_PER_SHARD", "ShardedAsyncTransport"]

#: Connections per pool. Measured in figure 4's setup (1,000 jobs, 1,024 connections): 64 per pool
#: took 10.7 s of client CPU, 8 per pool 9.7 s, 4 per pool 7.7 s, 2 per pool 6.8 s, 1 per pool 6.9 s.
CONNECTIONS_PER_SHARD = 2


class ShardedAsyncTransport(httpx.AsyncBaseTransport):
    """``limits.max_connections`` is the total, split into pools of :data:`CONNECTIONS_PER_SHARD`.

    Each pool keeps all its connections alive when idle (up to ``keepalive_expiry``): a pool never
    holds more than a couple, and closing one to respect a smaller total would undo the reuse.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        per_shard: int = CONNECTIONS_PER_SHARD,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = True,
    ) -> None:
        if per_shard < 1:
            raise ValueError("per_shard must be at least 1")
        total = limits.max_connections
        shards = 1 if total is None else max(1, -(-total // per_shard))
        self._limits = httpx.Limits(
            max_connections=None if total is None else per_shard,
            max_keepalive_connections=None if total is None else per_shard,
            keepalive_expiry=limits.keepalive_expiry,
        )
        self._verify = verify
        self._trust_env = trust_env
        self._context: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None
        self._shards: list[httpx.AsyncHTTPTransport | None] = [None] * shards
        self._in_flight = [0] * shards

    @property
    def in_flight(self) -> tuple[int, ...]:
        """Requests sent and not yet closed, per pool (for tests and diagnostics)."""
        return tuple(self._in_flight)

    def _shard(self, index: int) -> httpx.AsyncHTTPTransport:
        shard = self._shards[index]
        if shard is None:
            if self._context is None:  # loading the CA store is the costly part: once, for all pools
                self._context = httpx.create_ssl_context(verify=self._verify, trust_env=self._trust_env)
            shard = self._shards[index] = httpx.AsyncHTTPTransport(verify=self._context, limits=self._limits)
        return shard

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        counts = self._in_flight
        index = counts.index(min(counts))
        counts[index] += 1
        try:
            response = await self._shard(index).handle_async_request(request)
        except BaseException:
            counts[index] -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Counted(response.stream, counts, index)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            if shard is not None:
                await shard.aclose()


class _Counted(httpx.AsyncByteStream):
    """The pool's body stream, which gives the slot back once, when closed."""

    __slots__ = ("_closed", "_counts", "_index", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, counts: list[int], index: int) -> None:
        self._stream, self._counts, self._index, self._closed = stream, counts, index, False

    def __aiter__(self) -> AsyncIterator[bytes]:  # the pool's own iterator: no generator of ours to finalise
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._counts[self._index] -= 1
        await self._stream.aclose()

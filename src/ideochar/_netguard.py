"""Fetching a URL on a user's behalf without reaching the machines behind the user.

Some URLs ideochar fetches itself: a caller's image input that a vendor needs as bytes, and the images a
vendor's answer points at. Neither is trusted (``docs/security.md``): a caller of a server app is that
app's user, and a vendor's answer may name any host. Fetched naively, such a URL reaches the cloud's
metadata service (``169.254.169.254``), the host's loopback, the office network, or anything a redirect
points to, and the answer travels on to the vendor or back to the user.

**The rule.** Every connection of such a fetch resolves its host once, refuses it if *any* answer is an
address that is not publicly routable (:func:`refusal`: loopback, private, link-local, shared, reserved,
unspecified, broadcast, documentation, benchmarking, multicast, and IPv6 forms that embed such an IPv4
address), and connects to the very address it checked, so a second lookup cannot switch it (DNS
rebinding). The check is made where connections are opened (a guarded httpcore network backend), so
every redirect hop, every retry and every spelling of a host (``2130706433``, ``0177.0.0.1``,
``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]``) meets it: what is checked is the address the system
would connect to, never the text of the URL. TLS still verifies the certificate for, and sends SNI
with, the URL's host name (httpcore's ``start_tls`` takes ``server_hostname`` from the request's
origin, not from the address connected to). Proxies from the environment are not used: a proxy would
resolve the host where it cannot be checked.

**What is not guarded.** A URL on the origin (scheme, host, port) of a base URL the client sends its
vendor calls to (a vendor's default, the emulator's, or one the caller configured) belongs to the
caller's configuration: it goes through the vendor client, wherever its host points. That keeps the
emulator on loopback (and in-process, ``http://emulator.invalid``) and a vendor behind the caller's
own proxy working. ``allow_private_urls=True`` lifts the address check for everything else (an
internal CDN); hosts are still resolved once and pinned.

**Time.** A fetch is bounded on its own, whatever the job's deadline: each read by
:data:`~ideochar._constants.FETCH_READ_TIMEOUT_SECONDS`, the whole answer by
:data:`~ideochar._constants.FETCH_TIMEOUT_SECONDS` (a server trickling a byte at a time satisfies every
read).

Every refusal is a :class:`FetchRefused`, found on the ``__cause__`` chain of the error a flow sees;
the messages users see are written in :mod:`ideochar.exchange` and never carry what was learned here
(a status, a closed port, a resolved address): a caller must not be able to map a network through them.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import httpcore
import httpx

from ideochar._constants import CONNECT_TIMEOUT_SECONDS, FETCH_READ_TIMEOUT_SECONDS, FETCH_TIMEOUT_SECONDS
from ideochar._secrets import redact_url

__all__ = [
    "AddressRefused",
    "AsyncGuardedBackend",
    "AsyncGuardedTransport",
    "AsyncResolver",
    "FetchFailed",
    "FetchRefused",
    "GuardedBackend",
    "GuardedTransport",
    "Origin",
    "Resolver",
    "async_fetch_client",
    "async_system_resolver",
    "display_url",
    "fetch_client",
    "origin_of",
    "refusal",
    "refused_by_guard",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``: how a guarded backend resolves a name. Tests pass a stub.
Resolver = Callable[[str, int], Sequence[str]]
AsyncResolver = Callable[[str, int], Awaitable[Sequence[str]]]

# -- the address policy --------------------------------------------------------------------------------
# From the IANA special-purpose address registries (RFC 6890 and updates), written out rather than taken
# from ``ipaddress.is_global``, whose tables changed between Python releases.

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

_REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified ('this network')"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "shared (carrier-grade NAT)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local (cloud metadata)"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved (6to4 relay)"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved (and broadcast)"),
)

_MASK32 = 0xFFFFFFFF
# IPv6 forms that carry an IPv4 address, which decides: (network, name, the IPv4 address inside).
_EMBEDDING_V6: tuple[tuple[ipaddress.IPv6Network, str, Callable[[int], int]], ...] = (
    (_V6("::ffff:0:0/96"), "IPv4-mapped", lambda n: n & _MASK32),
    (_V6("64:ff9b::/96"), "NAT64", lambda n: n & _MASK32),
    (_V6("2002::/16"), "6to4", lambda n: (n >> 80) & _MASK32),
)
# Every public IPv6 address is in 2000::/3; inside it, these are not public.
_GLOBAL_V6 = _V6("2000::/3")
_REFUSED_IN_GLOBAL_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("2001::/23"), "IETF protocol assignments (Teredo, benchmarking, ORCHID)"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
)
# Outside 2000::/3 everything is refused; these names only make the reasons readable.
_NAMED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("::/96"), "IPv4-compatible (deprecated)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("100::/64"), "discard-only"),
    (_V6("fc00::/7"), "unique local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be fetched from on a user's behalf, or None when it is publicly routable."""
    if isinstance(address, ipaddress.IPv4Address):
        return next((why for network, why in _REFUSED_V4 if address in network), None)
    address = ipaddress.IPv6Address(int(address))  # a scope id ("%eth0") changes nothing here
    number = int(address)
    for network, name, inner in _EMBEDDING_V6:
        if address in network:
            why = refusal(ipaddress.IPv4Address(inner(number)))
            return None if why is None else f"{name} form of a {why} IPv4 address"
    if address in _GLOBAL_V6:
        return next((why for network, why in _REFUSED_IN_GLOBAL_V6 if address in network), None)
    return next((why for network, why in _NAMED_V6 if address in network), "reserved (outside 2000::/3)")


class FetchFailed(Exception):
    """What went wrong with a fetch on a user's behalf: the ``__cause__`` of the one message users see."""


class FetchRefused(FetchFailed):
    """A fetch on a user's behalf was refused before any byte was sent (the detail is for debugging)."""


class AddressRefused(FetchRefused, httpcore.ConnectError):
    """A host resolved to an address :func:`refusal` refuses. A connect error to httpx and httpcore."""


def refused_by_guard(exc: BaseException) -> bool:
    """Whether a :class:`FetchRefused` is on ``exc``'s cause chain: retrying would be refused again."""
    seen: BaseException | None = exc
    for _ in range(16):  # a cycle or a very long chain is not ours
        if seen is None:
            return False
        if isinstance(seen, FetchRefused):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# -- resolving once ---------------------------------------------------------------------------------------


def _numeric(host: str, port: int) -> list[str] | None:
    """The address a host *spelled as one* means to the system (``127.1``, ``0x7f.1``, ``2130706433``, ``::1``).

    Parsed by the C library (``AI_NUMERICHOST``: never a DNS query), the same code that would read it for a
    connection, so no spelling means one address to the check and another to the socket.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return [str(info[4][0]) for info in found]


def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (``getaddrinfo``), as a :data:`Resolver`."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


async def async_system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver in a worker thread (anyio), as an :data:`AsyncResolver`."""
    import anyio

    return [str(info[4][0]) for info in await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _checked(host: str, answers: Iterable[str], allow_private: bool) -> list[str]:
    """The addresses to connect to, in order; AddressRefused if any answer is refused (or none came)."""
    addresses: list[str] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError:
            raise AddressRefused(f"{host!r} resolved to {answer!r}, which is not an IP address") from None
        why = None if allow_private else refusal(address)
        if why is not None:
            raise AddressRefused(f"{host!r} resolved to {address}, a {why} address")
        if answer not in addresses:
            addresses.append(answer)
    if not addresses:
        raise AddressRefused(f"{host!r} resolved to no address")
    return addresses


def _lookup_failed(host: str, exc: Exception) -> httpcore.ConnectError:
    return httpcore.ConnectError(f"could not resolve {host!r}: {exc}")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# -- the guarded network backends -----------------------------------------------------------------------


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network, but each host is resolved once, checked, and connected to by the address checked.

    ``resolver`` answers names (the system's by default; tests pass a stub); ``network`` opens the
    connections (httpcore's own by default; tests pass a fake that records them).
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: Resolver | None = None,
        network: httpcore.NetworkBackend | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._resolve = resolver or system_resolver
        self._network = network or httpcore.SyncBackend()

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses for ``host``: one lookup, every answer checked."""
        answers = _numeric(host, port)
        if answers is None:
            try:
                answers = list(self._resolve(host, port))
            except (OSError, UnicodeError, ValueError) as exc:
                raise _lookup_failed(host, exc) from exc
        return _checked(host, answers, self._allow_private)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Exception | None = None
        for address in self.addresses(host, port):
            try:
                return self._network.connect_tcp(
                    address, port, _remaining(deadline), local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise AddressRefused("a fetch on a user's behalf never opens a Unix socket")

    def sleep(self, seconds: float) -> None:
        self._network.sleep(seconds)


class AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """The async twin of :class:`GuardedBackend` (anyio: asyncio and trio)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: AsyncResolver | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._resolve = resolver or async_system_resolver
        self._network = network or httpcore.AnyIOBackend()

    async def addresses(self, host: str, port: int) -> list[str]:
        answers = _numeric(host, port)  # no DNS: safe on the event loop
        if answers is None:
            try:
                answers = list(await self._resolve(host, port))
            except (OSError, UnicodeError, ValueError) as exc:
                raise _lookup_failed(host, exc) from exc
        return _checked(host, answers, self._allow_private)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Exception | None = None
        for address in await self.addresses(host, port):
            try:
                return await self._network.connect_tcp(
                    address, port, _remaining(deadline), local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("a fetch on a user's behalf never opens a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


# -- transports -----------------------------------------------------------------------------------------

#: A fetch client talks to a few hosts at a time (one per image); no proxy, no keep-alive crowd.
_FETCH_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=8)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a :class:`GuardedBackend` (httpx takes no network backend, so the pool is
    built here: httpcore's own pool class, as httpx builds it, with ours)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: Resolver | None = None,
        network: httpcore.NetworkBackend | None = None,
        verify: Any = True,
        limits: httpx.Limits = _FETCH_LIMITS,
    ) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private=allow_private, resolver=resolver, network=network),
        )


class AsyncGuardedTransport(httpx.AsyncHTTPTransport):
    """The async twin of :class:`GuardedTransport`."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: AsyncResolver | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
        verify: Any = True,
        limits: httpx.Limits = _FETCH_LIMITS,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncGuardedBackend(allow_private=allow_private, resolver=resolver, network=network),
        )


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def origin_of(url: httpx.URL | str) -> Origin:
    """Scheme, host and port (the scheme's default when none is written): what "the same origin" compares."""
    url = httpx.URL(url)
    port = url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme, 0)
    return Origin(url.scheme, url.host, port)


def display_url(url: httpx.URL | str) -> str:
    """A URL fit for a message: :func:`ideochar._secrets.redact_url` (no password, no signature), and short."""
    text = redact_url(str(url))
    return text if len(text) <= 200 else text[:199] + "…"


def _bounded_timeouts(request: httpx.Request) -> float:
    """Clamp the request's timeouts to a fetch's own; return when the whole answer must have arrived."""
    given = request.extensions.get("timeout") or {}

    def clamp(name: str, most: float) -> float:
        value = given.get(name)
        return most if value is None else min(float(value), most)

    request.extensions = {
        **request.extensions,
        "timeout": {
            "connect": clamp("connect", CONNECT_TIMEOUT_SECONDS),
            "read": clamp("read", FETCH_READ_TIMEOUT_SECONDS),
            "write": clamp("write", FETCH_READ_TIMEOUT_SECONDS),
            "pool": clamp("pool", FETCH_READ_TIMEOUT_SECONDS),
        },
    }
    return time.monotonic() + FETCH_TIMEOUT_SECONDS


def _too_slow(request: httpx.Request) -> httpx.ReadTimeout:
    return httpx.ReadTimeout(f"the answer took more than {FETCH_TIMEOUT_SECONDS:g} s in all", request=request)


class _Bounded(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, request: httpx.Request, deadline: float) -> None:
        self._stream, self._request, self._deadline = stream, request, deadline

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise _too_slow(self._request)
            yield chunk

    def close(self) -> None:
        self._stream.close()


class _AsyncBounded(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request, deadline: float) -> None:
        self._stream, self._request, self._deadline = stream, request, deadline

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise _too_slow(self._request)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


def _rewrapped(response: httpx.Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> httpx.Response:
    return httpx.Response(
        response.status_code, headers=response.headers.raw, stream=stream, extensions=response.extensions
    )


class _FetchTransport(httpx.BaseTransport):
    """Where a fetch goes: the caller's configured origins through the vendor client, the rest guarded.
    Both are bounded in time (:func:`_bounded_timeouts`). The guarded transport is made on first use:
    loading the CA store costs 20 ms, and a client whose fetches all stay on configured origins (the
    emulator) never needs it."""

    def __init__(
        self,
        make_guarded: Callable[[], httpx.BaseTransport],
        vendor: httpx.Client | None,
        trusted: Callable[[httpx.URL], bool] | None,
    ) -> None:
        self._make, self._vendor, self._trusted = make_guarded, vendor, trusted
        self._guarded: httpx.BaseTransport | None = None
        self._lock = threading.Lock()

    def _guard(self) -> httpx.BaseTransport:
        with self._lock:
            if self._guarded is None:
                self._guarded = self._make()
            return self._guarded

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = _bounded_timeouts(request)
        if self._vendor is not None and self._trusted is not None and self._trusted(request.url):
            response = self._vendor.send(request, stream=True)
        else:
            response = self._guard().handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return _rewrapped(response, _Bounded(response.stream, request, deadline))

    def close(self) -> None:
        if self._guarded is not None:
            self._guarded.close()


class _AsyncFetchTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`_FetchTransport` (one event loop: no lock needed)."""

    def __init__(
        self,
        make_guarded: Callable[[], httpx.AsyncBaseTransport],
        vendor: httpx.AsyncClient | None,
        trusted: Callable[[httpx.URL], bool] | None,
    ) -> None:
        self._make, self._vendor, self._trusted = make_guarded, vendor, trusted
        self._guarded: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = _bounded_timeouts(request)
        if self._vendor is not None and self._trusted is not None and self._trusted(request.url):
            response = await self._vendor.send(request, stream=True)
        else:
            if self._guarded is None:
                self._guarded = self._make()
            response = await self._guarded.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return _rewrapped(response, _AsyncBounded(response.stream, request, deadline))

    async def aclose(self) -> None:
        if self._guarded is not None:
            await self._guarded.aclose()


def fetch_client(
    *,
    allow_private: bool = False,
    vendor: httpx.Client | None = None,
    trusted: Callable[[httpx.URL], bool] | None = None,
    resolver: Resolver | None = None,
    network: httpcore.NetworkBackend | None = None,
) -> httpx.Client:
    """The client for URLs from inputs and vendor answers (``drive(..., fetch=)``).

    A URL for which ``trusted`` says yes goes through ``vendor`` (the caller's configured origins); any
    other through a :class:`GuardedTransport`. Redirects are not followed here (the flows follow them,
    each hop a new fetch, routed and checked again), and the environment's proxies and ``.netrc`` are
    ignored.
    """
    transport = _FetchTransport(
        lambda: GuardedTransport(allow_private=allow_private, resolver=resolver, network=network), vendor, trusted
    )
    return httpx.Client(transport=transport, follow_redirects=False, trust_env=False)


def async_fetch_client(
    *,
    allow_private: bool = False,
    vendor: httpx.AsyncClient | None = None,
    trusted: Callable[[httpx.URL], bool] | None = None,
    resolver: AsyncResolver | None = None,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """The async twin of :func:`fetch_client` (``adrive(..., fetch=)``)."""
    transport = _AsyncFetchTransport(
        lambda: AsyncGuardedTransport(allow_private=allow_private, resolver=resolver, network=network),
        vendor,
        trusted,
    )
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)

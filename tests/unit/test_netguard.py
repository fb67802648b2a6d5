"""Issue 13.2, fetching URLs safely: the address policy, the guarded network and the drivers' routing.

Nothing here touches a real network. A fake network backend (:class:`FakeNetwork`) plays the internet:
it records every connection the guard opens and answers HTTP from a script; a stub resolver plays DNS,
with answers that may change from one lookup to the next. The property test at the end generates URL
forms (IPv6, mapped and embedded IPv4, decimal, octal, hex and short spellings, userinfo tricks),
redirect chains and changing DNS answers, and checks that no connection ever reaches a refused address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio
import httpcore
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_image
from ideochar import IdeocharError, InvalidRequest, ProviderUnavailable, UnexpectedResponse
from ideochar._constants import FETCH_READ_TIMEOUT_SECONDS, FETCH_TIMEOUT_SECONDS
from ideochar._netguard import (
    AddressRefused,
    AsyncGuardedBackend,
    GuardedBackend,
    async_fetch_client,
    display_url,
    fetch_client,
    origin_of,
    refusal,
)
from ideochar.exchange import Send, adrive, download_image, drive, fetch_input
from ideochar.media import ImageInput

PNG = make_image(8, 8)

# -- the address policy, as a table ------------------------------------------------------------------------

REFUSED: list[tuple[str, str]] = [
    # (address, a word of the reason)
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "shared"),
    ("100.127.255.255", "shared"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, nothing binds it
    ("0.1.2.3", "unspecified"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("192.0.0.8", "IETF"),
    ("192.88.99.1", "reserved"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "IPv4-mapped form of a loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of a link-local"),
    ("::ffff:10.0.0.1", "IPv4-mapped form of a private"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::8.8.8.8", "IPv4-compatible"),
    ("64:ff9b::7f00:1", "NAT64 form of a loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 form of a link-local"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:7f00:1::1", "6to4 form of a loopback"),
    ("2002:a9fe:a9fe::", "6to4 form of a link-local"),
    ("2002:c0a8:101::1", "6to4 form of a private"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001::1", "IETF"),
    ("2001:2::1", "IETF"),
    ("100::1", "discard"),
    ("4000::1", "reserved"),
]
ALLOWED = [
    "8.8.8.8",
    "93.184.216.34",
    "1.1.1.1",
    "100.63.255.255",  # just below the shared range
    "100.128.0.0",  # just above it
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.255",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700::6810:84e5",
    "2a00:1450:4001:80e::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_refused_addresses_say_why(address: str, why: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@given(st.ip_addresses())
def test_the_policy_agrees_with_pythons_idea_of_global_where_both_are_sure(address: Any) -> None:
    """Where Python calls an address private or loopback or multicast, we refuse it too."""
    if address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified:
        assert refusal(address) is not None
    if isinstance(address, ipaddress.IPv4Address) and address.is_private:
        assert refusal(address) is not None


# -- a fake internet -----------------------------------------------------------------------------------------

Serve = Callable[[str, str], bytes]  # (Host header, path) -> raw HTTP response


def http_response(status: int = 200, body: bytes = PNG, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close", *map(": ".join, headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class FakeStream(httpcore.NetworkStream):
    """One connection: answers each request the client writes with ``serve``; TLS is pretended."""

    def __init__(self, network: FakeNetwork) -> None:
        self._network, self._incoming, self._outgoing = network, b"", b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._incoming += buffer
        if b"\r\n\r\n" in self._incoming:
            head, self._incoming = self._incoming.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            host = next((line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("host:")), "")
            self._outgoing += self._network.serve(host, path)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        chunk, self._outgoing = self._outgoing[:max_bytes], self._outgoing[max_bytes:]
        return chunk

    def close(self) -> None:
        pass

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._network.tls_names.append(server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        return None


class FakeNetwork(httpcore.NetworkBackend):
    """Records every connection; every server answers through ``serve``."""

    def __init__(self, serve: Serve | None = None) -> None:
        self.serve: Serve = serve or (lambda host, path: http_response())
        self.connects: list[tuple[str, int]] = []
        self.tls_names: list[str | None] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.connects.append((host, port))
        return FakeStream(self)


class AsyncFakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: FakeStream) -> None:
        self._stream = stream

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes)

    async def aclose(self) -> None:
        pass

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        self._stream.start_tls(ssl_context, server_hostname)
        return self


class AsyncFakeNetwork(httpcore.AsyncNetworkBackend):
    def __init__(self, network: FakeNetwork) -> None:
        self.network = network

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = self.network.connect_tcp(host, port)
        assert isinstance(stream, FakeStream)
        return AsyncFakeStream(stream)


class StubDNS:
    """Names to the answers of successive lookups (the last one repeats): DNS that may rebind."""

    def __init__(self, names: dict[str, list[list[str]]]) -> None:
        self.names = names
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        answers = self.names.get(host.lower().rstrip("."))
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers.pop(0) if len(answers) > 1 else answers[0]

    async def resolve(self, host: str, port: int) -> list[str]:
        return self(host, port)


def no_vendor_calls() -> httpx.Client:
    """The vendor client of a test that only fetches: any request through it is a routing bug."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a fetch went through the vendor client: {request.url}")

    return httpx.Client(transport=httpx.MockTransport(refuse))


def fetch(flow: Any, dns: StubDNS, network: FakeNetwork, *, allow_private: bool = False) -> Any:
    with (
        no_vendor_calls() as http,
        fetch_client(allow_private=allow_private, resolver=dns, network=network) as guarded,
    ):
        return drive(flow, http, fetch=guarded)


PUBLIC = "93.184.216.34"


# -- the guarded backend --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",  # decimal
        "0x7f000001",  # hex
        "0177.0.0.1",  # octal
        "0x7f.1",  # hex, short
        "127.1",  # short
        "017700000001",  # octal, whole
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "169.254.169.254",
        "0",
        "localhost",  # a name: the stub says 127.0.0.1
    ],
)
def test_no_spelling_of_a_refused_address_is_connected_to(host: str) -> None:
    network = FakeNetwork()
    backend = GuardedBackend(resolver=StubDNS({"localhost": [["127.0.0.1"]]}), network=network)
    with pytest.raises(AddressRefused):
        backend.connect_tcp(host, 80)
    assert network.connects == []


def test_a_name_with_one_refused_answer_among_public_ones_is_refused() -> None:
    network = FakeNetwork()
    backend = GuardedBackend(resolver=StubDNS({"mixed.test": [[PUBLIC, "10.0.0.1"]]}), network=network)
    with pytest.raises(AddressRefused, match="private"):
        backend.connect_tcp("mixed.test", 443)
    assert network.connects == []


def test_the_guard_connects_to_the_address_it_checked_and_looks_up_once() -> None:
    """DNS rebinding: the second lookup would say loopback; there is no second lookup."""
    dns = StubDNS({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    network = FakeNetwork()
    GuardedBackend(resolver=dns, network=network).connect_tcp("rebind.test", 80)
    assert network.connects == [(PUBLIC, 80)] and dns.lookups == ["rebind.test"]


def test_a_name_that_rebinds_between_connections_is_refused_the_second_time() -> None:
    dns = StubDNS({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    network = FakeNetwork()
    backend = GuardedBackend(resolver=dns, network=network)
    backend.connect_tcp("rebind.test", 80)
    with pytest.raises(AddressRefused):
        backend.connect_tcp("rebind.test", 80)
    assert network.connects == [(PUBLIC, 80)]


def test_allow_private_connects_anywhere_but_still_to_the_address_resolved() -> None:
    network = FakeNetwork()
    GuardedBackend(allow_private=True, resolver=StubDNS({"cdn.internal": [["10.1.2.3"]]}), network=network).connect_tcp(
        "cdn.internal", 8080
    )
    assert network.connects == [("10.1.2.3", 8080)]


def test_proxies_from_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would resolve the host itself, where the guard cannot check it."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://10.0.0.1:3128")
    network = FakeNetwork()
    fetch(download_image("http://images.example/o.png"), StubDNS({"images.example": [[PUBLIC]]}), network)
    assert network.connects == [(PUBLIC, 80)]


def test_a_unix_socket_is_never_opened() -> None:
    with pytest.raises(AddressRefused):
        GuardedBackend(network=FakeNetwork()).connect_unix_socket("/var/run/docker.sock")


def test_tls_verifies_and_names_the_host_not_the_address() -> None:
    """httpcore passes the URL's host as ``server_hostname``: the certificate is checked for it (SNI too)."""
    network = FakeNetwork()
    dns = StubDNS({"images.example": [[PUBLIC]]})
    image = fetch(download_image("https://images.example/out.png"), dns, network)
    assert image.data == PNG
    assert network.connects == [(PUBLIC, 443)] and network.tls_names == ["images.example"]


def test_the_async_backend_guards_alike() -> None:
    network = FakeNetwork()
    dns = StubDNS({"images.example": [[PUBLIC], ["169.254.169.254"]]})

    async def main() -> None:
        backend = AsyncGuardedBackend(resolver=dns.resolve, network=AsyncFakeNetwork(network))
        await backend.connect_tcp("images.example", 80)
        with pytest.raises(AddressRefused):
            await backend.connect_tcp("images.example", 80)
        with pytest.raises(AddressRefused):
            await backend.connect_tcp("0x7f.1", 80)

    anyio.run(main)
    assert network.connects == [(PUBLIC, 80)]


def test_the_async_client_follows_the_same_rules() -> None:
    network = FakeNetwork(lambda host, path: http_response(302, b"", [("Location", "http://127.0.0.1/x.png")]))
    dns = StubDNS({"images.example": [[PUBLIC]]})

    async def main() -> None:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as http,
            async_fetch_client(resolver=dns.resolve, network=AsyncFakeNetwork(network)) as guarded,
        ):
            flow = fetch_input(ImageInput.of("http://images.example/a.png"), field="reference")
            with pytest.raises(InvalidRequest) as caught:
                await adrive(flow, http, fetch=guarded)
            assert caught.value.field == "reference"

    anyio.run(main)
    assert network.connects == [(PUBLIC, 80)]


# -- the drivers and the helpers ---------------------------------------------------------------------------------


def test_a_redirect_into_loopback_is_refused_at_the_hop() -> None:
    network = FakeNetwork(lambda host, path: http_response(302, b"", [("Location", "http://127.0.0.1:6379/")]))
    with pytest.raises(InvalidRequest) as caught:
        fetch(
            fetch_input(ImageInput.of("http://images.example/a.png"), field="reference"),
            StubDNS({"images.example": [[PUBLIC]]}),
            network,
        )
    assert network.connects == [(PUBLIC, 80)]
    assert caught.value.field == "reference"


def test_a_redirect_into_loopback_is_followed_when_private_addresses_are_allowed() -> None:
    def serve(host: str, path: str) -> bytes:
        return (
            http_response(302, b"", [("Location", "http://127.0.0.1:8080/b.png")])
            if path == "/a.png"
            else http_response()
        )

    network = FakeNetwork(serve)
    dns = StubDNS({"images.example": [[PUBLIC]]})
    image = fetch(
        fetch_input(ImageInput.of("http://images.example/a.png"), field="reference"), dns, network, allow_private=True
    )
    assert image.read() == PNG
    assert network.connects == [(PUBLIC, 80), ("127.0.0.1", 8080)]


def test_a_driver_without_a_fetch_client_refuses_untrusted_urls_instead_of_using_the_vendor_client() -> None:
    with no_vendor_calls() as http, pytest.raises(ProviderUnavailable) as caught:
        drive(download_image("https://cdn.example/out.png"), http)
    assert caught.value.billed == "yes"
    with no_vendor_calls() as http, pytest.raises(InvalidRequest):
        drive(fetch_input(ImageInput.of("https://cdn.example/in.png"), field="reference"), http)


def test_a_refused_download_is_not_retried() -> None:
    network = FakeNetwork()
    dns = StubDNS({"cdn.example": [["10.0.0.9"]]})
    with pytest.raises(ProviderUnavailable) as caught:
        fetch(download_image("https://cdn.example/out.png", attempts=4), dns, network)
    assert dns.lookups == ["cdn.example"] and network.connects == []
    assert caught.value.billed == "yes" and caught.value.sent


def test_only_steps_marked_untrusted_go_through_the_fetch_client() -> None:
    seen: dict[str, list[str]] = {"vendor": [], "fetch": []}

    def client(name: str) -> httpx.Client:
        return httpx.Client(
            transport=httpx.MockTransport(lambda r: seen[name].append(str(r.url)) or httpx.Response(200))
        )

    def flow() -> Any:
        yield Send(httpx.Request("GET", "https://api.vendor.test/jobs/1"))
        yield Send(httpx.Request("GET", "https://cdn.vendor.test/o.png"), untrusted_url=True)

    with client("vendor") as http, client("fetch") as guarded:
        drive(flow(), http, fetch=guarded)
    assert seen == {"vendor": ["https://api.vendor.test/jobs/1"], "fetch": ["https://cdn.vendor.test/o.png"]}


def test_configured_origins_go_through_the_vendor_client_and_others_do_not() -> None:
    vendor_seen: list[str] = []
    vendor = httpx.Client(
        transport=httpx.MockTransport(lambda r: vendor_seen.append(str(r.url)) or httpx.Response(200, content=PNG))
    )
    configured = {origin_of("http://127.0.0.1:8123/fal")}
    network = FakeNetwork()
    dns = StubDNS({"images.example": [[PUBLIC]]})
    with (
        vendor,
        fetch_client(
            vendor=vendor, trusted=lambda url: origin_of(url) in configured, resolver=dns, network=network
        ) as guarded,
    ):
        for url in (
            "http://127.0.0.1:8123/files/a.png",
            "http://127.0.0.1:8124/files/a.png",
            "http://images.example/b.png",
        ):
            try:
                drive(download_image(url, attempts=1), vendor, fetch=guarded)
            except IdeocharError:
                pass
    assert vendor_seen == ["http://127.0.0.1:8123/files/a.png"]  # another port of the same host is not the origin
    assert network.connects == [(PUBLIC, 80)]


# -- what the errors say ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "secret"),
    [
        (lambda host, path: http_response(404, b"not here"), "404"),
        (lambda host, path: http_response(502, b"internal gateway on 10.0.0.1"), "502"),
        (lambda host, path: http_response(401, b"needs auth"), "401"),
        (lambda host, path: http_response(200, b"<html>admin panel</html>"), "admin"),
    ],
)
def test_a_failed_fetch_never_reveals_the_status_or_the_answer(answer: Serve, secret: str) -> None:
    dns = StubDNS({"cdn.example": [[PUBLIC]]})
    with pytest.raises(UnexpectedResponse) as output:
        fetch(download_image("https://cdn.example/o.png", attempts=1), dns, FakeNetwork(answer))
    with pytest.raises(InvalidRequest) as source:
        fetch(fetch_input(ImageInput.of("https://cdn.example/i.png"), field="reference"), dns, FakeNetwork(answer))
    for error in (output.value, source.value):
        assert secret not in str(error) and secret not in repr(error)
        assert "could not fetch the image at https://cdn.example/" in str(error)
        assert error.__cause__ is not None  # the detail, for debugging
    assert output.value.status is None


@pytest.mark.parametrize("host", ["10.0.0.1", "127.0.0.1", "169.254.169.254", "internal.example"])
def test_a_refusal_names_neither_the_address_nor_the_port(host: str) -> None:
    dns = StubDNS({"internal.example": [["192.168.7.7"]]})
    with pytest.raises(InvalidRequest) as caught:
        fetch(fetch_input(ImageInput.of(f"http://{host}:6379/i.png"), field="reference"), dns, FakeNetwork())
    message = str(caught.value)
    assert "192.168.7.7" not in message and "refused" not in message and "private" not in message
    assert message == str(
        InvalidRequest.for_field("reference", message.split(": ", 1)[1])
    )  # the same text as any other failure


def test_a_closed_port_and_a_missing_file_read_the_same() -> None:
    class Closed(FakeNetwork):
        def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
            raise httpcore.ConnectError("[Errno 111] Connection refused")

    dns = StubDNS({"cdn.example": [[PUBLIC]]})
    messages = []
    for network in (Closed(), FakeNetwork(lambda host, path: http_response(404, b""))):
        with pytest.raises(InvalidRequest) as caught:
            fetch(fetch_input(ImageInput.of("https://cdn.example:8443/i.png"), field="reference"), dns, network)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "111" not in messages[0]


def test_urls_in_messages_lose_their_secrets() -> None:
    shown = display_url("https://user:hunter2@cdn.example/o.png?X-Amz-Signature=abc123&token=t0k&size=2")
    assert "hunter2" not in shown and "abc123" not in shown and "t0k" not in shown
    assert shown.startswith("https://") and "cdn.example/o.png" in shown and "size=2" in shown


# -- timeouts ------------------------------------------------------------------------------------------------------


def test_fetch_steps_carry_a_read_timeout_even_without_a_deadline() -> None:
    for flow in (
        download_image("https://cdn.example/o.png"),
        fetch_input(ImageInput.of("https://cdn.example/i.png"), field="reference"),
    ):
        step = next(flow)
        assert isinstance(step, Send) and step.untrusted_url and step.timeout == FETCH_READ_TIMEOUT_SECONDS
        flow.close()


def test_the_fetch_client_clamps_every_timeout_it_is_given() -> None:
    seen: list[dict[str, float]] = []

    class Recording(FakeNetwork):
        pass

    network = Recording()
    dns = StubDNS({"cdn.example": [[PUBLIC]]})
    with fetch_client(resolver=dns, network=network) as guarded:
        request = guarded.build_request("GET", "http://cdn.example/o.png", timeout=httpx.Timeout(None))
        response = guarded.send(request)
        seen.append(response.request.extensions["timeout"])
    assert seen[0]["read"] == FETCH_READ_TIMEOUT_SECONDS and seen[0]["pool"] == FETCH_READ_TIMEOUT_SECONDS
    assert all(value is not None for value in seen[0].values())
    assert FETCH_TIMEOUT_SECONDS >= FETCH_READ_TIMEOUT_SECONDS


# -- the property: whatever the URL, the redirects and the DNS, no refused address is reached ----------------

PUBLIC_ADDRESSES = ["93.184.216.34", "8.8.8.8", "2606:4700::6810:84e5", "::ffff:1.1.1.1"]
REFUSED_ADDRESSES = [address for address, _ in REFUSED if "%" not in address]
NAMES = ["a.test", "b.test", "c.test"]


def _v4_spellings(address: str) -> list[str]:
    """How a C library reads an IPv4 address: dotted, decimal, hex, octal, and the short forms."""
    number = int(ipaddress.IPv4Address(address))
    a, b, c, d = (number >> 24) & 255, (number >> 16) & 255, (number >> 8) & 255, number & 255
    return [
        address,
        str(number),
        hex(number),
        f"0{number:o}",
        ".".join(f"0{part:o}" for part in (a, b, c, d)),
        ".".join(hex(part) for part in (a, b, c, d)),
        f"{a}.{b}.{(c << 8) | d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{hex(a)}.{(b << 16) | (c << 8) | d}",
    ]


def _host_forms(address: str) -> list[str]:
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv4Address):
        return [
            *_v4_spellings(address),
            f"[::ffff:{address}]",
            f"[::ffff:{int(parsed) >> 16:x}:{int(parsed) & 0xFFFF:x}]",
        ]
    return [f"[{address}]", f"[{parsed.exploded}]"]


hosts = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(PUBLIC_ADDRESSES).map(lambda a: _host_forms(a)[0]),
    st.sampled_from(REFUSED_ADDRESSES).flatmap(lambda a: st.sampled_from(_host_forms(a))),
)
userinfo = st.sampled_from(["", "a.test@", "user:pw@", "93.184.216.34@", "a.test:80@"])
ports = st.sampled_from(["", ":80", ":443", ":6379", ":8080"])


@st.composite
def urls(draw: st.DrawFn, hop: int) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    url = f"{scheme}://{draw(userinfo)}{draw(hosts)}{draw(ports)}/hop{hop}"
    if draw(st.booleans()) and not draw(st.booleans()):
        url += f"#@{draw(st.sampled_from(NAMES))}/"  # the fragment trick: the host is what comes first
    return url


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[str], dict[str, list[list[str]]]]:
    hops = draw(st.integers(min_value=1, max_value=4))
    chain = [draw(urls(hop)) for hop in range(hops)]
    answer = st.lists(st.sampled_from(PUBLIC_ADDRESSES + REFUSED_ADDRESSES), min_size=1, max_size=3)
    dns = {name: draw(st.lists(answer, min_size=1, max_size=4)) for name in NAMES}
    return chain, dns


def _serve_chain(chain: list[str]) -> Serve:
    def serve(host: str, path: str) -> bytes:
        found = re.fullmatch(r"/hop(\d+)", path)
        nxt = int(found.group(1)) + 1 if found else len(chain)
        if nxt < len(chain):
            return http_response(302, b"", [("Location", chain[nxt])])
        return http_response()

    return serve


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), download=st.booleans())
def test_no_url_form_redirect_or_dns_answer_reaches_a_refused_address(
    world: tuple[list[str], dict[str, list[list[str]]]], download: bool
) -> None:
    chain, names = world
    network = FakeNetwork(_serve_chain(chain))
    dns = StubDNS({name: [list(answer) for answer in answers] for name, answers in names.items()})
    try:
        flow = (
            download_image(chain[0], attempts=2)
            if download
            else fetch_input(ImageInput.of(chain[0]), field="reference")
        )
        fetch(flow, dns, network)
    except IdeocharError:
        pass  # refused, or not a URL we take: either way, what matters is where it connected
    allowed = {ipaddress.ip_address(a) for a in PUBLIC_ADDRESSES}
    for host, _ in network.connects:
        assert ipaddress.ip_address(host) in allowed, f"connected to {host} for {chain} with DNS {names}"


# -- the threat model names these tests ----------------------------------------------------------------------

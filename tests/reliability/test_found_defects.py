"""One deterministic test per defect the reliability suite found, so none comes back unnoticed.

The property tests found them by chance; these pin each one down. Tests marked ``xfail(strict=True)``
are defects in code still being written by its owner (listed in ``known_issues.py``): when it is
fixed the test passes, strict mode fails the run, and the marker goes.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from conftest import CANARY_KEY, make_image
from ideochar import CharacterRequest, Client
from ideochar.errors import IdeocharError, InvalidRequest, UnexpectedResponse
from ideochar.exchange import download_image, drive
from reliability.harness import RID, VendorCase, Watch, cases, providers
from reliability.known_issues import OPEN

PNG = make_image(32, 32, "PNG")
JPEG = make_image(32, 32, "JPEG")
CASES = {case.id: case for case in cases()}


def _drive(case: VendorCase, handler: Any) -> Any:
    provider = providers()[case.provider]
    request = case.request()
    watch = Watch()
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        return drive(watch.wrap(provider.exchange(request, case.context(provider, request))), http, fetch=http)


@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_a_body_whose_charset_does_not_match_its_bytes_is_a_typed_error(case: str) -> None:
    """Found: ``charset=utf-16`` over bytes without a byte-order mark made ``response.text`` raise
    UnicodeError in every error path that quotes the body (fixed in exchange._ReadResponse)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, headers={"content-type": "application/json; charset=utf-16"}, content=b"\x89PNG??")

    with pytest.raises(IdeocharError):
        _drive(CASES[case], handler)


def test_an_image_url_httpx_cannot_parse_is_an_unexpected_response_marked_billed() -> None:
    """Found: ``httpx.InvalidURL`` (not an ``httpx.HTTPError``) escaped from download_image."""
    with pytest.raises(UnexpectedResponse) as caught, httpx.Client() as http:
        drive(download_image("http://[::1"), http, fetch=http)
    assert caught.value.billed == "yes"


def test_a_vendor_data_url_holding_a_truncated_image_is_refused() -> None:
    """Found: a data: URL holding only a PNG signature was returned as an image."""
    url = "data:image/png;base64," + base64.b64encode(PNG[:8]).decode()
    with pytest.raises(UnexpectedResponse, match="truncated"), httpx.Client() as http:
        drive(download_image(url), http, fetch=http)


def test_a_local_image_whose_header_cannot_be_read_is_refused_before_sending() -> None:
    """Found: a bare PNG signature passed validation and was refused by the vendor after the call."""
    with pytest.raises(InvalidRequest) as caught:
        CharacterRequest(prompt="a knight", reference=PNG[:8])
    assert caught.value.field == "reference"


@pytest.mark.skipif("segmind" not in providers(), reason="needs the segmind provider")
def test_a_vendor_that_echoes_the_key_as_its_request_id_leaks_it_nowhere() -> None:
    """Found: Segmind's ``x-request-id`` echoing the key reached events, errors, attempts and results."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=JPEG, headers={"content-type": "image/jpeg", "x-request-id": CANARY_KEY})

    events: list[Any] = []
    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client(
        ["segmind"], http=http, keys={"segmind": CANARY_KEY}, journal=False, config=False, on_event=events.append
    ) as client:
        result = client.generate("a knight", PNG)
    assert CANARY_KEY not in repr(result)
    assert CANARY_KEY not in repr(events)
    assert result.images


@pytest.mark.skipif("segmind" not in providers(), reason="needs the segmind provider")
@pytest.mark.parametrize("url", ["http://[::1", "https://api.segmind.com:99999/v2/requests/x"])
def test_a_malformed_job_url_from_segmind_is_a_typed_error(url: str) -> None:
    """Found: urlsplit's ValueError escaped ``_require_trusted`` (fixed in the Segmind provider)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"request_id": RID, "status_url": url, "response_url": url})

    with pytest.raises(IdeocharError):
        _drive(CASES["segmind-v2"], handler)


def _known(test: str) -> Any:
    """The xfail marker for a test named in ``known_issues.OPEN`` (none today)."""
    reason = next(f"{i.provider}: {i.error.__name__} {i.text!r}" for i in OPEN if i.regression_test.endswith(test))
    return pytest.mark.xfail(strict=True, reason=f"open defect in code another helper owns: {reason}")


@pytest.mark.skipif("fal" not in providers(), reason="needs the fal provider")
def test_a_malformed_job_url_from_fal_is_a_typed_error() -> None:
    """Found: urlsplit's ValueError for ``http://[::1`` escaped fal's ``_require_trusted`` untyped (fixed in
    the fal provider)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"request_id": RID, "status_url": "http://[::1", "response_url": "http://[::1"})

    with pytest.raises(IdeocharError):
        _drive(CASES["fal-queue-poll"], handler)


@pytest.mark.skipif("fal" not in providers(), reason="needs the fal provider")
def test_a_request_id_fal_could_not_resume_by_is_a_typed_error() -> None:
    """Found: fal's submit built ``ResumeState(request_id=...)``, whose pattern refuses ``../../evil``, and
    the pydantic ValidationError escaped untyped (fixed in the fal provider: UnexpectedResponse, admitted,
    billing unknown)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"request_id": "../../evil"})

    with pytest.raises(IdeocharError):
        _drive(CASES["fal-queue-poll"], handler)


# -- the router -----------------------------------------------------------------------------------------


def _fake(name: str, answer: str) -> Any:
    """A one-request vendor: the billable POST, then either an image or an unreadable answer."""
    from decimal import Decimal

    from ideochar import Provider, ProviderInfo, ProviderOutput
    from ideochar.exchange import Send, image_from_bytes

    class Fake(Provider):
        info = ProviderInfo(
            name=name,
            title=name,
            operations=frozenset({"generate"}),
            supported_fields={"generate": frozenset()},
            prices_usd={"generate": {"turbo": Decimal("0.1"), "default": Decimal("0.1"), "quality": Decimal("0.1")}},
            credential_variables=((f"{name.upper()}_KEY",),),
            base_urls={"api": f"https://{name}.test"},
        )

        def exchange(self, request: Any, ctx: Any) -> Any:
            response = yield Send(httpx.Request("POST", ctx.url("api", "/jobs"), content=b"{}"), admits=True)
            if answer == "unreadable":
                # As Ideogram's adapter does with a 200 it cannot parse: the job ran, billing unknown.
                raise UnexpectedResponse("unreadable answer", billed="unknown", admitted=True, status=200)
            return ProviderOutput(images=[image_from_bytes(response.content)])

    return Fake()


def test_the_router_does_not_fail_over_after_a_possibly_billed_attempt() -> None:
    """Found by the fault matrix (fal, malformed status answer) and the soak: after an attempt the vendor
    admitted and whose billing is unknown, the router tries the next vendor, which charges again."""
    from ideochar import hookimpl
    from ideochar.plugins import plugin_manager

    class Plugin:
        @hookimpl
        def ideochar_register_providers(self, register: Any) -> None:
            register(_fake("first", "unreadable"))
            register(_fake("second", "image"))

    posts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append(request.url.host)
        return httpx.Response(200, content=PNG)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client(
        ["first", "second"],
        plugin_manager=plugin_manager(load_entrypoints=False, plugins=[Plugin()]),
        http=http,
        keys={"first": CANARY_KEY, "second": CANARY_KEY},
        journal=False,
        config=False,
    ) as client:
        try:
            client.generate("a knight", PNG)
        except UnexpectedResponse:
            pass
    assert posts == ["first.test"], f"charged by {posts}"


@pytest.mark.skipif("segmind" not in providers(), reason="needs the segmind provider")
def test_a_job_url_httpx_refuses_is_a_typed_error() -> None:
    """Found (thorough run): a status URL with a control character passes urlsplit, and httpx.InvalidURL
    escaped Segmind's poll (fixed in the Segmind provider's URL check)."""

    def handler(request: httpx.Request) -> httpx.Response:
        url = f"https://api.segmind.com/v2/requests/{RID}\x1f/status"
        return httpx.Response(200, json={"request_id": RID, "status_url": url, "response_url": url})

    with pytest.raises(IdeocharError):
        _drive(CASES["segmind-v2"], handler)


@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_a_redirect_httpx_cannot_follow_is_a_typed_error(case: str) -> None:
    """Found (thorough run): for a 3xx whose Location is ``http:abc`` httpx raises InvalidURL (not an
    HTTPError) while building the redirect it will not follow; the drivers now map it."""
    with pytest.raises(IdeocharError):
        _drive(CASES[case], lambda request: httpx.Response(301, headers={"location": "http:abc"}))


@pytest.mark.skipif("ideogram" not in providers(), reason="needs the ideogram provider")
def test_vendor_metadata_echoing_the_key_is_scrubbed_from_the_result() -> None:
    """Found (thorough run): Ideogram's per-image fields kept in ``vendor_metadata`` (excluded from repr,
    not from a pickle) carried the key a vendor echoed back (fixed in result.py)."""
    import pickle

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            data = [
                {
                    "url": "https://ideogram.ai/api/images/x.png",
                    "is_image_safe": True,
                    "prompt": CANARY_KEY,
                    "style_type": CANARY_KEY,
                    "seed": 1,
                    "resolution": "1024x1024",
                }
            ]
            return httpx.Response(200, json={"created": "2026-01-01T00:00:00Z", "data": data})
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client(
        ["ideogram"], http=http, fetch_http=http, keys={"ideogram": CANARY_KEY}, journal=False, config=False
    ) as client:
        result = client.generate("a knight", PNG)
    assert CANARY_KEY.encode() not in pickle.dumps(result)
    assert CANARY_KEY not in repr(result.vendor_metadata)

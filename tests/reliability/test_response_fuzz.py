"""Issue 7.3, second half: whatever a vendor sends back, the caller gets a result or a typed error.

Every built-in vendor, in every mode, is driven through the real drivers over a fake network that
answers each step (submit, upload, status, event stream, result, download, input fetch) with a fuzzed
version of the valid answer: bent JSON, surprising status codes and headers, garbage and truncated
bodies, connections reset mid-body, transport failures. For every example:

* only :class:`~ideochar.errors.IdeocharError` subclasses escape (never KeyError, TypeError,
  ValidationError, ...), from the provider itself and from the router around it;
* a request that may admit a billable job reaches the vendor at most once, also through the router's
  retries (no double charge);
* an error raised after the billable request reached the vendor is never marked "not sent" unless it
  is marked admitted (the router would otherwise send it again);
* the key goes only to the vendor's own hosts, and appears in no error (str, repr, body, pickle);
* a result holds only complete JPEG/PNG/WebP images whose digest matches their bytes.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Generator
from functools import cache
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from conftest import CANARY_KEY
from ideochar.errors import IdeocharError, ProviderError
from ideochar.exchange import adrive, drive, image_complete
from ideochar.job import Job
from ideochar.media import sniff_format
from ideochar.router import FailurePolicy, RouteContext, plan
from ideochar.spec import Provider, ProviderOutput
from reliability.harness import FuzzServer, TooManyRequests, VendorCase, Watch, big_png, cases, flatten, providers
from reliability.known_issues import known
from reliability.profile import fuzz_settings, scaled

CASES = cases(big_reference=big_png(1_100_000))


@cache
def _provider(name: str) -> Provider:
    return providers()[name]


def _ids(case: VendorCase) -> str:
    return case.id


def _check_error(error: BaseException, server: FuzzServer) -> None:
    trace = server.trace()
    if isinstance(error, TooManyRequests):
        raise error
    if known(server.case.provider, error):
        reject()  # reported by its own xfail test (known_issues.py); keep hunting for new ones
    assert isinstance(error, IdeocharError), f"untyped {type(error).__name__}: {error!r} after {trace}"
    for inner in flatten(error):
        for text in (str(inner), repr(inner), repr(getattr(inner, "body", None))):
            assert CANARY_KEY not in text, f"the key leaked into {type(inner).__name__} after {trace}"
        assert CANARY_KEY.encode() not in pickle.dumps(inner)
        if isinstance(inner, ProviderError) and server.admissions() and not inner.admitted:
            assert inner.sent, f"{type(inner).__name__}(sent=False) after the billable request was answered: {trace}"


def _check_events(watch: Watch, server: FuzzServer) -> None:
    for event in watch.events:
        assert CANARY_KEY not in repr(event), f"the key is in a {event.kind} event after {server.trace()}"
        if event.kind == "submitted" and event.resume is not None:
            json.dumps(event.resume)  # the journal stores it: it must be JSON


def _check_output(output: Any, server: FuzzServer) -> None:
    assert isinstance(output, ProviderOutput), type(output)
    for image in output.images:
        assert sniff_format(image.data[:16]) is not None, f"a non-image in the result after {server.trace()}"
        assert image_complete(image.data), f"a truncated image in the result after {server.trace()}"
        assert image.sha256 == hashlib.sha256(image.data).hexdigest()


def _whole(job: Job) -> Generator[Any, Any, Any]:
    """A journal-less job as one flow: its calls in order, then its result (what ``Client`` does)."""
    yield from job.begin()
    for call in job.calls():
        yield from call
    return (yield from job.end())


def _run_sync(case: VendorCase, draw: Any, *, through_router: bool) -> FuzzServer:
    provider = _provider(case.provider)
    request = case.request()
    ctx = case.context(provider, request)
    watch = Watch()
    server = FuzzServer(case, draw, watch)
    flow: Generator[Any, Any, Any]
    if through_router:
        chosen = plan(request, [provider], context_for=lambda p: ctx)
        job = Job.new("job-fuzz", request, chosen, RouteContext(FailurePolicy(), "job-fuzz"), journal=None)
        flow = watch.wrap(_whole(job))
    else:
        flow = watch.wrap(provider.exchange(request, ctx))
    with httpx.Client(transport=httpx.MockTransport(server)) as http:
        try:
            output = drive(flow, http, fetch=http)
        except BaseException as exc:
            _check_error(exc, server)
        else:
            if through_router:
                assert output.images, "the router returned a result without images"
                for image in output.images:
                    assert image_complete(image.data)
                assert CANARY_KEY not in repr(output)
                assert CANARY_KEY.encode() not in pickle.dumps(output)
            else:
                _check_output(output, server)
    _check_events(watch, server)
    assert not server.key_leaks, f"the key was sent to {server.key_leaks} after {server.trace()}"
    assert server.admissions() <= 1, f"{server.admissions()} billable requests reached the vendor: {server.trace()}"
    return server


@pytest.mark.parametrize("case", CASES, ids=_ids)
@fuzz_settings
@given(data=st.data())
def test_fuzzed_vendor_answers_give_a_result_or_a_typed_error(case: VendorCase, data: st.DataObject) -> None:
    _run_sync(case, data.draw, through_router=False)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@fuzz_settings
@given(data=st.data())
def test_the_router_never_admits_a_job_twice_whatever_the_vendor_answers(case: VendorCase, data: st.DataObject) -> None:
    _run_sync(case, data.draw, through_router=True)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@scaled(4)
@given(data=st.data())
def test_the_async_driver_gives_the_same_guarantees(case: VendorCase, data: st.DataObject) -> None:
    provider = _provider(case.provider)
    request = case.request()
    ctx = case.context(provider, request)
    watch = Watch()
    server = FuzzServer(case, data.draw, watch)

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
            return await adrive(watch.wrap(provider.exchange(request, ctx)), http, fetch=http)

    try:
        output = anyio.run(main)
    except BaseException as exc:
        _check_error(exc, server)
    else:
        _check_output(output, server)
    _check_events(watch, server)
    assert not server.key_leaks
    assert server.admissions() <= 1


def test_every_builtin_vendor_is_fuzzed() -> None:
    """The fuzz covers every installed built-in provider (a new one must be added to harness.cases)."""
    builtin = {"fal", "segmind", "ideogram", "replicate"} & set(providers())
    assert builtin <= {case.provider for case in CASES}

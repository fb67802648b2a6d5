"""Fan-out: a count one call cannot make is split, seeds advance, paid images survive a failed call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from ideochar import CharacterRequest, CharacterResult, ContentFiltered, Unsupported
from ideochar.router import split_request

from .conftest import MakeAsyncClient, MakeClient
from .fakes import FakeProvider, FakeVendors


def DOWN(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, headers={"x-request-id": "r"})


def calls(result: CharacterResult) -> list[dict[str, Any]]:
    return cast("list[dict[str, Any]]", result.vendor_metadata["calls"])


def posted(vendors: FakeVendors, name: str) -> list[dict[str, object]]:
    return [json.loads(r.content) for r in vendors[name].requests if r.method == "POST"]


def test_split_gives_consecutive_seeds_and_keeps_a_seedless_request_seedless(reference: Path) -> None:
    request = CharacterRequest(prompt="x", reference=reference, num_images=5, seed=2_147_483_646)
    parts = split_request(request, 2)
    assert [(p.num_images, p.seed) for p in parts] == [(2, 2_147_483_646), (2, 0), (1, 2)]
    seedless = split_request(request.model_copy(update={"seed": None}), 2)
    assert [p.seed for p in seedless] == [None, None, None]
    assert split_request(request, 8) == [request]


def test_a_count_above_one_call_is_fanned_out_and_the_result_says_so(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    client = make_client(FakeProvider("alpha", per_call=1))
    result = client.generate("x", reference, num_images=3, seed=10)
    assert [b["seed"] for b in posted(vendors, "alpha")] == [10, 11, 12]
    assert [b["n"] for b in posted(vendors, "alpha")] == [1, 1, 1]
    assert [i.seed for i in result.images] == [10, 11, 12]
    [warning] = [w for w in result.warnings if w.kind == "fanned_out"]
    assert "3 calls" in warning.message
    assert result.cost_usd is not None and str(result.cost_usd) == "0.15"
    assert [c["vendor_request_id"] for c in calls(result)] == [
        "alpha-job-1",
        "alpha-job-2",
        "alpha-job-3",
    ]


def test_a_failed_call_keeps_the_images_that_were_paid_for(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [200, DOWN]
    client = make_client(FakeProvider("alpha", per_call=1), policy=None)
    result = client.generate("x", reference, num_images=3, seed=1)
    assert [i.seed for i in result.images] == [1, 3]
    [failure] = result.failures
    assert (failure.index, failure.error_type, failure.billed, failure.provider) == (
        1,
        "ProviderUnavailable",
        "no",
        "alpha",
    )
    assert client.journal is not None
    [job] = client.journal.jobs()
    assert job.status == "partial" and len(job.outputs) == 2


def test_each_call_fails_over_on_its_own(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    vendors["alpha"].submits = [200, DOWN]
    client = make_client(FakeProvider("alpha", per_call=1), FakeProvider("beta", per_call=1))
    result = client.generate("x", reference, num_images=3, seed=5)
    assert not result.failures
    assert [c["provider"] for c in calls(result)] == ["alpha", "beta", "alpha"]
    assert [b["seed"] for b in posted(vendors, "beta")] == [6]


def test_a_fallback_with_fewer_images_per_call_splits_its_part_again(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [DOWN]
    client = make_client(FakeProvider("alpha", per_call=4), FakeProvider("beta", per_call=1))
    result = client.generate("x", reference, num_images=3, seed=20)
    assert len(result.images) == 3 and not result.failures
    assert [(b["n"], b["seed"]) for b in posted(vendors, "beta")] == [(1, 20), (1, 21), (1, 22)]
    assert any(w.kind == "fanned_out" for w in result.warnings)


def test_a_content_filter_stops_the_remaining_calls(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [200, 451]
    client = make_client(FakeProvider("alpha", per_call=1))
    result = client.generate("x", reference, num_images=4)
    assert len(result.images) == 1 and vendors["alpha"].posts == 2
    assert [f.error_type for f in result.failures] == ["ContentFiltered", None, None]
    assert [f.billed for f in result.failures[1:]] == ["no", "no"]


def test_when_every_call_fails_the_error_is_raised(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [451]
    client = make_client(FakeProvider("alpha", per_call=1))
    with pytest.raises(ContentFiltered):
        client.generate("x", reference, num_images=2)


def test_fan_out_can_be_refused(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    client = make_client(FakeProvider("alpha", per_call=1), fan_out=False)
    with pytest.raises(Unsupported):
        client.generate("x", reference, num_images=2)
    assert vendors.calls == 0


@pytest.mark.anyio
async def test_the_async_client_runs_the_calls_concurrently_and_keeps_partial_results(
    make_async_client: MakeAsyncClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [200, DOWN, 200, 200]
    vendors["alpha"].delay_seconds = 0.05
    vendors["alpha"].running_polls = 2
    async with make_async_client(FakeProvider("alpha", per_call=1)) as client:
        result = await client.generate("x", reference, num_images=4, seed=0)
    assert len(result.images) == 3 and len(result.failures) == 1
    assert vendors.max_in_flight >= 2  # the calls overlapped
    assert sorted(i.seed for i in result.images if i.seed is not None) == sorted(
        {0, 1, 2, 3} - {result.failures[0].index or 0}
    )

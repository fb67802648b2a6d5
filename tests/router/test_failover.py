"""Failover rules, each against fake vendors: what is retried, what fails over, what stops."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from ideochar import (
    AllProvidersFailed,
    ContentFiltered,
    FailurePolicy,
    GenerationFailed,
    InvalidRequest,
    OutcomeUnknown,
    OverBudget,
    RequestRejected,
)

from .conftest import MakeClient
from .fakes import FakeProvider, FakeVendors


def test_an_invalid_request_makes_no_http_call(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    with pytest.raises(InvalidRequest) as caught:
        client.generate("a knight", reference, aspect_ratio="7:3")
    assert caught.value.field == "aspect_ratio"
    assert vendors.calls == 0
    assert client.journal is not None and client.journal.jobs() == []


def test_a_request_over_budget_makes_no_http_call(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    client = make_client(FakeProvider("alpha", "0.10"), FakeProvider("beta", "0.08"), max_cost_usd="0.15")
    with pytest.raises(OverBudget) as caught:
        client.generate("a knight", reference, num_images=2)
    assert "alpha" in str(caught.value) and "beta" in str(caught.value)
    assert vendors.calls == 0


def test_the_budget_skips_only_the_providers_above_it(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    client = make_client(FakeProvider("alpha", "0.20"), FakeProvider("beta", "0.05"), max_cost_usd=0.10)
    chosen = client.plan(client.build_request(__import__("ideochar").Generate(), "x", reference))
    assert [c.name for c in chosen.candidates] == ["beta"]
    assert "over the budget" in chosen.skipped["alpha"]
    result = client.generate("a knight", reference)
    assert result.provider == "beta" and vendors["alpha"].posts == 0


def test_primary_503_fails_over_to_the_secondary(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [httpx.Response(503, headers={"x-request-id": "r1"}, text="overloaded")]
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    result = client.generate("a knight", reference)
    assert result.provider == "beta"
    assert [(a.provider, a.outcome, a.billed) for a in result.attempts] == [
        ("alpha", "failed", "no"),
        ("beta", "succeeded", "yes"),
    ]
    assert vendors["alpha"].posts == 1 and vendors["beta"].posts == 1


def test_a_content_filter_does_not_fail_over(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    vendors["alpha"].submits = [451]
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    with pytest.raises(ContentFiltered) as caught:
        client.generate("a knight", reference)
    assert caught.value.provider == "alpha"
    assert vendors["beta"].requests == []


def test_a_rejected_request_does_not_fail_over(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    vendors["alpha"].submits = [400]
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    with pytest.raises(RequestRejected):
        client.generate("a knight", reference)
    assert vendors["beta"].requests == []


def test_a_connect_error_retries_the_same_provider(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [httpx.ConnectError("refused")]
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    result = client.generate("a knight", reference)
    assert result.provider == "alpha"
    assert vendors["alpha"].posts == 2 and vendors["beta"].requests == []
    assert [a.outcome for a in result.attempts] == ["failed", "succeeded"]


def test_an_ingress_502_without_request_id_retries_the_same_provider(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [502, 504]  # no x-request-id: the edge refused it, the app never saw it
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    assert client.generate("a knight", reference).provider == "alpha"
    assert vendors["alpha"].posts == 3 and vendors["beta"].requests == []


def test_connect_retries_are_bounded_then_fail_over(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [httpx.ConnectError("refused")] * 5
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"), policy=FailurePolicy(connect_retries=2))
    assert client.generate("a knight", reference).provider == "beta"
    assert vendors["alpha"].posts == 3  # the first try and two retries


def test_a_429_retry_after_is_honoured(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    vendors["alpha"].submits = [httpx.Response(429, headers={"retry-after": "0.3"})]
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    started = time.monotonic()
    result = client.generate("a knight", reference)
    assert time.monotonic() - started >= 0.3
    assert result.provider == "alpha" and vendors["alpha"].posts == 2 and vendors["beta"].requests == []


def test_a_429_retry_after_above_the_cap_fails_over_at_once(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [httpx.Response(429, headers={"retry-after": "120"})]
    policy = FailurePolicy(max_retry_after_seconds=5)
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"), policy=policy)
    started = time.monotonic()
    assert client.generate("a knight", reference).provider == "beta"
    assert time.monotonic() - started < 2
    assert vendors["alpha"].posts == 1


def test_a_lost_answer_to_the_submit_raises_outcome_unknown_by_default(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [httpx.ReadTimeout("no answer")]
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    with pytest.raises(OutcomeUnknown) as caught:
        client.generate("a knight", reference)
    assert caught.value.billed == "unknown"
    assert vendors["alpha"].posts == 1 and vendors["beta"].requests == []
    assert client.journal is not None
    [job] = client.journal.jobs()
    assert job.status == "unknown" and job.attempts[0].status == "unknown"
    assert job.possibly_billed_usd == Decimal("0.05")


def test_a_lost_answer_fails_over_when_the_policy_says_so(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [httpx.ReadTimeout("no answer")]
    client = make_client(
        FakeProvider("alpha"), FakeProvider("beta"), policy=FailurePolicy(on_outcome_unknown="fail_over")
    )
    result = client.generate("a knight", reference)
    assert result.provider == "beta"
    assert vendors["alpha"].posts == 1
    assert result.attempts[0].error_type == "OutcomeUnknown" and result.attempts[0].billed == "unknown"


def test_a_read_timeout_after_admission_never_resubmits_to_the_same_vendor(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].polls = [httpx.ReadTimeout("silence")] * 10
    client = make_client(
        FakeProvider("alpha"), FakeProvider("beta"), policy=FailurePolicy(on_outcome_unknown="fail_over")
    )
    result = client.generate("a knight", reference)
    assert result.provider == "beta"
    assert vendors["alpha"].posts == 1
    failed = result.attempts[0]
    assert (failed.error_type, failed.vendor_request_id, failed.billed) == ("OutcomeUnknown", "alpha-job-1", "unknown")


def test_a_read_timeout_after_admission_raises_with_the_vendor_id_by_default(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].polls = [httpx.ReadTimeout("silence")] * 10
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    with pytest.raises(OutcomeUnknown) as caught:
        client.generate("a knight", reference)
    assert caught.value.vendor_request_id == "alpha-job-1" and caught.value.admitted
    assert vendors["alpha"].posts == 1 and vendors["beta"].requests == []


def test_auth_and_credit_errors_fail_over(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    vendors["alpha"].submits = [401]
    vendors["beta"].submits = [402]
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"), FakeProvider("gamma"))
    result = client.generate("a knight", reference)
    assert result.provider == "gamma"
    assert [a.error_type for a in result.attempts[:2]] == ["AuthenticationFailed", "InsufficientCredits"]


def test_every_provider_failing_says_what_each_did(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    vendors["alpha"].submits = [httpx.Response(500, headers={"x-request-id": "a"})]
    vendors["beta"].submits = [401]
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    with pytest.raises(AllProvidersFailed) as caught:
        client.generate("a knight", reference)
    assert [type(e).__name__ for e in caught.value.errors] == ["ProviderUnavailable", "AuthenticationFailed"]
    assert [a.provider for a in caught.value.attempts] == ["alpha", "beta"]


def test_failover_never_takes_a_request_over_its_budget(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    # alpha admits and then loses the job: it may be billed, so beta's quote would exceed the budget.
    vendors["alpha"].polls = [httpx.ReadTimeout("silence")] * 10
    client = make_client(
        FakeProvider("alpha", "0.06"),
        FakeProvider("beta", "0.06"),
        max_cost_usd="0.10",
        policy=FailurePolicy(on_outcome_unknown="fail_over"),
    )
    with pytest.raises(OutcomeUnknown):
        client.generate("a knight", reference)
    assert vendors["beta"].requests == []


def test_the_deadline_bounds_the_whole_request(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    vendors["alpha"].running_polls = 10_000
    vendors["alpha"].delay_seconds = 0.05
    client = make_client(FakeProvider("alpha"), deadline_seconds=0.4)
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown):
        client.generate("a knight", reference)
    assert time.monotonic() - started < 2.0


def test_cheapest_strategy_orders_by_quote(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    client = make_client(FakeProvider("alpha", "0.09"), FakeProvider("beta", "0.03"), strategy="cheapest")
    assert client.generate("a knight", reference).provider == "beta"
    assert vendors["alpha"].requests == []


def test_fastest_strategy_orders_by_observed_latency(
    make_client: MakeClient, vendors: FakeVendors, reference: Path
) -> None:
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"), strategy="fastest")
    vendors["alpha"].delay_seconds = 0.15
    assert client.generate("a knight", reference).provider == "alpha"  # nothing observed yet: as listed
    vendors["alpha"].submits = [httpx.Response(503, headers={"x-request-id": "r"})]
    assert client.generate("a knight", reference).provider == "beta"
    observed = client.latency.snapshot()
    assert observed["alpha"] > observed["beta"]
    request = client.build_request(__import__("ideochar").Generate(), "x", reference)
    assert [c.name for c in client.plan(request).candidates] == ["beta", "alpha"]
    assert client.generate("a knight", reference).provider == "beta"


def test_a_billed_failure_does_not_fail_over(make_client: MakeClient, vendors: FakeVendors, reference: Path) -> None:
    vendors["alpha"].polls = [lambda r: httpx.Response(200, json={"status": "failed"})]  # the fake bills it
    client = make_client(FakeProvider("alpha"), FakeProvider("beta"))
    with pytest.raises(GenerationFailed) as caught:
        client.generate("a knight", reference)
    assert caught.value.billed == "yes" and caught.value.vendor_request_id == "alpha-job-1"
    assert vendors["beta"].requests == []
    assert client.journal is not None
    assert client.journal.jobs()[0].spent_usd == Decimal("0.05")

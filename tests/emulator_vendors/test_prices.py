"""Prices, live and actual: ``Client.quote(request, live=True)`` asks fal's pricing endpoint (the declared
price, with a warning, when it cannot), and the cost a vendor reports (Segmind's ``x-cost``) is the
result's cost, from the vendor, and the journal's."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import make_image
from ideochar import AsyncClient, Client
from ideochar.emulator import testing
from ideochar.request import CharacterRequest

KEY = "prices-test-key"


@pytest.fixture
def app() -> Any:
    return testing.emulator_app(vendors=["fal", "segmind"])


def request(**fields: Any) -> CharacterRequest:
    return CharacterRequest(prompt="a knight", reference=make_image(), **fields)


def client(app: Any, journal: Path | bool = False, **options: Any) -> Client:
    return Client(
        ["fal", "segmind"],
        http=testing.sync_client(app),
        base_urls=testing.base_urls(app),
        keys={"fal": KEY, "segmind": KEY},
        journal=journal,
        config=False,
        **options,
    )


def test_a_live_quote_asks_fals_pricing_endpoint_and_declares_where_it_cannot(app: Any) -> None:
    with client(app) as c:
        fal, segmind = c.quote(request(num_images=2, speed="turbo"), live=True)
    assert (fal.provider, fal.price_source, fal.unit_price_usd) == ("fal", "live", Decimal("0.1000"))
    assert fal.total_usd == Decimal("0.2000") and not fal.warnings
    assert (segmind.price_source, segmind.unit_price_usd) == ("declared", Decimal("0.125"))  # publishes none
    assert not [w for w in segmind.warnings if "live" in w.message]
    assert testing.billed(app) == 0  # a quote sends nothing billable


def test_a_live_quote_that_fal_refuses_is_the_declared_price_with_a_warning(app: Any) -> None:
    testing.set_faults(app, {"fal": [{"route": "pricing", "kind": "status", "status": 503}]})
    with client(app) as c:
        fal, _ = c.quote(request(), live=True)
    assert (fal.price_source, fal.unit_price_usd) == ("declared", Decimal("0.15"))
    assert any("live price could not be read" in w.message for w in fal.warnings)


def test_a_live_quote_without_a_key_is_the_declared_price_saying_why() -> None:
    with Client(["fal"], environ={}, journal=False, config=False) as c:
        (fal,) = c.quote(request(), live=True)
    assert fal.price_source == "declared" and fal.unit_price_usd == Decimal("0.15")
    assert any("FAL_KEY" in w.message for w in fal.warnings)


def test_a_quote_is_declared_unless_live_is_asked(app: Any) -> None:
    with client(app) as c:
        assert [q.price_source for q in c.quote(request())] == ["declared", "declared"]
    assert not [r for r in testing.state_of(app).ledger.entries()]


def test_the_async_client_awaits_a_live_quote(app: Any) -> None:
    async def main() -> list[Any]:
        async with AsyncClient(
            ["fal"],
            http=testing.async_client(app),
            base_urls=testing.base_urls(app),
            keys={"fal": KEY},
            journal=False,
            config=False,
        ) as c:
            assert c.quote(request())[0].price_source == "declared"  # no I/O: not awaited
            return await c.quote(request(), live=True)

    (fal,) = anyio.run(main)
    assert (fal.price_source, fal.unit_price_usd) == ("live", Decimal("0.15"))


def test_the_cost_segmind_reports_is_the_results_and_the_journals(app: Any, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    with client(app, journal=journal, limits={"segmind": {"requests_per_minute": None}}) as c:
        result = c.run(request(speed="quality"))  # fal first: it serves
        segmind = Client(
            ["segmind"],
            http=testing.sync_client(app),
            base_urls=testing.base_urls(app),
            keys={"segmind": KEY},
            journal=journal,
            config=False,
            limits={"segmind": {"requests_per_minute": None}},
        )
        with segmind:
            paid = segmind.run(request(speed="quality", num_images=2))
            record = segmind.journal.job(paid.job_id)  # type: ignore[union-attr]
    assert result.cost_source == "price_table"  # fal reports no cost: its price table
    (entry_a, entry_b) = testing.ledger(app, "segmind")
    assert paid.cost_source == "vendor" and paid.cost_usd == entry_a.cost_usd + entry_b.cost_usd == Decimal("0.50")
    assert (record.cost_usd, record.cost_source) == (Decimal("0.50"), "vendor")
    assert sorted(a.cost_usd for a in record.attempts if a.cost_usd is not None) == [Decimal("0.25")] * 2

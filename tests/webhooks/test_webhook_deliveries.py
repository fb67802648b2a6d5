"""The delivery stores: a delivery is taken once within the retention, the stores stay bounded, and the
database one is shared by every process (connection) using the same journal: a SQLite file, or the
PostgreSQL database a fleet's receivers share behind a load balancer."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ideochar.webhooks import DatabaseDeliveries, MemoryDeliveries, SqliteDeliveries


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _location(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        return str(tmp_path / "journal.sqlite3")
    return str(request.getfixturevalue("postgres_url"))  # a schema of this test's own


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the journal's database is: a SQLite file, or the PostgreSQL database a fleet shares."""
    return _location(request.param, request, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    def build(**options: object) -> MemoryDeliveries | DatabaseDeliveries:
        if request.param == "memory":
            return MemoryDeliveries(**options)  # type: ignore[arg-type]
        return DatabaseDeliveries(_location(request.param, request, tmp_path), **options)  # type: ignore[arg-type]

    return build


def test_a_delivery_is_first_once_per_vendor(make: object) -> None:
    store = make()  # type: ignore[operator]
    assert store.first("fal", "d1", "job-1") is True
    assert store.first("fal", "d1", "job-1") is False
    assert store.first("replicate", "d1", "job-2") is True  # ids are per vendor
    store.close()


def test_a_delivery_is_forgotten_after_the_retention(make: object) -> None:
    clock = Clock()
    store = make(retention_seconds=3600, clock=clock)  # type: ignore[operator]
    store.first("fal", "d1")
    clock.now += 3599
    assert store.first("fal", "d1") is False
    clock.now += 2
    assert store.first("fal", "d1") is True
    store.close()


def test_the_memory_store_is_bounded_oldest_first() -> None:
    store = MemoryDeliveries(max_entries=3)
    for n in range(5):
        store.first("fal", f"d{n}")
    assert len(store) == 3
    assert store.first("fal", "d4") is False and store.first("fal", "d0") is True


def test_the_database_store_is_bounded_when_it_prunes(location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import ideochar.webhooks._deliveries as deliveries

    monkeypatch.setattr(deliveries, "_PRUNE_EVERY", 10)
    clock = Clock()
    store = DatabaseDeliveries(location, max_entries=5, clock=clock)
    for n in range(19):
        clock.now += 1
        store.first("fal", f"d{n}")
    assert len(store) == 5 + 9  # pruned at the 10th: 5 kept, 9 since
    clock.now += 1
    store.first("fal", "d19")  # the 20th prunes again: the newest 5 stay, exactly
    assert len(store) == 5
    assert store.first("fal", "d19") is False and store.first("fal", "d0") is True
    store.close()


def test_two_connections_to_one_journal_share_what_was_taken(location: str) -> None:
    """Two worker processes of one web app (or two machines behind a load balancer), each with its own
    connection to the journal's database: of eight racing receivers exactly one takes the delivery."""
    one, two = DatabaseDeliveries(location), DatabaseDeliveries(location)
    firsts: list[bool] = []
    barrier = threading.Barrier(8)

    def take(store: DatabaseDeliveries) -> None:
        barrier.wait()
        firsts.append(store.first("replicate", "msg_race", "job"))

    threads = [threading.Thread(target=take, args=(one if n % 2 else two,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(firsts) == [False] * 7 + [True]
    one.close()
    two.close()


def test_the_former_name_still_opens_a_sqlite_file(tmp_path: Path) -> None:
    store = SqliteDeliveries(tmp_path / "j.sqlite3")
    assert isinstance(store, DatabaseDeliveries) and store.where == str(tmp_path / "j.sqlite3")
    store.close()


def test_the_password_stays_out_of_the_stores_name(postgres_url: str) -> None:
    """The test server trusts local connections, so a password in the URL is accepted and never asked for."""
    store = DatabaseDeliveries(postgres_url.replace("postgres@", "postgres:hunter2@", 1))
    assert "hunter2" not in repr(store) and "hunter2" not in store.where and "***" in store.where
    store.close()

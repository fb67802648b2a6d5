"""The delivery stores: a delivery is taken once within the retention, the stores stay bounded, and the
SQLite one is shared by every process (connection) using the same file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ideochar.webhooks import MemoryDeliveries, SqliteDeliveries


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    def build(**options: object) -> MemoryDeliveries | SqliteDeliveries:
        if request.param == "memory":
            return MemoryDeliveries(**options)  # type: ignore[arg-type]
        return SqliteDeliveries(tmp_path / "journal.sqlite3", **options)  # type: ignore[arg-type]

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


def test_the_sqlite_store_is_bounded_when_it_prunes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ideochar.webhooks._deliveries as deliveries

    monkeypatch.setattr(deliveries, "_PRUNE_EVERY", 10)
    clock = Clock()
    store = SqliteDeliveries(tmp_path / "j.sqlite3", max_entries=5, clock=clock)
    for n in range(20):
        clock.now += 1
        store.first("fal", f"d{n}")
    assert len(store) <= 5 + 10
    assert store.first("fal", "d19") is False and store.first("fal", "d0") is True
    store.close()


def test_two_connections_to_one_file_share_what_was_taken(tmp_path: Path) -> None:
    """Two worker processes of one web app, each with its own connection to the journal's file."""
    one, two = SqliteDeliveries(tmp_path / "j.sqlite3"), SqliteDeliveries(tmp_path / "j.sqlite3")
    firsts: list[bool] = []
    barrier = threading.Barrier(8)

    def take(store: SqliteDeliveries) -> None:
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

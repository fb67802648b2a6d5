"""A reference used by many jobs is uploaded once per vendor while its URL lives, and never used after.

Counted by the emulator itself (``testing.uploads``: every file a client put in a vendor's storage), in
process, through :class:`~ideochar.AsyncClient` with the journal on: the jobs run concurrently, so the
first one uploads and the others wait for its URL (one flight per image). A second client on the same
journal file (another process, the next day) finds the upload in the journal's ``uploads`` table. Past
the upload's life the next job uploads again: the emulator refuses an expired file, so a job that
reused one would fail.

A thousand jobs per vendor (about a minute each) run with ``IDEOCHAR_RELIABILITY=1`` (``make
reliability`` runs them)::

    IDEOCHAR_RELIABILITY=1 .venv/bin/pytest tests/emulator_vendors/test_uploads_once.py

``make test`` runs :data:`QUICK_JOBS` per vendor.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

from ideochar import AsyncClient
from ideochar.emulator import testing
from ideochar.uploads import REUSE_MARGIN_SECONDS
from ideochar_replicate import emulator as replicate_emulator

KEY = "uploads-test-key"
QUICK_JOBS = 40
FULL_JOBS = 1000
#: Replicate sends small images inline unless told otherwise: here every local image is uploaded.
OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "fal": {},
    "replicate": {"replicate": {"data_uri_max_bytes": 0}},
}
#: How long each vendor's upload lives: fal's as ideochar asks (24 h), Replicate's per its file's expires_at.
LIFETIME_SECONDS = {"fal": 24 * 3600.0, "replicate": 24 * 3600.0}


def reference(tmp_path: Path) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), (90, 30, 160)).save(buffer, "PNG")
    path = tmp_path / "hero.png"
    path.write_bytes(buffer.getvalue())
    return path


def client(app: Any, vendor: str, journal: Path | bool) -> AsyncClient:
    return AsyncClient(
        [vendor],
        http=testing.async_client(app, timeout=60),
        base_urls=testing.base_urls(app),
        keys={vendor: KEY},
        journal=journal,
        config=False,
        options=OPTIONS[vendor],
        limits={vendor: {"requests_per_minute": None}},
        deadline_seconds=600,
    )


async def run_jobs(c: AsyncClient, count: int, ref: Path) -> None:
    async def one(index: int) -> None:
        result = await c.generate(f"job {index}", ref, seed=index)
        assert result.images

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, index)


async def uploads_once(tmp_path: Path, vendor: str, jobs: int, patch: pytest.MonkeyPatch) -> None:
    app = testing.emulator_app(vendors=[vendor])
    state = testing.state_of(app)
    ref = reference(tmp_path)
    digest = hashlib.sha256(ref.read_bytes()).hexdigest()
    journal = tmp_path / "journal.sqlite3"

    async with client(app, vendor, journal) as first:
        await run_jobs(first, jobs, ref)
    assert testing.billed(app, vendor) == jobs
    assert testing.uploads(app, vendor, sha256=digest) == 1, "one upload for every job"

    async with client(app, vendor, journal) as later:  # another process: the journal's uploads table
        await run_jobs(later, 3, ref)
        assert testing.uploads(app, vendor, sha256=digest) == 1
        # The upload's life runs out (the emulator's files and the cache's clock move on together).
        ahead = LIFETIME_SECONDS[vendor] - REUSE_MARGIN_SECONDS + 1
        now = state.files.clock()
        state.files.clock = lambda: now + LIFETIME_SECONDS[vendor] + 1  # the vendor no longer serves it
        patch.setattr(replicate_emulator, "_now", state.files.clock)  # Replicate's own clock moves with it
        cache_now = later.uploads.clock()
        later.uploads.clock = lambda: cache_now + ahead
        await run_jobs(later, 3, ref)  # would fail if a job handed the expired URL to the vendor
    assert testing.uploads(app, vendor, sha256=digest) == 2
    assert testing.billed(app, vendor) == jobs + 6


@pytest.mark.parametrize("vendor", sorted(OPTIONS))
def test_a_reference_used_by_many_jobs_is_uploaded_once_per_vendor(
    tmp_path: Path, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    anyio.run(uploads_once, tmp_path, vendor, QUICK_JOBS, monkeypatch)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("IDEOCHAR_RELIABILITY"), reason="a thousand jobs: IDEOCHAR_RELIABILITY=1")
@pytest.mark.parametrize("vendor", sorted(OPTIONS))
def test_a_reference_used_by_a_thousand_jobs_is_uploaded_once_per_vendor(
    tmp_path: Path, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    anyio.run(uploads_once, tmp_path, vendor, FULL_JOBS, monkeypatch)


def test_without_a_journal_the_cache_is_in_memory_and_still_uploads_once(tmp_path: Path) -> None:
    async def main() -> None:
        app = testing.emulator_app(vendors=["fal"])
        ref = reference(tmp_path)
        async with client(app, "fal", False) as c:
            assert c.uploads.path is None
            await run_jobs(c, 10, ref)
        assert testing.uploads(app, "fal") == 1

    anyio.run(main)


def test_another_vendor_uploads_its_own_copy(tmp_path: Path) -> None:
    async def main() -> None:
        app = testing.emulator_app(vendors=["fal", "replicate"])
        ref = reference(tmp_path)
        journal = tmp_path / "j.sqlite3"
        for vendor in ("fal", "replicate"):
            async with client(app, vendor, journal) as c:
                await run_jobs(c, 3, ref)
        assert (testing.uploads(app, "fal"), testing.uploads(app, "replicate")) == (1, 1)

    anyio.run(main)

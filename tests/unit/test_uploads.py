"""The upload cache: reuse while an upload lives and never after, one flight per image, its own table in the
journal's file (shared by every process on it), tokens in memory only, and the toolkit's reuse_upload."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from conftest import CANARY_KEY, make_image
from ideochar._secrets import Secret
from ideochar.exchange import Sleep
from ideochar.journal import Journal
from ideochar.media import ImageInput
from ideochar.spec import CallContext
from ideochar.toolkit import reuse_upload, upload_scope
from ideochar.uploads import CLAIM_SECONDS, REUSE_MARGIN_SECONDS, Upload, UploadCache, UploadToken, account_fingerprint

SCOPE, DIGEST = "fal|https://rest.fal.ai:443|abc", "d" * 64


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_upload_is_found_while_more_than_the_margin_of_its_life_remains_and_never_after() -> None:
    clock = Clock()
    cache = UploadCache(clock=clock)
    cache.store(SCOPE, DIGEST, Upload("https://cdn/x.png", clock.now + REUSE_MARGIN_SECONDS + 10))
    assert cache.find(SCOPE, DIGEST) == Upload("https://cdn/x.png", clock.now + REUSE_MARGIN_SECONDS + 10)
    clock.now += 11
    assert cache.find(SCOPE, DIGEST) is None  # less than the margin left: not handed to a vendor
    assert cache.find(SCOPE, DIGEST, margin=0) is not None
    clock.now += REUSE_MARGIN_SECONDS
    assert cache.find(SCOPE, DIGEST, margin=0) is None  # expired: never


def test_scopes_and_digests_are_kept_apart() -> None:
    cache = UploadCache()
    cache.store(SCOPE, DIGEST, Upload("https://a", 9e12))
    assert cache.find("replicate|x|abc", DIGEST) is None and cache.find(SCOPE, "e" * 64) is None


def test_one_job_claims_an_upload_the_others_wait_and_a_failed_one_frees_it() -> None:
    clock = Clock()
    cache = UploadCache(clock=clock)
    assert cache.claim(SCOPE, DIGEST) and not cache.claim(SCOPE, DIGEST)
    cache.release(SCOPE, DIGEST)
    assert cache.claim(SCOPE, DIGEST)
    clock.now += CLAIM_SECONDS + 1  # its holder vanished: the claim lapses
    assert cache.claim(SCOPE, DIGEST)
    cache.store(SCOPE, DIGEST, Upload("https://a", 9e12))  # storing ends the claim
    assert cache.claim(SCOPE, DIGEST)


def test_the_table_lives_in_the_journals_file_and_every_process_on_it_shares_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as journal:
        version = journal._db.execute("PRAGMA user_version").fetchone()[0]
        first, second = UploadCache(path), UploadCache(path)
        first.store(SCOPE, DIGEST, Upload("https://cdn/shared.png", 9e12))
        assert second.find(SCOPE, DIGEST) == Upload("https://cdn/shared.png", 9e12)
        second.forget(SCOPE, DIGEST)
        assert UploadCache(path).find(SCOPE, DIGEST) is None
        first.close()
        second.close()
        assert journal._db.execute("PRAGMA user_version").fetchone()[0] == version  # the journal's schema is its own
    with Journal(path):  # the journal opens its file as before
        pass
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "uploads" in tables


def test_expired_rows_are_pruned_when_a_new_upload_is_written(tmp_path: Path) -> None:
    path, clock = tmp_path / "j.sqlite3", Clock()
    cache = UploadCache(path, clock=clock)
    cache.store(SCOPE, DIGEST, Upload("https://old", clock.now + 10))
    clock.now += 20
    cache.store(SCOPE, "e" * 64, Upload("https://new", clock.now + 9e6))
    rows = sqlite3.connect(path).execute("SELECT url FROM uploads").fetchall()
    assert rows == [("https://new",)]


def test_a_file_it_creates_is_the_owners_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "j.sqlite3"
    UploadCache(path).store(SCOPE, DIGEST, Upload("https://a", 9e12))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_file_it_cannot_use_leaves_the_cache_in_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    cache = UploadCache(blocker / "j.sqlite3")
    cache.store(SCOPE, DIGEST, Upload("https://a", 9e12))
    assert cache.find(SCOPE, DIGEST) == Upload("https://a", 9e12)
    assert "keeps uploads in memory" in caplog.text


def test_upload_tokens_are_held_in_memory_only(tmp_path: Path) -> None:
    path, clock = tmp_path / "j.sqlite3", Clock()
    cache = UploadCache(path, clock=clock)
    token = UploadToken(Secret("Bearer secret-cdn-token-123"), "https://v3.fal.media", clock.now + 600)
    cache.hold_token(SCOPE, token)
    cache.store(SCOPE, DIGEST, Upload("https://a", 9e12))
    assert cache.token(SCOPE) is token
    assert b"secret-cdn-token" not in path.read_bytes()
    clock.now += 560  # less than a minute left: a new one is asked for
    assert cache.token(SCOPE) is None
    cache.drop_token(SCOPE)
    assert cache._tokens == {}


def test_the_scope_names_the_account_by_a_one_way_fingerprint() -> None:
    ctx = CallContext("fal", Secret(CANARY_KEY), {"rest": "https://rest.fal.ai"})
    scope = upload_scope(ctx, "rest")
    assert scope == f"fal|https://rest.fal.ai:443|{account_fingerprint(Secret(CANARY_KEY))}"
    assert CANARY_KEY not in scope and CANARY_KEY[:12] not in scope
    other = upload_scope(CallContext("fal", Secret("another-key-77777"), {"rest": "https://rest.fal.ai"}), "rest")
    assert other != scope


# -- reuse_upload: the toolkit's one flight ----------------------------------------------------------------------


def _run(flow: Any) -> tuple[str, int]:
    """Drive a flow whose only steps are sleeps; (its result, how many sleeps)."""
    sleeps = 0
    try:
        step = next(flow)
        while True:
            assert isinstance(step, Sleep)
            sleeps += 1
            step = flow.send(None)
    except StopIteration as stop:
        return stop.value, sleeps


def _uploader(made: list[str], url: str = "https://cdn/one.png") -> Any:
    def upload() -> Any:
        made.append(url)
        return Upload(url, 9e12)
        yield  # pragma: no cover

    return upload


def test_without_a_cache_every_call_uploads() -> None:
    made: list[str] = []
    ctx = CallContext("fal", Secret(CANARY_KEY), {"rest": "https://rest.fal.ai"})
    image = ImageInput.of(make_image())
    for _ in range(2):
        assert _run(reuse_upload(ctx, image, scope=SCOPE, upload=_uploader(made)))[0] == "https://cdn/one.png"
    assert made == ["https://cdn/one.png"] * 2


def test_a_job_waits_for_the_upload_another_job_is_making_then_reuses_it() -> None:
    cache = UploadCache()
    ctx = CallContext("fal", Secret(CANARY_KEY), {"rest": "https://rest.fal.ai"}, uploads=cache)
    image = ImageInput.of(make_image())
    made: list[str] = []
    holding = reuse_upload(ctx, image, scope=SCOPE, upload=_slow_uploader(made))
    assert isinstance(next(holding), Sleep)  # the first job is uploading (its own step)
    waiting = reuse_upload(ctx, image, scope=SCOPE, upload=_uploader(made, "https://cdn/second.png"))
    assert isinstance(next(waiting), Sleep)  # the second waits for it
    with pytest.raises(StopIteration) as first:
        holding.send(None)
    assert first.value.value == "https://cdn/one.png"
    with pytest.raises(StopIteration) as second:
        waiting.send(None)
    assert second.value.value == "https://cdn/one.png" and made == ["https://cdn/one.png"]


def test_a_failed_upload_lets_the_next_job_upload() -> None:
    cache = UploadCache()
    ctx = CallContext("fal", Secret(CANARY_KEY), {"rest": "https://rest.fal.ai"}, uploads=cache)
    image = ImageInput.of(make_image())

    def broken() -> Any:
        raise RuntimeError("the storage refused")
        yield  # pragma: no cover

    with pytest.raises(RuntimeError):
        _run(reuse_upload(ctx, image, scope=SCOPE, upload=broken))
    made: list[str] = []
    assert _run(reuse_upload(ctx, image, scope=SCOPE, upload=_uploader(made))) == ("https://cdn/one.png", 0)


def _slow_uploader(made: list[str]) -> Any:
    def upload() -> Any:
        yield Sleep(0)  # a Send step in real life: the job holds the claim meanwhile
        made.append("https://cdn/one.png")
        return Upload("https://cdn/one.png", 9e12)

    return upload

"""The journal's own promises, without a client: owner-only files, secrets kept out, bounded numbers,
positive "nothing was sent" records, and who may take a job over.

Every test runs against both databases: ``where`` is a SQLite file or a PostgreSQL schema of its own.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import make_image
from ideochar import CharacterRequest, InvalidRequest, JobBusy
from ideochar.journal import Journal, Owner, rebuild_request
from ideochar.result import GeneratedImage
from journal_backends import BACKENDS, all_text, is_postgres, location_for

SIGNED = "https://bucket.example/face.png?X-Amz-Signature=deadbeefcafe&X-Amz-Expires=600"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=BACKENDS)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The journal's database: ``tmp_path / "j.sqlite3"``, or a PostgreSQL schema."""
    return location_for(request, tmp_path / "j.sqlite3")


def test_the_journal_and_its_outputs_are_readable_by_their_owner_only(tmp_path: Path, where: Any) -> None:
    os.umask(0o022)
    location = where if is_postgres(where) else tmp_path / "state" / "ideochar" / "journal.sqlite3"
    journal = Journal(location, output_dir=tmp_path / "state" / "ideochar" / "outputs")
    journal.create_job("job-1", CharacterRequest(prompt="x", reference=make_image(8, 8)))
    image = GeneratedImage(data=make_image(8, 8), content_type="image/png")
    [saved] = journal.record_outputs("job-1", [image], part="0")
    journal.close()
    assert mode(tmp_path / "state") == 0o700 and mode(tmp_path / "state" / "ideochar") == 0o700
    if not is_postgres(where):
        assert mode(journal.path) == 0o600
        for sidecar in journal.path.parent.glob("journal.sqlite3-*"):
            assert mode(sidecar) == 0o600, sidecar
    assert mode(saved) == 0o600 and mode(saved.parent) == 0o700 and mode(journal.output_dir) == 0o700


def test_a_signed_input_url_is_stored_without_its_signature_and_is_not_rebuilt(where: Any) -> None:
    with Journal(where) as journal:
        journal.create_job("job-1", CharacterRequest(prompt="x", reference=SIGNED))
        record = journal.job("job-1")
    text = all_text(where)
    assert b"deadbeefcafe" not in text and "deadbeefcafe" not in str(record.to_dict())
    with pytest.raises(InvalidRequest, match="signature") as caught:
        rebuild_request(record.request)
    assert caught.value.field == "reference"


def test_a_vendor_number_past_sqlite_keeps_the_vendor_id(where: Any) -> None:
    with Journal(where) as journal:
        journal.create_job("job-1", CharacterRequest(prompt="x", reference=make_image(8, 8)))
        journal.start_attempt("job-1", "a1", provider="fal", part=("0", 1, None))
        journal.intend("job-1", "a1", part="0", marker=None, at=time.time())
        journal.admitted("a1", vendor_request_id="req-1", resume={"request_id": "req-1"}, queue_position=2**64)
        journal.progress("a1", status="queued", queue_position=2**63, vendor_request_id=None)
        [attempt] = journal.job("job-1").attempts
    assert (attempt.vendor_request_id, attempt.queue_position, attempt.status) == ("req-1", None, "submitted")


def test_only_the_intent_marks_a_part_as_possibly_sent(where: Any) -> None:
    with Journal(where) as journal:
        journal.create_job("job-1", CharacterRequest(prompt="x", reference=make_image(8, 8), num_images=2))
        journal.start_attempt("job-1", "a1", provider="fal", part=("0", 2, None), quote_usd=Decimal("0.3"))
        [part] = journal.job("job-1").parts
        assert part.state == "planned"
        journal.intend("job-1", "a1", part="0", marker={"prompt": "x"}, at=time.time())
        record = journal.job("job-1")
    assert record.parts[0].state == "sent"
    [attempt] = record.attempts
    assert attempt.status == "sending" and attempt.lost and attempt.marker == {"prompt": "x"}
    assert record.possibly_billed_usd == Decimal("0.3")


def claimed(where: Any, owner: Owner) -> Journal:
    journal = Journal(where)
    journal.create_job("job-1", CharacterRequest(prompt="x", reference=make_image(8, 8)), owner=owner)
    return journal


def test_a_job_run_by_a_live_process_is_not_taken_over(where: Any) -> None:
    running = Owner.current()
    journal = claimed(where, running)
    with pytest.raises(JobBusy) as caught:
        journal.claim("job-1", Owner.current())
    assert str(os.getpid()) in (caught.value.owner or "")
    journal.release("job-1", running)
    journal.claim("job-1", Owner.current())  # released: free
    journal.close()


def test_a_job_whose_process_died_is_free_at_once(where: Any) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead = Owner(host=Owner.current().host, pid=int(child.stdout), started=None, token="dead-run")
    journal = claimed(where, dead)
    journal.claim("job-1", Owner.current())
    assert journal.job("job-1").owner is not None
    journal.close()


def test_a_claim_closes_an_attempt_whose_images_were_saved_before_its_owner_died(where: Any, tmp_path: Path) -> None:
    """Killed between saving an attempt's images and recording its end: the next owner finds the attempt
    served and billed, not open (the fleet test caught a finished job with an attempt still "submitted")."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead = Owner(host=Owner.current().host, pid=int(child.stdout), started=None, token="dead-run")
    journal = Journal(where, output_dir=tmp_path / "out")
    journal.create_job("job-1", CharacterRequest(prompt="x", reference=make_image(8, 8)), owner=dead)
    image = GeneratedImage(data=make_image(8, 8), content_type="image/png")
    for key, saved in (("served", 2), ("half", 1)):
        journal.start_attempt("job-1", key, provider="fal", part=(key, 2, None))
        journal.intend("job-1", key, part=key, marker=None, at=time.time())
        journal.admitted(key, vendor_request_id=f"req-{key}", resume={"request_id": f"req-{key}"})
        journal.record_outputs("job-1", [image] * saved, part=key, attempt=key, provider="fal")
    journal.claim("job-1", Owner.current())
    attempts = {a.key: a for a in journal.job("job-1").attempts}
    served = attempts["served"]
    assert (served.status, served.billed, served.open) == ("succeeded", "yes", False)
    assert attempts["half"].status == "submitted" and attempts["half"].open  # one image still at the vendor
    journal.close()


def test_a_job_on_another_machine_is_free_only_once_its_lease_runs_out(where: Any) -> None:
    elsewhere = Owner(host="other-host/0123", pid=1, started=None, token="remote-run")
    journal = claimed(where, elsewhere)
    with pytest.raises(JobBusy, match="other-host"):
        journal.claim("job-1", Owner.current())
    journal.close()
    with Journal(where, lease_seconds=0.05) as short:  # closed: nobody here renews it
        short.create_job("job-2", CharacterRequest(prompt="x", reference=make_image(8, 8)), owner=elsewhere)
    time.sleep(0.1)
    with Journal(where) as journal:
        journal.claim("job-2", Owner.current())


def test_the_owner_renews_its_lease_while_it_runs(where: Any) -> None:
    journal = Journal(where, lease_seconds=0.3)
    journal.create_job("job-1", CharacterRequest(prompt="x", reference=make_image(8, 8)), owner=Owner.current())
    first = journal._db.execute("SELECT lease_until FROM jobs").fetchone()[0]
    time.sleep(0.35)
    renewed = journal._db.execute("SELECT lease_until FROM jobs").fetchone()[0]
    journal.close()
    assert renewed > first

"""Issue 7.4: with a canary key, no key anywhere a user, a log or a disk could see it.

Whole jobs run against every vendor's emulator with the canary as the key: a success and each kind
of failure, including vendors that echo the key back in an error body. After each one, the canary
(and its secret half) must be absent from:

* every log record at DEBUG, of every logger (ideochar's, httpx's, httpcore's), message and traceback;
* the ``repr``/``str`` of the client, the call context, the request, the result or the error (with
  its whole traceback and cause chain), and a pickle of the result or the error;
* every event the job emitted;
* the journal database (and its WAL), and every file written to the output folder;
* a cassette recorded of the job with the project's recorder (tests/vcr_support.py);
* the command line's stdout and stderr, with ``--json`` and with ``--debug`` tracebacks, in a real
  process with the key in the vendor's environment variable.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import CANARY_KEY, make_image
from ideochar import AsyncClient, Client
from ideochar._secrets import Secret
from ideochar.errors import IdeocharError
from ideochar.spec import CallContext
from reliability.harness import providers

testing = pytest.importorskip("ideochar.emulator.testing")

VENDORS = sorted({"fal", "segmind", "ideogram", "replicate"} & set(providers()))
#: What must never appear: the key, and the part of it that is random (a key split or truncated).
NEEDLES = (CANARY_KEY, CANARY_KEY.rsplit("-", 1)[-1])
ECHO = {"detail": f"Invalid key: {CANARY_KEY}", "error": f"the key {CANARY_KEY} was refused"}
#: A fault per kind of failure (None: the job succeeds). Route "*" fires on the vendor's first request.
SCENARIOS: dict[str, list[dict[str, Any]] | None] = {
    "success": None,
    "auth_refused_echoing_the_key": [{"route": "*", "kind": "status", "status": 401, "body": ECHO}],
    "server_error_echoing_the_key": [{"route": "*", "kind": "status", "status": 500, "body": f"boom {CANARY_KEY}"}],
    "bad_request_echoing_the_key": [{"route": "*", "kind": "status", "status": 400, "body": ECHO}],
    "rate_limited": [{"route": "*", "kind": "rate_limit", "retry_after": 0, "times": 1}],
    "dropped_after_admission": [{"route": "*", "kind": "drop_after_admit"}],
    "malformed_json": [{"route": "*", "kind": "malformed_json"}],
    "truncated_body": [{"route": "*", "kind": "truncate"}],
    "result_url_expired": [{"route": "files", "kind": "expire"}],
}
UNLIMITED = {vendor: {"requests_per_minute": 1_000_000} for vendor in VENDORS}


def leaks(*texts: Any) -> list[str]:
    """The texts (stringified) that hold a needle, shortened to show where."""
    found = []
    for text in texts:
        value = text if isinstance(text, (str, bytes)) else str(text)
        for needle in NEEDLES:
            hit = needle.encode() in value if isinstance(value, bytes) else needle in value
            if hit:
                found.append(repr(value[:160]))
    return found


def files_under(folder: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


@pytest.fixture(scope="module")
def app() -> Any:
    return testing.emulator_app(model_seconds=0)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("ideochar", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _record_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            texts.append("".join(traceback.format_exception(record.exc_info[1])))
    return texts


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("vendor", VENDORS)
def test_no_key_in_logs_reprs_pickles_events_journal_or_outputs(
    vendor: str, scenario: str, app: Any, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    testing.reset(app)
    testing.set_faults(app, {vendor: SCENARIOS[scenario]} if SCENARIOS[scenario] else None)
    events: list[Any] = []
    outcome: Any = None
    with (
        testing.sync_client(app) as http,
        Client(
            [vendor],
            http=http,
            base_urls=testing.base_urls(app),
            keys={vendor: CANARY_KEY},
            journal=tmp_path / "journal.sqlite3",
            output_dir=tmp_path / "out",
            config=False,
            deadline_seconds=20,
            limits=UNLIMITED,
            on_event=events.append,
        ) as client,
    ):
        try:
            outcome = client.generate("a knight in the rain", make_image(64, 64), seed=5, num_images=2)
        except IdeocharError as exc:
            outcome = exc
        texts: list[Any] = [repr(client), str(client), repr(outcome), str(outcome), pickle.dumps(outcome)]
        if isinstance(outcome, BaseException):
            texts.append("".join(traceback.format_exception(outcome)))
            texts += [repr(getattr(outcome, name, None)) for name in ("body", "attempts", "errors")]
        else:
            texts.append(repr(outcome.model_dump(exclude={"images": {"__all__": {"data"}}})))
        texts += [repr(event) for event in events]
        journal = client.journal
        assert journal is not None
        texts += [json.dumps(job.to_dict(), default=str) for job in journal.jobs(limit=None)]
    texts += _record_texts(debug_logs)
    texts += [data for _, data in files_under(tmp_path)]  # the database, its WAL, the images
    assert leaks(*texts) == []
    if scenario == "success":
        assert not isinstance(outcome, BaseException), outcome


def test_no_key_in_the_async_client_its_errors_or_logs(
    app: Any, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    testing.reset(app)
    testing.set_faults(app, {"*": [{"route": "*", "kind": "status", "status": 403, "body": ECHO}]})

    async def main() -> list[Any]:
        texts: list[Any] = []
        for vendor in VENDORS:
            async with AsyncClient(
                [vendor],
                http=testing.async_client(app),
                base_urls=testing.base_urls(app),
                keys={vendor: CANARY_KEY},
                journal=tmp_path / "journal.sqlite3",
                config=False,
                limits=UNLIMITED,
            ) as client:
                try:
                    await client.generate("a knight", make_image(64, 64))
                except IdeocharError as exc:
                    texts += [repr(client), repr(exc), str(exc), pickle.dumps(exc)]
                    texts.append("".join(traceback.format_exception(exc)))
                else:
                    pytest.fail(f"{vendor}: a 403 did not fail the job")
        return texts

    texts = anyio.run(main)
    texts += _record_texts(debug_logs)
    texts += [data for _, data in files_under(tmp_path)]
    assert leaks(*texts) == []


def test_no_key_in_the_repr_or_pickle_of_a_secret_or_call_context() -> None:
    secret = Secret(CANARY_KEY)
    ctx = CallContext(provider="fal", credentials=secret, base_urls={"queue": "https://queue.fal.run"})
    assert leaks(repr(secret), str(secret), repr(ctx), str(ctx), pickle.dumps(secret), f"{secret}", f"{ctx!r}") == []
    assert secret.reveal() == CANARY_KEY  # the value is still there for the wire


def test_no_key_in_a_cassette_recorded_of_whole_jobs(app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vcr_support = pytest.importorskip("vcr_support")
    monkeypatch.setattr(vcr_support, "CASSETTE_ROOT", tmp_path)
    monkeypatch.setenv(vcr_support.RECORD_ENV, "emulator")
    testing.reset(app)
    for vendor in VENDORS:
        testing.set_faults(app, None)
        for name, faults in (
            ("success", None),
            ("echo", [{"route": "*", "kind": "status", "status": 401, "body": ECHO}]),
        ):
            testing.set_faults(app, {vendor: faults} if faults else None)
            transport = testing.SyncASGITransport(app)
            with vcr_support.cassette(vendor, "emulator", name, transport=transport) as http:
                client = Client(
                    [vendor],
                    http=http,
                    base_urls=testing.base_urls(app),
                    keys={vendor: CANARY_KEY},
                    journal=False,
                    config=False,
                    limits=UNLIMITED,
                )
                try:
                    client.generate("a knight", make_image(64, 64), seed=1)
                except IdeocharError:
                    assert name == "echo"
            transport.close()
    recorded = list(files_under(tmp_path))
    assert len(recorded) == 2 * len(VENDORS)
    assert leaks(*(data for _, data in recorded)) == []
    assert [str(path) for path, data in recorded if vcr_support.find_key_shaped(data.decode("utf-8", "replace"))] == []


# -- the command line, in a real process ---------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[Any]:
    with testing.running_emulator(model_seconds=0) as server:
        yield server


def _cli(server: Any, tmp_path: Path, vendor: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "ideochar.toml"
    lines = [f'journal = "{tmp_path / "journal.sqlite3"}"', f'output_dir = "{tmp_path / "out"}"']
    for name, urls in testing.base_urls(server).items():
        lines.append(f"[base_urls.{name}]")
        lines += [f'{key} = "{url}"' for key, url in urls.items()]
    config.write_text("\n".join(lines) + "\n")
    variables = {p.info.name: p.info.credential_variables[0] for p in providers().values()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOCHAR_")}
    env.update({name: CANARY_KEY for name in variables[vendor]}, IDEOCHAR_CONFIG=str(config), NO_COLOR="1")
    reference = tmp_path / "hero.png"
    reference.write_bytes(make_image(64, 64))
    command = [
        sys.executable,
        "-m",
        "ideochar.cli",
        *args,
        "-p",
        vendor,
        "-r",
        str(reference),
        "-o",
        str(tmp_path / "o"),
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path, check=False)


AUTH_ECHO = [{"route": "*", "kind": "status", "status": 401, "body": ECHO}]
DROPPED = [{"route": "*", "kind": "drop_after_admit"}]


@pytest.mark.parametrize(
    ("faults", "flags"),
    [
        (None, ("--json",)),
        (None, ("--debug",)),
        (AUTH_ECHO, ("--json",)),
        (AUTH_ECHO, ("--debug",)),
        (DROPPED, ("--json", "--debug")),
    ],
    ids=["success-json", "success-debug", "auth_echo-json", "auth_echo-debug", "dropped-json-debug"],
)
def test_no_key_in_cli_output_json_or_debug_tracebacks(
    served: Any, tmp_path: Path, faults: list[dict[str, Any]] | None, flags: tuple[str, ...]
) -> None:
    vendor = VENDORS[0]
    testing.set_faults(served, {vendor: faults} if faults else None)
    done = _cli(served, tmp_path, vendor, "generate", "a knight in the rain", *flags)
    assert (done.returncode == 0) == (faults is None), done.stderr[-2000:]
    assert done.stdout or done.stderr
    assert leaks(done.stdout, done.stderr) == []
    assert leaks(*(data for _, data in files_under(tmp_path))) == []
    if "--debug" in flags and faults:
        assert "Traceback" in done.stderr or "Error" in done.stderr

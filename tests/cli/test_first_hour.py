"""The first hour of a new user (issue 14): each step the docs show works, and fails helpfully when it must.

One test (or a few) per item of the issue, each able to fail on the command line as it was: the emulator's
missing extra, emulated jobs in the journal, quote and the configuration, fan-out calls run together,
resuming with a deadline and the right advice, the missing-key message in Python, the smaller papercuts;
then what users of comparable command lines expect: stored keys, a prompt from stdin, completion,
pruning, --open, a time next to the price, --debug's HTTP log, --allow-private-urls.
"""

from __future__ import annotations

import json
import re
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import CANARY_KEY, make_image
from ideochar import Client, MissingCredentials, hookimpl
from ideochar._cli.errors import error_lines, without_resume_advice
from ideochar.cli import CliState, cli
from ideochar.errors import OutcomeUnknown
from ideochar.journal import Journal
from ideochar.plugins import plugin_manager
from ideochar.spec import Provider

from .conftest import FakeProvider, Invoke, Vendors

ROOT = Path(__file__).resolve().parents[2]


def _job_ids(invoke: Invoke) -> list[str]:
    return [job["id"] for job in json.loads(invoke("jobs", "list", "--json").stdout)["jobs"]]


def _interrupted(invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path, *extra: str) -> str:
    """A job alpha admitted, then the run was stopped: its id."""
    vendors["alpha"].interrupt_after_submit = True
    stopped = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path / "o"), "-q", *extra)
    assert stopped.exit_code == 130, stopped.output
    vendors["alpha"].interrupt_after_submit = False
    return _job_ids(invoke)[0]


# -- 2. the emulator's extra -----------------------------------------------------------------------------


@pytest.fixture
def no_emulator_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """As after a plain ``pip install ideochar``: Starlette and uvicorn cannot be imported."""
    monkeypatch.setitem(sys.modules, "starlette", None)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [["generate", "x", "-r", "REF", "-p", "alpha", "--emulator"], ["emulator", "serve", "--port", "0"]],
    ids=["generate-emulator", "emulator-serve"],
)
def test_without_the_emulator_extra_the_command_says_what_to_install(
    no_emulator_extra: None, invoke: Invoke, vendors: Vendors, reference: str, args: list[str]
) -> None:
    result = invoke(*[reference if a == "REF" else a for a in args])
    assert result.exit_code == 2, result.output
    assert 'pip install "ideochar[emulator]"' in result.stderr
    assert "internal error" not in result.output and "ModuleNotFoundError" not in result.output
    assert vendors["alpha"].requests == []


def test_the_missing_key_hint_says_to_install_the_emulator_when_it_is_missing(
    no_emulator_extra: None, state: CliState, invoke: Invoke, reference: str, tmp_path: Path
) -> None:
    state.environ = {"IDEOCHAR_JOURNAL": "off", "IDEOCHAR_CONFIG": "off"}
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path))
    assert result.exit_code == MissingCredentials.exit_code
    assert 'install it (pip install "ideochar[emulator]"), then add --emulator' in result.stderr
    assert "ideochar keys set alpha" in result.stderr


# -- 3. emulated runs from Python: journaled, marked, not spent ---------------------------------------------


def test_an_emulated_python_run_is_journaled_and_marked(tmp_path: Path) -> None:
    from ideochar.assets import reference_bytes

    journal = tmp_path / "journal.sqlite3"
    with Client(["fal"], emulator=True, journal=journal, config=False) as client:
        result = client.generate("a knight", reference=reference_bytes())
    with Journal(journal) as opened:
        job = opened.job(result.job_id or "")
        totals = opened.totals()
    assert job.emulated and job.spent_usd == 0 and job.emulated_cost_usd == result.cost_usd
    assert (totals.jobs, totals.spent_usd, totals.emulated_jobs) == (0, 0, 1)


def test_a_journal_of_schema_2_is_migrated_and_its_jobs_still_count(tmp_path: Path) -> None:
    import sqlite3

    from ideochar.journal import _MIGRATIONS

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    for version in (0, 1):
        for statement in _MIGRATIONS[version]:
            db.execute(statement)
    db.execute(
        "INSERT INTO jobs (id, created_at, updated_at, status, operation, prompt, num_images, request, plan)"
        " VALUES ('old-job-1', 1, 1, 'succeeded', 'generate', 'x', 1, '{}', '{}')"
    )
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    with Journal(path) as journal:
        assert journal.job("old-job-1").emulated is False
        assert journal.totals().jobs == 1
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3


# -- 4. quote reads the configuration ---------------------------------------------------------------------


def test_quote_reads_the_configuration_file_as_generate_does(state: CliState, invoke: Invoke, tmp_path: Path) -> None:
    config = tmp_path / "project.toml"
    config.write_text('providers = ["beta"]\nmax_cost_usd = 0.01\n')
    result = invoke("quote", "x", "--config", str(config))
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.stdout.splitlines()[2:] if line.strip()][:2]
    assert rows[0] == "beta" and "alpha" not in result.stdout.split("\n\n")[0]
    assert "over --max-cost $0.01" in result.stdout

    state.environ = {**(state.environ or {}), "IDEOCHAR_CONFIG": str(config)}
    assert "over --max-cost $0.01" in invoke("quote", "x").stdout  # the variable names it too


def test_quote_reports_a_broken_configuration_file(invoke: Invoke, tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("providers = [\n")
    result = invoke("quote", "x", "--config", str(config))
    assert result.exit_code == 2
    assert str(config) in result.stderr and "not valid TOML" in result.stderr


# -- 5. fan-out calls run together ------------------------------------------------------------------------------


def test_the_calls_of_a_fan_out_run_together(invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path) -> None:
    vendors["alpha"].barrier = threading.Barrier(3, timeout=10)  # each POST waits for the other two
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "-n", "3", "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["images"]) == 3
    assert len(vendors["alpha"].requests) == 3


# -- 6. resuming: a deadline, progress, and advice that fits ----------------------------------------------------


def test_resume_shows_its_plan_at_once_and_stops_at_the_deadline(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    job = _interrupted(invoke, vendors, reference, tmp_path)
    vendors.polls["alpha"] = [3] * 10**6  # the vendor keeps it queued
    result = invoke("jobs", "resume", job[:8], "--deadline", "0.5", "--out", str(tmp_path), "--progress", "plain")
    assert result.exit_code == OutcomeUnknown.exit_code
    lines = result.stderr.splitlines()
    assert lines[0] == f"resuming job {job[:12]} (running): picking up 1 admitted call(s): alpha alpha-job-1"
    assert "queued (position 3)" in result.stderr
    assert "resume it by its id" not in result.stderr
    assert f"Run ideochar jobs resume {job[:12]} again later (--deadline SECONDS waits longer)" in result.stderr
    assert len(vendors["alpha"].requests) == 1  # never sent again


def _library_phrasings() -> list[str]:
    """Every sentence in the library that tells its reader to resume by id (router and providers)."""
    found = []
    for folder in ("src", "providers"):
        for path in (ROOT / folder).rglob("*.py"):
            if "_cli" in path.parts:
                continue  # the command line's own renderer
            for match in re.finditer(r'"([^"\n]*resume it by[^"\n]*)"', path.read_text(encoding="utf-8")):
                found.append(match[1])
    return found


def test_every_resume_advice_of_the_library_is_replaced_while_resuming() -> None:
    phrasings = _library_phrasings()
    assert len(phrasings) >= 2, phrasings  # the router's and Segmind's, at least
    for text in phrasings:
        error = OutcomeUnknown(f"fal admitted job v-1 and then could not be reached. {text}", vendor_request_id="v-1")
        lines = error_lines(error, resuming="0123456789abcdef")
        assert not any("resume it by" in line for line in lines), (text, lines)
        assert "Run ideochar jobs resume 0123456789ab again later" in lines[-1]
    assert without_resume_advice("It may still finish; resume it by its id.") == "It may still finish."


def test_resuming_a_finished_job_does_not_charge_again(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    done = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q")
    assert done.exit_code == 0
    job = _job_ids(invoke)[0]
    again = invoke("jobs", "resume", job, "--out", str(tmp_path / "again"), "-q")
    assert again.exit_code == 0, again.output
    assert "charged when the job first ran; resuming charged nothing more" in again.stdout
    assert len(vendors["alpha"].requests) == 1


# -- 7. the missing-key message in Python -----------------------------------------------------------------------


def test_the_missing_key_message_names_each_provider_in_python_words(state: CliState) -> None:
    client = Client(["alpha", "beta"], plugin_manager=state.pm, environ={}, config=False, journal=False)
    with client, pytest.raises(MissingCredentials) as missing:
        client.generate("x", reference=make_image(8, 8))
    message = str(missing.value)
    assert "keys={'alpha': ...}" in message and "keys={'beta': ...}" in message
    assert "alpha, beta'" not in message
    assert "alpha (set ALPHA_KEY or ALPHA_ID + ALPHA_SECRET)" in message
    assert "emulator=True" in message and "--emulator" not in message
    assert missing.value.by_provider == {
        "alpha": ["ALPHA_KEY", "ALPHA_ID + ALPHA_SECRET"],
        "beta": ["BETA_KEY", "BETA_ID + BETA_SECRET"],
    }


# -- 9. smaller ones --------------------------------------------------------------------------------------------


def test_a_provider_failing_every_call_of_a_fan_out_is_summarised_once(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    vendors["alpha"].status = 500
    result = invoke("generate", "x", "-r", reference, "-p", "alpha,beta", "-n", "3", "--out", str(tmp_path), "-q")
    assert result.exit_code == 0, result.output
    tried = [line for line in result.stdout.splitlines() if line.startswith("tried ")]
    assert tried == ["tried alpha first, 3 times: ProviderUnavailable (billed: no)"]


def test_a_short_job_id_says_the_minimum(invoke: Invoke) -> None:
    result = invoke("jobs", "show", "abc")
    assert result.exit_code == 2
    assert "give at least 4 characters of the job's id" in result.stderr


def test_quote_over_budget_names_no_cheapest_provider(invoke: Invoke) -> None:
    result = invoke("quote", "x", "--max-cost", "0.01")
    assert result.exit_code == 0
    assert "cheapest:" not in result.stdout
    assert (
        "no provider can serve this within --max-cost $0.01; without them the cheapest would be beta" in result.stdout
    )


# -- stored keys ----------------------------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keys stored in a file under a configuration folder of the test's own (no keyring is used)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    from ideochar.keystore import keys_file

    return keys_file()


@pytest.fixture
def with_key_store(state: CliState) -> CliState:
    """The state's plugins plus the stored-keys plugin, as an installed ideochar has them."""
    import ideochar.keystore

    providers = [plugin for _, plugin in state.pm.list_name_plugin() if plugin is not None]
    state.plugin_manager = plugin_manager(load_entrypoints=False, plugins=[*providers, ideochar.keystore])
    state.environ = {k: v for k, v in (state.environ or {}).items() if not k.startswith("ALPHA")}
    return state


def test_a_stored_key_is_used_never_shown_and_the_environment_wins(
    with_key_store: CliState, invoke: Invoke, vendors: Vendors, key_file: Path, reference: str, tmp_path: Path
) -> None:
    stored = invoke("keys", "set", "alpha", input=CANARY_KEY + "\n")
    assert stored.exit_code == 0, stored.output
    assert CANARY_KEY not in stored.output and str(key_file) in stored.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700

    listed = invoke("keys", "list")
    assert CANARY_KEY not in listed.output
    assert re.search(r"^alpha\s+set\s+stored", listed.stdout, re.M)
    assert re.search(r"^beta\s+set\s+environment", listed.stdout, re.M)
    alpha = next(line for line in invoke("providers").stdout.splitlines() if line.startswith("alpha "))
    assert alpha.endswith("(stored)") and CANARY_KEY not in alpha

    assert invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q").exit_code == 0
    with_key_store.environ = {**(with_key_store.environ or {}), "ALPHA_KEY": "alpha-from-the-environment"}
    assert invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q").exit_code == 0
    assert vendors["alpha"].keys_seen == [CANARY_KEY, "alpha-from-the-environment"]

    removed = invoke("keys", "remove", "alpha")
    assert removed.exit_code == 0 and "removed the key for alpha" in removed.stderr
    assert "alpha" not in json.loads(key_file.read_text())


def test_keys_set_refuses_an_unknown_provider_and_an_empty_key(
    with_key_store: CliState, invoke: Invoke, key_file: Path
) -> None:
    unknown = invoke("keys", "set", "nope", input="k\n")
    assert unknown.exit_code == 2 and "no provider named 'nope'" in unknown.stderr
    empty = invoke("keys", "set", "alpha", input="\n")
    assert empty.exit_code == 2 and "no key was given" in empty.stderr
    assert not key_file.exists()


def test_the_system_keyring_is_used_where_there_is_one() -> None:
    from ideochar.keystore import KEYRING_SERVICE, key_store

    class Ring:
        priority = 5

        def __init__(self) -> None:
            self.saved: dict[tuple[str, str], str] = {}

        def get_keyring(self) -> Ring:
            return self

        def get_password(self, service: str, user: str) -> str | None:
            return self.saved.get((service, user))

        def set_password(self, service: str, user: str, key: str) -> None:
            self.saved[(service, user)] = key

        def delete_password(self, service: str, user: str) -> None:
            del self.saved[(service, user)]

    ring = Ring()
    store = key_store({}, keyring_module=ring)
    assert store.backend == "keyring" and "system keyring" in store.where
    store.set("fal", CANARY_KEY)
    assert ring.saved == {(KEYRING_SERVICE, "fal"): CANARY_KEY} and store.get("fal") == CANARY_KEY
    assert store.delete("fal") and store.get("fal") is None
    assert key_store({"IDEOCHAR_KEYRING": "off"}, keyring_module=ring).backend == "file"


# -- the prompt from stdin, completion ----------------------------------------------------------------------------


def test_the_prompt_can_come_from_stdin(invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path) -> None:
    result = invoke("generate", "-", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q", input="a knight\n")
    assert result.exit_code == 0, result.output
    assert vendors["alpha"].requests[0].prompt == "a knight"
    empty = invoke("generate", "-", "-r", reference, "-p", "alpha", "--out", str(tmp_path), input="")
    assert empty.exit_code == 2 and "stdin, which was empty" in empty.stderr


def test_shell_completion_is_click_s_and_completes_provider_names(state: CliState) -> None:
    runner = CliRunner()
    script = runner.invoke(cli, [], prog_name="ideochar", obj=state, env={"_IDEOCHAR_COMPLETE": "bash_source"})
    assert "_ideochar_completion" in script.output and "complete " in script.output
    env = {"_IDEOCHAR_COMPLETE": "bash_complete", "COMP_WORDS": "ideochar generate x -p a", "COMP_CWORD": "4"}
    completed = runner.invoke(cli, [], prog_name="ideochar", obj=state, env=env)
    assert "plain,alpha" in completed.output and "beta" not in completed.output


# -- jobs list --since, jobs prune ---------------------------------------------------------------------------------


def test_prune_forgets_finished_jobs_and_their_images_but_not_what_may_still_bill(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    out = tmp_path / "mine"
    assert invoke("generate", "done", "-r", reference, "-p", "beta", "--out", str(out), "-q").exit_code == 0
    running = _interrupted(invoke, vendors, reference, tmp_path)
    [finished] = [j for j in _job_ids(invoke) if j != running]
    saved = [Path(o["path"]) for o in json.loads(invoke("jobs", "show", finished, "--json").stdout)["outputs"]]
    assert saved and all(p.exists() for p in saved)

    dry = invoke("jobs", "prune", "--older-than", "0s", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout.startswith("would forget 1 job(s)")
    assert len(_job_ids(invoke)) == 2

    pruned = invoke("jobs", "prune", "--older-than", "0s")
    assert pruned.exit_code == 0, pruned.output
    assert pruned.stdout.startswith("forgot 1 job(s)") and "and 1 image(s)" in pruned.stdout
    assert f"kept 1 job(s) a vendor may still run and bill ({running[:12]})" in pruned.stdout
    assert _job_ids(invoke) == [running]
    assert not any(p.exists() for p in saved)
    assert list(out.glob("*.png")), "files under --out are the user's: never pruned"

    assert invoke("jobs", "prune", "--older-than", "1d").stdout.startswith("forgot 0 job(s)")
    forced = invoke("jobs", "prune", "--older-than", "0s", "--force")
    assert forced.stdout.startswith("forgot 1 job(s)") and _job_ids(invoke) == []


def test_prune_never_deletes_a_file_outside_the_output_folder(tmp_path: Path) -> None:
    from ideochar.request import CharacterRequest
    from ideochar.result import CharacterResult, GeneratedImage

    png = make_image(8, 8)
    outside = tmp_path / "precious.png"
    outside.write_bytes(png)
    with Journal(tmp_path / "j.sqlite3") as journal:
        journal.create_job("job-1", CharacterRequest(prompt="x", reference=png))
        [inside] = journal.record_outputs("job-1", [GeneratedImage(data=png, content_type="image/png")])
        journal._db.execute("UPDATE outputs SET path = ? WHERE job_id = 'job-1'", (str(outside),))  # edited
        image = GeneratedImage(data=png, content_type="image/png")
        journal.finish_job("job-1", result=CharacterResult(images=[image], provider="p"))
        assert journal.delete_jobs(["job-1"]) == []
        assert journal.jobs(limit=None) == []
    assert outside.read_bytes() == png and inside.exists()


def test_list_since_and_a_bad_age(invoke: Invoke, reference: str, tmp_path: Path) -> None:
    assert invoke("generate", "x", "-r", reference, "-p", "beta", "--out", str(tmp_path), "-q").exit_code == 0
    assert len(json.loads(invoke("jobs", "list", "--since", "1h", "--json").stdout)["jobs"]) == 1
    assert json.loads(invoke("jobs", "list", "--since", "2999-01-01", "--json").stdout)["jobs"] == []
    bad = invoke("jobs", "list", "--since", "yesterday")
    assert bad.exit_code == 2 and "neither an age (30m, 12h, 7d, 2w) nor a date" in bad.stderr


# -- --open --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("display", [True, False], ids=["display", "headless"])
def test_open_shows_the_images_where_there_is_a_display(
    invoke: Invoke, reference: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, display: bool
) -> None:
    opened: list[str] = []
    monkeypatch.setattr("click.launch", lambda url, **kw: opened.append(url) or 0)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if display:
        monkeypatch.setenv("DISPLAY", ":0")
    else:
        monkeypatch.delenv("DISPLAY", raising=False)
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q", "--open")
    assert result.exit_code == 0, result.output
    if display:
        [image] = opened
        assert image.endswith(".png") and Path(image).parent == tmp_path
    else:
        assert opened == [] and f"--open: no display here; the images are in {tmp_path}" in result.stderr


# -- a time next to the price ------------------------------------------------------------------------------------


def test_quote_shows_the_time_seen_in_the_journal_else_the_declared_one(
    state: CliState, vendors: Vendors, invoke: Invoke, reference: str, tmp_path: Path
) -> None:
    class Plugin:
        @hookimpl
        def ideochar_register_providers(self, register: Callable[[Provider], None]) -> None:
            register(FakeProvider("alpha", "0.06", vendors["alpha"]))
            beta = FakeProvider("beta", "0.04", vendors["beta"])
            beta.info = replace(beta.info, typical_seconds=20.0)
            register(beta)

    state.plugin_manager = plugin_manager(load_entrypoints=False, plugins=[Plugin()])
    before = json.loads(invoke("quote", "x", "--json").stdout)
    assert [(q["provider"], q["typical_seconds"]) for q in before] == [("alpha", None), ("beta", 20.0)]
    assert invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q").exit_code == 0
    after = {q["provider"]: q for q in json.loads(invoke("quote", "x", "--json").stdout)}
    assert after["alpha"]["time_source"] == "seen" and after["alpha"]["typical_seconds"] < 20
    table = invoke("quote", "x").stdout
    assert re.search(r"^beta .*\$0\.04\s+~20 s", table, re.M)
    assert "time: seen in your journal for alpha; as documented for beta; ? where neither is known." in table


# -- --debug: each HTTP exchange -------------------------------------------------------------------------------


def test_debug_logs_each_exchange_without_query_keys_or_bodies(
    state: CliState, invoke: Invoke, reference: str, tmp_path: Path
) -> None:
    state.environ = {**(state.environ or {}), "ALPHA_KEY": CANARY_KEY}
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q", "--debug")
    assert result.exit_code == 0, result.output
    exchanges = [line for line in result.stderr.splitlines() if " ideochar.http " in line]
    assert any(re.search(r"vendor POST https://alpha\.test/jobs -> 200 in \d+\.\d{3} s$", x) for x in exchanges)
    assert any("GET https://alpha.test/jobs/alpha-job-1 -> 200" in x for x in exchanges)
    assert any("GET https://alpha.test/files/result.png -> 200" in x for x in exchanges)
    assert not any("?" in x for x in exchanges)  # the image URL's query (signatures live there) is cut
    assert CANARY_KEY not in result.output and '"prompt"' not in result.stderr


# -- --allow-private-urls -----------------------------------------------------------------------------------------


@pytest.fixture
def private_cdn() -> Iterator[str]:
    """An image server on loopback, as an internal CDN would be on a private address."""
    png = make_image(32, 32)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cdn/result.png"
    finally:
        server.shutdown()


@pytest.mark.socket
def test_allow_private_urls_lets_the_fetch_guard_reach_a_private_address(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path, private_cdn: str
) -> None:
    vendors["alpha"].image_url = private_cdn
    refused = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path / "a"), "-q")
    assert refused.exit_code != 0 and "internal error" not in refused.output
    allowed = invoke(
        "generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path / "b"), "-q", "--allow-private-urls"
    )
    assert allowed.exit_code == 0, allowed.output
    assert len(list((tmp_path / "b").glob("*.png"))) == 1

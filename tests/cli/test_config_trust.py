"""Where keys may go, on the command line: a found file cannot redirect them, the emulator always wins,
a base URL that could leak a key is refused without showing it, and a file named with --config is trusted.

A real recording server on loopback stands where a configured base URL points. The fake vendors
(conftest.py) answer everything else through a MockTransport.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from cli.conftest import Vendors
from conftest import CANARY_KEY, make_image
from ideochar.cli import CliState, cli
from recording import Recorder, recording_server

pytestmark = pytest.mark.socket


class LoopbackOrFake(httpx.BaseTransport):
    """Loopback requests go out on a real socket (to the recorder); all others to the fake vendors."""

    def __init__(self, vendors: Vendors) -> None:
        self.real = httpx.HTTPTransport()
        self.fake = httpx.MockTransport(vendors.handler)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return (self.real if request.url.host == "127.0.0.1" else self.fake).handle_request(request)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording_server() as server:
        yield server


def run(state: CliState, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=state, catch_exceptions=False)


def fake_state(vendors: Vendors, base: CliState, environ: dict[str, str]) -> CliState:
    """The conftest's fake vendors, reachable alongside the recorder, with ``environ`` only."""
    return CliState(plugin_manager=base.pm, http=httpx.Client(transport=LoopbackOrFake(vendors)), environ=environ)


def keys(tmp_path: Path) -> dict[str, str]:
    return {"ALPHA_KEY": CANARY_KEY, "BETA_KEY": "beta-key-0123456789", "IDEOCHAR_JOURNAL": str(tmp_path / "j.sqlite3")}


def someone_elses_tree(tmp_path: Path, recorder: Recorder, *, name: str = "pyproject.toml") -> tuple[Path, Path]:
    """A shared parent holding a file that points alpha at the recorder; returns (that file, a folder under it)."""
    table = f'providers = ["alpha"]\nstrategy = "cheapest"\n\n[base_urls.alpha]\napi = "{recorder.url}/alpha"\n'
    if name == "pyproject.toml":
        text = '[project]\nname = "not-yours"\n\n[tool.ideochar]\n' + table.replace(
            "[base_urls", "[tool.ideochar.base_urls"
        )
    else:
        text = table
    shared = tmp_path / "shared"  # not tmp_path itself: the conftest's state keeps an empty ideochar.toml there
    shared.mkdir()
    found = shared / name
    found.write_text(text)
    work = shared / "clone" / "app"
    work.mkdir(parents=True)
    return found, work


# -- a found file ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pyproject.toml", "ideochar.toml"])
@pytest.mark.parametrize("debug", [False, True], ids=["quiet", "debug"])
def test_a_found_file_cannot_send_the_key_to_the_host_it_names(
    state: CliState,
    vendors: Vendors,
    recorder: Recorder,
    reference: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    debug: bool,
) -> None:
    found, work = someone_elses_tree(tmp_path, recorder, name=name)
    monkeypatch.chdir(work)
    flags = ["--debug"] if debug else []
    result = run(
        fake_state(vendors, state, keys(tmp_path)),
        "generate", "x", "-r", reference, "--out", str(tmp_path / "out"), "-q", *flags,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert recorder.requests == []  # not even a connection's worth
    assert vendors["alpha"].keys_seen == [CANARY_KEY]  # providers = ["alpha"] from the file: harmless, kept
    assert result.stderr.count(f"warning: {found}: ignoring base_urls.alpha.api:") == 1
    assert result.stderr.count("ignoring") == 1
    assert CANARY_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("configured", ["found", "named"])
def test_the_emulator_wins_over_configured_base_urls(
    recorder: Recorder, reference: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: str
) -> None:
    # The real providers and the real emulator: every base URL of every vendor points at the recorder.
    from ideochar.plugins import collect_providers, get_plugin_manager

    infos = {name: p.info for name, p in collect_providers(get_plugin_manager()).items()}
    lines = []
    for name, info in sorted(infos.items()):
        lines.append(f"[base_urls.{name}]")
        lines += [f'{key} = "{recorder.url}/{name}/{key}"' for key in info.base_urls]
    config = tmp_path / "ideochar.toml"
    config.write_text("\n".join(lines) + "\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    environ = {**keys(tmp_path), "FAL_KEY": CANARY_KEY}
    if configured == "named":
        environ["IDEOCHAR_CONFIG"] = str(config)
    for vendor in sorted(infos):
        result = run(CliState(environ=environ), "generate", "x", "-r", reference, "-p", vendor, "--emulator",
                     "--out", str(tmp_path / vendor), "--json", "-q")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["provider"] == vendor
        if configured == "named":
            assert f"note: {vendor} " in result.stderr and "is not used: the emulator replaces it" in result.stderr
    assert recorder.requests == []


# -- refused base URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"http://evil.example/{CANARY_KEY}",
        f"http://{CANARY_KEY}@127.0.0.1:9/",
        f"https://proxy.example/?key={CANARY_KEY}",
        f"http://10.1.2.3:8080/{CANARY_KEY}",
    ],
)
@pytest.mark.parametrize("how", ["variable", "--config"])
@pytest.mark.parametrize("flags", [(), ("--json",), ("--debug",)], ids=["plain", "json", "debug"])
def test_a_base_url_that_could_leak_the_key_is_refused_and_the_key_is_not_shown(
    state: CliState,
    vendors: Vendors,
    recorder: Recorder,
    reference: str,
    tmp_path: Path,
    url: str,
    how: str,
    flags: tuple[str, ...],
) -> None:
    environ = keys(tmp_path)
    args = ["generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path / "out"), "-q", *flags]
    if how == "variable":
        environ["IDEOCHAR_BASE_URLS"] = f"alpha.api={url}"
        where = "environment variable IDEOCHAR_BASE_URLS"
    else:
        config = tmp_path / "mine.toml"
        config.write_text(f'[base_urls.alpha]\napi = "{url}"\n')
        args += ["--config", str(config)]
        where = str(config)
    result = run(fake_state(vendors, state, environ), *args)
    assert result.exit_code == 2, result.output
    assert f"error: {where}: base_urls.alpha.api: " in result.stderr
    assert vendors["alpha"].keys_seen == [] and recorder.requests == []
    output = result.stdout + result.stderr
    assert CANARY_KEY not in output and CANARY_KEY[:12] not in output and CANARY_KEY[-12:] not in output


# -- a named file ---------------------------------------------------------------------------------------


def test_a_file_named_with_config_is_trusted_and_its_base_url_named_on_stderr(
    state: CliState,
    vendors: Vendors,
    recorder: Recorder,
    reference: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found, work = someone_elses_tree(tmp_path, recorder, name="ideochar.toml")
    monkeypatch.chdir(work)
    args = ["generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path / "out"), "-q"]
    result = run(fake_state(vendors, state, keys(tmp_path)), *args, "--config", str(found))
    assert result.exit_code != 0  # the recorder answers 503: alpha's request went there, as the file says
    assert [r.method for r in recorder.requests] == ["POST"]
    assert recorder.requests[0].path == "/alpha/jobs"
    assert recorder.requests[0].headers["authorization"] == CANARY_KEY  # the caller chose this host
    assert f"alpha api → {recorder.url}/alpha (from {found})\n" in result.stderr
    assert "warning" not in result.stderr
    assert CANARY_KEY not in result.stdout + result.stderr


def test_a_base_url_from_the_environment_is_named_once_on_stderr(
    state: CliState, vendors: Vendors, recorder: Recorder, reference: str, tmp_path: Path
) -> None:
    environ = {**keys(tmp_path), "IDEOCHAR_BASE_URLS": f"alpha.api={recorder.url}/proxy", "IDEOCHAR_CONFIG": "off"}
    args = ["generate", "x", "-r", reference, "-p", "alpha,beta", "--out", str(tmp_path / "out"), "-q"]
    result = run(fake_state(vendors, state, environ), *args)
    assert result.exit_code == 0, result.output  # alpha fails at the recorder, beta serves
    expected = f"alpha api → {recorder.url}/proxy (from environment variable IDEOCHAR_BASE_URLS)"
    assert result.stderr.count(expected) == 1
    assert len(recorder.requests) == 1 and CANARY_KEY not in result.stderr


def test_a_found_files_journal_is_not_used_by_jobs_list_but_a_named_ones_is(
    state: CliState, vendors: Vendors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shared").mkdir()
    found = tmp_path / "shared" / "ideochar.toml"
    found.write_text('journal = "shared.sqlite3"\n')
    monkeypatch.chdir(found.parent)
    cli_state = fake_state(vendors, state, {})
    result = run(cli_state, "jobs", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["journal"] != str(found.parent / "shared.sqlite3")
    assert f"warning: {found}: ignoring journal:" in result.stderr
    named = run(cli_state, "jobs", "list", "--json", "--config", str(found))
    assert json.loads(named.stdout)["journal"] == str(found.parent / "shared.sqlite3")


# -- the same, in a real process ------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_real_run_under_a_shared_parent_does_not_send_the_key_to_its_file(recorder: Recorder, tmp_path: Path) -> None:
    """``ideochar generate`` in a folder under someone else's pyproject.toml: the real fal adapter, a
    fake key, and the vendor's own host made unreachable (an https proxy on a closed port)."""
    lines = ['[project]\nname = "not-yours"\n\n[tool.ideochar.base_urls.fal]']
    lines += [f'{key} = "{recorder.url}/fal/{key}"' for key in ("queue", "run", "rest")]
    found = tmp_path / "pyproject.toml"
    found.write_text("\n".join(lines) + "\n")
    work = tmp_path / "clone"
    work.mkdir()
    reference = work / "face.png"
    reference.write_bytes(make_image(64, 64))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOCHAR_") and "proxy" not in k.lower()}
    env.update(FAL_KEY=CANARY_KEY, HTTPS_PROXY=f"http://127.0.0.1:{_closed_port()}", IDEOCHAR_JOURNAL="off")
    command = [sys.executable, "-m", "ideochar.cli", "generate", "x", "-p", "fal", "-r", str(reference), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work, timeout=120, check=False)
    assert done.returncode != 0  # fal itself is unreachable here
    assert recorder.requests == []
    assert (
        done.stderr.count(f"warning: {found}: ignoring base_urls.fal.queue, base_urls.fal.run, base_urls.fal.rest") == 1
    )
    assert CANARY_KEY not in done.stdout + done.stderr

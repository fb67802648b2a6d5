"""Progress on stderr, the compound option parsers, plugin subcommands and a light import."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from ideochar import hookimpl
from ideochar._cli.options import parse_color, parse_extra, provider_names
from ideochar._cli.output import money
from ideochar._cli.progress import Progress
from ideochar.cli import CliState
from ideochar.events import Event
from ideochar.plugins import plugin_manager

from .conftest import Invoke, Vendors


def test_plain_progress_prints_one_line_per_change_with_position_and_vendor_id(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    vendors["alpha"].queue = [3, 3, 3, 2]
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "alpha: job admitted, vendor id alpha-job-1" in lines
    queued = [line for line in lines if "queued" in line]
    assert [line.split(",")[1].strip() for line in queued] == ["queued (position 3)", "queued (position 2)"]
    assert all("vendor id alpha-job-1" in line and line.startswith("alpha,") for line in queued)
    assert lines[-1].startswith("alpha, done")
    assert "\r" not in result.stderr and "\x1b" not in result.stderr


def test_progress_off_and_quiet_print_nothing(invoke: Invoke, reference: str, tmp_path: Path) -> None:
    for flag in (["-q"], ["--progress", "off"]):
        result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), *flag)
        assert result.exit_code == 0 and result.stderr == ""


class _Tty(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_live_line_redrawn_in_place() -> None:
    stream = _Tty()
    with Progress(stream) as progress:
        assert progress.mode == "live"
        progress(Event("attempt_started", provider="alpha"))
        progress(Event("submitted", provider="alpha", vendor_request_id="job-9"))
        progress(Event("progress", provider="alpha", status="queued", queue_position=4))
        time.sleep(0.25)  # the ticker redraws the elapsed time on its own
        progress(Event("progress", provider="alpha", status="running"))
    text = stream.getvalue()
    assert "\r\x1b[2Kalpha: job admitted, vendor id job-9\n" in text  # a permanent line, above the live one
    frames = [f for f in text.split("\r\x1b[2K") if f and not f.endswith("\n")]
    assert any("alpha · queued (position 4)" in f and "vendor id job-9" in f for f in frames)
    assert frames[-1].split(" · ")[1] == "running"
    assert len(frames) > 4  # redrawn while nothing happened
    assert text.endswith("\r\x1b[2K")  # the line is cleared at the end
    assert progress.submitted[0].vendor_request_id == "job-9"


def test_a_pipe_gets_plain_lines_and_a_broken_stream_never_breaks_the_job() -> None:
    assert Progress(io.StringIO()).mode == "plain"

    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise ValueError("I/O operation on closed file")

    progress = Progress(Closed(), "plain")
    progress(Event("attempt_started", provider="alpha"))  # must not raise


def test_parse_extra_reads_json_values_nested_names_and_json_files(tmp_path: Path) -> None:
    options = tmp_path / "extra.json"
    options.write_text('{"fal": {"a": 1}, "segmind": {}}')
    extra = parse_extra(["fal.sync_mode=true", "fal.n=3", "fal.name=plain text", "fal.deep.er=[1, 2]"], f"@{options}")
    assert extra == {
        "fal": {"a": 1, "sync_mode": True, "n": 3, "name": "plain text", "deep": {"er": [1, 2]}},
        "segmind": {},
    }
    with pytest.raises(click.BadParameter, match=r"PROVIDER\.OPTION=VALUE"):
        parse_extra(["sync_mode=true"], None)


def test_parse_color_and_provider_names() -> None:
    assert parse_color("#FF0000:0.5") == {"color": "#FF0000", "weight": 0.5}
    assert parse_color(" #0f0 ") == {"color": "#0f0"}
    assert provider_names(["fal,segmind", " ideogram ", ""]) == ["fal", "segmind", "ideogram"]
    assert provider_names([]) is None


@pytest.mark.parametrize(
    ("value", "text"), [("0.06", "$0.06"), ("0.1875", "$0.1875"), ("1", "$1.00"), ("0.040", "$0.04"), (None, "?")]
)
def test_money_keeps_sub_cent_digits(value: str | None, text: str) -> None:
    from decimal import Decimal

    assert money(None if value is None else Decimal(value)) == text


def test_plugins_add_subcommands_through_the_hook(state: CliState, invoke: Invoke) -> None:
    class Plugin:
        @hookimpl
        def ideochar_register_commands(self, cli: click.Group) -> None:
            @cli.command("hello-plugin")
            def hello() -> None:
                click.echo("hello from a plugin")

    state.plugin_manager = plugin_manager(load_entrypoints=False, plugins=[Plugin()])
    result = invoke("hello-plugin")
    assert result.exit_code == 0 and result.stdout == "hello from a plugin\n"
    assert "hello-plugin" in invoke("--help").stdout


def test_importing_ideochar_does_not_import_the_command_line() -> None:
    # (click itself may be loaded: httpx imports it when it is installed.)
    code = "import sys, ideochar; print(any(m == 'ideochar.cli' or m.startswith('ideochar._cli') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_the_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from ideochar.cli import main; main()", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("ideochar, version ")

"""The command line and the demo against the real emulator on a loopback socket: no key, real protocols."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from ideochar.assets import reference_path
from ideochar.assets.make_reference import PALETTE
from ideochar.cli import CliState, cli
from ideochar.demo import main as demo_main

pytestmark = pytest.mark.socket

PROVIDERS = ["fal", "ideogram", "replicate", "segmind"]


def _hair_share(path: Path) -> float:
    """How much of the image is the character's coral hair: the reference went through if it shows."""
    hair = tuple(int(PALETTE["hair"][i : i + 2], 16) for i in (1, 3, 5))
    data = Image.open(path).convert("RGB").resize((320, 180)).tobytes()
    pixels = (data[i : i + 3] for i in range(0, len(data), 3))
    close = sum(1 for pixel in pixels if sum(abs(a - b) for a, b in zip(pixel, hair, strict=True)) < 40)
    return close / (320 * 180)


@pytest.fixture
def keyless(tmp_path: Path) -> CliState:
    config = tmp_path / "ideochar.toml"
    config.write_text("")
    return CliState(environ={"IDEOCHAR_CONFIG": str(config), "IDEOCHAR_JOURNAL": str(tmp_path / "j.sqlite3")})


@pytest.mark.parametrize("provider", PROVIDERS)
def test_generate_with_the_emulator_writes_an_image_and_a_sidecar(
    provider: str, keyless: CliState, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with reference_path() as reference:
        args = [
            "generate",
            "a lantern-lit market",
            "-r",
            str(reference),
            "--aspect-ratio",
            "16:9",
            "--emulator",
            "-p",
            provider,
            "--out",
            str(out),
            "--json",
            "-q",
        ]
        result = CliRunner().invoke(cli, args, obj=keyless, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["provider"] == provider
    [image] = document["images"]
    path = Path(image["path"])
    assert path.parent == out and hashlib.sha256(path.read_bytes()).hexdigest() == image["sha256"]
    assert image["width"] > image["height"]  # 16:9
    assert json.loads(Path(document["sidecar"]).read_text())["images"][0]["sha256"] == image["sha256"]
    assert _hair_share(path) > 0.02


def test_without_the_emulator_and_without_keys_the_error_points_to_it(keyless: CliState) -> None:
    with reference_path() as reference:
        result = CliRunner().invoke(cli, ["generate", "x", "-r", str(reference)], obj=keyless)
    assert result.exit_code == 11
    for variable in ("FAL_KEY", "SEGMIND_API_KEY", "IDEOGRAM_API_KEY", "REPLICATE_API_TOKEN"):
        assert variable in result.stderr
    assert "--emulator" in result.stderr


def test_quote_lists_every_registered_vendor_with_its_price(keyless: CliState) -> None:
    result = CliRunner().invoke(cli, ["quote", "a knight", "--json"], obj=keyless, catch_exceptions=False)
    quotes = {q["provider"]: q for q in json.loads(result.stdout)}
    assert sorted(quotes) == PROVIDERS
    assert all(q["supported"] and q["unit_price_usd"] for q in quotes.values())


def test_the_demo_draws_the_reference_through_every_vendor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IDEOCHAR_JOURNAL", str(tmp_path / "must-not-be-used.sqlite3"))
    assert demo_main(["--out", str(tmp_path / "out")]) == 0
    stdout = capsys.readouterr().out
    images = sorted((tmp_path / "out").glob("ideochar-*-1.*"))
    assert len(images) == len(PROVIDERS)
    for path in images:
        assert str(path) in stdout
        assert _hair_share(path) > 0.02
    table = stdout.split("Cost table")[1]
    for provider in PROVIDERS:
        assert any(line.startswith(provider + " ") and "$" in line for line in table.splitlines())
    assert "total $" in stdout
    assert not (tmp_path / "must-not-be-used.sqlite3").exists()


def test_emulator_serve_prints_each_vendor_base_url() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ideochar.cli import main; main()",
            "emulator",
            "serve",
            "--port",
            "0",
            "--model-seconds",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(lines)
        assert text.startswith("ideochar emulator on http://127.0.0.1:")
        for provider in PROVIDERS:
            assert f"  {provider}: " in text
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_no_wait_prints_the_job_id_and_jobs_wait_finishes_it_once(keyless: CliState, tmp_path: Path) -> None:
    from ideochar.emulator import testing

    with testing.running_emulator(model_seconds=0.3) as server, reference_path() as reference:
        common = ["--emulator-url", server.url, "-p", "fal"]
        sent = CliRunner().invoke(
            cli, ["generate", "a knight", "-r", str(reference), "--no-wait", *common], obj=keyless
        )
        assert sent.exit_code == 0, sent.output
        job_id = sent.stdout.strip()
        assert len(job_id) == 32 and "jobs wait" in sent.stderr
        waited = CliRunner().invoke(
            cli, ["jobs", "wait", job_id, "--emulator-url", server.url, "--out", str(tmp_path / "out"), "--json"],
            obj=keyless,
        )  # fmt: skip
        assert waited.exit_code == 0, waited.output
        [image] = json.loads(waited.stdout)["images"]
        assert Path(image["path"]).is_file()
        assert testing.billed(server, "fal") == 1  # sent once, fetched by its id


def test_jobs_cancel_asks_the_vendor_to_stop_a_job_sent_with_no_wait(keyless: CliState) -> None:
    from ideochar.emulator import testing

    with testing.running_emulator(model_seconds=30) as server, reference_path() as reference:
        common = ["--emulator-url", server.url, "-p", "fal"]
        sent = CliRunner().invoke(
            cli, ["generate", "a knight", "-r", str(reference), "--no-wait", *common], obj=keyless
        )
        job_id = sent.stdout.strip()
        cancelled = CliRunner().invoke(
            cli, ["jobs", "cancel", job_id, "--emulator-url", server.url, "--json"], obj=keyless
        )
        assert cancelled.exit_code == 0, cancelled.output
        document = json.loads(cancelled.stdout)
        assert document["job_id"] == job_id and set(document["cancelled"].values()) <= {"ok", "cancellation_requested"}
        assert document["cancelled"]

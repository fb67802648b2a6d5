"""generate / edit / remix: options become the request, images and a sidecar are saved, --json says the same."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import make_image
from ideochar import Edit, Remix

from .conftest import Invoke, Vendors


def test_generate_options_become_the_neutral_request(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    result = invoke(
        "generate",
        "a knight in the rain",
        "-r",
        reference,
        "--aspect-ratio",
        "16:9",
        "--style",
        "fiction",
        "--speed",
        "turbo",
        "--magic-prompt",
        "off",
        "--seed",
        "42",
        "-n",
        "2",
        "--negative-prompt",
        "blur",
        "--color",
        "#ff0000:0.5",
        "--color",
        "#0f0",
        "--extra",
        "alpha.sync_mode=true",
        "--extra-json",
        '{"beta": {"tier": "x"}}',
        "-p",
        "alpha",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 0, result.output
    # alpha makes one image per call, so -n 2 is fanned out: two calls, seeds 42 and 43.
    request, second = vendors["alpha"].requests
    assert [(r.num_images, r.seed) for r in (request, second)] == [(1, 42), (1, 43)]
    assert request.prompt == "a knight in the rain"
    assert request.reference.read() == Path(reference).read_bytes()
    assert request.operation_name == "generate"
    assert (request.aspect_ratio, request.style, request.speed, request.magic_prompt) == (
        "16:9",
        "fiction",
        "turbo",
        "off",
    )
    assert request.negative_prompt == "blur"
    assert request.color_palette is not None and request.color_palette.members is not None
    assert [(m.color, m.weight) for m in request.color_palette.members] == [("#FF0000", 0.5), ("#00FF00", None)]
    assert request.extra == {"alpha": {"sync_mode": True}, "beta": {"tier": "x"}}


def test_style_codes_references_resolution_and_palette_preset_reach_the_request(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    style_ref = tmp_path / "style.png"
    style_ref.write_bytes(make_image(32, 32, color="green"))
    result = invoke(
        "generate",
        "x",
        "-r",
        reference,
        "--resolution",
        "1024x1024",
        "--palette",
        "ember",
        "--style-reference",
        str(style_ref),
        "-p",
        "alpha",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    request = vendors["alpha"].requests[-1]
    assert request.resolution == "1024x1024"
    assert request.color_palette is not None and request.color_palette.preset == "ember"
    assert [s.read() for s in request.style_references] == [style_ref.read_bytes()]

    result = invoke(
        "generate",
        "x",
        "-r",
        reference,
        "--style-code",
        "0a1b2c3d",
        "--style-code",
        "DEADBEEF",
        "-p",
        "alpha",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert vendors["alpha"].requests[-1].style_codes == ["0A1B2C3D", "DEADBEEF"]


def test_edit_takes_image_and_mask(invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path) -> None:
    image, mask = tmp_path / "scene.png", tmp_path / "mask.png"
    image.write_bytes(make_image(40, 30))
    mask.write_bytes(make_image(40, 30, color="black"))
    result = invoke(
        "edit",
        "add a scarf",
        "-r",
        reference,
        "--image",
        str(image),
        "--mask",
        str(mask),
        "-p",
        "alpha",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 0, result.output
    operation = vendors["alpha"].requests[0].operation
    assert isinstance(operation, Edit)
    assert operation.image.read() == image.read_bytes() and operation.mask.read() == mask.read_bytes()


def test_remix_takes_image_and_strength(invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path) -> None:
    image = tmp_path / "scene.png"
    image.write_bytes(make_image(40, 30))
    result = invoke(
        "remix",
        "in watercolour",
        "-r",
        reference,
        "--image",
        str(image),
        "--strength",
        "0.3",
        "-p",
        "alpha",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 0, result.output
    operation = vendors["alpha"].requests[0].operation
    assert isinstance(operation, Remix) and operation.strength == 0.3


def test_provider_order_is_the_failover_order(invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path) -> None:
    vendors["beta"].status = 500
    result = invoke("generate", "x", "-r", reference, "-p", "beta,alpha", "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["provider"] == "alpha"
    assert [(a["provider"], a["outcome"]) for a in document["attempts"]] == [("beta", "failed"), ("alpha", "succeeded")]
    assert len(vendors["beta"].requests) == 1 and len(vendors["alpha"].requests) == 1


def test_images_and_a_sidecar_are_saved_under_names_we_choose(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    vendors["alpha"].image_url = "/files/../../escape/evil.sh?x=1"
    out = tmp_path / "out"
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "-n", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 3
    assert all(name.startswith("ideochar-") for name in files)
    assert [n.rsplit("-", 1)[1] for n in files if n.endswith(".png")] == ["1.png", "2.png"]
    assert not (tmp_path / "escape").exists()
    sidecar = json.loads(next(out.glob("*.json")).read_text())
    for entry in sidecar["images"]:
        assert hashlib.sha256(Path(entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert sidecar["provider"] == "alpha" and sidecar["vendor_request_id"] == "alpha-job-1"
    assert sidecar["request"]["prompt"] == "x" and sidecar["request"]["num_images"] == 2


def test_a_second_run_never_overwrites_the_first(invoke: Invoke, reference: str, tmp_path: Path) -> None:
    for _ in range(2):
        assert invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q").exit_code == 0
    assert len(list(tmp_path.glob("*.png"))) == 3  # the reference and two results
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_json_prints_the_sidecar_document(invoke: Invoke, reference: str, tmp_path: Path) -> None:
    result = invoke("generate", "x", "-r", reference, "-p", "beta", "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) >= {
        "job_id",
        "provider",
        "vendor_request_id",
        "cost_usd",
        "cost_source",
        "warnings",
        "failures",
        "attempts",
        "images",
        "request",
        "sidecar",
    }
    assert document["cost_usd"] == "0.04" and document["cost_source"] == "price_table"
    [image] = document["images"]
    assert set(image) >= {"path", "sha256", "content_type", "width", "height", "seed"}
    assert (image["width"], image["height"], image["seed"]) == (96, 54, 7)
    on_disk = json.loads(Path(document["sidecar"]).read_text())
    assert on_disk == {k: v for k, v in document.items() if k != "sidecar"}


def test_the_human_summary_names_files_provider_cost_and_warnings(
    invoke: Invoke, reference: str, tmp_path: Path
) -> None:
    result = invoke(
        "generate",
        "x",
        "-r",
        reference,
        "-p",
        "alpha",
        "--style-reference",
        reference,
        "--out",
        str(tmp_path / "o"),
        "-q",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"saved {tmp_path / 'o'}") and "(96x54)" in lines[0]
    assert any(line.startswith("sidecar ") and line.endswith(".json") for line in lines)
    assert "provider alpha, vendor id alpha-job-1, cost $0.06 (from the price table)" in lines
    assert any(line.startswith("warning: alpha:") and "style_references" in line for line in lines)
    assert result.stderr == ""


def test_emulator_flag_needs_no_key_and_reaches_the_client(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    # A running emulator is named by URL; alpha's only base URL is under it.
    args = ["generate", "x", "-r", reference, "-p", "alpha", "--emulator-url", "http://127.0.0.1:9"]
    result = invoke(*args, "--out", str(tmp_path), "-q")
    assert result.exit_code == 0, result.output
    assert vendors["alpha"].keys_seen == ["ideochar-emulator-key"]


def test_under_the_emulator_a_provider_nobody_emulates_sends_nothing(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    # beta has no emulator routes: its own host must not get the request (with the emulator's key) instead.
    args = ["generate", "x", "-r", reference, "-p", "beta", "--emulator-url", "http://127.0.0.1:9"]
    result = invoke(*args, "--out", str(tmp_path), "-q")
    assert result.exit_code == 2, result.output
    assert "emulator: no installed plugin emulates beta" in result.stderr
    assert vendors["beta"].keys_seen == [] and vendors["beta"].requests == []


def test_paid_images_are_kept_when_the_out_folder_cannot_be_written(
    invoke: Invoke, reference: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out passed its check, then could not take the images (a full disk): they are kept elsewhere, and the
    command fails so that a script does not take them for saved where it asked."""
    import tempfile

    from ideochar._cli import output

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real_save = output.save_result
    out = tmp_path / "out"

    def full_disk(result: Any, folder: Path, request: Any = None) -> Any:
        if folder == out:
            raise OSError(28, "No space left on device")
        return real_save(result, folder, request)

    monkeypatch.setattr(output, "save_result", full_disk)
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(out), "-q")
    assert result.exit_code == 1, result.output
    assert "cannot write to --out" in result.stderr and "No space left on device" in result.stderr
    [kept] = (tmp_path / "tmp").glob("ideochar-*/*.png")
    assert str(kept) in result.stdout and f"saved to {kept.parent} instead" in result.stderr


@pytest.mark.parametrize("bad", ["a-file/out", "knight.png"], ids=["under-a-file", "a-file-name"])
def test_a_bad_out_folder_is_refused_before_anything_is_sent(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path, bad: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path / bad), "-q")
    assert result.exit_code == 2
    assert "Invalid value for '--out'" in result.stderr
    assert ("is a file, not a folder" if "/" in bad else "looks like an image file name") in result.stderr
    assert vendors["alpha"].requests == []
    assert not (tmp_path / "knight.png").exists()

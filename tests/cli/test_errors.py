"""Errors end a command with one readable message, the class's exit code, and never a key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ideochar import (
    AllProvidersFailed,
    GenerationFailed,
    IdeocharError,
    InvalidRequest,
    MissingCredentials,
    OutcomeUnknown,
    OverBudget,
    ProviderError,
    Unsupported,
)
from ideochar.cli import CliState

from .conftest import ERRORS, Invoke, Vendors


@pytest.mark.parametrize("status", sorted(ERRORS))
def test_a_vendor_error_exits_with_its_class_code(
    status: int, invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    vendors["alpha"].status = status
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path / "o"), "-q")
    expected: type[ProviderError] = ERRORS[status]
    assert result.exit_code == expected.exit_code
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and f"answered {status}" in line
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_exit_codes_are_distinct_per_error_class() -> None:
    classes: list[type[IdeocharError]] = [
        *ERRORS.values(),
        GenerationFailed,
        OutcomeUnknown,
        InvalidRequest,
        OverBudget,
        Unsupported,
        AllProvidersFailed,
        IdeocharError,
    ]
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes)
    assert 0 not in codes


def test_a_failed_job_exits_with_generation_failed(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    vendors["alpha"].fail_job = True
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q")
    assert result.exit_code == GenerationFailed.exit_code
    assert "vendor id alpha-job-1" in result.stderr


def test_every_provider_failing_lists_each_and_exits_all_failed(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    vendors["alpha"].status = 500
    vendors["beta"].status = 402
    result = invoke("generate", "x", "-r", reference, "-p", "alpha,beta", "--out", str(tmp_path), "-q")
    assert result.exit_code == AllProvidersFailed.exit_code
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: every provider failed")
    assert lines[1].strip().startswith("alpha: Alpha answered 500") and "billed: no" in lines[1]
    assert lines[2].strip().startswith("beta: Beta answered 402")


def test_a_lost_answer_says_not_to_resubmit(state: CliState, invoke: Invoke, reference: str, tmp_path: Path) -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    state.http = httpx.Client(transport=httpx.MockTransport(timeout))
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q")
    assert result.exit_code == OutcomeUnknown.exit_code
    assert "billed" in result.stderr and "may have been admitted" in result.stderr


def test_an_invalid_request_names_the_flag_and_sends_nothing(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    """The library names fields (``num_images``); the command line names the flags a person typed."""
    result = invoke(
        "generate", "x", "-r", reference, "--resolution", "1000x1000", "-p", "alpha", "--out", str(tmp_path)
    )
    assert result.exit_code == InvalidRequest.exit_code == 2
    assert result.stderr.startswith("error: invalid request: --resolution:")
    assert vendors["alpha"].requests == []

    result = invoke(
        "generate", "x", "-r", reference, "--palette", "ember", "--color", "#FF0000", "--out", str(tmp_path)
    )
    assert result.exit_code == 2 and "--palette/--color" in result.stderr and "color_palette" not in result.stderr

    result = invoke("remix", "x", "-r", reference, "--image", reference, "--strength", "3", "--out", str(tmp_path))
    assert result.exit_code == 2 and "--strength:" in result.stderr and "operation.strength" not in result.stderr

    result = invoke("generate", "x", "-r", reference, "-n", "9", "--out", str(tmp_path), "--json")
    assert result.exit_code == 2 and "--num-images:" in result.stderr and "num_images" not in result.stderr
    [problem] = json.loads(result.stdout)["error"]["problems"]
    assert (problem["field"], problem["flag"]) == ("num_images", "--num-images")  # a script gets both


def test_a_folder_given_as_an_image_is_called_a_folder(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("generate", "x", "-r", ".", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "'.' is a folder; give an image file" in result.stderr and "no such" not in result.stderr


def test_extra_json_from_a_missing_file_names_the_flag(invoke: Invoke, reference: str, tmp_path: Path) -> None:
    result = invoke("generate", "x", "-r", reference, "--extra-json", "@missing.json", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "'--extra-json'" in result.stderr and "no file 'missing.json'" in result.stderr
    assert "internal error" not in result.output


def test_a_missing_image_file_is_an_invalid_request(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("generate", "x", "-r", str(tmp_path / "nope.png"), "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "no such image file" in result.stderr


@pytest.mark.parametrize(
    "args", [["--extra", "novalue"], ["--extra-json", "[1]"], ["--color", "#FF0000:heavy"], ["--max-cost", "cheap"]]
)
def test_malformed_compound_options_are_usage_errors(args: list[str], invoke: Invoke, reference: str) -> None:
    result = invoke("generate", "x", "-r", reference, *args)
    assert result.exit_code == 2
    assert "Error: Invalid value" in result.stderr


def test_json_mode_prints_the_error_as_json(invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path) -> None:
    vendors["alpha"].status = 429
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "--json", "-q")
    assert result.exit_code == 13
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "RateLimited" and error["exit_code"] == 13
    assert error["provider"] == "alpha" and error["status"] == 429 and error["billed"] == "no"
    assert [a["provider"] for a in error["attempts"]] == ["alpha"]


def test_without_keys_the_error_names_each_variable_and_the_emulator(
    state: CliState, invoke: Invoke, reference: str, tmp_path: Path
) -> None:
    state.environ = {}
    result = invoke("generate", "x", "-r", reference, "-p", "alpha,beta", "--out", str(tmp_path))
    assert result.exit_code == MissingCredentials.exit_code
    text = result.stderr
    assert "alpha  ALPHA_KEY or ALPHA_ID + ALPHA_SECRET" in text
    assert "beta   BETA_KEY or BETA_ID + BETA_SECRET" in text
    assert "--emulator" in text

    result = invoke("generate", "x", "-r", reference, "-p", "beta", "--out", str(tmp_path))
    assert result.stderr.splitlines()[0] == "error: no key for beta; set BETA_KEY or BETA_ID + BETA_SECRET"
    assert "--emulator" in result.stderr


@pytest.mark.parametrize("extra", [[], ["--json"], ["--debug"], ["--progress", "live"]])
def test_no_key_appears_in_any_output_when_a_vendor_echoes_it(
    extra: list[str],
    state: CliState,
    invoke: Invoke,
    vendors: Vendors,
    reference: str,
    tmp_path: Path,
    canary_key: str,
) -> None:
    state.environ = {"ALPHA_KEY": canary_key, "BETA_ID": "beta-id-000000", "BETA_SECRET": canary_key[::-1]}
    vendors["alpha"].status = 401
    vendors["alpha"].echo = f"bad key {canary_key}"
    vendors["beta"].status = 401
    vendors["beta"].echo = f"bad key beta-id-000000:{canary_key[::-1]}"
    result = invoke("generate", "x", "-r", reference, "-p", "alpha,beta", "--out", str(tmp_path), *extra)
    assert result.exit_code == AllProvidersFailed.exit_code
    assert vendors["alpha"].keys_seen == [canary_key]  # the key did reach the vendor...
    for text in (result.stdout, result.stderr):  # ...and nowhere else
        assert canary_key not in text and canary_key[::-1] not in text
        assert canary_key[:12] not in text
    assert "[REDACTED]" in result.stderr


def test_no_key_appears_in_saved_files_or_the_summary(
    state: CliState, invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path, canary_key: str
) -> None:
    state.environ = {"ALPHA_KEY": canary_key}
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path / "o"), "--debug")
    assert result.exit_code == 0, result.output
    assert vendors["alpha"].keys_seen == [canary_key]
    assert canary_key not in result.output
    for path in (tmp_path / "o").iterdir():
        assert canary_key.encode() not in path.read_bytes()


def test_debug_shows_the_traceback(invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path) -> None:
    vendors["alpha"].status = 400
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "--debug", "-q")
    assert result.exit_code == 15
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: alpha: Alpha answered 400")


def test_an_interrupt_after_admission_prints_the_vendor_id(
    invoke: Invoke, vendors: Vendors, reference: str, tmp_path: Path
) -> None:
    vendors["alpha"].interrupt_after_submit = True
    result = invoke("generate", "x", "-r", reference, "-p", "alpha", "--out", str(tmp_path), "-q")
    assert result.exit_code == 130
    assert "alpha had admitted job alpha-job-1" in result.stderr
    assert "may still finish and be billed" in result.stderr


def test_an_unknown_provider_is_an_invalid_request(invoke: Invoke, reference: str, tmp_path: Path) -> None:
    result = invoke("generate", "x", "-r", reference, "-p", "alpha,gamma", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "'gamma' is not installed; installed: alpha, beta" in result.stderr

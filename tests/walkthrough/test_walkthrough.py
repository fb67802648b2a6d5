"""The README and every how-to, walked as written by the real ``ideochar`` command (issue 14's "done when").

Two walks share one set of rules (``walker.py``):

* the **fast walk**, in ``make test``: each page in a copy of the repository with a home of its own, run
  by this checkout's installed ``ideochar``; the example plugin is installed with real pip (offline);
* the **fresh walk**, ``make walkthrough`` (``IDEOCHAR_WALKTHROUGH=1``, a few minutes): a new virtualenv,
  ``pip install .`` as the docs say (first without the emulator extra, whose absence must be explained),
  then every page, every Python example run by that virtualenv's Python, the plugin how-to with
  ``pip install ./examples/ideochar-example-plugin``, and ``make demo`` from nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from walkthrough.walker import (
    ROOT,
    SKIPPED,
    Walker,
    WalkFailed,
    commands,
    console_blocks,
    defines_tests,
    emulated,
    page_name,
    prepare_clone,
    python_blocks,
    shape,
    skipped,
    unmatched,
    walked_pages,
)

FRESH = os.environ.get("IDEOCHAR_WALKTHROUGH") == "1"
DEV_BIN = Path(sys.executable).parent


def test_every_console_block_is_walked_or_says_why_not() -> None:
    """A new block must be walkable by a rule, or be listed in SKIPPED with its reason."""
    pages = {page_name(p) for p in walked_pages()}
    assert {"README.md", "docs/getting-started.md", "docs/howto/write-a-plugin.md", "docs/cli.md"} <= pages
    firsts = [(page_name(b.page), b.code.splitlines()[0]) for p in walked_pages() for b in console_blocks(p)]
    stale = [key for key in SKIPPED if not any(page == key[0] and line.startswith(key[1]) for page, line in firsts)]
    assert not stale, f"SKIPPED names blocks the docs no longer have: {stale}"
    walker = Walker(ROOT, ROOT, DEV_BIN, "fast")
    known = ("ideochar", "pip", "python", "make", "export", "eval", "_IDEOCHAR_COMPLETE")
    for page in walked_pages():
        for block in console_blocks(page):
            if skipped(block):
                continue
            for command in commands(block):
                assert command.text.split()[0].split("=")[0] in known or command.text.startswith(known), command
    assert walker.mode == "fast"


def test_documented_output_is_compared_by_its_shape() -> None:
    shown = ["saved out/ideochar-20261123-204840-091cc249-1.png  (1312x736)", "0 job(s), spent $0.00 (journal ~/x/j)"]
    printed = "saved out/ideochar-20270101-010203-abcdef12-1.png  (1024x576)\n1 job(s), spent $0.15 (journal /tmp/a/j)"
    assert unmatched(shown, printed) == []
    assert unmatched(["provider fal, cost $0.15"], "provider segmind, cost $0.15") == ["provider fal, cost $0.15"]
    assert shape("---------  -----").fullmatch("------  ---")


def _pip_available() -> bool:
    try:
        import hatchling  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _pip_available(), reason="hatchling (a dev extra) builds the example plugin offline")
def test_the_example_plugin_installs_with_pip_and_the_cli_finds_it(tmp_path: Path) -> None:
    """``pip install ./examples/ideochar-example-plugin`` for real (the docs' command; offline here)."""
    clone = prepare_clone(tmp_path / "clone")
    walker = Walker(clone, tmp_path / "home", DEV_BIN, "fast", extra_path=tmp_path / "site")
    walker.install_example_plugin()
    assert list((tmp_path / "site").glob("ideochar_example_plugin-*.dist-info/entry_points.txt"))
    providers = walker.expect(walker.ideochar(["providers"]))
    assert "example" in providers.stdout and "EXAMPLE_IMAGES_KEY" in providers.stdout
    walker.env["IDEOCHAR_DISABLE_PLUGINS"] = "example"
    assert "example" not in walker.expect(walker.ideochar(["providers"])).stdout.split()


def _walk_fast(page: Path, folder: Path) -> str | None:
    """Walk one page in a clone and home of its own; what went wrong, or None."""
    clone = prepare_clone(folder / "clone")
    walker = Walker(clone, folder / "home", DEV_BIN, "fast", extra_path=folder / "site")
    try:
        done = list(walker.walk_page(page))
    except (WalkFailed, subprocess.TimeoutExpired) as exc:
        return f"{page_name(page)}: {exc}"
    if not done and not all(skipped(b) for b in console_blocks(page)):
        return f"{page_name(page)}: nothing was walked"
    return None


def test_every_page_walks(tmp_path: Path) -> None:
    """Every command of every page's console blocks, by this checkout's ``ideochar`` (the fast walk).

    Pages are independent (each has its own clone, home and journal), so they are walked side by side:
    the walk takes as long as its longest page.
    """
    from concurrent.futures import ThreadPoolExecutor

    pages = walked_pages()
    with ThreadPoolExecutor(max_workers=len(pages)) as pool:
        outcomes = list(pool.map(lambda n: _walk_fast(pages[n], tmp_path / f"page-{n}"), range(len(pages))))
    failures = [outcome for outcome in outcomes if outcome is not None]
    assert not failures, "\n\n".join(failures)


# -- the fresh walk ------------------------------------------------------------------------------------------


def _fresh_venv(folder: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    return folder / ("Scripts" if sys.platform == "win32" else "bin")


def _run_python_examples(walker: Walker, page: Path) -> None:
    """The page's Python examples, by the fresh virtualenv's Python, against the emulator."""
    python = str(walker.bin_dir / "python")
    tests = []
    for number, block in enumerate(python_blocks(page)):
        code = emulated(block.code)
        if defines_tests(block.code):
            tests.append(f"test_walk_{number}.py")
            (walker.clone / tests[-1]).write_text(code, encoding="utf-8")
            continue
        script = walker.clone / f"example_{number}.py"
        script.write_text(code, encoding="utf-8")
        walker.expect(walker.run([python, script.name], label=f"{block.name} (python)"))
    if tests:
        walker.expect(walker.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], label="pytest"))


@pytest.mark.skipif(not FRESH, reason="the fresh-virtualenv walk (real pip installs) runs with make walkthrough")
def test_a_new_user_walks_the_readme_and_every_how_to_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    started = time.monotonic()
    clone = prepare_clone(tmp_path / "clone")
    bin_dir = _fresh_venv(tmp_path / "venv")
    first = Walker(clone, tmp_path / "home-0", bin_dir, "fresh")
    first.expect(first.run([str(bin_dir / "python"), "-m", "pip", "install", "."], label="pip install .", timeout=900))

    # After a plain install the emulator's dependencies are missing: every door to it says what to install.
    for args in (["generate", "x", "-r", "face.png", "-p", "fal", "--emulator"], ["emulator", "serve"]):
        result = first.expect(first.ideochar(args), 2, stderr_has='pip install "ideochar[emulator]"')
        assert "internal error" not in result.stderr, result.describe()
    hint = first.expect(first.ideochar(["generate", "x", "-r", "face.png", "-p", "fal"]), 11)
    assert 'install it (pip install "ideochar[emulator]"), then add --emulator' in hint.stderr, hint.describe()

    first.expect(first.run([str(bin_dir / "python"), "-m", "pip", "install", ".[emulator]", "pytest"], timeout=900))
    failures = []
    for number, page in enumerate(walked_pages() + [p for p in _python_pages() if p not in walked_pages()], 1):
        walker = Walker(clone, tmp_path / f"home-{number}", bin_dir, "fresh")
        try:
            walked = len(list(walker.walk_page(page)))
            _run_python_examples(walker, page)
        except (WalkFailed, subprocess.TimeoutExpired) as exc:
            failures.append(f"{page_name(page)}: {exc}")
            continue
        seconds = sum(result.seconds for result in walker.log)
        print(f"walked {page_name(page)}: {walked} command(s), {len(walker.log)} run(s), {seconds:.0f} s")
    assert not failures, "\n\n".join(failures)
    print(f"fresh walk: {time.monotonic() - started:.0f} s")


def _python_pages() -> list[Path]:
    from docs_support import pages

    return [p for p in pages() if python_blocks(p)]

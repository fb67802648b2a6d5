"""The Python examples in README.md and the docs run, against the emulator.

Every ```python block is a complete program. Each runs on its own, in a folder holding the files the
examples name (``face.png``, the shipped reference character; ``scene.png``; ``mask.png``, the size of
the scene, black where it is to be repainted), with a journal of its own and no vendor key. The one
adaptation, as the docs say: ``emulator=True`` is added to every ``Client(...)`` and ``AsyncClient(...)``
that does not already choose its transport (``emulator=`` or ``http=``). A block that defines
``test_*`` functions is run by pytest. A block preceded by ``<!-- not run: why -->`` is skipped (plugin
modules, code that needs this repository's test helpers or a key).
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docs_support import ROOT, Block, blocks, pages
from PIL import Image, ImageDraw

EXAMPLES = [b for page in pages() for b in blocks(page, "python")]
CLIENTS = {"Client", "AsyncClient"}
#: Keyword arguments that already say where requests go.
TRANSPORT_KEYWORDS = {"emulator", "http"}


def test_the_pages_have_examples() -> None:
    runnable = {b.page.name for b in EXAMPLES if b.runnable}
    assert {"README.md", "getting-started.md", "failover.md", "resume.md", "compare-prices.md"} <= runnable


class _AddEmulator(ast.NodeTransformer):
    def __init__(self) -> None:
        self.calls = 0

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in CLIENTS and not any(k.arg in TRANSPORT_KEYWORDS for k in node.keywords):
            node.keywords.append(ast.keyword(arg="emulator", value=ast.Constant(True)))
            self.calls += 1
        return node


def emulated(code: str) -> str:
    """``code`` with ``emulator=True`` added to each client it creates without choosing a transport."""
    tree = _AddEmulator().visit(ast.parse(code))
    return ast.unparse(ast.fix_missing_locations(tree))


def test_the_adaptation_adds_the_emulator_only_where_no_transport_is_chosen() -> None:
    code = emulated("Client(['fal'])\nAsyncClient(providers='a', http=h)\nClient(emulator=url)\nx.Client()")
    assert code.splitlines() == [
        "Client(['fal'], emulator=True)",
        "AsyncClient(providers='a', http=h)",
        "Client(emulator=url)",
        "x.Client(emulator=True)",
    ]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the examples' images, a journal of its own, and no key or ideochar setting in the environment."""
    shutil.copy(ROOT / "src" / "ideochar" / "assets" / "reference.png", tmp_path / "face.png")
    Image.new("RGB", (512, 512), "skyblue").save(tmp_path / "scene.png")
    mask = Image.new("L", (512, 512), 255)
    ImageDraw.Draw(mask).rectangle((128, 128, 384, 384), fill=0)
    mask.save(tmp_path / "mask.png")
    for name in list(os.environ):
        if name.startswith("IDEOCHAR_") or name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "SEGMIND_API_KEY",
                                                    "IDEOGRAM_API_KEY", "REPLICATE_API_TOKEN"):  # fmt: skip
            monkeypatch.delenv(name)
    monkeypatch.setenv("IDEOCHAR_CONFIG", "off")  # no ideochar.toml found above the folder
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _defines_tests(code: str) -> bool:
    """True for a block that defines ``test_*`` functions (it is run by pytest, not executed as is)."""
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
        for node in ast.parse(code).body
    )


PROGRAMS = [b for b in EXAMPLES if b.runnable and not _defines_tests(b.code)]
#: Blocks of test functions, by page: each page's are run together, by one pytest.
TESTS = {page: [b for b in EXAMPLES if b.page == page and b.runnable and _defines_tests(b.code)] for page in pages()}


@pytest.mark.parametrize("block", PROGRAMS, ids=lambda b: b.name)
def test_the_example_runs(block: Block, workdir: Path) -> None:
    code = emulated(block.code)
    environ = dict(os.environ)
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            exec(compile(code, block.name, "exec"), {"__name__": "__main__"})  # noqa: S102
    except BaseException as exc:
        raise AssertionError(f"{block.name} failed: {type(exc).__name__}: {exc}\n{code}\n{output.getvalue()}") from exc
    finally:  # an example may set variables; the next one must not see them
        os.environ.clear()
        os.environ.update(environ)


@pytest.mark.parametrize(
    "page", [page for page, found in TESTS.items() if found], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_example_tests_pass(page: Path, workdir: Path) -> None:
    files = []
    for number, block in enumerate(TESTS[page]):
        files.append(f"test_example_{number}.py")
        (workdir / files[-1]).write_text(f"# {block.name}\n" + emulated(block.code), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"the test examples of {page.name} failed:\n{run.stdout}\n{run.stderr}"
    tests = sum(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
        for block in TESTS[page]
        for node in ast.parse(block.code).body
    )
    assert f"{tests} passed" in run.stdout, f"not every test example of {page.name} ran:\n{run.stdout}"

"""Walk the README and every page of the docs as a new user would: each command of each ``console`` block,
run by the real ``ideochar`` command in a sandboxed home, checked against the output the page shows.

A page is walked in a copy of the repository (the docs speak from a clone: ``pip install .``,
``src/ideochar/assets/reference.png``, ``./examples/...``), holding the images the examples name
(``face.png``, ``scene.png``, ``mask.png``), with a home of its own (configuration, journal, stored keys)
and no vendor key. Commands are taken literally; the few adaptations a user without keys or a network
needs are rules here, each with its reason, and a block no rule can walk must say why it is skipped
(:data:`SKIPPED`): a new console block without either fails the tests.

The adaptations, all in :meth:`Walker.steps`:

* a job command that needs a vendor (``generate``/``edit``/``remix`` without ``--emulator``) is run as
  written when no key is set (the first on each page, and any whose output the page shows), and must fail
  helpfully, naming ``--emulator``; then it is run with ``--emulator`` added, as the pages say to try
  things without keys. ``jobs resume`` of the walk's (emulated) job must be refused without an emulator;
* ``ideochar keys set`` gets a made-up key on stdin (its prompt's other door);
* a job id the page makes up (``3f2a9c``) is the id of a job this walk made;
* ``ideochar emulator serve`` runs in the background until its banner is out, on a free port;
* ``export`` sets the walk's environment; ``python app.py`` runs the page's ``app.py`` block against the
  emulator, as every Python example of the docs is run (:func:`emulated`);
* ``pip install`` of the project and ``make demo`` are run only in a fresh virtualenv (the slow walk);
  the example plugin is always installed with real pip.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "docs"))

from docs_support import Block, blocks, pages  # noqa: E402

#: Console blocks that are not walked: (page, the start of the block's first line) -> why. All others are.
SKIPPED: Mapping[tuple[str, str], str] = {
    ("docs/howto/record-cassettes.md", "IDEOCHAR_RECORD=live FAL_KEY=..."): (
        "records against the live vendors: it needs their keys and spends money"
    ),
    ("docs/howto/record-cassettes.md", ".venv/bin/pytest tests/test_cassettes_scrubbed.py"): (
        "checks a live recording just made (see the block before); make test runs these tests anyway"
    ),
    ("docs/howto/record-cassettes.md", "IDEOCHAR_RECORD=docs .venv/bin/pytest"): (
        "rewrites the repository's cassettes: for working on ideochar itself"
    ),
}

#: Commands whose output the page shows exactly (nothing in it varies between runs).
EXACT: frozenset[tuple[str, str]] = frozenset(
    {("docs/howto/compare-prices.md", 'ideochar quote "a knight" -n 4 --speed quality')}
)
#: What a command must print that the page says in words rather than shows (page, command) -> texts.
SAYS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("docs/howto/write-a-plugin.md", "ideochar providers"): ("example", "EXAMPLE_IMAGES_KEY"),
    ("docs/howto/write-a-plugin.md", 'ideochar quote "a knight" -p example'): ("example", "$0.04"),
    ("docs/howto/write-a-plugin.md", 'ideochar generate "a knight in the rain" -r face.png -p example --emulator '
     "--out out/"): ("provider example",),
    ("README.md", 'ideochar quote "a knight" --num-images 4 --speed quality'): ("cheapest:", "Nothing was sent."),
}  # fmt: skip
#: A vendor key the walk sets where a page sets one (never a real key: the walk never reaches a vendor).
WALK_KEY = "walkthrough-not-a-real-key-0123456789"
#: Ids the pages make up for a job the reader has; the walk uses one of its own jobs.
PLACEHOLDER_JOB_IDS = ("3f2a9c",)
_JOB_COMMANDS = ("generate", "edit", "remix")
_VENDOR_VARIABLES = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "SEGMIND_API_KEY", "IDEOGRAM_API_KEY",
                     "REPLICATE_API_TOKEN", "EXAMPLE_IMAGES_KEY")  # fmt: skip


@dataclass(frozen=True)
class Command:
    """One command of a console block, with the output the page shows for it (if any)."""

    page: str
    line: int
    text: str
    shown: tuple[str, ...] = ()


def console_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page, "console") if b.runnable]


def page_name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def commands(block: Block) -> list[Command]:
    """The commands of a block: ``$``-prefixed lines (each followed by its output) or, when no line has a
    ``$``, every line; a line ending in ``\\`` continues on the next."""
    lines = block.code.rstrip("\n").splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    found: list[Command] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        start = i
        if prompted and not line.startswith("$ "):
            i += 1
            continue
        text = line[2:] if prompted else line
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        shown: list[str] = []
        while prompted and i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        if text.strip():
            found.append(Command(page_name(block.page), block.line + start + 1, text.strip(), tuple(shown)))
    return found


def first_line(block: Block) -> str:
    return block.code.splitlines()[0]


def skipped(block: Block) -> str | None:
    name, first = page_name(block.page), first_line(block)
    return next((why for (page, start), why in SKIPPED.items() if page == name and first.startswith(start)), None)


def words(text: str) -> list[str]:
    """A command's words, its trailing ``# comment`` dropped (a ``#`` inside quotes stays)."""
    return shlex.split(text, comments=True)


# -- comparing the output a page shows with what the command prints -----------------------------------------


#: What varies between a page's example output and a run: uuids, hex ids, numbers.
_VARIES = re.compile(r"([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{6,}|\d+)")


def _token(token: str) -> str:
    if token.startswith("~/"):  # a path in the reader's home: wherever it is here
        return r"\S+?\)?" if token.endswith(")") else r"\S+"
    if set(token) == {"-"}:  # a table's rule: as wide as its column's widest cell
        return "-+"
    pieces = _VARIES.split(token)
    return "".join(
        re.escape(piece) if i % 2 == 0 else (r"\d+" if piece.isdigit() else r"[0-9a-f-]+")
        for i, piece in enumerate(pieces)
    )


def shape(line: str) -> re.Pattern[str]:
    """A documented output line as a pattern: ids, times, numbers and paths vary; words and order do not."""
    tokens = line.split()
    return re.compile(r"\s+".join(_token(t) for t in tokens))


def unmatched(shown: Sequence[str], printed: str) -> list[str]:
    """The documented lines the printed output does not have (in order), as shapes."""
    missing: list[str] = []
    lines = printed.splitlines()
    position = 0
    for documented in shown:
        if not documented.strip():
            continue
        pattern = shape(documented.strip())
        for index in range(position, len(lines)):
            if pattern.fullmatch(lines[index].strip()):
                position = index + 1
                break
        else:
            missing.append(documented)
    return missing


# -- Python blocks ------------------------------------------------------------------------------------------


class _AddEmulator(ast.NodeTransformer):
    """``emulator=True`` on every client made without a transport: how the docs' examples run without keys."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in ("Client", "AsyncClient") and not any(k.arg in ("emulator", "http") for k in node.keywords):
            node.keywords.append(ast.keyword(arg="emulator", value=ast.Constant(True)))
        return node


def emulated(code: str) -> str:
    tree = _AddEmulator().visit(ast.parse(code))
    return ast.unparse(ast.fix_missing_locations(tree))


def python_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page, "python") if b.runnable]


def defines_tests(code: str) -> bool:
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
        for node in ast.parse(code).body
    )


# -- the walker ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    command: str
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"$ {shlex.join(self.argv)}  (exit {self.code}, {self.seconds:.1f} s)\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


class WalkFailed(AssertionError):
    pass


@dataclass
class Walker:
    """Walks pages in ``clone`` (a copy of the repository) with the ``ideochar`` of ``bin_dir``."""

    clone: Path
    home: Path
    bin_dir: Path
    mode: Literal["fast", "fresh"]
    extra_path: Path | None = None
    """A folder of packages installed for this walk (the example plugin, in the fast walk)."""
    env: dict[str, str] = field(default_factory=dict)
    log: list[Result] = field(default_factory=list)
    keys_stored: bool = False
    tried_without_key: bool = False
    """A job command was run as written, without a key, on this page (and failed helpfully)."""

    def __post_init__(self) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("IDEOCHAR_") and k not in _VENDOR_VARIABLES}
        base.pop("VIRTUAL_ENV", None)
        base.pop("PYTHONPATH", None)
        self.env = {
            **base,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "PATH": f"{self.bin_dir}{os.pathsep}{base.get('PATH', '')}",
            "IDEOCHAR_KEYRING": "off",  # no system keyring in a sandbox: keys go to the private file
            "COLUMNS": "120",
        }
        if self.extra_path is not None:
            self.env["PYTHONPATH"] = str(self.extra_path)

    # -- running ---------------------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 180, label: str = "") -> Result:
        started = time.monotonic()
        done = subprocess.run(
            list(argv), cwd=self.clone, env=self.env, input=stdin, capture_output=True, text=True, timeout=timeout
        )
        result = Result(label or shlex.join(argv), list(argv), done.returncode, done.stdout, done.stderr,
                        time.monotonic() - started)  # fmt: skip
        self.log.append(result)
        return result

    def expect(self, result: Result, code: int | tuple[int, ...] = 0, *, stderr_has: str | None = None) -> Result:
        codes = code if isinstance(code, tuple) else (code,)
        if result.code not in codes or (stderr_has is not None and stderr_has not in result.stderr):
            wanted = f"exit {' or '.join(map(str, codes))}" + (f" and {stderr_has!r} on stderr" if stderr_has else "")
            raise WalkFailed(f"{result.command}: expected {wanted}\n{result.describe()}")
        return result

    def ideochar(self, args: Sequence[str], **kwargs: object) -> Result:
        return self.run([str(self.bin_dir / "ideochar"), *args], **kwargs)  # type: ignore[arg-type]

    # -- one command -------------------------------------------------------------------------------------------

    def walk(self, command: Command) -> None:
        """Run one documented command by the rules above, and check what the page shows of its output."""
        argv = words(command.text)
        if not argv:
            return
        if argv[0] == "export":
            for assignment in argv[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = WALK_KEY if value == "..." else value
            return
        if argv[0] == "ideochar":
            result = self._ideochar(argv[1:], command)
        elif argv[0] == "pip":
            result = self._pip(argv, command)
        elif argv[0] in ("python", "python3") and argv[1:] == ["app.py"]:
            result = self._app(command)
        elif argv[0] == "make":
            result = self._make(argv, command)
        elif argv[0] == "eval" or "_IDEOCHAR_COMPLETE=" in command.text:
            result = self._completion(command)
        else:
            raise WalkFailed(f"{command.page}:{command.line}: no rule walks {command.text!r} (add one, or skip it)")
        if result is not None:
            self._check_output(command, result)

    def _check_output(self, command: Command, result: Result) -> None:
        key = (command.page, command.text.split("  #", 1)[0].strip())
        printed = result.stdout + "\n" + result.stderr
        for text in SAYS.get(key, ()):
            if text not in printed:
                raise WalkFailed(f"{command.page}:{command.line}: expected {text!r} in the output\n{result.describe()}")
        if key in EXACT:
            shown = [line.rstrip() for line in command.shown if line.strip()]
            actual = [line.rstrip() for line in result.stdout.splitlines() if line.strip()]
            if shown != actual:
                raise WalkFailed(
                    f"{command.page}:{command.line}: the page shows:\n" + "\n".join(shown) + "\n" + result.describe()
                )
        if command.shown:
            missing = unmatched(command.shown, printed)
            if missing:
                raise WalkFailed(
                    f"{command.page}:{command.line}: the page shows lines the command does not print:\n"
                    + "\n".join(missing)
                    + "\n"
                    + result.describe()
                )

    def _ideochar(self, args: list[str], command: Command) -> Result:
        args = [self._job_id() if a in PLACEHOLDER_JOB_IDS else a for a in args]
        if args[:2] == ["emulator", "serve"]:
            return self._serve(args, command)
        if args[:2] == ["keys", "set"]:
            result = self.expect(self.ideochar(args, stdin=WALK_KEY + "\n", label=command.text))
            self.keys_stored = True
            assert WALK_KEY not in result.stdout + result.stderr, "a stored key was printed back"
            return result
        if args[:2] == ["keys", "remove"]:
            self.keys_stored = False
        if args[:2] == ["jobs", "resume"] and self._needs_a_vendor(args):
            # The walk's jobs ran against the emulator: resumed without one, they are refused, saying where.
            self.expect(self.ideochar(args, label=command.text), 2, stderr_has="--emulator-url")
            return self.expect(self.ideochar([*args, "--emulator"], label=command.text + " (+ --emulator)"))
        if self._needs_a_vendor(args):
            keyless = not self.keys_stored and not any(self.env.get(v) for v in _VENDOR_VARIABLES)
            if keyless and (command.shown or not self.tried_without_key):
                self.tried_without_key = True  # once a page: every job command takes the same path there
                literal = self.ideochar(args, label=command.text)
                # No key: MissingCredentials (11), or Unsupported (4) when the others cannot do the operation
                # either; both say how to try without a key.
                self.expect(literal, (11, 4), stderr_has="--emulator")
                if command.shown:
                    return literal  # the page shows what happens without a key
            args = [*args, "--emulator"]
        label = command.text + (" (+ --emulator)" if "--emulator" in args else "")
        return self.expect(self.ideochar(args, label=label))

    @staticmethod
    def _needs_a_vendor(args: list[str]) -> bool:
        if "--emulator" in args or "--emulator-url" in args:
            return False
        return bool(args) and (args[0] in _JOB_COMMANDS or args[:2] == ["jobs", "resume"])

    def _job_id(self) -> str:
        """The newest job of this walk's journal, made now if there is none."""
        import json

        listed = self.expect(self.ideochar(["jobs", "list", "--json"]))
        jobs = json.loads(listed.stdout)["jobs"]
        if not jobs:
            made = ["generate", "a knight", "-r", "face.png", "--emulator", "--out", "out/", "-q"]
            self.expect(self.ideochar(made))
            jobs = json.loads(self.expect(self.ideochar(["jobs", "list", "--json"])).stdout)["jobs"]
        return str(jobs[0]["id"])[:8]

    def _serve(self, args: list[str], command: Command) -> Result:
        """The emulator in the background until its banner is out (a free port: 8080 may be taken)."""
        args = ["0" if a == "8080" else a for a in args]
        argv = [str(self.bin_dir / "ideochar"), *args]
        started = time.monotonic()
        server = subprocess.Popen(argv, cwd=self.clone, env=self.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert server.stdout is not None
        lines: list[str] = []
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                line = server.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if "Ctrl-C" in line:
                    break
        finally:
            server.send_signal(signal.SIGINT)
            try:
                _, err = server.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                _, err = server.communicate()
        result = Result(command.text, argv, 0 if any("Ctrl-C" in x for x in lines) else 1, "".join(lines), err,
                        time.monotonic() - started)  # fmt: skip
        self.log.append(result)
        return self.expect(result)

    def _pip(self, argv: list[str], command: Command) -> Result | None:
        target = argv[-1]
        if "examples/ideochar-example-plugin" in target:
            return self.install_example_plugin()
        if self.mode == "fast":
            return None  # the project is the development install; the fresh walk runs it literally
        return self.expect(self.run([str(self.bin_dir / "python"), "-m", *argv], label=command.text, timeout=600))

    def install_example_plugin(self) -> Result:
        """``pip install ./examples/ideochar-example-plugin``, for real: a fresh venv's pip as written; the
        fast walk's pip (offline, no build isolation) into a folder on this walk's path."""
        source = "./examples/ideochar-example-plugin"
        if self.mode == "fresh":
            argv = [str(self.bin_dir / "python"), "-m", "pip", "install", source]
        else:
            assert self.extra_path is not None
            argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(self.extra_path), source]  # fmt: skip
        return self.expect(self.run(argv, label=f"pip install {source}", timeout=600))

    def _app(self, command: Command) -> Result:
        """The page's ``app.py`` (the python block after this command), run against the emulator."""
        app = next(
            b for p in pages() if page_name(p) == command.page for b in python_blocks(p) if b.line > command.line
        )
        (self.clone / "app.py").write_text(emulated(app.code), encoding="utf-8")
        result = self.expect(self.run([str(self.bin_dir / "python"), "app.py"], label=command.text))
        providers = self.env.get("IDEOCHAR_PROVIDERS", "").split(",")
        if providers[0] and providers[0] not in result.stdout:
            raise WalkFailed(f"app.py should be served by {providers[0]} first\n{result.describe()}")
        return result

    def _make(self, argv: list[str], command: Command) -> Result | None:
        if argv[1:2] == ["test"]:
            return None  # make test is what runs the fast walk; `make walkthrough` the fresh one
        if self.mode == "fast":
            return None  # builds .venv with the development extras: the fresh walk runs it
        python = shutil.which("python3") or sys.executable
        result = self.expect(self.run(["make", *argv[1:], f"PYTHON={python}"], label=command.text, timeout=900))
        if not list((self.clone / "out").glob("ideochar-*.png")):
            raise WalkFailed(f"make demo wrote no image into out/\n{result.describe()}")
        return result

    def _completion(self, command: Command) -> Result:
        """Completion scripts come from click; bash is checked for real, the others by their script."""
        text = command.text.split("#", 1)[0].strip()
        shell = re.search(r"_IDEOCHAR_COMPLETE=(\w+)_source", text)
        assert shell, text
        script = self._complete_source(shell[1], text)
        if shell[1] == "bash" and shutil.which("bash"):
            check = self.run(["bash", "-c", f"{text} && complete -p ideochar"], label=text)
            self.expect(check)
            assert "_ideochar_completion" in check.stdout, check.describe()
        return script

    def _complete_source(self, shell: str, label: str) -> Result:
        saved = dict(self.env)
        self.env["_IDEOCHAR_COMPLETE"] = f"{shell}_source"
        try:
            result = self.run([str(self.bin_dir / "ideochar")], label=label)
        finally:
            self.env = saved
        if "ideochar" not in result.stdout or result.code != 0:
            raise WalkFailed(f"no {shell} completion script\n{result.describe()}")
        return result

    # -- a page ------------------------------------------------------------------------------------------------

    def walk_page(self, page: Path) -> Iterator[Command]:
        """Walk every console block of ``page`` (skipped ones excepted); yields each command as it is done."""
        self.prepare_page(page)
        for block in console_blocks(page):
            if skipped(block):
                continue
            for command in commands(block):
                self.walk(command)
                yield command

    def prepare_page(self, page: Path) -> None:
        """Files a page's commands name that the page itself asks the reader to write (a config it shows)."""
        if page_name(page) == "docs/howto/switch-vendor.md":
            toml = next(b for b in blocks(page, "toml"))
            (self.clone / "deploy").mkdir(exist_ok=True)
            (self.clone / "deploy" / "ideochar.toml").write_text(toml.code, encoding="utf-8")


def prepare_clone(destination: Path) -> Path:
    """A copy of the repository's files as a user's clone has them (tracked and new, not ignored), plus
    the images the docs' examples name."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    write_example_images(destination)
    return destination


def write_example_images(folder: Path) -> None:
    from PIL import Image, ImageDraw

    shutil.copy(ROOT / "src" / "ideochar" / "assets" / "reference.png", folder / "face.png")
    Image.new("RGB", (512, 512), "skyblue").save(folder / "scene.png")
    mask = Image.new("L", (512, 512), 255)
    ImageDraw.Draw(mask).rectangle((128, 128, 384, 384), fill=0)
    mask.save(folder / "mask.png")


def walked_pages() -> list[Path]:
    """README.md and every page with a console block, in the order a reader meets them (README first)."""
    return [p for p in pages() if console_blocks(p)]

"""Running the code blocks of a documentation page, in order, the way a reader would.

A page's fenced blocks are taken in document order:

* ```` ```python ```` blocks run as Python; consecutive Python blocks share one namespace (one script), a
  shell block in between starts a new one.
* ```` ```bash ```` blocks run line by line (``\\`` continues a line; ``#`` starts a comment).
* A block whose body is only ``--8<-- "path"`` lines is a file listing (pymdownx.snippets includes the
  file when the site is built): it is not run, its paths are returned for the caller to check.
* A block with a ``title="path"`` naming a file (``title="examples/plugin/pyproject.toml"``) is a copy of
  that file written out on the page: it is not run; the caller checks that it equals the file.

Two ways to run, chosen by the caller: :class:`InProcess` executes Python with ``exec`` and ``zoo ...``
commands through ``zoo.cli.app.main`` in the test process (fast, for pages that need nothing installed), and
:class:`Subprocess` runs every script and command in a fresh interpreter or shell (for a page that installs
a package, whose entry points only a new interpreter sees). ``pip install`` lines are handed to a callback:
the test decides what running them means (installing into a private target, or checking that the test
environment already is what the command produces).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

FENCE = re.compile(r"^(?P<fence>`{3,})(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)
SNIPPET = re.compile(r'^--8<--\s+"([^"]+)"\s*$')
SHELL_LANGS = {"bash", "sh", "shell", "console"}


TITLE = re.compile(r'title="([\w./-]+/[\w.-]+\.\w+)"')


@dataclasses.dataclass
class Block:
    lang: str
    body: str
    line: int
    attrs: str = ""

    @property
    def listing(self) -> str | None:
        """The file the block is a copy of (its ``title="path"``), else ``None``."""
        m = TITLE.search(self.attrs)
        return m.group(1) if m else None

    @property
    def snippets(self) -> list[str]:
        """The included paths if the block is a file listing, else ``[]``."""
        lines = [ln.strip() for ln in self.body.strip().splitlines()]
        found = [SNIPPET.match(ln) for ln in lines]
        return [m.group(1) for m in found if m] if lines and all(found) else []


def blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown``, in order."""
    return [Block(m.group("lang").lower(), m.group("body"), markdown.count("\n", 0, m.start()) + 1, m.group("attrs"))
            for m in FENCE.finditer(markdown)]


def shell_commands(body: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, blank and comment lines dropped."""
    out, pending = [], ""
    for raw in body.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


@dataclasses.dataclass
class Step:
    """One thing run: a Python script or a shell command, with what it printed."""

    kind: str
    source: str
    line: int
    output: str = ""


PipHandler = Callable[[list[str]], None]


class Runner:
    """Run a page's blocks in ``cwd``; subclasses say how."""

    def __init__(self, cwd: Path, pip: PipHandler) -> None:
        self.cwd = cwd
        self.pip = pip
        self.steps: list[Step] = []

    def run_page(self, markdown: str, page: str) -> list[Step]:
        script: list[Block] = []
        for block in blocks(markdown):
            if block.snippets or block.listing:
                continue
            if block.lang == "python":
                script.append(block)
                continue
            if script:
                self._python(script, page)
                script = []
            if block.lang in SHELL_LANGS:
                for cmd in shell_commands(block.body):
                    words = shlex.split(cmd, comments=True)
                    if words[:2] == ["pip", "install"]:
                        self.pip(words[2:])
                        self.steps.append(Step("pip", cmd, block.line))
                    else:
                        self.steps.append(Step("shell", cmd, block.line, self.shell(cmd, f"{page}:{block.line}")))
        if script:
            self._python(script, page)
        return self.steps

    def _python(self, script: list[Block], page: str) -> None:
        code = "\n".join(b.body for b in script)
        where = f"{page}:{script[0].line}"
        self.steps.append(Step("python", code, script[0].line, self.python(code, where)))

    def python(self, code: str, where: str) -> str:
        raise NotImplementedError

    def shell(self, command: str, where: str) -> str:
        raise NotImplementedError


class Subprocess(Runner):
    """Every script in a fresh ``python``, every command in ``bash -c``, with ``env``."""

    def __init__(self, cwd: Path, pip: PipHandler, env: dict[str, str]) -> None:
        super().__init__(cwd, pip)
        self.env = env

    def _run(self, argv: list[str], what: str, where: str) -> str:
        proc = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=600)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{where}: {what} failed with status {proc.returncode}:\n{output[-4000:]}"
        return output

    def python(self, code: str, where: str) -> str:
        script = self.cwd / f"docs_example_{len(self.steps)}.py"
        script.write_text(code)
        return self._run([sys.executable, str(script)], "the Python block", where)

    def shell(self, command: str, where: str) -> str:
        return self._run(["bash", "-c", command], repr(command), where)


class InProcess(Runner):
    """Python with ``exec`` (one namespace per script) in ``cwd``; ``zoo`` commands via ``zoo.cli.app.main``.

    A command may start with ``NAME=value`` assignments, end in ``> FILE`` and have one ``|| echo TEXT``
    fallback; anything else is refused, so a page cannot silently use a shell feature this does not run.
    """

    def _in_cwd(self) -> contextlib.AbstractContextManager[None]:
        return _chdir(self.cwd)

    def python(self, code: str, where: str) -> str:
        out = io.StringIO()
        namespace = {"__name__": "__main__"}
        with self._in_cwd(), contextlib.redirect_stdout(out):
            try:
                exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the page's own example code
            except Exception as exc:
                raise AssertionError(f"{where}: the Python block raised {type(exc).__name__}: {exc}\n"
                                     f"output so far:\n{out.getvalue()[-2000:]}") from exc
        return out.getvalue()

    def shell(self, command: str, where: str) -> str:
        lex = shlex.shlex(command, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        words = list(lex)
        env: dict[str, str] = {}
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        fallback = None
        if "||" in words:
            i = words.index("||")
            words, fallback = words[:i], words[i + 1:]
            assert fallback[:1] == ["echo"], f"{where}: only '|| echo ...' is supported, got {command!r}"
        redirect = None
        if ">" in words:
            i = words.index(">")
            words, redirect = words[:i], words[i + 1:]
            assert len(redirect) == 1, f"{where}: '> FILE' takes one file, got {command!r}"
        assert words[:1] == ["zoo"] and not set(words) & {"|", "&&", ";", "<", ">>"}, (
            f"{where}: this runner runs 'zoo ...' commands only, got {command!r}")
        from zoo.cli.app import main

        out, err = io.StringIO(), io.StringIO()
        with self._in_cwd(), _environ(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(words[1:])
            except SystemExit as exc:  # argparse
                status = exc.code if isinstance(exc.code, int) else 2
        text = out.getvalue() + err.getvalue()
        if status != 0 and fallback is not None:
            return text + " ".join(fallback[1:]).replace("$?", str(status)) + "\n"
        assert status == 0, f"{where}: {command!r} exited with status {status}:\n{text[-4000:]}"
        if redirect is not None:
            (self.cwd / redirect[0]).write_text(out.getvalue())
            return err.getvalue()
        return text


@contextlib.contextmanager
def _chdir(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

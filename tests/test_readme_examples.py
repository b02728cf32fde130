"""Every README example that shows output is run, and its output compared.

An example is a fenced block of README.md holding ``$ `` command lines, each
followed by what it prints. Each command runs in bash, as a reader types it
(``< file``, ``\\`` continuations, ``$(...)`` and variables are the shell's),
from the root of a fresh copy of the repository (so a command that writes a
file, such as ``--junit report.xml``, leaves nothing in the repository), with
the installed ``meshauthz`` (the one beside ``sys.executable``; in CI
``.ci/run``'s ``.venv/bin/meshauthz``) first on PATH. Its standard output and
standard error, interleaved as on a terminal, must be the README's lines
exactly: no normalisation. ``$ echo $?`` shows the previous command's exit code;
any other command that is not ``meshauthz ...`` fails the test.

The quick-start block at the top (commands without ``$``) is run too: each of
its ``meshauthz`` commands must succeed.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ECHO_STATUS = "echo $?"

# `meshauthz mesh` starts Envoys, binds addresses and ports chosen per run and
# prints them with PIDs and timestamps, so its examples cannot be compared as
# text; a block is left out only when every command in it is a `mesh` command.
# They are run by tests/runtime: test_cli_mesh.py::test_cli_round_trip (mesh up,
# curl, logs, status, token and down on examples/seed, checking what they print),
# test_mesh_behaviour.py::test_jwks_from_a_local_file (curl with a JWT) and
# test_seed_mesh.py (the seed's four cases, and the edit that fixes it).
MESH = re.compile(r"(^|[\s(])meshauthz mesh\s")

# Not the repository's own files: the venv, caches, the egg-info of an editable install.
NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hypothesis",
)


@dataclass(frozen=True, slots=True)
class Step:
    line: int  # README line of the command
    command: str  # as bash gets it, continuation lines included
    output: tuple[str, ...]  # the lines the README shows after it


@dataclass(frozen=True, slots=True)
class Block:
    line: int  # README line of the opening fence
    steps: tuple[Step, ...]


def fenced_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(line of the opening fence, lines inside) for every fenced block."""
    blocks: list[tuple[int, list[str]]] = []
    fence: str | None = None
    start = 0
    body: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence, start, body = m.group(1), n, []
        elif m and m.group(1).startswith(fence) and not line.strip(fence[0] + " "):
            blocks.append((start, body))
            fence = None
        else:
            body.append(line)
    if fence is not None:
        raise AssertionError(f"README.md:{start}: fenced block is never closed")
    return blocks


def parse_example(start: int, body: list[str]) -> Block:
    """The commands of a block and the output shown after each. Raises
    AssertionError for text the test cannot attribute to a command."""
    steps: list[Step] = []
    i = 0
    while i < len(body):
        line = body[i]
        n = start + 1 + i
        if not line.startswith("$ "):
            if line.strip():
                raise AssertionError(
                    f"README.md:{n}: text before the block's first '$ ' command: {line!r}"
                )
            i += 1
            continue
        command = line[2:]
        while command.endswith("\\"):
            i += 1
            if i == len(body):
                raise AssertionError(f"README.md:{n}: the block ends inside a '\\' continuation")
            command += "\n" + body[i]
        i += 1
        output: list[str] = []
        while i < len(body) and not body[i].startswith("$ "):
            output.append(body[i])
            i += 1
        # A blank line between one command's output and the next command is a
        # separator for the eye; the output proper ends with its last text line.
        while output and not output[-1].strip():
            output.pop()
        steps.append(Step(n, command, tuple(output)))
    return Block(start, tuple(steps))


def examples() -> list[Block]:
    return [
        parse_example(start, body)
        for start, body in fenced_blocks(README.read_text(encoding="utf-8"))
        if any(line.startswith("$ ") for line in body)
    ]


def is_mesh(block: Block) -> bool:
    mesh = [bool(MESH.search(s.command)) for s in block.steps]
    if any(mesh) and not all(mesh):
        raise AssertionError(
            f"README.md:{block.line}: a block mixes `meshauthz mesh` with other commands;"
            " the others would go untested: give them a block of their own"
        )
    return all(mesh)


def _params() -> list[object]:
    return [pytest.param(b, id=f"README.md:{b.line}") for b in examples() if not is_mesh(b)]


def meshauthz_env() -> dict[str, str]:
    if not (BIN / "meshauthz").is_file():
        raise AssertionError(
            f"no meshauthz command beside {sys.executable}: install the project into the"
            " environment that runs the tests (pip install -e '.[test]')"
        )
    # A reader has none of meshauthz's own variables set (MESHAUTHZ_DEBUG would
    # change error output). Unbuffered output keeps stdout and stderr in the
    # order they were written, as a terminal shows them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAUTHZ_")}
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the repository, with `.venv` the environment running the tests."""
    root = tmp_path / "repo"
    shutil.copytree(REPO, root, ignore=NOT_COPIED, symlinks=True)
    (root / ".venv").symlink_to(BIN.parent, target_is_directory=True)
    return root


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=meshauthz_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=180,
        check=False,
    )


def mismatch(step: Step, expected: str, actual: str, note: str) -> str:
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            "README.md (expected)",
            "actual",
        )
    )
    return f"README.md:{step.line}: $ {step.command}\n{note}\n{diff or '(no difference shown)'}"


def test_every_command_line_is_in_an_example() -> None:
    # A `$ ` line outside a fenced block, or a change in fence style, would
    # otherwise leave an example out of the tests below without a word.
    text = README.read_text(encoding="utf-8")
    shown = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith("$ ")]
    parsed = [s.line for b in examples() for s in b.steps]
    assert parsed, "no '$ ' examples found in README.md"
    assert parsed == shown


@pytest.mark.parametrize("block", _params())
def test_readme_example(block: Block, checkout: Path) -> None:
    failures: list[str] = []
    previous: subprocess.CompletedProcess[str] | None = None
    for step in block.steps:
        expected = "".join(line + "\n" for line in step.output)
        if step.command.strip() == ECHO_STATUS:
            if previous is None:
                failures.append(f"README.md:{step.line}: `$ echo $?` with no command before it")
                continue
            actual = f"{previous.returncode}\n"
            if actual != expected:
                failures.append(
                    mismatch(
                        step,
                        expected,
                        actual,
                        f"the exit code of `$ {previous.args[2]}`; it printed:\n{previous.stdout}",
                    )
                )
            continue
        if not step.command.startswith("meshauthz "):
            # Only the project's own command is run: a README example of another
            # tool (kubectl, curl) would reach outside this machine's copy.
            failures.append(
                f"README.md:{step.line}: $ {step.command}\n"
                "not a meshauthz command: this test runs only `meshauthz ...` and `echo $?`"
            )
            previous = None
            continue
        previous = run(step.command, checkout)
        if previous.stdout != expected:
            failures.append(
                mismatch(step, expected, previous.stdout, f"exit code {previous.returncode}")
            )
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


def quick_start() -> list[object]:
    """The `meshauthz` commands of the README's first block (set up, run, test)."""
    start, body = fenced_blocks(README.read_text(encoding="utf-8"))[0]
    commands = [
        (start + 1 + i, line.strip())
        for i, line in enumerate(body)
        if line.strip().startswith(".venv/bin/meshauthz ")
    ]
    assert commands, f"README.md:{start}: the first block runs no meshauthz command"
    # The block's `mesh` commands are run by tests/runtime/test_cli_mesh.py
    # (see MESH above); its set-up and pytest commands are what .ci/run runs.
    return [
        pytest.param(n, c, id=f"README.md:{n}")
        for n, c in commands
        if not MESH.search(c.replace(".venv/bin/", ""))
    ]


@pytest.mark.parametrize(("line", "command"), quick_start())
def test_quick_start_command_succeeds(line: int, command: str, checkout: Path) -> None:
    p = run(command, checkout)
    assert p.returncode == 0, f"README.md:{line}: {command}\nexit code {p.returncode}\n{p.stdout}"

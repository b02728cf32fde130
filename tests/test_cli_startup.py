"""The command line imports what the command it runs needs, nothing more:
``--version`` loads no command, ``check`` not the others' modules."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("meshauthz.cli.test_cmd", "meshauthz.cli.mesh_cmd", "meshauthz.runtime", "meshauthz._api")


def _imported(*args: str) -> set[str]:
    code = (
        "import sys; from meshauthz.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    return set(proc.stderr.split())


def test_version_imports_no_command() -> None:
    mods = _imported("--version")
    assert not any(m.startswith(("meshauthz.cli.check", "meshauthz.decide", *HEAVY)) for m in mods)


def test_check_imports_only_check() -> None:
    mods = _imported(
        "check",
        "-f",
        str(REPO / "examples" / "seed"),
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
    )
    assert "meshauthz.cli.check" in mods
    assert not any(m.startswith(HEAVY) for m in mods), sorted(
        m for m in mods if m.startswith(HEAVY)
    )

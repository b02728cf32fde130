"""benchmarks/diff.py still runs (--quick: a 50-policy mesh with one policy changed).

Not a timed test: it checks that the script's diff gives the expected answer
(the change to allow-svc7 opens GET and closes the rule's other methods, and
nothing else) in process and as a command."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_diff_benchmark_runs_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "diff.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "ABORT" not in out + proc.stderr
    for line in (
        "mesh: 50 policies, one changed (ns7/svc7)",
        "compare: ",
        "(2 classes, each confirmed)",
        "meshauthz diff OLD NEW: ",
    ):
        assert line in out, out

"""benchmarks/load.py still runs (--quick: a few hundred workloads at 1x, 2x and 4x).

Not a timed test: it checks that the script generates a mesh that loads without
errors into the expected number of workloads and that ``check`` answers on it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_load_benchmark_runs_quick():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "load.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "ABORT" not in out + proc.stderr
    for line in (
        "1x: 100 workloads, 450 objects",
        "2x: 200 workloads, 850 objects",
        "4x: 400 workloads, 1650 objects",
        "per-object time at 4x / at 1x (1.00 is linear): read ",
    ):
        assert line in out, out

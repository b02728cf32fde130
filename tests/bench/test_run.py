"""benchmarks/run.py still runs (--quick: a few hundred requests, a small mesh).

Not a timed test: it checks that the script works and that every engine it
finds agrees with meshauthz; the peers are optional (the `bench` extra) and are
reported as unavailable when absent."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_benchmark_script_runs_quick():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--requests", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "ABORT" not in out + proc.stderr
    for heading in ("seed: 200 requests", "mesh (50 policies): 200 requests", "build:", "targets:"):
        assert heading in out, out
    for peer in ("cedarpy", "pycasbin", "regorus (RVM)", "regopy (bundle)"):
        # each peer either agreed on every request and was timed, or is said to be missing
        assert f"{peer}: agrees on all 200 requests" in out or f"{peer}: unavailable" in out, out


def test_steps_script_runs_quick():
    # benchmarks/steps.py: a new request taken apart; it runs, and prints each step
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "steps.py"), "--requests", "100"]
        + ["--policies", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {}
    for line in proc.stdout.splitlines()[2:]:
        m = re.fullmatch(r" +(\S.*?) +([\d.]+) +([\d.]+)", line)
        assert m, line
        rows[m[1].strip()] = [m[2], m[3]]
    steps = ["parse", "resolve", "prepare", "of it, view", "run", "Decision"]
    assert list(rows) == [*steps, "sum of the steps", "end to end"], proc.stdout
    assert all(float(v) > 0 for vs in rows.values() for v in vs), proc.stdout

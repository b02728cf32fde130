"""``meshauthz check --request`` on many requests, and start-up, as users run them.

``check_request_throughput(directory, requests)`` writes ``requests`` (meshgen's
random requests to the generated mesh) as one JSON request file and runs
``meshauthz check -f DIR --request FILE`` in a fresh process, then the same with
the file's first request alone; the difference is what the extra requests cost
(read, resolve, build each destination's filters on first use, decide, the
findings on the deciding rules, print), and their number over it the decisions
per second. The processes are timed by the CPU time they use (user and system,
as the kernel counts a child's), not the wall clock: on a shared machine the
wall clock also counts the others' work. ``startup()`` times ``python -c
pass``, ``meshauthz --version`` and ``meshauthz check`` of one seed request
(fresh processes, in turn, medians of 15 rounds, wall clock: start-up is what
a user waits).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import meshgen

CLI = [sys.executable, "-m", "meshauthz.cli.main"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(args: list[str], cpu: bool = False) -> float:
    """Seconds ``args`` took: wall clock, or with ``cpu`` the CPU time it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        sys.exit(f"ABORT: {' '.join(args[:6])}... exited {proc.returncode}: {proc.stderr[-500:]}")
    if cpu:
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed


def _request(r: meshgen.Req, port: int) -> dict[str, Any]:
    return {"from": {"principal": r.principal}, "to": r.destination, "port": port} | {
        "method": r.method,
        "path": r.path,
    }


def check_request_throughput(
    directory: Path, reqs: list[meshgen.Req], port: int, work: Path, rounds: int = 2
) -> dict[str, float]:
    many, one = work / "requests.json", work / "one.json"
    many.write_text(json.dumps([_request(r, port) for r in reqs]))
    one.write_text(json.dumps([_request(reqs[0], port)]))
    base = [*CLI, "check", "-f", str(directory), "--request"]
    t_many = min(_run([*base, str(many)], cpu=True) for _ in range(rounds))
    t_one = min(_run([*base, str(one)], cpu=True) for _ in range(rounds))
    extra = max(t_many - t_one, 1e-9)
    return {
        "requests": len(reqs),
        "seconds": t_many,
        "seconds_one": t_one,
        "per_second": (len(reqs) - 1) / extra,
        "per_second_total": len(reqs) / t_many,
    }


def startup(rounds: int = 15) -> dict[str, float]:
    """The median of ``rounds`` runs of each. A round runs the three once each, in
    turn: a change in the machine's speed during the runs then moves the three
    alike, not one of them (their ratios are the point)."""
    seed = [*CLI[:1], "-c", "pass"]
    check = [*CLI, "check", "-f", str(EXAMPLES / "seed"), "--from", "default/frontend"]
    check += ["--to", "default/backend", "--path", "/api/v1/data"]
    runs = {
        "python -c pass": seed,
        "meshauthz --version": [*CLI, "--version"],
        "meshauthz check (seed)": check,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, args in runs.items():
            times[name].append(_run(args))
    return {name: statistics.median(t) for name, t in times.items()}

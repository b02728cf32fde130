"""How long ``meshauthz diff`` takes on the benchmark's mesh with one policy changed.

Usage::

    .venv/bin/python benchmarks/diff.py [--policies N] [--quick]

Generates the mesh of benchmarks/meshgen.py (default 1,000 workloads, one
ALLOW policy each, and a mesh-wide DENY) into OLD, copies it to NEW and
changes one policy there (the first rule of ``allow-svc7`` allows only GET).
Then, in this process, it times (wall and CPU seconds) the two loads (NEW
reusing what reading OLD made of the documents both have, as the command does)
and the comparison (``compare_meshes``), checks the answer (the change opens GET and
closes the rule's other methods on ns7/svc7, and nothing else), and runs the
command as a user would (``meshauthz diff OLD NEW -o json`` in a fresh
process: interpreter start-up, imports, both loads, the comparison, the
witnesses' confirmation), reporting its wall time and its CPU time. The target
(the issue "Questions about all requests") is under 2 s for the command.

``--quick`` (a 50-policy mesh) keeps the script from rotting
(tests/bench/test_diff.py); its numbers mean little.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import meshgen

from meshauthz.cli.common import load_mesh
from meshauthz.mesh.loading import LoadRecord
from meshauthz.symbolic import compare_meshes

CHANGED = "ns7/svc7"


def change_one_policy(directory: Path) -> None:
    """The first rule of allow-svc7 allows only GET."""
    p = directory / "policies.yaml"
    text = p.read_text()
    at = text.index("name: allow-svc7\n")
    start = text.index("methods: [", at)
    end = text.index("]", start)
    p.write_text(text[:start] + 'methods: ["GET"' + text[end:])


def timed(fn: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", type=int, default=1000, help="ALLOW policies in the mesh")
    ap.add_argument("--quick", action="store_true", help="a 50-policy mesh")
    args = ap.parse_args(argv)
    policies = 50 if args.quick else args.policies
    with tempfile.TemporaryDirectory(prefix="meshauthz-diff-") as tmp:
        old, new = Path(tmp, "old"), Path(tmp, "new")
        meshgen.generate_mesh(old, policies)
        shutil.copytree(old, new)
        change_one_policy(new)

        # as the command loads them: NEW reuses what reading OLD made of the
        # documents both have (all but the changed one)
        record = LoadRecord()
        a, wa, ca = timed(lambda: load_mesh((str(old),), None, record=record))
        b, wb, cb = timed(lambda: load_mesh((str(new),), None, record=record))
        result, wc, cc = timed(lambda: compare_meshes(a, b))
        changes = [*result.opened, *result.closed]
        if result.unknown or not changes or {c.destination.workload for c in changes} != {CHANGED}:
            print(f"ABORT: unexpected answer {json.dumps(result.to_json())[:400]}")
            return 2
        opened = sorted(c.witness["method"] for c in result.opened)
        if opened != ["GET"]:
            print(f"ABORT: expected GET opened, got {opened}")
            return 2
        print(f"mesh: {policies} policies, one changed ({CHANGED})")
        print(f"load OLD: {wa:.2f} s wall, {ca:.2f} s CPU")
        print(f"load NEW: {wb:.2f} s wall, {cb:.2f} s CPU (reusing OLD's documents)")
        print(f"compare: {wc:.2f} s wall, {cc:.2f} s CPU ({len(changes)} classes, each confirmed)")

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        meshauthz = Path(sys.executable).parent / "meshauthz"
        start = time.perf_counter()
        proc = subprocess.run(
            [str(meshauthz), "diff", str(old), str(new), "-o", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode != 1:
            print(f"ABORT: meshauthz diff exited {proc.returncode}: {proc.stderr[:400]}")
            return 2
        print(f"meshauthz diff OLD NEW: {wall:.2f} s wall, {cpu:.2f} s CPU (target: under 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

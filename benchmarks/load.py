"""How loading a large mesh grows with its size (the issue "Slow input").

Usage::

    .venv/bin/python benchmarks/load.py [--workloads N] [--quick]

Generates one file of N workloads (default 4,000), each an AuthorizationPolicy
(one ALLOW rule), a Deployment, a Service and a ServiceAccount, spread over 50
namespaces; then the same at 2x and 4x. For each size it times, in this
process, ``load_mesh`` split into its steps (read: YAML, typing and each
security object's own validation, made while its document's data is at hand;
validate: the rest of Istio's validation and the workloads' notes; snapshot:
``build_snapshot``), and one ``check`` of a
request end to end (load, then ``Decider`` for one workload and its decision),
and prints the time per object, which stays flat when loading is linear.

``--quick`` (a few hundred workloads) keeps the script from rotting
(tests/bench/test_load.py); its numbers mean little.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshauthz.collector import paused_gc
from meshauthz.mesh.snapshot import build_snapshot
from meshauthz.resources.loader import load
from meshauthz.resources.validation import validate

CLI = "import sys; from meshauthz.cli.main import main; sys.argv[0] = 'meshauthz'; main()"
NAMESPACES = 50
KINDS = 4  # objects per workload


def generate(path: Path, workloads: int) -> None:
    """One YAML stream of ``workloads`` x (AuthorizationPolicy, Deployment, Service,
    ServiceAccount) over ``NAMESPACES`` namespaces, one ALLOW policy per workload."""
    docs = [
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns{i}\n" for i in range(NAMESPACES)
    ]
    for i in range(workloads):
        ns = f"ns{i % NAMESPACES}"
        name = f"svc{i}"
        caller = f"svc{(i + 1) % workloads}"
        caller_ns = f"ns{(i + 1) % workloads % NAMESPACES}"
        docs.append(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata:\n  name: allow-{name}\n  namespace: {ns}\n"
            f"spec:\n  selector:\n    matchLabels:\n      app: {name}\n"
            "  action: ALLOW\n  rules:\n"
            f'  - from:\n    - source:\n        principals: ["cluster.local/ns/{caller_ns}/sa/{caller}"]\n'
            '    to:\n    - operation:\n        methods: ["GET"]\n        paths: ["/api/*"]\n'
        )
        docs.append(
            "apiVersion: apps/v1\nkind: Deployment\n"
            f"metadata:\n  name: {name}\n  namespace: {ns}\n"
            f"spec:\n  selector:\n    matchLabels:\n      app: {name}\n"
            f"  template:\n    metadata:\n      labels:\n        app: {name}\n"
            f"    spec:\n      serviceAccountName: {name}\n"
            "      containers:\n      - name: app\n        image: app\n"
            "        ports:\n        - containerPort: 8080\n"
        )
        docs.append(
            "apiVersion: v1\nkind: Service\n"
            f"metadata:\n  name: {name}\n  namespace: {ns}\n"
            f"spec:\n  selector:\n    app: {name}\n"
            "  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n"
        )
        docs.append(
            f"apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
        )
    path.write_text("---\n".join(docs))


def cpu(step: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.process_time()
    out = step()
    return time.process_time() - t0, out


def check_cpu(path: Path) -> float:
    """CPU seconds of one ``meshauthz check`` run on the file (a fresh process: start,
    load, decide, print), as a user would run it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "check", "-f", str(path)]
        + ["--from", "ns1/svc1", "--to", "ns0/svc0", "--path", "/api/x"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or "allowed" not in proc.stdout:
        sys.exit(f"ABORT: check failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(path: Path, objects: int) -> dict[str, float]:
    """CPU seconds of each step of ``load_mesh`` (as it runs them: the cyclic
    collector paused), and of one ``check``."""
    with paused_gc():
        read, result = cpu(lambda: load([str(path)]))
        if len(result.manifests.all()) != objects:
            sys.exit(f"ABORT: read {len(result.manifests.all())} objects, expected {objects}")
        checked, findings = cpu(lambda: validate(result.manifests, known=result.validated))
        if any(f.severity == "error" for f in findings):
            sys.exit("ABORT: the generated mesh has errors")
        snap, snapshot = cpu(lambda: build_snapshot(result.manifests))
        if len(snapshot.workloads) * KINDS + NAMESPACES != objects:
            sys.exit(f"ABORT: the snapshot has {len(snapshot.workloads)} workloads")
    return {
        "read": read,
        "validate": checked,
        "snapshot": snap,
        "load_mesh": read + checked + snap,
        "check": check_cpu(path),
    }


COLUMNS = ("read", "validate", "snapshot", "load_mesh", "check")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", type=int, default=None, help="workloads at 1x (4000)")
    ap.add_argument("--quick", action="store_true", help="a few hundred workloads")
    args = ap.parse_args(argv)
    base = args.workloads or (100 if args.quick else 4000)
    rows: list[tuple[int, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="meshauthz-load-") as tmp:
        for factor in (1, 2, 4):
            n = base * factor
            path = Path(tmp) / f"mesh-{n}.yaml"
            generate(path, n)
            objects = NAMESPACES + KINDS * n
            size = path.stat().st_size
            rows.append((factor, objects, measure(path, objects)))
            print(f"{factor}x: {n} workloads, {objects} objects, {size / 1e6:.1f} MB", flush=True)
            path.unlink()
    print()
    print("CPU seconds (microseconds per object)")
    print(f"{'size':>6} {'objects':>8} " + " ".join(f"{c:>17}" for c in COLUMNS))
    for factor, objects, t in rows:
        cells = " ".join(f"{t[c]:7.2f} ({t[c] / objects * 1e6:5.0f} us)" for c in COLUMNS)
        print(f"{factor:>5}x {objects:>8} {cells}")
    first, last = rows[0], rows[-1]
    growth = " ".join(
        f"{c} {(last[2][c] / last[1]) / max(first[2][c] / first[1], 1e-9):.2f}" for c in COLUMNS
    )
    print(f"per-object time at 4x / at 1x (1.00 is linear): {growth}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

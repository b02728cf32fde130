"""meshauthz's diff and equiv beside IBM's network-config-analyzer (NCA).

Usage::

    .venv/bin/pip install -e '.[bench]'      # network-config-analyzer among the peers
    .venv/bin/python benchmarks/nca.py

Two questions, each asked of both tools as a user would (one process each, the
whole run: start-up, reading, answering), with the answer and the wall and CPU
seconds of each, and the ratio of CPU times:

1. the seed pair: what does examples/seed-fixed open or close against
   examples/seed? (``nca --semantic_diff`` / ``meshauthz diff``);
2. NCA's own Istio test case: bookinfo-policy-test-methods-3.yaml against
   bookinfo-policy-test-methods-3-differently-written.yaml on NCA's bookinfo
   deployments (``nca --equiv`` / ``meshauthz equiv``), from NCA's
   tests/istio_testcases (copied under benchmarks/nca with NCA's LICENSE; see
   benchmarks/nca/README.md). NCA's model knows nine HTTP methods; Envoy's
   HTTP/1.1 codec accepts more (SEARCH, LOCK, PURGE, ...), so meshauthz answers
   "not equivalent" there, with witnesses, where NCA answers "equivalent".
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
NCA = HERE / "nca"


def run(argv: list[str]) -> tuple[str, float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.stdout + proc.stderr, wall, cpu, proc.returncode


def main() -> int:
    nca = shutil.which("nca", path=str(BIN)) or shutil.which("nca")
    if nca is None:
        print("network-config-analyzer is not installed (pip install -e '.[bench]')")
        return 2
    seed, fixed = "examples/seed", "examples/seed-fixed"
    a = str(NCA / "bookinfo-policy-test-methods-3.yaml")
    b = str(NCA / "bookinfo-policy-test-methods-3-differently-written.yaml")
    pods, nss = str(NCA / "bookinfo_deployments.yaml"), str(NCA / "bookinfo_ns_list.json")
    cases = [
        (
            "seed: diff",
            [nca, "--semantic_diff", fixed, "--base_np_list", seed, "--pod_list", seed]
            + ["--ns_list", f"{seed}/namespace.yaml"],
            [str(BIN / "meshauthz"), "diff", seed, fixed],
        ),
        (
            "bookinfo methods-3: equiv",
            [nca, "--equiv", a, "--base_np_list", b, "--pod_list", pods, "--ns_list", nss],
            [str(BIN / "meshauthz"), "equiv", a, b, "-f", pods, "-f", nss],
        ),
    ]
    print("| question | tool | answer | wall s | CPU s | CPU x meshauthz |")
    print("|---|---|---|---:|---:|---:|")
    for name, nca_argv, ours_argv in cases:
        ours_out, ours_wall, ours_cpu, _ = run(ours_argv)
        nca_out, nca_wall, nca_cpu, _ = run(nca_argv)
        ours_answer = ours_out.splitlines()[0] if ours_out else "?"
        nca_answer = next(
            (
                line
                for line in nca_out.splitlines()
                if "equivalent" in line or "same network" in line
            ),
            "?",
        )
        print(f"| {name} | meshauthz | {ours_answer} | {ours_wall:.2f} | {ours_cpu:.2f} | 1.0 |")
        print(
            f"| {name} | NCA | {nca_answer} | {nca_wall:.2f} | {nca_cpu:.2f} | "
            f"{nca_cpu / ours_cpu:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``meshauthz reach`` beside NCA's connectivity map, on the same inputs.

Usage::

    .venv/bin/pip install -e '.[bench]'     # network-config-analyzer (NCA)
    .venv/bin/python benchmarks/reach.py [--repeat N]

The inputs are NCA's own test cases (github:np-guard/network-config-analyzer,
tests/istio_testcases, copied under benchmarks/nca_inputs/ with NCA's LICENSE
and commit): bookinfo (the example pod list's deployments and services, with
bookinfo-policy-test-principals-1.yaml) and online-boutique
(new_online_boutique_manifests_istio: 11 services, one AuthorizationPolicy
each). For each, in one run: meshauthz's load and ``reach`` over every caller
and destination (in-process, witnesses confirmed by ``check`` as always), and
NCA's ``--connectivity`` over the same directory (in-process through its
``nca_main``); the least CPU time of N runs after one warm-up, and the
ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import ncapeer

from meshauthz.mesh.loading import load_mesh
from meshauthz.symbolic.reach import reach

INPUTS = Path(__file__).parent / "nca_inputs"
CASES = ("bookinfo", "online_boutique")


def meshauthz_reach(directory: Path) -> Callable[[], object]:
    def run() -> object:
        return reach(load_mesh([str(directory)]).snapshot)

    return run


def nca_connectivity(directory: Path) -> Callable[[], object] | None:
    nca_main = ncapeer.nca_main()
    if nca_main is None:
        return None

    def run() -> object:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return nca_main(["--connectivity", "--resource_list", str(directory)])

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{'case':<16} {'rows':>5} {'meshauthz reach':>16} {'NCA connectivity':>17} {'ratio':>7}")
    for case in CASES:
        d = INPUTS / case
        rows = len(meshauthz_reach(d)().rows)  # type: ignore[attr-defined]
        ours = ncapeer.best(meshauthz_reach(d), args.repeat)
        nca = nca_connectivity(d)
        theirs = ncapeer.best(nca, args.repeat) if nca is not None else None
        ratio = f"{theirs / ours:6.1f}x" if theirs else "   n/a"
        shown = f"{theirs:16.3f}s" if theirs is not None else f"{'(not installed)':>17}"
        print(f"{case:<16} {rows:>5} {ours:15.3f}s {shown} {ratio}")
    print("ratio: NCA's time / meshauthz's (above 1: meshauthz is faster)")


if __name__ == "__main__":
    main()

"""meshauthz's diff, equiv and reach beside IBM's network-config-analyzer (NCA).

Usage::

    .venv/bin/pip install -e '.[bench]'      # network-config-analyzer among the peers
    .venv/bin/python benchmarks/nca.py [--repeat N] [--only TEXT]

The questions NCA's own Istio test schemes ask that meshauthz answers too, each
asked of both tools on the same files, and timed two ways in one run:

- the whole process, as a user runs it (interpreter start-up, imports,
  reading, answering): CPU seconds of the child process;
- the question alone, in this process after both tools' imports and one
  warm-up run: the least of ``--repeat`` CPU times of NCA's
  ``nca.nca_cli.nca_main(argv)`` and meshauthz's ``meshauthz.cli.main.main(argv)``
  with the same arguments as the command.

Each ratio is NCA's time over meshauthz's (above 1: meshauthz is faster).

The questions, from github:np-guard/network-config-analyzer's
tests/istio_testcases (inputs copied under benchmarks/nca and
benchmarks/nca_inputs with NCA's LICENSE and commit):

1. the seed pair (examples/seed -> examples/seed-fixed): ``--semantic_diff`` /
   ``meshauthz diff``;
2. bookinfo-test-equiv-scheme: bookinfo-policy-test-methods-3 against its
   differently written twin (``--equiv`` / ``meshauthz equiv``; NCA expects
   them equivalent);
3. testcase1-istio-scheme (testcase1/): equiv-test-1 (allow-nothing,
   deny-all and allow-nothing-2 equivalent), equiv-test-2 and
   semantic-diff-test-2 (testcase1-policy against testcase1-new-policy: not
   equivalent), connectivity-istio1 (``--connectivity`` / ``meshauthz reach``);
4. bookinfo-test-request-attrs-scheme (bookinfo_request_attrs/): the
   connectivity map of each of its six policy files on bookinfo's pod list.

testcase1's pod list declares its containers' ports as ``{}``, which Kubernetes
refuses (a list is required) and meshauthz reports as invalid input; both
tools are given a copy in which each such container declares the ports the
policies name (26257, 30, 40, 50; NCA reasons about every port, meshauthz
about the ports the manifests define).

Where the answers differ it is the models: NCA knows nine HTTP methods (the
methods-3 pair differs on SEARCH, LOCK, PURGE, ... which Envoy's HTTP/1.1 codec
accepts), answers per pod pair about TCP connections (meshauthz per caller,
port and protocol, for every request: identities, addresses, methods, paths,
hosts, headers), and does not model mTLS (a plaintext caller is a caller like
any other).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import ncapeer

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
NCA = HERE / "nca"
INPUTS = HERE / "nca_inputs"
TC1 = INPUTS / "testcase1"
ATTRS = INPUTS / "bookinfo_request_attrs"
BOOKINFO_NS = INPUTS / "bookinfo" / "bookinfo_ns_list.json"
TC1_PORTS = (26257, 30, 40, 50)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "diff" | "equiv" | "reach"
    nca: list[str]  # NCA's arguments
    ours: list[str]  # meshauthz's arguments (-o json is added)


def testcase1_pods(tmp: Path) -> Path:
    """testcase1's pod list with a list of ports where it has ``{}``."""
    pods = json.loads((TC1 / "pods_list.json").read_text())
    for pod in pods["items"]:
        for c in pod["spec"]["containers"]:
            if c.get("ports") == {}:
                c["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in TC1_PORTS]
    out = tmp / "pods_list.json"
    out.write_text(json.dumps(pods, indent=1))
    return out


def cases(tmp: Path) -> list[Case]:
    seed, fixed = "examples/seed", "examples/seed-fixed"
    out = [
        Case(
            "seed",
            "diff",
            ["--semantic_diff", fixed, "--base_np_list", seed, "--pod_list", seed]
            + ["--ns_list", f"{seed}/namespace.yaml"],
            ["diff", seed, fixed],
        )
    ]
    a, b = (
        NCA / "bookinfo-policy-test-methods-3.yaml",
        NCA / "bookinfo-policy-test-methods-3-differently-written.yaml",
    )
    pods, nss = NCA / "bookinfo_deployments.yaml", NCA / "bookinfo_ns_list.json"
    out.append(
        Case(
            "bookinfo methods-3",
            "equiv",
            [
                "--equiv",
                str(a),
                "--base_np_list",
                str(b),
                "--pod_list",
                str(pods),
                "--ns_list",
                str(nss),
            ],
            ["equiv", str(a), str(b), "-f", str(pods), "-f", str(nss)],
        )
    )
    tc1_pods, tc1_ns = testcase1_pods(tmp), TC1 / "ns_list.json"
    world = ["--pod_list", str(tc1_pods), "--ns_list", str(tc1_ns)]
    shared = ["-f", str(tc1_pods), "-f", str(tc1_ns)]

    def tc1(name: str) -> str:
        return str(TC1 / f"testcase1-{name}.yaml")

    for left, right in (
        ("allow-nothing-policy", "deny-all-policy"),
        ("allow-nothing-policy", "allow-nothing-policy-2"),
        ("policy", "new-policy"),
    ):
        out.append(
            Case(
                f"testcase1 {left} / {right}",
                "equiv",
                ["--equiv", tc1(left), "--base_np_list", tc1(right), *world],
                ["equiv", tc1(left), tc1(right), *shared],
            )
        )
    out.append(
        Case(
            "testcase1 policy -> new-policy",
            "diff",
            ["--semantic_diff", tc1("new-policy"), "--base_np_list", tc1("policy"), *world],
            ["diff", tc1("policy"), tc1("new-policy"), *shared],
        )
    )
    out.append(
        Case(
            "testcase1 policy",
            "reach",
            ["--connectivity", tc1("policy"), *world],
            ["reach", "-f", tc1("policy"), *shared],
        )
    )
    attrs_pods = ATTRS / "bookinfo_pods_list.json"
    for policy in sorted(ATTRS.glob("bookinfo-policy-*.yaml")):
        name = policy.stem.removeprefix("bookinfo-policy-test-")
        out.append(
            Case(
                f"request-attrs {name}",
                "reach",
                ["--connectivity", str(policy), "--pod_list", str(attrs_pods)]
                + ["--ns_list", str(BOOKINFO_NS)],
                ["reach", "-f", str(policy), "-f", str(attrs_pods), "-f", str(BOOKINFO_NS)],
            )
        )
    return out


# ---------------------------------------------------------------------- answers


def our_answer(kind: str, out: str) -> str:
    try:
        doc = json.loads(out)
    except ValueError:
        return out.strip().splitlines()[0] if out.strip() else "?"
    if kind == "reach":
        verdicts = [r["verdict"] for r in doc["rows"]]
        counts = {v: verdicts.count(v) for v in ("all", "some", "none", "unknown") if v in verdicts}
        return f"{len(verdicts)} rows: " + ", ".join(f"{n} {v}" for v, n in counts.items())
    unknown = f", {len(doc['unknown'])} unknown" if doc.get("unknown") else ""
    if doc["equivalent"]:
        return "equivalent"
    if kind == "equiv":
        return f"not equivalent: {len(doc['differences'])} classes{unknown}"
    return f"differ: {len(doc['opened'])} opened, {len(doc['closed'])} closed classes{unknown}"


def nca_answer(kind: str, out: str) -> str:
    lines = out.splitlines()
    if kind == "reach":
        rules = [x for x in lines if x.startswith(("src_ns:", "src:"))]
        return f"{len(rules)} connectivity rules (TCP and non-TCP)"
    for line in lines:
        if "equivalent" in line or "contained in the other" in line or "same set" in line:
            return re.sub(r"(?<!\S)/\S*/", "", line.strip())  # absolute paths: the file names
    return "?"


# ---------------------------------------------------------------------- timing


def process(argv: list[str]) -> tuple[str, float]:
    """The command's output and the CPU seconds of its process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.stdout, cpu


def quietly(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                return fn()
            except SystemExit as e:
                return e.code

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="in-process runs after a warm-up")
    ap.add_argument("--only", help="only the questions whose name contains this")
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also time what any answer must do first: read and validate the inputs "
        "(meshauthz validate, in-process) and start Python with z3 imported (a process)",
    )
    args = ap.parse_args(argv)
    nca_bin = shutil.which("nca", path=str(BIN)) or shutil.which("nca")
    nca_main = ncapeer.nca_main()
    if nca_bin is None or nca_main is None:
        print("network-config-analyzer is not installed (pip install -e '.[bench]')")
        return 2
    from meshauthz.cli.main import main as meshauthz_main

    print(
        "| question | tool | answer | process CPU s | NCA/ours | in-process CPU s | NCA/ours |\n"
        "|---|---|---|---:|---:|---:|---:|"
    )
    floors: list[tuple[str, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="meshauthz-nca-") as tmp:
        for case in cases(Path(tmp)):
            if args.only and args.only not in case.name:
                continue
            ours_argv = [*case.ours, "-o", "json"]
            ours_out, ours_cpu = process([str(BIN / "meshauthz"), *ours_argv])
            nca_out, nca_cpu = process([nca_bin, *case.nca])
            with contextlib.chdir(REPO):
                ours_t = ncapeer.best(quietly(partial(meshauthz_main, ours_argv)), args.repeat)
                nca_t = ncapeer.best(quietly(partial(nca_main, case.nca)), args.repeat)
            label = f"{case.name}: {case.kind}"
            print(
                f"| {label} | meshauthz | {our_answer(case.kind, ours_out)} | {ours_cpu:.2f} | "
                f"1.0 | {ours_t:.3f} | 1.0 |"
            )
            print(
                f"| {label} | NCA | {nca_answer(case.kind, nca_out)} | {nca_cpu:.2f} | "
                f"{nca_cpu / ours_cpu:.1f} | {nca_t:.3f} | {nca_t / ours_t:.1f} |"
            )
            sys.stdout.flush()
            if args.floor:
                floors.append((label, nca_cpu, nca_t, _inputs_only(case, args.repeat)))
    if args.floor:
        _print_floors(floors)
    return 0


def _inputs_only(case: Case, repeat: int) -> float:
    """CPU seconds of ``meshauthz validate`` on the question's files, in this
    process: reading, typing and validating them, which every answer does first."""
    from meshauthz.cli.main import main as meshauthz_main

    files = [a for a in case.ours[1:] if a != "-f"]
    with contextlib.chdir(REPO):
        return ncapeer.best(
            quietly(partial(meshauthz_main, ["validate", *files, "-o", "json"])), repeat
        )


def _print_floors(floors: list[tuple[str, float, float, float]]) -> None:
    """What 10 times NCA's speed leaves, beside what comes before any answer."""
    _, start = process([sys.executable, "-c", "pass"])
    _, z3_start = process([sys.executable, "-c", "import z3"])
    print(
        f"\nfloors: a process of Python alone {start:.3f} CPU s, with z3 imported "
        f"{z3_start:.3f} s\n"
        "| question | NCA process / 10 | Python + z3 | NCA in-process / 10 | "
        "meshauthz reading and validating the inputs |\n|---|---:|---:|---:|---:|"
    )
    for label, nca_cpu, nca_t, inputs in floors:
        print(
            f"| {label} | {nca_cpu / 10:.3f} | {z3_start:.3f} | {nca_t / 10:.4f} | {inputs:.4f} |"
        )


if __name__ == "__main__":
    sys.exit(main())

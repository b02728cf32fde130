"""meshauthz's decision speed, side by side with the engines a Python user would reach for.

Usage::

    .venv/bin/pip install -e '.[bench]'     # the peers (cedarpy, casbin, regorus, regopy)
    .venv/bin/python benchmarks/run.py [--requests N] [--policies N] [--quick] [--no-peers]

What it measures, in one run, for two scenarios:

(a) ``seed``: the bundled example (examples/seed): random requests between its
    two workloads (and strangers), backend under the tutorial's DENY-all and
    ALLOW policies, frontend under none;
(b) ``mesh``: a generated mesh (benchmarks/meshgen.py, fixed seed, written to a
    temporary directory and read through meshauthz's real loader): 1,000
    workloads, one ALLOW policy each (3 rules of 5 principals, 2 methods and a
    path prefix) and a mesh-wide DENY on paths with prefix /admin; random
    requests, about half of them allowed.

For each scenario and each engine: the decisions per second over all requests
(warm: after one pass), and the median and 99th percentile of single-decision
latency (each call timed on its own with ``time.perf_counter_ns``; the timer's
own cost, shown on the last line, is included). meshauthz is timed three ways:
(a) "meshauthz", the chain runner alone on a prepared request
(``Decider.prepare_request`` once per request, then ``Decider.decide_prepared``:
the untraced backend's Outcome); (b) "meshauthz new", a new request end to end
from the request format (``resolve(request_from_data(...))`` then
``Decider.decide``: what ``mesh.check`` and ``check --request`` do per request);
(c) "meshauthz traced", ``decide_prepared(trace=True)``. Each peer prepares its
native request once and is timed on its decision call (described in the
output), in a forked child, on the first ``PEER_SAMPLE`` requests (some peers
keep memory per call). For the mesh, also the time to build and compile the
filters of one workload (``Decider.prepare`` plus its chain runner), on fresh
deciders. Then: one rule of 10,000 ``prefix-*`` principals and one of 1,000
paths (rules.py), ``check --request`` with 10,000 requests and start-up beside
``python -c pass`` (throughput.py), and scaling points at 100/1,000/10,000
policies, each in its own process (scaling.py).

Before any timing, every engine's verdict is checked against meshauthz's on
every request, and meshauthz's untraced outcome against its traced one on a
sample; a disagreement aborts with a message (exit status 2). A peer
whose package is missing is reported as unavailable, not faked.

Targets (the issue "Speed, measured in benchmarks/"): median single decision
<= 1 us on the seed and <= 3 us on the mesh; >= 15x faster per call than every
peer; filters for one workload of the mesh built in < 20 ms.

``--quick`` (a few hundred requests, a 50-policy mesh) keeps the script from
rotting (tests/bench/test_run.py); its numbers mean little.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from msgspec.structs import replace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import meshgen  # noqa: E402
import peers as peer_engines  # noqa: E402
import rules as big_rules  # noqa: E402
import throughput  # noqa: E402

from meshauthz.decide import view  # noqa: E402
from meshauthz.decide.engine import Decider  # noqa: E402
from meshauthz.decide.request import resolve  # noqa: E402
from meshauthz.decide.request_spec import request_from_data  # noqa: E402
from meshauthz.mesh.loading import load_mesh  # noqa: E402

EXAMPLES = HERE.parent / "examples"
TARGETS = {"seed": 1.0, "mesh": 3.0}  # median microseconds
BUILD_TARGET_MS = 20.0
PEER_RATIO_TARGET = 15.0  # the issue "One core": at least 15x the fastest peer
# the issue "Fast on the path users run": the prepared path 20x regorus, a new
# request 3x every peer, check --request 50,000 decisions/s on the mesh
REGORUS = peer_engines.RegorusPeer.name
REGORUS_RATIO_TARGET = 20.0
NEW_REQUEST_RATIO_TARGET = 3.0
THROUGHPUT_TARGET = 50_000


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


class Disagreement(SystemExit):
    def __init__(self, message: str) -> None:
        print(f"ABORT: {message}", file=sys.stderr)
        super().__init__(2)


@dataclass
class Timing:
    engine: str
    median_us: float
    p99_us: float
    per_second: float


@dataclass
class Scenario:
    name: str
    requests: list[meshgen.Req]
    decider: Decider
    prepared: list[Any]
    allowed: list[bool]
    resolved: list[Any]  # the requests, resolved: what check decides
    model: dict[str, meshgen.DestinationPolicies]
    datas: list[dict[str, Any]] = field(default_factory=list)  # in the request format
    notes: list[str] = field(default_factory=list)


# --- setting up --------------------------------------------------------------------------


def _scenario(name: str, paths: list[str], reqs: list[meshgen.Req], port: int) -> Scenario:
    snapshot = load_mesh(paths).snapshot
    decider = Decider(snapshot)
    specs: dict[meshgen.Req, Any] = {}
    requests = []
    datas = []
    for r in reqs:
        data = {"from": {"principal": r.principal}, "to": r.destination, "port": port}
        data |= {"method": r.method, "path": r.path}
        datas.append(data)
        req = specs.get(r)
        if req is None:
            req = specs[r] = resolve(request_from_data(data), snapshot)
        requests.append(req)
    prepared = [decider.prepare_request(r) for r in requests]
    decisions = [decider.decide_prepared(p) for p in prepared]
    # the untraced backend against the traced one, on a sample
    for i in range(0, len(requests), max(1, len(requests) // 2000)):
        traced = replace(decider.decide_prepared(prepared[i], trace=True), trace=())
        if traced != decisions[i]:
            raise Disagreement(
                f"{name}: meshauthz's untraced outcome is {decisions[i]} but the traced one is "
                f"{traced} for {reqs[i]}"
            )
    model = meshgen.logical_policies(snapshot, sorted({r.destination for r in reqs}))
    allowed = [d.allowed for d in decisions]
    for r, a in zip(reqs, allowed, strict=True):
        if model[r.destination].decide(r) != a:
            raise Disagreement(f"{name}: the logical model disagrees with meshauthz on {r}")
    return Scenario(name, reqs, decider, prepared, allowed, requests, model, datas)


def seed_scenario(n: int) -> Scenario:
    return _scenario("seed", [str(EXAMPLES / "seed")], meshgen.seed_requests(n), 80)


def mesh_scenario(n: int, policies: int, directory: Path) -> tuple[Scenario, Path]:
    rules = meshgen.generate_mesh(directory, policies)
    s = _scenario(
        f"mesh ({policies} policies)", [str(directory)], meshgen.mesh_requests(rules, n), 8080
    )
    return s, directory


TIMED_CALLS = (
    "meshauthz: Decider.decide_prepared(prepared) -> Outcome (the request resolved, viewed and"
    " bound beforehand: the chain alone)",
    "meshauthz new: resolve(request_from_data(dict)) then Decider.decide -> Decision (the request"
    " format to the answer, as mesh.check and check --request take it; what is kept per distinct"
    " request content (the codec's verdicts, normalized paths, added headers) is emptied before"
    " each timed pass, so a request hits only what earlier requests of its pass left: the seed's"
    " few distinct requests mostly do, the mesh's mostly distinct paths and caller-destination"
    " pairs mostly do not; names resolved and filters built stay)",
    "meshauthz traced: Decider.decide_prepared(prepared, trace=True) (what --trace and explain add)",
    "cedarpy: cedarpy.is_authorized(request, policy set, entities), the request dict built once",
    "pycasbin: Enforcer.enforce(sub, act, path) on the destination's enforcer",
    "regorus (RVM): Rvm.set_input_json(JSON text built once) + Rvm.execute() of the compiled"
    " program (input parsing included, as for a new request)",
    "regopy (bundle): Interpreter.set_input(Input built once) + query_bundle",
)


# --- timing --------------------------------------------------------------------------------


def time_engine(
    name: str,
    decide: Callable[[Any], Any],
    prepared: list[Any],
    forget: Callable[[], None] | None = None,
) -> Timing:
    """``forget``: called before each timed pass, so that a pass finds nothing
    the one before it kept of these very requests."""
    for p in prepared:  # warm up
        decide(p)
    gc.collect()
    gc.disable()
    try:
        if forget is not None:
            forget()
        t0 = time.perf_counter()
        for p in prepared:
            decide(p)
        elapsed = time.perf_counter() - t0
        if forget is not None:
            forget()
        clock = time.perf_counter_ns
        lat = []
        append = lat.append
        for p in prepared:
            t = clock()
            decide(p)
            append(clock() - t)
    finally:
        gc.enable()
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return Timing(name, statistics.median(lat) / 1000, p99 / 1000, len(prepared) / elapsed)


def forget(s: Scenario) -> None:
    """Empty what deciding keeps per distinct request content (the codec's
    verdicts, each destination's normalized paths and added headers), so that a
    new request is timed as one: a pass still hits what its own earlier
    requests left, as any stream does. Names resolved and filters built stay:
    those are per caller and destination, which a stream keeps meeting."""
    keys = {(r.destination, r.port, r.protocol) for r in s.resolved}
    view.forget_inputs(s.decider.prepare(*key) for key in keys)


def timer_cost() -> float:
    clock = time.perf_counter_ns
    lat = []
    for _ in range(10000):
        t = clock()
        lat.append(clock() - t)
    return statistics.median(lat) / 1000


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not carried
    over from the parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CHILD_PEAKS: list[float] = []
# Peers are checked and timed on the first requests only: regopy and pycasbin
# keep memory per call (~5-15 KB), which at 100,000 requests would pass 2 GiB.
PEER_SAMPLE = 20_000
PEER_SAMPLE_FOR = {"regopy (bundle)": 2_000}  # ~58 KB kept per call on the mesh


def in_child(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a forked child: some peers hold on to memory per call (regopy,
    pycasbin), which then goes away with the child instead of piling up here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        try:
            out: Any = ("ok", fn(), peak_mib())
        except SystemExit as e:
            out = ("exit", e.code, peak_mib())
        with os.fdopen(w, "wb") as f:
            pickle.dump(out, f)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value, peak = pickle.loads(data)
    CHILD_PEAKS.append(peak)
    if kind == "exit":
        raise SystemExit(value)
    return value


def run_peers(s: Scenario, skip: bool) -> tuple[list[Timing], list[str]]:
    timings: list[Timing] = []
    notes: list[str] = []
    for cls in peer_engines.PEERS:
        if skip:
            notes.append(f"{cls.name}: skipped (--no-peers)")
            continue

        def one(cls: type[peer_engines.Peer] = cls) -> tuple[Timing | None, str]:
            try:
                t0 = time.perf_counter()
                peer = cls(s.model)  # type: ignore[call-arg]
                setup = time.perf_counter() - t0
            except peer_engines.Unavailable as e:
                return None, f"{cls.name}: unavailable: {e} (pip install -e '.[bench]')"
            reqs = s.requests[: PEER_SAMPLE_FOR.get(cls.name, PEER_SAMPLE)]
            prepared = [peer.prepare(r) for r in reqs]
            for r, p, want in zip(reqs, prepared, s.allowed[: len(reqs)], strict=True):
                got = peer.decide(p)
                if got is not want:
                    raise Disagreement(
                        f"{s.name}: {cls.name} says {'ALLOW' if got else 'DENY'} but meshauthz "
                        f"says {'ALLOW' if want else 'DENY'} for {r}"
                    )
            note = f"{cls.name}: agrees on all {len(prepared)} requests (setup {setup:.2f} s)"
            return time_engine(cls.name, peer.decide, prepared), note

        timing, note = in_child(one)
        notes.append(note)
        if timing is not None:
            timings.append(timing)
    return timings, notes


def build_time(directory: Path, samples: int) -> list[float]:
    """Milliseconds to build and compile one workload's filters, on fresh deciders."""
    snapshot = load_mesh([str(directory)]).snapshot
    workloads = sorted(snapshot.workloads, key=lambda w: w.key)
    step = max(1, len(workloads) // samples)
    out = []
    for w in workloads[::step][:samples]:
        d = Decider(snapshot)
        t0 = time.perf_counter()
        runner = d.prepare(w, 8080, "http").runner  # builds the generated chain
        assert runner is not None
        out.append((time.perf_counter() - t0) * 1000)
    return out


# --- the report ----------------------------------------------------------------------------


def table(name: str, timings: list[Timing]) -> list[str]:
    base = timings[0]
    lines = [
        f"{name}",
        f"  {'engine':<18} {'median µs':>10} {'p99 µs':>10} {'decisions/s':>13} {'x meshauthz':>12}",
    ]
    for t in timings:
        ratio = t.median_us / base.median_us if base.median_us else float("inf")
        lines.append(
            f"  {t.engine:<18} {t.median_us:>10.2f} {t.p99_us:>10.2f} {t.per_second:>13,.0f} {ratio:>11.1f}x"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=None, help="requests per scenario (100000)")
    ap.add_argument("--policies", type=int, default=None, help="ALLOW policies in the mesh (1000)")
    ap.add_argument("--quick", action="store_true", help="a few hundred requests, a small mesh")
    ap.add_argument("--no-peers", action="store_true", help="time meshauthz only")
    args = ap.parse_args(argv)
    n = args.requests or (300 if args.quick else 100_000)
    policies = args.policies or (50 if args.quick else 1000)

    print(
        f"meshauthz decision benchmark: {n} requests per scenario; Python "
        f"{platform.python_version()} on {platform.machine()}"
    )
    results: list[tuple[Scenario, list[Timing]]] = []
    peers_ok: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="meshauthz-bench-") as tmp:
        scenarios = [seed_scenario(n)]
        mesh, directory = mesh_scenario(n, policies, Path(tmp) / "mesh")
        scenarios.append(mesh)
        builds = build_time(directory, 5 if args.quick else 20)
        for s in scenarios:
            ours = time_engine("meshauthz", s.decider.decide_prepared, s.prepared)
            snap = s.decider.snapshot

            def new_request(data: dict[str, Any], s: Scenario = s, snap: Any = snap) -> Any:
                return s.decider.decide(resolve(request_from_data(data), snap))

            fresh = time_engine("meshauthz new", new_request, s.datas, partial(forget, s))
            traced = time_engine(
                "meshauthz traced",
                lambda p, s=s: s.decider.decide_prepared(p, trace=True),
                s.prepared[: max(200, len(s.prepared) // 10)],
            )
            theirs, notes = run_peers(s, args.no_peers)
            s.notes = notes
            results.append((s, [ours, fresh, traced, *theirs]))
        work = Path(tmp)
        tput = throughput.check_request_throughput(
            directory,
            mesh.requests[: 500 if args.quick else 10_000],
            8080,
            work,
            1 if args.quick else 2,
        )
    big = big_rules.rule_timings(*((500, 100, 100) if args.quick else (10_000, 1_000, 500)))
    start = throughput.startup(2 if args.quick else 15)
    sizes = (50, 100) if args.quick else (100, 1_000, 10_000)
    scaling = [
        json.loads(
            subprocess.run(
                [sys.executable, str(HERE / "scaling.py"), str(n)],
                capture_output=True,
                text=True,
                check=True,
                timeout=3600,
            ).stdout
        )
        for n in sizes
    ]

    out: list[str] = []
    for s, timings in results:
        allowed = sum(s.allowed)
        out.append("")
        out += table(
            f"{s.name}: {len(s.requests)} requests, {allowed / len(s.allowed):.0%} allowed", timings
        )
        out += [f"  {note}" for note in s.notes]
    out.append("")
    out.append("what each engine's timed call does:")
    out += [f"  {line}" for line in TIMED_CALLS]
    build_median = statistics.median(builds)
    out.append("")
    out.append(
        f"one rule, {big['principals']:,} prefix-* principals: untraced "
        f"{big['principals_untraced_us']:.2f} µs, traced {big['principals_traced_us']:,.0f} µs"
    )
    out.append(
        f"one rule, {big['paths']:,} paths (half *suffix, half {{*}} templates): untraced "
        f"{big['paths_untraced_us']:.2f} µs, traced {big['paths_traced_us']:,.0f} µs"
    )
    out.append(
        f"check --request, {tput['requests']:,} requests to the mesh: {tput['seconds']:.2f} "
        f"CPU s (one request: {tput['seconds_one']:.2f} CPU s): {tput['per_second']:,.0f} "
        f"decisions/s beyond start-up and load, {tput['per_second_total']:,.0f}/s overall"
    )
    base = start["python -c pass"]
    out.append(
        "start-up: "
        + ", ".join(f"{k} {v * 1000:.0f} ms ({v / base:.1f}x)" for k, v in start.items())
    )
    out.append("scaling (generated mesh, N policies and workloads):")
    out.append(
        f"  {'N':>7} {'YAML MB':>8} {'load s':>8} {'build all s':>12} {'decide µs':>10} "
        f"{'loaded MB':>10} {'(-base)/YAML':>13} {'peak MB':>8}"
    )
    for p in scaling:
        out.append(
            f"  {p['policies']:>7,} {p['yaml_bytes'] / 1e6:>8.1f} {p['load_s']:>8.2f} "
            f"{p['build_all_s']:>12.2f} {p['decide_us']:>10.2f} "
            f"{p['loaded_rss_bytes'] / 1e6:>10.0f} "
            f"{(p['loaded_rss_bytes'] - p['base_rss_bytes']) / p['yaml_bytes']:>12.1f}x "
            f"{p['peak_rss_bytes'] / 1e6:>8.0f}"
        )
    out.append("")
    out.append(
        f"build: filters for one workload of the mesh (Decider.prepare + chain runner), "
        f"median {build_median:.2f} ms, max {max(builds):.2f} ms over {len(builds)} workloads"
    )
    out.append(
        f"timer: perf_counter_ns itself costs {timer_cost():.3f} µs per sample (included above)"
    )
    peak = max([peak_mib(), *CHILD_PEAKS])
    out.append(
        f"this benchmark's peak memory: {peak:,.0f} MiB (largest of this process and the "
        f"peers' forked children; < 2 GiB: {_met(peak < 2048)})"
    )
    out.append("")
    out.append("targets:")
    for s, timings in results:
        ours = timings[0]
        key = "seed" if s.name == "seed" else "mesh"
        goal = TARGETS[key]
        out.append(
            f"  {key}: median {ours.median_us:.2f} µs <= {goal} µs: {_met(ours.median_us <= goal)}"
        )
        out.append(
            f"  {key}: a new request end to end (request format -> Decision) median "
            f"{timings[1].median_us:.2f} µs; traced {timings[2].median_us:.2f} µs"
        )
        for t in timings[3:]:
            ratio = t.median_us / ours.median_us
            ok = ratio >= PEER_RATIO_TARGET
            peers_ok[t.engine] = peers_ok.get(t.engine, True) and ok
            out.append(
                f"  {key}: {ratio:.1f}x faster than {t.engine} (>= {PEER_RATIO_TARGET:g}x): "
                f"{_met(ok)}"
            )
            if t.engine == REGORUS:
                out.append(
                    f"  {key}: the prepared path {ratio:.1f}x faster than {t.engine} "
                    f"(>= {REGORUS_RATIO_TARGET:g}x): "
                    f"{_met(ratio >= REGORUS_RATIO_TARGET)}"
                )
            new_ratio = t.median_us / timings[1].median_us
            out.append(
                f"  {key}: a new request {new_ratio:.1f}x faster than {t.engine} "
                f"(>= {NEW_REQUEST_RATIO_TARGET:g}x): "
                f"{_met(new_ratio >= NEW_REQUEST_RATIO_TARGET)}"
            )
    out.append(
        f"  check --request: {tput['per_second']:,.0f} decisions/s beyond start-up and load "
        f">= {THROUGHPUT_TARGET:,}: {_met(tput['per_second'] >= THROUGHPUT_TARGET)}"
    )
    out.append(
        f"  build: {build_median:.2f} ms < {BUILD_TARGET_MS:g} ms: "
        f"{_met(build_median < BUILD_TARGET_MS)}"
    )
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

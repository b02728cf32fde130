"""Where a new request's time goes: benchmarks/run.py's (b), "meshauthz new",
taken apart into the steps ``Decider.decide`` runs for a request to a sidecar.

Usage::

    .venv/bin/python benchmarks/steps.py [--requests N] [--policies N]

For the seed and the generated mesh (the scenarios of run.py, the same
requests), each step is timed as a pass over every request, its inputs made by
the steps before it; the figure is the median of five passes, in µs per
request. What a view keeps by its inputs (the codec's verdicts, normalized
paths, added headers) is emptied before each pass of a step that computes it,
as run.py does for (b); names resolved and filters built stay. The steps:

- parse: ``request_from_data``, the request format to a RequestSpec;
- resolve: ``resolve``, names to the caller and the destination;
- prepare: ``Decider.prepare_request``, the destination's chain looked up,
  the request as its filters see it (``request_view``), bound to the chain;
  of it, view: ``request_view`` alone;
- run: ``Decider.decide_prepared``, the chain's answer (an Outcome);
- Decision: ``Decision.of``, the answer with its request summary;
- end to end: ``Decider.decide(resolve(request_from_data(data)))``, which adds
  the path's walk (the destination's mode, the hop) to the steps above.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

from meshauthz.decide.decision import Decision  # noqa: E402
from meshauthz.decide.request import resolve  # noqa: E402
from meshauthz.decide.request_spec import request_from_data  # noqa: E402
from meshauthz.decide.view import request_view  # noqa: E402

PASSES = 5


def per_request(
    step: Callable[[Any], Any], inputs: Sequence[Any], forget: Callable[[], None] | None = None
) -> float:
    """µs per input of ``step``: the median of PASSES timed passes, after one
    untimed; ``forget`` runs before each pass."""
    for x in inputs:
        step(x)
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(PASSES):
            if forget is not None:
                forget()
            t0 = time.perf_counter()
            for x in inputs:
                step(x)
            times.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return statistics.median(times) / len(inputs) * 1e6


def steps(s: bench.Scenario) -> dict[str, float]:
    decider = s.decider
    snap = decider.snapshot

    def forget() -> None:
        bench.forget(s)

    specs = [request_from_data(d) for d in s.datas]
    requests = [resolve(spec, snap) for spec in specs]
    prepared = [decider.prepare_request(r) for r in requests]
    outcomes = [decider.decide_prepared(p) for p in prepared]
    chains = [
        decider.prepare(r.destination, r.port, r.protocol)
        for r, p in zip(requests, prepared, strict=True)
        if p.runner is not None
    ]
    viewed = [r for r, p in zip(requests, prepared, strict=True) if p.runner is not None]
    out = {
        "parse": per_request(request_from_data, s.datas),
        "resolve": per_request(lambda spec: resolve(spec, snap), specs),
        "prepare": per_request(decider.prepare_request, requests, forget),
        "  of it, view": per_request(
            lambda i: request_view(chains[i], viewed[i], chains[i].runner.lean),
            range(len(viewed)),
            forget,
        )
        * len(viewed)
        / len(requests),
        "run": per_request(decider.decide_prepared, prepared),
        "Decision": per_request(
            lambda i: Decision.of(outcomes[i], requests[i], prepared[i].view),
            range(len(requests)),
        ),
    }
    out["sum of the steps"] = sum(v for k, v in out.items() if not k.startswith(" "))
    out["end to end"] = per_request(
        lambda d: decider.decide(resolve(request_from_data(d), snap)), s.datas, forget
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--policies", type=int, default=1_000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshauthz-steps-") as tmp:
        seed = bench.seed_scenario(args.requests)
        mesh, _ = bench.mesh_scenario(args.requests, args.policies, Path(tmp) / "mesh")
        columns = [(seed.name, steps(seed)), (mesh.name, steps(mesh))]
    print(f"a new request by step, µs per request ({args.requests:,} requests, median of {PASSES})")
    width = max(len(k) for k in columns[0][1])
    print(f"  {'':<{width}} " + " ".join(f"{name:>20}" for name, _ in columns))
    for key in columns[0][1]:
        print(f"  {key:<{width}} " + " ".join(f"{col[key]:>20.2f}" for _, col in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())

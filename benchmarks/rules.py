"""Large string sets in one rule: 10,000 wildcard principals, 1,000 mixed paths.

``rule_timings()`` builds one workload whose single ALLOW rule holds 10,000
``prefix-*`` principals (or 1,000 paths, half ``*suffix``, half ``{*}``
templates), loads it through meshauthz's real loader, and times the untraced
decision of prepared requests (``Decider.decide_prepared``) and the traced one
(``decide_prepared(trace=True)``), in microseconds (medians). Used by run.py.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from meshauthz.decide.engine import Decider
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.mesh.loading import load_mesh

_WORKLOAD = """apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: default}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      serviceAccountName: api
      containers: [{name: app, image: app, ports: [{containerPort: 8080}]}]
"""


def _policy(principals: list[str] | None, paths: list[str] | None) -> str:
    rule = "  - from:\n    - source:\n        principals: [" if principals else "  - to:\n"
    if principals:
        rule += ", ".join(f'"{p}"' for p in principals) + "]\n"
    if paths:
        rule += "    - operation:\n        paths: [" + ", ".join(f'"{p}"' for p in paths) + "]\n"
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: big, namespace: default}\n"
        "spec:\n  selector: {matchLabels: {app: api}}\n  action: ALLOW\n  rules:\n" + rule
    )


def _time(fn: Any, items: list[Any], rounds: int = 3) -> float:
    best = []
    for _ in range(rounds):
        lat = []
        for x in items:
            t = time.perf_counter_ns()
            fn(x)
            lat.append(time.perf_counter_ns() - t)
        best.append(statistics.median(lat) / 1000)
    return min(best)


def _decider(directory: Path, text: str) -> tuple[Decider, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "w.yaml").write_text(_WORKLOAD + "---\n" + text)
    snapshot = load_mesh([str(directory)]).snapshot
    return Decider(snapshot), snapshot


def rule_timings(
    principals: int = 10_000, paths: int = 1_000, requests: int = 500
) -> dict[str, Any]:
    rng = random.Random(11)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="meshauthz-rules-") as tmp:
        # 10,000 wildcard principals: "cluster.local/ns/nsI/sa/team-J-*"
        ps = [f"cluster.local/ns/ns{i % 100}/sa/team-{i}-*" for i in range(principals)]
        decider, snap = _decider(Path(tmp) / "p", _policy(ps, None))
        reqs = []
        for _ in range(requests):
            i = rng.randrange(principals * 11 // 10)
            p = f"cluster.local/ns/ns{i % 100}/sa/team-{i}-{rng.choice(('a', 'b'))}"
            data = {"from": {"principal": p}, "to": "default/api", "port": 8080, "path": "/"}
            reqs.append(decider.prepare_request(resolve(request_from_data(data), snap)))
        out["principals"] = principals
        out["principals_untraced_us"] = _time(decider.decide_prepared, reqs)
        out["principals_traced_us"] = _time(
            lambda r: decider.decide_prepared(r, trace=True), reqs[:50], 1
        )
        out["principals_allowed"] = sum(decider.decide_prepared(r).allowed for r in reqs)
        # 1,000 paths: half "*.extI" suffixes, half "/svcI/{*}/items" templates
        pl = [f"*.ext{i}" if i % 2 else f"/svc{i}/{{*}}/items" for i in range(paths)]
        decider, snap = _decider(Path(tmp) / "q", _policy(None, pl))
        reqs = []
        for _ in range(requests):
            i = rng.randrange(paths * 11 // 10)
            path = rng.choice((f"/a/b.ext{i}", f"/svc{i}/x/items", f"/svc{i}/x/y"))
            data = {"from": "default/api", "to": "default/api", "port": 8080, "path": path}
            reqs.append(decider.prepare_request(resolve(request_from_data(data), snap)))
        out["paths"] = paths
        out["paths_untraced_us"] = _time(decider.decide_prepared, reqs)
        out["paths_traced_us"] = _time(
            lambda r: decider.decide_prepared(r, trace=True), reqs[:50], 1
        )
        out["paths_allowed"] = sum(decider.decide_prepared(r).allowed for r in reqs)
    return out


if __name__ == "__main__":
    print(rule_timings())

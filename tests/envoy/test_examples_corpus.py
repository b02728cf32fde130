"""Corpus 2: the repository's examples (every directory under examples/), in a real Envoy.

For each example, meshauthz builds the filters of every workload and port as
the decision engine does (``Decider.prepare``: selection, mesh config, path
normalization); Envoy runs them, one listener per workload, port and
protocol; every workload of the example calls every other one (and a
plaintext caller does too) with a set of methods and paths, and Envoy's
decision is compared with ``Decider``'s. Workload addresses are the
destinations (restored from the PROXY line); callers use loopback addresses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from meshauthz.decide.engine import Decider
from meshauthz.mesh import inbound_ports
from meshauthz.mesh.loading import load_mesh
from meshauthz.translate.hcm_headers import header_settings
from tests.conftest import EXAMPLE_MESHES

from .harness import Probe, Site, running
from .judge import compare, decide, expected, request_for

REQUESTS: list[dict[str, Any]] = [
    {"method": "GET", "path": "/api/v1/data"},
    {"method": "POST", "path": "/api/v1/data"},
    {"method": "GET", "path": "/api/v1/data?x=1"},
    {"method": "GET", "path": "/api/v1/../v1/data"},
    {"method": "GET", "path": "/api//v1/data"},
    {"method": "GET", "path": "/api/v1/data/"},
    {"method": "GET", "path": "/API/v1/data"},
    {"method": "GET", "path": "/"},
    {"method": "DELETE", "path": "/api/v1/data"},
    {"method": "HEAD", "path": "/api/v1/data"},
]


def _with_proxies(example: Path) -> list[Any]:
    """The workloads an Envoy stands in front of (a sidecar, gateway or waypoint):
    in ambient mode the applications have none (ztunnel enforces: tests/ambient)."""
    return [w for w in load_mesh([str(example)]).snapshot.workloads if w.has_proxy]


def _examples() -> list[Any]:
    return [pytest.param(d, id=d.name) for d in EXAMPLE_MESHES if _with_proxies(d)]


def test_every_example_with_a_proxy_is_in_the_corpus() -> None:
    assert {p.name for p in EXAMPLE_MESHES if not _with_proxies(p)} == {"seed-ambient"}


@pytest.mark.parametrize("example", _examples())
def test_example_in_real_envoy(example: Path, test_ca: Any) -> None:
    snap = load_mesh([str(example)]).snapshot
    decider = Decider(snap)
    workloads = [w for w in snap.workloads if w.has_proxy]
    sites: list[Site] = []
    cases: list[tuple[Probe, Any]] = []
    for w in workloads:
        ports = sorted(
            {p.port for p in inbound_ports(snap, w)} | {p.container_port for p in w.ports}
        )
        for port in ports or [80]:
            for protocol in ("http", "tcp"):
                prep = decider.prepare(w, port, protocol)
                name = f"{w.namespace}.{w.name}.{port}.{protocol}"
                custom = len(prep.custom)
                sites.append(
                    Site(
                        name,
                        protocol,
                        prep.build.to_dicts(),
                        metadata_at=custom,
                        normalization=prep.normalization,
                        xff=(prep.xff.use_remote_address, prep.xff.xff_num_trusted_hops),
                        headers=header_settings(w.proxy == "gateway", prep.xff),
                    )
                )
                callers: list[str | None] = [c.identity.principal for c in workloads]
                if prep.mtls_mode != "STRICT":
                    callers.append(None)
                for i, principal in enumerate(callers):
                    src = f"127.0.0.{i + 1}"
                    reqs = REQUESTS if protocol == "http" else [{}]
                    for req in reqs:
                        probe = Probe(
                            name,
                            principal=principal if prep.mtls_mode != "DISABLE" else None,
                            source_ip=src,
                            dest_ip=w.address,
                            dest_port=port,
                            host=f"{w.name}.{w.namespace}.svc.cluster.local",
                            **req,
                        )
                        cases.append((probe, prep))
    t0 = time.monotonic()
    with running(sites, test_ca) as envoy:
        observed = envoy.run([p for p, _ in cases])
    failures = []
    for (probe, prep), got in zip(cases, observed, strict=True):
        req = request_for(probe, prep.workload, prep.protocol)
        full = decider.decide_at_proxy(req)  # the sidecar chain, whatever path the mesh takes
        decision, md = decide(prep, req)
        assert (full.verdict, full.status, full.stage, full.policy, full.rule) == (
            decision.verdict,
            decision.status,
            decision.stage,
            decision.policy,
            decision.rule,
        )
        diffs = compare(got, expected(decision, md, prep.protocol == "http"), decision)
        if diffs:
            failures.append(f"{probe}: " + "; ".join(diffs))
    print(
        f"examples corpus {example.name}: {len(cases)} cases, {len(sites)} listeners, "
        f"{time.monotonic() - t0:.1f}s"
    )
    assert not failures, f"{len(failures)} of {len(cases)} disagree:\n" + "\n".join(failures[:30])

"""Rows for destinations in ambient mode that no waypoint is in front of: the
destination's ztunnel decides each connection (``meshauthz.symbolic.ztunnel``
over ztunnel's own model, ``meshauthz.ambient``), so a caller whose address
is given gets all or none, and a caller at any address gets what the policies'
ipBlocks leave it. Every witness is decided again by the concrete path
(``check``'s ``decide.path`` walk), and random addresses through it agree with
"all" and "none". A destination behind a waypoint stays unknown.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshauthz.cli.main import main
from meshauthz.mesh import MeshSnapshot
from meshauthz.mesh.loading import load_mesh
from meshauthz.symbolic.reach import Caller, Row, mesh_callers, reach
from meshauthz.symbolic.witness import Confirmer, Destination
from tests.conftest import EXAMPLES
from tests.reach.test_reach_gateway import GATEWAY_PRINCIPAL, GATEWAY_YAML, gateway_row, policy
from tests.reach.test_reach_gateway import confirm as confirm_hops

AMBIENT = EXAMPLES / "seed-ambient"
BACKEND = Destination("default/backend", 80, "http")
FRONTEND = "cluster.local/ns/default/sa/frontend"
OTHER = "cluster.local/ns/other/sa/x"


def write_mesh(
    d: Path, policies: list[dict[str, Any]], extra: list[dict[str, Any]] = ()
) -> MeshSnapshot:  # type: ignore[assignment]
    d.mkdir(parents=True)
    for f in ("backend.yaml", "frontend.yaml", "namespace.yaml"):
        shutil.copy(AMBIENT / f, d / f)
    docs = [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": f"p{i}", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "backend"}}, **p},
        }
        for i, p in enumerate(policies)
    ]
    docs += list(extra)
    if docs:
        (d / "policies.yaml").write_text(yaml.safe_dump_all(docs))
    return load_mesh((str(d),)).snapshot


CALLERS = [f"principal={OTHER}", f"principal={FRONTEND}", "ip=203.0.113.7"]


def rows(snap: MeshSnapshot) -> dict[str, Row]:
    callers = mesh_callers(snap) + [Caller.parse(c) for c in CALLERS]
    return {r.caller.label: r for r in reach(snap, callers=callers, only=[BACKEND]).rows}


def confirm(snap: MeshSnapshot, row: Row) -> None:
    c = Confirmer(snap)
    if row.allowed_witness is not None:
        assert c.decide(row.allowed_witness).verdict == "ALLOW", row
    if row.denied_witness is not None:
        assert c.decide(row.denied_witness).verdict == "DENY", row
    assert (row.allowed_witness is not None, row.denied_witness is not None) == {
        "all": (True, False), "none": (False, True), "some": (True, True)
    }[row.verdict], row  # fmt: skip


def test_the_ambient_seed_is_answered() -> None:
    snap = load_mesh((str(AMBIENT),)).snapshot
    got = reach(snap).rows
    assert {(r.caller.label, r.destination.workload, r.verdict) for r in got} == {
        ("default/backend", "default/backend", "none"),
        ("default/frontend", "default/backend", "none"),
        ("plaintext", "default/backend", "none"),
        ("default/backend", "default/frontend", "all"),
        ("default/frontend", "default/frontend", "all"),
        ("plaintext", "default/frontend", "all"),
    }
    for r in got:
        confirm(snap, r)


def test_ip_blocks_make_some(tmp_path: Path) -> None:
    snap = write_mesh(
        tmp_path / "m",
        [
            {
                "action": "ALLOW",
                "rules": [{"from": [{"source": {"ipBlocks": ["203.0.113.0/24"]}}]}],
            },
            {
                "action": "DENY",
                "rules": [{"from": [{"source": {"ipBlocks": ["203.0.113.128/25"]}}]}],
            },
        ],
    )
    got = rows(snap)
    for r in got.values():
        confirm(snap, r)
    # any plaintext client: some addresses only
    pt = got["plaintext"]
    assert pt.verdict == "some"
    assert pt.conditions == (
        "ipBlocks 203.0.113.0/24 [default/p0 rule 0]; unless ipBlocks 203.0.113.128/25 "
        "[default/p1 rule 0]"
    )
    assert pt.allowed_witness["from"]["ip"].startswith("203.0.113.")
    assert got[f"principal={OTHER}"].verdict == "some"
    # a caller at a given address: all or none
    assert got["ip=203.0.113.7"].verdict == "all"
    assert got["default/frontend"].verdict == "none"  # its pod address is elsewhere


def test_identities_and_strict_mtls(tmp_path: Path) -> None:
    pa = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    snap = write_mesh(
        tmp_path / "m",
        [{"action": "ALLOW", "rules": [{"from": [{"source": {"principals": [FRONTEND]}}]}]}],
        [pa],
    )
    got = rows(snap)
    for r in got.values():
        confirm(snap, r)
    assert got["default/frontend"].verdict == "all"
    assert got[f"principal={FRONTEND}"].verdict == "all"
    assert got[f"principal={OTHER}"].verdict == "none"
    assert got["plaintext"].verdict == "none"


def test_a_destination_behind_a_waypoint_stays_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reach", "-f", str(EXAMPLES / "seed-ambient-waypoint"), "-o", "json"])
    assert exc.value.code == 0
    got = json.loads(capsys.readouterr().out)["rows"]
    assert got and {r["verdict"] for r in got} == {"unknown"}
    assert all("the waypoint default/waypoint" in r["conditions"] for r in got)


# ------------------------------------------------------------------ soundness

BLOCKS = ["203.0.113.0/24", "10.0.0.0/8", "203.0.113.7", "0.0.0.0/0"]
source = st.fixed_dictionaries(
    {},
    optional={
        "principals": st.lists(st.sampled_from([FRONTEND, OTHER, "*"]), min_size=1, max_size=2),
        "namespaces": st.lists(st.sampled_from(["default", "other"]), min_size=1, max_size=1),
        "ipBlocks": st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=2),
        "notIpBlocks": st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=1),
    },
).filter(bool)
rule = st.fixed_dictionaries(
    {},
    optional={
        "from": st.lists(st.builds(lambda s: {"source": s}, source), min_size=1, max_size=2),
        "to": st.just([{"operation": {"ports": ["80"]}}])
        | st.just([{"operation": {"methods": ["GET"]}}]),
    },
)
policies = st.lists(
    st.fixed_dictionaries(
        {
            "action": st.sampled_from(["ALLOW", "DENY"]),
            "rules": st.lists(rule, min_size=1, max_size=2),
        }
    ),
    min_size=1,
    max_size=3,
)
ADDRESSES = [
    "203.0.113.7",
    "203.0.113.200",
    "10.1.2.3",
    "192.0.2.10",
    "198.51.100.1",
    "2001:db8::1",
]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ps=policies)
def test_soundness_at_ztunnel(ps: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        snap = write_mesh(Path(tmp) / "m", ps)
        got = rows(snap)
        confirmer = Confirmer(snap)
        rng = random.Random(len(ps))
        for r in got.values():
            assert r.verdict in ("all", "none", "some"), r
            confirm(snap, r)
            if r.verdict == "some" or r.caller.ip is not None or r.caller.workload is not None:
                continue
            want = "ALLOW" if r.verdict == "all" else "DENY"
            for ip in rng.sample(ADDRESSES, 4):
                req = dict(r.allowed_witness or r.denied_witness or {})
                req["from"] = {**req["from"], "ip": ip}
                assert confirmer.decide(req).verdict == want, (req, r)


# ------------------------------------------------------------------ through a gateway


@pytest.mark.parametrize("admits_gateway", [True, False])
def test_through_a_gateway_with_its_own_policies(tmp_path: Path, admits_gateway: bool) -> None:
    """The gateway's chain decides its clients' requests; the destination's
    ztunnel decides every connection from the gateway alike."""
    gateway_policy = policy(
        "public-only",
        "istio-system",
        "istio-ingressgateway",
        {"rules": [{"to": [{"operation": {"paths": ["/public/*"]}}]}]},
    )
    allowed = GATEWAY_PRINCIPAL if admits_gateway else FRONTEND
    snap = write_mesh(
        tmp_path / "m",
        [{"action": "ALLOW", "rules": [{"from": [{"source": {"principals": [allowed]}}]}]}],
        [gateway_policy, *yaml.safe_load_all(GATEWAY_YAML)],
    )
    row = gateway_row(snap)
    confirm_hops(snap, row)
    if admits_gateway:
        assert row.verdict == "some"
        assert row.allowed_witness["path"].startswith("/public/")
        assert row.conditions == (
            "at the gateway istio-system/istio-ingressgateway: paths /public/* "
            "[istio-system/public-only rule 0]; then at default/backend: any request "
            "[default/p0 rule 0]"
        )
    else:
        assert row.verdict == "none"

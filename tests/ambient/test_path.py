"""A decision is a path: check walks the enforcement points Istio's traffic passes
(the sidecar; or the waypoint, if bound, then the destination's ztunnel)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.cli.main import main
from meshauthz.decide.engine import Decider
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.mesh.loading import load_mesh
from tests.conftest import EXAMPLES

L7 = str(Path(__file__).parent / "meshes" / "waypoint-l7.yaml")
SEED = str(EXAMPLES / "seed")
SEED_AMBIENT = str(EXAMPLES / "seed-ambient")
SEED_WAYPOINT = str(EXAMPLES / "seed-ambient-waypoint")
FRONTEND = "cluster.local/ns/default/sa/frontend"

# The tutorial's four requests (examples/seed/seed.test.yaml).
TUTORIAL = [
    ("default/frontend", "GET", "/api/v1/data"),
    ("default/frontend", "POST", "/api/v1/data"),
    ("default/frontend", "GET", "/api/v1/other"),
    ("default/backend", "GET", "/api/v1/data"),
]


def check_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    with pytest.raises(SystemExit) as exc:
        main(["check", *args, "-o", "json"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


@pytest.mark.parametrize(("src", "method", "path"), TUTORIAL)
def test_done_when_the_ambient_seed_denies_the_four_requests_at_ztunnel(capsys, src, method, path):
    d = check_json(
        capsys, "-f", SEED_AMBIENT, "--from", src, "--to", "default/backend",
        "--method", method, "--path", path,
    )  # fmt: skip
    assert (d["decision"], d["status"], d["stage"], d["policy"], d["rule"]) == (
        "DENY",
        "connection reset",
        "DENY",
        "default/deny-all-backend",
        0,
    )
    principal = FRONTEND if src == "default/frontend" else "cluster.local/ns/default/sa/default"
    assert d["hops"] == [
        {
            "enforcer": "ztunnel",
            "workload": "default/backend",
            "identity": principal,
            "decision": "DENY",
            "policy": "default/deny-all-backend",
            "rule": 0,
        }
    ]
    assert d["reason"].startswith("ztunnel of default/backend refuses the connection: DENY policy")


def test_sidecar_mode_is_one_hop_and_keeps_every_other_key(capsys):
    args = ("-f", SEED, "--from", "default/frontend", "--to", "default/backend")
    d = check_json(capsys, *args, "--path", "/api/v1/data")
    snap = load_mesh([SEED]).snapshot
    spec = request_from_data(
        {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}, "t"
    )
    r = resolve(spec, snap)
    at_proxy = Decider(snap).decide_at_proxy(r, trace=True).to_json()
    hops = d.pop("hops")
    d.pop("istioVersion")  # the document's, not the decision's
    d.pop("findings")  # the analyzer's findings on the deciding rule (cli layer)
    assert d == at_proxy
    assert hops == [
        {
            "enforcer": "sidecar",
            "workload": "default/backend",
            "identity": FRONTEND,
            "decision": "DENY",
            "policy": "default/deny-all-backend",
            "rule": 0,
        }
    ]


def test_through_a_waypoint_ztunnel_sees_the_waypoint_identity(capsys):
    # Istio's TestAuthorizationL4 (tests/integration/ambient/baseline_test.go) must
    # name sa/<waypoint> in the destination's L4 policy for waypoint traffic to pass.
    d = check_json(
        capsys, "-f", SEED_WAYPOINT, "--from", "default/frontend", "--to", "default/backend",
        "--path", "/api/v1/data",
    )  # fmt: skip
    assert [(h["enforcer"], h["identity"], h["decision"]) for h in d["hops"]] == [
        ("waypoint", FRONTEND, "ALLOW"),
        ("ztunnel", "cluster.local/ns/default/sa/waypoint", "DENY"),
    ]
    assert d["status"] == 503


def test_waypoint_enforces_target_ref_policies_with_the_client_identity(capsys):
    d = check_json(capsys, "-f", L7, "--from", "ns/client", "--to", "ns/api:80")
    assert d["hops"] == [
        {
            "enforcer": "waypoint",
            "workload": "ns/waypoint",
            "identity": "cluster.local/ns/ns/sa/client",
            "decision": "ALLOW",
            "policy": "ns/l7-at-waypoint",
            "rule": 0,
        },
        {
            "enforcer": "ztunnel",
            "workload": "ns/api",
            "identity": "cluster.local/ns/ns/sa/waypoint",
            "decision": "ALLOW",
            "policy": "ns/l4-at-ztunnel",
            "rule": 0,
        },
    ]
    assert (d["decision"], d["status"], d["policy"]) == ("ALLOW", 200, "ns/l7-at-waypoint")


def test_waypoint_denial_stops_the_path(capsys):
    d = check_json(capsys, "-f", L7, "--from", "ns/client", "--to", "ns/api:80", "--method", "POST")
    assert (d["decision"], d["status"], d["stage"]) == ("DENY", 403, "ALLOW")
    assert [h["enforcer"] for h in d["hops"]] == ["waypoint"]


def test_ports_are_service_ports_at_the_waypoint_and_target_ports_at_ztunnel(capsys):
    # The waypoint policy names port 80 (the Service's), the ztunnel one 8080 (the pod's).
    d = check_json(capsys, "-f", L7, "--from", "ns/client", "--to", "ns/api:80")
    assert [h["decision"] for h in d["hops"]] == ["ALLOW", "ALLOW"]
    assert d["request"]["port"] == 8080


def test_an_uncaptured_client_bypasses_the_waypoint(capsys):
    d = check_json(capsys, "-f", L7, "--from", "outside/plain", "--to", "ns/api:80")
    assert d["hops"] == [
        {
            "enforcer": "ztunnel",
            "workload": "ns/api",
            "identity": None,
            "decision": "ALLOW",
            "policy": "ns/l4-at-ztunnel",
            "rule": 1,
        }
    ]


def test_explain_says_where_each_policy_applies(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "-f", L7, "--from", "outside/plain", "--to", "ns/api:80", "-o", "json"])
    d = json.loads(capsys.readouterr().out)
    where = {a["policy"]: (a["enforcer"], a["detail"]) for a in d["applicable"]}
    assert where["ns/l4-at-ztunnel"][0] == "ztunnel"
    assert where["ns/l7-at-waypoint"][0] is None
    assert (
        "applies nowhere: the request bypasses waypoint ns/waypoint"
        in where["ns/l7-at-waypoint"][1]
    )
    with pytest.raises(SystemExit):
        main(["explain", "-f", L7, "--from", "ns/client", "--to", "ns/api:80", "-o", "json"])
    d = json.loads(capsys.readouterr().out)
    where = {a["policy"]: a["enforcer"] for a in d["applicable"]}
    assert where == {"ns/l7-at-waypoint": "waypoint", "ns/l4-at-ztunnel": "ztunnel"}


def test_explain_text_shows_the_path(capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "explain",
                "-f",
                SEED_WAYPOINT,
                "--from",
                "default/frontend",
                "--to",
                "default/backend",
            ]
        )
    out = capsys.readouterr().out
    assert "    waypoint default/waypoint sees cluster.local/ns/default/sa/frontend: ALLOW" in out
    assert (
        "at ztunnel of default/backend: selector matches labels app=backend; ztunnel does not support HTTP attributes (found: methods, paths)"
        in out
    )


def test_an_uncaptured_destination_is_not_enforced(tmp_path):
    (tmp_path / "m.yaml").write_text(
        """\
apiVersion: v1
kind: Namespace
metadata: {name: ns, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: ns, labels: {app: db, istio.io/dataplane-mode: none}}
spec: {containers: [{name: db, ports: [{containerPort: 5432}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: ns}
spec: {action: DENY, rules: [{}]}
"""
    )
    snap = load_mesh([str(tmp_path)]).snapshot
    r = resolve(request_from_data({"from": {"plaintext": True}, "to": "ns/db"}, "t"), snap)
    d = Decider(snap).decide(r)
    assert (d.verdict, d.hops, d.enforced_by) == ("ALLOW", (), "none")
    assert d.reason.startswith("ns/db has no sidecar (") and "no policy is enforced" in d.reason
    # injection is not assumed where the dataplane-mode label says how the pod is meshed
    assert "istio.io/dataplane-mode is set" in d.reason


def test_the_waypoint_chain_matches_principals_on_filter_state():
    # istiod builds waypoints with UseFilterState (pilot/pkg/networking/core/
    # listener_waypoint.go): principals match io.istio.peer_principal, which HBONE
    # termination sets from the client's certificate.
    snap = load_mesh([L7]).snapshot
    decider = Decider(snap)
    prepared = decider.prepare_waypoint(
        snap.workload("ns/waypoint"), snap.service("ns/api"), 80, "http"
    )
    built = json.dumps(prepared.build.to_dicts())
    assert '"key": "io.istio.peer_principal"' in built
    assert "spiffe://cluster.local/ns/ns/sa/client" in built
    assert [s.key for s in prepared.selected] == ["ns/l7-at-waypoint"]


LAYERED = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-the-waypoint-pods, namespace: ns}
spec:
  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: waypoint}}
  action: DENY
  rules: [{from: [{source: {principals: [cluster.local/ns/ns/sa/client]}}]}]
"""


def test_layered_waypoint_policies_follow_the_flag(capsys, tmp_path):
    # A selector policy on the waypoint's pods: ignored by the waypoint ("waypoints
    # never use selector", policyattachment.go) unless
    # ENABLE_LAYERED_WAYPOINT_AUTHORIZATION_POLICIES enforces it at HBONE termination
    # (listener_waypoint.go, NewWaypointTerminationBuilder).
    (tmp_path / "layered.yaml").write_text(LAYERED)
    args = ("-f", L7, "-f", str(tmp_path), "--from", "ns/client", "--to", "ns/api:80")
    off = check_json(capsys, *args)
    assert off["decision"] == "ALLOW"
    on = check_json(
        capsys, *args, "--istiod-flag", "ENABLE_LAYERED_WAYPOINT_AUTHORIZATION_POLICIES=true"
    )
    assert (on["decision"], on["status"], on["policy"]) == (
        "DENY",
        "connection reset",
        "ns/on-the-waypoint-pods",
    )
    assert on["hops"] == [
        {
            "enforcer": "waypoint",
            "workload": "ns/waypoint",
            "identity": "cluster.local/ns/ns/sa/client",
            "decision": "DENY",
            "policy": "ns/on-the-waypoint-pods",
            "rule": 0,
        }
    ]


def test_check_takes_istiod_flags(capsys, tmp_path):
    # PILOT_AUTO_ALLOW_WAYPOINT_POLICY (pilot/pkg/features/ambient.go): "zTunnel will
    # receive synthetic authorization policies for each workload ALLOW the Waypoint's
    # identity. Unless other ALLOW policies are created, this effectively denies
    # traffic that doesn't go through the waypoint."
    docs = [
        d for d in yaml.safe_load_all(Path(L7).read_text()) if d["kind"] != "AuthorizationPolicy"
    ]
    (tmp_path / "m.yaml").write_text(yaml.safe_dump_all(docs))
    mesh = str(tmp_path / "m.yaml")
    flag = ("--istiod-flag", "PILOT_AUTO_ALLOW_WAYPOINT_POLICY=true")
    bypass = ("-f", mesh, "--from", "outside/plain", "--to", "ns/api:80")
    assert check_json(capsys, *bypass)["decision"] == "ALLOW"
    denied = check_json(capsys, *bypass, *flag)
    assert (denied["decision"], denied["hops"][0]["enforcer"]) == ("DENY", "ztunnel")
    through = check_json(capsys, "-f", mesh, "--from", "ns/client", "--to", "ns/api:80", *flag)
    assert through["hops"][-1]["policy"] == "ns/istio_allow_waypoint_ns_waypoint"
    with pytest.raises(SystemExit) as exc:
        main(["check", *bypass, "--istiod-flag", "X=1"])
    assert exc.value.code == 2


def test_the_python_api_gives_the_path():
    import meshauthz

    mesh = meshauthz.load(SEED_WAYPOINT)
    d = mesh.check({"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"})
    assert [h.enforcer for h in d.hops] == ["waypoint", "ztunnel"]
    assert d.enforced_by == "ztunnel" and d.to_json()["hops"][1]["decision"] == "DENY"


def test_an_ingress_gateway_uses_the_waypoint_only_when_the_service_says_so(capsys, tmp_path):
    # services.go ingressUseWaypointFromLabels: istio.io/ingress-use-waypoint on the
    # Service, else its namespace (TestAuthorizationGateway: without it, ztunnel sees
    # the gateway's own identity).
    base = Path(__file__).parent.parent / "ambient_suites"
    echo = (base / "echo" / "echo.yaml").read_text()
    gateway = str(base / "TestAuthorizationGateway" / "gateway.yaml")
    args = (
        "--from",
        "istio-system/istio-ingressgateway",
        "--to",
        "echo/service-addressed-waypoint:80",
    )
    (tmp_path / "echo.yaml").write_text(echo)
    direct = check_json(capsys, "-f", str(tmp_path), "-f", gateway, *args)
    assert [h["enforcer"] for h in direct["hops"]] == ["ztunnel"]
    labelled = echo.replace(
        "labels: {istio.io/use-waypoint: waypoint-service}",
        'labels: {istio.io/use-waypoint: waypoint-service, istio.io/ingress-use-waypoint: "true"}',
    )
    assert labelled != echo
    (tmp_path / "echo.yaml").write_text(labelled)
    through = check_json(capsys, "-f", str(tmp_path), "-f", gateway, *args)
    assert [h["enforcer"] for h in through["hops"]] == ["waypoint", "ztunnel"]


AUDIT_AND_DRY_RUN = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-gets, namespace: ns}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  action: AUDIT
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: would-deny-gets
  namespace: ns
  annotations: {istio.io/dry-run: "true"}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  action: DENY
  rules: [{to: [{operation: {methods: [GET]}}]}]
"""


def test_audit_and_dry_run_apply_at_the_waypoint(capsys, tmp_path):
    # The waypoint runs the same filters istiod builds for sidecars (AUDIT, dry-run
    # shadow rules); istiod never sends AUDIT to ztunnel, nor dry-run without the flag.
    (tmp_path / "p.yaml").write_text(AUDIT_AND_DRY_RUN)
    d = check_json(
        capsys, "-f", L7, "-f", str(tmp_path), "--from", "ns/client", "--to", "ns/api:80"
    )
    assert d["decision"] == "ALLOW"
    assert (d["audit"], d["auditPolicy"]) == (True, "ns/audit-gets")
    assert [(r["stage"], r["result"], r["policy"]) for r in d["dryRun"]] == [
        ("DENY", "denied", "ns/would-deny-gets")
    ]


def test_explain_a_gateway_targeted_policy_the_request_bypasses(capsys):
    base = Path(__file__).parent.parent / "ambient_suites"
    with pytest.raises(SystemExit):
        main(
            [
                "explain", "-f", str(base / "echo"), "-f", str(base / "TestL7JWT" / "waypoint-jwt.yaml"),
                "--from", "echo/uncaptured", "--to", "echo/service-addressed-waypoint:80", "-o", "json",
            ]
        )  # fmt: skip
    (entry,) = json.loads(capsys.readouterr().out)["applicable"]
    assert entry["enforcer"] is None
    assert entry["detail"] == (
        "targetRef to Gateway echo/waypoint-service, applies nowhere: the request bypasses "
        "waypoint echo/waypoint-service (the client is not in the mesh)"
    )

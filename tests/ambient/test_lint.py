"""The ambient lint checks (ambient/lint.py): Istio's IST0166 and IST0171,
Kiali's KIA0109 and KIA0110, and ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.ambient.lint import IST0171, ambient_findings
from meshauthz.mesh.loading import load_mesh, load_mesh_documents
from meshauthz.mesh.snapshot import MeshSnapshot
from meshauthz.resources.yamlload import parse_documents
from tests.conftest import CONFORMANCE, EXAMPLES

KIALI = yaml.safe_load((Path(__file__).parent / "data" / "kiali_ambient_policy.yaml").read_text())
NS = "ambient-ns"


def _snapshot(docs: list[dict[str, Any]]) -> MeshSnapshot:
    return load_mesh_documents(parse_documents(yaml.safe_dump_all(docs), "t.yaml")).snapshot


@pytest.mark.parametrize("case", KIALI["cases"], ids=[c["test"] for c in KIALI["cases"]])
def test_kiali_ambient_policy_checker(case: dict[str, Any]) -> None:
    ns_labels = dict(case.get("nsLabels", {}))
    if case["ambient"]:
        ns_labels["istio.io/dataplane-mode"] = "ambient"
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": ns_labels}},
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "auth-policy", "namespace": NS},
            "spec": KIALI["policies"][case["policy"]],
        },
    ]
    for name, labels in case["workloads"].items():
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NS, "labels": labels},
                "spec": {"containers": [{"name": "app"}]},
            }
        )
    if "serviceLabels" in case:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "reviews", "namespace": NS, "labels": case["serviceLabels"]},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 80}]},
            }
        )
    if case.get("waypoint"):
        docs.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": NS},
                "spec": {
                    "gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
                },
            }
        )
    codes = [f.code for f in ambient_findings(_snapshot(docs)) if f.code.startswith("KIA")]
    assert codes == case["want"]


def test_ineffective_selector_istio_analyzer_data() -> None:
    # Istio's analyzers_test.go "KubernetesGatewaySelector" on
    # testdata/k8sgateway-selector.yaml; its WasmPlugin and Telemetry messages are
    # about kinds meshauthz does not read.
    path = CONFORMANCE / "pkg/config/analysis/analyzers/testdata/k8sgateway-selector.yaml"
    found = ambient_findings(load_mesh([str(path)]).snapshot)
    got = sorted((f.code, type(f.policy).__name__, f.policy.key) for f in found)
    assert got == [
        ("IST0166", "AuthorizationPolicy", "default/ap-ineffective"),
        ("IST0166", "RequestAuthentication", "default/ra-ineffective"),
    ]
    assert found[0].message == (
        "Ineffective selector on Kubernetes Gateway bookinfo-gateway. "
        "Use the TargetRef field instead."
    )


AMBIENT = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {"name": "ns", "labels": {"istio.io/dataplane-mode": "ambient"}},
}
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "api", "namespace": "ns", "labels": {"app": "api"}},
    "spec": {"containers": [{"name": "api"}]},
}


def _ap(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }


def test_negative_ztunnel_condition() -> None:
    # IST0171's message (messages.yaml NegativeConditionStatus) with the
    # condition istiod writes (TestConvertAuthorizationPolicyStatus).
    snap = _snapshot([AMBIENT, POD, _ap("audit", {"action": "AUDIT", "rules": [{}]})])
    (f,) = [f for f in ambient_findings(snap) if f.code == "IST0171"]
    assert f.message == IST0171.format(
        "ZtunnelAccepted", "UnsupportedValue", "ztunnel does not support the AUDIT action"
    )


def test_no_negative_condition_without_ambient_workloads() -> None:
    snap = load_mesh([str(EXAMPLES / "seed")]).snapshot
    assert ambient_findings(snap) == []


def test_deny_made_a_no_op() -> None:
    spec = {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}
    snap = _snapshot([AMBIENT, POD, _ap("no-deletes", spec)])
    (f,) = [f for f in ambient_findings(snap) if f.code == "ambient-deny-no-op"]
    assert "drops its HTTP fields (methods)" in f.message


def test_selector_allow_that_misses_the_waypoint_identity() -> None:
    snap = load_mesh([str(EXAMPLES / "seed-ambient-waypoint")]).snapshot
    codes = {(f.code, f.policy.key) for f in ambient_findings(snap)}
    # allow-frontend-get-data lost its rule at ztunnel: it admits nobody, the waypoint neither.
    assert ("ambient-waypoint-identity", "default/allow-frontend-get-data") in codes
    ok = load_mesh([str(Path(__file__).parent / "meshes" / "waypoint-l7.yaml")]).snapshot
    assert not [f for f in ambient_findings(ok) if f.code == "ambient-waypoint-identity"]


def test_validate_reports_the_ambient_checks_as_warnings(capsys) -> None:
    import json

    from meshauthz.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["validate", str(EXAMPLES / "seed-ambient"), "-o", "json"])
    assert exc.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True
    codes = sorted((f["severity"], f["code"], f["resource"]["name"]) for f in doc["findings"])
    assert codes == [
        ("warning", "KIA0109", "allow-frontend-get-data"),
        ("warning", "KIA0110", "allow-frontend-get-data"),
    ]


def test_negative_waypoint_condition() -> None:
    # conditions.go reports WaypointAccepted false, and PartiallyInvalid though true
    # (analyzers_test.go "Condition Analyzer": negative-condition-authz-partially-invalid).
    ns = dict(AMBIENT)
    ns["metadata"] = {
        "name": "ns",
        "labels": {"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"},
    }
    waypoint = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": "ns"},
        "spec": {"gatewayClassName": "istio-waypoint"},
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": "ns"},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]},
    }
    refs = [{"kind": "Service", "name": "api"}, {"kind": "Service", "name": "doesnt-exist"}]
    snap = _snapshot([ns, POD, waypoint, svc, _ap("partly", {"targetRefs": refs})])
    (f,) = [f for f in ambient_findings(snap) if f.code == "IST0171"]
    assert f.message == IST0171.format(
        "WaypointAccepted", "PartiallyInvalid", "Invalid targetRefs: Service.core:ns/doesnt-exist"
    )


def test_the_mesh_is_built_for_these_checks_only_when_needed() -> None:
    from meshauthz.ambient.lint import needs_ambient_checks

    assert not needs_ambient_checks(load_mesh([str(EXAMPLES / "seed")]).manifests)
    assert needs_ambient_checks(load_mesh([str(EXAMPLES / "seed-ambient")]).manifests)

"""Which policies istiod lists on an ambient workload, from Istio's
TestAmbientIndex_Policy steps (data/attachment_steps.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from meshauthz.ambient.flags import AmbientFlags
from meshauthz.ambient.ztunnel_config import istiod_ambient, ztunnel_workload
from meshauthz.mesh.loading import load_mesh_documents
from meshauthz.resources.yamlload import parse_documents

STEPS = yaml.safe_load((Path(__file__).parent / "data" / "attachment_steps.yaml").read_text())[
    "steps"
]


def _policy_doc(p: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if "selector" in p:
        spec["selector"] = {"matchLabels": p["selector"]}
    if "mtls" in p:
        spec["mtls"] = {"mode": p["mtls"]}
    if "ports" in p:
        spec["portLevelMtls"] = {k: {"mode": v} for k, v in p["ports"].items()}
    for key in ("rules", "targetRef"):
        if key in p:
            spec[key] = p[key]
    group = "security.istio.io/v1"
    return {
        "apiVersion": group,
        "kind": p["kind"],
        "metadata": {"name": p["name"], "namespace": p["namespace"]},
        "spec": spec,
    }


def _pod_doc(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns1", "labels": labels},
        "spec": {"serviceAccountName": "sa1", "containers": [{"name": "app"}]},
    }


def test_ambient_index_policy_steps() -> None:
    policies: dict[tuple[str, str, str], dict[str, Any]] = {}
    pods: dict[str, dict[str, str]] = {}
    checked = 0
    for step in STEPS:
        for p in step.get("delete", []):
            del policies[(p["kind"], p["namespace"], p["name"])]
        for name in step.get("deletePods", []):
            del pods[name]
        for p in step.get("set", []):
            policies[(p["kind"], p["namespace"], p["name"])] = p
        pods.update(step.get("pods", {}))
        docs = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "ns1", "labels": {"istio.io/dataplane-mode": "ambient"}},
            },
            *(_pod_doc(n, labels) for n, labels in pods.items()),
            *(_policy_doc(p) for p in policies.values()),
        ]
        text = yaml.safe_dump_all(docs)
        snapshot = load_mesh_documents(parse_documents(text, "steps.yaml")).snapshot
        istiod = istiod_ambient(snapshot)
        for pod, want in step.get("expect", {}).items():
            got = ztunnel_workload(snapshot, f"ns1/{pod}", istiod=istiod).workload_policies
            assert got == want, step["note"]
            checked += 1
        if "noPolicy" in step:
            assert step["noPolicy"] not in istiod.store.by_key
    assert checked == 31


def test_default_allow_waypoint_policy() -> None:
    # Istio's TestDefaultAllowWaypointPolicy (ambientindex_test.go), with its
    # setupPolicyTest: two waypoint pods (service accounts namespace-wide and
    # waypoint-sa) of waypoint "waypoint-ns" (all traffic), namespace ns1 using it,
    # PILOT_AUTO_ALLOW_WAYPOINT_POLICY on.
    managed = {
        "gateway.istio.io/managed": "istio.io-mesh-controller",
        "gateway.networking.k8s.io/gateway-name": "waypoint-ns",
    }

    def pod(name: str, sa: str, labels: dict[str, str]) -> dict[str, Any]:
        doc = _pod_doc(name, labels)
        doc["spec"]["serviceAccountName"] = sa
        return doc

    docs = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "ns1",
                "labels": {
                    "istio.io/dataplane-mode": "ambient",
                    "istio.io/use-waypoint": "waypoint-ns",
                },
            },
        },
        pod("pod1", "sa1", {"app": "a"}),
        pod("waypoint-ns-pod", "namespace-wide", managed),
        pod("waypoint2-sa", "waypoint-sa", managed),
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {
                "name": "waypoint-ns",
                "namespace": "ns1",
                "labels": {"istio.io/waypoint-for": "all"},
            },
            "spec": {
                "gatewayClassName": "istio-waypoint",
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
            },
            "status": {"addresses": [{"value": "10.0.0.2"}]},
        },
    ]
    snapshot = load_mesh_documents(parse_documents(yaml.safe_dump_all(docs), "t.yaml")).snapshot
    flags = AmbientFlags(auto_allow_waypoint=True)
    istiod = istiod_ambient(snapshot, flags)
    name = "ns1/istio_allow_waypoint_ns1_waypoint-ns"
    policy = istiod.store.by_key[name]
    (((match,),),) = policy.rules
    assert [p.value for p in match.principals] == [
        "cluster.local/ns/ns1/sa/namespace-wide",
        "cluster.local/ns/ns1/sa/waypoint-sa",
    ]
    held = ztunnel_workload(snapshot, "ns1/pod1", flags, istiod)
    assert held.workload_policies == [name]
    # Off by default (features.DefaultAllowFromWaypoint = false).
    assert ztunnel_workload(snapshot, "ns1/pod1").workload_policies == []

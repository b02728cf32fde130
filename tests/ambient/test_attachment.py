"""Which policies istiod lists on an ambient workload, from Istio's
TestAmbientIndex_Policy steps (data/attachment_steps.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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

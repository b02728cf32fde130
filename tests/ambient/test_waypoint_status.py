"""istiod's WaypointAccepted bindings, from Istio's TestWaypointPolicyStatusCollection
(data/waypoint_status.yaml), and their flattening (service.go flattenConditions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.ambient.waypoint_status import PolicyBinding, flatten, waypoint_bindings
from meshauthz.mesh.loading import load_mesh_documents
from meshauthz.resources.yamlload import parse_documents

CASES = yaml.safe_load((Path(__file__).parent / "data" / "waypoint_status.yaml").read_text())[
    "cases"
]


@pytest.mark.parametrize("case", CASES, ids=[c["test"] for c in CASES])
def test_waypoint_policy_status_collection(case: dict[str, Any]) -> None:
    ns = case.get("namespace", "ns1")
    spec: dict[str, Any] = {}
    if "refs" in case:
        spec["targetRefs"] = case["refs"]
    if "targetRef" in case:
        spec["targetRef"] = case["targetRef"]
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "ns1", "labels": {"istio.io/use-waypoint": "waypoint"}},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "ns1"},
            "spec": {"gatewayClassName": "istio-waypoint"},
            "status": {
                "addresses": [{"type": "Hostname", "value": "waypoint.default.cluster.local"}]
            },
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "pol", "namespace": ns},
            "spec": spec,
        },
    ]
    for name, labels in case.get("services", {}).items():
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "ns1", "labels": labels},
                "spec": {"ports": [{"port": 80}]},
            }
        )
    for name, labels in case.get("serviceEntries", {}).items():
        docs.append(
            {
                "apiVersion": "networking.istio.io/v1alpha3",
                "kind": "ServiceEntry",
                "metadata": {"name": name, "namespace": "ns1", "labels": labels},
                "spec": {},
            }
        )
    snap = load_mesh_documents(parse_documents(yaml.safe_dump_all(docs), "t.yaml")).snapshot
    (ap,) = snap.authorization_policies
    got = [[b.ancestor, b.reason, b.message, b.bound] for b in waypoint_bindings(snap, ap)]
    assert got == case["expect"]


def test_flatten_conditions() -> None:
    ok = PolicyBinding("Service.core:ns1/a", "Accepted", "bound to ns1/waypoint", True)
    bad = PolicyBinding(
        "Service.core:ns1/b", "TargetNotFound", "Service ns1/b was not found", False
    )
    one = flatten([bad])
    assert one is not None and (one.status, one.reason, one.message) == (
        False,
        "TargetNotFound",
        "Service ns1/b was not found",
    )
    part = flatten([ok, bad])
    assert part is not None and (part.status, part.reason, part.message) == (
        True,
        "PartiallyInvalid",
        "Invalid targetRefs: Service.core:ns1/b",
    )
    none = flatten([bad, bad])
    assert none is not None and (none.status, none.reason) == (False, "Invalid")
    both = flatten([ok, ok])
    assert both is not None and (both.status, both.reason, both.message) == (True, "Accepted", "")
    assert flatten([]) is None

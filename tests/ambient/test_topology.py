"""Ambient capture and waypoint bindings (data/topology.yaml, from Istio's tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.ambient.topology import enrollment, service_waypoint, workload_waypoint
from meshauthz.mesh.loading import load_mesh_documents
from meshauthz.mesh.snapshot import MeshSnapshot
from meshauthz.resources.yamlload import parse_documents

DATA = yaml.safe_load((Path(__file__).parent / "data" / "topology.yaml").read_text())


def _snapshot(*docs: dict[str, Any]) -> MeshSnapshot:
    text = yaml.safe_dump_all(list(docs))
    return load_mesh_documents(parse_documents(text, "t.yaml")).snapshot


def _ns(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}},
    }


def _pod(
    name: str,
    labels: dict[str, str],
    *,
    ns: str = "test",
    annotations: dict[str, str] | None = None,
    host_network: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app"}]}
    if host_network:
        spec["hostNetwork"] = True
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _waypoint(name: str, ns: str, labels: dict[str, str], *, ready: bool = True) -> dict[str, Any]:
    # As the test's addWaypoint: class istio-waypoint, HBONE listener from Same.
    doc: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "gatewayClassName": "istio-waypoint",
            "listeners": [
                {
                    "name": "mesh",
                    "port": 15008,
                    "protocol": "HBONE",
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                }
            ],
        },
    }
    doc["status"] = {"addresses": [{"value": "10.0.0.10"}]} if ready else {}
    return doc


@pytest.mark.parametrize("case", DATA["enablement"], ids=[c["name"] for c in DATA["enablement"]])
def test_enablement_selector_matches(case: dict[str, Any]) -> None:
    snap = _snapshot(
        _ns("test", case.get("ns")),
        _pod(
            "p",
            case.get("pod", {}),
            annotations=case.get("annotations"),
            host_network=case.get("hostNetwork", False),
        ),
    )
    got = enrollment(snap, snap.workload("test/p"))
    assert (got.mode == "ambient") is case["want"], got.reason


@pytest.mark.parametrize(
    "case", DATA["waypointFor"], ids=[c["trafficType"] for c in DATA["waypointFor"]]
)
def test_waypoint_for_workload_traffic(case: dict[str, Any]) -> None:
    use = {"istio.io/use-waypoint": "test-wp"}
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc1", "namespace": "ns1", "labels": use},
        "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]},
    }
    snap = _snapshot(
        _ns("ns1"),
        _waypoint("test-wp", "ns1", {"istio.io/waypoint-for": case["trafficType"]}),
        _pod("pod1", {"app": "a", **use}, ns="ns1"),
        svc,
    )
    pod_bound = workload_waypoint(snap, snap.workload("ns1/pod1")).waypoint is not None
    svc_bound = service_waypoint(snap, snap.service("ns1/svc1")).waypoint is not None
    assert (pod_bound, svc_bound) == (case["pod"], case["service"])


def test_waypoint_configured_only_when_ready() -> None:
    # TestAmbientIndex_WaypointConfiguredOnlyWhenReady: pod1 uses a waypoint that
    # is not ready (no status addresses), pod2 one that is.
    wl = {"istio.io/waypoint-for": "workload"}
    snap = _snapshot(
        _ns("ns1"),
        _pod("pod1", {"app": "a", "istio.io/use-waypoint": "waypoint-sa1"}, ns="ns1"),
        _pod("pod2", {"app": "b", "istio.io/use-waypoint": "waypoint-sa2"}, ns="ns1"),
        _waypoint("waypoint-sa1", "ns1", wl, ready=False),
        _waypoint("waypoint-sa2", "ns1", wl),
    )
    b1 = workload_waypoint(snap, snap.workload("ns1/pod1"))
    assert b1.waypoint is None
    assert (b1.problem_reason, b1.problem) == (
        "WaypointIsNotReady",
        'waypoint "ns1/waypoint-sa1" is not ready',
    )
    b2 = workload_waypoint(snap, snap.workload("ns1/pod2"))
    assert b2.waypoint is not None and b2.waypoint.name == "waypoint-sa2"


# Precedence (waypoints.go fetchWaypointForTarget / GetUseWaypoint, read, not
# tested by Istio in a table): the object's label beats its namespace's, "none"
# opts out, -namespace names the waypoint's namespace, and a waypoint only takes
# namespaces its HBONE listener allows.
def _service_mesh(svc_labels: dict[str, str], ns_labels: dict[str, str]) -> MeshSnapshot:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc1", "namespace": "ns1", "labels": svc_labels},
        "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]},
    }
    shared = _waypoint("shared", "infra", {})
    shared["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["from"] = "All"
    return _snapshot(
        _ns("ns1", ns_labels),
        _ns("infra"),
        _waypoint("ns-wp", "ns1", {}),
        _waypoint("svc-wp", "ns1", {}),
        _waypoint("same-only", "infra", {}),
        shared,
        svc,
    )


@pytest.mark.parametrize(
    ("svc_labels", "ns_labels", "want", "problem"),
    [
        ({}, {"istio.io/use-waypoint": "ns-wp"}, "ns1/ns-wp", ""),
        ({"istio.io/use-waypoint": "svc-wp"}, {"istio.io/use-waypoint": "ns-wp"}, "ns1/svc-wp", ""),
        ({"istio.io/use-waypoint": "none"}, {"istio.io/use-waypoint": "ns-wp"}, None, ""),
        (
            {"istio.io/use-waypoint": "shared", "istio.io/use-waypoint-namespace": "infra"},
            {},
            "infra/shared",
            "",
        ),
        (
            {"istio.io/use-waypoint": "same-only", "istio.io/use-waypoint-namespace": "infra"},
            {},
            None,
            "AttachmentDenied",
        ),
        ({"istio.io/use-waypoint": "missing"}, {}, None, "WaypointIsNotReady"),
        ({}, {}, None, ""),
    ],
)
def test_use_waypoint_precedence(svc_labels, ns_labels, want, problem) -> None:
    snap = _service_mesh(svc_labels, ns_labels)
    b = service_waypoint(snap, snap.service("ns1/svc1"))
    assert (b.waypoint.key if b.waypoint else None, b.problem_reason) == (want, problem)


def test_odd_listener_shapes_do_not_break_reading_waypoints() -> None:
    # The Gateway schema meshauthz reads does not type allowedRoutes: a wrong shape
    # reads as the default (Same), never a traceback.
    gw = _waypoint("wp", "ns1", {})
    gw["spec"]["listeners"][0]["allowedRoutes"] = ["not", "a", "mapping"]
    snap = _snapshot(_ns("ns1"), gw)
    from meshauthz.ambient.topology import waypoints

    assert waypoints(snap)["ns1/wp"].allowed_from == "Same"

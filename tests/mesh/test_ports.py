"""Inbound ports, target-port resolution and "to" targets.

Sources (istio/istio at the pinned commit):
* pilot/pkg/serviceregistry/kube/controller/util_test.go TestFindPortNativeSidecar
  (regular-container and numeric cases);
* controller.go GetProxyServiceTargetsByPod (dedup by target port and protocol,
  Service port order), Proxy.SetServiceTargets + listener_inbound.go
  getFilterChainsByServicePort (first Service by creation time decides a port's
  protocol) and buildInboundPassthroughChains (undeclared ports: auto) — code.
"""

from __future__ import annotations

import msgspec
import pytest

from meshauthz.mesh import (
    LookupFailed,
    Protocol,
    inbound_port,
    inbound_ports,
    resolve_target,
    resolve_target_port,
)
from meshauthz.resources.k8s import ServicePort
from tests.mesh.mesh_builders import deployment, pod, service, snapshot


def sp(**kw) -> ServicePort:
    return msgspec.convert(kw, ServicePort)


@pytest.fixture
def web():
    s = snapshot(
        deployment(
            "web",
            "ns",
            {"app": "web"},
            ports=[
                {"containerPort": 80, "name": "http"},
                {"containerPort": 9090, "name": "metrics", "protocol": "UDP"},
            ],
        )
    )
    return s.workload("ns/web")


def test_find_port(web):
    # TestFindPortNativeSidecar: "find port in regular container" (named "http" -> 80)
    # and "numeric target port always works" (8080 -> 8080).
    assert resolve_target_port(web, sp(port=1, targetPort="http", protocol="TCP")) == 80
    assert resolve_target_port(web, sp(port=1, targetPort=8080, protocol="TCP")) == 8080
    # FindPort: a name that no container declares (with the same protocol) gives no port.
    assert resolve_target_port(web, sp(port=1, targetPort="nope")) is None
    assert resolve_target_port(web, sp(port=1, targetPort="metrics", protocol="TCP")) is None
    assert resolve_target_port(web, sp(port=1, targetPort="metrics", protocol="UDP")) == 9090
    # No targetPort: Kubernetes defaults it to the port.
    assert resolve_target_port(web, sp(port=8000)) == 8000


def test_inbound_ports_from_services():
    s = snapshot(
        deployment("web", "ns", {"app": "web"}, ports=[{"containerPort": 8080, "name": "web"}]),
        service(
            "web",
            "ns",
            {"app": "web"},
            [
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "http-alt", "port": 81, "targetPort": 8080},  # same target, same protocol
                {"name": "grpc", "port": 90, "targetPort": 9000},
                {"name": "tcp-db", "port": 5432},
                {"name": "plain", "port": 7000},
                {"port": 3306},
            ],
        ),
    )
    got = {p.port: (p.protocol, p.listener) for p in inbound_ports(s, "ns/web")}
    assert got == {
        8080: (Protocol.HTTP, "http"),
        9000: (Protocol.GRPC, "http"),
        5432: (Protocol.TCP, "tcp"),
        7000: (Protocol.UNSUPPORTED, "auto"),
        3306: (Protocol.TCP, "tcp"),
    }
    p8080 = inbound_port(s, "ns/web", 8080)
    assert p8080.target is not None and p8080.target.service_port.port == 80
    assert p8080.conflicts == ()  # deduplicated: same (port, protocol) in one Service


def test_first_service_port_decides_a_ports_protocol():
    # Two Services target 8080 with different protocols: the older Service wins,
    # the other is a conflict (getFilterChainsByServicePort, reportInboundConflict).
    s = snapshot(
        deployment("web", "ns", {"app": "web"}),
        service("b-tcp", "ns", {"app": "web"}, [{"name": "tcp", "port": 1, "targetPort": 8080}],
                created="2024-01-01T00:00:00Z"),
        service("a-http", "ns", {"app": "web"}, [{"name": "http", "port": 2, "targetPort": 8080}],
                created="2024-02-01T00:00:00Z"),
    )  # fmt: skip
    p = inbound_port(s, "ns/web", 8080)
    assert p.protocol is Protocol.TCP and p.listener == "tcp"
    assert p.service is not None and p.service.name == "b-tcp"
    assert [c.service.name for c in p.conflicts] == ["a-http"]


def test_same_service_two_protocols_on_one_port_first_in_spec_order_wins():
    # GetProxyServiceTargetsByPod keeps both (port, protocol) pairs in spec order;
    # the listener keeps the first.
    s = snapshot(
        deployment("web", "ns", {"app": "web"}),
        service(
            "web",
            "ns",
            {"app": "web"},
            [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "tcp", "port": 81, "targetPort": 8080},
            ],
        ),
    )
    p = inbound_port(s, "ns/web", 8080)
    assert p.protocol is Protocol.HTTP
    assert [c.service_port.name for c in p.conflicts] == ["tcp"]


def test_undeclared_port_is_passthrough_auto():
    s = snapshot(deployment("web", "ns", {"app": "web"}))
    p = inbound_port(s, "ns/web", 15000)
    assert p.passthrough and p.protocol is Protocol.UNSUPPORTED and p.listener == "auto"
    assert p.chain(http_request=True) == "http"
    assert p.chain(http_request=False) == "tcp"


# --------------------------------------------------------------------------- targets


@pytest.fixture
def mesh():
    return snapshot(
        deployment("api", "ns", {"app": "api"}, ports=[{"containerPort": 8080, "name": "http"}]),
        service("api", "ns", {"app": "api"}, [{"name": "http", "port": 80, "targetPort": "http"}]),
        deployment("worker-a", "ns", {"role": "worker"}),
        deployment("worker-b", "ns", {"role": "worker"}),
        service("workers", "ns", {"role": "worker"}, [{"port": 80}]),
        service("lonely", "ns", {"app": "nobody"}, [{"port": 80}]),
        deployment("solo", "ns", {"app": "solo"}),
        service(
            "solo-svc",
            "ns",
            {"app": "solo"},
            [{"name": "a", "port": 80}, {"name": "b", "port": 81}],
        ),
    )


def test_target_service_port_maps_to_target_port(mesh):
    t = resolve_target(mesh, "ns/api:80")
    assert (t.workload.key, t.port, t.via) == ("ns/api", 8080, "service")
    t = resolve_target(mesh, "api.ns.svc.cluster.local:80")
    assert (t.workload.key, t.port, t.via) == ("ns/api", 8080, "service")


def test_target_workload_port(mesh):
    t = resolve_target(mesh, "ns/api:8080")
    assert (t.workload.key, t.port, t.via) == ("ns/api", 8080, "workload")
    t = resolve_target(mesh, "ns/api")
    assert (t.workload.key, t.port, t.via) == ("ns/api", None, "workload")


def test_target_service_single_port_implied(mesh):
    t = resolve_target(mesh, "ns/solo-svc")
    assert (t.workload.key, t.port) == ("ns/solo", None)  # two ports: none implied
    t = resolve_target(mesh, "ns/solo-svc:81")
    assert (t.workload.key, t.port) == ("ns/solo", 81)


def test_target_errors(mesh):
    with pytest.raises(LookupFailed) as e:
        resolve_target(mesh, "ns/workers:80")
    assert e.value.code == "ambiguous"
    with pytest.raises(LookupFailed) as e:
        resolve_target(mesh, "ns/lonely")
    assert e.value.code == "not-found"
    with pytest.raises(LookupFailed):
        resolve_target(mesh, "ns/solo-svc:99")
    with pytest.raises(LookupFailed):
        resolve_target(mesh, "ns/nothing")
    with pytest.raises(LookupFailed):
        resolve_target(mesh, "nothing.ns.svc.cluster.local")


def test_target_ambiguous_workload_name():
    s = snapshot(deployment("x", "ns", {"app": "x"}), pod("x", "ns", {"app": "x"}))
    with pytest.raises(LookupFailed) as e:
        resolve_target(s, "ns/x:80")
    assert e.value.code == "ambiguous"

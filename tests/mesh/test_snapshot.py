"""The snapshot: identities, hostnames, service/workload relations, addresses, gateways.

Sources (istio/istio at the pinned commit) are cited per test.
"""

from __future__ import annotations

import ipaddress

import pytest

from meshauthz.mesh import Identity, LookupFailed, select_policies
from meshauthz.mesh.snapshot import SYNTHETIC_POD_CIDR, SYNTHETIC_SERVICE_CIDR
from tests.mesh.mesh_builders import (
    GATEWAY_KIND,
    ap,
    deployment,
    istio_gateway,
    k8s_gateway,
    namespace,
    pod,
    service,
    snapshot,
)


@pytest.mark.parametrize(
    "td,ns,sa,uri",
    [
        ("cluster.local", "namespace-foo", "service-bar", "spiffe://cluster.local/ns/namespace-foo/sa/service-bar"),
        ("cluster.local", "foo", "bar", "spiffe://cluster.local/ns/foo/sa/bar"),
        (
            "kube-federating-id@testproj.iam.gserviceaccount.com",
            "foo",
            "bar",
            "spiffe://kube-federating-id.testproj.iam.gserviceaccount.com/ns/foo/sa/bar",
        ),
    ],
)  # fmt: skip
def test_spiffe_identity(td, ns, sa, uri):
    # pkg/spiffe/spiffe_test.go TestGenSpiffeURI.
    ident = Identity(td, ns, sa)
    assert ident.spiffe_uri == uri
    assert ident.principal == uri.removeprefix("spiffe://")


def test_workload_identity_uses_mesh_trust_domain_and_service_account():
    s = snapshot(
        deployment("a", "ns1", {"app": "a"}, sa="sa-a"),
        deployment("b", "ns1", {"app": "b"}),
        trust_domain="example.org",
    )
    assert s.identity("ns1/a").principal == "example.org/ns/ns1/sa/sa-a"
    # A pod without serviceAccountName runs as "default" (Kubernetes).
    assert s.identity("ns1/b").spiffe_uri == "spiffe://example.org/ns/ns1/sa/default"


def test_service_hostname():
    # kube.ServiceHostname: "<name>.<namespace>.svc.<domainSuffix>"
    # (controller_test.go expects "svc1.nsa.svc.company.com" for domain company.com).
    s = snapshot(service("svc1", "nsa", {"app": "x"}, [{"port": 80}]))
    assert s.service_hostname("svc1", "nsa") == "svc1.nsa.svc.cluster.local"
    assert s.service_by_hostname("svc1.nsa.svc.cluster.local") is s.service("nsa/svc1")
    assert s.service_by_hostname("SVC1.nsa.svc.cluster.local.") is s.service("nsa/svc1")
    assert s.service_by_hostname("svc1.other.svc.cluster.local") is None


def test_services_select_workloads():
    # getPodServices uses labels.Instance.Match: same namespace, a non-empty
    # selector that is a subset of the pod labels. A Service without a selector
    # selects no pod.
    s = snapshot(
        deployment("web", "ns", {"app": "web", "v": "1"}),
        deployment("web2", "other", {"app": "web"}),
        service("web", "ns", {"app": "web"}, [{"port": 80}]),
        service("web-v1", "ns", {"app": "web", "v": "1"}, [{"port": 80}]),
        service("web-v2", "ns", {"app": "web", "v": "2"}, [{"port": 80}]),
        service("headless", "ns", None, [{"port": 80}]),
    )
    # Same creation time: hostname order, and "web-v1.ns..." < "web.ns..." ("-" < ".").
    assert [x.name for x in s.services_for("ns/web")] == ["web-v1", "web"]
    assert [w.key for w in s.workloads_for("ns/web")] == ["ns/web"]
    assert s.workloads_for("ns/headless") == []


def test_services_for_are_in_creation_then_hostname_order():
    # Proxy.SetServiceTargets: services by creation time, then hostname.
    s = snapshot(
        deployment("web", "ns", {"app": "web"}),
        service("a", "ns", {"app": "web"}, [{"port": 80}], created="2024-01-02T00:00:00Z"),
        service("b", "ns", {"app": "web"}, [{"port": 80}], created="2024-01-01T00:00:00Z"),
        service("c", "ns", {"app": "web"}, [{"port": 80}], created="2024-01-01T00:00:00Z"),
    )
    assert [x.name for x in s.services_for("ns/web")] == ["b", "c", "a"]


def test_addresses_given_or_synthetic_and_stable():
    objs = [
        pod("p", "ns", {"app": "p"}, ip="192.168.1.7"),
        deployment("d1", "ns", {"app": "d1"}),
        deployment("d2", "ns", {"app": "d2"}),
        service("svc", "ns", {"app": "d1"}, [{"port": 80}]),
        service("fixed", "ns", {"app": "d1"}, [{"port": 80}], cluster_ip="10.0.0.9"),
        service("none", "ns", {"app": "d1"}, [{"port": 80}], cluster_ip="None"),
    ]
    s1, s2 = snapshot(*objs), snapshot(*reversed(objs))
    p = s1.workload("ns/p")
    assert p.address == "192.168.1.7" and not p.address_synthetic
    d1, d2 = s1.workload("ns/d1"), s1.workload("ns/d2")
    for w in (d1, d2):
        a = ipaddress.ip_address(w.address)
        assert w.address_synthetic and a in SYNTHETIC_POD_CIDR
        assert a not in (SYNTHETIC_POD_CIDR.network_address, SYNTHETIC_POD_CIDR.broadcast_address)
        assert not a.is_loopback
    assert d1.address != d2.address
    assert d1.address == s2.workload("ns/d1").address  # independent of input order
    svc = s1.service("ns/svc")
    assert svc.cluster_ip_synthetic
    assert ipaddress.ip_address(svc.cluster_ip) in SYNTHETIC_SERVICE_CIDR
    assert s1.service("ns/fixed").cluster_ip == "10.0.0.9"
    assert s1.service("ns/none").cluster_ip is None


def test_namespaces_declared_and_implied():
    s = snapshot(
        namespace("default", {"istio-injection": "enabled"}),
        deployment("a", "apps", {"app": "a"}),
        ap("p", "istio-system"),
    )
    assert s.namespace("default").labels == {"istio-injection": "enabled"}
    assert s.namespace("default").declared
    assert not s.namespace("apps").declared
    assert "istio-system" in s.namespaces


def test_lookup_errors():
    s = snapshot(
        deployment("x", "ns", {"app": "x"}),
        pod("x", "ns", {"app": "x"}),
    )
    with pytest.raises(LookupFailed) as e:
        s.workload("ns/missing")
    assert e.value.code == "not-found"
    with pytest.raises(LookupFailed) as e:
        s.workload("ns/x")
    assert e.value.code == "ambiguous"
    with pytest.raises(LookupFailed):
        s.workload("no-slash")


# --------------------------------------------------------------------------- gateways


def test_managed_gateway_deployment_is_modelled():
    # gatewaycommon/testdata/deployment/simple.yaml: Gateway default/default of class
    # "istio" with label should=see -> Deployment default-istio, service account
    # default-istio, these pod labels.
    s = snapshot(k8s_gateway("default", "default", "istio", labels={"should": "see"}))
    w = s.workload("default/default-istio")
    assert w.synthetic and w.proxy == "gateway"
    assert w.service_account == "default-istio"
    assert dict(w.labels) == {
        "gateway.istio.io/managed": "istio.io-gateway-controller",
        "gateway.networking.k8s.io/gateway-class-name": "istio",
        "gateway.networking.k8s.io/gateway-name": "default",
        "istio.io/dataplane-mode": "none",
        "service.istio.io/canonical-name": "default-istio",
        "service.istio.io/canonical-revision": "latest",
        "should": "see",
        "sidecar.istio.io/inject": "false",
    }


def test_managed_gateway_service_account_annotation():
    # testdata/deployment/manual-sa.yaml: gateway.istio.io/service-account: custom-sa.
    s = snapshot(
        k8s_gateway(
            "default",
            "default",
            "istio",
            annotations={"gateway.istio.io/service-account": "custom-sa"},
        )
    )
    w = s.workload("default/default-istio")
    assert w.service_account == "custom-sa"
    assert w.identity.principal == "cluster.local/ns/default/sa/custom-sa"


def test_waypoint_deployment_is_modelled():
    # testdata/deployment/waypoint.yaml: Gateway default/namespace of class
    # istio-waypoint -> Deployment "namespace" (no class suffix), SA "namespace",
    # managed by istio.io-mesh-controller.
    s = snapshot(
        k8s_gateway(
            "namespace",
            "default",
            "istio-waypoint",
            labels={"topology.istio.io/network": "network-1"},
        )
    )
    w = s.workload("default/namespace")
    assert w.proxy == "waypoint" and w.is_waypoint
    assert w.service_account == "namespace"
    assert w.labels["gateway.istio.io/managed"] == "istio.io-mesh-controller"
    assert w.labels["topology.istio.io/network"] == "network-1"
    assert w.labels["istio.io/dataplane-mode"] == "none"


def test_gateway_pods_from_manifests_are_used_instead_of_a_stand_in():
    s = snapshot(
        k8s_gateway("gw", "ing", "istio"),
        deployment("my-gw", "ing", {"gateway.networking.k8s.io/gateway-name": "gw"}),
    )
    assert [w.key for w in s.workloads if w.gateway is not None] == ["ing/my-gw"]
    assert s.workload("ing/my-gw").proxy == "gateway"


def test_target_ref_to_gateway_attaches_to_its_pods_only():
    # ShouldAttachPolicy (policyattachment_test.go "gateway API ingress and a targetRef",
    # "non-gateway API workload and a targetRef"): a Gateway targetRef in the same
    # namespace attaches to the gateway's pods; sidecars ignore targetRef policies.
    s = snapshot(
        k8s_gateway("gw", "ing", "istio"),
        deployment("app", "ing", {"app": "app"}),
        ap("on-gw", "ing", target_ref={**GATEWAY_KIND, "name": "gw"}),
        ap("ns-wide", "ing"),
    )
    got = select_policies(s, "ing/gw-istio")
    assert [(p.policy.name, p.reason.kind) for p in got] == [
        ("ns-wide", "namespace-wide"),
        ("on-gw", "target-ref"),
    ]
    assert [p.policy.name for p in select_policies(s, "ing/app")] == ["ns-wide"]


def test_istio_gateway_pods_are_gateways_selected_by_selector():
    # An Istio (networking.istio.io) Gateway is not a Gateway API workload: its pods
    # are matched by the Gateway's selector, and policies attach by selector.
    s = snapshot(
        istio_gateway("public", "istio-system", {"istio": "ingressgateway"}),
        deployment("istio-ingressgateway", "istio-system", {"istio": "ingressgateway"}),
        ap("ingress", "istio-system", selector={"istio": "ingressgateway"}),
    )
    w = s.workload("istio-system/istio-ingressgateway")
    assert w.proxy == "gateway" and w.gateway is not None and w.gateway.name == "public"
    got = select_policies(s, w)
    assert [(p.policy.name, p.reason.kind) for p in got] == [("ingress", "selector")]

"""mTLS at a gateway, as istiod configures it.

PeerAuthentication does not reach a gateway's listeners: istiod builds them from
the Gateway's servers alone (pilot/pkg/networking/core/gateway.go
``buildGatewayListeners``, ``buildGatewayListenerTLSContext``); the
PeerAuthentication mode is read only on a sidecar's inbound path
(listener_inbound.go, ``authnBuilder.ForPort``). Istio's own test of that: in
tests/integration/security/pqc/main_test.go, TestMain applies a mesh-wide STRICT
PeerAuthentication, and TestIngress's subtest "request with TLS 1.3 and
X25519MLKEM768 succeeds" calls the ingress gateway with one-way TLS (no client
certificate) and expects 200 from the workload behind it.

Which identity a mesh caller presents at a gateway: its proxy's auto mTLS sends
Istio mTLS only to endpoints labelled security.istio.io/tlsMode=istio
(cluster_tls.go ``applyUpstreamTLSSettings``: the ``tlsMode-istio`` transport
socket match, and ``defaultTransportSocketMatch``, raw buffer, for the rest; the
endpoint metadata comes from ``GetTLSModeFromEndpointLabels`` in
pilot/pkg/model/service.go). Istio's tests of that: pilot/pkg/networking/util
util_test.go TestEndpointMetadata (case "all empty": a disabled tlsMode gives no
transport socket metadata; "tls mode": istio gives it) and
pilot/pkg/networking/core/cluster_test.go TestAutoMTLSClusterSubsets (an
auto-mTLS cluster has the two matches). Sidecar injection sets the label
(manifests/.../istio-discovery/files/injection-template.yaml); the gateway
template does not, which is why Istio's TestAuthz_EgressGateway adds a
DestinationRule with ISTIO_MUTUAL for the gateway port whose rules check the
caller's principal. Envoy's side (the endpoint's metadata picks the socket) is
run below against a real Envoy.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from meshauthz.decide.cause import Stage
from meshauthz.decide.engine import Decider
from meshauthz.decide.gateway_hop import through_gateway
from meshauthz.decide.render import caller_note, check_lines
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.mesh.loading import load_mesh
from meshauthz.mesh.snapshot import TLS_MODE_LABEL

from ..envoy.harness import _cluster as static_cluster
from ..envoy_process import EnvoyProcess, free_port, require_envoy

# tests/integration/security/pqc/main_test.go: the mesh-wide STRICT policy of its
# TestMain, Istio's default ingress gateway (charts/gateways/istio-ingress: https
# 443 -> 8443), TestIngress's Gateway (HTTPS, tls SIMPLE) and the echo workload a
# in the injected namespace its VirtualService routes to.
MESH = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: v1
kind: Pod
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {app: istio-ingressgateway, istio: ingressgateway%(gateway_labels)s}
spec:
  serviceAccountName: istio-ingressgateway-service-account
  containers: [{name: istio-proxy, ports: [{containerPort: 8080}, {containerPort: 8443}]}]
---
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports:
  - {name: http2, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress-pqc-credential, namespace: internal}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: ingress-pqc-credential}
    hosts: [ingress-pqc.example.com]
---
apiVersion: v1
kind: Namespace
metadata: {name: internal, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: internal, labels: {app: a}}
spec:
  serviceAccountName: a
  containers: [{name: app, ports: [{containerPort: 18080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: internal}
spec:
  selector: {app: a}
  ports: [{name: http, port: 80, targetPort: 18080}]
"""

# A policy on the gateway that only the mesh caller a may pass, by its principal.
ONLY_A = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-a, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules: [{from: [{source: {principals: [cluster.local/ns/internal/sa/a]}}]}]
"""

HOST = "ingress-pqc.example.com"
# The Gateway's HTTPS server terminates TLS: the request takes the HTTP chain.
AT_GATEWAY = {"to": "istio-system/istio-ingressgateway:443", "protocol": "http", "host": HOST}


def _decider(tmp_path: Path, *docs: str, gateway_labels: str = "") -> Decider:
    (tmp_path / "m.yaml").write_text(
        "\n---\n".join([MESH % {"gateway_labels": gateway_labels}, *docs])
    )
    return Decider(load_mesh([str(tmp_path / "m.yaml")]).snapshot)


def _decide(d: Decider, req: dict[str, Any]) -> Any:
    return d.decide(resolve(request_from_data(req), d.snapshot))


def test_strict_peer_authentication_does_not_reset_a_gateways_clients(tmp_path):
    """pqc TestIngress, "request with TLS 1.3 and X25519MLKEM768 succeeds": a client
    without a certificate gets 200 through the gateway under mesh-wide STRICT."""
    d = _decider(tmp_path)
    client = {"from": {"ip": "203.0.113.7", "plaintext": True}, **AT_GATEWAY}
    hops = through_gateway(d, client, "internal/a", 80, "http")
    assert hops.at_gateway.verdict == "ALLOW"
    assert hops.at_destination is not None  # the gateway sent it on, over mTLS
    assert (hops.final.verdict, hops.final.status) == ("ALLOW", 200)
    # the sidecar still enforces the STRICT mode on its own inbound port
    direct = _decide(d, {"from": {"ip": "203.0.113.7", "plaintext": True}, "to": "internal/a:80"})
    assert direct.verdict == "DENY" and direct.stage is Stage.MTLS


def test_a_mesh_caller_of_a_gateway_sends_plaintext(tmp_path):
    """No tlsMode label on the gateway's pods: a's sidecar sends plaintext, so the
    gateway's rule on a's principal does not match; a DestinationRule with
    ISTIO_MUTUAL (given as the caller's principal, as TestAuthz_EgressGateway's
    a-echo1-only.com case has it) makes it match."""
    d = _decider(tmp_path, ONLY_A)
    r = resolve(request_from_data({"from": "internal/a", **AT_GATEWAY}), d.snapshot)
    assert r.source_principal is None and r.source_workload == "internal/a"
    assert d.decide(r).verdict == "DENY"
    mtls = {"workload": "internal/a", "principal": "cluster.local/ns/internal/sa/a"}
    assert _decide(d, {"from": mtls, **AT_GATEWAY}).verdict == "ALLOW"
    # the gateway sends on to a's sidecar over mTLS with its own identity
    r = resolve(
        request_from_data({"from": "istio-system/istio-ingressgateway", "to": "internal/a"}),
        d.snapshot,
    )
    assert (
        r.source_principal
        == "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    )


def test_check_says_why_a_mesh_caller_of_a_gateway_is_plaintext(tmp_path):
    d = _decider(tmp_path, ONLY_A)
    r = resolve(request_from_data({"from": "internal/a", **AT_GATEWAY}), d.snapshot)
    lines = check_lines(r, d.decide(r))
    assert any("internal/a sends plaintext" in line and TLS_MODE_LABEL in line for line in lines), (
        lines
    )
    # with the label, the caller's identity arrives: nothing to explain
    d = _decider(tmp_path, ONLY_A, gateway_labels=f", {TLS_MODE_LABEL}: istio")
    r = resolve(request_from_data({"from": "internal/a", **AT_GATEWAY}), d.snapshot)
    assert caller_note(r) is None


def test_a_gateway_labelled_for_istio_mtls_sees_its_callers_identity(tmp_path):
    d = _decider(tmp_path, ONLY_A, gateway_labels=f", {TLS_MODE_LABEL}: istio")
    r = resolve(request_from_data({"from": "internal/a", **AT_GATEWAY}), d.snapshot)
    assert r.source_principal == "cluster.local/ns/internal/sa/a"
    assert d.decide(r).verdict == "ALLOW"


# Envoy's side of auto mTLS: istiod's two transport socket matches; endpoint
# metadata only for a tlsMode label of istio (util.go AppendLbEndpointMetadata).
def _cluster(name: str, port: int, tls_mode: str | None) -> dict[str, Any]:
    metadata = (
        {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": tls_mode}}}
        if tls_mode not in (None, "disabled")
        else None
    )
    tls = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    raw = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
    return {
        **static_cluster(name, port, metadata=metadata),
        "transport_socket_matches": [
            {
                "name": "tlsMode-istio",
                "match": {"tlsMode": "istio"},
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {"@type": tls, "sni": "outbound_.443_._.gw"},
                },
            },
            {
                "name": "tlsMode-disabled",
                "match": {},
                "transport_socket": {
                    "name": "envoy.transport_sockets.raw_buffer",
                    "typed_config": {"@type": raw},
                },
            },
        ],
    }


def _listener(name: str, port: int, routes: list[dict[str, Any]]) -> dict[str, Any]:
    hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    router = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": hcm,
                            "stat_prefix": name,
                            "route_config": {
                                "virtual_hosts": [
                                    {"name": "all", "domains": ["*"], "routes": routes}
                                ]
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {"@type": router},
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


LABELS = {"no label": None, "disabled": "disabled", "istio": "istio"}


def test_envoy_picks_plaintext_for_an_endpoint_without_the_istio_label(tmp_path):
    """A client proxy's auto-mTLS cluster to a plaintext (HTTP server) gateway
    listener: Envoy 1.40 reaches it in plaintext exactly for the endpoints that
    meshauthz says a mesh caller reaches in plaintext."""
    exe = require_envoy("auto mTLS transport socket selection")
    admin, gateway, client = free_port(), free_port(), free_port()
    direct = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
    }
    routes = [
        {"match": {"path": f"/{i}"}, "route": {"cluster": f"c{i}"}} for i in range(len(LABELS))
    ]
    listeners = [_listener("gateway", gateway, [direct]), _listener("client", client, routes)]
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": listeners,
            "clusters": [_cluster(f"c{i}", gateway, m) for i, m in enumerate(LABELS.values())],
        },
    }
    proc = EnvoyProcess(exe, tmp_path)
    proc.start(bootstrap, admin)
    try:
        observed = {}
        for i, name in enumerate(LABELS):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{client}/{i}", timeout=10) as r:
                    observed[name] = r.status
            except urllib.error.HTTPError as e:
                observed[name] = e.code
    finally:
        proc.stop()
    for name, value in LABELS.items():
        labels = "" if value is None else f", {TLS_MODE_LABEL}: {value}"
        (tmp_path / name).mkdir()
        d = _decider(tmp_path / name, gateway_labels=labels)
        r = resolve(request_from_data({"from": "internal/a", **AT_GATEWAY}), d.snapshot)
        assert (observed[name] == 200) == r.plaintext, (name, observed)
    assert observed["istio"] == 503, observed  # TLS to the plaintext listener fails

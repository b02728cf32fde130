"""The remote address on a gateway: istiod gives gateways ``use_remote_address:
true`` and ``xff_num_trusted_hops = gatewayTopology.numTrustedProxies``
(gateway.go ``buildGatewayConnectionManager``), sidecars ``use_remote_address:
false`` and no trusted hops (envoy/hcm.py; both pinned against Envoy in
tests/envoy_filters/test_hcm.py). So X-Forwarded-For decides ``remoteIpBlocks`` on a
gateway only when the mesh trusts proxies in front of it: Istio's own
integration tests set ``numTrustedProxies: 1`` for exactly that
(tests/integration/security/main_test.go, TestAuthz_IngressGateway).
"""

from __future__ import annotations

import pytest

from meshauthz.decide.decision import Decision
from meshauthz.decide.engine import Decider
from meshauthz.decide.request import Request, resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.mesh.loading import load_mesh
from meshauthz.resources.meshconfig import MeshConfigError, mesh_config_from_data

MESH = """\
apiVersion: v1
kind: Pod
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {app: istio-ingressgateway, istio: ingressgateway}
spec:
  serviceAccountName: gw
  containers: [{name: istio-proxy, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports: [{name: http2, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: ns, labels: {app: api}}
spec:
  containers: [{name: c, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: ns}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-blocked, namespace: istio-system}
spec:
  action: DENY
  rules: [{from: [{source: {remoteIpBlocks: ["172.17.72.46"]}}]}]
"""


def _mesh_config(n: int) -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    defaultConfig:
      gatewayTopology:
        numTrustedProxies: {n}
"""


def _resolved(tmp_path, to: str, xff: str, trusted: int | None) -> tuple[Decider, Request]:
    """A plaintext client's request with ``xff``, resolved against MESH with
    ``trusted`` proxies in front of gateways (None: no mesh config)."""
    docs = [MESH] + ([_mesh_config(trusted)] if trusted is not None else [])
    (tmp_path / "m.yaml").write_text("\n---\n".join(docs))
    snap = load_mesh([str(tmp_path / "m.yaml")]).snapshot
    req = {
        "from": {"ip": "203.0.113.10", "plaintext": True},
        "to": to,
        "headers": {"x-forwarded-for": xff},
    }
    return Decider(snap), resolve(request_from_data(req), snap)


def _decide(tmp_path, to: str, xff: str, trusted: int | None) -> Decision:
    d, r = _resolved(tmp_path, to, xff, trusted)
    return d.decide(r)


GATEWAY = "istio-system/istio-ingressgateway:80"


@pytest.mark.parametrize(
    ("trusted", "xff", "verdict"),
    [
        (None, "172.17.72.46", "ALLOW"),  # default 0: the connection's address, XFF ignored
        (0, "172.17.72.46", "ALLOW"),
        (1, "172.17.72.46", "DENY"),  # the last entry
        (1, "172.17.72.46, 10.0.0.1", "ALLOW"),
        (2, "172.17.72.46, 10.0.0.1", "DENY"),  # skip one trusted hop
        (2, "172.17.72.46", "ALLOW"),  # too few entries: the connection's address
    ],
)
def test_a_gateway_trusts_x_forwarded_for_only_through_num_trusted_proxies(
    tmp_path, trusted, xff, verdict
):
    assert _decide(tmp_path, GATEWAY, xff, trusted).verdict == verdict


@pytest.mark.parametrize("trusted", [None, 0, 2])
def test_a_sidecar_takes_the_last_entry_whatever_the_gateway_topology(tmp_path, trusted):
    assert _decide(tmp_path, "ns/api:80", "10.0.0.1, 172.17.72.46", trusted).verdict == "DENY"
    assert _decide(tmp_path, "ns/api:80", "172.17.72.46, 10.0.0.1", trusted).verdict == "ALLOW"


def test_mesh_config_reads_num_trusted_proxies():
    assert mesh_config_from_data({}).gateway_num_trusted_proxies == 0
    mc = mesh_config_from_data({"defaultConfig": {"gatewayTopology": {"numTrustedProxies": 3}}})
    assert mc.gateway_num_trusted_proxies == 3
    with pytest.raises(MeshConfigError) as e:
        mesh_config_from_data({"defaultConfig": {"gatewayTopology": {"numTrustedProxies": -1}}})
    assert e.value.path == ("defaultConfig", "gatewayTopology", "numTrustedProxies")


@pytest.mark.parametrize("trusted", [None, 1])
@pytest.mark.parametrize("to", [GATEWAY, "ns/api:80"])
@pytest.mark.parametrize(
    "xff", ["172.17.72.46", "172.17.72.46, 10.0.0.1", "10.0.0.1, 172.17.72.46"]
)
def test_the_fast_path_takes_the_same_remote_address(tmp_path, trusted, to, xff):
    d, r = _resolved(tmp_path, to, xff, trusted)
    full = d.decide(r)
    fast = d.decide_prepared(d.prepare_request(r))
    assert (fast.verdict, fast.stage, fast.policy, fast.rule) == (
        full.verdict,
        full.stage,
        full.policy,
        full.rule,
    )


XFF_POLICY = """\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-by-header, namespace: %s}
spec:
  action: DENY
  rules: [{when: [{key: "request.headers[x-forwarded-for]", values: ["%s"]}]}]
"""


@pytest.mark.parametrize(
    ("namespace", "to", "value", "verdict"),
    [
        # a gateway's filters see the peer (203.0.113.10) appended to what was
        # sent (tests/envoy/test_added_headers.py and test_gateway_forwarded_for.py
        # observe the header the filters see with Envoy 1.40)
        ("istio-system", GATEWAY, "198.51.100.4,203.0.113.10", "DENY"),
        ("istio-system", GATEWAY, "198.51.100.4", "ALLOW"),
        # a sidecar's HCM (no use_remote_address) leaves it as sent
        ("ns", "ns/api:80", "198.51.100.4", "DENY"),
        ("ns", "ns/api:80", "198.51.100.4,203.0.113.10", "ALLOW"),
    ],
)
def test_a_header_matcher_on_x_forwarded_for_sees_what_the_hcm_made_of_it(
    tmp_path, namespace, to, value, verdict
):
    mesh = MESH + XFF_POLICY % (namespace, value)
    (tmp_path / "m.yaml").write_text(mesh)
    snap = load_mesh([str(tmp_path / "m.yaml")]).snapshot
    req = {
        "from": {"ip": "203.0.113.10", "plaintext": True},
        "to": to,
        "headers": {"x-forwarded-for": "198.51.100.4"},
    }
    assert Decider(snap).decide(resolve(request_from_data(req), snap)).verdict == verdict

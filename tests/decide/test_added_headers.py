"""Policies on the headers Envoy's connection manager adds, through both
backends of the chain runner (traced and untraced), as a user asks them.

What Envoy does to these headers is pinned against Envoy 1.40 in
tests/envoy/test_added_headers.py; here: that both backends apply it, for a sidecar and a gateway, and that the stand-ins for values only
a live proxy knows give the same answer every time.
"""

from __future__ import annotations

from pathlib import Path

from meshauthz.decide.engine import Decider
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.mesh.loading import load_mesh

WORKLOADS = """\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ns, labels: {app: client}}
spec: {serviceAccountName: client, containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: ns, labels: {app: api}}
spec: {serviceAccountName: api, containers: [{name: c, ports: [{containerPort: 80}]}]}
"""


def _policy(name: str, action: str, key: str, field: str, values: list[str]) -> str:
    return f"""\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: ns}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  action: {action}
  rules: [{{when: [{{key: "request.headers[{key}]", {field}: {values}}}]}}]
"""


def _decide(tmp_path: Path, policy: str, **req: object) -> tuple[str, str]:
    (tmp_path / "m.yaml").write_text(WORKLOADS + "---\n" + policy)
    snap = load_mesh([str(tmp_path / "m.yaml")]).snapshot
    d = Decider(snap)
    req.setdefault("to", "ns/api:80")
    r = resolve(request_from_data(req), snap)
    full = d.decide(r, trace=True)
    fast = d.decide_prepared(d.prepare_request(r))
    assert (fast.verdict, fast.stage, fast.policy, fast.rule) == (
        full.verdict,
        full.stage,
        full.policy,
        full.rule,
    )
    again = Decider(snap).decide(r)
    assert (again.verdict, again.stage, again.policy) == (full.verdict, full.stage, full.policy)
    return full.verdict, full.stage


MTLS = {"from": "ns/client"}
PLAIN = {"from": {"plaintext": True, "ip": "10.0.0.7"}}


def test_xfcc_is_there_for_mtls_callers_only(tmp_path: Path) -> None:
    deny = _policy("no-xfcc", "DENY", "x-forwarded-client-cert", "notValues", ["*"])
    assert _decide(tmp_path, deny, **MTLS) == ("ALLOW", "default")
    assert _decide(tmp_path, deny, **PLAIN) == ("DENY", "DENY")
    # a plaintext caller's own XFCC is removed before the filters
    forged = {**PLAIN, "headers": {"x-forwarded-client-cert": "URI=spiffe://x"}}
    assert _decide(tmp_path, deny, **forged) == ("DENY", "DENY")


def test_xfcc_names_the_caller_and_the_destination(tmp_path: Path) -> None:
    by = _policy(
        "by",
        "ALLOW",
        "x-forwarded-client-cert",
        "values",
        ["By=spiffe://cluster.local/ns/ns/sa/api;Hash=*"],
    )
    uri = _policy(
        "uri",
        "ALLOW",
        "x-forwarded-client-cert",
        "values",
        ["*;URI=spiffe://cluster.local/ns/ns/sa/client"],
    )
    assert _decide(tmp_path, by, **MTLS) == ("ALLOW", "ALLOW")
    assert _decide(tmp_path, uri, **MTLS) == ("ALLOW", "ALLOW")
    assert _decide(tmp_path, uri, **PLAIN) == ("DENY", "ALLOW")


def test_forwarded_proto_and_scheme(tmp_path: Path) -> None:
    https = _policy("https", "ALLOW", "x-forwarded-proto", "values", ["https"])
    assert _decide(tmp_path, https, **MTLS) == ("ALLOW", "ALLOW")
    assert _decide(tmp_path, https, **PLAIN) == ("DENY", "ALLOW")
    # a sidecar keeps the client's value, and :scheme follows it
    sent = {**PLAIN, "headers": {"x-forwarded-proto": "https"}}
    assert _decide(tmp_path, https, **sent) == ("ALLOW", "ALLOW")
    scheme = _policy("scheme", "ALLOW", ":scheme", "values", ["https"])
    assert _decide(tmp_path, scheme, **sent) == ("ALLOW", "ALLOW")
    assert _decide(tmp_path, scheme, **PLAIN) == ("DENY", "ALLOW")


def test_request_id_is_always_there(tmp_path: Path) -> None:
    absent = _policy("no-id", "DENY", "x-request-id", "notValues", ["*"])
    assert _decide(tmp_path, absent, **PLAIN) == ("ALLOW", "default")
    # a client's id whose first 8 hex digits fall in the 1% sample is marked
    marked = _policy("marked", "ALLOW", "x-request-id", "values", ["00000001-e89b-9*"])
    sent = {**PLAIN, "headers": {"x-request-id": "00000001-e89b-42d3-a456-426614174000"}}
    assert _decide(tmp_path, marked, **sent) == ("ALLOW", "ALLOW")


GATEWAY = """\
apiVersion: v1
kind: Pod
metadata:
  name: istio-ingressgateway
  namespace: ns
  labels: {app: api, istio: ingressgateway}
spec:
  serviceAccountName: gw
  containers: [{name: istio-proxy, ports: [{containerPort: 80}]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


def test_a_gateway_replaces_the_clients_values(tmp_path: Path) -> None:
    """A gateway's HCM uses the remote address: the client's x-forwarded-proto
    is replaced and its x-request-id regenerated, unlike on a sidecar."""
    (tmp_path / "m.yaml").write_text(
        GATEWAY
        + "---\n"
        + _policy("https", "ALLOW", "x-forwarded-proto", "values", ["https"])
        + "---\n"
        + _policy("rid", "DENY", "x-request-id", "values", ["abc"])
    )
    snap = load_mesh([str(tmp_path / "m.yaml")]).snapshot
    gw = snap.workload("ns/istio-ingressgateway")
    assert gw.proxy == "gateway"
    d = Decider(snap)
    sent = {
        "from": {"plaintext": True, "ip": "10.0.0.7"},
        "to": "ns/istio-ingressgateway:80",
        "headers": {"x-forwarded-proto": "https"},
    }
    r = resolve(request_from_data(sent), snap)
    assert (d.decide(r).verdict, d.decide(r).stage) == ("DENY", "ALLOW")
    r = resolve(
        request_from_data(
            {**sent, "headers": {"x-request-id": "abc", "x-forwarded-proto": "https"}}
        ),
        snap,
    )
    assert d.decide(r).stage == "ALLOW"  # not denied by the DENY on the client's id

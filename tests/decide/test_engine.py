"""The decision engine across stages: mTLS, normalization, CUSTOM, JWT, AUDIT,
DENY, ALLOW, dry-run, TCP, and failing closed.

Each expectation follows from behaviour pinned elsewhere against Istio's data
or a real Envoy: the filter order (listener_builder.go: CUSTOM, authn, authz;
golden deny-and-allow), TCP broadening (golden tcp/*), JWT outcomes
(tests/envoy_filters/test_jwt_authn.py, real Envoy), path normalization
(tests/envoy_filters/test_hcm.py, real Envoy) and the RBAC engine (tests/envoy_filters/rbac).
"""

from __future__ import annotations

import textwrap

import pytest

from meshauthz.decide.engine import Decider
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.mesh.loading import load_mesh

WORKLOADS = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: ns}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: ns}
spec:
  template:
    metadata: {labels: {app: client}}
    spec: {serviceAccountName: client, containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: ns}
spec:
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 9000}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: ns}
spec:
  selector: {app: api}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: tcp-db, port: 9000, targetPort: 9000}
"""


def policy(name: str, spec: str, annotations: str = "") -> str:
    meta = f"metadata:\n  name: {name}\n  namespace: ns\n" + (
        f"  annotations: {annotations}\n" if annotations else ""
    )
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        + meta
        + "spec:\n"
        + textwrap.indent(textwrap.dedent(spec), "  ")
    )


def decider(tmp_path, *docs: str, **kw) -> tuple[Decider, object]:
    (tmp_path / "m.yaml").write_text("\n---\n".join([WORKLOADS, *docs]))
    snap = load_mesh([str(tmp_path / "m.yaml")]).snapshot
    return Decider(snap, **kw), snap


def decide(d_and_snap, trace: bool = False, **req):
    d, snap = d_and_snap
    req.setdefault("from", "ns/client")
    req.setdefault("to", "ns/api:80")
    return d.decide(resolve(request_from_data(req), snap), trace=trace)


ALLOW_GET_DATA = policy(
    "allow-get",
    """\
    selector: {matchLabels: {app: api}}
    rules:
    - to: [{operation: {methods: [GET], paths: [/data]}}]
    """,
)


def test_allow_and_the_default_deny_of_allow_policies(tmp_path):
    ds = decider(tmp_path, ALLOW_GET_DATA)
    ok = decide(ds, path="/data")
    assert (ok.verdict, ok.status, ok.stage, ok.policy, ok.rule) == (
        "ALLOW",
        200,
        "ALLOW",
        "ns/allow-get",
        0,
    )
    no = decide(ds, path="/other")
    assert (no.verdict, no.status, no.stage, no.policy) == ("DENY", 403, "ALLOW", None)


def test_path_is_normalized_before_matching(tmp_path):
    ds = decider(tmp_path, ALLOW_GET_DATA)
    assert decide(ds, path="/x/../data").verdict == "ALLOW"  # BASE removes dot segments
    assert decide(ds, path="/data?x=1").verdict == "ALLOW"  # paths match without the query
    # an Istio sidecar strips the fragment (istiod's runtime flags)
    assert decide(ds, path="/data#frag").verdict == "ALLOW"
    bad = decide(ds, path="/da ta")
    assert (bad.verdict, bad.status, bad.stage) == ("DENY", 400, "normalization")


def test_tcp_port_drops_http_only_allow_rules_and_resets(tmp_path):
    ds = decider(tmp_path, ALLOW_GET_DATA)
    d = decide(ds, to="ns/api:9000")
    assert (d.verdict, d.status, d.stage) == ("DENY", "connection reset", "ALLOW")
    assert d.body is None


def test_deny_on_tcp_is_broadened(tmp_path):
    deny_get = policy(
        "deny-get",
        """\
        selector: {matchLabels: {app: api}}
        action: DENY
        rules:
        - to: [{operation: {methods: [GET]}}]
        """,
    )
    ds = decider(tmp_path, deny_get)
    assert decide(ds, method="POST").verdict == "ALLOW"
    tcp = decide(
        ds, to="ns/api:9000"
    )  # methods is HTTP-only: the DENY rule matches every connection
    assert (tcp.verdict, tcp.stage, tcp.policy) == ("DENY", "DENY", "ns/deny-get")


def test_strict_mtls_refuses_plaintext_before_policies(tmp_path):
    strict = (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: strict, namespace: ns}\nspec: {mtls: {mode: STRICT}}\n"
    )
    ds = decider(tmp_path, strict)
    d = decide(ds, **{"from": {"plaintext": True}})
    assert (d.verdict, d.status, d.stage) == ("DENY", "connection reset", "mTLS")
    assert decide(ds).verdict == "ALLOW"


def test_principals_see_the_peer_identity(tmp_path):
    only_client = policy(
        "only-client",
        """\
        selector: {matchLabels: {app: api}}
        rules:
        - from: [{source: {principals: [cluster.local/ns/ns/sa/client]}}]
        """,
    )
    ds = decider(tmp_path, only_client)
    assert decide(ds).verdict == "ALLOW"
    assert decide(ds, **{"from": {"plaintext": True}}).verdict == "DENY"
    assert decide(ds, **{"from": {"principal": "cluster.local/ns/ns/sa/other"}}).verdict == "DENY"


def test_remote_ip_blocks_use_the_address_after_xff(tmp_path):
    remote = policy(
        "remote",
        """\
        selector: {matchLabels: {app: api}}
        action: DENY
        rules:
        - from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]
        """,
    )
    ds = decider(tmp_path, remote)
    assert decide(ds, remoteIP="203.0.113.9").verdict == "DENY"
    assert decide(ds, remoteIP="198.51.100.1").verdict == "ALLOW"
    # Without remoteIP the sidecar takes the last X-Forwarded-For entry
    # (use_remote_address false, 0 trusted hops; tests/envoy_filters/test_hcm.py, real Envoy).
    xff = {"x-forwarded-for": "198.51.100.1, 203.0.113.9"}
    assert decide(ds, headers=xff).verdict == "DENY"
    assert decide(ds, headers={"x-forwarded-for": "203.0.113.9, 198.51.100.1"}).verdict == "ALLOW"


def test_a_host_header_is_the_authority(tmp_path):
    hosts = policy(
        "hosts",
        """\
        selector: {matchLabels: {app: api}}
        rules: [{to: [{operation: {hosts: [api.example.com]}}]}]
        """,
    )
    ds = decider(tmp_path, hosts)
    assert decide(ds, headers={"Host": "API.example.com"}).verdict == "ALLOW"  # hosts ignore case
    assert decide(ds, host="api.example.com").verdict == "ALLOW"
    assert decide(ds).verdict == "DENY"  # default host: api.ns.svc.cluster.local


def test_dry_run_is_reported_and_not_enforced(tmp_path):
    dry = policy(
        "dry-deny",
        """\
        selector: {matchLabels: {app: api}}
        action: DENY
        rules:
        - to: [{operation: {paths: [/admin]}}]
        """,
        annotations='{"istio.io/dry-run": "true"}',
    )
    ds = decider(tmp_path, dry)
    d = decide(ds, path="/admin")
    assert d.verdict == "ALLOW"
    (dr,) = d.dry_run
    assert (dr.stage, dr.result, dr.policy, dr.rule) == ("DENY", "denied", "ns/dry-deny", 0)
    assert decide(ds, path="/x").dry_run[0].result == "allowed"


def test_audit_marks_without_deciding(tmp_path):
    audit = policy(
        "audit-all",
        """\
        selector: {matchLabels: {app: api}}
        action: AUDIT
        rules: [{to: [{operation: {paths: ["/audited/*"]}}]}]
        """,
    )
    ds = decider(tmp_path, audit)
    d = decide(ds, path="/audited/x")
    assert (d.verdict, d.audit, d.audit_policy) == ("ALLOW", True, "ns/audit-all")
    assert decide(ds, path="/plain").audit is False


CUSTOM = policy(
    "ext",
    """\
    selector: {matchLabels: {app: api}}
    action: CUSTOM
    provider: {name: my-ext}
    rules: [{to: [{operation: {paths: ["/ext/*"]}}]}]
    """,
)
MESH = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: my-ext
      envoyExtAuthzHttp: {service: ext.ns.svc.cluster.local, port: 8000}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: ns}
spec: {selector: {app: ext}, ports: [{name: http, port: 8000}]}
"""


def test_custom_sends_matching_requests_to_the_provider(tmp_path):
    ds = decider(tmp_path, CUSTOM, MESH)
    d = decide(ds, path="/ext/a")
    assert (d.verdict, d.stage, d.policy, d.rule) == ("DENY", "CUSTOM", "ns/ext", 0)
    assert "my-ext" in d.reason and "--ext-authz allow" in d.reason
    assert decide(ds, path="/other").verdict == "ALLOW"  # not sent to the provider
    ds_allow = decider(tmp_path, CUSTOM, MESH, ext_authz="allow")
    assert decide(ds_allow, path="/ext/a").verdict == "ALLOW"


def test_custom_with_an_unknown_provider_denies_what_it_would_send(tmp_path):
    # golden custom-bad-out: a DENY filter with the CUSTOM policy's own rules
    ds = decider(tmp_path, CUSTOM)  # no mesh config: the provider does not exist
    d = decide(ds, path="/ext/a")
    assert (d.verdict, d.stage, d.policy, d.rule) == ("DENY", "CUSTOM", "ns/ext", 0)
    assert decide(ds, path="/anything").verdict == "ALLOW"


REQUEST_AUTHN = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ns}
spec:
  selector: {matchLabels: {app: api}}
  jwtRules: [{issuer: "https://issuer.example", audiences: [api]}]
"""
REQUIRE_JWT = policy(
    "require-jwt",
    """\
    selector: {matchLabels: {app: api}}
    rules:
    - from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]
      when: [{key: "request.auth.claims[groups]", values: [admins]}]
    """,
)


def test_jwt_rejections_come_before_policies(tmp_path):
    ds = decider(tmp_path, REQUEST_AUTHN, REQUIRE_JWT)
    bad_iss = decide(ds, jwt={"iss": "https://other", "sub": "a", "aud": "api"})
    assert (bad_iss.verdict, bad_iss.status, bad_iss.stage) == ("DENY", 401, "JWT")
    assert bad_iss.body == "Jwt issuer is not configured"
    bad_aud = decide(ds, jwt={"iss": "https://issuer.example", "sub": "a", "aud": "web"})
    assert (bad_aud.status, bad_aud.body) == (403, "Audiences in Jwt are not allowed")


def test_jwt_claims_reach_the_policies(tmp_path):
    ds = decider(tmp_path, REQUEST_AUTHN, REQUIRE_JWT)
    claims = {
        "iss": "https://issuer.example",
        "sub": "alice",
        "aud": ["api"],
        "groups": ["dev", "admins"],
    }
    ok = decide(ds, jwt=claims)
    assert (ok.verdict, ok.policy) == ("ALLOW", "ns/require-jwt")
    missing = decide(ds)  # no token: passes the JWT filter without a request principal
    assert (missing.verdict, missing.status, missing.stage) == ("DENY", 403, "ALLOW")
    not_admin = decide(ds, jwt={**claims, "groups": ["dev"]})
    assert not_admin.verdict == "DENY"


def test_an_internal_error_denies_and_says_so(tmp_path, monkeypatch):
    ds = decider(tmp_path, ALLOW_GET_DATA)
    d, snap = ds
    req = resolve(
        request_from_data({"from": "ns/client", "to": "ns/api:80", "path": "/data"}), snap
    )
    prepared = d.prepare(req.destination, req.port, req.protocol)

    class Boom:  # a compiled filter that fails however it is used
        def evaluate(self, *a, **k):
            raise RuntimeError("boom")

        @property
        def engine(self):
            raise RuntimeError("boom")

        shadow_engine = engine

    monkeypatch.setattr(prepared.rest[0], "compiled", Boom())
    for trace in (False, True):
        out = d.decide(req, trace=trace)
        assert (out.verdict, out.stage, out.status) == ("DENY", "error", 403)
        assert "fail closed" in out.reason and out.error == "RuntimeError: boom"


@pytest.mark.parametrize("to", ["ns/api", "ns/api:80", "api.ns.svc.cluster.local:80"])
def test_destination_forms(tmp_path, to):
    ds = decider(tmp_path, ALLOW_GET_DATA)
    d = (
        decide(ds, to=to, port=8080, path="/data")
        if to == "ns/api"
        else decide(ds, to=to, path="/data")
    )
    assert d.verdict == "ALLOW" and d.request["port"] == 8080


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("GET", 200),
        ("PURGE", 200),
        ("MKCALENDAR", 200),
        ("method-prefix-x", 400),  # found by tests/envoy: Envoy 1.40's HTTP/1 codec refuses it
        ("get", 400),
        ("M-SEARCH", 400),
        ("CONNECT", 400),
        ("QUERY", 400),  # without a Content-Type
    ],
)
def test_http1_codec_refuses_unknown_methods_before_any_filter(tmp_path, method, status):
    ds = decider(tmp_path)
    d = decide(ds, method=method)
    assert (d.status, d.stage if status == 400 else "ok") == (
        status,
        "normalization" if status == 400 else "ok",
    )


def test_head_denial_has_no_body(tmp_path):
    # found by tests/envoy (examples corpus): Envoy answers HEAD with headers only
    ds = decider(tmp_path, ALLOW_GET_DATA)
    d = decide(ds, method="HEAD", path="/data")
    assert (d.status, d.body) == (403, None)
    assert decide(ds, method="GET", path="/other").body == "RBAC: access denied"


def test_decide_many_decides_identical_requests_once():
    """check --request: identical requests share one decision, equal to each alone."""
    from meshauthz.decide.engine import Decider
    from meshauthz.decide.request import resolve
    from meshauthz.decide.request_spec import request_from_data
    from meshauthz.mesh.loading import load_mesh
    from tests.conftest import REPO

    snapshot = load_mesh([str(REPO / "examples" / "seed")]).snapshot
    specs = [
        {"from": "default/frontend", "to": "default/backend", "path": p}
        for p in ("/api/v1/data", "/admin", "/api/v1/data")
    ]
    requests = [resolve(request_from_data(s), snapshot) for s in specs]
    decider = Decider(snapshot)
    calls = []
    decided = decider.decide_many(requests, progress=lambda n: calls.append)
    assert decided[0] is decided[2]
    assert [d.verdict for d in decided] == [decider.decide(r).verdict for r in requests]
    assert not any(d.internal_error for d in decided)


def test_deciders_of_one_snapshot_share_the_chains_built(tmp_path):
    """A chain depends on the snapshot alone: check's Decider and the analysis'
    witnesses build each destination once; the ext_authz assumption still
    applies per Decider (it is applied when a request is bound)."""
    deny, snap = decider(tmp_path, CUSTOM, MESH)
    allow = Decider(snap, ext_authz="allow")
    data = {"from": "ns/client", "to": "ns/api:80", "path": "/ext/a"}
    req = resolve(request_from_data(data), snap)
    p = deny.prepare(req.destination, req.port, req.protocol)
    assert allow.prepare(req.destination, req.port, req.protocol) is p
    assert Decider(snap).prepare(req.destination, req.port, req.protocol) is p
    assert (deny.decide(req).verdict, allow.decide(req).verdict) == ("DENY", "ALLOW")
    assert deny.decide(req).verdict == "DENY"  # after the other, as before it


def test_deciding_makes_no_cyclic_garbage(tmp_path):
    """decide_many pauses the cyclic collector (each decision lives on, and a
    collection would walk them all again): that is safe only because deciding,
    traced or not, ambient or not, leaves nothing only the collector can free."""
    import gc

    from tests.conftest import REPO

    examples = REPO / "examples"
    meshes = [
        (load_mesh([str(examples / name)]).snapshot, flows)
        for name, flows in (
            ("seed", [("default/frontend", "default/backend"), ("x", "default/frontend")]),
            ("seed-ambient-waypoint", [("default/frontend", "default/backend")]),
        )
    ]
    _, snap = decider(tmp_path, CUSTOM, MESH)
    meshes.append((snap, [("ns/client", "ns/api:80")]))
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for snapshot, flows in meshes:
            requests = [
                resolve(
                    request_from_data(
                        {"from": src if "/" in src else {"plaintext": True}, "to": dst}
                        | {"path": path, "method": method}
                    ),
                    snapshot,
                )
                for src, dst in flows
                for path in ("/api/v1/data", "/ext/a", "/admin/../x", "/%2e%2e/y")
                for method in ("GET", "POST")
            ]
            for kw in ({}, {"trace": True}, {"explain": True, "trace": True}):
                decided = Decider(snapshot).decide_many(requests, **kw)
                assert not any(d.internal_error for d in decided)
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()

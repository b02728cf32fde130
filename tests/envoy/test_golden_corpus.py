"""Corpus 1: every golden output of istiod's builder tests, run in a real Envoy.

Each case of ``tests/translate/test_golden.py`` (istio's builder_test.go) is built
by meshauthz with the test's settings and must equal the golden files (that is
checked here again); the golden files themselves, as they are, are loaded into
one Envoy, one listener per case. Every request below is sent to every case
and Envoy's answer is compared with meshauthz's. The requests are written to
hit and to miss each clause of the inputs: principals, service accounts,
trust domains and their aliases, namespaces, request principals, audiences,
presenters, claims (nested too), methods, hosts, paths (exact, prefix,
suffix, templates), ports, headers, source/remote/destination IPs, SNI and
experimental metadata keys, from mTLS and plaintext callers.

A source IP in ``ipBlocks`` outside 127.0.0.0/8 cannot be hit on loopback
(Envoy's ``direct_remote_ip`` is the physical peer even behind a PROXY
line); those clauses are only missed. Remote IPs come from X-Forwarded-For
and destination addresses from the PROXY line, so every value is hit.

CUSTOM cases: the ext_authz filters point at a cluster where nothing listens;
their ``failureModeAllow: true`` lets a request through when it is sent, so
the marking RBAC filter (which requests would be sent) is compared through its
metadata, and meshauthz is asked with ``ext_authz="allow"``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from meshauthz.decide.engine import Decider, Prepared
from meshauthz.mesh.loading import load_mesh
from meshauthz.translate import BuildOptions, Chain, build
from tests.envoy_process import refusing_port
from tests.translate.test_golden import HTTP_CASES, TCP_CASES, TESTDATA, _applies

from .harness import Probe, Site, running
from .judge import compare, decide, expected, prepared_from_build, request_for

EXT_AUTHZ_CLUSTER = "outbound|9000||my-custom-ext-authz.foo.svc.cluster.local"

WORKLOAD = """
apiVersion: v1
kind: Pod
metadata: {name: httpbin, namespace: foo, labels: {app: httpbin, version: v1}}
spec:
  serviceAccountName: httpbin
  containers: [{name: c, image: x, ports: [{containerPort: 80}]}]
"""

JWT = "envoy.filters.http.jwt_authn"


def jwt(iss: str = "iss", sub: str = "sub", **claims: Any) -> dict[str, Any]:
    return {JWT: {"payload": {"iss": iss, "sub": sub, **claims}}}


def P(**kw: Any) -> dict[str, Any]:
    return kw


S = "cluster.local/ns/foo/sa/sleep"
# The requests: each is a set of overrides of a plain GET / from S.
REQUESTS: list[dict[str, Any]] = [
    P(),
    P(principal=None),
    P(principal=None, path="/exact"),
    # principals, service accounts, namespaces, trust domains
    P(principal="principal"),
    P(principal="principal-prefix-x"),
    P(principal="x-suffix-principal"),
    P(principal="not-principal"),
    P(principal="deny"),
    P(principal="allow"),
    P(principal="allow", path="/allow"),
    P(principal="id-1"),
    P(principal="cluster.local/ns/my-ns/sa/my-sa"),
    P(principal="td/ns/my-ns/team/sa/my-sa/x"),
    P(principal="cluster.local/ns/my-ns/sa/my-sa-not"),
    P(principal="cluster.local/ns/foo/sa/sa-only"),
    P(principal="cluster.local/ns/foo/sa/sa-not-only"),
    P(principal="cluster.local/ns/rule[0]/sa/from[0]-principal[0]"),
    P(principal="td1/ns/rule[0]/sa/from[0]-principal[0]"),
    P(principal="some-td/ns/rule[0]/sa/from[0]-principal[0]"),
    P(principal="other/ns/rule[0]/sa/from[0]-principal[0]"),
    P(principal="td1/ns/rule[0]-from[1]-ns[0]/sa/x", method="rule[0]-to[0]-method[0]"),
    P(
        principal="cluster.local/ns/rule[0]/sa/from[1]-principal[1]",
        method="rule[0]-to[0]-method[0]",
    ),
    P(principal="td1/ns/rule[0]/sa/from[1]-principal[0]", method="rule[0]-to[0]-method[0]"),
    P(principal="some-td/ns/rule[0]/sa/from[1]-principal[0]"),
    P(
        principal="cluster.local/ns/rule[1]/sa/from[0]-principal[0]",
        method="rule[1]-to[0]-method[0]",
    ),
    P(principal="td1/ns/rule[1]/sa/from[0]-principal[0]", method="rule[1]-to[0]-method[0]"),
    P(principal="foobar/ns/foo/sa/rule[0]-from[1]-principal[1]"),
    P(principal="xbar/ns/foo/sa/rule[0]-from[1]-principal[1]"),
    P(principal="td1/ns/foo/sa/rule[0]-from[1]-principal[0]"),
    P(principal="new-td/ns/foo/sa/all-td"),
    P(principal="old-td/ns/istio-system/sa/x"),
    P(principal="some-trustdomain/ns/istio-system/sa/prefix-td"),
    P(principal="new-td/ns/istio-system/sa/prefix-td"),
    P(principal="another.local/ns/x/sa/y"),
    P(principal="bad-td/ns/x/sa/y"),
    P(principal="untrusted/ns/x/sa/y"),
    P(principal="principals1"),
    P(principal="rule[0]-from[0]-principal[1]"),
    P(principal="x/ns/namespaces2/sa/y"),
    P(principal="x/ns/ns/sa/y"),
    P(principal="x/ns/ns-prefix-a/sa/y"),
    P(principal="x/ns/a-ns-suffix/sa/y"),
    P(principal="x/ns/not-ns/sa/y"),
    # methods, hosts, paths, ports
    P(method="POST"),
    P(method="GET", path="/v2"),
    P(method="method-prefix-x"),
    P(method="x-suffix-method"),
    P(method="not-method"),
    P(host="google.com"),
    P(host="HTTPBIN.org"),
    P(host="exact.com"),
    P(host="a.suffix.com"),
    P(host="prefix.x"),
    P(host="not-exact.com"),
    P(host="Example.COM:8080"),
    P(host="rule[0]-to[0]-host[1]"),
    P(path="/exact"),
    P(path="/exact?q=1"),
    P(path="/exact/"),
    P(path="/prefix/a"),
    P(path="/prefix"),
    P(path="/a/suffix"),
    P(path="/not-exact"),
    P(path="/not-prefix/x"),
    P(path="/path/template/x"),
    P(path="/path/template/x/y"),
    P(path="/a/b/path/template"),
    P(path="/a/not-path/template"),
    P(path="/v1"),
    P(path="/httpbin1"),
    P(path="/httpbin2"),
    P(path="/httpbin1", principal=None),
    P(path="/allow"),
    P(path="/deny"),
    P(path="/another"),
    P(path="/x/../allow"),
    P(path="/%2e%2e/deny"),
    P(path="rule[0]-to[0]-path[1]".join(["/", ""])),
    P(dest_port=90),
    P(dest_port=91),
    P(dest_port=8000),
    P(dest_port=9000),
    P(dest_port=9001),
    P(dest_port=9011),
    P(dest_port=9101),
    # headers
    P(headers=[("X-header", "header")]),
    P(headers=[("X-header", "header-prefix-1")]),
    P(headers=[("x-header", "a-suffix-header")]),
    P(headers=[("X-header", "not-header")]),
    P(headers=[("X-abc", "abc1")]),
    P(headers=[("X-abc", "abc3")]),
    P(headers=[("X-abc", "abc3"), ("X-abc", "abc2")]),
    P(headers=[("X-abc", "abc1,abc2")]),
    # remote and destination addresses
    P(headers=[("X-Forwarded-For", "10.10.10.10")]),
    P(headers=[("X-Forwarded-For", "1.2.3.4")]),
    P(headers=[("X-Forwarded-For", "5.6.7.8, 127.0.0.1")]),
    P(headers=[("X-Forwarded-For", "9.0.0.1")]),
    P(headers=[("X-Forwarded-For", "172.17.8.9")]),
    P(headers=[("X-Forwarded-For", "192.168.4.4")]),
    P(headers=[("X-Forwarded-For", "10.80.70.1")]),
    P(dest_ip="10.10.10.10"),
    P(dest_ip="192.168.10.20"),
    P(dest_ip="90.10.10.10"),
    P(source_ip="127.0.0.2"),
    P(source_ip="127.1.2.3"),
    # SNI
    P(sni="exact.com"),
    P(sni="a.suffix.com"),
    P(sni="prefix.b"),
    P(sni="not-exact.com"),
    # request authentication (jwt_authn's payload) and other metadata
    P(metadata=jwt()),
    P(metadata=jwt("requestPrincipals", "")),
    P(metadata=jwt("requestPrincipals-prefix-a", "b")),
    P(metadata=jwt("a", "b-suffix-requestPrincipals")),
    P(metadata=jwt("id-1", "")),
    P(metadata=jwt("requestPrincipals1", "")),
    P(metadata=jwt("rule[0]-from[0]-requestPrincipal[1]", "")),
    P(metadata=jwt("https://example.com", "x")),
    P(metadata=jwt(aud="audiences")),
    P(metadata=jwt(aud=["x", "audiences-prefix-1"])),
    P(metadata=jwt(aud=["not-audiences"])),
    P(metadata=jwt(azp="presenter")),
    P(metadata=jwt(azp="x-suffix-presenter")),
    P(metadata=jwt("iss-prefix-1")),
    P(metadata=jwt("not-iss")),
    P(metadata=jwt(nested1={"nested2": "nested"})),
    P(metadata=jwt(nested1={"nested2": ["a", "nested-prefix-b"]})),
    P(metadata=jwt(nested1={"nested2": "not-nested"})),
    P(metadata={"envoy.filters.a.b": {"c": "exact"}}),
    P(metadata={"envoy.filters.a.b": {"c": "prefix-1"}}),
    P(metadata={"envoy.filters.a.b": {"c": "not-exact"}}),
    P(metadata={"envoy.filters.a.b": {"c": 1}}),
    # a request that meets every clause of a "full rule" it can on loopback
    P(
        principal="td/ns/ns/sa/principal",
        method="method",
        host="exact.com",
        path="/exact",
        dest_port=91,
        dest_ip="192.168.10.1",
        sni="exact.com",
        headers=[("X-header", "header"), ("X-Forwarded-For", "10.10.10.10")],
        metadata={
            **jwt(
                "requestPrincipals",
                "",
                aud="audiences",
                azp="presenter",
                nested1={"nested2": "nested"},
            ),
            "envoy.filters.a.b": {"c": "exact"},
        },
    ),
]


def _cases() -> list[tuple[str, Chain, Any]]:
    out = []
    for chain, cases in ((Chain.HTTP, HTTP_CASES), (Chain.TCP, TCP_CASES)):
        for c in cases:
            out.append((f"{chain.value}-{c.id}", chain, c.values))
    return out


def _snapshot_base(tmp: Path) -> tuple[Decider, Any]:
    f = tmp / "httpbin.yaml"
    f.write_text(WORKLOAD)
    snap = load_mesh([str(f)]).snapshot
    decider = Decider(snap)
    return decider, snap.workload("foo/httpbin")


def test_golden_outputs_in_real_envoy(test_ca: Any, tmp_path: Path) -> None:
    decider, workload = _snapshot_base(tmp_path)
    sites: list[Site] = []
    meta: dict[str, tuple[Chain, Any, bool]] = {}
    for name, chain, (input_, want, trust_domains, provider) in _cases():
        base = TESTDATA / ("tcp" if chain is Chain.TCP else "http")
        loaded = load_mesh([str(base / input_)])
        policies = [p for p in loaded.manifests.authorization_policies if _applies(p)]
        policies = [p for p in policies if (p.spec.action == "CUSTOM") == (provider is not None)]
        options = BuildOptions(
            trust_domains=trust_domains,
            extension_providers=(provider,) if provider else (),
            known_services={("foo", "my-custom-ext-authz.foo.svc.cluster.local")},
        )
        result = build(policies, chain, options)
        golden = [yaml.safe_load((base / w).read_text()) for w in want]
        assert result.to_dicts() == golden, name
        custom = sum(1 for f in result.filters if f.stage == "CUSTOM")
        sites.append(
            Site(name, "tcp" if chain is Chain.TCP else "http", golden, metadata_at=custom)
        )
        meta[name] = (chain, result, provider is not None)

    cases: list[tuple[str, Probe, Prepared, bool]] = []
    prepared: dict[tuple[str, str, int], Prepared] = {}
    for site in sites:
        chain, result, has_custom = meta[site.name]
        protocol = "tcp" if chain is Chain.TCP else "http"
        base_prep = decider.prepare(workload, 80, protocol)
        for req in REQUESTS:
            kw = {"principal": S, "dest_ip": "10.244.0.9", "dest_port": 80, **req}
            if protocol == "tcp" and any(
                k in kw for k in ("method", "path", "host", "headers", "metadata")
            ):
                continue  # TCP sees none of these: one plain connection is enough
            if kw["principal"] is None:
                kw.pop("sni", None)
            probe = Probe(site.name, **kw)
            key = (site.name, probe.dest_ip, probe.dest_port)
            if key not in prepared:
                prepared[key] = prepared_from_build(
                    base_prep, result, address=probe.dest_ip, port=probe.dest_port
                )
            cases.append((site.name, probe, prepared[key], has_custom))

    from .harness import _cluster

    t0 = time.monotonic()
    # nothing listens there: ext_authz calls fail (fail open)
    with refusing_port() as unreachable:
        cluster = _cluster(EXT_AUTHZ_CLUSTER, unreachable)
        cluster2 = _cluster(EXT_AUTHZ_CLUSTER.replace("9000", "9001"), unreachable)
        with running(sites, test_ca, extra_clusters=[cluster, cluster2]) as envoy:
            observed = envoy.run([c[1] for c in cases])
    failures = []
    for (name, probe, prep, has_custom), got in zip(cases, observed, strict=True):
        req = request_for(probe, prep.workload, prep.protocol)
        decision, md = decide(prep, req, probe.metadata, "allow" if has_custom else "deny")
        want = expected(decision, md, prep.protocol == "http")
        diffs = compare(got, want, decision)
        if diffs:
            failures.append(f"{name} {probe}: " + "; ".join(diffs))
    elapsed = time.monotonic() - t0
    print(
        f"golden corpus: {len(cases)} cases over {len(sites)} golden configurations, {elapsed:.1f}s"
    )
    assert not failures, f"{len(failures)} of {len(cases)} disagree:\n" + "\n".join(failures[:40])
    assert len(cases) > 1000

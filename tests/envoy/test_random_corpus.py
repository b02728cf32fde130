"""Corpus 3: random policy sets and requests (hypothesis), meshauthz vs a real Envoy.

Each hypothesis example draws a few policy sets (every Source/Operation field
and its notX twin, ALLOW/DENY/AUDIT, dry-run, ``when`` keys, values with
prefix/suffix/presence wildcards, trust-domain aliases, a path normalization
mode) and, for each, HTTP requests and TCP connections that stress the edges:
repeated headers of one name, X-Forwarded-For chains, paths that
normalization changes (``//``, ``/./``, ``/../``, ``%2F``, ``%2E``, queries),
hosts with ports and mixed case, JWT claims of every shape (strings, lists,
nested maps, space-separated scopes as jwt_authn splits them), plaintext
callers, SNI and destination ports. One Envoy per example runs every set as
an HTTP and a TCP listener; every case is compared.

Header names: besides ``x-user`` and ``x-forwarded-for``, policies name the
headers Envoy's connection manager adds or rewrites before the filters
(``x-request-id``, ``x-forwarded-proto``, ``x-forwarded-client-cert``,
``:scheme``, and ``x-envoy-internal``, which it drops), and requests sometimes
send their own values for them (a forged XFCC, an ``x-forwarded-proto``, ids
the trace rule rewrites or keeps, ``x-client-trace-id``).

Normal mode: at least 2,000 cases. ``MESHAUTHZ_LONG=1``: 100,000 cases
(``MESHAUTHZ_LONG_CASES`` to change), with the count and time printed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from meshauthz.decide.engine import Decider
from meshauthz.envoy.jwt_authn import normalize_payload
from meshauthz.mesh.loading import load_mesh
from meshauthz.resources.loader import load
from meshauthz.translate import BuildOptions, Chain, build
from meshauthz.translate.requestauthn import DEFAULT_SPACE_DELIMITED_CLAIMS

from .conftest import LONG_CASES, long_mode
from .harness import SERVER_URI, Probe, Site, running
from .judge import compare, decide, expected, prepared_from_build, request_for

JWT = "envoy.filters.http.jwt_authn"
SETS_PER_EXAMPLE = 3
HTTP_PER_SET = 40
TCP_PER_SET = 10
PER_EXAMPLE = SETS_PER_EXAMPLE * (HTTP_PER_SET + TCP_PER_SET)
NORMAL_CASES = 2_100

WORKLOAD = """
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: ns1, labels: {app: api}}
spec:
  serviceAccountName: api
  containers: [{name: c, image: x, ports: [{containerPort: 80}]}]
"""

TDS = ["cluster.local", "td1", "other.td"]
NSS = ["ns1", "ns2", "prod-a"]
SAS = ["a", "b", "api"]
PRINCIPALS = [f"{t}/ns/{n}/sa/{s}" for t in TDS for n in NSS for s in SAS]
SOURCE_IPS = ["127.0.0.1", "127.0.0.2", "127.1.0.7"]
DEST_IPS = ["10.244.0.9", "10.244.1.2"]
PORTS = [80, 8080, 9000]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
PATHS = [
    "/",
    "/api",
    "/api/v1",
    "/api/v1/",
    "/api//v1",
    "//api/v1",
    "/api/./v1",
    "/x/../api/v1",
    "/api/v1/../admin",
    "/api%2Fv1",
    "/api%2fv1/x",
    "/%2E%2E/api",
    "/api/%2e/v1",
    "/api/v1?x=1",
    "/api/v1?x=/../admin",
    "/API/V1",
    "/public/a.txt",
    "/a/b/public",
    "/admin",
    "/admin/users",
    "/api\\v1",
    "/%41pi/v1",
]
HOSTS = [
    "api.ns1.svc.cluster.local",
    "API.ns1.svc.cluster.local",
    "api.ns1.svc.cluster.local:80",
    "api.example.com",
    "Api.Example.COM:8080",
    "other",
    "10.244.0.9:80",
]
USERS = ["alice", "bob", "admin-1", "Alice", "x-bob", "", "alice,bob"]
XFFS = [
    ["10.0.0.1"],
    ["10.0.0.1, 127.0.0.2"],
    ["192.168.1.5,10.0.0.1"],
    ["garbage"],
    ["10.0.0.1", "192.168.1.5"],
    [" 172.16.0.4 "],
]
ISSUERS = ["https://issuer.example", "https://other.example", "iss1"]
SUBS = ["alice", "bob", "svc-1"]
SNIS = ["api.ns1.svc.cluster.local", "outbound_.80_._.api.ns1.svc.cluster.local", "x.example.com"]
# Request ids a client may send: the first two are rewritten by the trace rule
# (first 8 hex digits modulo 10000 below 100: sampled at 1%), the others kept.
REQUEST_IDS = [
    "00000001-e89b-42d3-a456-426614174000",
    "00000000-e89b-c2d3-a456-426614174000",
    "00000500-e89b-42d3-a456-426614174000",
    "00000000-e89b-a2d3-a456-426614174000",
    "abc",
]
FORGED_XFCC = "By=spiffe://evil;URI=spiffe://cluster.local/ns/ns1/sa/a"

# --- policy values -------------------------------------------------------------------


def _wild(pool: list[str]) -> st.SearchStrategy[str]:
    """A value of ``pool`` as written in a policy: exact, prefix*, *suffix or *."""

    def shape(v: str, how: int, cut: int) -> str:
        if how == 0 or len(v) < 2:
            return v
        k = max(1, min(len(v) - 1, cut))
        if how == 1:
            return v[:k] + "*"
        if how == 2:
            return "*" + v[k:]
        return "*"

    return st.builds(
        shape, st.sampled_from(pool), st.sampled_from([0, 0, 1, 2, 3]), st.integers(1, 12)
    )


def _vals(s: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(s, min_size=1, max_size=3, unique=True)


PRINCIPAL_V = _wild(PRINCIPALS)
NS_V = _wild(NSS)
REQ_PRINCIPAL_V = _wild([f"{i}/{s}" for i in ISSUERS for s in SUBS])
IP_V = st.sampled_from(
    ["127.0.0.1", "127.0.0.0/24", "127.1.0.0/16", "10.0.0.1", "10.0.0.0/8", "192.168.1.0/24"]
)
METHOD_V = st.sampled_from(METHODS)
HOST_V = _wild(["api.ns1.svc.cluster.local", "api.example.com", "other"])
PORT_V = st.sampled_from([str(p) for p in PORTS])
PATH_V = st.sampled_from(
    ["/api/v1", "/api/*", "*/v1", "/admin*", "*", "/public/*", "*/public", "/api/{*}", "/{**}/v1"]
)
SOURCE_FIELDS = {
    "principals": PRINCIPAL_V,
    "notPrincipals": PRINCIPAL_V,
    "namespaces": NS_V,
    "notNamespaces": NS_V,
    "requestPrincipals": REQ_PRINCIPAL_V,
    "notRequestPrincipals": REQ_PRINCIPAL_V,
    "ipBlocks": IP_V,
    "notIpBlocks": IP_V,
    "remoteIpBlocks": IP_V,
    "notRemoteIpBlocks": IP_V,
}
OP_FIELDS = {
    "methods": METHOD_V,
    "notMethods": METHOD_V,
    "hosts": HOST_V,
    "notHosts": HOST_V,
    "ports": PORT_V,
    "notPorts": PORT_V,
    "paths": PATH_V,
    "notPaths": PATH_V,
}
WHEN_KEYS = {
    "request.headers[x-user]": _wild(USERS[:5]),
    "source.ip": IP_V,
    "remote.ip": IP_V,
    "source.namespace": NS_V,
    "source.principal": PRINCIPAL_V,
    "request.auth.principal": REQ_PRINCIPAL_V,
    "request.auth.audiences": _wild(["web", "api", "mobile"]),
    "request.auth.presenter": _wild(["client-1", "client-2"]),
    "request.auth.claims[iss]": _wild(ISSUERS),
    "request.auth.claims[groups]": _wild(["dev", "ops", "admin"]),
    "request.auth.claims[scope]": _wild(["read", "write", "read write"]),
    "request.auth.claims[org][team]": _wild(["red", "blue"]),
    "destination.port": PORT_V,
    "destination.ip": st.sampled_from(["10.244.0.9", "10.244.0.0/16", "10.244.1.2"]),
    "connection.sni": _wild(SNIS),
    "request.headers[x-forwarded-proto]": _wild(["https", "http", "garbage"]),
    "request.headers[:scheme]": st.sampled_from(["https", "http"]),
    "request.headers[x-forwarded-client-cert]": st.sampled_from(
        [
            "*",
            f"By={SERVER_URI};Hash=*",
            "By=spiffe://evil*",
            *(f"*;URI=spiffe://{p}" for p in PRINCIPALS[:6]),
        ]
    ),
    "request.headers[x-request-id]": st.sampled_from(
        ["*", "00000001-e89b-9*", "00000001-e89b-4*", "00000000-e89b-b*", "*-426614174000", "abc"]
    ),
    "request.headers[x-envoy-internal]": st.sampled_from(["*", "true"]),
}


@st.composite
def fields(draw: Any, table: dict[str, st.SearchStrategy[str]]) -> dict[str, list[str]]:
    names = draw(st.lists(st.sampled_from(sorted(table)), min_size=1, max_size=3, unique=True))
    return {n: draw(_vals(table[n])) for n in names}


# Keys on the headers Envoy's connection manager adds, rewrites or drops.
ADDED_HEADER_KEYS = sorted(
    k for k in WHEN_KEYS if k.startswith("request.headers[") and k != "request.headers[x-user]"
)


@st.composite
def condition(draw: Any, key: str) -> dict[str, Any]:
    c: dict[str, Any] = {"key": key}
    kind = draw(st.sampled_from(["values", "notValues", "both"]))
    if kind in ("values", "both"):
        c["values"] = draw(_vals(WHEN_KEYS[key]))
    if kind in ("notValues", "both"):
        c["notValues"] = draw(_vals(WHEN_KEYS[key]))
    return c


@st.composite
def conditions(draw: Any) -> list[dict[str, Any]]:
    keys = draw(st.lists(st.sampled_from(sorted(WHEN_KEYS)), max_size=2, unique=True))
    return [draw(condition(k)) for k in keys]


@st.composite
def rules(draw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {}
    if draw(st.booleans()):
        r["from"] = [{"source": draw(fields(SOURCE_FIELDS))}]
    if draw(st.booleans()):
        r["to"] = [{"operation": draw(fields(OP_FIELDS))}]
    if draw(st.booleans()):
        r["when"] = draw(conditions())
    if draw(st.integers(0, 2)) == 0:  # one rule in three also names an Envoy-added header
        key = draw(st.sampled_from(ADDED_HEADER_KEYS))
        others = [c for c in r.get("when", []) if c["key"] != key]
        r["when"] = [*others, draw(condition(key))]
    return r


@st.composite
def policy_sets(draw: Any, n: int) -> dict[str, Any]:
    policies = []
    for i in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["ALLOW", "ALLOW", "DENY", "AUDIT"]))
        meta: dict[str, Any] = {"name": f"p{n}-{i}", "namespace": "ns1"}
        if draw(st.integers(0, 3)) == 0:
            meta["annotations"] = {"istio.io/dry-run": "true"}
        spec: dict[str, Any] = {"action": action}
        count = draw(st.sampled_from([0, 1, 1, 2]))
        if count or action != "ALLOW" or draw(st.booleans()):
            spec["rules"] = [draw(rules()) for _ in range(count)] or [{}]
        policies.append(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": meta,
                "spec": spec,
            }
        )
    return {
        "policies": policies,
        "trust_domains": draw(st.sampled_from([("cluster.local",), ("cluster.local", "td1")])),
        "normalization": draw(
            st.sampled_from(["BASE", "NONE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"])
        ),
    }


@st.composite
def claims(draw: Any) -> dict[str, Any] | None:
    if draw(st.integers(0, 2)) == 0:
        return None
    c: dict[str, Any] = {"iss": draw(st.sampled_from(ISSUERS)), "sub": draw(st.sampled_from(SUBS))}
    if draw(st.booleans()):
        aud = ["web", "api", "mobile"]
        c["aud"] = draw(
            st.one_of(st.sampled_from(aud), st.lists(st.sampled_from(aud), min_size=1, max_size=2))
        )
    if draw(st.booleans()):
        c["azp"] = draw(st.sampled_from(["client-1", "client-2"]))
    if draw(st.booleans()):
        g = ["dev", "ops", "admin"]
        c["groups"] = draw(
            st.one_of(st.sampled_from(g), st.lists(st.sampled_from(g), min_size=1, max_size=3))
        )
    if draw(st.booleans()):
        c["scope"] = draw(st.sampled_from(["read", "read write", "write  admin", "openid"]))
    if draw(st.booleans()):
        c["org"] = {"team": draw(st.sampled_from(["red", "blue", ["red", "blue"]]))}
    if draw(st.booleans()):
        c["n"] = draw(st.sampled_from([1, 2.5, True]))
    return c


@st.composite
def http_probe(draw: Any) -> dict[str, Any]:
    principal = draw(st.one_of(st.none(), st.sampled_from(PRINCIPALS)))
    headers: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 2))):
        headers.append(("x-user", draw(st.sampled_from(USERS))))
    if draw(st.booleans()):
        headers += [("x-forwarded-for", v) for v in draw(st.sampled_from(XFFS))]
    # the client's own values for headers the connection manager rewrites
    for name, values in (
        ("x-forwarded-proto", ["https", "http", "HTTPS", "garbage"]),
        ("x-forwarded-client-cert", [FORGED_XFCC, "By=x"]),
        ("x-request-id", REQUEST_IDS),
        ("x-client-trace-id", ["t"]),
        ("x-envoy-internal", ["true"]),
    ):
        if draw(st.integers(0, 4)) == 0:
            headers.append((name, draw(st.sampled_from(values))))
    c = draw(claims())
    return {
        "principal": principal,
        "source_ip": draw(st.sampled_from(SOURCE_IPS)),
        "dest_ip": draw(st.sampled_from(DEST_IPS)),
        "dest_port": draw(st.sampled_from(PORTS)),
        "sni": draw(st.sampled_from(SNIS)) if principal and draw(st.booleans()) else None,
        "method": draw(st.sampled_from(METHODS)),
        "path": draw(st.sampled_from(PATHS)),
        "host": draw(st.sampled_from(HOSTS)),
        "headers": headers,
        "metadata": (
            {JWT: {"payload": normalize_payload(c, DEFAULT_SPACE_DELIMITED_CLAIMS)}} if c else None
        ),
    }


@st.composite
def tcp_probe(draw: Any) -> dict[str, Any]:
    principal = draw(st.one_of(st.none(), st.sampled_from(PRINCIPALS)))
    return {
        "principal": principal,
        "source_ip": draw(st.sampled_from(SOURCE_IPS)),
        "dest_ip": draw(st.sampled_from(DEST_IPS)),
        "dest_port": draw(st.sampled_from(PORTS)),
        "sni": draw(st.sampled_from(SNIS)) if principal and draw(st.booleans()) else None,
    }


TOTAL = {"cases": 0, "seconds": 0.0, "examples": 0}


def _target() -> int:
    if long_mode():
        return int(os.environ.get("MESHAUTHZ_LONG_CASES", LONG_CASES))
    return NORMAL_CASES


def _decider(tmp: Path) -> Any:
    f = tmp / "api.yaml"
    if not f.exists():
        f.write_text(WORKLOAD)
    snap = load_mesh([str(f)]).snapshot
    return Decider(snap), snap.workload("ns1/api")


@settings(
    max_examples=-(-_target() // PER_EXAMPLE),
    deadline=None,
    derandomize=not long_mode(),
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_random_policies_in_real_envoy(data: Any, test_ca: Any, tmp_path_factory: Any) -> None:
    t0 = time.monotonic()
    tmp = tmp_path_factory.mktemp("random")
    decider, workload = _decider(tmp)
    sites: list[Site] = []
    cases: list[tuple[Probe, Any]] = []
    for n in range(SETS_PER_EXAMPLE):
        ps = data.draw(policy_sets(n), label=f"set {n}")
        f = tmp / f"set{n}.yaml"
        f.write_text(yaml.safe_dump_all(ps["policies"]))
        # Read without Istio's validation on purpose: the generator also draws
        # policies the webhook would reject (e.g. dry-run on AUDIT), and the
        # filters built from them must still be judged as Envoy judges them.
        loaded = load([str(f)])
        assert not loaded.errors, loaded.errors
        policies = loaded.manifests.authorization_policies
        options = BuildOptions(trust_domains=ps["trust_domains"])
        for chain, protocol, count, strat in (
            (Chain.HTTP, "http", HTTP_PER_SET, http_probe()),
            (Chain.TCP, "tcp", TCP_PER_SET, tcp_probe()),
        ):
            result = build(policies, chain, options)
            base = decider.prepare(workload, 80, protocol)
            name = f"set{n}-{protocol}"
            sites.append(
                Site(
                    name,
                    protocol,
                    result.to_dicts(),
                    metadata_at=sum(1 for b in result.filters if b.stage == "CUSTOM"),
                    normalization=ps["normalization"],
                )
            )
            prepared: dict[tuple[str, int], Any] = {}
            for _ in range(count):
                kw = data.draw(strat)
                probe = Probe(name, **kw)
                key = (probe.dest_ip, probe.dest_port)
                if key not in prepared:
                    prepared[key] = prepared_from_build(
                        base,
                        result,
                        address=probe.dest_ip,
                        port=probe.dest_port,
                        normalization=ps["normalization"],
                    )
                cases.append((probe, prepared[key]))
    with running(sites, test_ca) as envoy:
        observed = envoy.run([p for p, _ in cases])
    failures = []
    for (probe, prep), got in zip(cases, observed, strict=True):
        req = request_for(probe, prep.workload, prep.protocol)
        decision, md = decide(prep, req, probe.metadata)
        diffs = compare(got, expected(decision, md, prep.protocol == "http"), decision)
        if diffs:
            failures.append(f"{probe}: " + "; ".join(diffs))
    TOTAL["cases"] += len(cases)
    TOTAL["examples"] += 1
    TOTAL["seconds"] += time.monotonic() - t0
    if failures:
        sets = "\n".join(s.name + ": " + str(s.filters)[:2000] for s in sites)
        raise AssertionError(
            f"{len(failures)} of {len(cases)} disagree:\n" + "\n".join(failures[:20]) + "\n" + sets
        )


def test_random_corpus_count() -> None:
    """Reports (and checks) how many random cases were compared."""
    if TOTAL["examples"] == 0:
        return  # the corpus was skipped or deselected
    print(
        f"random corpus: {TOTAL['cases']} cases in {TOTAL['examples']} Envoy runs, "
        f"{TOTAL['seconds']:.1f}s" + (" (long mode)" if long_mode() else "")
    )
    assert TOTAL["cases"] >= _target()

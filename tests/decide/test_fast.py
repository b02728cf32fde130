"""The fast path (meshauthz.decide.fast) gives decide()'s verdict, stage, policy and rule.

Compared on seeded random requests against the seed, the fixed seed (with
STRICT and DISABLE mTLS variants), Istio's builder golden inputs (every field
an AuthorizationPolicy has: the emitted code meets headers, IP blocks, ports,
hosts, JWT claims, notValues, CUSTOM) and the benchmark's generated mesh; and
the emitted policy code against the compiled closures and the traced walk on
random RBAC trees.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from meshauthz.decide.engine import Decider
from meshauthz.decide.fast import FastDecision, as_fast, compile_chain
from meshauthz.decide.request import Request
from meshauthz.envoy.rbac.evaluate import (
    PeerCertificate,
    PythonEmitter,
    RbacInput,
    compile_policy,
    compile_rbac,
)
from meshauthz.envoy.rbac.model import (
    RBAC,
    Action,
    CidrRange,
    HeaderMatcher,
    IdAnd,
    IdAny,
    IdAuthenticated,
    IdHeader,
    IdNot,
    IdOr,
    IdRemoteIp,
    PermAnd,
    PermAny,
    PermDestinationPort,
    PermHeader,
    PermNot,
    PermOr,
    PermUrlPath,
    Policy,
    StringMatcher,
)
from meshauthz.mesh.loading import load_mesh
from tests.conftest import CONFORMANCE, EXAMPLES, REPO

GOLDEN_HTTP = CONFORMANCE / "pilot/pkg/security/authz/builder/testdata/http"

PRINCIPALS = [
    None,  # plaintext
    "cluster.local/ns/default/sa/frontend",
    "cluster.local/ns/default/sa/default",
    "cluster.local/ns/foo/sa/sleep",
    "cluster.local/ns/my-ns/sa/my-sa",
    "principal",
    "principal-prefix-x",
    "x-suffix-principal",
    "not-principal",
    "td1/ns/foo/sa/sleep",
    "cluster.local/ns/ns-prefix-a/sa/b",
]
METHODS = ["GET", "POST", "DELETE", "method", "method-prefix-x", "x-suffix-method", "not-method"]
PATHS = [
    "/",
    "/api/v1/data",
    "/api/v1/data?x=1",
    "/api/v1/other",
    "/exact",
    "/prefix/x",
    "/a/suffix",
    "/path/template/x",
    "/a/b/path/template",
    "/not-exact",
    "/admin",
    "/a/../api/v1/data",
    "/%2e%2e/exact",
    "/x#frag",  # rejected by the HCM
    "/a//b",
]
HOSTS = ["", "exact.com", "a.suffix.com", "prefix.x", "backend.default.svc.cluster.local"]
HEADERS = [
    (),
    (("x-header", "header"),),
    (("x-header", "header-prefix-1"),),
    (("x-header", "not-header"),),
    (("x-header", "a"), ("x-header", "header")),
    (("x-forwarded-for", "10.10.10.10"),),
]
IPS = ["10.1.2.3", "1.2.3.4", "5.6.7.8", "192.168.10.5", "9.0.0.1", "10.10.10.10"]


def random_requests(snapshot, rng: random.Random, n: int, ports=(80,)) -> list[Request]:
    workloads = sorted(snapshot.workloads, key=lambda w: w.key)
    out = []
    for _ in range(n):
        principal = rng.choice(PRINCIPALS)
        ip = rng.choice(IPS)
        out.append(
            Request(
                destination=rng.choice(workloads),
                port=rng.choice(ports),
                protocol=rng.choice(("http", "http", "http", "tcp")),
                source_principal=principal,
                source_namespace=None,
                source_ip=ip,
                remote_ip=rng.choice((ip, ip, *IPS)),
                method=rng.choice(METHODS),
                path=rng.choice(PATHS),
                host=rng.choice(HOSTS),
                headers=rng.choice(HEADERS),
                sni=rng.choice(("", "exact.com")),
            )
        )
    return out


def assert_same(decider: Decider, requests: list[Request]) -> set[FastDecision]:
    seen = set()
    for r in requests:
        full = decider.decide(r)
        fast = decider.decide_prepared(decider.prepare_request(r))
        assert fast == as_fast(full), (r, full.reason)
        seen.add(fast)
    return seen


def snapshot_of(*paths: Path | str):
    return load_mesh([str(p) for p in paths]).snapshot


@pytest.mark.parametrize("example", ["seed", "seed-fixed"])
def test_seed_examples(example):
    snap = snapshot_of(EXAMPLES / example)
    requests = random_requests(snap, random.Random(1), 1500)
    backend = snap.workload("default/backend")
    frontend = "cluster.local/ns/default/sa/frontend"
    requests += [  # the tutorial's cases, which random requests seldom hit
        Request(backend, 80, "http", frontend, "default", "10.0.0.1", "10.0.0.1", path=path)
        for path in ("/api/v1/data", "/api/v1/data?x", "/api/v1/../api/v1/data", "/api/v1/x")
    ]
    seen = assert_same(Decider(snap), requests)
    assert {d.verdict for d in seen} == {"ALLOW", "DENY"}
    if example == "seed":
        assert FastDecision("DENY", "DENY", "default/deny-all-backend", 0) in seen
    else:
        assert FastDecision("ALLOW", "ALLOW", "default/allow-frontend-get-data", 0) in seen
        assert FastDecision("DENY", "ALLOW") in seen


@pytest.mark.parametrize("mode", ["STRICT", "DISABLE"])
def test_mtls_modes(tmp_path, mode):
    (tmp_path / "pa.yaml").write_text(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        f"metadata:\n  name: pa\n  namespace: default\nspec:\n  mtls:\n    mode: {mode}\n"
    )
    snap = snapshot_of(EXAMPLES / "seed-fixed", tmp_path)
    seen = assert_same(Decider(snap), random_requests(snap, random.Random(2), 800))
    if mode == "STRICT":
        assert FastDecision("DENY", "mTLS") in seen


WORKLOAD = """\
apiVersion: v1
kind: Namespace
metadata:
  name: foo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: httpbin
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  template:
    metadata:
      labels:
        app: httpbin
        version: v1
    spec:
      containers:
      - name: httpbin
        image: httpbin
        ports:
        - containerPort: 80
"""


@pytest.mark.parametrize(
    "golden", sorted(p.name for p in GOLDEN_HTTP.glob("*-in.yaml")) if GOLDEN_HTTP.exists() else []
)
def test_builder_golden_policies(tmp_path, golden):
    (tmp_path / "workload.yaml").write_text(WORKLOAD)
    (tmp_path / "policy.yaml").write_text((GOLDEN_HTTP / golden).read_text())
    snap = snapshot_of(tmp_path)
    decider = Decider(snap)
    for ext in ("deny", "allow"):
        decider = Decider(snap, ext_authz=ext)  # type: ignore[arg-type]
        assert_same(decider, random_requests(snap, random.Random(golden), 300, ports=(80, 90)))


def test_generated_mesh(tmp_path):
    spec = importlib.util.spec_from_file_location("meshgen", REPO / "benchmarks" / "meshgen.py")
    meshgen = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["meshgen"] = meshgen
    spec.loader.exec_module(meshgen)  # type: ignore[union-attr]
    rules = meshgen.generate_mesh(tmp_path, 40)
    snap = snapshot_of(tmp_path)
    decider = Decider(snap)
    requests = []
    for r in meshgen.mesh_requests(rules, 3000):
        requests.append(
            Request(
                destination=snap.workload(r.destination),
                port=8080,
                protocol="http",
                source_principal=r.principal,
                source_namespace=None,
                source_ip="10.0.0.1",
                remote_ip="10.0.0.1",
                method=r.method,
                path=r.path,
            )
        )
    seen = assert_same(decider, requests)
    stages = {(d.verdict, d.stage) for d in seen}
    assert stages == {("ALLOW", "ALLOW"), ("DENY", "ALLOW"), ("DENY", "DENY")}
    # one generated function per destination, not the fallback
    p = decider.prepare(snap.workload("ns1/svc1"), 8080, "http")
    chain = compile_chain(p)
    assert chain is not None and chain.extract is not None and "def run" in chain.source


def test_trace_on_request_gives_the_full_decision():
    snap = snapshot_of(EXAMPLES / "seed")
    decider = Decider(snap)
    r = random_requests(snap, random.Random(3), 1)[0]
    d = decider.decide_prepared(decider.prepare_request(r), trace=True)
    assert d == decider.decide(r, trace=True)


# --- the emitted code against the closures and the traced walk ---------------------------------


def _sm(rng: random.Random) -> StringMatcher:
    kind = rng.choice(("exact", "exact", "prefix", "suffix", "contains", "safe_regex"))
    value = rng.choice(("a", "ab", "/a", "/a/b", "", "b.*" if kind == "safe_regex" else "B"))
    if kind == "safe_regex" and value == "":
        value = "a.*"
    return StringMatcher(kind, value, ignore_case=rng.random() < 0.15)  # type: ignore[arg-type]


def _header(rng: random.Random) -> HeaderMatcher:
    kind = rng.choice(("string", "string", "exact", "present", "prefix"))
    name = rng.choice(("x-a", "X-A", ":method", "x-b"))
    return HeaderMatcher(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        value=rng.choice(("a", "", "GET")) if kind != "string" else "",
        string=_sm(rng) if kind == "string" else None,
        present=rng.random() < 0.7,
        invert_match=rng.random() < 0.15,
        treat_missing_header_as_empty=rng.random() < 0.15,
    )


def _perm(rng: random.Random, depth: int):
    leaves = [
        lambda: PermAny(),
        lambda: PermHeader(_header(rng)),
        lambda: PermUrlPath(_sm(rng)),
        lambda: PermDestinationPort(rng.choice((80, 90))),
    ]
    if depth <= 0 or rng.random() < 0.4:
        return rng.choice(leaves)()
    kids = tuple(_perm(rng, depth - 1) for _ in range(rng.randrange(0, 4)))
    return rng.choice(
        (lambda: PermAnd(kids), lambda: PermOr(kids), lambda: PermNot(_perm(rng, depth - 1)))
    )()


def _principal(rng: random.Random, depth: int):
    leaves = [
        lambda: IdAny(),
        lambda: IdAuthenticated(_sm(rng) if rng.random() < 0.9 else None),
        lambda: IdHeader(_header(rng)),
        lambda: IdRemoteIp(CidrRange("10.0.0.0", rng.choice((8, 24)))),
    ]
    if depth <= 0 or rng.random() < 0.4:
        return rng.choice(leaves)()
    kids = tuple(_principal(rng, depth - 1) for _ in range(rng.randrange(0, 4)))
    return rng.choice(
        (lambda: IdAnd(kids), lambda: IdOr(kids), lambda: IdNot(_principal(rng, depth - 1)))
    )()


def _input(rng: random.Random) -> RbacInput:
    headers = []
    for _ in range(rng.randrange(0, 4)):
        headers.append((rng.choice(("x-a", "x-b", ":method")), rng.choice(("a", "ab", "GET", ""))))
    if rng.random() < 0.8:
        headers.append((":path", rng.choice(("/a", "/a/b?q", "/ab", "/", "/a#f"))))
    peer = None
    if rng.random() < 0.8:
        sans = tuple(rng.sample(("a", "ab", "/a", "b", "B"), rng.randrange(0, 3)))
        dns = tuple(rng.sample(("a", "x"), rng.randrange(0, 2)))
        peer = PeerCertificate(uri_sans=sans, dns_sans=dns, subject=rng.choice(("", "a", "ab")))
    return RbacInput(
        direct_remote_ip=rng.choice(("10.0.0.1", "11.0.0.1")),
        destination_port=rng.choice((80, 90)),
        peer=peer,
        headers=headers if rng.random() < 0.9 else None,
    )


def _emitted(policy: Policy):
    em = PythonEmitter()
    expr = em.policy(policy)
    consts = em.constants()
    src = "\n".join(
        [
            f"def make({', '.join(consts)}):",
            "  def f(inp):",
            *(f"    {line}" for line in em.prologue()),
            f"    return bool({expr})",
            "  return f",
        ]
    )
    ns: dict = {}
    exec(src, ns)
    return ns["make"](**consts), src


def test_emitted_policies_match_closures_and_trace():
    rng = random.Random(7)
    inputs = [_input(rng) for _ in range(40)]
    for _ in range(600):
        policy = Policy(
            permissions=tuple(_perm(rng, 3) for _ in range(rng.randrange(0, 3))),
            principals=tuple(_principal(rng, 3) for _ in range(rng.randrange(0, 3))),
        )
        emitted, src = _emitted(policy)
        closure = compile_policy(policy)
        traced = compile_rbac(RBAC(Action.ALLOW, (("p", policy),)))
        for inp in inputs:
            want = traced.evaluate(inp, trace=True).allowed
            assert bool(closure(inp)) == want, (policy, inp)
            assert emitted(inp) == want, (policy, inp, src)

"""One decision path: the chain runner's untraced backend (generated code where
the chain allows it, the walk elsewhere) gives the traced walk's outcome, field
by field (verdict, status, stage, cause, policy, rule, Envoy policy, body,
dry-run results, audit), and ``explain``'s extra tracing changes nothing.

Compared over every corpus the project has: Istio's builder goldens (with the
requests tests/envoy/test_golden_corpus.py sends them), the bundled examples,
the Istio integration suites in tests/istio_suites, and random policy sets and
requests (the generators of tests/envoy/test_random_corpus.py, fixed seed,
with Host headers, X-Forwarded-For chains, repeated headers and gateway XFF
settings added).

The per-request work's memos are a backend too: on every corpus the request
view as decided (memos warm) equals the view computed with every memo empty,
and a new request in the request format gives the same Decision (or error) as
the validating parser, empty memos and a new Decider give.
"""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from typing import Any

import msgspec.structs
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from meshauthz.decide import request as request_module
from meshauthz.decide import runner as runner_module
from meshauthz.decide import view as view_module
from meshauthz.decide.cause import AllowedByPolicy, NoAllowMatched, Stage
from meshauthz.decide.decision import Decision, Outcome
from meshauthz.decide.engine import Decider, Prepared
from meshauthz.decide.request import Request, resolve
from meshauthz.decide.request_spec import parse_request, request_from_data
from meshauthz.decide.runner import PreparedRequest
from meshauthz.decide.view import RequestView, request_view
from meshauthz.errors import MeshauthzError
from meshauthz.mesh import build_snapshot
from meshauthz.resources.loader import load
from meshauthz.resources.yamlload import Document
from meshauthz.suite import find_suites, load_suite
from meshauthz.suite.runner import _SnapshotCache
from meshauthz.translate import BuildOptions, Chain, build
from meshauthz.translate.hcm import gateway_xff
from meshauthz.translate.hcm_headers import header_settings
from tests.conftest import EXAMPLE_MESHES, EXAMPLES, REPO
from tests.envoy.harness import Probe
from tests.envoy.judge import prepared_from_build, request_for
from tests.envoy.test_golden_corpus import REQUESTS as GOLDEN_REQUESTS
from tests.envoy.test_golden_corpus import WORKLOAD as GOLDEN_WORKLOAD
from tests.envoy.test_golden_corpus import _cases as golden_cases
from tests.envoy.test_random_corpus import (
    HOSTS,
    USERS,
    XFFS,
    http_probe,
    policy_sets,
    tcp_probe,
)
from tests.envoy.test_random_corpus import WORKLOAD as RANDOM_WORKLOAD
from tests.translate.test_golden import TESTDATA, _applies

FIELDS = [f.name for f in msgspec.structs.fields(Outcome) if f.name != "trace"]


class Tally:
    """How many requests each backend decided: the corpus must reach both."""

    def __init__(self) -> None:
        self.generated = 0
        self.walked = 0
        self.constant = 0  # of those, decided without running anything (PreparedRequest.constant)
        self.lean = 0  # requests to a chain that decides lean views (no added headers)
        self.outcomes: set[tuple[str, str]] = set()


def differences(a: Outcome, b: Outcome) -> list[str]:
    return [
        f"{n}: {getattr(a, n)!r} != {getattr(b, n)!r}"
        for n in FIELDS
        if getattr(a, n) != getattr(b, n)
    ]


def cold_view(p: Prepared, r: Request) -> RequestView:
    """``r``'s view computed afresh: none of the view's memos (the codec's verdicts,
    the destination's normalized paths and added headers) holds anything."""
    saved = p.view_memo
    view_module.forget_inputs([p])
    try:
        return request_view(p, r)
    finally:
        p.view_memo = saved


def assert_one_path(pr: PreparedRequest, tally: Tally, what: Any) -> Outcome:
    untraced = pr.outcome()
    if pr.runner is not None and pr.view is not None:
        # the view as decided, with memos warm from the corpus so far, is the fresh one
        full = cold_view(pr.runner.p, pr.request)
        assert full == pr.full_view(), what
        if pr.runner.lean:
            assert_lean_is_full(pr, full, untraced, what)
            tally.lean += 1
    if pr.constant is not None:
        # known in advance: what running the chain (or refusing the request) gives
        diffs = differences(pr.run(pr.args), pr.constant)
        assert not diffs, f"{what}: run vs constant: " + "; ".join(diffs)
        tally.constant += 1
    for kind, slow in (("traced", pr.outcome(trace=True)), ("explain", pr.outcome(explain=True))):
        diffs = differences(untraced, slow)
        assert not diffs, f"{what}: untraced vs {kind}: " + "; ".join(diffs)
    g = pr.runner.generated if pr.runner is not None else None
    if g is not None and pr.run is g.run:
        tally.generated += 1
    else:
        tally.walked += 1
    tally.outcomes.add((untraced.verdict, untraced.stage))
    return untraced


def assert_lean_is_full(
    pr: PreparedRequest, full: RequestView, untraced: Outcome, what: Any
) -> None:
    """A lean view (no headers the connection manager adds) is the complete one
    in all the generated chain reads, and decides alike."""
    assert pr.runner is not None
    lean = request_view(pr.runner.p, pr.request, lean=True)
    if full.rejected is not None or full.headers is None:  # refused, or TCP: the same view
        assert lean == full, what
    else:
        assert lean.inp is not None and full.headers is not None and not lean.complete
        assert lean.headers == full.headers[:3], what  # the pseudo headers, first in both
        assert {n for n, _ in lean.headers} == view_module.PSEUDO_HEADERS
        same = msgspec.structs.replace(lean, headers=full.headers, inp=full.inp, complete=True)
        assert same == full, what
        for name in ("remote_ip", "ip_remote", "url_path", "peer_names", "filter_state"):
            assert getattr(lean.inp, name) == getattr(full.inp, name), (what, name)
    diffs = differences(untraced, pr.runner.bind(lean, pr.ext_authz).outcome())
    assert not diffs, f"{what}: complete vs lean view: " + "; ".join(diffs)


def bind(prepared: Prepared, request: Request, ext_authz: Any = "deny") -> PreparedRequest:
    return prepared.runner.bind(request_view(prepared, request), ext_authz)


def snapshot_of(*paths: Path | str) -> Any:
    return build_snapshot(load([str(p) for p in paths]).manifests)


# --- the named regression: Host folds into :authority on every path ---------------------

HOST_POLICY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: hosts, namespace: ns}
spec:
  selector: {matchLabels: {app: api}}
  action: ALLOW
  rules:
  - to:
    - operation:
        hosts: ["good.example"]
"""
API = """
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: ns, labels: {app: api}}
spec:
  serviceAccountName: api
  containers: [{name: c, image: x, ports: [{containerPort: 80}]}]
"""


def test_host_header_wins_over_the_request_host_on_every_path(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(API + "---" + HOST_POLICY)
    snap = snapshot_of(tmp_path)
    decider = Decider(snap)
    api = snap.workload("ns/api")

    def request(host: str, headers: tuple[tuple[str, str], ...]) -> Request:
        return Request(
            api, 80, "http", "cluster.local/ns/ns/sa/c", "ns", "10.0.0.1", None,
            host=host, headers=headers,
        )  # fmt: skip

    tally = Tally()
    for host, headers, verdict in (
        ("bad.example", (("host", "good.example"),), "ALLOW"),
        ("good.example", (("host", "bad.example"),), "DENY"),
        ("good.example", (), "ALLOW"),
        ("bad.example", (), "DENY"),
    ):
        r = request(host, headers)
        pr = decider.prepare_request(r)
        assert decider.decide_prepared(pr).verdict == verdict
        assert decider.decide(r).verdict == verdict
        assert decider.decide(r, trace=True).verdict == verdict
        assert_one_path(pr, tally, r)
    assert tally.generated == 4  # the chain is generated: the fast path is the one tested


def test_decide_is_the_runner_and_the_decision_its_outcome(tmp_path: Path) -> None:
    snap = snapshot_of(EXAMPLES / "seed-fixed")
    decider = Decider(snap)
    for r in random_requests(snap, random.Random(5), 200):
        pr = decider.prepare_request(r)
        outcome = decider.decide_prepared(pr)
        # decide() is the path: for a sidecar, its one hop around the same decision
        decided = decider.decide(r)
        assert [h.enforcer for h in decided.hops] == ["sidecar"]
        assert msgspec.structs.replace(decided, hops=()) == Decision.of(outcome, r, pr.view)
        traced = decider.decide(r, trace=True)
        assert msgspec.structs.replace(traced, trace=(), hops=()) == Decision.of(
            outcome, r, pr.view
        )


# --- corpus: Istio's builder goldens ----------------------------------------------------------


def test_istio_golden_corpus(tmp_path: Path) -> None:
    if not TESTDATA.is_dir():
        pytest.skip(f"golden data not found at {TESTDATA}")
    (tmp_path / "httpbin.yaml").write_text(GOLDEN_WORKLOAD)
    snap = snapshot_of(tmp_path / "httpbin.yaml")
    decider = Decider(snap)
    workload = snap.workload("foo/httpbin")
    tally = Tally()
    for name, chain, (input_, _, trust_domains, provider) in golden_cases():
        base = TESTDATA / ("tcp" if chain is Chain.TCP else "http")
        policies = [
            p for p in load([str(base / input_)]).manifests.authorization_policies if _applies(p)
        ]
        policies = [p for p in policies if (p.spec.action == "CUSTOM") == (provider is not None)]
        options = BuildOptions(
            trust_domains=trust_domains,
            extension_providers=(provider,) if provider else (),
            known_services={("foo", "my-custom-ext-authz.foo.svc.cluster.local")},
        )
        result = build(policies, chain, options)
        protocol = "tcp" if chain is Chain.TCP else "http"
        prep = prepared_from_build(decider.prepare(workload, 80, protocol), result)
        for req in GOLDEN_REQUESTS:
            kw = {"principal": "cluster.local/ns/foo/sa/sleep", "dest_port": 80, **req}
            kw.pop("metadata", None)
            if kw["principal"] is None:
                kw.pop("sni", None)
            probe = Probe(name, **kw)
            r = request_for(probe, prep.workload, prep.protocol)
            for ext_authz in ("deny", "allow") if provider else ("deny",):
                assert_one_path(bind(prep, r, ext_authz), tally, (name, probe, ext_authz))
    assert tally.generated > 1000 and tally.walked > 100
    assert 500 < tally.lean < tally.generated  # header rules are not lean
    assert {("DENY", Stage.DENY), ("DENY", Stage.ALLOW), ("ALLOW", Stage.ALLOW)} <= tally.outcomes
    assert ("DENY", Stage.CUSTOM) in tally.outcomes


# --- corpus: the examples -------------------------------------------------------------------

PRINCIPALS = [
    None,
    "cluster.local/ns/default/sa/frontend",
    "cluster.local/ns/default/sa/default",
    "cluster.local/ns/foo/sa/sleep",
    "td1/ns/foo/sa/sleep",
]
METHODS = ["GET", "POST", "HEAD", "DELETE", "get"]
PATHS = [
    "/",
    "/api/v1/data",
    "/api/v1/data?x=1",
    "/api/v1/../api/v1/data",
    "/a//b",
    "/x#f",
    "/%2e%2e/a",
]
REQUEST_HOSTS = ["", "backend.default.svc.cluster.local", "Backend:80", "other.example"]
HEADERS = [
    (),
    (("host", "backend.default.svc.cluster.local"),),
    (("host", "other.example"),),
    (("x-user", "a"), ("x-user", "b")),
    (("x-forwarded-for", "10.10.10.10"),),
    (("x-forwarded-for", "1.2.3.4, 10.0.0.1"), ("x-forwarded-for", "5.6.7.8")),
]
IPS = ["10.1.2.3", "1.2.3.4", "127.0.0.1"]


def random_requests(
    snapshot: Any, rng: random.Random, n: int, ports: tuple[int, ...] = (80,)
) -> list[Request]:
    workloads = sorted(snapshot.workloads, key=lambda w: w.key)
    out = []
    for _ in range(n):
        ip = rng.choice(IPS)
        out.append(
            Request(
                destination=rng.choice(workloads),
                port=rng.choice(ports),
                protocol=rng.choice(("http", "http", "http", "tcp")),
                source_principal=rng.choice(PRINCIPALS),
                source_namespace=None,
                source_ip=ip,
                remote_ip=rng.choice((None, None, ip, *IPS)),
                method=rng.choice(METHODS),
                path=rng.choice(PATHS),
                host=rng.choice(REQUEST_HOSTS),
                headers=rng.choice(HEADERS),
                sni=rng.choice(("", "backend.default.svc.cluster.local")),
            )
        )
    return out


MTLS = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: pa, namespace: default}}\nspec: {{mtls: {{mode: {mode}}}}}\n"


# The examples whose workloads have sidecars: the Envoy chain this test compares
# backends of (in the ambient examples, ztunnel decides: tests/ambient).
SIDECAR_EXAMPLES = [
    p.name
    for p in EXAMPLE_MESHES
    if any(w.proxy == "sidecar" and w.has_proxy for w in snapshot_of(p).workloads)
]


def test_the_sidecar_examples_are_the_examples_without_ambient() -> None:
    assert set(SIDECAR_EXAMPLES) == {p.name for p in EXAMPLE_MESHES} - {
        "seed-ambient",
        "seed-ambient-waypoint",
    }


@pytest.mark.parametrize("example", SIDECAR_EXAMPLES)
@pytest.mark.parametrize("mtls", [None, "STRICT", "DISABLE"])
def test_examples(tmp_path: Path, example: str, mtls: str | None) -> None:
    paths: list[Path] = [EXAMPLES / example]
    if mtls is not None:
        (tmp_path / "pa.yaml").write_text(MTLS.format(mode=mtls))
        paths.append(tmp_path)
    snap = snapshot_of(*paths)
    decider = Decider(snap)
    tally = Tally()
    for r in random_requests(snap, random.Random(example), 1500):
        assert_one_path(decider.prepare_request(r), tally, r)
    assert tally.generated > 100 and tally.lean > 100
    assert {"ALLOW", "DENY"} <= {v for v, _ in tally.outcomes}
    if example == "seed":  # deny-all-backend's empty rule, and the frontend without a policy
        assert tally.constant > 100


def test_a_chain_that_reads_nothing_is_decided_in_advance() -> None:
    """A chain whose first DENY policy matches every request (the seed's backend)
    or that has no policy (its frontend) reads nothing of the request: the
    generated code stops at the policy that always matches, and the outcome is
    computed once; the decisions are the walk's (``test_examples``)."""
    snap = snapshot_of(EXAMPLES / "seed")
    decider = Decider(snap)
    for dest, stage in (("default/backend", Stage.DENY), ("default/frontend", Stage.DEFAULT)):
        r = Request(
            snap.workload(dest), 80, "http", "cluster.local/ns/x/sa/y", "x", "10.0.0.9", None
        )
        pr = decider.prepare_request(r)
        g = pr.runner.generated if pr.runner is not None else None
        assert g is not None and g.constant is not None and pr.args == (g.constants,)  # no value
        assert "ALLOW" not in g.source or stage is not Stage.DENY  # the rest is not written
        assert decider.decide_prepared(pr) is pr.constant
        assert pr.constant.stage is stage
        assert decider.decide_prepared(pr, trace=True).stage is stage


SHAPED_POLICY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-{app}, namespace: ns}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/ns/sa/{caller}"]
    to:
    - operation:
        methods: ["GET", "{method}"]
        paths: ["/{app}/*"]
    when:
    - key: request.headers[v9]
      values: ["{app}"]
"""


def test_chains_of_one_shape_share_their_code_and_requests_their_values(tmp_path: Path) -> None:
    """Two destinations whose policies differ only in their values run one
    generated function with their own constants, and the fast path's outcome is
    the walk's. A header named like one of the generated code's variables ("v9")
    is read as a header. Requests from one caller with one method share the
    values the chain reads (one object each), whatever request they came from."""
    docs = []
    for app, caller, method in (("api", "a", "POST"), ("web", "b", "PUT")):
        docs.append(API.replace("name: api", f"name: {app}").replace("app: api", f"app: {app}"))
        docs.append(SHAPED_POLICY.format(app=app, caller=caller, method=method))
    (tmp_path / "mesh.yaml").write_text("---".join(docs))
    snap = snapshot_of(tmp_path)
    decider = Decider(snap)
    tally = Tally()
    prepared: dict[tuple[str, str, str, str], PreparedRequest] = {}
    for app in ("api", "web"):
        for caller in ("a", "b"):
            for method in ("GET", "POST", "PUT"):
                for v9 in ("api", "web"):
                    r = Request(
                        snap.workload(f"ns/{app}"), 80, "http", f"cluster.local/ns/ns/sa/{caller}",
                        "ns", "10.0.0.1", None, method=method, path=f"/{app}/{method}{v9}",
                        headers=(("v9", v9),),
                    )  # fmt: skip
                    pr = prepared[app, caller, method, v9] = decider.prepare_request(r)
                    assert_one_path(pr, tally, r)
    assert tally.generated == 24
    assert tally.outcomes == {("ALLOW", Stage.ALLOW), ("DENY", Stage.ALLOW)}
    api, web = prepared["api", "a", "GET", "api"], prepared["web", "a", "GET", "api"]
    assert decider.decide_prepared(api).verdict == "ALLOW"
    assert decider.decide_prepared(prepared["web", "b", "PUT", "web"]).verdict == "ALLOW"
    assert decider.decide_prepared(web).verdict == "DENY"
    assert api.run is web.run and api.args[0] is not web.args[0]
    # the paths differ; the method, the caller's names and the header are one object each
    same = [(a, b) for a, b in zip(api.args[1:], web.args[1:], strict=True) if a == b]
    assert len(same) == len(api.args) - 2 >= 3
    assert all(a is b for a, b in same)


MESH_DENY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
"""
DENY_ADMIN = "istio-system/deny-admin"
DRY_RUN = (
    "metadata: {{name: allow-{app}, namespace: ns, annotations: {{istio.io/dry-run: 'true'}}}}"
)


def test_a_shared_first_stage_is_written_once_in_each_chain_s_context(tmp_path: Path) -> None:
    """Destinations that a mesh-wide DENY selects share its filter and the code
    written for it; a chain whose code differs from its first stage on (here:
    it collects the dry-run results of its ALLOW policy, which "web" runs in
    dry-run) gets code of its own, and every chain decides as the walk does."""
    apps = {"api": "a", "web": "a", "db": None, "shop": "a"}  # app: caller its ALLOW allows
    docs = [MESH_DENY]
    for app, caller in apps.items():
        docs.append(API.replace("name: api", f"name: {app}").replace("app: api", f"app: {app}"))
        if caller is not None:
            policy = SHAPED_POLICY.format(app=app, caller=caller, method="GET")
            if app == "web":
                policy = policy.replace(
                    f"metadata: {{name: allow-{app}, namespace: ns}}", DRY_RUN.format(app=app)
                )
            docs.append(policy)
    (tmp_path / "mesh.yaml").write_text("---".join(docs))
    snap = snapshot_of(tmp_path)
    decider = Decider(snap)
    tally = Tally()
    got: dict[tuple[str, str], Outcome] = {}
    for app in apps:  # api's chain first: web's starts with the same filter
        for path in (f"/{app}/x", "/admin/x"):
            r = Request(
                snap.workload(f"ns/{app}"), 80, "http", "cluster.local/ns/ns/sa/a", "ns",
                "10.0.0.1", None, method="GET", path=path, headers=(("v9", app),),
            )  # fmt: skip
            got[app, path] = assert_one_path(decider.prepare_request(r), tally, r)
    assert tally.generated == 8
    stages = {app: decider.prepare(snap.workload(f"ns/{app}"), 80, "http").rest for app in apps}
    deny = stages["api"][0].built
    assert all(s[0].built is deny for s in stages.values())  # one filter, compiled once
    assert all(s[0].compiled is stages["api"][0].compiled for s in stages.values())
    for app in apps:
        assert (got[app, "/admin/x"].verdict, got[app, "/admin/x"].policy) == ("DENY", DENY_ADMIN)
    assert (got["api", "/api/x"].verdict, got["shop", "/shop/x"].verdict) == ("ALLOW", "ALLOW")
    web = got["web", "/web/x"]  # allowed by default, its ALLOW policy's verdict recorded
    assert (web.verdict, web.stage) == ("ALLOW", Stage.DEFAULT)
    assert [(d.result, d.policy) for d in web.dry_run] == [("allowed", "ns/allow-web")]
    # shop took up api's code for the DENY filter: the same outcome object, not an equal one
    generated = {app: decider.prepare(snap.workload(f"ns/{app}"), 80, "http").runner.generated
                 for app in ("api", "shop")}  # fmt: skip
    api, shop = generated["api"], generated["shop"]
    assert api is not None and shop is not None
    denied = [c for c in api.constants if isinstance(c, Outcome) and c.policy == DENY_ADMIN]
    assert len(denied) == 1 and any(c is denied[0] for c in shop.constants)


# --- the path of a new request: request format to Decision, memos warm or cold -------------

NEW_FROM = [
    "default/frontend",
    "default/backend",
    "default/nobody",
    {"principal": "cluster.local/ns/default/sa/frontend"},
    {"principal": "spiffe://cluster.local/ns/foo/sa/sleep", "namespace": "foo"},
    {"workload": "default/frontend", "ip": "10.9.9.9"},
    {"plaintext": True},
]
NEW_TO = [
    "default/backend",
    "default/frontend",
    "default/backend:80",
    "default/backend:9999",
    "backend.default.svc.cluster.local",
    "default/ghost",
]


def new_requests(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Requests in the request format, with Host, header and X-Forwarded-For cases,
    and some that fail to resolve."""
    out = []
    for _ in range(n):
        data: dict[str, Any] = {"from": rng.choice(NEW_FROM), "to": rng.choice(NEW_TO)}
        data["method"], data["path"] = rng.choice(METHODS), rng.choice(PATHS)
        if rng.random() < 0.5:
            data["port"] = rng.choice((80, 8080))
        if rng.random() < 0.3:
            data["host"] = rng.choice([h for h in REQUEST_HOSTS if h])
        if rng.random() < 0.5:
            data["headers"] = {n: v for n, v in rng.choice(HEADERS)}
        if rng.random() < 0.2:
            data["remoteIP"] = rng.choice(IPS)
        if rng.random() < 0.1:
            data["protocol"] = "tcp"
        out.append(data)
    return out


def decided_json(snap: Any, decider: Decider, data: dict[str, Any], *, cold: bool) -> Any:
    """The Decision's JSON (or the error) for ``data``; ``cold``: parsed by the
    validating parser, resolved and viewed with every memo empty, by a new Decider."""
    try:
        if cold:
            request_module._RESOLVED.pop(snap, None)
            view_module.forget_inputs()
            spec = parse_request(Document("<request>", 0, 1, data, {}), ())
            return Decider(snap).decide(resolve(spec, snap)).to_json()
        return decider.decide(resolve(request_from_data(data), snap)).to_json()
    except MeshauthzError as e:
        return ("error", type(e).__name__, str(e), e.field, e.location)


@pytest.mark.parametrize("example", ["seed", "seed-fixed"])
def test_a_new_request_is_decided_as_afresh(example: str) -> None:
    """``resolve(request_from_data(...))`` then ``decide``, as mesh.check and check
    --request run it, with memos warm from earlier requests: the same Decision
    (as JSON: what check prints) and the same errors as computed from nothing."""
    snap = snapshot_of(EXAMPLES / example)
    decider = Decider(snap)
    warm = [
        (d, decided_json(snap, decider, d, cold=False))
        for d in new_requests(random.Random(example), 600)
    ]
    kinds = set()
    for data, got in warm:
        assert got == decided_json(snap, decider, data, cold=False), data  # a memo hit
        assert got == decided_json(snap, decider, data, cold=True), data
        kinds.add("error" if isinstance(got, tuple) else got["decision"])
    assert kinds == {"error", "ALLOW", "DENY"}


# --- corpus: Istio's integration suites -----------------------------------------------------


def test_istio_suites() -> None:
    suites = find_suites([str(REPO / "tests" / "istio_suites")])
    assert suites
    cache = _SnapshotCache()
    tally = Tally()
    for path in suites:
        suite = load_suite(path)
        snapshot, _ = cache.get(suite)
        assert snapshot is not None, path
        deciders = {m: Decider(snapshot, ext_authz=m) for m in ("deny", "allow")}
        for case in suite.cases:
            r = resolve(case.request, snapshot)
            decider = deciders[case.ext_authz or "deny"]
            assert_one_path(decider.prepare_request(r), tally, (suite.name, case.name))
    assert tally.generated > 50 and tally.walked > 50
    stages = {s for _, s in tally.outcomes}
    assert {Stage.JWT, Stage.CUSTOM, Stage.DENY, Stage.ALLOW, Stage.DEFAULT} <= stages


# --- corpus: random policies and requests ---------------------------------------------------


@st.composite
def http_probe_more(draw: Any) -> dict[str, Any]:
    """The random corpus's HTTP request, with a Host header, more X-Forwarded-For
    entries and repeated headers."""
    kw = draw(http_probe())
    kw.pop("metadata")  # JWT claims need a RequestAuthentication here: none
    extra: list[tuple[str, str]] = []
    if draw(st.booleans()):
        extra.append(("host", draw(st.sampled_from(HOSTS))))
    if draw(st.booleans()):
        extra += [("x-forwarded-for", v) for v in draw(st.sampled_from(XFFS))]
    if draw(st.booleans()):
        extra += [
            ("x-user", u) for u in draw(st.lists(st.sampled_from(USERS), min_size=2, max_size=3))
        ]
    kw["headers"] = [*kw["headers"], *draw(st.permutations(extra))]
    return kw


RANDOM_TALLY = Tally()


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_random_corpus(data: Any, tmp_path_factory: Any) -> None:
    tmp = tmp_path_factory.mktemp("one-path")
    (tmp / "api.yaml").write_text(RANDOM_WORKLOAD)
    snap = snapshot_of(tmp / "api.yaml")
    decider = Decider(snap)
    workload = snap.workload("ns1/api")
    for n in range(3):
        ps = data.draw(policy_sets(n), label=f"set {n}")
        f = tmp / f"set{n}.yaml"
        f.write_text(yaml.safe_dump_all(ps["policies"]))
        policies = load([str(f)]).manifests.authorization_policies
        options = BuildOptions(trust_domains=ps["trust_domains"])
        proxies = data.draw(st.sampled_from([None, 0, 1, 2]), label="gateway trusted proxies")
        for chain, protocol, count, strategy in (
            (Chain.HTTP, "http", 40, http_probe_more()),
            (Chain.TCP, "tcp", 10, tcp_probe()),
        ):
            result = build(policies, chain, options)
            base = decider.prepare(workload, 80, protocol)
            for _ in range(count):
                probe = Probe(f"set{n}", **data.draw(strategy))
                prep = prepared_from_build(
                    base,
                    result,
                    address=probe.dest_ip,
                    port=probe.dest_port,
                    normalization=ps["normalization"],
                )
                if proxies is not None:
                    headers = header_settings(True, gateway_xff(proxies))
                    prep = dataclasses.replace(prep, header_settings=headers)
                r = request_for(probe, prep.workload, prep.protocol)
                assert_one_path(bind(prep, r), RANDOM_TALLY, (probe, ps))


def test_random_corpus_reached_both_backends() -> None:
    if RANDOM_TALLY.generated + RANDOM_TALLY.walked == 0:
        pytest.skip("the random corpus did not run")
    assert RANDOM_TALLY.generated > 1000
    stages = {s for _, s in RANDOM_TALLY.outcomes}
    assert {Stage.DENY, Stage.ALLOW, Stage.DEFAULT} <= stages


def test_causes_are_data() -> None:
    """The reason is rendered from the cause; Stage compares and serializes as its text."""
    assert Stage.DENY == "DENY" and Stage.MTLS == "mTLS" and f"{Stage.DEFAULT}" == "default"
    o = Outcome("DENY", 403, Stage.ALLOW, NoAllowMatched())
    assert "no rule of any ALLOW policy" in Decision(o.verdict, o.status, o.stage, o.cause).reason
    ok = AllowedByPolicy("ns/p", 0)
    assert Decision("ALLOW", 200, Stage.ALLOW, ok).reason == "allowed by ALLOW policy ns/p rule 0"


def test_the_view_memos_are_bounded() -> None:
    """A long stream of distinct paths to one destination keeps at most
    DESTINATION_MEMO_SIZE of them, and decides each as afresh."""
    snap = snapshot_of(EXAMPLES / "seed")
    decider = Decider(snap)
    backend = snap.workload("default/backend")
    base = Request(
        backend, 80, "http", "cluster.local/ns/default/sa/frontend", None, "10.0.0.1", None
    )
    p = decider.prepare(backend, 80, "http")
    for i in range(view_module.DESTINATION_MEMO_SIZE * 2 + 7):
        r = msgspec.structs.replace(base, path=f"/api/v1/data/{i}")
        view = request_view(p, r)
        assert len(p.view_memo.paths) <= view_module.DESTINATION_MEMO_SIZE
        if i % 97 == 0:
            assert cold_view(p, r) == view


def test_the_shared_values_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The values requests share (``runner.shared``: a header's values or the
    peer's names, as the set of them) are kept up to a bound; past it the
    sharing starts over, and a value still holds what it held."""
    from meshauthz.decide import runner

    monkeypatch.setattr(runner, "_SHARED", {})
    monkeypatch.setattr(runner, "_BY_VALUES", {})
    monkeypatch.setattr(runner, "_SHARED_MAX", 10)
    first = runner.shared(["GET"])
    assert first == frozenset({"GET"}) and runner.shared(("GET",)) is first
    # the same values in another order or repeated: the same set
    assert runner.shared(["b", "a", "b"]) is runner.shared(("a", "b"))
    for i in range(25):
        assert runner.shared([f"v{i}", "x", "x"]) == frozenset({f"v{i}", "x"})
        assert runner._shared_constant(frozenset({f"s{i}"})) == frozenset({f"s{i}"})
        assert len(runner._SHARED) <= 10 and len(runner._BY_VALUES) <= 10
    assert runner.shared(("a", 1)) == ("a", 1)  # not strings: as it came
    assert runner.shared(["a", {}]) == ["a", {}]  # not hashable: as it came
    assert runner.shared(7) == 7


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="v12inp_ (é.", max_size=30))
def test_the_names_the_generated_code_reads_are_whole_words(text: str) -> None:
    """The reads a chain's code uses are found as a word-boundary regex finds them:
    "v1" is not in "v12" nor in "xv1"."""
    names = ["v1", "v12", "v2", "inp"]
    want = [n for n in names if re.search(rf"\b{n}\b", text)]
    assert runner_module._names_in(text, names) == want

"""analyze --deep: the findings about every request (MA2014-MA2016), from the
symbolic engine, each witness decided as check decides it (and, for MA2014,
alike in the mesh without the rule); an engine that cannot answer gives none."""

from __future__ import annotations

import json
import shutil

from meshauthz.mesh.loading import load_mesh
from meshauthz.symbolic.redundant import always
from tests.analyze.helpers import FIXED, SEED, analyze_json, codes, run
from tests.conftest import EXAMPLES, REPO

BASE = str(REPO / "tests/analyze/fixtures/base.yaml")
TWINS = EXAMPLES / "twins"
DEEP = {"MA2014", "MA2015", "MA2016"}

# One of each reason on base.yaml's mesh: a rule a DENY shadows (allow-web rule
# 0), one that matches nothing (rule 2), one with HTTP fields on a TCP-only
# workload (allow-tool rule 1).
REASONS = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - {from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}], to: [{operation: {paths: [/admin]}}]}
  - {from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}], to: [{operation: {paths: [/api]}}]}
  - {to: [{operation: {methods: [GET], notMethods: [GET]}}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-tool, namespace: ops}
spec:
  selector: {matchLabels: {app: tool}}
  rules:
  - {from: [{source: {namespaces: [shop]}}]}
  - {to: [{operation: {methods: [GET]}}]}
---
apiVersion: v1
kind: Service
metadata: {name: tool, namespace: ops}
spec:
  selector: {app: tool}
  ports: [{name: tcp-tool, port: 9000, targetPort: 9000}]
"""


def _check(capsys, paths, request, tmp_path):
    req = tmp_path / "request.json"
    req.write_text(json.dumps(request))
    args = [a for p in paths for a in ("-f", str(p))]
    status, out, _ = run(capsys, "check", *args, "--request", str(req), "-o", "json")
    assert status == 0
    return json.loads(out)


def test_without_deep_there_is_no_symbolic_finding(capsys):
    _, doc = analyze_json(capsys, str(TWINS))
    assert not DEEP & set(codes(doc))


def test_twins_each_never_decides_and_the_witness_is_decided_alike_without_it(capsys, tmp_path):
    _, doc = analyze_json(capsys, str(TWINS), "--deep")
    found = [f for f in doc["findings"] if f["code"] == "MA2014"]
    got = {(f["resource"]["name"], f["field"]) for f in found}
    assert got == {
        ("allow-frontend", "spec"),
        ("allow-frontend-twin", "spec"),
        ("allow-frontend-wider", "spec.rules[0]"),
    }
    for f in found:
        assert "(covered by other rules)" in f["message"]
        w = f["witness"]
        d = _check(capsys, [TWINS], w["request"], tmp_path)
        assert (d["decision"], d["policy"], d["rule"]) == (w["decision"], w["policy"], w["rule"])
        if f["field"] == "spec":  # the mesh without that policy decides the witness alike
            without = tmp_path / f["resource"]["name"]
            shutil.copytree(TWINS, without)
            (without / f"{f['resource']['name']}.yaml").unlink()
            for t in without.glob("*.test.yaml"):
                t.unlink()
            alone = _check(capsys, [without], w["request"], tmp_path)
            assert alone["decision"] == w["decision"] == "ALLOW"


def test_each_reason_is_named(capsys, tmp_path):
    p = tmp_path / "reasons.yaml"
    p.write_text(REASONS)
    _, doc = analyze_json(capsys, BASE, str(p), "--deep")
    got = {
        (f["resource"]["name"], f["field"], f["message"].split("(")[1].split(")")[0])
        for f in doc["findings"]
        if f["code"] == "MA2014"
    }
    assert got == {
        ("allow-web", "spec.rules[0]", "shadowed by a DENY"),
        ("allow-web", "spec.rules[2]", "empty match"),
        ("allow-tool", "spec.rules[1]", "unreachable on this port's protocol"),
    }
    by_field = {
        (f["resource"]["name"], f["field"]): f for f in doc["findings"] if f["code"] == "MA2014"
    }
    shadowed = by_field[("allow-web", "spec.rules[0]")]["witness"]
    assert (shadowed["decision"], shadowed["policy"]) == ("DENY", "shop/deny-admin")
    assert shadowed["request"]["path"] == "/admin"
    # a rule that matches no request has no request to show
    assert by_field[("allow-web", "spec.rules[2]")]["witness"] is None


def test_the_seed_is_not_told_twice(capsys):
    """MA2001 already names the ALLOW the DENY {} kills and the port it closes."""
    status, doc = analyze_json(capsys, SEED, "--deep")
    assert status == 1
    assert "MA2001" in codes(doc)
    assert not DEEP & set(codes(doc))


def test_allow_nothing_is_not_reported_as_never_deciding(capsys):
    _, doc = analyze_json(capsys, FIXED, "--deep")
    assert "MA2014" not in codes(doc)


def test_an_unknown_answer_gives_no_finding(capsys):
    """ztunnel enforces at the ambient examples' workloads: the engine answers
    unknown there, so --deep adds nothing (never a guess)."""
    for example in ("seed-ambient", "seed-ambient-waypoint"):
        _, plain = analyze_json(capsys, str(EXAMPLES / example))
        _, deep = analyze_json(capsys, str(EXAMPLES / example), "--deep")
        assert deep["findings"] == plain["findings"]


def test_an_engine_that_cannot_encode_gives_no_finding(capsys, monkeypatch):
    """Where the chain cannot be encoded exactly (a regex, a solver time-out),
    redundant and always answer unknown for it: no MA2014-MA2016, the rest stays."""
    from meshauthz.analyze.checks import every_request
    from meshauthz.symbolic import compare, redundant
    from meshauthz.symbolic.regex import Unencodable

    def unencodable(*args, **kwargs):
        raise Unencodable("not encodable (test)")

    for module in (compare, redundant, every_request):
        monkeypatch.setattr(module, "encode_chain", unencodable)
    _, plain = analyze_json(capsys, str(TWINS))
    _, deep = analyze_json(capsys, str(TWINS), "--deep")
    assert deep["findings"] == plain["findings"]


def test_a_dry_run_policy_alone_is_not_an_always_allows_finding(capsys, tmp_path):
    p = tmp_path / "dry.yaml"
    p.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: try-deny, namespace: shop, annotations: {istio.io/dry-run: 'true'}}\n"
        "spec:\n  selector: {matchLabels: {app: api}}\n  action: DENY\n"
        "  rules: [{from: [{source: {namespaces: [ops]}}]}]\n"
    )
    # the engine: every request is allowed there (a dry-run policy never denies)
    mesh = load_mesh([BASE, str(p)]).snapshot
    assert {a.kind for a in always(mesh) if a.destination.workload == "shop/api"} == {
        "always-allows"
    }
    _, doc = analyze_json(capsys, BASE, str(p), "--deep")
    assert "MA2016" not in codes(doc)

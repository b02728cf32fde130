"""check and explain name the finding on the rule that decided (the wording is
the analyzer's; the evaluator does not know of it)."""

from __future__ import annotations

import json

from tests.analyze.helpers import FIXED, SEED, run

REQUEST = ["--from", "default/frontend", "--to", "default/backend", "--path", "/api/v1/data"]


def test_check_names_the_code_of_the_deciding_rule(capsys):
    code, out, _ = run(capsys, "check", "-f", SEED, *REQUEST)
    assert code == 0
    assert "finding MA2001 (deny-all-over-allow) on default/deny-all-backend rule 0" in out
    _, out, _ = run(capsys, "check", "-f", SEED, *REQUEST, "-o", "json")
    d = json.loads(out)
    assert [f["code"] for f in d["findings"]] == ["MA2001"]
    assert d["findings"][0]["resource"]["name"] == "deny-all-backend"


def test_explain_names_it_too(capsys):
    _, out, _ = run(capsys, "explain", "-f", SEED, *REQUEST)
    assert out.rstrip().splitlines()[-1].startswith("  finding MA2001 (deny-all-over-allow)")
    _, out, _ = run(capsys, "explain", "-f", SEED, *REQUEST, "-o", "json")
    assert [f["code"] for f in json.loads(out)["findings"]] == ["MA2001"]


def test_no_finding_no_line(capsys):
    # the fixed seed's deciding rule has only an info remark (MA2003): not shown
    _, out, _ = run(capsys, "check", "-f", FIXED, *REQUEST)
    assert "finding" not in out
    _, out, _ = run(capsys, "check", "-f", FIXED, *REQUEST, "-o", "json")
    assert json.loads(out)["findings"] == []


def test_a_suppressed_finding_is_not_named(tmp_path, capsys):
    import shutil

    import yaml

    d = tmp_path / "seed"
    shutil.copytree(SEED, d)
    p = d / "deny-all-backend.yaml"
    doc = yaml.safe_load(p.read_text())
    doc["metadata"]["annotations"] = {"galley.istio.io/analyze-suppress": "MA2001"}
    p.write_text(yaml.safe_dump(doc))
    _, out, _ = run(capsys, "check", "-f", str(d), *REQUEST)
    assert "finding" not in out


# --- the notes' analysis is the full analysis, narrowed ----------------------------------

# An ALLOW rule on two workloads, the first PERMISSIVE (its plaintext finding
# is a remark, and the analysis stops at it), the second with mTLS disabled; a
# DENY rule on both; an ALLOW rule on the PERMISSIVE one alone.
MIXED_MODES = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: a, namespace: shop}
spec:
  selector: {matchLabels: {app: x, tier: a}}
  template:
    metadata: {labels: {app: x, tier: a}}
    spec: {containers: [{name: app, image: app, ports: [{containerPort: 8080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: b, namespace: shop}
spec:
  selector: {matchLabels: {app: x, tier: b}}
  template:
    metadata: {labels: {app: x, tier: b}}
    spec: {containers: [{name: app, image: app, ports: [{containerPort: 8080}]}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: plain, namespace: shop}
spec:
  selector: {matchLabels: {tier: b}}
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: both, namespace: shop}
spec:
  selector: {matchLabels: {app: x}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/a]}}]
  - to: [{operation: {paths: [/x]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-both, namespace: shop}
spec:
  selector: {matchLabels: {app: x}}
  action: DENY
  rules: [{from: [{source: {namespaces: [ops]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-a, namespace: shop}
spec:
  selector: {matchLabels: {tier: a}}
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/b]}}]}]
"""


def _meshes(tmp_path):
    from tests.analyze.test_codes import BASE, FIXTURES

    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(MIXED_MODES)
    yield [SEED]
    yield [FIXED]
    yield [str(mixed)]
    for code in sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()):
        for kind in ("fail", "pass"):
            yield [BASE, str(FIXTURES / code / f"{kind}.yaml")]


def test_notes_are_the_full_analysis_on_the_deciding_rules(tmp_path):
    """The notes' analysis runs on the deciding rules only and skips what could only
    be a remark: what they name is what the whole analysis says of those rules."""
    from meshauthz.analyze.context import Context
    from meshauthz.analyze.decision_notes import DecisionNotes, notes_by_rule
    from meshauthz.analyze.run import CHECKS
    from meshauthz.decide.cause import DeniedByPolicy, Stage
    from meshauthz.decide.decision import Decision
    from meshauthz.mesh.loading import load_mesh

    checked = 0
    for paths in _meshes(tmp_path):
        snapshot = load_mesh(paths).snapshot
        full = Context(snapshot)
        for check in CHECKS:
            check(full)
        for p in snapshot.authorization_policies:
            for i in range(len(p.spec.rules)):
                cause = DeniedByPolicy(Stage.DENY, p.key, i)
                d = Decision("DENY", 403, Stage.DENY, cause, p.key, i)
                # what the whole analysis names of this rule
                named = notes_by_rule(full.findings, {p.key: [i]}).get((p.key, i), [])
                expected = [(f.code, f.message, f.field) for f in named]
                got = [
                    (f.code, f.message, f.field) for f in DecisionNotes(snapshot, [d]).findings(d)
                ]
                assert got == expected, (paths, p.key, i)
                checked += bool(expected)
    assert checked >= 5  # rules with a finding to name, MA2003's among them

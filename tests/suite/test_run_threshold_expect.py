"""``meshauthz test --run REGEX``, ``--threshold PCT``, and expectations on the
dry-run results and the AUDIT flag.

``--run`` and ``--threshold`` follow ``opa test`` (open-policy-agent/opa
``v1/tester/runner.go`` ``shouldRun``: the RE2 expression is searched in the
test's full name as reports print it, ``MatchString``, not anchored;
``cmd/test.go``: a threshold outside 0..100 is refused, a threshold implies
coverage, and coverage below it fails the run). The dry-run results and the
AUDIT flag the expectations are compared with are the Decision's, which
tests/envoy compares with a real Envoy's shadow-rule metadata and
``access_log_hint``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshauthz.cli.main import main
from meshauthz.errors import InputError
from meshauthz.suite import load_suite, run_paths
from meshauthz.suite.select import CaseSelector
from tests.conftest import EXAMPLES

FIXED = EXAMPLES / "seed-fixed"

EXTRA = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: dry-deny-posts
  namespace: default
  annotations: {istio.io/dry-run: "true"}
spec:
  selector: {matchLabels: {app: backend}}
  action: DENY
  rules:
  - to: [{operation: {methods: [POST]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-data, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  action: AUDIT
  rules:
  - to: [{operation: {paths: ["/api/v1/data"]}}]
"""

GET = "{from: default/frontend, to: default/backend, path: /api/v1/data}"
POST = "{from: default/frontend, to: default/backend, method: POST, path: /api/v1/data}"
OTHER = "{from: default/backend, to: default/backend, method: POST, path: /x}"


def run(capsys: Any, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


@pytest.fixture
def mesh(tmp_path: Path) -> Path:
    """seed-fixed plus a dry-run DENY policy and an AUDIT policy."""
    d = tmp_path / "mesh"
    d.mkdir()
    for f in FIXED.glob("*.yaml"):
        if not f.name.endswith(".test.yaml"):
            (d / f.name).write_text(f.read_text())
    (d / "extra.yaml").write_text(EXTRA)
    return d


def suite(d: Path, name: str, cases: str) -> str:
    p = d / f"{name}.test.yaml"
    p.write_text(f"resources: [mesh]\ncases:\n{cases}")
    return str(p)


# ------------------------------------------------------------------ expect: dryRun, audit


def test_dry_run_and_audit_expectations_pass(mesh: Path) -> None:
    p = suite(
        mesh.parent,
        "pass",
        f"  - name: get\n    request: {GET}\n"
        "    expect: {decision: ALLOW, dryRun: [{stage: DENY, result: allowed, policy: null}],"
        " audit: true, auditPolicy: default/audit-data}\n"
        f"  - name: post\n    request: {POST}\n"
        "    expect: {decision: DENY, dryRun: [{stage: DENY, result: denied,"
        " policy: default/dry-deny-posts, rule: 0}], audit: true}\n"
        f"  - name: other\n    request: {OTHER}\n"
        "    expect: {decision: DENY, dryRun: [{stage: DENY}], audit: false, auditPolicy: null}\n",
    )
    result = run_paths([p])
    assert [c.outcome for c in result.suites[0].cases] == ["pass", "pass", "pass"]


@pytest.mark.parametrize(
    ("request_", "expect", "mismatches"),
    [
        (
            POST,
            "{decision: DENY, dryRun: []}",
            [
                "expected no dry-run DENY result, got dry-run DENY: denied by "
                "default/dry-deny-posts rule 0"
            ],
        ),
        (
            GET,
            "{decision: ALLOW, dryRun: [{stage: DENY, result: denied}]}",
            ["expected dry-run DENY: denied, got dry-run DENY: allowed by no policy"],
        ),
        (
            GET,
            "{decision: ALLOW, dryRun: [{stage: DENY}, {stage: ALLOW, result: allowed}]}",
            ["expected dry-run ALLOW: allowed, got no dry-run ALLOW result"],
        ),
        (
            POST,
            "{decision: DENY, dryRun: [{stage: DENY, policy: default/other, rule: 1}]}",
            [
                "expected dry-run DENY: a result by default/other rule 1, got dry-run DENY: "
                "denied by default/dry-deny-posts rule 0"
            ],
        ),
        (OTHER, "{decision: DENY, audit: true}", ["expected audited, got not audited"]),
        (
            GET,
            "{decision: ALLOW, audit: false}",
            ["expected not audited, got audited by default/audit-data"],
        ),
        (
            GET,
            "{decision: ALLOW, auditPolicy: default/x}",
            ["expected audited by default/x, got default/audit-data"],
        ),
    ],
)
def test_dry_run_and_audit_mismatches_are_named(
    mesh: Path, capsys: Any, request_: str, expect: str, mismatches: list[str]
) -> None:
    p = suite(mesh.parent, "s", f"  - name: c\n    request: {request_}\n    expect: {expect}\n")
    (c,) = run_paths([p]).suites[0].cases
    assert (c.outcome, c.mismatches) == ("fail", mismatches)
    code, out, _ = run(capsys, "test", p, "-o", "json")
    doc = json.loads(out)["suites"][0]["cases"][0]
    assert code == 1 and doc["mismatches"] == mismatches
    assert set(doc["actual"]) >= {"dryRun", "audit", "auditPolicy"}
    assert doc["expect"] == json.loads(json.dumps(c.case.expect.to_json()))


@pytest.mark.parametrize(
    ("expect", "field", "message"),
    [
        ("{decision: DENY, dryRun: {stage: DENY}}", "cases[0].expect.dryRun", "expected a list"),
        ("{decision: DENY, dryRun: [{stage: CUSTOM}]}", "cases[0].expect.dryRun[0].stage", "AUDIT, DENY, ALLOW"),
        ("{decision: DENY, dryRun: [{stage: DENY, result: maybe}]}", "cases[0].expect.dryRun[0].result", '"allowed" or "denied"'),
        ("{decision: DENY, dryRun: [{stage: DENY}, {stage: DENY}]}", "cases[0].expect.dryRun[1].stage", "listed twice"),
        ("{decision: DENY, dryRun: [{stage: DENY, x: 1}]}", "cases[0].expect.dryRun[0].x", 'unknown field "x"'),
        ("{decision: DENY, dryRun: [{stage: DENY, rule: -1}]}", "cases[0].expect.dryRun[0].rule", "rule index"),
        ("{decision: DENY, audit: yes-please}", "cases[0].expect.audit", "true or false"),
        ("{decision: DENY, auditPolicy: nope}", "cases[0].expect.auditPolicy", "namespace/name"),
    ],
)  # fmt: skip
def test_bad_dry_run_and_audit_expectations(
    mesh: Path, expect: str, field: str, message: str
) -> None:
    p = suite(mesh.parent, "bad", f"  - name: c\n    request: {GET}\n    expect: {expect}\n")
    with pytest.raises(InputError) as e:
        load_suite(p)
    assert e.value.field == field and message in e.value.message
    assert e.value.location is not None and e.value.location.line == 5  # the expect line


# ------------------------------------------------------------------ --run


def test_run_selects_cases_by_full_name(mesh: Path, capsys: Any) -> None:
    a = suite(
        mesh.parent,
        "alpha",
        f"  - name: get data\n    request: {GET}\n    expect: ALLOW\n"
        f"  - name: post data\n    request: {POST}\n    expect: DENY\n",
    )
    b = suite(mesh.parent, "beta", f"  - name: get data\n    request: {GET}\n    expect: ALLOW\n")

    def names(regex: str) -> list[str]:
        r = run_paths([a, b], select=CaseSelector(regex))
        return [f"{s.name}: {c.case.name}" for s in r.suites for c in s.cases]

    every = ["alpha: get data", "alpha: post data", "beta: get data"]
    assert names("") == every
    assert names("get") == ["alpha: get data", "beta: get data"]  # searched, not anchored
    assert names("^alpha") == ["alpha: get data", "alpha: post data"]  # suite names count
    assert names("^beta: get data$") == ["beta: get data"]
    assert names("(?i)POST") == ["alpha: post data"]  # RE2 syntax
    code, out, _ = run(capsys, "test", a, b, "--run", "post", "-v")
    assert code == 0 and out.splitlines()[-1] == "1 passed, 0 failed"
    assert "PASS" in out and "get data" not in out


def test_run_does_not_load_the_suites_it_leaves_out(mesh: Path, capsys: Any) -> None:
    good = suite(mesh.parent, "good", f"  - name: ok\n    request: {GET}\n    expect: ALLOW\n")
    (mesh.parent / "broken").mkdir()
    (mesh.parent / "broken" / "p.yaml").write_text("kind: AuthorizationPolicy\nspec: [\n")
    bad = mesh.parent / "other.test.yaml"
    bad.write_text(
        f"resources: [broken]\ncases:\n  - name: x\n    request: {GET}\n    expect: DENY\n"
    )
    code, _, _ = run(capsys, "test", good, str(bad))
    assert code == 2
    code, out, _ = run(capsys, "test", good, str(bad), "--run", "^good:")
    assert (code, out.splitlines()[-1]) == (0, "1 passed, 0 failed")
    # A suite file that cannot be read is reported whatever --run selects.
    unreadable = mesh.parent / "junk.test.yaml"
    unreadable.write_text("resources: [\n")
    code, out, _ = run(capsys, "test", good, str(unreadable), "--run", "^good:")
    assert code == 2 and f"ERROR {unreadable}" in out


def test_run_errors(mesh: Path, capsys: Any) -> None:
    p = suite(mesh.parent, "s", f"  - name: c\n    request: {GET}\n    expect: ALLOW\n")
    code, out, _ = run(capsys, "test", p, "--run", "nothing-like-it", "-o", "json")
    err = json.loads(out)["error"]
    assert (
        code == 2
        and err["message"] == "no case matches --run 'nothing-like-it' (names are 'SUITE: CASE')"
    )
    code, out, _ = run(capsys, "test", p, "--run", "(?<=x)", "-o", "json")
    err = json.loads(out)["error"]
    assert (code, err["code"], err["field"]) == (2, "usage", "--run")
    assert "is not an RE2 regular expression: invalid perl operator: (?<=" in err["message"]


# ------------------------------------------------------------------ --threshold


def test_threshold(mesh: Path, capsys: Any) -> None:
    # seed-fixed's one ALLOW rule (matched and missed), the dry-run DENY rule and the
    # AUDIT rule: only the cases run count.
    p = suite(
        mesh.parent,
        "s",
        f"  - name: get\n    request: {GET}\n    expect: ALLOW\n"
        f"  - name: post\n    request: {POST}\n    expect: DENY\n",
    )
    code, out, _ = run(capsys, "test", p, "--threshold", "100")
    assert code == 0
    assert out.splitlines()[-2:] == [
        "coverage threshold met: 3 of 3 rules covered (100.0%), 100% required",
        "2 passed, 0 failed",
    ]
    # Only "get": the ALLOW rule is matched but never missed, the dry-run DENY
    # rule never matched: 1 of 3 (the AUDIT rule).
    code, out, _ = run(capsys, "test", p, "--run", "get", "--threshold", "33.4")
    assert code == 1
    assert out.splitlines()[-2] == (
        "coverage below the threshold: 1 of 3 rules covered (33.3%), 33.4% required"
    )
    code, out, _ = run(capsys, "test", p, "--run", "get", "--threshold", "33.3")
    assert code == 0  # 33.33...% is not below 33.3%
    code, out, _ = run(capsys, "test", p, "--run", "get", "--threshold", "50", "-o", "json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert doc["coverage"]["rules"] == {"covered": 1, "total": 3, "percent": 33.3}
    assert (doc["coverage"]["threshold"], doc["coverage"]["belowThreshold"]) == (50.0, True)
    # --coverage prints the report too, and without --threshold nothing is required.
    code, out, _ = run(capsys, "test", p, "--run", "get", "--coverage")
    assert code == 0 and "coverage: 1 of 3 rules covered (33.3%)" in out
    assert "required" not in out


def test_threshold_with_failures_and_bad_values(mesh: Path, capsys: Any) -> None:
    p = suite(mesh.parent, "s", f"  - name: c\n    request: {GET}\n    expect: DENY\n")
    code, out, _ = run(capsys, "test", p, "--threshold", "0")
    assert code == 1 and "coverage threshold met" in out  # the failed case fails the run
    for bad in ("101", "-1", "x"):
        code, out, _ = run(capsys, "test", p, "--threshold", bad, "-o", "json")
        err = json.loads(out)["error"]
        assert (code, err["code"], err["field"]) == (2, "usage", "--threshold")

"""The runner, coverage, JUnit and watch mode, and ``meshauthz test`` end to end."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest

from meshauthz.cli.main import main
from meshauthz.errors import InputError
from meshauthz.suite import run_paths
from meshauthz.suite.watch import stamp, watch
from tests.conftest import EXAMPLES

SEED = str(EXAMPLES / "seed")
FIXED = str(EXAMPLES / "seed-fixed")

CLAIM = "{from: default/frontend, to: default/backend, method: GET, path: /api/v1/data}"


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def suite(write, name: str, cases: str, resources: str = SEED, extra: str = "") -> str:
    return write(name, f"resources: [{resources}]\n{extra}cases:\n{cases}")


def test_example_suites_pass():
    result = run_paths([SEED, FIXED])
    assert result.ok and result.count("fail") == 0 and result.count("pass") == 11


def test_a_wrong_expectation_fails_with_the_explanation(capsys, write):
    p = suite(
        write, "claim.test.yaml", f"  - name: the claim\n    request: {CLAIM}\n    expect: ALLOW\n"
    )
    code, out, _ = run(capsys, "test", p)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"FAIL {p}:3: claim: the claim"
    assert lines[1] == "    expected ALLOW, got DENY (403)"
    # explain's own text follows
    assert (
        "    GET /api/v1/data from default/frontend to default/backend port 80 (Host: backend.default.svc.cluster.local)"
        in lines
    )
    assert any("[DENY] default/deny-all-backend rule 0 matches" in ln for ln in lines)
    assert any("[ALLOW] (not reached)" in ln for ln in lines)
    assert lines[-1] == "0 passed, 1 failed"


def test_pins_are_checked(write):
    p = suite(
        write,
        "pins.test.yaml",
        f"  - name: c\n    request: {CLAIM}\n"
        "    expect: {decision: DENY, status: 401, stage: ALLOW, policy: default/other, rule: 3}\n",
    )
    (s,) = run_paths([p]).suites
    (c,) = s.cases
    assert c.outcome == "fail"
    assert c.mismatches == [
        "expected status 401, got 403",
        "expected stage ALLOW, got DENY",
        "expected policy default/other, got default/deny-all-backend",
        "expected rule 3, got 0",
    ]


def test_unusable_cases_and_suites_exit_2(capsys, write, tmp_path):
    p = suite(
        write,
        "a.test.yaml",
        "  - {name: ghost, request: {from: default/ghost, to: default/backend}, expect: DENY}\n"
        f"  - name: ok\n    request: {CLAIM}\n    expect: DENY\n",
    )
    code, out, _ = run(capsys, "test", p)
    assert code == 2
    assert (
        f"ERROR {p}:3: a: ghost" in out and out.splitlines()[-1] == "1 passed, 0 failed, 1 unusable"
    )
    bad = write(
        "bad/bad.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: p}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {methods: GET}}]}]\n",
    )
    p2 = suite(
        write,
        "bad/b.test.yaml",
        f"  - name: c\n    request: {CLAIM}\n    expect: DENY\n",
        resources=os.path.dirname(bad) + "/bad.yaml",
    )
    code, out, _ = run(capsys, "test", p2)
    assert (
        code == 2
        and "the cluster would reject these objects (Istio or the API server)" in out
        and "methods" in out
    )
    code, _, err = run(capsys, "test", str(tmp_path / "nothing"))
    assert code == 2 and "no such file or directory" in err
    os.makedirs(tmp_path / "empty")
    code, _, err = run(capsys, "test", str(tmp_path / "empty"))
    assert code == 2 and "no test suites found" in err


def test_json_output_and_junit(capsys, write, tmp_path):
    p = suite(
        write,
        "j.test.yaml",
        f"  - name: pass\n    request: {CLAIM}\n    expect: DENY\n"
        f"  - name: fail\n    request: {CLAIM}\n    expect: ALLOW\n",
    )
    junit = str(tmp_path / "out" / "junit.xml")
    os.makedirs(os.path.dirname(junit))
    code, out, _ = run(capsys, "test", p, "-o", "json", "--junit", junit, "--coverage")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    assert doc["summary"] == {
        "passed": 1,
        "failed": 1,
        "errors": 0,
        "internalErrors": 0,
        "cases": 2,
        "suites": 1,
    }
    c0, c1 = doc["suites"][0]["cases"]
    assert c0["result"] == "pass" and c0["actual"]["decision"] == "DENY" and "explain" not in c0
    assert c1["result"] == "fail" and c1["expect"] == {"decision": "ALLOW"}
    assert c1["explain"]["applicable"][0]["policy"] == "default/allow-frontend-get-data"
    assert c1["explain"]["text"][0].startswith("GET /api/v1/data from default/frontend")
    assert doc["coverage"]["rules"]["total"] == 2
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["pass", "fail"]
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "expected ALLOW, got DENY (403)"
    assert "deny-all-backend rule 0 matches" in (failure.text or "")


def test_coverage_matched_missed_and_not_reached(capsys):
    result = run_paths([SEED, FIXED], coverage=True)
    assert result.coverage is not None
    cov = {
        (p.policy, os.path.basename(os.path.dirname(p.file))): p for p in result.coverage.ordered()
    }
    fixed_allow = cov[("default/allow-frontend-get-data", "seed-fixed")].rules[0]
    assert fixed_allow.covered and len(fixed_allow.matched_by) == 1
    # the near cases miss it on the method, the path and the caller
    fields = {f for _, f in fixed_allow.missed_by}
    assert {"to.operation.methods", "to.operation.paths", "from.source.principals"} <= fields
    deny = cov[("default/deny-all-backend", "seed")].rules[0]
    assert deny.empty and deny.covered and not deny.missed  # {} cannot be missed
    # DENY decides first: the seed's ALLOW rule is never reached, so never exercised
    seed_allow = cov[("default/allow-frontend-get-data", "seed")].rules[0]
    assert not seed_allow.matched and not seed_allow.missed and not seed_allow.covered
    assert cov[("default/allow-nothing-backend", "seed-fixed")].rules == []
    assert result.coverage.totals() == (2, 3)
    code, out, _ = run(capsys, "test", SEED, FIXED, "--coverage")
    assert code == 0
    assert "coverage: 2 of 3 rules covered (66.7%)" in out
    assert "    - rule 0 (line 13): not exercised; matched by 0, missed by 0" in out
    assert out.splitlines()[-1] == "11 passed, 0 failed"


def test_a_rule_matched_but_never_missed_is_not_covered(write):
    p = suite(
        write,
        "c.test.yaml",
        f"  - name: allowed\n    request: {CLAIM}\n    expect: ALLOW\n",
        resources=FIXED,
    )
    result = run_paths([p], coverage=True)
    assert result.ok and result.coverage is not None
    (rule,) = next(
        x for x in result.coverage.ordered() if x.policy == "default/allow-frontend-get-data"
    ).rules
    assert rule.matched and not rule.covered
    assert rule.status() == "matched only: no case reached it without matching"


def test_suite_mesh_takes_the_place_of_the_manifests_mesh_config(write):
    # istiod rewrites the policy's cluster.local principal to the mesh trust domain:
    # frontend (now other.example/...) is allowed, a cluster.local peer is not.
    old = "{from: {principal: cluster.local/ns/default/sa/frontend}, to: default/backend, path: /api/v1/data}"
    cases = (
        f"  - name: frontend\n    request: {CLAIM}\n    expect: ALLOW\n"
        f"  - name: old trust domain\n    request: {old}\n    expect: {{decision: DENY, stage: ALLOW}}\n"
    )
    p = suite(
        write, "m.test.yaml", cases, resources=FIXED, extra="mesh: {trustDomain: other.example}\n"
    )
    result = run_paths([p])
    assert result.ok, [c.mismatches for c in result.suites[0].cases]
    p2 = suite(write, "n.test.yaml", cases.replace("DENY, stage: ALLOW", "ALLOW"), resources=FIXED)
    assert run_paths([p2]).ok


def test_suites_over_the_same_manifests_share_a_snapshot(write):
    a = suite(write, "a.test.yaml", f"  - name: c\n    request: {CLAIM}\n    expect: DENY\n")
    b = suite(write, "b.test.yaml", f"  - name: c\n    request: {CLAIM}\n    expect: DENY\n")
    sa, sb = run_paths([a, b]).suites
    assert sa.snapshot is sb.snapshot


def test_ext_authz_assumption_per_case(write):
    d = os.path.dirname(write("m/x", ""))
    write(
        "m/custom.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: ext, namespace: default}\n"
        "spec:\n  selector: {matchLabels: {app: backend}}\n  action: CUSTOM\n"
        "  provider: {name: ext}\n  rules: [{to: [{operation: {paths: [/api/*]}}]}]\n",
    )
    write("m/apps.yaml", (EXAMPLES / "seed-fixed" / "backend.yaml").read_text())
    # istiod needs the provider's service in its registry, or it builds a deny-all instead
    write(
        "m/ext.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: default}\n"
        "spec:\n  selector: {app: ext}\n  ports: [{name: http, port: 8000}]\n",
    )
    write("m/front.yaml", (EXAMPLES / "seed-fixed" / "frontend.yaml").read_text())
    p = write(
        "m/e.test.yaml",
        "resources: [.]\n"
        "mesh: {extensionProviders: [{name: ext, envoyExtAuthzHttp: {service: ext.default.svc.cluster.local, port: 8000}}]}\n"
        "cases:\n"
        f"  - {{name: assumed deny, request: {CLAIM}, expect: {{decision: DENY, stage: CUSTOM}}}}\n"
        f"  - {{name: assumed allow, extAuthz: allow, request: {CLAIM}, expect: ALLOW}}\n",
    )
    assert d
    result = run_paths([p])
    assert result.ok, [c.mismatches or c.error for s in result.suites for c in s.cases]


def test_watch_reruns_on_change(write, tmp_path):
    p = suite(write, "w/w.test.yaml", f"  - name: c\n    request: {CLAIM}\n    expect: DENY\n")
    runs: list[int] = []
    changes: list[list[str]] = []
    before = stamp([str(tmp_path / "w")])
    assert p in before and any(f.endswith("deny-all-backend.yaml") for f in before)

    def sleep(_: float) -> None:
        if len(runs) == 1:  # after the first run: edit the suite
            with open(p, "a") as f:
                f.write(
                    "  - {name: d, request: {from: default/frontend, to: default/backend}, expect: DENY}\n"
                )

    def once() -> None:
        runs.append(len(run_paths([str(tmp_path / "w")]).suites[0].cases))

    n = watch(
        [str(tmp_path / "w")], once, interval=0, max_runs=2, sleep=sleep, on_change=changes.append
    )
    assert n == 2 and runs == [1, 2] and changes == [[p]]


def test_watch_without_changes_does_not_rerun(write, tmp_path):
    p = suite(write, "w.test.yaml", f"  - name: c\n    request: {CLAIM}\n    expect: DENY\n")
    runs: list[int] = []
    ticks: list[int] = []

    def sleep(_: float) -> None:
        ticks.append(1)
        if len(ticks) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        watch([p], lambda: runs.append(1), interval=0, sleep=sleep)
    assert runs == [1] and len(ticks) == 3


def test_run_paths_needs_suites(tmp_path):
    with pytest.raises(InputError):
        run_paths([str(tmp_path)])


def test_an_internal_error_fails_a_case_that_expects_deny(capsys, write, tmp_path, failing_matcher):
    # The request is denied without the fault (test_json_output_and_junit); with it,
    # the fail-closed DENY must not pass as the expected one.
    p = suite(write, "e.test.yaml", f"  - name: denied\n    request: {CLAIM}\n    expect: DENY\n")
    junit = str(tmp_path / "junit.xml")
    code, out, _ = run(capsys, "test", p, "--junit", junit)
    assert code == 3
    assert out.splitlines() == [
        f"INTERNAL ERROR {p}:3: e: denied",
        "    internal error in meshauthz deciding GET /api/v1/data from default/frontend to "
        f"default/backend port 80: {failing_matcher}; its DENY is fail-closed, not an answer "
        "(this is a bug; set MESHAUTHZ_DEBUG=1 for the details to report)",
        "    the case expects DENY; a fail-closed DENY meets no expectation",
        "0 passed, 0 failed, 1 internal error",
    ]
    # JUnit: an <error> of meshauthz, not a <failure> of the policies
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "1")
    [case] = root.findall("./testsuite/testcase")
    assert case.find("failure") is None
    error = case.find("error")
    assert error is not None and error.get("type") == "internal error"
    assert failing_matcher in (error.get("message") or "")

    code, out, _ = run(capsys, "test", p, "-o", "json")
    doc = json.loads(out)
    assert code == 3 and doc["ok"] is False
    assert (doc["summary"]["passed"], doc["summary"]["internalErrors"]) == (0, 1)
    [c] = doc["suites"][0]["cases"]
    assert (c["result"], c["error"], c["actual"]["stage"]) == (
        "internal-error",
        failing_matcher,
        "error",
    )

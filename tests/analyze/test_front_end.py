"""The analyze command: its outputs, exit codes, thresholds and suppressions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.analyze.helpers import FIXED, SEED, analyze_json, codes, run


def test_seed_names_the_dead_allow_and_the_witness(capsys):
    code, out, _ = run(capsys, "analyze", SEED)
    assert code == 1
    assert "error[MA2001]" in out
    assert "AuthorizationPolicy default/deny-all-backend" in out
    assert "default/allow-frontend-get-data" in out
    assert (
        "witness: GET /api/v1/data from default/frontend to default/backend port 80: "
        "DENY (403) by default/deny-all-backend rule 0" in out
    )


def test_seed_fixed_has_no_error(capsys):
    code, doc = analyze_json(capsys, FIXED)
    assert code == 0
    assert not [f for f in doc["findings"] if f["severity"] == "error"]


def test_json_has_the_documented_shape(capsys):
    code, doc = analyze_json(capsys, SEED)
    assert code == 1
    (f,) = [f for f in doc["findings"] if f["code"] == "MA2001"]
    assert set(f) == {
        "code",
        "severity",
        "message",
        "file",
        "line",
        "column",
        "resource",
        "field",
        "equivalents",
        "fix",
        "witness",
    }
    assert f["file"].endswith("examples/seed/deny-all-backend.yaml")
    assert (f["line"], f["column"]) == (15, 5)
    assert f["resource"] == {
        "kind": "AuthorizationPolicy",
        "namespace": "default",
        "name": "deny-all-backend",
    }
    assert f["field"] == "spec.rules[0]"
    assert f["witness"]["request"] == {
        "from": "default/frontend",
        "to": "default/backend",
        "method": "GET",
        "path": "/api/v1/data",
        "port": 80,
    }
    assert f["witness"]["decision"] == "DENY"
    assert f["witness"]["policy"] == "default/deny-all-backend"
    assert set(doc["summary"]) == {"errors", "warnings", "info", "suppressed", "files", "objects"}
    assert doc["summary"]["errors"] == 1


def test_the_witness_is_what_check_decides(capsys):
    _, doc = analyze_json(capsys, SEED)
    w = next(f for f in doc["findings"] if f["code"] == "MA2001")["witness"]
    req = w["request"]
    _code, out, _ = run(
        capsys,
        "check",
        "-f",
        SEED,
        "--from",
        req["from"],
        "--to",
        req["to"],
        "--port",
        str(req["port"]),
        "--method",
        req["method"],
        "--path",
        req["path"],
        "-o",
        "json",
    )
    d = json.loads(out)
    assert (d["decision"], d["policy"], d["rule"]) == (w["decision"], w["policy"], w["rule"])


def test_failure_threshold(capsys):
    code, _, _ = run(capsys, "analyze", SEED, "--failure-threshold", "error")
    assert code == 1
    code, _, _ = run(capsys, "analyze", FIXED, "--failure-threshold", "error")
    assert code == 0
    _, doc = analyze_json(capsys, FIXED)
    if doc["findings"]:  # anything at all fails the lowest threshold
        code, _, _ = run(capsys, "analyze", FIXED, "--failure-threshold", "info")
        assert code == 1


def _copy_seed(tmp_path: Path) -> Path:
    dst = tmp_path / "seed"
    shutil.copytree(SEED, dst)
    return dst


def _annotate(path: Path, value: str) -> None:
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["annotations"] = {"galley.istio.io/analyze-suppress": value}
    path.write_text(yaml.safe_dump(doc))


def test_suppressed_by_annotation(tmp_path, capsys):
    d = _copy_seed(tmp_path)
    _annotate(d / "deny-all-backend.yaml", "MA2001")
    code, doc = analyze_json(capsys, str(d))
    assert "MA2001" not in codes(doc)
    assert doc["summary"]["suppressed"] == 1
    assert code == 0


def test_annotation_takes_a_list_and_star(tmp_path, capsys):
    d = _copy_seed(tmp_path)
    _annotate(d / "deny-all-backend.yaml", "IST0127,MA2001")
    _, doc = analyze_json(capsys, str(d))
    assert "MA2001" not in codes(doc)
    _annotate(d / "deny-all-backend.yaml", "*")
    _, doc = analyze_json(capsys, str(d))
    assert "MA2001" not in codes(doc)
    _annotate(d / "deny-all-backend.yaml", "MA2002")
    _, doc = analyze_json(capsys, str(d))
    assert "MA2001" in codes(doc)


def test_suppressed_on_the_command_line(capsys):
    for flag in (
        "MA2001",
        "MA2001=AuthorizationPolicy deny-all-backend.default",
        "MA2001=AuthorizationPolicy *.default",
        "MA2001=default/deny-all-backend",
    ):
        code, doc = analyze_json(capsys, SEED, "--suppress", flag)
        assert "MA2001" not in codes(doc), flag
        assert code == 0
    _, doc = analyze_json(capsys, SEED, "-S", "MA2001=AuthorizationPolicy other.default")
    assert "MA2001" in codes(doc)


def test_a_bad_suppression_is_a_usage_error(capsys):
    code, out, err = run(capsys, "analyze", SEED, "--suppress", "NOPE1")
    assert code == 2
    assert "unknown code" in err
    code, out, _ = run(capsys, "analyze", SEED, "--suppress", "MA2001=", "-o", "json")
    assert code == 2
    assert json.loads(out)["error"]["field"] == "--suppress"


def test_input_istio_rejects_is_unusable(capsys):
    code, out, _ = run(capsys, "analyze", "examples/failing/broken.yaml", "-o", "json")
    assert code == 2
    assert json.loads(out)["error"]["code"] == "rejected"


def test_sarif_has_a_rule_per_code_and_a_result_per_finding(capsys):
    from meshauthz.analyze import CODES

    docs = "https://example.com/meshauthz/docs/analyze.md"
    code, out, _ = run(capsys, "analyze", SEED, "-o", "sarif", "--docs-url", docs)
    assert code == 1
    log = json.loads(out)
    assert log["version"] == "2.1.0"
    (r,) = log["runs"]
    rules = r["tool"]["driver"]["rules"]
    assert [x["id"] for x in rules] == sorted(CODES)
    for x in rules:
        assert x["shortDescription"]["text"] and x["fullDescription"]["text"]
        assert x["help"]["text"]
        assert x["helpUri"] == f"{docs}#{x['id'].lower()}"
        assert f"docs/analyze.md#{x['id'].lower()}" in x["help"]["text"]
    (res,) = [x for x in r["results"] if x["ruleId"] == "MA2001"]
    assert rules[res["ruleIndex"]]["id"] == "MA2001"
    assert res["level"] == "error"
    loc = res["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("examples/seed/deny-all-backend.yaml")
    assert loc["region"] == {"startLine": 15, "startColumn": 5}
    assert "GET /api/v1/data" in res["message"]["text"]


def test_validate_sarif(capsys):
    code, out, _ = run(capsys, "validate", "-o", "sarif", "examples/failing/broken-type-fixed.yaml")
    assert code == 1
    log = json.loads(out)
    results = log["runs"][0]["results"]
    assert {x["ruleId"] for x in results} == {"invalid-ip-block", "invalid-condition-key"}
    assert all(x["level"] == "error" for x in results)
    ids = [x["id"] for x in log["runs"][0]["tool"]["driver"]["rules"]]
    assert sorted(ids) == ids == ["invalid-condition-key", "invalid-ip-block"]


def test_sarif_without_a_docs_url_has_no_help_uri(capsys):
    _, out, _ = run(capsys, "analyze", SEED, "-o", "sarif")
    rules = json.loads(out)["runs"][0]["tool"]["driver"]["rules"]
    assert not [r for r in rules if "helpUri" in r]
    code, _, err = run(capsys, "analyze", SEED, "-o", "sarif", "--docs-url", "docs/analyze.md")
    assert code == 2 and "--docs-url" in err

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

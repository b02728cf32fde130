"""Every code has a failing and a passing fixture (tests/analyze/fixtures/CODE/,
each added to fixtures/base.yaml), is documented in docs/analyze.md with an
example, and every witness a finding shows is what check decides."""

from __future__ import annotations

import json
import re

import pytest

from meshauthz.analyze import CODES
from tests.analyze.helpers import FIXED, SEED, analyze_json, codes, run
from tests.conftest import REPO

FIXTURES = REPO / "tests/analyze/fixtures"
BASE = str(FIXTURES / "base.yaml")
DOC = REPO / "docs/analyze.md"
# The codes only analyze --deep reports (the symbolic engine's).
DEEP = {"MA2014", "MA2015", "MA2016"}


def _deep(code: str) -> tuple[str, ...]:
    return ("--deep",) if code in DEEP else ()


def test_every_code_has_fixtures():
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(CODES)


@pytest.mark.parametrize("code", sorted(CODES))
def test_failing_fixture_has_the_finding(capsys, code):
    _, doc = analyze_json(capsys, BASE, str(FIXTURES / code / "fail.yaml"), *_deep(code))
    assert code in codes(doc)


@pytest.mark.parametrize("code", sorted(CODES))
def test_passing_fixture_does_not(capsys, code):
    status, doc = analyze_json(capsys, BASE, str(FIXTURES / code / "pass.yaml"), *_deep(code))
    assert code not in codes(doc)
    assert status in (0, 1)


def test_base_alone_has_no_finding(capsys):
    status, doc = analyze_json(capsys, BASE)
    assert (status, doc["findings"]) == (0, [])


def _witnessed():
    inputs = [[SEED], [FIXED]] + [[BASE, str(FIXTURES / c / "fail.yaml")] for c in sorted(CODES)]
    return inputs


@pytest.mark.parametrize("paths", _witnessed(), ids=lambda p: p[-1].split("tests/")[-1])
def test_every_witness_is_what_check_decides(capsys, tmp_path, paths):
    deep = ("--deep",) if any(f"/{c}/" in paths[-1] for c in DEEP) else ()
    _, doc = analyze_json(capsys, *paths, *deep)
    for f in doc["findings"]:
        w = f["witness"]
        if w is None:
            continue
        req = tmp_path / "request.json"
        req.write_text(json.dumps(w["request"]))
        args = [a for p in paths for a in ("-f", p)]
        status, out, _ = run(capsys, "check", *args, "--request", str(req), "-o", "json")
        assert status == 0
        d = json.loads(out)
        got = (d["decision"], d["stage"], d["policy"], d["rule"], d["status"])
        assert got == (w["decision"], w["stage"], w["policy"], w["rule"], w["status"]), f


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_is_documented_with_an_example(code):
    text = DOC.read_text()
    m = re.search(rf"^### {code}: ([^\n]+)\n(.*?)(?=^### |\Z)", text, re.M | re.S)
    assert m, code
    assert CODES[code].name in m.group(1)
    assert "```yaml" in m.group(2), f"{code} has no example"

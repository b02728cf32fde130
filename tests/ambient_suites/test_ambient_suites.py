"""Istio's ambient integration tests (tests/integration/ambient/baseline_test.go)
ported as ``meshauthz test`` suites: each names its source; meshauthz must pass them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshauthz.suite import find_suites, load_suite, run_files

HERE = Path(__file__).parent
SUITES = find_suites([str(HERE)])
NAMES = [load_suite(p).name for p in SUITES]


def test_every_suite_names_its_source():
    assert len(SUITES) == 18
    for path, name in zip(SUITES, NAMES, strict=True):
        head = Path(path).read_text().splitlines()[0]
        assert (
            head == f"# Ported from istio/istio tests/integration/ambient/baseline_test.go: {name}"
        )
        assert Path(path).parent.name == name.split("/")[0], path


@pytest.mark.parametrize("path", SUITES, ids=NAMES)
def test_ambient_suite_passes(path: str):
    (s,) = run_files([path]).suites
    assert s.error is None, str(s.error)
    assert not s.findings, [f.to_text() for f in s.findings]
    failed = [
        f"{c.case.name}: {'; '.join(c.mismatches) or c.error}" for c in s.cases if not c.passed
    ]
    assert failed == []
    assert s.cases

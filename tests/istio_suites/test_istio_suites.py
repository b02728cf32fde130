"""Istio's own integration tests (istio/istio tests/integration/security
authz_test.go and jwt_test.go), ported as ``meshauthz test`` suites: one suite
per Istio test function, each naming its source; meshauthz must pass them all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshauthz.suite import find_suites, load_suite, run_files

HERE = Path(__file__).parent
SUITES = find_suites([str(HERE)])
NAMES = [load_suite(p).name for p in SUITES]  # the Istio test function (/subtest)

# Every test function of authz_test.go and jwt_test.go (func Test... in istio/istio).
FUNCTIONS = {
    *(
        f"TestAuthz_{n}"
        for n in [
            "Principal",
            "ServiceAccount",
            "TrustDomain",
            "DenyPrincipal",
            "Namespace",
            "DenyNamespace",
            "NotNamespace",
            "NotHost",
            "NotMethod",
            "NotPort",
            "DenyPlaintext",
            "JWT",
            "WorkloadSelector",
            "PathPrecedence",
            "PathTemplating",
            "IngressGateway",
            "EgressGateway",
            "Conditions",
            "PathNormalization",
            "CustomServer",
        ]
    ),
    "TestRequestAuthentication",
    "TestIngressRequestAuthentication",
    "TestGatewayAPIRequestAuthentication",
}


def _failures(path: str) -> list[str]:
    (s,) = run_files([path]).suites
    assert s.error is None, str(s.error)
    assert not s.findings, [f.to_text() for f in s.findings]
    return [f"{c.case.name}: {'; '.join(c.mismatches) or c.error}" for c in s.cases if not c.passed]


def test_every_suite_names_its_source():
    assert len(SUITES) >= 25
    for path, name in zip(SUITES, NAMES, strict=True):
        head = Path(path).read_text().splitlines()[0]
        assert head.startswith("# Ported from istio/istio tests/integration/security/"), path
        assert head.endswith(f": {name}"), path
        # <Function>/<Function>.test.yaml, or <Function>/<Function>.<subtest>.test.yaml for a
        # function whose subtests apply configurations of their own
        function = name.split("/")[0]
        assert Path(path).parent.name == function, path
        assert Path(path).name == name.replace("/", ".") + ".test.yaml", path


def test_every_istio_test_function_has_its_suites():
    assert {n.split("/")[0] for n in NAMES} == FUNCTIONS


@pytest.mark.parametrize("path", SUITES, ids=NAMES)
def test_istio_suite_passes(path: str):
    assert _failures(path) == []

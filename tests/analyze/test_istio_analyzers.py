"""Istio's own analyzer test inputs give the messages Istio's test expects.

Expectations from istio/istio pkg/config/analysis/analyzers/analyzers_test.go
(commit in tests/conformance/istio/README.md), cases "authorizationpolicies"
(auth.AuthorizationPoliciesAnalyzer) and "KubernetesGatewaySelector"
(k8sgateway.SelectorAnalyzer): each finding of ours that names one of those
analyzers' codes among its equivalents is one of Istio's messages, and every
one of Istio's messages is there.
"""

from __future__ import annotations

from collections import Counter

from tests.analyze.helpers import analyze_json
from tests.conftest import CONFORMANCE

TESTDATA = CONFORMANCE / "pkg/config/analysis/analyzers/testdata"

# analyzers_test.go, case "authorizationpolicies"
AUTHORIZATION_POLICIES = [
    ("IST0127", "AuthorizationPolicy istio-system/meshwide-httpbin-v1"),
    ("IST0127", "AuthorizationPolicy httpbin-empty/httpbin-empty-namespace-wide"),
    ("IST0127", "AuthorizationPolicy httpbin/httpbin-nopods"),
    ("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-ns"),
    ("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-ns"),
    ("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-not-ns"),
    ("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-not-ns"),
    ("IST0127", "AuthorizationPolicy test-ambient/no-workload"),
]

# analyzers_test.go, case "KubernetesGatewaySelector" (the kinds meshauthz reads)
GATEWAY_SELECTOR = [
    ("IST0166", "RequestAuthentication default/ra-ineffective"),
    ("IST0166", "AuthorizationPolicy default/ap-ineffective"),
]


def _istio_messages(doc, codes):
    out = []
    for f in doc["findings"]:
        for eq in f["equivalents"]:
            if eq in codes:
                r = f["resource"]
                out.append((eq, f"{r['kind']} {r['namespace']}/{r['name']}"))
    return out


def test_authorization_policies_analyzer(capsys):
    _, doc = analyze_json(capsys, str(TESTDATA / "authorizationpolicies.yaml"))
    got = _istio_messages(doc, {"IST0127", "IST0101"})
    assert Counter(got) == Counter(AUTHORIZATION_POLICIES)


def test_namespace_findings_point_at_the_value(capsys):
    # Istio reports the line of {.spec.rules[i].from[j].source.namespaces[k]}
    _, doc = analyze_json(capsys, str(TESTDATA / "authorizationpolicies.yaml"))
    lines = {
        (f["resource"]["name"], f["field"]): f["line"]
        for f in doc["findings"]
        if f["code"] == "MA1002"
    }
    text = (TESTDATA / "authorizationpolicies.yaml").read_text().splitlines()
    for (_, field), line in lines.items():
        value = '"*-bogus"' if field.endswith("[2]") else '"bogus-*"'
        assert value in text[line - 1], field


def test_kubernetes_gateway_selector_analyzer(capsys):
    _, doc = analyze_json(capsys, str(TESTDATA / "k8sgateway-selector.yaml"))
    got = _istio_messages(doc, {"IST0166"})
    assert Counter(got) == Counter(GATEWAY_SELECTOR)

"""Istio's value-check test cases (pkg/config/security/security_test.go), run through
whole policies so that the check is pinned where validation really applies it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from meshauthz.resources.validation.authz import is_valid_literal
from meshauthz.resources.validation.gosyntax import jwks_uri_error
from tests.validation.validation_helpers import HERE, check_object, errors, show

CASES: dict[str, list[dict[str, Any]]] = yaml.safe_load(
    (HERE / "istio_security_cases.yaml").read_text()
)


def _params(test: str) -> list[Any]:
    out = []
    for case in CASES[test]:
        ident = case.get("name") or case.get("in") or f"{case['key']}={json.dumps(case['values'])}"
        out.append(pytest.param(case, id=ident))
    return out


def _policy(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "foo"},
        "spec": {"rules": [rule]},
    }


def _assert_outcome(obj: dict[str, Any], valid: bool) -> None:
    _, findings = check_object(obj)
    if valid:
        assert not errors(findings), show(findings)
    else:
        assert errors(findings), f"expected a rejection\n{show(findings)}"


@pytest.mark.parametrize("case", _params("TestValidateCondition"))
def test_validate_condition(case: dict[str, Any]) -> None:
    when = {"key": case["key"], "values": case["values"]}
    _assert_outcome(_policy({"when": [when]}), case["valid"])
    # The same check applies to notValues.
    when = {"key": case["key"], "notValues": case["values"]}
    _assert_outcome(_policy({"when": [when]}), case["valid"])


@pytest.mark.parametrize("case", _params("TestCheckValidPathTemplate"))
def test_check_valid_path_template(case: dict[str, Any]) -> None:
    for field in ("paths", "notPaths"):
        rule = {"to": [{"operation": {field: case["values"]}}]}
        _assert_outcome(_policy(rule), case["valid"])


@pytest.mark.parametrize("case", _params("TestIsValidLiteral"))
def test_is_valid_literal(case: dict[str, Any]) -> None:
    assert is_valid_literal(case["glob"]) is case["valid"]


@pytest.mark.parametrize("case", _params("TestCheckWildcardValues"))
def test_check_wildcard_values(case: dict[str, Any]) -> None:
    # Istio applies this check to the values of the source.trustDomain condition.
    when = {"key": "source.trustDomain", "values": case["values"]}
    _assert_outcome(_policy({"when": [when]}), case["valid"])


@pytest.mark.parametrize("case", _params("TestCheckTrustDomainValues"))
def test_check_trust_domain_values(case: dict[str, Any]) -> None:
    for field in ("trustDomains", "notTrustDomains"):
        _assert_outcome(_policy({"from": [{"source": {field: case["values"]}}]}), case["valid"])


@pytest.mark.parametrize("case", _params("TestParseJwksURI"))
def test_parse_jwks_uri(case: dict[str, Any]) -> None:
    assert (jwks_uri_error(case["in"]) is None) is case["valid"]
    ra = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "ra", "namespace": "foo"},
        "spec": {"jwtRules": [{"issuer": "example.com", "jwksUri": case["in"]}]},
    }
    _assert_outcome(ra, case["valid"])

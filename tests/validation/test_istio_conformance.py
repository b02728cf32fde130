"""Istio's own validation data: the CRD test documents and validation_test.go cases."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshauthz.resources.yamlload import Document, parse_documents
from tests.validation.validation_helpers import (
    CRD_TESTDATA,
    HERE,
    check_documents,
    check_object,
    errors,
    show,
    warnings,
)


def _crd_documents(name: str) -> list[Document]:
    path = CRD_TESTDATA / name
    docs = parse_documents(path.read_text(), str(path))
    for doc in docs:
        doc.data.pop("_err", None)  # Istio's expected error text, not part of the object
    return docs


def _crd_params(name: str) -> list[Any]:
    return [pytest.param(doc, id=doc.data["metadata"]["name"]) for doc in _crd_documents(name)]


@pytest.mark.parametrize("doc", _crd_params("authz-valid.yaml"))
def test_crd_authz_valid(doc: Document) -> None:
    loaded, findings = check_documents([doc])
    assert not errors(findings), show(findings)
    assert len(loaded.manifests.authorization_policies) == 1


@pytest.mark.parametrize("doc", _crd_params("authz-invalid.yaml"))
def test_crd_authz_invalid(doc: Document) -> None:
    _, findings = check_documents([doc])
    assert errors(findings), "expected a rejection"


def _istio_cases(test: str) -> list[Any]:
    cases = yaml.safe_load((HERE / "istio_cases.yaml").read_text())
    params = []
    for case in cases:
        if case["test"] != test:
            continue
        marks = [pytest.mark.skip(reason=case["skip"])] if "skip" in case else []
        params.append(pytest.param(case, id=case["name"], marks=marks))
    return params


def _check_case(case: dict[str, Any]) -> None:
    loaded, findings = check_object(case["object"])
    errs, warns = errors(findings), warnings(findings)
    expect = case["expect"]
    if expect in ("valid", "warning"):
        assert not errs, show(findings)
        assert len(loaded.manifests.all()) == 1
    else:
        assert errs, f"expected an error\n{show(findings)}"
    if expect in ("warning", "error+warning"):
        assert warns, f"expected a warning\n{show(findings)}"
    else:
        assert not warns, show(findings)


@pytest.mark.parametrize("case", _istio_cases("TestValidateAuthorizationPolicy"))
def test_validate_authorization_policy(case: dict[str, Any]) -> None:
    _check_case(case)


@pytest.mark.parametrize("case", _istio_cases("TestValidateRequestAuthentication"))
def test_validate_request_authentication(case: dict[str, Any]) -> None:
    _check_case(case)


@pytest.mark.parametrize("case", _istio_cases("TestValidatePeerAuthentication"))
def test_validate_peer_authentication(case: dict[str, Any]) -> None:
    _check_case(case)


def test_cases_file_is_complete() -> None:
    """Every case of the three Go test functions is in the data file (counts at the commit)."""
    cases = yaml.safe_load((HERE / "istio_cases.yaml").read_text())
    counts: dict[str, int] = {}
    for case in cases:
        counts[case["test"]] = counts.get(case["test"], 0) + 1
    assert counts == {
        "TestValidateAuthorizationPolicy": 67,
        "TestValidateRequestAuthentication": 29,
        "TestValidatePeerAuthentication": 9,
    }


def _authn_crd_params() -> list[Any]:
    path = HERE / "istio_crd_authn.yaml"
    params = []
    for doc in parse_documents(path.read_text(), str(path)):
        expect = doc.data.pop("_expect")
        doc.data.pop("_err", None)
        ident = f"{doc.data['kind']}-{expect}-{doc.data['metadata']['name']}"
        params.append(pytest.param(doc, expect, id=ident))
    return params


@pytest.mark.parametrize(("doc", "expect"), _authn_crd_params())
def test_crd_authn(doc: Document, expect: str) -> None:
    """Istio's reqauth/peerauth CRD documents (copied into istio_crd_authn.yaml)."""
    _, findings = check_documents([doc])
    if expect == "valid":
        assert not errors(findings), show(findings)
    else:
        assert errors(findings), "expected a rejection"

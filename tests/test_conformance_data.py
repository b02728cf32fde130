"""Istio's test data travels with the project: the conformance tests read it from
tests/conformance/istio, never from outside the repository, and an empty
parametrization (data missing) would silently run nothing, so its presence is a test."""

from __future__ import annotations

from tests.conftest import CONFORMANCE, REPO

BUILDER = CONFORMANCE / "pilot/pkg/security/authz/builder/testdata"


def test_istio_data_is_in_the_repository_with_its_license_and_commit() -> None:
    assert CONFORMANCE.is_relative_to(REPO)
    assert "Apache License" in (CONFORMANCE / "LICENSE").read_text()
    assert "86c9f01fd735fb01d8192f5bcaf0d424afb7f14c" in (CONFORMANCE / "README.md").read_text()


def test_builder_goldens_are_all_there() -> None:
    # the golden inputs (http and tcp) and outputs at the commit in the README
    inputs = sorted(BUILDER.glob("*/*-in.yaml"))
    assert len(inputs) == 27
    assert len(sorted(BUILDER.glob("*/*-out*.yaml"))) == 64


def test_validation_and_ambient_data_are_there() -> None:
    crds = CONFORMANCE / "pkg/config/validation/testdata/crds"
    assert (crds / "authz-valid.yaml").is_file()
    assert (crds / "authz-invalid.yaml").is_file()
    ambient = CONFORMANCE / "pilot/pkg/serviceregistry/ambient/testdata"
    assert len(list(ambient.glob("*-in.yaml"))) == 22

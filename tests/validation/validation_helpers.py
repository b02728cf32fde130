from __future__ import annotations

from pathlib import Path

import yaml

from meshauthz.resources.findings import Finding
from meshauthz.resources.loader import LoadResult, load_documents
from meshauthz.resources.validation import validate
from meshauthz.resources.yamlload import Document, parse_documents
from tests.conftest import CONFORMANCE

REPO = Path(__file__).resolve().parents[2]
CRD_TESTDATA = CONFORMANCE / "pkg/config/validation/testdata/crds"
HERE = Path(__file__).resolve().parent


def check_documents(docs: list[Document]) -> tuple[LoadResult, list[Finding]]:
    """Load and validate: the loader's schema findings plus Istio's validation."""
    loaded = load_documents(docs)
    return loaded, loaded.findings + validate(loaded.manifests)


def check_text(text: str, file: str = "case.yaml") -> tuple[LoadResult, list[Finding]]:
    return check_documents(parse_documents(text, file))


def check_object(obj: dict[str, object]) -> tuple[LoadResult, list[Finding]]:
    return check_text(yaml.safe_dump(obj, sort_keys=False))


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def warnings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "warning"]


def show(findings: list[Finding]) -> str:
    return "\n".join(f.to_text() for f in findings) or "(no findings)"

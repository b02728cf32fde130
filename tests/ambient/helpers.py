"""Building typed Istio objects from YAML text for the ambient tests."""

from __future__ import annotations

from typing import Any

import yaml

from meshauthz.resources.loader import load_documents
from meshauthz.resources.objects import AuthorizationPolicy, Manifests
from meshauthz.resources.yamlload import parse_documents


def manifests(*objects: dict[str, Any]) -> Manifests:
    text = yaml.safe_dump_all(list(objects), sort_keys=False)
    return load_documents(parse_documents(text, "test.yaml")).manifests


def authorization_policy(
    spec: dict[str, Any], *, name: str = "p", namespace: str = "echo", annotations: Any = None
) -> AuthorizationPolicy:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    doc = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": meta,
        "spec": spec,
    }
    (ap,) = manifests(doc).authorization_policies
    return ap

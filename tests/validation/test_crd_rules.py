"""Rules that Istio's CRD (manifests/charts/base/files/crd-all.gen.yaml at commit
86c9f01fd735fb01d8192f5bcaf0d424afb7f14c) declares beyond types. Each case names
the schema rule it exercises; the expectation is that rule's outcome."""

from __future__ import annotations

from typing import Any

import pytest

from tests.validation.validation_helpers import check_object, errors, show


def _ap(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "foo"},
        "spec": spec,
    }


def _ra(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "r", "namespace": "foo"},
        "spec": {"jwtRules": [{"issuer": "example.com", **rule}]},
    }


def _pa(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "pa", "namespace": "foo"},
        "spec": spec,
    }


SA16 = [f"ns/sa{i}" for i in range(16)]
GW = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}

# (id, object, expected error code or None for accepted)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    # serviceAccounts: maxItems 16, items maxLength 320
    (
        "serviceAccounts-16",
        _ap({"rules": [{"from": [{"source": {"serviceAccounts": SA16}}]}]}),
        None,
    ),
    (
        "serviceAccounts-17",
        _ap({"rules": [{"from": [{"source": {"serviceAccounts": [*SA16, "x/y"]}}]}]}),
        "too-many-items",
    ),
    (
        "serviceAccounts-321-chars",
        _ap({"rules": [{"from": [{"source": {"notServiceAccounts": ["n/" + "a" * 319]}}]}]}),
        "too-long",
    ),
    # rules / from: maxItems 512
    ("rules-513", _ap({"rules": [{}] * 513}), "too-many-items"),
    (
        "from-513",
        _ap({"rules": [{"from": [{"source": {"principals": ["a"]}}] * 513}]}),
        "too-many-items",
    ),
    # CEL on source: has() sees a present but empty list
    (
        "serviceAccounts-empty-list-with-namespaces",
        _ap({"rules": [{"from": [{"source": {"serviceAccounts": [], "namespaces": ["a"]}}]}]}),
        "service-accounts-with-principals-or-namespaces",
    ),
    # CEL on spec: at most one of selector, targetRef, targetRefs (has() of an empty list)
    (
        "selector-and-empty-targetRefs",
        _ap({"selector": {"matchLabels": {"a": "b"}}, "targetRefs": []}),
        "selector-and-target-ref",
    ),
    (
        "targetRef-and-targetRefs",
        _ap({"targetRef": GW, "targetRefs": [GW]}),
        "selector-and-target-ref",
    ),
    ("targetRefs-17", _ap({"targetRefs": [GW] * 17}), "too-many-items"),
    ("targetRef-kind-empty", _ap({"targetRef": {**GW, "kind": ""}}), "target-ref-kind"),
    ("targetRef-name-254", _ap({"targetRef": {**GW, "name": "a" * 254}}), "too-long"),
    (
        "targetRef-group-core",
        _ap({"targetRef": {"group": "core", "kind": "Service", "name": "s"}}),
        None,
    ),
    # matchLabels: value maxLength 63, no wildcard, key not empty
    ("label-value-63", _ap({"selector": {"matchLabels": {"a": "v" * 63}}}), None),
    ("label-value-64", _ap({"selector": {"matchLabels": {"a": "v" * 64}}}), "too-long"),
    # jwtRules: only one of jwks, jwksUri, jwks_uri; jwksUri length and scheme
    (
        "jwks-and-jwksUri",
        _ra({"jwks": '{"keys":[]}', "jwksUri": "https://example.com/k"}),
        "multiple-jwks-sources",
    ),
    (
        "jwksUri-and-jwks_uri",
        _ra({"jwksUri": "https://example.com/k", "jwks_uri": "https://example.com/k"}),
        "multiple-jwks-sources",
    ),
    ("jwks_uri-ftp", _ra({"jwks_uri": "ftp://example.com/k"}), "invalid-jwks-uri"),
    ("jwksUri-2049", _ra({"jwksUri": "https://e.com/" + "a" * 2035}), "too-long"),
    ("jwksUri-fragment-in-host", _ra({"jwksUri": "https://example.com#frag"}), "invalid-jwks-uri"),
    ("spaceDelimitedClaims-65", _ra({"spaceDelimitedClaims": ["c"] * 65}), "too-many-items"),
    ("timeout-1ms", _ra({"timeout": "1ms"}), None),
    ("timeout-0.5ms", _ra({"timeout": "0.5ms"}), "invalid-timeout"),
    ("issuer-empty-string", _ra({"issuer": "", "jwksUri": "https://example.com/k"}), "empty-value"),
    # PeerAuthentication: portLevelMtls keys 1-65535, minProperties 1, needs selector labels
    (
        "port-65535",
        _pa(
            {
                "selector": {"matchLabels": {"a": "b"}},
                "portLevelMtls": {"65535": {"mode": "STRICT"}},
            }
        ),
        None,
    ),
    (
        "port-65536",
        _pa(
            {
                "selector": {"matchLabels": {"a": "b"}},
                "portLevelMtls": {"65536": {"mode": "STRICT"}},
            }
        ),
        "invalid-port",
    ),
    (
        "port-level-empty-selector",
        _pa({"selector": {}, "portLevelMtls": {"80": {"mode": "STRICT"}}}),
        "port-level-mtls-without-selector",
    ),
]


@pytest.mark.parametrize(("obj", "code"), [pytest.param(o, c, id=i) for i, o, c in CASES])
def test_crd_rule(obj: dict[str, Any], code: str | None) -> None:
    _, findings = check_object(obj)
    if code is None:
        assert not errors(findings), show(findings)
    else:
        assert code in {f.code for f in errors(findings)}, show(findings)

"""Serialization: Istio's golden RBAC filters round-trip; bad input names its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.envoy.rbac.errors import RbacConfigError
from meshauthz.envoy.rbac.model import HttpRbacFilter, NetworkRbacFilter
from meshauthz.envoy.rbac.serialize import filter_to_dict, parse_filter, parse_permission
from tests.conftest import CONFORMANCE

GOLDEN = CONFORMANCE / "pilot/pkg/security/authz/builder/testdata"
HTTP_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


def _rbac_goldens() -> list[Path]:
    out = []
    for p in sorted(GOLDEN.glob("*/*-out*.yaml")):
        d = yaml.safe_load(p.read_text())
        if ".rbac.v3.RBAC" in d.get("typedConfig", {}).get("@type", ""):
            out.append(p)
    return out


GOLDENS = _rbac_goldens()


@pytest.mark.skipif(not GOLDENS, reason="Istio golden files not available")
@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_round_trip(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    f = parse_filter(data)
    assert isinstance(f, HttpRbacFilter | NetworkRbacFilter)
    assert filter_to_dict(f) == data
    # snake_case output parses back to the same model
    snake = filter_to_dict(f, "snake")
    assert "typed_config" in snake
    assert parse_filter(snake) == f


def _http(rules: dict[str, Any]) -> dict[str, Any]:
    return {"name": "envoy.filters.http.rbac", "typedConfig": {"@type": HTTP_TYPE, "rules": rules}}


def _policy(perm: dict[str, Any]) -> dict[str, Any]:
    return {"policies": {"p": {"permissions": [perm], "principals": [{"any": True}]}}}


def test_snake_and_camel_inputs_are_equal() -> None:
    camel = {"andRules": {"rules": [{"urlPath": {"path": {"prefix": "/a", "ignoreCase": True}}}]}}
    snake = {
        "and_rules": {"rules": [{"url_path": {"path": {"prefix": "/a", "ignore_case": True}}}]}
    }
    assert parse_permission(camel) == parse_permission(snake)


def test_policy_order_is_kept() -> None:
    rules = {"policies": {n: _policy({"any": True})["policies"]["p"] for n in ("z", "a", "m")}}
    f = parse_filter(_http(rules))
    assert [n for n, _ in f.rules.policies] == ["z", "a", "m"]  # type: ignore[union-attr]
    assert list(filter_to_dict(f)["typedConfig"]["rules"]["policies"]) == ["z", "a", "m"]


def test_proto3_defaults_omitted() -> None:
    perm = {"header": {"name": "x", "stringMatch": {"exact": "", "ignoreCase": False}}}
    f = parse_filter(_http({"action": "ALLOW", **_policy(perm)}))
    out = filter_to_dict(f)["typedConfig"]["rules"]
    assert "action" not in out
    assert out["policies"]["p"]["permissions"][0] == {
        "header": {"name": "x", "stringMatch": {"exact": ""}}
    }


@pytest.mark.parametrize(
    ("perm", "path"),
    [
        (
            {"andRules": {"rules": [{"any": True}, {"any": True}, {"bogus": 1}]}},
            'typedConfig.rules.policies["p"].permissions[0].andRules.rules[2].bogus',
        ),
        ({"any": False}, 'typedConfig.rules.policies["p"].permissions[0].any'),
        (
            {"destinationPort": "x"},
            'typedConfig.rules.policies["p"].permissions[0].destinationPort',
        ),
        (
            {"destinationPort": 70000},
            'typedConfig.rules.policies["p"].permissions[0].destinationPort',
        ),
        ({"header": {"name": "a"}, "any": True}, 'typedConfig.rules.policies["p"].permissions[0]'),
        (
            {"urlPath": {"path": {"prefix": ""}}},
            'typedConfig.rules.policies["p"].permissions[0].urlPath.path.prefix',
        ),
        (
            {"urlPath": {"path": {"safeRegex": {"regex": "("}}}},
            'typedConfig.rules.policies["p"].permissions[0].urlPath.path.safeRegex.regex',
        ),
        ([], 'typedConfig.rules.policies["p"].permissions[0]'),
    ],
)
def test_errors_name_the_path(perm: Any, path: str) -> None:
    with pytest.raises(RbacConfigError) as e:
        parse_filter(_http(_policy(perm)))
    assert e.value.path == path
    assert isinstance(e.value, ValueError)
    assert path in str(e.value)


def test_ignore_case_on_safe_regex_is_rejected() -> None:
    """Verified against Envoy 1.40: loading fails with
    "ignore_case has no effect for safe_regex."."""
    perm = {
        "header": {"name": "x", "stringMatch": {"safeRegex": {"regex": "a"}, "ignoreCase": True}}
    }
    with pytest.raises(RbacConfigError, match="ignore_case"):
        parse_filter(_http(_policy(perm)))


def test_network_filter_rejects_header_rules() -> None:
    """Verified against Envoy 1.40: "Found header(...) rule, not supported by RBAC network filter"."""
    d = {
        "name": "envoy.filters.network.rbac",
        "typedConfig": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
            "statPrefix": "tcp.",
            "rules": _policy({"notRule": {"header": {"name": "x", "presentMatch": True}}}),
        },
    }
    with pytest.raises(RbacConfigError, match="network filter"):
        parse_filter(d)


def test_empty_policy_lists_are_rejected() -> None:
    with pytest.raises(RbacConfigError, match="at least 1"):
        parse_filter(_http({"policies": {"p": {"permissions": [{"any": True}]}}}))


def test_not_an_rbac_filter() -> None:
    d = {
        "name": "x",
        "typedConfig": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
        },
    }
    with pytest.raises(RbacConfigError, match="not an RBAC filter"):
        parse_filter(d)

"""istiod's naming convention (meshauthz.translate.naming): each writer and its
parser round-trip, and every name in Istio's golden builder outputs is one the
module parses and writes back identically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.envoy.rbac.model import Action, HttpRbacFilter, NetworkRbacFilter
from meshauthz.resources.loader import load
from meshauthz.translate import BuildOptions, Chain, build, naming
from tests.translate.test_golden import HTTP_CASES, KNOWN_SERVICES, TCP_CASES, TESTDATA, _applies


def test_policy_name_round_trips() -> None:
    for provider in (None, "", "default", "my-provider"):
        for bad in (False, True):
            pn = naming.PolicyName("ns-1", "my.policy-2", 12, provider, bad)
            assert naming.parse_policy_name(str(pn)) == pn
    assert naming.policy_name("foo", "httpbin", 0) == "ns[foo]-policy[httpbin]-rule[0]"
    assert (
        naming.policy_name("foo", "httpbin-1", 3, provider="default")
        == "istio-ext-authz-default-ns[foo]-policy[httpbin-1]-rule[3]"
    )
    assert naming.parse_policy_name("allow-all") is None
    assert naming.parse_policy_name("ns[foo]-policy[p]-rule[x]") is None


def test_prefixes_round_trip() -> None:
    for provider in ("default", "another", "a-b"):
        enabled = naming.custom_enabled_prefix(provider)
        assert naming.provider_of_enabled_prefix(enabled) == provider
        rule = naming.policy_name("foo", "p", 0, provider=provider)
        assert rule.startswith(naming.custom_rule_prefix(provider))
        assert rule.startswith(enabled)  # what ext_authz's filter_enabled_metadata checks
    assert naming.provider_of_enabled_prefix(naming.custom_enabled_prefix(None)) is None
    for action in (Action.ALLOW, Action.DENY):
        assert naming.dry_run_action(naming.dry_run_stat_prefix(action)) is action
    assert naming.dry_run_stat_prefix(Action.LOG) == ""


def _goldens() -> list[Path]:
    if not TESTDATA.is_dir():
        return []
    return sorted(TESTDATA.glob("*/*-out*.yaml"))


def _walk(node: Any, key: str) -> list[Any]:
    """Every value under ``key`` anywhere in a YAML document."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found += _walk(v, key)
    elif isinstance(node, list):
        for v in node:
            found += _walk(v, key)
    return found


@pytest.mark.skipif(not _goldens(), reason=f"golden data not found at {TESTDATA}")
def test_names_in_istio_goldens() -> None:
    names = prefixes = stat_prefixes = 0
    for path in _goldens():
        doc = yaml.safe_load(path.read_text())
        for policies in _walk(doc, "policies"):
            for name in policies:
                parsed = naming.parse_policy_name(name)
                assert parsed is not None, (path.name, name)
                assert str(parsed) == name
                assert (parsed.provider is not None) == name.startswith(naming.CUSTOM_PREFIX)
                names += 1
        for match in _walk(doc, "stringMatch"):
            prefix = match.get("prefix", "")
            if prefix.startswith(naming.CUSTOM_PREFIX):
                provider = naming.provider_of_enabled_prefix(prefix)
                assert naming.custom_enabled_prefix(provider) == prefix
                prefixes += 1
        for sp in _walk(doc, "shadowRulesStatPrefix"):
            assert sp == naming.CUSTOM_SHADOW_STAT_PREFIX or naming.dry_run_action(sp) is not None
            stat_prefixes += 1
    assert names > 100 and prefixes >= 5 and stat_prefixes > 40


@pytest.mark.skipif(not _goldens(), reason=f"golden data not found at {TESTDATA}")
def test_filter_stage_reads_back_the_stage_the_builder_wrote() -> None:
    """For every golden case: the stage read from each RBAC filter's names and
    stat prefix is the stage the builder placed it in."""
    seen = set()
    for chain, cases in ((Chain.HTTP, HTTP_CASES), (Chain.TCP, TCP_CASES)):
        for case in cases:
            input_, _, trust_domains, provider = case.values
            base = TESTDATA / ("tcp" if chain is Chain.TCP else "http")
            loaded = load([str(base / input_)]).manifests.authorization_policies
            policies = [p for p in loaded if _applies(p)]
            options = BuildOptions(
                trust_domains=trust_domains,
                extension_providers=(provider,) if provider else (),
                known_services=KNOWN_SERVICES,
            )
            for bf in build(policies, chain, options).filters:
                if isinstance(bf.filter, HttpRbacFilter | NetworkRbacFilter):
                    assert naming.filter_stage(bf.filter) == bf.stage, (case.id, bf.stage)
                    seen.add(bf.stage)
    assert seen == {"CUSTOM", "AUDIT", "DENY", "ALLOW"}

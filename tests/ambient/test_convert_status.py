"""The status istiod writes on an AuthorizationPolicy for ztunnel, from Istio's
TestConvertAuthorizationPolicyStatus (data/convert_status.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.ambient.convert import (
    ACCEPTED_MESSAGE,
    convert_authorization_policy,
    has_effective_rules,
)
from meshauthz.ambient.flags import AmbientFlags
from tests.ambient.helpers import authorization_policy

CASES = yaml.safe_load((Path(__file__).parent / "data" / "convert_status.yaml").read_text())
ROOT = "test-system"  # rootns in authorization_test.go


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_convert_authorization_policy_status(case: dict[str, Any]) -> None:
    conv = convert_authorization_policy(ROOT, authorization_policy(case["spec"]))
    status = conv.status
    got = None if status is None else {"reason": status.reason, "message": status.message}
    assert got == case["status"]
    assert (conv.authorization is not None) == case["sent"]
    if "effectiveRules" in case:
        assert conv.authorization is not None
        assert has_effective_rules(conv.authorization.rules) == case["effectiveRules"]


def test_the_table_is_complete() -> None:
    assert len(CASES) == 12


# The dry-run gate and the condition are read from authorization.go
# (convertAuthorizationPolicy) and pilot/pkg/model/service.go (GetConditions);
# Istio has no table for them.
DRY_RUN = {"istio.io/dry-run": "true"}


def test_dry_run_is_refused_unless_the_flag_is_on() -> None:
    ap = authorization_policy({"action": "DENY", "rules": [{}]}, annotations=DRY_RUN)
    off = convert_authorization_policy("istio-system", ap)
    assert off.authorization is None
    assert off.condition is not None and off.condition.status is False
    assert off.condition.message == (
        'found policy "echo/p" using dry-run annotation, but support for ambient '
        "dry-run authorizationPolicies isn't enabled"
    )
    on = convert_authorization_policy("istio-system", ap, AmbientFlags(dry_run_authorization=True))
    assert on.authorization is not None and on.authorization.dry_run
    assert on.authorization.proto()["dryRun"] is True


def test_accepted_condition() -> None:
    conv = convert_authorization_policy("istio-system", authorization_policy({"rules": [{}]}))
    assert conv.condition is not None
    assert (conv.condition.status, conv.condition.reason, conv.condition.message) == (
        True,
        "Accepted",
        ACCEPTED_MESSAGE,
    )
    # A warning keeps the policy bound (Bound = pol != nil).
    warn = convert_authorization_policy(
        "istio-system", authorization_policy({"rules": [{"to": [{"operation": {"paths": ["/"]}}]}]})
    )
    assert warn.condition is not None and warn.condition.status is True
    assert warn.authorization is not None and warn.authorization.rules == ()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_http_attributes_are_the_ones_the_status_names(case: dict[str, Any]) -> None:
    from meshauthz.ambient.convert import http_attributes

    conv = convert_authorization_policy(ROOT, authorization_policy(case["spec"]))
    if conv.dropped_http:
        assert http_attributes(authorization_policy(case["spec"]).spec) == conv.dropped_http

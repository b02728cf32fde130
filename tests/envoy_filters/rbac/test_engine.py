"""Engine and filter semantics, checked against Envoy 1.40 where noted."""

from __future__ import annotations

from typing import Any

from meshauthz.envoy.rbac.evaluate import RbacInput, compile_filter, evaluate
from meshauthz.envoy.rbac.model import RBAC, Action, IdAny, PermAny, PermNot, Policy
from meshauthz.envoy.rbac.serialize import parse_filter

BOTH = Policy((PermAny(),), (IdAny(),))
NONE = Policy((PermNot(PermAny()),), (IdAny(),))
HTTP = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
INP = RbacInput(headers=[(":method", "GET"), (":path", "/")])


def test_effective_policy_is_first_in_byte_order() -> None:
    """Envoy 1.40: DENY policies zeta, beta, alpha2, alpha10 all matching ->
    403 with details rbac_access_denied_matched_policy[alpha10]; shadow
    policies zeta, Beta, beta -> shadow_effective_policy_id "Beta"."""
    r = RBAC(Action.DENY, tuple((n, BOTH) for n in ("zeta", "beta", "alpha2", "alpha10")))
    assert evaluate(r, INP).effective_policy_id == "alpha10"
    r = RBAC(Action.ALLOW, tuple((n, BOTH) for n in ("zeta", "Beta", "beta")))
    assert evaluate(r, INP).effective_policy_id == "Beta"


def test_actions() -> None:
    assert evaluate(RBAC(Action.ALLOW, (("a", BOTH),)), INP).allowed
    assert not evaluate(RBAC(Action.ALLOW, (("a", NONE),)), INP).allowed
    assert not evaluate(RBAC(Action.ALLOW), INP).allowed  # Envoy 1.40: empty ALLOW rules -> 403
    assert evaluate(RBAC(Action.DENY), INP).allowed
    assert not evaluate(RBAC(Action.DENY, (("a", BOTH),)), INP).allowed
    log = evaluate(RBAC(Action.LOG, (("a", BOTH),)), INP)
    assert log.allowed and log.should_log and log.effective_policy_id == "a"
    nolog = evaluate(RBAC(Action.LOG, (("a", NONE),)), INP)
    assert nolog.allowed and nolog.should_log is False


def _filter(typed: dict[str, Any]):
    return compile_filter(
        parse_filter({"name": "envoy.filters.http.rbac", "typedConfig": {"@type": HTTP, **typed}})
    )


ANY_POLICY = {"permissions": [{"any": True}], "principals": [{"any": True}]}
NO_POLICY = {"permissions": [{"notRule": {"any": True}}], "principals": [{"any": True}]}


def test_http_filter_metadata() -> None:
    """Dynamic metadata as logged by Envoy 1.40 (%DYNAMIC_METADATA(...)%)."""
    r = _filter(
        {
            "shadowRules": {"policies": {"zeta": ANY_POLICY, "Beta": ANY_POLICY}},
            "shadowRulesStatPrefix": "pfx_",
        }
    ).evaluate(INP)
    assert r.allowed and r.engine_result is None
    assert r.dynamic_metadata == {
        "envoy.filters.http.rbac": {
            "pfx_shadow_effective_policy_id": "Beta",
            "pfx_shadow_engine_result": "allowed",
        }
    }

    r = _filter({"shadowRules": {"policies": {"b": NO_POLICY}}}).evaluate(INP)
    assert r.dynamic_metadata == {"envoy.filters.http.rbac": {"shadow_engine_result": "denied"}}

    r = _filter({"rulesStatPrefix": "rp_", "rules": {"policies": {"p": ANY_POLICY}}}).evaluate(INP)
    assert r.dynamic_metadata == {
        "envoy.filters.http.rbac": {
            "rp_enforced_effective_policy_id": "p",
            "rp_enforced_engine_result": "allowed",
        }
    }

    r = _filter({"rules": {"policies": {"p": NO_POLICY}}}).evaluate(INP)
    assert not r.allowed
    assert r.response_code_details == "rbac_access_denied_matched_policy[none]"
    assert r.dynamic_metadata == {"envoy.filters.http.rbac": {"enforced_engine_result": "denied"}}

    r = _filter({"rules": {"action": "DENY", "policies": {"d": ANY_POLICY}}}).evaluate(INP)
    assert r.response_code_details == "rbac_access_denied_matched_policy[d]"
    assert r.effective_policy_id == "d"

    r = _filter({"rules": {"action": "LOG", "policies": {"b": ANY_POLICY}}}).evaluate(INP)
    assert r.allowed and r.dynamic_metadata == {
        "envoy.filters.http.rbac": {
            "enforced_effective_policy_id": "b",
            "enforced_engine_result": "allowed",
        },
        "envoy.common": {"access_log_hint": True},
    }

    # a LOG shadow engine reports "allowed" and sets no access_log_hint
    r = _filter({"shadowRules": {"action": "LOG", "policies": {"b": ANY_POLICY}}}).evaluate(INP)
    assert r.dynamic_metadata == {
        "envoy.filters.http.rbac": {
            "shadow_effective_policy_id": "b",
            "shadow_engine_result": "allowed",
        }
    }


def test_trace_points_at_first_failing_clause() -> None:
    f = _filter(
        {
            "rules": {
                "policies": {
                    "p": {
                        "permissions": [
                            {
                                "andRules": {
                                    "rules": [
                                        {"destinationPort": 80},
                                        {"urlPath": {"path": {"exact": "/x"}}},
                                    ]
                                }
                            }
                        ],
                        "principals": [{"any": True}],
                    }
                }
            }
        }
    )
    r = f.evaluate(RbacInput(headers=[(":path", "/y")], destination_port=80), trace=True)
    assert not r.allowed and r.enforced is not None and r.enforced.trace is not None
    (pt,) = r.enforced.trace
    assert not pt.matched and pt.principals[0].matched
    failing = pt.permissions[0].first_failure()
    assert failing is not None and type(failing.node).__name__ == "PermUrlPath"
    # traced and untraced evaluation agree
    assert (
        f.evaluate(RbacInput(headers=[(":path", "/y")], destination_port=80)).allowed == r.allowed
    )

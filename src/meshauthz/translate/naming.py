"""istiod's naming convention for what it writes into Envoy's RBAC filters, with its inverse.

istiod (pilot/pkg/security/authz/builder, model) names each Envoy policy after
the AuthorizationPolicy rule it comes from, ``ns[NS]-policy[NAME]-rule[N]``;
a CUSTOM policy's rule carries its provider's prefix
(``istio-ext-authz-PROVIDER-``), and a CUSTOM rule of an unusable provider,
denied instead, the suffix ``-deny-due-to-bad-CUSTOM-action``. The filters'
shadow (dry-run) rules report under a stat prefix that says their action, and
the CUSTOM marking filter under ``istio_ext_authz_``, whose effective policy
the ext_authz filter reads to decide whether to call its provider.

Everything that writes or reads these names goes through this module.
"""

from __future__ import annotations

import re
from typing import Literal

from msgspec import Struct

from meshauthz.envoy.rbac.model import Action, HttpRbacFilter, NetworkRbacFilter

CUSTOM_PREFIX = "istio-ext-authz"
CUSTOM_SHADOW_STAT_PREFIX = "istio_ext_authz_"
SHADOW_EFFECTIVE_POLICY_ID = "shadow_effective_policy_id"
# The dynamic metadata key the CUSTOM marking filter writes and ext_authz reads.
CUSTOM_MARK_KEY = CUSTOM_SHADOW_STAT_PREFIX + SHADOW_EFFECTIVE_POLICY_ID
DRY_RUN_ALLOW_STAT_PREFIX = "istio_dry_run_allow_"
DRY_RUN_DENY_STAT_PREFIX = "istio_dry_run_deny_"
BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action"

FilterStage = Literal["CUSTOM", "AUDIT", "DENY", "ALLOW"]


class PolicyName(Struct, frozen=True):
    """An Envoy policy name istiod wrote, taken apart."""

    namespace: str
    name: str
    rule: int
    provider: str | None = None  # CUSTOM: the provider ("" when the name carries none)
    bad_custom: bool = False  # the deny-all stand-in for an unusable CUSTOM provider

    @property
    def policy(self) -> str:
        """The AuthorizationPolicy, as ``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        name = policy_name(self.namespace, self.name, self.rule, provider=self.provider)
        return name + BAD_CUSTOM_SUFFIX if self.bad_custom else name


def policy_name(namespace: str, name: str, rule: int, *, provider: str | None = None) -> str:
    """The Envoy policy name of rule ``rule`` of AuthorizationPolicy ``namespace/name``
    (``provider``: of a CUSTOM policy)."""
    prefix = custom_rule_prefix(provider) if provider is not None else ""
    return f"{prefix}ns[{namespace}]-policy[{name}]-rule[{rule}]"


def custom_rule_prefix(provider: str) -> str:
    """The prefix of a CUSTOM policy's Envoy policy names."""
    return f"{CUSTOM_PREFIX}-{provider}-" if provider else f"{CUSTOM_PREFIX}-"


def bad_custom(envoy_name: str) -> str:
    """The name of the deny-all policy that stands for a rule of an unusable CUSTOM provider."""
    return envoy_name + BAD_CUSTOM_SUFFIX


# compiled on first use (re's cache), not at import: start-up
_POLICY_NAME = (
    r"(?:" + re.escape(CUSTOM_PREFIX) + r"-(?:(?P<provider>.+?)-)?)?"
    r"ns\[(?P<ns>[^\]]*)\]-policy\[(?P<name>[^\]]*)\]-rule\[(?P<rule>\d+)\]"
    r"(?P<bad>" + re.escape(BAD_CUSTOM_SUFFIX) + r")?"
)


def parse_policy_name(envoy_name: str) -> PolicyName | None:
    """The inverse of ``policy_name`` (and of the CUSTOM and bad-CUSTOM forms);
    None for a name istiod did not write."""
    m = re.fullmatch(_POLICY_NAME, envoy_name)
    if m is None:
        return None
    custom = envoy_name.startswith(CUSTOM_PREFIX + "-")
    return PolicyName(
        m["ns"],
        m["name"],
        int(m["rule"]),
        (m["provider"] or "") if custom else None,
        m["bad"] is not None,
    )


def custom_enabled_prefix(provider: str | None) -> str:
    """What an ext_authz filter's ``filter_enabled_metadata`` asks the marking
    filter's effective policy to start with: the provider's CUSTOM policies."""
    return CUSTOM_PREFIX if provider is None else f"{CUSTOM_PREFIX}-{provider}"


def provider_of_enabled_prefix(prefix: str) -> str | None:
    """The inverse of ``custom_enabled_prefix`` (None: not a CUSTOM prefix, or no provider)."""
    if prefix.startswith(CUSTOM_PREFIX + "-") and len(prefix) > len(CUSTOM_PREFIX) + 1:
        return prefix[len(CUSTOM_PREFIX) + 1 :]
    return None


def dry_run_stat_prefix(action: Action) -> str:
    """The shadow rules' stat prefix: it says what the dry-run policies would do."""
    if action is Action.ALLOW:
        return DRY_RUN_ALLOW_STAT_PREFIX
    if action is Action.DENY:
        return DRY_RUN_DENY_STAT_PREFIX
    return ""


def dry_run_action(stat_prefix: str) -> Action | None:
    """The inverse of ``dry_run_stat_prefix``."""
    return {DRY_RUN_ALLOW_STAT_PREFIX: Action.ALLOW, DRY_RUN_DENY_STAT_PREFIX: Action.DENY}.get(
        stat_prefix
    )


def filter_stage(f: HttpRbacFilter | NetworkRbacFilter) -> FilterStage:
    """The stage an RBAC filter istiod wrote belongs to: a CUSTOM marking (or
    bad-CUSTOM) filter by its names and stat prefix, the others by their action."""
    names = [n for r in (f.rules, f.shadow_rules) if r is not None for n, _ in r.policies]
    if f.shadow_rules_stat_prefix == CUSTOM_SHADOW_STAT_PREFIX or any(
        n.startswith(CUSTOM_PREFIX) for n in names
    ):
        return "CUSTOM"
    rbac = f.rules if f.rules is not None else f.shadow_rules
    action = rbac.action if rbac is not None else Action.ALLOW
    stages: dict[Action, FilterStage] = {
        Action.LOG: "AUDIT",
        Action.DENY: "DENY",
        Action.ALLOW: "ALLOW",
    }
    return stages[action]


__all__ = [
    "BAD_CUSTOM_SUFFIX",
    "CUSTOM_MARK_KEY",
    "CUSTOM_PREFIX",
    "CUSTOM_SHADOW_STAT_PREFIX",
    "DRY_RUN_ALLOW_STAT_PREFIX",
    "DRY_RUN_DENY_STAT_PREFIX",
    "FilterStage",
    "PolicyName",
    "bad_custom",
    "custom_enabled_prefix",
    "custom_rule_prefix",
    "dry_run_action",
    "dry_run_stat_prefix",
    "filter_stage",
    "parse_policy_name",
    "policy_name",
]

"""Istio AuthorizationPolicies -> Envoy RBAC and ext_authz filters, as istiod builds them."""

from meshauthz.envoy.ext_authz import ExtAuthzFilter
from meshauthz.translate.builder import (
    BuildOptions,
    BuildResult,
    BuiltFilter,
    Chain,
    Placement,
    build,
)
from meshauthz.translate.extauthz import ServiceRegistry
from meshauthz.translate.rule import Problem
from meshauthz.translate.trustdomain import TrustDomainBundle

__all__ = [
    "BuildOptions",
    "BuildResult",
    "BuiltFilter",
    "Chain",
    "ExtAuthzFilter",
    "Placement",
    "Problem",
    "ServiceRegistry",
    "TrustDomainBundle",
    "build",
]

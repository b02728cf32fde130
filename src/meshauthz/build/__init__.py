"""Istio AuthorizationPolicies -> Envoy RBAC and ext_authz filters, as istiod builds them."""

from meshauthz.build.builder import (
    BuildOptions,
    BuildResult,
    BuiltFilter,
    Chain,
    Placement,
    build,
)
from meshauthz.build.extauthz import ExtAuthzFilter, ServiceRegistry
from meshauthz.build.rule import Problem
from meshauthz.build.trustdomain import TrustDomainBundle

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

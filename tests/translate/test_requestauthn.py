"""RequestAuthentication -> the jwt_authn filter istiod builds.

Expectations from istio ``pilot/pkg/security/authn/policy_applier.go``
(``newPolicyApplier``, ``convertToEnvoyJwtConfig``,
``buildSpaceDelimitedClaims``) and its tests in ``policy_applier_test.go``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from meshauthz.envoy.jwt_authn import (
    AllowMissing,
    HeaderLocation,
    JwtPresented,
    ProviderName,
    RemoteJwks,
    RequirementRule,
    RequiresAll,
    RequiresAny,
    parse_jwks,
)
from meshauthz.resources.istio import JWTRule, RequestAuthenticationSpec
from meshauthz.translate.requestauthn import (
    apply_request_authentication,
    fake_jwks,
    jwt_authentication,
)

JWKS = json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "k"}]})


def rule(**kw: Any) -> JWTRule:
    return msgspec.convert({"issuer": "iss1", "jwks": JWKS, **kw}, JWTRule)


class _RA:
    """A RequestAuthentication record stand-in (what the filter reads: .spec)."""

    def __init__(self, *rules: dict[str, Any]) -> None:
        self.spec = msgspec.convert({"jwtRules": list(rules)}, RequestAuthenticationSpec)


def test_providers_sorted_by_issuer_across_policies() -> None:
    # policy_applier_test.go TestJwtFilter "Multi JWTs policy": foo's rule,
    # an empty policy, bar's rule => origins-0 is bar, origins-1 is foo.
    ras = [
        _RA({"issuer": "https://secret.foo.com", "jwksUri": "https://x/jwks"}),
        _RA(),
        _RA({"issuer": "https://secret.bar.com", "jwks": JWKS}),
    ]
    cfg = jwt_authentication(ras)
    assert cfg is not None
    assert [(p.name, p.issuer) for p in cfg.providers] == [
        ("origins-0", "https://secret.bar.com"),
        ("origins-1", "https://secret.foo.com"),
    ]
    foo = cfg.providers[1]
    assert foo.local_jwks is None and foo.remote_jwks == RemoteJwks("https://x/jwks")
    assert cfg.providers[0].local_jwks == JWKS
    assert all(p.payload_in_metadata == "payload" for p in cfg.providers)


def test_requirement_and_cors() -> None:
    # convertToEnvoyJwtConfig: one provider => requires_any{P, allow_missing};
    # several => requires_any{P0, P1, requires_all{any{Pi, allow_missing}...}}.
    one = jwt_authentication([rule()])
    assert one is not None and one.bypass_cors_preflight
    assert one.rules == (
        RequirementRule("/", RequiresAny((ProviderName("origins-0"), AllowMissing()))),
    )
    two = jwt_authentication([rule(issuer="b"), rule(issuer="a")])
    assert two is not None
    pair = [RequiresAny((ProviderName(n), AllowMissing())) for n in ("origins-0", "origins-1")]
    assert two.rules[0].requires == RequiresAny(
        (ProviderName("origins-0"), ProviderName("origins-1"), RequiresAll(tuple(pair)))
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # policy_applier_test.go TestBuildSpaceDelimitedClaims, its five cases.
        ((), ("permission", "scope")),
        (("custom_scope", "roles"), ("custom_scope", "permission", "roles", "scope")),
        (
            ("scope", "custom_scope", "permission", "roles"),
            ("custom_scope", "permission", "roles", "scope"),
        ),
        (("custom1", "custom2"), ("custom1", "custom2", "permission", "scope")),
    ],
)
def test_space_delimited_claims_always_include_scope_and_permission(
    given: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    cfg = jwt_authentication([rule(spaceDelimitedClaims=list(given))])
    assert cfg is not None
    assert cfg.providers[0].space_delimited_claims == expected


def test_locations_are_the_rules() -> None:
    cfg = jwt_authentication([rule(fromHeaders=[{"name": "X-T", "prefix": "T "}])])
    assert cfg is not None
    p = cfg.providers[0]
    assert (p.from_headers, p.from_params) == ((HeaderLocation("X-T", "T "),), ())
    cfg = jwt_authentication([rule()])
    assert cfg is not None
    p = cfg.providers[0]
    assert (p.from_headers, p.from_params, p.from_cookies) == ((), (), ())


def test_no_rules_no_filter() -> None:
    # policy_applier.go JwtFilter: no JWT rules => no jwt_authn filter at all.
    assert jwt_authentication([]) is None
    assert jwt_authentication([_RA()]) is None
    o = apply_request_authentication([], JwtPresented(token="garbage"))
    assert (o.status, o.reason, o.metadata) == (None, "no_filter", None)


def test_unresolved_jwks_uri_gets_istiods_fake_jwks_in_the_local_mesh() -> None:
    # CreateFakeJwks: a valid key that verifies nothing.
    cfg = jwt_authentication([rule(jwks="", jwksUri="https://x/jwks")], unresolved_jwks="fake")
    assert cfg is not None
    p = cfg.providers[0]
    assert p.local_jwks == fake_jwks() and p.remote_jwks is None
    keys, error = parse_jwks(fake_jwks())
    assert error is None and len(keys) == 1

"""RequestAuthentication -> Envoy's jwt_authn filter, as istiod builds it.

istiod turns the JWT rules of every RequestAuthentication that selects a
workload into one ``envoy.filters.http.jwt_authn`` filter placed before the
RBAC filters (``pilot/pkg/security/authn/policy_applier.go``,
``convertToEnvoyJwtConfig``):

* the rules are sorted by issuer and become providers ``origins-0``,
  ``origins-1``, ... Each provider has the rule's issuer and audiences,
  ``forward`` = ``forwardOriginalToken``, ``payload_in_metadata: payload``,
  the rule's token locations (none given: none written, so Envoy's defaults
  apply) and ``normalize_payload_in_metadata`` with the rule's
  ``spaceDelimitedClaims`` plus ``scope`` and ``permission``;
* the keys: the rule's ``jwks`` inline; for a ``jwksUri``, the keys istiod
  fetched, inlined. Offline those keys are elsewhere (``remote_jwks``, so a
  signature only they can check is undecided); the local mesh inlines the
  keys it was given and otherwise istiod's stand-in for an unreachable
  jwksUri (``CreateFakeJwks``: a valid key that signs nothing);
* one rule for every path (prefix ``/``) requiring
  ``requires_any{origins-0, allow_missing}`` for one provider, and for several
  ``requires_any{P0, P1, ..., requires_all{any{P0, allow_missing}, ...}}``:
  a request without a token passes, a present token must be valid;
* ``bypass_cors_preflight: true``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, Protocol

from meshauthz.envoy import jwt_authn
from meshauthz.envoy.jwt_authn import (
    AllowMissing,
    HeaderLocation,
    JwtAuthentication,
    JwtProvider,
    ProviderName,
    RemoteJwks,
    Requirement,
    RequirementRule,
    RequiresAll,
    RequiresAny,
)

if TYPE_CHECKING:
    from meshauthz.envoy.jwt_authn import JwtOutcome, JwtPresented

PAYLOAD_KEY = "payload"  # filters.EnvoyJwtFilterPayload
DEFAULT_SPACE_DELIMITED_CLAIMS = ("permission", "scope")  # buildSpaceDelimitedClaims

# Where the keys of a jwksUri are: offline elsewhere ("remote"), or, in the
# local mesh, istiod's fake JWKS ("fake") when no keys were given for it.
UnresolvedJwks = Literal["remote", "fake"]


class _JwtRuleLike(Protocol):
    issuer: str
    audiences: Sequence[str]
    jwks: str
    from_headers: Sequence[Any]
    from_params: Sequence[str]
    from_cookies: Sequence[str]
    forward_original_token: bool
    space_delimited_claims: Sequence[str]

    @property
    def jwks_url(self) -> str: ...


def jwt_rules(rules: Iterable[Any]) -> list[_JwtRuleLike]:
    """The JWT rules of these RequestAuthentications (records with
    ``.spec.jwt_rules``, or JWT rules themselves) in istiod's provider order:
    concatenated, then sorted by issuer (``newPolicyApplier``; stable)."""
    flat: list[_JwtRuleLike] = []
    for r in rules:
        spec = getattr(r, "spec", None)
        flat.extend(spec.jwt_rules if spec is not None else [r])
    flat.sort(key=lambda r: r.issuer)
    return flat


def jwt_authentication(
    rules: Iterable[Any], *, unresolved_jwks: UnresolvedJwks = "remote"
) -> JwtAuthentication | None:
    """The jwt_authn filter istiod builds from these RequestAuthentications
    (None: no JWT rules, no filter)."""
    flat = jwt_rules(rules)
    if not flat:
        return None
    providers = tuple(_provider(f"origins-{i}", r, unresolved_jwks) for i, r in enumerate(flat))
    return JwtAuthentication(
        providers=providers,
        rules=(RequirementRule("/", requirement([p.name for p in providers])),),
        bypass_cors_preflight=True,
    )


def requirement(names: Sequence[str]) -> Requirement:
    """istiod's requirement over its providers: any one valid token, or none."""
    inner = tuple(RequiresAny((ProviderName(n), AllowMissing())) for n in names)
    if len(inner) == 1:
        return inner[0]
    return RequiresAny((*(ProviderName(n) for n in names), RequiresAll(inner)))


def _provider(name: str, r: _JwtRuleLike, unresolved: UnresolvedJwks) -> JwtProvider:
    local: str | None = r.jwks or None
    remote = None
    if local is None:
        if unresolved == "fake":
            local = fake_jwks()
        else:
            remote = RemoteJwks(r.jwks_url)
    return JwtProvider(
        name=name,
        issuer=r.issuer,
        audiences=tuple(r.audiences),
        from_headers=tuple(HeaderLocation(h.name, h.prefix or "") for h in r.from_headers),
        from_params=tuple(r.from_params),
        from_cookies=tuple(r.from_cookies),
        forward=bool(r.forward_original_token),
        payload_in_metadata=PAYLOAD_KEY,
        space_delimited_claims=tuple(
            sorted(set(r.space_delimited_claims) | set(DEFAULT_SPACE_DELIMITED_CLAIMS))
        ),
        local_jwks=local,
        remote_jwks=remote,
    )


@cache
def fake_jwks() -> str:
    """What istiod inlines when it cannot fetch a jwksUri (``CreateFakeJwks``): a
    valid public key that signs nothing, so every token of the issuer fails."""
    import json  # start-up: as the key, imported only when one is made

    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    jwk = json.loads(RSAAlgorithm.to_jwk(key))
    jwk["kid"] = "meshauthz-fake"
    return json.dumps({"keys": [jwk]})


def apply_request_authentication(
    rules: Iterable[Any],
    presented: JwtPresented | None,
    headers: Sequence[tuple[str, str]] = (),
    query: str | Sequence[tuple[str, str]] = "",
    *,
    method: str = "GET",
    now: int | None = None,
) -> JwtOutcome:
    """Run the request through the jwt_authn filter istiod builds from ``rules``."""
    return jwt_authn.apply_jwt_authn(
        jwt_authentication(rules), presented, headers, query, method=method, now=now
    )

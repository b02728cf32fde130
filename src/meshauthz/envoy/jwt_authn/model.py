"""Envoy's JwtAuthentication (envoy.extensions.filters.http.jwt_authn.v3), as modelled.

The fields that bear on what the filter does with a request; the rest of the
proto (caches, retry policies, claim-to-header copies) is not read.
"""

from __future__ import annotations

from msgspec import Struct

JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"


class HeaderLocation(Struct, frozen=True):
    """JwtHeader: a header holding the token after ``value_prefix``."""

    name: str
    value_prefix: str = ""


class RemoteJwks(Struct, frozen=True):
    """RemoteJwks: keys fetched from ``uri`` (through ``cluster``)."""

    uri: str
    cluster: str = ""
    timeout: str = ""


class JwtProvider(Struct, frozen=True):
    """One entry of ``providers`` (its map key is ``name``).

    Exactly one JWKS source is set: ``local_jwks`` (``local_jwks.inline_string``),
    ``local_jwks_filename`` (``local_jwks.filename``) or ``remote_jwks``. No
    ``from_*`` location at all means Envoy's defaults (``Authorization:
    Bearer <token>`` and the ``access_token`` query parameter).
    """

    name: str
    issuer: str = ""
    audiences: tuple[str, ...] = ()
    from_headers: tuple[HeaderLocation, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    forward: bool = False
    payload_in_metadata: str = ""
    # normalize_payload_in_metadata.space_delimited_claims
    space_delimited_claims: tuple[str, ...] = ()
    local_jwks: str | None = None
    local_jwks_filename: str | None = None
    remote_jwks: RemoteJwks | None = None

    @property
    def jwks_location(self) -> str:
        """Where the keys live when they are not inline ("" when inline)."""
        if self.local_jwks is not None:
            return ""
        if self.local_jwks_filename is not None:
            return self.local_jwks_filename
        return self.remote_jwks.uri if self.remote_jwks is not None else ""


class ProviderName(Struct, frozen=True):
    name: str


class RequiresAny(Struct, frozen=True):
    requirements: tuple[Requirement, ...]


class RequiresAll(Struct, frozen=True):
    requirements: tuple[Requirement, ...]


class AllowMissing(Struct, frozen=True):
    pass


class AllowMissingOrFailed(Struct, frozen=True):
    pass


Requirement = ProviderName | RequiresAny | RequiresAll | AllowMissing | AllowMissingOrFailed


class RequirementRule(Struct, frozen=True):
    """One entry of ``rules``: a route match (a path prefix) and its requirement
    (None: requests it matches are not verified)."""

    prefix: str
    requires: Requirement | None


class JwtAuthentication(Struct, frozen=True):
    providers: tuple[JwtProvider, ...] = ()
    rules: tuple[RequirementRule, ...] = ()
    # Selected by per-route configuration only; written and read, not evaluated.
    requirement_map: tuple[tuple[str, Requirement], ...] = ()
    bypass_cors_preflight: bool = False

    def provider(self, name: str) -> JwtProvider | None:
        return next((p for p in self.providers if p.name == name), None)

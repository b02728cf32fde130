"""Envoy's jwt_authn HTTP filter: the model (``model``), its JSON reader and
writer (``serialize``) and what the filter does with a request (``evaluate``).
Istio's RequestAuthentication -> JwtAuthentication lives in
``meshauthz.translate.requestauthn``."""

from .evaluate import (
    JWT_REQUEST_SCHEMA,
    JwtOutcome,
    JwtPresented,
    Status,
    apply_jwt_authn,
    audiences_allowed,
    jwks_problem,
    normalize_payload,
    parse_jwks,
    parse_jwt,
    unsupported,
)
from .model import (
    JWT_FILTER,
    JWT_TYPE,
    AllowMissing,
    AllowMissingOrFailed,
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
from .serialize import JwtConfigError, from_json, requirement_to_json, to_json

__all__ = [
    "JWT_FILTER",
    "JWT_REQUEST_SCHEMA",
    "JWT_TYPE",
    "AllowMissing",
    "AllowMissingOrFailed",
    "HeaderLocation",
    "JwtAuthentication",
    "JwtConfigError",
    "JwtOutcome",
    "JwtPresented",
    "JwtProvider",
    "ProviderName",
    "RemoteJwks",
    "Requirement",
    "RequirementRule",
    "RequiresAll",
    "RequiresAny",
    "Status",
    "apply_jwt_authn",
    "audiences_allowed",
    "from_json",
    "jwks_problem",
    "normalize_payload",
    "parse_jwks",
    "parse_jwt",
    "requirement_to_json",
    "to_json",
    "unsupported",
]

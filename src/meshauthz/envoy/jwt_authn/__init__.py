"""Envoy's jwt_authn HTTP filter: the model (``model``), its JSON reader and
writer (``serialize``) and what the filter does with a request (``evaluate``).
Istio's RequestAuthentication -> JwtAuthentication lives in
``meshauthz.translate.requestauthn``."""

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

# typing.TYPE_CHECKING without importing typing here (type checkers treat any
# name TYPE_CHECKING as true), as in meshauthz/__init__.py
TYPE_CHECKING = False
if TYPE_CHECKING:
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
    from .serialize import JwtConfigError, from_json, requirement_to_json, to_json

# The evaluation and the JSON reader and writer are imported on first use (PEP
# 562): a mesh without RequestAuthentication needs the model only (start-up).
# Code that runs per request reads them as attributes of the package imported at
# its top (``jwt_authn.apply_jwt_authn``): a plain attribute once loaded, where a
# function-level ``from ... import`` costs 0.4 us a call.
_WHERE = {
    **dict.fromkeys(
        (
            "JWT_REQUEST_SCHEMA",
            "JwtOutcome",
            "JwtPresented",
            "Status",
            "apply_jwt_authn",
            "audiences_allowed",
            "jwks_problem",
            "normalize_payload",
            "parse_jwks",
            "parse_jwt",
            "unsupported",
        ),
        "evaluate",
    ),
    **dict.fromkeys(("JwtConfigError", "from_json", "requirement_to_json", "to_json"), "serialize"),
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


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

"""Why a request was decided as it was, as data: the stage and the typed cause.

The sentences a person reads are rendered from these in one place,
``meshauthz.decide.render``; nothing here composes text.
"""

from __future__ import annotations

import enum

from msgspec import Struct

from meshauthz.mesh.injection import Injection


class Stage(enum.StrEnum):
    """Where in the destination's path a request was decided (or a trace step was taken)."""

    NO_SIDECAR = "no sidecar"
    MTLS = "mTLS"
    NORMALIZATION = "normalization"
    CUSTOM = "CUSTOM"
    JWT = "JWT"
    AUDIT = "AUDIT"
    DENY = "DENY"
    ALLOW = "ALLOW"
    DEFAULT = "default"
    ERROR = "error"


class NoSidecar(Struct, frozen=True):
    """The destination's pods have no sidecar: no Envoy, so no policy runs and the
    request reaches the application as sent."""

    workload: str  # "namespace/name"
    injection: Injection


class MtlsRequired(Struct, frozen=True):
    """A plaintext caller on a port whose PeerAuthentication is STRICT."""

    workload: str  # "namespace/name"
    port: int


class PathRejected(Struct, frozen=True):
    """The connection manager refused the request (method or path) before any filter."""

    reason: str
    status: int


class CodecRejected(Struct, frozen=True):
    """The HTTP/1.1 codec refused the request's header block before any filter."""

    reason: str
    status: int


class CustomDenied(Struct, frozen=True):
    """A CUSTOM policy sent the request to its ext_authz provider, assumed to deny."""

    provider: str | None
    policy: str | None
    rule: int | None


class JwtRejected(Struct, frozen=True):
    """The JWT filter answered the request itself (e.g. 401 for a bad token)."""

    source: str  # the RequestAuthentications the filter was built from
    body: str | None


class JwtUnverifiable(Struct, frozen=True):
    """A token whose keys are only at a jwksUri: not decided offline (fail closed)."""

    source: str
    reason: str


class DeniedByPolicy(Struct, frozen=True):
    """An RBAC filter's enforced rules denied: a DENY (or bad-CUSTOM) policy matched."""

    stage: Stage
    policy: str | None  # None: an Envoy policy not traced back to an AuthorizationPolicy
    rule: int | None
    empty_rule: bool = False  # the rule is {}: it matches every request


class NoAllowMatched(Struct, frozen=True):
    """ALLOW policies apply to the workload and none of their rules matched."""


class AllowedByPolicy(Struct, frozen=True):
    policy: str | None
    rule: int | None


class DefaultAllow(Struct, frozen=True):
    """No filter denied and no ALLOW policy applies: Envoy lets the request through."""


class InternalError(Struct, frozen=True):
    """meshauthz itself failed; the decision fails closed."""

    error: str  # "ExceptionType: message"


class ZtunnelDenied(Struct, frozen=True):
    """The destination's ztunnel (ambient mode) refused the connection: a DENY
    policy matched (``policy``), or ALLOW policies exist and none matched."""

    workload: str  # the destination, "namespace/name"
    policy: str | None  # ztunnel's policy key; None: no ALLOW policy matched
    rule: int | None
    identity: str | None  # the peer identity ztunnel saw (None: plaintext)
    empty_rule: bool = False
    source: str = ""  # what the policy was converted from, when not an AuthorizationPolicy
    via_waypoint: str | None = None  # the waypoint whose identity ztunnel saw


class ZtunnelAllowed(Struct, frozen=True):
    """The destination's ztunnel let the connection through (``policy`` None: no
    ALLOW policy applies)."""

    workload: str
    policy: str | None
    rule: int | None


class NotEvaluated(Struct, frozen=True):
    """Not a cause but a condition on one: filters that run before the point of
    decision and that meshauthz does not run (Lua, Wasm, ext_proc, any filter it
    does not model). Each could answer the request itself or change it, so the
    decision holds only if they let the request through unchanged."""

    filters: tuple[str, ...]


Cause = (
    NoSidecar
    | MtlsRequired
    | PathRejected
    | CodecRejected
    | CustomDenied
    | JwtRejected
    | JwtUnverifiable
    | DeniedByPolicy
    | NoAllowMatched
    | AllowedByPolicy
    | DefaultAllow
    | InternalError
    | ZtunnelDenied
    | ZtunnelAllowed
)

__all__ = [
    "AllowedByPolicy",
    "Cause",
    "CodecRejected",
    "CustomDenied",
    "DefaultAllow",
    "DeniedByPolicy",
    "InternalError",
    "JwtRejected",
    "JwtUnverifiable",
    "MtlsRequired",
    "NoAllowMatched",
    "NoSidecar",
    "NotEvaluated",
    "PathRejected",
    "Stage",
    "ZtunnelAllowed",
    "ZtunnelDenied",
]

"""Typed models of the Istio security resources' ``spec`` (security.istio.io).

Field names and types follow the CRD schema that a cluster enforces: unknown
fields are rejected (as ``kubectl apply`` does with strict field validation)
and values are not coerced (``methods: GET`` is not a list). Constraints that
the schema states beyond types (lengths, patterns, CEL rules) and Istio's
webhook checks live in ``validation``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


def camel(name: str) -> str:
    """A field's name in the manifest: ``not_ip_blocks`` is written ``notIpBlocks``."""
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


StrList = tuple[str, ...]
StrMap = dict[str, str]

# What a map field not written holds: one empty map for all, since nothing changes
# a model's maps (loaded objects hold their metadata's maps, not copies). A mesh
# has thousands of objects without labels or annotations.
_NO_ENTRIES: dict[str, Any] = {}


def no_entries() -> dict[str, Any]:
    return _NO_ENTRIES


class Strict(
    msgspec.Struct,
    forbid_unknown_fields=True,
    frozen=True,
    rename=camel,
    omit_defaults=True,
    gc=False,
):
    """A message of the CRD's schema: unknown fields are rejected.

    Every Struct of the manifests is frozen (each class says so again, for type
    checkers) and holds only strings, numbers, booleans, maps of strings, and
    tuples or maps of such Structs: none can be part of a reference cycle, so
    none is tracked by the garbage collector (``gc=False``), which would
    otherwise walk a large mesh's hundreds of thousands of them at every full
    collection. ``resources.structs`` converts a document's values into them,
    reporting every error; a list or map written as null is one not written."""


class WorkloadSelector(Strict, frozen=True):
    match_labels: StrMap = msgspec.field(default_factory=no_entries)


class PolicyTargetReference(Strict, frozen=True, kw_only=True):
    group: str = ""
    kind: str
    name: str
    namespace: str = ""


class Source(Strict, frozen=True):
    principals: StrList = ()
    not_principals: StrList = ()
    request_principals: StrList = ()
    not_request_principals: StrList = ()
    namespaces: StrList = ()
    not_namespaces: StrList = ()
    service_accounts: StrList = ()
    not_service_accounts: StrList = ()
    ip_blocks: StrList = ()
    not_ip_blocks: StrList = ()
    remote_ip_blocks: StrList = ()
    not_remote_ip_blocks: StrList = ()
    trust_domains: StrList = ()
    not_trust_domains: StrList = ()


class Operation(Strict, frozen=True):
    hosts: StrList = ()
    not_hosts: StrList = ()
    ports: StrList = ()
    not_ports: StrList = ()
    methods: StrList = ()
    not_methods: StrList = ()
    paths: StrList = ()
    not_paths: StrList = ()


class From(Strict, frozen=True):
    source: Source | None = None


class To(Strict, frozen=True):
    operation: Operation | None = None


class Condition(Strict, frozen=True):
    key: str
    values: StrList = ()
    not_values: StrList = ()


class Rule(Strict, frozen=True):
    from_: tuple[From, ...] = msgspec.field(default=(), name="from")
    to: tuple[To, ...] = ()
    when: tuple[Condition, ...] = ()


class ExtensionProviderRef(Strict, frozen=True):
    name: str = ""


Action = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


class AuthorizationPolicySpec(Strict, frozen=True):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    rules: tuple[Rule, ...] = ()
    action: Action = "ALLOW"
    provider: ExtensionProviderRef | None = None


class JwtHeader(Strict, frozen=True):
    name: str
    prefix: str = ""


class ClaimToHeader(Strict, frozen=True):
    header: str
    claim: str


class JWTRule(Strict, frozen=True):
    issuer: str = ""
    audiences: StrList = ()
    jwks_uri: str = ""
    # The CRD also accepts the snake_case spelling of jwksUri.
    jwks_uri_snake: str = msgspec.field(default="", name="jwks_uri")
    jwks: str = ""
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: StrList = ()
    from_cookies: StrList = ()
    output_payload_to_header: str = ""
    forward_original_token: bool = False
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    timeout: str = ""
    space_delimited_claims: StrList = ()
    presence: Literal["OPTIONAL", "REQUIRED"] | None = None

    @property
    def jwks_url(self) -> str:
        return self.jwks_uri or self.jwks_uri_snake


class RequestAuthenticationSpec(Strict, frozen=True):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    jwt_rules: tuple[JWTRule, ...] = ()


MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MutualTls(Strict, frozen=True):
    mode: MtlsMode = "UNSET"


class PeerAuthenticationSpec(Strict, frozen=True):
    selector: WorkloadSelector | None = None
    mtls: MutualTls | None = None
    # Keys are port numbers written as map keys; YAML gives them to us as strings.
    port_level_mtls: dict[str, MutualTls] = msgspec.field(default_factory=no_entries)

"""Typed models of the Istio security resources' ``spec`` (security.istio.io).

Field names and types follow the CRD schema that a cluster enforces: unknown
fields are rejected (as ``kubectl apply`` does with strict field validation)
and values are not coerced (``methods: GET`` is not a list). Constraints that
the schema states beyond types (lengths, patterns, CEL rules) and Istio's
webhook checks live in ``validation``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel


def _none_is_empty(value: Any) -> Any:
    # JSON null for a list or map means "not set" in Kubernetes.
    if value is None:
        return ()
    # Strict mode takes a tuple only from a tuple; a YAML list is the same thing.
    return tuple(value) if isinstance(value, list) else value


def _none_is_empty_map(value: Any) -> Any:
    return {} if value is None else value


StrList = Annotated[tuple[str, ...], BeforeValidator(_none_is_empty)]
StrMap = Annotated[dict[str, str], BeforeValidator(_none_is_empty_map)]


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=False,
        defer_build=True,
    )


class WorkloadSelector(Strict):
    match_labels: StrMap = {}


class PolicyTargetReference(Strict):
    group: str = ""
    kind: str
    name: str
    namespace: str = ""


class Source(Strict):
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


class Operation(Strict):
    hosts: StrList = ()
    not_hosts: StrList = ()
    ports: StrList = ()
    not_ports: StrList = ()
    methods: StrList = ()
    not_methods: StrList = ()
    paths: StrList = ()
    not_paths: StrList = ()


class From(Strict):
    source: Source | None = None


class To(Strict):
    operation: Operation | None = None


class Condition(Strict):
    key: str
    values: StrList = ()
    not_values: StrList = ()


class Rule(Strict):
    from_: Annotated[tuple[From, ...], BeforeValidator(_none_is_empty)] = Field(
        default=(), alias="from"
    )
    to: Annotated[tuple[To, ...], BeforeValidator(_none_is_empty)] = ()
    when: Annotated[tuple[Condition, ...], BeforeValidator(_none_is_empty)] = ()


class ExtensionProviderRef(Strict):
    name: str = ""


Action = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


class AuthorizationPolicySpec(Strict):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: Annotated[tuple[PolicyTargetReference, ...], BeforeValidator(_none_is_empty)] = ()
    rules: Annotated[tuple[Rule, ...], BeforeValidator(_none_is_empty)] = ()
    action: Action = "ALLOW"
    provider: ExtensionProviderRef | None = None


class JwtHeader(Strict):
    name: str
    prefix: str = ""


class ClaimToHeader(Strict):
    header: str
    claim: str


class JWTRule(Strict):
    issuer: str = ""
    audiences: StrList = ()
    jwks_uri: str = ""
    # The CRD also accepts the snake_case spelling of jwksUri.
    jwks_uri_snake: str = Field(default="", alias="jwks_uri")
    jwks: str = ""
    from_headers: Annotated[tuple[JwtHeader, ...], BeforeValidator(_none_is_empty)] = ()
    from_params: StrList = ()
    from_cookies: StrList = ()
    output_payload_to_header: str = ""
    forward_original_token: bool = False
    output_claim_to_headers: Annotated[
        tuple[ClaimToHeader, ...], BeforeValidator(_none_is_empty)
    ] = ()
    timeout: str = ""
    space_delimited_claims: StrList = ()
    presence: Literal["OPTIONAL", "REQUIRED"] | None = None

    @property
    def jwks_url(self) -> str:
        return self.jwks_uri or self.jwks_uri_snake


class RequestAuthenticationSpec(Strict):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: Annotated[tuple[PolicyTargetReference, ...], BeforeValidator(_none_is_empty)] = ()
    jwt_rules: Annotated[tuple[JWTRule, ...], BeforeValidator(_none_is_empty)] = ()


MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MutualTls(Strict):
    mode: MtlsMode = "UNSET"


class PeerAuthenticationSpec(Strict):
    selector: WorkloadSelector | None = None
    mtls: MutualTls | None = None
    # Keys are port numbers written as map keys; YAML gives them to us as strings.
    port_level_mtls: Annotated[dict[str, MutualTls], BeforeValidator(_none_is_empty_map)] = {}

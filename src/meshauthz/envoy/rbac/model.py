"""Envoy's RBAC configuration (envoy.config.rbac.v3) as Python values.

This module knows nothing of Istio. Names follow Envoy's proto messages and
fields so that a reader of Envoy's documentation finds their way. Every node
may carry a ``Note`` saying where it came from (filled by whoever built it);
notes never take part in equality, so a built tree compares equal to the same
tree parsed from Envoy's JSON.
"""

from __future__ import annotations

import enum
from typing import Literal

from msgspec import Struct

from meshauthz.records import Record


class Note(Struct, frozen=True):
    """Provenance of a node: the user-level input it was translated from."""

    policy: str | None = None  # "namespace/name"
    rule: int | None = None
    section: str | None = None  # e.g. "from", "to", "when"
    field: str | None = None  # e.g. "to.operation.methods"
    value: str | None = None
    file: str | None = None
    line: int | None = None


class Noted(Record, frozen=True):
    """A node with provenance: its last field, ``note``, the user-level input
    it was translated from, takes no part in equality, so equal matchers from
    different rules are equal."""

    provenance = ("note",)


# --- leaf matchers (envoy.type.matcher.v3) ---------------------------------

StringKind = Literal["exact", "prefix", "suffix", "contains", "safe_regex"]


class StringMatcher(Struct, frozen=True):
    kind: StringKind
    value: str
    ignore_case: bool = False


class Int64Range(Struct, frozen=True):
    start: int
    end: int  # exclusive, as in Envoy


HeaderKind = Literal[
    "exact", "prefix", "suffix", "contains", "safe_regex", "present", "string", "range"
]


class HeaderMatcher(Struct, frozen=True):
    """config.route.v3.HeaderMatcher. ``kind`` says which oneof was set:
    the deprecated ``exact_match``..``contains_match`` and ``safe_regex_match``
    (stored in ``value``), ``present_match`` (``present``), ``string_match``
    (``string``) or ``range_match`` (``range``)."""

    name: str
    kind: HeaderKind
    value: str = ""
    string: StringMatcher | None = None
    present: bool = True
    range: Int64Range | None = None
    invert_match: bool = False
    treat_missing_header_as_empty: bool = False


class CidrRange(Struct, frozen=True):
    address_prefix: str
    # None (unset) is 0 in Envoy, i.e. the whole address family (verified, 1.40)
    prefix_len: int | None = None


ValueKind = Literal["null", "double", "string", "bool", "present", "list", "or"]


class ValueMatcher(Struct, frozen=True):
    kind: ValueKind
    string: StringMatcher | None = None
    boolean: bool = False
    present: bool = False
    double_exact: float | None = None
    double_range: tuple[float, float] | None = None
    one_of: ValueMatcher | None = None  # list_match.one_of
    or_matchers: tuple[ValueMatcher, ...] = ()


class MetadataMatcher(Struct, frozen=True):
    filter: str
    path: tuple[str, ...]
    value: ValueMatcher
    invert: bool = False


# --- permissions (what the request does) -----------------------------------


class PermAny(Noted, frozen=True):
    note: Note | None = None


class PermAnd(Noted, frozen=True):
    rules: tuple[Permission, ...]
    note: Note | None = None


class PermOr(Noted, frozen=True):
    rules: tuple[Permission, ...]
    note: Note | None = None


class PermNot(Noted, frozen=True):
    rule: Permission
    note: Note | None = None


class PermHeader(Noted, frozen=True):
    header: HeaderMatcher
    note: Note | None = None


class PermUrlPath(Noted, frozen=True):
    path: StringMatcher
    note: Note | None = None


class PermDestinationIp(Noted, frozen=True):
    cidr: CidrRange
    note: Note | None = None


class PermDestinationPort(Noted, frozen=True):
    port: int
    note: Note | None = None


class PermDestinationPortRange(Noted, frozen=True):
    start: int
    end: int  # exclusive, as Envoy's Int32Range
    note: Note | None = None


class PermMetadata(Noted, frozen=True):
    metadata: MetadataMatcher
    note: Note | None = None


class PermRequestedServerName(Noted, frozen=True):
    name: StringMatcher
    note: Note | None = None


class PermUriTemplate(Record, frozen=True):
    """``matcher`` with envoy.path.match.uri_template.v3.UriTemplateMatchConfig."""

    path_template: str
    note: Note | None = None
    # The extension's instance name; Envoy picks the factory by type, so the
    # name carries no meaning and takes no part in equality.
    name: str = "uri-template"

    provenance = ("note", "name")


Permission = (
    PermAny
    | PermAnd
    | PermOr
    | PermNot
    | PermHeader
    | PermUrlPath
    | PermDestinationIp
    | PermDestinationPort
    | PermDestinationPortRange
    | PermMetadata
    | PermRequestedServerName
    | PermUriTemplate
)


# --- principals (who sends it) ----------------------------------------------


class IdAny(Noted, frozen=True):
    note: Note | None = None


class IdAnd(Noted, frozen=True):
    ids: tuple[Principal, ...]
    note: Note | None = None


class IdOr(Noted, frozen=True):
    ids: tuple[Principal, ...]
    note: Note | None = None


class IdNot(Noted, frozen=True):
    id: Principal
    note: Note | None = None


class IdAuthenticated(Noted, frozen=True):
    """Matches a TLS peer; ``principal_name`` None means any authenticated peer."""

    principal_name: StringMatcher | None = None
    note: Note | None = None


class IdSourceIp(Noted, frozen=True):
    """Deprecated ``source_ip``: the downstream connection's address."""

    cidr: CidrRange
    note: Note | None = None


class IdDirectRemoteIp(Noted, frozen=True):
    cidr: CidrRange
    note: Note | None = None


class IdRemoteIp(Noted, frozen=True):
    cidr: CidrRange
    note: Note | None = None


class IdHeader(Noted, frozen=True):
    header: HeaderMatcher
    note: Note | None = None


class IdUrlPath(Noted, frozen=True):
    path: StringMatcher
    note: Note | None = None


class IdMetadata(Noted, frozen=True):
    metadata: MetadataMatcher
    note: Note | None = None


class IdFilterState(Noted, frozen=True):
    key: str
    string: StringMatcher
    note: Note | None = None


Principal = (
    IdAny
    | IdAnd
    | IdOr
    | IdNot
    | IdAuthenticated
    | IdSourceIp
    | IdDirectRemoteIp
    | IdRemoteIp
    | IdHeader
    | IdUrlPath
    | IdMetadata
    | IdFilterState
)


# --- policies and filters ---------------------------------------------------


class Action(enum.Enum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    LOG = "LOG"


class Policy(Noted, frozen=True):
    permissions: tuple[Permission, ...]
    principals: tuple[Principal, ...]
    note: Note | None = None


class RBAC(Struct, frozen=True):
    """config.rbac.v3.RBAC. ``policies`` keeps insertion order; the engine
    decides the order in which it is evaluated."""

    action: Action
    policies: tuple[tuple[str, Policy], ...] = ()


class HttpRbacFilter(Struct, frozen=True):
    """envoy.filters.http.rbac (extensions.filters.http.rbac.v3.RBAC)."""

    rules: RBAC | None = None
    shadow_rules: RBAC | None = None
    rules_stat_prefix: str = ""
    shadow_rules_stat_prefix: str = ""
    track_per_rule_stats: bool = False
    name: str = "envoy.filters.http.rbac"


class NetworkRbacFilter(Struct, frozen=True):
    """envoy.filters.network.rbac (extensions.filters.network.rbac.v3.RBAC)."""

    stat_prefix: str
    rules: RBAC | None = None
    shadow_rules: RBAC | None = None
    shadow_rules_stat_prefix: str = ""
    enforcement_type: Literal["ONE_TIME_ON_FIRST_BYTE", "CONTINUOUS"] = "ONE_TIME_ON_FIRST_BYTE"
    name: str = "envoy.filters.network.rbac"


RbacFilter = HttpRbacFilter | NetworkRbacFilter

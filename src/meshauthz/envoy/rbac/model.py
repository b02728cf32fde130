"""Envoy's RBAC configuration (envoy.config.rbac.v3) as Python values.

This module knows nothing of Istio. Names follow Envoy's proto messages and
fields so that a reader of Envoy's documentation finds their way. Every node
may carry a ``Note`` saying where it came from (filled by whoever built it);
notes never take part in equality, so a built tree compares equal to the same
tree parsed from Envoy's JSON.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Note:
    """Provenance of a node: the user-level input it was translated from."""

    policy: str | None = None  # "namespace/name"
    rule: int | None = None
    section: str | None = None  # e.g. "from", "to", "when"
    field: str | None = None  # e.g. "to.operation.methods"
    value: str | None = None
    file: str | None = None
    line: int | None = None


def _note() -> Note | None:
    # dataclasses' field() is typed to return the field's value type, so this checks
    return field(default=None, compare=False, repr=False)


# --- leaf matchers (envoy.type.matcher.v3) ---------------------------------

StringKind = Literal["exact", "prefix", "suffix", "contains", "safe_regex"]


@dataclass(frozen=True, slots=True)
class StringMatcher:
    kind: StringKind
    value: str
    ignore_case: bool = False


@dataclass(frozen=True, slots=True)
class Int64Range:
    start: int
    end: int  # exclusive, as in Envoy


HeaderKind = Literal[
    "exact", "prefix", "suffix", "contains", "safe_regex", "present", "string", "range"
]


@dataclass(frozen=True, slots=True)
class HeaderMatcher:
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


@dataclass(frozen=True, slots=True)
class CidrRange:
    address_prefix: str
    # None (unset) is 0 in Envoy, i.e. the whole address family (verified, 1.40)
    prefix_len: int | None = None


ValueKind = Literal["null", "double", "string", "bool", "present", "list", "or"]


@dataclass(frozen=True, slots=True)
class ValueMatcher:
    kind: ValueKind
    string: StringMatcher | None = None
    boolean: bool = False
    present: bool = False
    double_exact: float | None = None
    double_range: tuple[float, float] | None = None
    one_of: ValueMatcher | None = None  # list_match.one_of
    or_matchers: tuple[ValueMatcher, ...] = ()


@dataclass(frozen=True, slots=True)
class MetadataMatcher:
    filter: str
    path: tuple[str, ...]
    value: ValueMatcher
    invert: bool = False


# --- permissions (what the request does) -----------------------------------


@dataclass(frozen=True, slots=True)
class PermAny:
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermAnd:
    rules: tuple[Permission, ...]
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermOr:
    rules: tuple[Permission, ...]
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermNot:
    rule: Permission
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermHeader:
    header: HeaderMatcher
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermUrlPath:
    path: StringMatcher
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermDestinationIp:
    cidr: CidrRange
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermDestinationPort:
    port: int
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermDestinationPortRange:
    start: int
    end: int  # exclusive, as Envoy's Int32Range
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermMetadata:
    metadata: MetadataMatcher
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermRequestedServerName:
    name: StringMatcher
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class PermUriTemplate:
    """``matcher`` with envoy.path.match.uri_template.v3.UriTemplateMatchConfig."""

    path_template: str
    note: Note | None = _note()
    # The extension's instance name; Envoy picks the factory by type, so the
    # name carries no meaning and takes no part in equality.
    name: str = field(default="uri-template", compare=False)


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


@dataclass(frozen=True, slots=True)
class IdAny:
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdAnd:
    ids: tuple[Principal, ...]
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdOr:
    ids: tuple[Principal, ...]
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdNot:
    id: Principal
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdAuthenticated:
    """Matches a TLS peer; ``principal_name`` None means any authenticated peer."""

    principal_name: StringMatcher | None = None
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdSourceIp:
    """Deprecated ``source_ip``: the downstream connection's address."""

    cidr: CidrRange
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdDirectRemoteIp:
    cidr: CidrRange
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdRemoteIp:
    cidr: CidrRange
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdHeader:
    header: HeaderMatcher
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdUrlPath:
    path: StringMatcher
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdMetadata:
    metadata: MetadataMatcher
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class IdFilterState:
    key: str
    string: StringMatcher
    note: Note | None = _note()


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


@dataclass(frozen=True, slots=True)
class Policy:
    permissions: tuple[Permission, ...]
    principals: tuple[Principal, ...]
    note: Note | None = _note()


@dataclass(frozen=True, slots=True)
class RBAC:
    """config.rbac.v3.RBAC. ``policies`` keeps insertion order; the engine
    decides the order in which it is evaluated."""

    action: Action
    policies: tuple[tuple[str, Policy], ...] = ()


@dataclass(frozen=True, slots=True)
class HttpRbacFilter:
    """envoy.filters.http.rbac (extensions.filters.http.rbac.v3.RBAC)."""

    rules: RBAC | None = None
    shadow_rules: RBAC | None = None
    rules_stat_prefix: str = ""
    shadow_rules_stat_prefix: str = ""
    track_per_rule_stats: bool = False
    name: str = "envoy.filters.http.rbac"


@dataclass(frozen=True, slots=True)
class NetworkRbacFilter:
    """envoy.filters.network.rbac (extensions.filters.network.rbac.v3.RBAC)."""

    stat_prefix: str
    rules: RBAC | None = None
    shadow_rules: RBAC | None = None
    shadow_rules_stat_prefix: str = ""
    enforcement_type: Literal["ONE_TIME_ON_FIRST_BYTE", "CONTINUOUS"] = "ONE_TIME_ON_FIRST_BYTE"
    name: str = "envoy.filters.network.rbac"


RbacFilter = HttpRbacFilter | NetworkRbacFilter

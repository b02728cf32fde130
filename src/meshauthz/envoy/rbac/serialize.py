"""Envoy JSON/YAML-shaped dicts <-> the RBAC model.

Reading follows proto3 JSON: every field may be spelled in snake_case or in
its camelCase JSON name, ``null`` means unset, 64-bit integers may be strings.
Anything Envoy would reject at config load (a proto validation rule, a bad
regex or CIDR) or that the model cannot express raises ``RbacConfigError``
with the JSON path of the node. Writing follows proto3 JSON too: scalars at
their default are omitted, a oneof member is always written, and 64-bit
integers are written as strings.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, cast

from meshauthz.envoy.runtime import VANILLA, EnvoyRuntime

from .errors import RbacConfigError
from .model import (
    RBAC,
    Action,
    CidrRange,
    HeaderKind,
    HeaderMatcher,
    HttpRbacFilter,
    IdAnd,
    IdAny,
    IdAuthenticated,
    IdDirectRemoteIp,
    IdFilterState,
    IdHeader,
    IdMetadata,
    IdNot,
    IdOr,
    IdRemoteIp,
    IdSourceIp,
    IdUrlPath,
    Int64Range,
    MetadataMatcher,
    NetworkRbacFilter,
    PermAnd,
    PermAny,
    PermDestinationIp,
    PermDestinationPort,
    PermDestinationPortRange,
    PermHeader,
    Permission,
    PermMetadata,
    PermNot,
    PermOr,
    PermRequestedServerName,
    PermUriTemplate,
    PermUrlPath,
    Policy,
    Principal,
    RbacFilter,
    StringKind,
    StringMatcher,
    ValueMatcher,
)
from .regex import compile_regex, re2_module
from .uri_template import UriTemplateError, compile_uri_template

Style = Literal["camel", "snake"]

HTTP_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
NETWORK_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
URI_TEMPLATE_TYPE = (
    "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
)
HTTP_FILTER_NAME = "envoy.filters.http.rbac"
NETWORK_FILTER_NAME = "envoy.filters.network.rbac"

# Where a regex sits in RBAC JSON (StringMatcher, HeaderMatcher), in either spelling.
_REGEX_FIELDS = frozenset(["safe_regex", "safeRegex", "safe_regex_match", "safeRegexMatch"])


def camel(name: str) -> str:
    """The proto3 JSON name of a snake_case field."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


# --- reading helpers ----------------------------------------------------------


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), type(v).__name__
    )


class _Msg:
    """One proto message being read: checks its keys, remembers their spelling."""

    __slots__ = ("_vals", "path")

    def __init__(self, raw: Any, path: str, fields: Iterable[str]) -> None:
        if not isinstance(raw, Mapping):
            raise RbacConfigError(path, f"expected an object, got {_type_name(raw)}")
        self.path = path
        names = {f: f for f in fields}
        names.update({camel(f): f for f in list(names)})
        self._vals: dict[str, tuple[str, Any]] = {}
        for key, val in raw.items():
            field = names.get(key) if isinstance(key, str) else None
            if field is None:
                known = ", ".join(sorted({camel(f) for f in names.values()}))
                raise RbacConfigError(self.child(str(key)), f"unknown field (known: {known})")
            if field in self._vals:
                raise RbacConfigError(self.child(str(key)), f"field {field!r} given twice")
            if val is not None:  # proto3 JSON: null means unset
                self._vals[field] = (key, val)

    def child(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, field: str) -> bool:
        return field in self._vals

    def path_of(self, field: str) -> str:
        key = self._vals[field][0] if field in self._vals else camel(field)
        return self.child(key)

    def get(self, field: str, default: Any = None) -> Any:
        return self._vals[field][1] if field in self._vals else default

    def oneof(self, fields: Iterable[str], what: str, required: bool = True) -> str | None:
        present = [f for f in fields if f in self._vals]
        if len(present) > 1:
            given = ", ".join(self._vals[f][0] for f in present)
            raise RbacConfigError(self.path, f"{what}: only one of {given} may be set")
        if not present:
            if required:
                opts = ", ".join(camel(f) for f in fields)
                raise RbacConfigError(self.path, f"{what}: one of {opts} is required")
            return None
        return present[0]

    def reject(self, fields: Iterable[str], why: str = "is not supported by meshauthz") -> None:
        for f in fields:
            if f in self._vals:
                raise RbacConfigError(self.path_of(f), why)

    # typed getters
    def get_str(self, field: str, default: str = "", min_len: int = 0) -> str:
        v = self.get(field, default)
        if not isinstance(v, str):
            raise RbacConfigError(self.path_of(field), f"expected a string, got {_type_name(v)}")
        if len(v.encode()) < min_len:
            raise RbacConfigError(self.path_of(field), f"must be at least {min_len} byte(s) long")
        return v

    def get_bool(self, field: str, default: bool = False) -> bool:
        v = self.get(field, default)
        if not isinstance(v, bool):
            raise RbacConfigError(self.path_of(field), f"expected a boolean, got {_type_name(v)}")
        return v

    def get_int(self, field: str, lo: int, hi: int, default: int = 0) -> int:
        return _int(self.get(field, default), self.path_of(field), lo, hi)

    def get_double(self, field: str) -> float:
        v = self.get(field, 0.0)
        path = self.path_of(field)
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise RbacConfigError(path, f"expected a number, got {_type_name(v)}")
        try:
            return float(v)
        except ValueError:
            raise RbacConfigError(path, f"not a number: {v!r}") from None

    def get_list(self, field: str, min_items: int = 0) -> list[tuple[str, Any]]:
        v = self.get(field, [])
        path = self.path_of(field)
        if not isinstance(v, list):
            raise RbacConfigError(path, f"expected a list, got {_type_name(v)}")
        if len(v) < min_items:
            raise RbacConfigError(path, f"needs at least {min_items} item(s)")
        return [(f"{path}[{i}]", item) for i, item in enumerate(v)]

    def msg(self, field: str, fields: Iterable[str]) -> _Msg:
        return _Msg(self.get(field, {}), self.path_of(field), fields)


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)


def _int(v: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(v, bool):
        raise RbacConfigError(path, "expected an integer, got a boolean")
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            raise RbacConfigError(path, f"not an integer: {v!r}") from None
    elif isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int):
        raise RbacConfigError(path, f"expected an integer, got {_type_name(v)}")
    if not lo <= v <= hi:
        raise RbacConfigError(path, f"{v} is out of range [{lo}, {hi}]")
    return v


# --- leaf matchers -------------------------------------------------------------


def check_regex(regex: str, path: str, max_program_size: int | None) -> None:
    """Reject what Envoy's RE2 wrapper rejects: bad syntax, and a program larger
    than the proxy's ``re2.max_program_size.error_level`` (None: not checked)."""
    try:
        compiled = compile_regex(regex)
    except re2_module().error as e:
        raise RbacConfigError(path, f"invalid RE2 regex {regex!r}: {e}") from None
    if max_program_size is not None and compiled.programsize > max_program_size:
        raise RbacConfigError(
            path,
            f"regex {regex!r}: RE2 program size {compiled.programsize} exceeds the proxy's "
            f"limit {max_program_size} (runtime re2.max_program_size.error_level)",
        )


def check_regex_sizes(raw: Any, path: str, max_program_size: int) -> None:
    """Every regex in the RBAC JSON ``raw`` against the proxy's program-size limit."""
    if isinstance(raw, Mapping):
        for k, v in raw.items():
            sub = f"{path}.{k}" if path else str(k)
            regex = v.get("regex") if isinstance(v, Mapping) else None
            if k in _REGEX_FIELDS and isinstance(regex, str):
                check_regex(regex, sub + ".regex", max_program_size)
            else:
                check_regex_sizes(v, sub, max_program_size)
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            check_regex_sizes(v, f"{path}[{i}]", max_program_size)


def _parse_regex(raw: Any, path: str) -> str:
    m = _Msg(raw, path, ("regex", "google_re2"))
    if m.has("google_re2"):  # deprecated and without effect on matching
        m.msg("google_re2", ("max_program_size",))
    regex = m.get_str("regex", min_len=1)
    # the size limit is the proxy's runtime: parse_filter checks it
    check_regex(regex, m.path_of("regex"), None)
    return regex


_STRING_KINDS = ("exact", "prefix", "suffix", "safe_regex", "contains")


def parse_string_matcher(raw: Any, path: str = "") -> StringMatcher:
    m = _Msg(raw, path, (*_STRING_KINDS, "custom", "ignore_case"))
    m.reject(("custom",))
    kind = m.oneof(_STRING_KINDS, "string matcher")
    assert kind is not None
    ignore_case = m.get_bool("ignore_case")
    if kind == "safe_regex" and ignore_case:  # Envoy 1.40 rejects this at load
        raise RbacConfigError(m.path_of("ignore_case"), "ignore_case has no effect for safe_regex")
    if kind == "safe_regex":
        return StringMatcher("safe_regex", _parse_regex(m.get(kind), m.path_of(kind)), ignore_case)
    value = m.get_str(kind, min_len=0 if kind == "exact" else 1)
    return StringMatcher(cast(StringKind, kind), value, ignore_case)  # one of _STRING_KINDS


_HEADER_KINDS = {
    "exact_match": "exact",
    "prefix_match": "prefix",
    "suffix_match": "suffix",
    "contains_match": "contains",
    "safe_regex_match": "safe_regex",
    "present_match": "present",
    "string_match": "string",
    "range_match": "range",
}


def parse_header_matcher(raw: Any, path: str = "") -> HeaderMatcher:
    m = _Msg(raw, path, ("name", *_HEADER_KINDS, "invert_match", "treat_missing_header_as_empty"))
    name = m.get_str("name", min_len=1)
    common: dict[str, Any] = {
        "invert_match": m.get_bool("invert_match"),
        "treat_missing_header_as_empty": m.get_bool("treat_missing_header_as_empty"),
    }
    field = m.oneof(tuple(_HEADER_KINDS), "header matcher", required=False)
    if field is None:  # Envoy treats a matcher without specifier as present_match: true
        return HeaderMatcher(name, "present", present=True, **common)
    kind = _HEADER_KINDS[field]
    fpath = m.path_of(field)
    if kind == "present":
        return HeaderMatcher(name, "present", present=m.get_bool(field), **common)
    if kind == "string":
        return HeaderMatcher(
            name, "string", string=parse_string_matcher(m.get(field), fpath), **common
        )
    if kind == "range":
        r = m.msg(field, ("start", "end"))
        rng = Int64Range(r.get_int("start", *_INT64), r.get_int("end", *_INT64))
        return HeaderMatcher(name, "range", range=rng, **common)
    if kind == "safe_regex":
        return HeaderMatcher(name, "safe_regex", _parse_regex(m.get(field), fpath), **common)
    value = m.get_str(field, min_len=0 if kind == "exact" else 1)
    # the deprecated exact_match..contains_match: _HEADER_KINDS maps them to themselves
    return HeaderMatcher(name, cast(HeaderKind, kind), value, **common)


def parse_cidr(raw: Any, path: str = "") -> CidrRange:
    m = _Msg(raw, path, ("address_prefix", "prefix_len"))
    addr = m.get_str("address_prefix", min_len=1)
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise RbacConfigError(
            m.path_of("address_prefix"), f"malformed IP address {addr!r}"
        ) from None
    plen = m.get_int("prefix_len", 0, 128) if m.has("prefix_len") else None
    return CidrRange(addr, plen)


_VALUE_KINDS = {
    "null_match": "null",
    "double_match": "double",
    "string_match": "string",
    "bool_match": "bool",
    "present_match": "present",
    "list_match": "list",
    "or_match": "or",
}


def parse_value_matcher(raw: Any, path: str = "") -> ValueMatcher:
    m = _Msg(raw, path, tuple(_VALUE_KINDS))
    field = m.oneof(tuple(_VALUE_KINDS), "value matcher")
    assert field is not None
    kind = _VALUE_KINDS[field]
    fpath = m.path_of(field)
    if kind == "null":
        _Msg(m.get(field), fpath, ())
        return ValueMatcher("null")
    if kind == "string":
        return ValueMatcher("string", string=parse_string_matcher(m.get(field), fpath))
    if kind == "bool":
        return ValueMatcher("bool", boolean=m.get_bool(field))
    if kind == "present":
        return ValueMatcher("present", present=m.get_bool(field))
    if kind == "double":
        d = m.msg(field, ("range", "exact"))
        which = d.oneof(("range", "exact"), "double matcher")
        if which == "exact":
            return ValueMatcher("double", double_exact=d.get_double("exact"))
        r = d.msg("range", ("start", "end"))
        return ValueMatcher("double", double_range=(r.get_double("start"), r.get_double("end")))
    if kind == "list":
        lm = m.msg(field, ("one_of",))
        lm.oneof(("one_of",), "list matcher")
        return ValueMatcher(
            "list", one_of=parse_value_matcher(lm.get("one_of"), lm.path_of("one_of"))
        )
    om = m.msg(field, ("value_matchers",))
    items = om.get_list("value_matchers", min_items=2)
    return ValueMatcher("or", or_matchers=tuple(parse_value_matcher(v, p) for p, v in items))


def parse_metadata_matcher(raw: Any, path: str = "") -> MetadataMatcher:
    m = _Msg(raw, path, ("filter", "path", "value", "invert"))
    segments = []
    for p, seg in m.get_list("path", min_items=1):
        s = _Msg(seg, p, ("key",))
        s.oneof(("key",), "path segment")
        segments.append(s.get_str("key", min_len=1))
    if not m.has("value"):
        raise RbacConfigError(m.path_of("value"), "is required")
    value = parse_value_matcher(m.get("value"), m.path_of("value"))
    return MetadataMatcher(
        m.get_str("filter", min_len=1), tuple(segments), value, m.get_bool("invert")
    )


def _parse_path_matcher(raw: Any, path: str) -> StringMatcher:
    m = _Msg(raw, path, ("path",))
    m.oneof(("path",), "path matcher")
    return parse_string_matcher(m.get("path"), m.path_of("path"))


def _parse_uri_template(raw: Any, path: str) -> PermUriTemplate:
    m = _Msg(raw, path, ("name", "typed_config"))
    name = m.get_str("name", min_len=1)
    tc = m.get("typed_config")
    tpath = m.path_of("typed_config")
    if not isinstance(tc, Mapping):
        raise RbacConfigError(tpath, "expected an object with '@type'")
    if tc.get("@type") != URI_TEMPLATE_TYPE:
        raise RbacConfigError(tpath, f"unsupported @type {tc.get('@type')!r}")
    t = _Msg({k: v for k, v in tc.items() if k != "@type"}, tpath, ("path_template",))
    template = t.get_str("path_template", min_len=1)
    try:
        compile_uri_template(template)
    except UriTemplateError as e:
        raise RbacConfigError(t.path_of("path_template"), str(e)) from None
    return PermUriTemplate(template, name=name)


# --- permissions and principals --------------------------------------------------

_PERMISSION_FIELDS = (
    "and_rules",
    "or_rules",
    "any",
    "header",
    "url_path",
    "destination_ip",
    "destination_port",
    "destination_port_range",
    "metadata",
    "not_rule",
    "requested_server_name",
    "uri_template",
    "matcher",
    "sourced_metadata",
)


def _rule_set(m: _Msg, field: str, item: str, parse: Callable[[Any, str], Any]) -> tuple[Any, ...]:
    s = m.msg(field, (item,))
    return tuple(parse(v, p) for p, v in s.get_list(item, min_items=1))


def _parse_any(m: _Msg, field: str) -> None:
    if m.get_bool(field) is not True:
        raise RbacConfigError(m.path_of(field), "must be true")


def parse_permission(raw: Any, path: str = "") -> Permission:
    m = _Msg(raw, path, _PERMISSION_FIELDS)
    m.reject(("matcher", "sourced_metadata"))
    field = m.oneof(_PERMISSION_FIELDS, "permission")
    fpath = m.path_of(field or "")
    v = m.get(field or "")
    match field:
        case "and_rules":
            return PermAnd(_rule_set(m, field, "rules", parse_permission))
        case "or_rules":
            return PermOr(_rule_set(m, field, "rules", parse_permission))
        case "any":
            _parse_any(m, field)
            return PermAny()
        case "header":
            return PermHeader(parse_header_matcher(v, fpath))
        case "url_path":
            return PermUrlPath(_parse_path_matcher(v, fpath))
        case "destination_ip":
            return PermDestinationIp(parse_cidr(v, fpath))
        case "destination_port":
            return PermDestinationPort(m.get_int(field, 0, 65535))
        case "destination_port_range":
            r = m.msg(field, ("start", "end"))
            start, end = r.get_int("start", *_INT32), r.get_int("end", *_INT32)
            # Envoy's PortRangeMatcher constructor checks these bounds
            if not (0 <= start <= 65536 and 0 <= end <= 65536 and start < end):
                raise RbacConfigError(fpath, f"invalid port range [{start}, {end})")
            return PermDestinationPortRange(start, end)
        case "metadata":
            return PermMetadata(parse_metadata_matcher(v, fpath))
        case "not_rule":
            return PermNot(parse_permission(v, fpath))
        case "requested_server_name":
            return PermRequestedServerName(parse_string_matcher(v, fpath))
        case "uri_template":
            return _parse_uri_template(v, fpath)
    raise AssertionError(field)


_PRINCIPAL_FIELDS = (
    "and_ids",
    "or_ids",
    "any",
    "authenticated",
    "source_ip",
    "direct_remote_ip",
    "remote_ip",
    "header",
    "url_path",
    "metadata",
    "filter_state",
    "not_id",
    "sourced_metadata",
    "custom",
)


def parse_principal(raw: Any, path: str = "") -> Principal:
    m = _Msg(raw, path, _PRINCIPAL_FIELDS)
    m.reject(("sourced_metadata", "custom"))
    field = m.oneof(_PRINCIPAL_FIELDS, "principal")
    fpath = m.path_of(field or "")
    v = m.get(field or "")
    match field:
        case "and_ids":
            return IdAnd(_rule_set(m, field, "ids", parse_principal))
        case "or_ids":
            return IdOr(_rule_set(m, field, "ids", parse_principal))
        case "any":
            _parse_any(m, field)
            return IdAny()
        case "authenticated":
            a = m.msg(field, ("principal_name",))
            if not a.has("principal_name"):
                return IdAuthenticated(None)
            pn = a.get("principal_name")
            return IdAuthenticated(parse_string_matcher(pn, a.path_of("principal_name")))
        case "source_ip":
            return IdSourceIp(parse_cidr(v, fpath))
        case "direct_remote_ip":
            return IdDirectRemoteIp(parse_cidr(v, fpath))
        case "remote_ip":
            return IdRemoteIp(parse_cidr(v, fpath))
        case "header":
            return IdHeader(parse_header_matcher(v, fpath))
        case "url_path":
            return IdUrlPath(_parse_path_matcher(v, fpath))
        case "metadata":
            return IdMetadata(parse_metadata_matcher(v, fpath))
        case "filter_state":
            fs = m.msg(field, ("key", "string_match", "address_match"))
            fs.reject(("address_match",))
            fs.oneof(("string_match",), "filter state matcher")
            sm = parse_string_matcher(fs.get("string_match"), fs.path_of("string_match"))
            return IdFilterState(fs.get_str("key", min_len=1), sm)
        case "not_id":
            return IdNot(parse_principal(v, fpath))
    raise AssertionError(field)


# --- policies and filters ----------------------------------------------------------


def parse_policy(raw: Any, path: str = "") -> Policy:
    m = _Msg(
        raw, path, ("permissions", "principals", "condition", "checked_condition", "cel_config")
    )
    m.reject(("condition", "checked_condition", "cel_config"), "CEL conditions are not supported")
    perms = tuple(parse_permission(v, p) for p, v in m.get_list("permissions", min_items=1))
    ids = tuple(parse_principal(v, p) for p, v in m.get_list("principals", min_items=1))
    return Policy(perms, ids)


_ACTIONS = {"ALLOW": Action.ALLOW, "DENY": Action.DENY, "LOG": Action.LOG}
_ACTION_NUMBERS = {0: Action.ALLOW, 1: Action.DENY, 2: Action.LOG}


def parse_rbac(raw: Any, path: str = "") -> RBAC:
    m = _Msg(raw, path, ("action", "policies", "audit_logging_options"))
    m.reject(("audit_logging_options",))
    a = m.get("action", "ALLOW")
    if isinstance(a, float) and a.is_integer():
        a = int(a)  # 1.0 is the number 1, as JSON has one number type
    # only a string or a number names an action (a list or object is not hashable)
    action = (
        _ACTIONS.get(a)
        if isinstance(a, str)
        else _ACTION_NUMBERS.get(a)
        if isinstance(a, int)
        else None
    )
    if action is None or isinstance(a, bool):
        raise RbacConfigError(m.path_of("action"), f"unknown action {a!r} (ALLOW, DENY or LOG)")
    pols = m.get("policies", {})
    ppath = m.path_of("policies")
    if not isinstance(pols, Mapping):
        raise RbacConfigError(ppath, f"expected an object, got {_type_name(pols)}")
    policies = []
    for name, pol in pols.items():
        if not isinstance(name, str):
            raise RbacConfigError(ppath, f"policy name must be a string, got {name!r}")
        policies.append((name, parse_policy(pol, f"{ppath}[{_quote(name)}]")))
    return RBAC(action, tuple(policies))


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_HTTP_FIELDS = (
    "rules",
    "rules_stat_prefix",
    "matcher",
    "shadow_rules",
    "shadow_matcher",
    "shadow_rules_stat_prefix",
    "track_per_rule_stats",
)
_NETWORK_FIELDS = (
    "rules",
    "matcher",
    "shadow_rules",
    "shadow_matcher",
    "shadow_rules_stat_prefix",
    "stat_prefix",
    "enforcement_type",
    "delay_deny",
)


def _maybe_rbac(m: _Msg, field: str) -> RBAC | None:
    return parse_rbac(m.get(field), m.path_of(field)) if m.has(field) else None


def parse_http_rbac(raw: Any, path: str = "", name: str = HTTP_FILTER_NAME) -> HttpRbacFilter:
    """The typed config of the HTTP filter, without ``@type``."""
    m = _Msg(raw, path, _HTTP_FIELDS)
    m.reject(("matcher", "shadow_matcher"), "matcher-based RBAC is not supported")
    return HttpRbacFilter(
        rules=_maybe_rbac(m, "rules"),
        shadow_rules=_maybe_rbac(m, "shadow_rules"),
        rules_stat_prefix=m.get_str("rules_stat_prefix"),
        shadow_rules_stat_prefix=m.get_str("shadow_rules_stat_prefix"),
        track_per_rule_stats=m.get_bool("track_per_rule_stats"),
        name=name,
    )


_ENFORCEMENT = {"ONE_TIME_ON_FIRST_BYTE": 0, "CONTINUOUS": 1}


def parse_network_rbac(
    raw: Any, path: str = "", name: str = NETWORK_FILTER_NAME
) -> NetworkRbacFilter:
    """The typed config of the network filter, without ``@type``."""
    m = _Msg(raw, path, _NETWORK_FIELDS)
    m.reject(("matcher", "shadow_matcher"), "matcher-based RBAC is not supported")
    m.reject(("delay_deny",))
    et = m.get("enforcement_type", "ONE_TIME_ON_FIRST_BYTE")
    if isinstance(et, int) and not isinstance(et, bool):
        et = {v: k for k, v in _ENFORCEMENT.items()}.get(et, et)
    if et not in _ENFORCEMENT:
        raise RbacConfigError(m.path_of("enforcement_type"), f"unknown enforcement type {et!r}")
    rules, shadow = _maybe_rbac(m, "rules"), _maybe_rbac(m, "shadow_rules")
    check_network_rules(rules, m.path_of("rules"))
    check_network_rules(shadow, m.path_of("shadow_rules"))
    return NetworkRbacFilter(
        stat_prefix=m.get_str("stat_prefix", min_len=1),
        rules=rules,
        shadow_rules=shadow,
        shadow_rules_stat_prefix=m.get_str("shadow_rules_stat_prefix"),
        enforcement_type=et,
        name=name,
    )


def parse_filter(raw: Any, path: str = "", runtime: EnvoyRuntime = VANILLA) -> RbacFilter:
    """An HTTP or network RBAC filter: ``{name, typedConfig: {'@type': ..., ...}}``,
    or the typed config alone (with its ``@type``), as a proxy with the runtime
    flags ``runtime`` loads it (its regex program-size limit)."""
    if isinstance(raw, Mapping) and "@type" in raw:
        flt = _parse_typed(raw, path, None)
    else:
        m = _Msg(raw, path, ("name", "typed_config"))
        name = m.get_str("name", min_len=1)
        if not m.has("typed_config"):
            raise RbacConfigError(m.path_of("typed_config"), "is required")
        flt = _parse_typed(m.get("typed_config"), m.path_of("typed_config"), name)
    check_regex_sizes(raw, path, runtime.re2_max_program_size)
    return flt


def _parse_typed(raw: Any, path: str, name: str | None) -> RbacFilter:
    if not isinstance(raw, Mapping):
        raise RbacConfigError(path, f"expected an object, got {_type_name(raw)}")
    type_url = raw.get("@type")
    body = {k: v for k, v in raw.items() if k != "@type"}
    if type_url == HTTP_FILTER_TYPE:
        return parse_http_rbac(body, path, name or HTTP_FILTER_NAME)
    if type_url == NETWORK_FILTER_TYPE:
        return parse_network_rbac(body, path, name or NETWORK_FILTER_NAME)
    raise RbacConfigError(path, f"not an RBAC filter: @type {type_url!r}")


def check_network_rules(rbac: RBAC | None, where: str) -> None:
    """Envoy's network RBAC filter rejects header rules at config load."""
    if rbac is None:
        return

    def walk(node: Any, path: str) -> None:
        match node:
            case PermHeader() | IdHeader():
                raise RbacConfigError(path, "header rules are not supported by the network filter")
            case PermAnd(rules=subs) | PermOr(rules=subs) | IdAnd(ids=subs) | IdOr(ids=subs):
                for i, s in enumerate(subs):
                    walk(s, f"{path}[{i}]")
            case PermNot(rule=sub) | IdNot(id=sub):
                walk(sub, path + ".not")

    for name, pol in rbac.policies:
        for i, p in enumerate(pol.permissions):
            walk(p, f'{where}.policies["{name}"].permissions[{i}]')
        for i, q in enumerate(pol.principals):
            walk(q, f'{where}.policies["{name}"].principals[{i}]')


# --- writing ---------------------------------------------------------------------


class _Writer:
    def __init__(self, style: Style) -> None:
        if style not in ("camel", "snake"):
            raise ValueError(f"style must be 'camel' or 'snake', not {style!r}")
        self.camel = style == "camel"

    def k(self, field: str) -> str:
        return camel(field) if self.camel else field

    def obj(self, *pairs: tuple[str, Any]) -> dict[str, Any]:
        return {self.k(f): v for f, v in pairs}

    def string(self, s: StringMatcher) -> dict[str, Any]:
        value: Any = {"regex": s.value} if s.kind == "safe_regex" else s.value
        out = {self.k(s.kind): value}
        if s.ignore_case:
            out[self.k("ignore_case")] = True
        return out

    def header(self, h: HeaderMatcher) -> dict[str, Any]:
        out: dict[str, Any] = {"name": h.name}
        if h.kind == "present":
            out[self.k("present_match")] = h.present
        elif h.kind == "string":
            assert h.string is not None
            out[self.k("string_match")] = self.string(h.string)
        elif h.kind == "range":
            assert h.range is not None
            out[self.k("range_match")] = {"start": str(h.range.start), "end": str(h.range.end)}
        elif h.kind == "safe_regex":
            out[self.k("safe_regex_match")] = {"regex": h.value}
        else:
            out[self.k(f"{h.kind}_match")] = h.value
        if h.invert_match:
            out[self.k("invert_match")] = True
        if h.treat_missing_header_as_empty:
            out[self.k("treat_missing_header_as_empty")] = True
        return out

    def cidr(self, c: CidrRange) -> dict[str, Any]:
        out: dict[str, Any] = {self.k("address_prefix"): c.address_prefix}
        if c.prefix_len is not None:
            out[self.k("prefix_len")] = c.prefix_len
        return out

    def value(self, v: ValueMatcher) -> dict[str, Any]:
        match v.kind:
            case "null":
                return self.obj(("null_match", {}))
            case "string":
                assert v.string is not None
                return self.obj(("string_match", self.string(v.string)))
            case "bool":
                return self.obj(("bool_match", v.boolean))
            case "present":
                return self.obj(("present_match", v.present))
            case "double":
                d: dict[str, Any]
                if v.double_range is not None:
                    start, end = v.double_range
                    d = {"range": {"start": _double(start), "end": _double(end)}}
                else:
                    d = {"exact": _double(v.double_exact or 0.0)}
                return self.obj(("double_match", d))
            case "list":
                assert v.one_of is not None
                return self.obj(("list_match", self.obj(("one_of", self.value(v.one_of)))))
            case "or":
                vm = [self.value(x) for x in v.or_matchers]
                return self.obj(("or_match", self.obj(("value_matchers", vm))))
        raise AssertionError(v.kind)

    def metadata(self, m: MetadataMatcher) -> dict[str, Any]:
        out: dict[str, Any] = {
            "filter": m.filter,
            "path": [{"key": k} for k in m.path],
            "value": self.value(m.value),
        }
        if m.invert:
            out["invert"] = True
        return out

    def permission(self, p: Permission) -> dict[str, Any]:
        match p:
            case PermAny():
                return {"any": True}
            case PermAnd(rules=rules):
                return self.obj(("and_rules", {"rules": [self.permission(r) for r in rules]}))
            case PermOr(rules=rules):
                return self.obj(("or_rules", {"rules": [self.permission(r) for r in rules]}))
            case PermNot(rule=rule):
                return self.obj(("not_rule", self.permission(rule)))
            case PermHeader(header=h):
                return {"header": self.header(h)}
            case PermUrlPath(path=s):
                return self.obj(("url_path", {"path": self.string(s)}))
            case PermDestinationIp(cidr=c):
                return self.obj(("destination_ip", self.cidr(c)))
            case PermDestinationPort(port=port):
                return self.obj(("destination_port", port))
            case PermDestinationPortRange(start=start, end=end):
                return self.obj(("destination_port_range", {"start": start, "end": end}))
            case PermMetadata(metadata=md):
                return {"metadata": self.metadata(md)}
            case PermRequestedServerName(name=s):
                return self.obj(("requested_server_name", self.string(s)))
            case PermUriTemplate(path_template=t, name=name):
                tc = {"@type": URI_TEMPLATE_TYPE, self.k("path_template"): t}
                return self.obj(("uri_template", {"name": name, self.k("typed_config"): tc}))
        raise TypeError(f"not a Permission: {p!r}")

    def principal(self, p: Principal) -> dict[str, Any]:
        match p:
            case IdAny():
                return {"any": True}
            case IdAnd(ids=ids):
                return self.obj(("and_ids", {"ids": [self.principal(i) for i in ids]}))
            case IdOr(ids=ids):
                return self.obj(("or_ids", {"ids": [self.principal(i) for i in ids]}))
            case IdNot(id=i):
                return self.obj(("not_id", self.principal(i)))
            case IdAuthenticated(principal_name=s):
                a = {} if s is None else self.obj(("principal_name", self.string(s)))
                return {"authenticated": a}
            case IdSourceIp(cidr=c):
                return self.obj(("source_ip", self.cidr(c)))
            case IdDirectRemoteIp(cidr=c):
                return self.obj(("direct_remote_ip", self.cidr(c)))
            case IdRemoteIp(cidr=c):
                return self.obj(("remote_ip", self.cidr(c)))
            case IdHeader(header=h):
                return {"header": self.header(h)}
            case IdUrlPath(path=s):
                return self.obj(("url_path", {"path": self.string(s)}))
            case IdMetadata(metadata=md):
                return {"metadata": self.metadata(md)}
            case IdFilterState(key=key, string=s):
                return self.obj(
                    ("filter_state", self.obj(("key", key), ("string_match", self.string(s))))
                )
        raise TypeError(f"not a Principal: {p!r}")

    def policy(self, p: Policy) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if p.permissions:
            out["permissions"] = [self.permission(x) for x in p.permissions]
        if p.principals:
            out["principals"] = [self.principal(x) for x in p.principals]
        return out

    def rbac(self, r: RBAC) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if r.action is not Action.ALLOW:
            out["action"] = r.action.value
        if r.policies:
            out["policies"] = {name: self.policy(p) for name, p in r.policies}
        return out

    def typed(self, f: RbacFilter) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(f, HttpRbacFilter):
            out["@type"] = HTTP_FILTER_TYPE
            if f.rules is not None:
                out["rules"] = self.rbac(f.rules)
            if f.rules_stat_prefix:
                out[self.k("rules_stat_prefix")] = f.rules_stat_prefix
            if f.shadow_rules is not None:
                out[self.k("shadow_rules")] = self.rbac(f.shadow_rules)
            if f.shadow_rules_stat_prefix:
                out[self.k("shadow_rules_stat_prefix")] = f.shadow_rules_stat_prefix
            if f.track_per_rule_stats:
                out[self.k("track_per_rule_stats")] = True
            return out
        out["@type"] = NETWORK_FILTER_TYPE
        if f.rules is not None:
            out["rules"] = self.rbac(f.rules)
        if f.shadow_rules is not None:
            out[self.k("shadow_rules")] = self.rbac(f.shadow_rules)
        if f.shadow_rules_stat_prefix:
            out[self.k("shadow_rules_stat_prefix")] = f.shadow_rules_stat_prefix
        out[self.k("stat_prefix")] = f.stat_prefix
        if f.enforcement_type != "ONE_TIME_ON_FIRST_BYTE":
            out[self.k("enforcement_type")] = f.enforcement_type
        return out


def _double(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def filter_to_dict(f: RbacFilter, style: Style = "camel") -> dict[str, Any]:
    """The filter with its envelope: ``{name, typedConfig: {...}}``."""
    w = _Writer(style)
    return {"name": f.name, w.k("typed_config"): w.typed(f)}


def typed_config_to_dict(f: RbacFilter, style: Style = "camel") -> dict[str, Any]:
    """The filter's typed config alone, with its ``@type``."""
    return _Writer(style).typed(f)


def rbac_to_dict(r: RBAC, style: Style = "camel") -> dict[str, Any]:
    return _Writer(style).rbac(r)


def policy_to_dict(p: Policy, style: Style = "camel") -> dict[str, Any]:
    return _Writer(style).policy(p)


def permission_to_dict(p: Permission, style: Style = "camel") -> dict[str, Any]:
    return _Writer(style).permission(p)


def principal_to_dict(p: Principal, style: Style = "camel") -> dict[str, Any]:
    return _Writer(style).principal(p)

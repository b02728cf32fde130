"""Leaf matchers compiled to closures, with Envoy 1.40's semantics.

Each ``compile_*`` function turns a model node into ``fn(inp) -> bool`` once,
so that the per-request path does no parsing, lowercasing or regex building.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from .model import (
    CidrRange,
    HeaderMatcher,
    MetadataMatcher,
    StringKind,
    StringMatcher,
    ValueMatcher,
)
from .regex import compile_regex
from .uri_template import compile_uri_template

if TYPE_CHECKING:
    from .evaluate import RbacInput

StrFn = Callable[[str], bool]
InputFn = Callable[["RbacInput"], bool]

# Envoy folds case for ASCII letters only (absl::AsciiStrToLower and friends).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(s: str) -> str:
    # an ASCII string's lower() changes A-Z alone, and costs less than translate
    return s.lower() if s.isascii() else s.translate(_ASCII_LOWER)


def compile_string(m: StringMatcher) -> StrFn:
    """envoy.type.matcher.v3.StringMatcher."""
    v = m.value
    if m.kind == "safe_regex":
        full = compile_regex(v).fullmatch
        return lambda s: full(s) is not None
    if m.ignore_case:
        lv = ascii_lower(v)
        if m.kind == "exact":
            return lambda s: len(s) == len(lv) and ascii_lower(s) == lv
        if m.kind == "prefix":
            return lambda s: ascii_lower(s[: len(lv)]) == lv if len(s) >= len(lv) else False
        if m.kind == "suffix":
            n = len(lv)
            return lambda s: len(s) >= n and ascii_lower(s[len(s) - n :]) == lv
        return lambda s: lv in ascii_lower(s)
    if m.kind == "exact":
        return v.__eq__
    if m.kind == "prefix":
        return lambda s: s.startswith(v)
    if m.kind == "suffix":
        return lambda s: s.endswith(v)
    return lambda s: v in s


# --- sets of string matchers ----------------------------------------------------
# Istio writes a field's values (principals, paths, hosts) as an Or of string
# matchers on one input. Matchers are pure, so the Or means "one of them
# matches", whatever their order: each kind becomes one lookup (a set for exact
# values, a sorted table for prefixes and suffixes) instead of a test per value.


def _prefix_fn(prefixes: Iterable[str]) -> StrFn:
    """``s.startswith(p)`` for some p: one binary search. Prefixes that extend a
    shorter one are dropped (the shorter one matches whatever they match); in the
    sorted prefix-free rest, the only candidate prefix of ``s`` is the last entry
    <= s (every string between a prefix of s and s starts with that prefix)."""
    free: list[str] = []
    for p in sorted(set(prefixes)):
        if not free or not p.startswith(free[-1]):
            free.append(p)
    if free and free[0] == "":
        return lambda s: True
    if len(free) <= 4:  # a C loop over a short tuple beats the search
        t = tuple(free)
        return lambda s: s.startswith(t)
    table = free
    right = bisect.bisect_right

    def lookup(s: str) -> bool:
        i = right(table, s)
        return i > 0 and s.startswith(table[i - 1])

    return lookup


def _suffix_fn(suffixes: Iterable[str]) -> StrFn:
    rev = _prefix_fn(x[::-1] for x in suffixes)
    return lambda s: rev(s[::-1])


# istiod writes a principal "*x" as the regex "spiffe://.*" + QuoteMeta("x")
# (translate/matchers.string_matcher): a known head, then anything, then a literal.
_QUOTED = frozenset("\\.+*?()|[]{}^$")


def _unquote_meta(q: str) -> str | None:
    """The literal Go's QuoteMeta turned into ``q``, or None if ``q`` is not one."""
    out = []
    i = 0
    while i < len(q):
        c = q[i]
        if c == "\\":
            if i + 1 >= len(q) or q[i + 1] not in _QUOTED:
                return None
            out.append(q[i + 1])
            i += 2
            continue
        if c in _QUOTED:
            return None
        out.append(c)
        i += 1
    return "".join(out)


def _head_any_tail(regex: str) -> tuple[str, str] | None:
    """(head, tail) when ``regex`` is literal head, ``.*``, literal tail without a
    newline: it fully matches s iff s starts with head and the rest ends with tail
    and holds no newline (RE2's ``.`` stops at one)."""
    head, sep, tail = regex.partition(".*")
    if not sep:
        return None
    h, t = _unquote_meta(head), _unquote_meta(tail)
    if h is None or t is None or "\n" in t:
        return None
    return h, t


def string_set(matchers: Iterable[StringMatcher]) -> StrFn:
    """``any(compile_string(m)(s) for m in matchers)`` as one lookup per kind."""
    exact: set[str] = set()
    exact_ic: set[str] = set()
    by_kind: dict[tuple[str, bool], list[str]] = {}
    tails: dict[str, list[str]] = {}  # head -> tails of "head.*tail" regexes
    others: list[StrFn] = []
    for m in matchers:
        if m.kind == "exact":
            (exact_ic.add(ascii_lower(m.value)) if m.ignore_case else exact.add(m.value))
        elif m.kind in ("prefix", "suffix", "contains"):
            v = ascii_lower(m.value) if m.ignore_case else m.value
            by_kind.setdefault((m.kind, m.ignore_case), []).append(v)
        elif m.kind == "safe_regex" and (split := _head_any_tail(m.value)) is not None:
            tails.setdefault(split[0], []).append(split[1])
        else:
            others.append(compile_string(m))
    fns: list[StrFn] = []
    lowered: list[StrFn] = []  # tests on the ASCII-lowered value
    if exact:
        fns.append(frozenset(exact).__contains__)
    if exact_ic:
        lowered.append(frozenset(exact_ic).__contains__)
    for (kind, ic), values in by_kind.items():
        if kind == "prefix":
            fn = _prefix_fn(values)
        elif kind == "suffix":
            fn = _suffix_fn(values)
        else:
            t = tuple(values)

            def fn(s: str, t: tuple[str, ...] = t) -> bool:
                return any(v in s for v in t)

        (lowered if ic else fns).append(fn)
    for head, ts in tails.items():
        ends, n = _suffix_fn(ts), len(head)

        def anything_then(s: str, head: str = head, n: int = n, ends: StrFn = ends) -> bool:
            return s.startswith(head) and "\n" not in s[n:] and ends(s[n:])

        fns.append(anything_then)
    if lowered:
        low = _any_str(lowered)
        fns.append(lambda s: low(ascii_lower(s)))
    return _any_str(fns + others)


def _any_str(fns: list[StrFn]) -> StrFn:
    if not fns:
        return lambda s: False
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda s: a(s) or b(s)
    t = tuple(fns)
    return lambda s: any(f(s) for f in t)


def simple_atoi64(s: str) -> int | None:
    """absl::SimpleAtoi for int64: optional surrounding ASCII whitespace, a sign, decimal digits."""
    t = s.strip(" \t\n\v\f\r")
    body = t[1:] if t[:1] in ("+", "-") else t
    if not body or not body.isascii() or not body.isdigit():
        return None
    n = int(t)
    return n if -(2**63) <= n < 2**63 else None


def _header_value_fn(h: HeaderMatcher) -> StrFn:
    if h.kind == "string":
        assert h.string is not None
        return compile_string(h.string)
    if h.kind == "safe_regex":
        full = compile_regex(h.value).fullmatch
        return lambda s: full(s) is not None
    if h.kind == "range":
        assert h.range is not None
        lo, hi = h.range.start, h.range.end

        def in_range(s: str) -> bool:
            n = simple_atoi64(s)
            return n is not None and lo <= n < hi

        return in_range
    if h.kind == "exact":
        v = h.value
        # the deprecated exact_match: an empty value accepts any value
        return (lambda s: True) if v == "" else v.__eq__
    # the remaining kinds (prefix, suffix, contains, safe_regex) are StringMatcher kinds
    return compile_string(StringMatcher(cast(StringKind, h.kind), h.value))


def compile_header(h: HeaderMatcher) -> InputFn:
    """config.route.v3.HeaderMatcher as Envoy 1.40 applies it.

    Verified against Envoy 1.40 (tests/envoy_filters/rbac/test_matchers.py): a missing
    header never matches a value matcher, inverted or not; present_match
    compares presence and then inverts; treat_missing_header_as_empty makes a
    missing header present with value ""; a header with several values
    matches if any one value matches, and invert_match negates that.
    """
    name = ascii_lower(h.name)
    invert = h.invert_match
    tmae = h.treat_missing_header_as_empty
    if h.kind == "present":
        present = h.present

        def present_fn(inp: RbacInput) -> bool:
            found = name in inp.header_map or tmae
            return (found == present) != invert

        return present_fn
    value_fn = _header_value_fn(h)
    missing = (value_fn("") != invert) if tmae else False

    def header_fn(inp: RbacInput) -> bool:
        values = inp.header_map.get(name)
        if values is None:
            return missing
        for v in values:
            if value_fn(v):
                return not invert
        return invert

    return header_fn


def compile_cidr(c: CidrRange) -> Callable[[tuple[int, int] | None], bool]:
    """Network::Address::CidrRange::isInRange. An unset prefix_len is 0 and a
    too long one is clamped to the family's length (verified against Envoy 1.40);
    an address of the other family never matches."""
    addr = ipaddress.ip_address(c.address_prefix)
    bits = addr.max_prefixlen
    plen = min(c.prefix_len or 0, bits)
    mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    net = int(addr) & mask
    version = addr.version

    def in_range(ip: tuple[int, int] | None) -> bool:
        return ip is not None and ip[0] == version and (ip[1] & mask) == net

    return in_range


def url_path_fn(m: StringMatcher) -> InputFn:
    """PathMatcher: the :path header without query and fragment (``inp.url_path``);
    no :path, no match."""
    fn = compile_string(m)

    def path_fn(inp: RbacInput) -> bool:
        p = inp.url_path
        return p is not None and fn(p)

    return path_fn


def uri_template_fn(template: str) -> InputFn:
    full = compile_uri_template(template).fullmatch

    def tpl_fn(inp: RbacInput) -> bool:
        return full(inp.url_path or "") is not None

    return tpl_fn


# --- metadata ----------------------------------------------------------------

_NOT_SET = object()  # protobuf Value with KIND_NOT_SET


def compile_value(v: ValueMatcher) -> Callable[[Any], bool]:
    """envoy.type.matcher.v3.ValueMatcher over JSON-like values
    (None is null_value; a missing key is 'not set')."""
    match v.kind:
        case "null":
            return lambda x: x is None
        case "double":
            exact, rng = v.double_exact, v.double_range

            def dbl(x: Any) -> bool:
                if isinstance(x, bool) or not isinstance(x, int | float):
                    return False
                if rng is not None:
                    return rng[0] <= x < rng[1]
                return x == exact

            return dbl
        case "string":
            assert v.string is not None
            sfn = compile_string(v.string)
            return lambda x: isinstance(x, str) and sfn(x)
        case "bool":
            b = v.boolean
            return lambda x: isinstance(x, bool) and x == b
        case "present":
            p = v.present
            return lambda x: p and x is not _NOT_SET
        case "list":
            assert v.one_of is not None
            one = compile_value(v.one_of)
            return lambda x: isinstance(x, list | tuple) and any(one(e) for e in x)
        case "or":
            subs = [compile_value(s) for s in v.or_matchers]
            return lambda x: any(s(x) for s in subs)
    raise AssertionError(v.kind)


def compile_metadata(m: MetadataMatcher) -> InputFn:
    value_fn = compile_value(m.value)
    filt, path, invert = m.filter, m.path, m.invert

    def md_fn(inp: RbacInput) -> bool:
        node: Any = inp.dynamic_metadata.get(filt, _NOT_SET)
        for key in path:
            node = node.get(key, _NOT_SET) if isinstance(node, dict) else _NOT_SET
        return value_fn(node) != invert

    return md_fn

"""How istiod turns one Istio value into an Envoy leaf matcher.

Each helper mirrors one of istiod's conventions for a value with a ``*``
(see ``pilot/pkg/security/authz/matcher`` and ``model/util.go``): the lone
``*``, a leading ``*`` (suffix), a trailing ``*`` (prefix), or an exact value.
The order of those tests matters and is kept: ``*a*`` is a suffix match on
``a*``. Errors raise ``GenerationError`` with istiod's reason.
"""

from __future__ import annotations

import ipaddress
import re

from meshauthz.envoy.rbac.model import (
    CidrRange,
    HeaderMatcher,
    MetadataMatcher,
    StringMatcher,
    ValueMatcher,
)

SPIFFE_PREFIX = "spiffe://"
JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "payload"

# The characters Go's regexp.QuoteMeta escapes (Python's re.escape escapes more).
_META = frozenset("\\.+*?()|[]{}^$")


class GenerationError(ValueError):
    """A value istiod cannot translate (bad IP, port, key) or one that has no
    meaning on the chain being built (an HTTP-only field on TCP)."""


def quote_meta(s: str) -> str:
    """Go's regexp.QuoteMeta."""
    return "".join("\\" + c if c in _META else c for c in s)


def exact(v: str, ignore_case: bool = False) -> StringMatcher:
    return StringMatcher("exact", v, ignore_case)


def prefix(v: str, ignore_case: bool = False) -> StringMatcher:
    return StringMatcher("prefix", v, ignore_case)


def suffix(v: str, ignore_case: bool = False) -> StringMatcher:
    return StringMatcher("suffix", v, ignore_case)


def regex(r: str) -> StringMatcher:
    return StringMatcher("safe_regex", r)


MATCH_ANY = regex(".+")


def string_matcher(v: str, with_prefix: str = "") -> StringMatcher:
    """istiod's generic value matcher, optionally for values written without
    a scheme (``with_prefix`` is then prepended, e.g. ``spiffe://``)."""
    if v == "*":
        return MATCH_ANY
    if v.startswith("*"):
        if not with_prefix:
            return suffix(v[1:])
        return regex(with_prefix + ".*" + quote_meta(v[1:]))
    if v.endswith("*"):
        return prefix(with_prefix + v[:-1])
    return exact(with_prefix + v)


def header_matcher(name: str, v: str, ignore_case: bool = False) -> HeaderMatcher:
    """A header matcher; ``*`` means the header is present (with any value)."""
    if v == "*":
        return HeaderMatcher(name, "present", present=True)
    if v.startswith("*"):
        return HeaderMatcher(name, "string", string=suffix(v[1:], ignore_case))
    if v.endswith("*"):
        return HeaderMatcher(name, "string", string=prefix(v[:-1], ignore_case))
    return HeaderMatcher(name, "string", string=exact(v, ignore_case))


def host_matcher(v: str) -> HeaderMatcher:
    """``hosts`` match the authority without regard to case."""
    return header_matcher(":authority", v, ignore_case=True)


def string_value(m: StringMatcher) -> ValueMatcher:
    return ValueMatcher("string", string=m)


def or_values(matchers: list[ValueMatcher]) -> ValueMatcher:
    """One matcher stays itself; several are OR-ed."""
    if len(matchers) == 1:
        return matchers[0]
    return ValueMatcher("or", or_matchers=tuple(matchers))


def string_or_values(values: list[str]) -> ValueMatcher:
    return or_values([string_value(string_matcher(v)) for v in values])


def list_or_scalar(value: ValueMatcher) -> ValueMatcher:
    """Matches a metadata value that is either a list with a matching element
    or itself matching (how istiod matches JWT claims)."""
    return ValueMatcher("or", or_matchers=(ValueMatcher("list", one_of=value), value))


def jwt_claim_matcher(claim: str, m: StringMatcher) -> MetadataMatcher:
    """A plain string match on one top-level JWT claim (iss, sub)."""
    return MetadataMatcher(JWT_FILTER, (JWT_PAYLOAD, claim), string_value(m))


def jwt_claims_list_matcher(claims: list[str], value: ValueMatcher) -> MetadataMatcher:
    return MetadataMatcher(JWT_FILTER, (JWT_PAYLOAD, *claims), list_or_scalar(value))


def path_template(v: str) -> str:
    """Istio's ``{*}``/``{**}`` path template in Envoy's uri_template syntax."""
    out = []
    i = 0
    while i < len(v):
        if v.startswith("{*}", i):
            out.append("*")
            i += 3
        elif v.startswith("{**}", i):
            out.append("**")
            i += 4
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


def contains_path_template(v: str) -> bool:
    return "{*}" in v or "{**}" in v


# compiled on first use (re's cache), not at import: start-up
_DIGITS = r"[0-9]+"


def parse_port(v: str) -> int:
    """A port written as a base-10 unsigned number no greater than 65535."""
    if not re.fullmatch(_DIGITS, v) or int(v) > 65535:
        raise GenerationError(f"invalid port {v}")
    return int(v)


def _go_addr(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # Go's netip.ParseAddr: no zone handling here (a zone makes a prefix invalid).
    if "%" in s:
        raise ValueError("zone not allowed")
    return ipaddress.ip_address(s)


def _addr_text(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return f"::ffff:{a.ipv4_mapped}"
    return str(a)


def parse_cidr(v: str) -> CidrRange:
    """An address or CIDR as istiod writes it: host bits are kept, a bare
    address gets the full prefix length of its family."""
    if not v:
        raise GenerationError("empty address")
    try:
        if "/" in v:
            addr_s, bits_s = v.split("/", 1)
            addr = _go_addr(addr_s)
            if not re.fullmatch(_DIGITS, bits_s) or (len(bits_s) > 1 and bits_s[0] == "0"):
                raise ValueError("bad prefix length")
            bits = int(bits_s)
            if bits > addr.max_prefixlen:
                raise ValueError("prefix length out of range")
            return CidrRange(_addr_text(addr), bits)
        addr = _go_addr(v)
        return CidrRange(_addr_text(addr), addr.max_prefixlen)
    except ValueError as e:
        raise GenerationError(f"invalid IP address or CIDR {v!r}: {e}") from None


def name_in_brackets(s: str) -> str:
    """``[name]`` -> ``name`` (only the outermost brackets are removed)."""
    if not (s.startswith("[") and s.endswith("]")):
        raise GenerationError(f"expecting format [<NAME>], but found {s}")
    s = s.removesuffix("]")
    return s.removeprefix("[")


def names_in_nested_brackets(s: str) -> list[str]:
    """``[a][b]`` -> ``[a, b]``; when the walk fails, the whole text is one name."""
    names: list[str] = []
    begin = 0
    while begin < len(s):
        end = -1
        if s[begin] == "[":
            for i in range(begin + 1, len(s)):
                if s[i] == "[":
                    break
                if s[i] == "]":
                    end = i
                    break
        if end == -1:
            return [name_in_brackets(s)]
        names.append(s[begin + 1 : end])
        begin = end + 1
    return names

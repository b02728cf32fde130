"""Envoy's RBAC matchers as solver formulas: one case per model class of
``meshauthz.envoy.rbac.model``, meaning what the evaluator
(``meshauthz.envoy.rbac.evaluate``, ``matchers``) compiles each to.

A leaf that reads nothing the request varies on (the destination's address
and port, a header on a TCP chain, metadata nobody wrote) is decided by
running the evaluator's own compiled matcher on a concrete input, so its
constant value comes from the one implementation.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

import z3
from msgspec import Struct, field

from meshauthz.envoy.jwt_authn import JWT_FILTER
from meshauthz.envoy.rbac.evaluate import RbacInput, compile_node
from meshauthz.envoy.rbac.matchers import ascii_lower, compile_header, compile_string
from meshauthz.envoy.rbac.model import (
    CidrRange,
    HeaderMatcher,
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
    MetadataMatcher,
    PermAnd,
    PermAny,
    PermDestinationIp,
    PermDestinationPort,
    PermDestinationPortRange,
    PermHeader,
    PermMetadata,
    PermNot,
    PermOr,
    PermRequestedServerName,
    PermUriTemplate,
    PermUrlPath,
    Policy,
    StringMatcher,
    ValueMatcher,
)
from meshauthz.envoy.rbac.uri_template import UriTemplateError, compile_uri_template
from meshauthz.symbolic.regex import Unencodable, re2_to_z3
from meshauthz.symbolic.space import CLAIM_NAMED_LIMIT, LIST, METHODS, STRING, ClaimVar, Space

SPIFFE = "spiffe://"
_ALL = z3.AllChar(z3.ReSort(z3.StringSort()))
_FULL = z3.Star(_ALL)


class Writes(Struct):
    """Dynamic metadata written by the filters run so far: for each
    (namespace, key) the writes in order, each (condition, value)."""

    by_key: dict[tuple[str, str], list[tuple[z3.BoolRef, Any]]] = field(default_factory=dict)

    def write(self, ns: str, key: str, cond: z3.BoolRef, value: Any) -> None:
        self.by_key.setdefault((ns, key), []).append((cond, value))

    def namespaces(self) -> set[str]:
        return {ns for ns, _ in self.by_key}

    def outcomes(self, ns: str, key: str) -> list[tuple[z3.BoolRef, Any]]:
        """The value the key holds, as (condition, value) cases that partition the
        space (value ``None``: never written)."""
        ws = self.by_key.get((ns, key), [])
        out: list[tuple[z3.BoolRef, Any]] = []
        later: list[z3.BoolRef] = []
        for cond, value in reversed(ws):  # the last write wins
            out.append((z3.And(cond, *[z3.Not(c) for c in later]), value))
            later.append(cond)
        out.append((z3.And(*[z3.Not(c) for c in later]), None))
        return out


@dataclasses.dataclass(slots=True)
class Context:
    """What the matchers of one chain read: the request variables, whether a
    peer certificate reaches the filters, the destination, the metadata so far."""

    space: Space
    peer: z3.BoolRef
    destination_ip: str
    destination_port: int
    writes: Writes = dataclasses.field(default_factory=Writes)
    # when the JWT filter has run: the requests it passes with a payload
    jwt_payload: z3.BoolRef | None = None
    concrete: RbacInput = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        # what a leaf that reads no request variable sees
        self.concrete = RbacInput(
            destination_ip=self.destination_ip,
            destination_port=self.destination_port,
            headers=(() if self.space.http else None),
        )


def _ci(text: str) -> z3.ReRef:
    """``text`` with ASCII letters in either case (Envoy folds ASCII only)."""
    parts = []
    for ch in text:
        lo, up = ch.lower(), ch.upper()
        if ch.isascii() and lo != up:
            parts.append(z3.Union(z3.Re(lo), z3.Re(up)))
        else:
            parts.append(z3.Re(z3.StringVal(ch)))
    if not parts:
        return z3.Re(z3.StringVal(""))
    return parts[0] if len(parts) == 1 else z3.Concat(*parts)


def string_formula(m: StringMatcher, s: z3.SeqRef) -> z3.BoolRef:
    """envoy.type.matcher.v3.StringMatcher, as ``matchers.compile_string``."""
    v = m.value
    if m.kind == "safe_regex":
        return z3.InRe(s, re2_to_z3(v))
    if m.ignore_case:
        r = _ci(ascii_lower(v))
        shaped = {
            "exact": r,
            "prefix": z3.Concat(r, _FULL),
            "suffix": z3.Concat(_FULL, r),
            "contains": z3.Concat(_FULL, r, _FULL),
        }[m.kind]
        return z3.InRe(s, shaped)
    sv = z3.StringVal(v)
    if m.kind == "exact":
        return s == sv
    if m.kind == "prefix":
        return z3.PrefixOf(sv, s)
    if m.kind == "suffix":
        return z3.SuffixOf(sv, s)
    return z3.Contains(s, sv)


def _header_value(h: HeaderMatcher, s: z3.SeqRef) -> z3.BoolRef:
    """One header value against the matcher, as ``matchers._header_value_fn``."""
    if h.kind == "string":
        assert h.string is not None
        return string_formula(h.string, s)
    if h.kind == "safe_regex":
        return z3.InRe(s, re2_to_z3(h.value))
    if h.kind == "range":
        raise Unencodable(f"the header range_match on {h.name!r}")
    if h.kind == "exact":
        return z3.BoolVal(True) if h.value == "" else s == z3.StringVal(h.value)
    return string_formula(StringMatcher(h.kind, h.value), s)  # type: ignore[arg-type]


def header_formula(h: HeaderMatcher, ctx: Context) -> z3.BoolRef:
    """config.route.v3.HeaderMatcher, as ``matchers.compile_header``."""
    sp = ctx.space
    name = ascii_lower(h.name)
    if not sp.http:
        return z3.BoolVal(compile_node(PermHeader(h))(ctx.concrete))
    if name == ":method":
        # the method is one of a few tokens: the evaluator's own matcher decides
        # each, and the solver sees equalities only (string predicates on an open
        # variable cost it tens of times more)
        method, fn = sp.use("method"), compile_header(h)
        hits = [m for m in METHODS if fn(RbacInput(headers=((":method", m),)))]
        return z3.Or(*[method == z3.StringVal(m) for m in hits] or [z3.BoolVal(False)])
    if name == ":authority":
        values, sent = [sp.use("host")], [z3.BoolVal(True)]
    elif name in sp.headers:
        var = sp.headers[name]
        sp.used.add(name)
        values, sent = list(var.values), list(var.sent)
    else:  # a header no client can send, or one the codec moves (host)
        return z3.BoolVal(compile_node(PermHeader(h))(ctx.concrete))
    present = z3.Or(*sent)
    if h.kind == "present":
        found = z3.Or(present, z3.BoolVal(h.treat_missing_header_as_empty))
        return z3.Xor(found == z3.BoolVal(h.present), z3.BoolVal(h.invert_match))
    # a missing header: the evaluator's own answer for a request without it
    missing = compile_header(h)(RbacInput(headers=()))
    any_match = z3.Or(*[z3.And(s, _header_value(h, v)) for s, v in zip(sent, values, strict=True)])
    return z3.If(present, z3.Xor(any_match, z3.BoolVal(h.invert_match)), z3.BoolVal(missing))


def cidr_formula(c: CidrRange, v6: z3.BoolRef, ip: z3.BitVecRef) -> z3.BoolRef:
    """Network::Address::CidrRange::isInRange, as ``matchers.compile_cidr``."""
    addr = ipaddress.ip_address(c.address_prefix)
    bits = addr.max_prefixlen
    plen = min(c.prefix_len or 0, bits)
    mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    net = int(addr) & mask
    family = v6 if addr.version == 6 else z3.Not(v6)
    return z3.And(family, (ip & z3.BitVecVal(mask, 128)) == z3.BitVecVal(net, 128))


def _url_path(m: StringMatcher, ctx: Context) -> z3.BoolRef:
    if not ctx.space.http:  # no :path, no match
        return z3.BoolVal(False)
    return string_formula(m, ctx.space.use("path"))


def claim_value_formula(v: ValueMatcher, claim: ClaimVar | None) -> z3.BoolRef:
    """envoy.type.matcher.v3.ValueMatcher on a JWT payload's value, as
    ``matchers.compile_value`` decides it (``claim`` None: an object, which no
    string or list matcher matches)."""
    match v.kind:
        case "string":
            assert v.string is not None
            if claim is None:
                return z3.BoolVal(False)
            return z3.And(
                claim.kind == STRING, string_formula(_claim_string(v.string), claim.string)
            )
        case "list":
            assert v.one_of is not None
            if claim is None:
                return z3.BoolVal(False)
            return z3.And(
                claim.kind == LIST,
                z3.Or(
                    z3.BoolVal(False),
                    *[
                        z3.And(sent, _item_formula(v.one_of, item))
                        for sent, item in zip(claim.sent, claim.items, strict=True)
                    ],
                ),
            )
        case "or":
            return z3.Or(z3.BoolVal(False), *[claim_value_formula(s, claim) for s in v.or_matchers])
    raise Unencodable(f"a {v.kind} value matcher on a JWT claim")


def _item_formula(v: ValueMatcher, item: z3.SeqRef) -> z3.BoolRef:
    """A list element matcher on one string element."""
    if v.kind == "string":
        assert v.string is not None
        return string_formula(_claim_string(v.string), item)
    if v.kind == "or":
        return z3.Or(z3.BoolVal(False), *[_item_formula(s, item) for s in v.or_matchers])
    raise Unencodable(f"a {v.kind} matcher on the elements of a JWT claim's list")


def _claim_string(m: StringMatcher) -> StringMatcher:
    """``m``, when every character it names is below ``CLAIM_NAMED_LIMIT`` (the
    claims' alphabet stands for the others only then): literally, or by an
    escape naming a code point."""
    escapes = ("\\x{", "\\u", "\\U", "\\N") if m.kind == "safe_regex" else ()
    if any(ord(c) >= CLAIM_NAMED_LIMIT for c in m.value) or any(e in m.value for e in escapes):
        raise Unencodable(
            f"a JWT claim matcher naming characters from U+{CLAIM_NAMED_LIMIT:X} on: {m.value!r}"
        )
    return m


def _jwt_claim(node: PermMetadata | IdMetadata, ctx: Context, payload: z3.BoolRef) -> z3.BoolRef:
    """A matcher on the JWT filter's metadata: on the claims when a provider
    accepted a token, else the evaluator's answer on no metadata."""
    m = node.metadata
    jwt = ctx.space.jwt
    assert jwt is not None
    unwritten = z3.BoolVal(compile_node(node)(ctx.concrete))
    if not m.path or m.path[0] != jwt.key:
        if not m.path:
            raise Unencodable("a metadata matcher on the whole JWT filter's namespace")
        return unwritten  # a key the filter never writes
    claim = jwt.claims.get(m.path[1:]) if len(m.path) > 1 else None
    if claim is None and len(m.path) > 1:
        raise AssertionError(f"the space has no variable for the claim {m.path[1:]}")
    matched = z3.Xor(claim_value_formula(m.value, claim), z3.BoolVal(m.invert))
    return z3.If(payload, matched, unwritten)


def _metadata(node: PermMetadata | IdMetadata, ctx: Context) -> z3.BoolRef:
    """A metadata matcher over what the filters before it wrote."""
    m = node.metadata
    if m.filter == JWT_FILTER and ctx.jwt_payload is not None:
        return _jwt_claim(node, ctx, ctx.jwt_payload)
    fn = compile_node(node)
    if m.filter not in ctx.writes.namespaces() or len(m.path) >= 2:
        # nothing written there, or below a written scalar: the evaluator's constant
        return z3.BoolVal(fn(ctx.concrete))
    if not m.path:
        raise Unencodable(f"a metadata matcher on the whole namespace {m.filter!r}")
    cases = []
    for cond, value in ctx.writes.outcomes(m.filter, m.path[0]):
        md = {} if value is None else {m.filter: {m.path[0]: value}}
        probe = RbacInput(
            destination_ip=ctx.destination_ip,
            destination_port=ctx.destination_port,
            dynamic_metadata=md,
        )
        if fn(probe):
            cases.append(cond)
    return z3.Or(*cases) if cases else z3.BoolVal(False)


def uri_formula(m: StringMatcher, principal: z3.SeqRef) -> z3.BoolRef:
    """``m`` on the URI SAN ``spiffe://`` + ``principal``, stated on the principal
    itself where the matcher allows (the solver is much faster without the
    concatenation): each case is the same set of strings."""
    v = m.value
    if m.ignore_case or m.kind == "safe_regex":
        return string_formula(m, z3.Concat(z3.StringVal(SPIFFE), principal))
    if m.kind == "exact":
        return (
            principal == z3.StringVal(v[len(SPIFFE) :])
            if v.startswith(SPIFFE)
            else z3.BoolVal(False)
        )
    if m.kind == "prefix":
        if v.startswith(SPIFFE):
            return z3.PrefixOf(z3.StringVal(v[len(SPIFFE) :]), principal)
        return z3.BoolVal(SPIFFE.startswith(v))
    # suffix and contains: within the principal, or across the scheme's end
    cases = [
        z3.SuffixOf(z3.StringVal(v), principal)
        if m.kind == "suffix"
        else z3.Contains(principal, z3.StringVal(v))
    ]
    if m.kind == "contains" and v in SPIFFE:
        return z3.BoolVal(True)
    for k in range(1, len(v) + 1):
        head, tail = v[:k], v[k:]
        if not SPIFFE.endswith(head):
            continue
        if m.kind == "suffix":
            cases.append(principal == z3.StringVal(tail))
        elif tail:
            cases.append(z3.PrefixOf(z3.StringVal(tail), principal))
    return z3.Or(*cases)


def _authenticated(node: IdAuthenticated, ctx: Context) -> z3.BoolRef:
    """A TLS peer; with principal_name, one of its names (the URI SAN, then the
    empty subject, as the request view presents the caller) matches."""
    if node.principal_name is None:
        return ctx.peer
    uri = uri_formula(node.principal_name, ctx.space.use("principal"))
    subject = compile_string(node.principal_name)("")
    return z3.And(ctx.peer, z3.Or(uri, subject))


def node_formula(node: Any, ctx: Context) -> z3.BoolRef:
    """A Permission or Principal node, one case per model class."""
    sp = ctx.space
    match node:
        case PermAny() | IdAny():
            return z3.BoolVal(True)
        case PermAnd(rules=subs) | IdAnd(ids=subs):
            return z3.And(*[node_formula(s, ctx) for s in subs])
        case PermOr(rules=subs) | IdOr(ids=subs):
            return z3.Or(*[node_formula(s, ctx) for s in subs])
        case PermNot(rule=sub) | IdNot(id=sub):
            return z3.Not(node_formula(sub, ctx))
        case PermHeader(header=h) | IdHeader(header=h):
            return header_formula(h, ctx)
        case PermUrlPath(path=m) | IdUrlPath(path=m):
            return _url_path(m, ctx)
        case PermUriTemplate(path_template=t):
            try:
                pattern = compile_uri_template(t).pattern
            except UriTemplateError as e:
                raise Unencodable(f"the uri template {t!r}: {e}") from None
            if not sp.http:
                return z3.BoolVal(compile_node(node)(ctx.concrete))
            return z3.InRe(sp.use("path"), re2_to_z3(pattern))
        case PermDestinationIp() | PermDestinationPort() | PermDestinationPortRange():
            return z3.BoolVal(compile_node(node)(ctx.concrete))
        case IdDirectRemoteIp(cidr=c) | IdSourceIp(cidr=c):
            return cidr_formula(c, sp.src_v6, sp.src)
        case IdRemoteIp(cidr=c):
            return cidr_formula(c, sp.remote_v6, sp.remote)
        case PermMetadata() | IdMetadata():
            return _metadata(node, ctx)
        case PermRequestedServerName(name=s):
            return string_formula(s, sp.use("sni"))
        case IdAuthenticated():
            return _authenticated(node, ctx)
        case IdFilterState():
            # no filter state reaches the filters in a request view
            return z3.BoolVal(compile_node(node)(ctx.concrete))
    raise TypeError(f"not an RBAC permission or principal: {node!r}")


def policy_formula(p: Policy, ctx: Context) -> z3.BoolRef:
    """A policy matches when one permission and one principal do; a policy with
    either list empty never matches (as ``evaluate.compile_policy``)."""
    if not p.permissions or not p.principals:
        return z3.BoolVal(False)
    return z3.And(
        z3.Or(*[node_formula(n, ctx) for n in p.permissions]),
        z3.Or(*[node_formula(n, ctx) for n in p.principals]),
    )


def _leaves(node: Any) -> Iterator[Any]:
    """The matchers a permission or principal combines (below its and, or, not)."""
    match node:
        case PermAnd(rules=subs) | PermOr(rules=subs) | IdAnd(ids=subs) | IdOr(ids=subs):
            for s in subs:
                yield from _leaves(s)
        case PermNot(rule=sub) | IdNot(id=sub):
            yield from _leaves(sub)
        case _:
            yield node


def header_matchers(node: Any, out: Callable[[HeaderMatcher], None]) -> None:
    """Report every header matcher in a permission or principal."""
    for leaf in _leaves(node):
        if isinstance(leaf, PermHeader | IdHeader):
            out(leaf.header)


def metadata_matchers(node: Any, out: Callable[[MetadataMatcher], None]) -> None:
    """Report every metadata matcher in a permission or principal."""
    for leaf in _leaves(node):
        if isinstance(leaf, PermMetadata | IdMetadata):
            out(leaf.metadata)


__all__ = [
    "SPIFFE",
    "Context",
    "Writes",
    "cidr_formula",
    "claim_value_formula",
    "header_formula",
    "header_matchers",
    "metadata_matchers",
    "node_formula",
    "policy_formula",
    "string_formula",
]

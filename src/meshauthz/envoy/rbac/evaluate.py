"""Envoy's RBAC evaluation (engine and HTTP/network filters), Envoy 1.40 semantics.

``compile_rbac`` turns an ``RBAC`` into closures once; ``CompiledRbac.evaluate``
is the hot path. ``trace=True`` walks the model instead, evaluating every node
(results are the same: matchers are pure) and recording a ``MatchTrace`` tree
whose nodes point at the model nodes and therefore at their notes.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import sys
from collections.abc import Mapping, Sequence
from typing import Any, cast

from msgspec import Struct

from .matchers import (
    InputFn,
    ascii_lower,
    compile_cidr,
    compile_header,
    compile_metadata,
    compile_string,
    string_set,
    uri_template_fn,
    url_path_fn,
)
from .model import (
    RBAC,
    Action,
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
    NetworkRbacFilter,
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
    StringKind,
    StringMatcher,
)
from .uri_template import strip_query_and_fragment, template_set

# --- the request as the filter sees it ---------------------------------------------


class PeerCertificate(Struct, frozen=True):
    """The downstream TLS peer. ``PeerCertificate()`` (no SANs, empty subject)
    is a TLS connection without a client certificate: Envoy 1.40 still counts
    it as authenticated and matches its subject as ""."""

    uri_sans: tuple[str, ...] = ()
    dns_sans: tuple[str, ...] = ()
    subject: str = ""  # RFC 2253 form, e.g. "CN=foo,O=bar"


@functools.lru_cache(maxsize=4096)  # a request log repeats its few addresses
def _ip(s: str | None) -> tuple[int, int] | None:
    if not s:
        return None
    a = ipaddress.ip_address(s)
    return (a.version, int(a))


@dataclasses.dataclass(slots=True)
class RbacInput:
    """What the RBAC filter reads from the connection and the request.

    ``headers`` is Envoy's request header map as entries (name, value), names
    lowercase, pseudo headers included (``:method``, ``:path``,
    ``:authority``); ``None`` for a network filter (no HTTP). Envoy's codec
    already folds repeats of some well-known headers into one entry joined
    with "," (e.g. user-agent, x-forwarded-for); other repeats stay separate
    entries, and a header matcher matches if any entry matches (verified
    against Envoy 1.40). ``remote_ip`` defaults to ``direct_remote_ip``
    (no trusted X-Forwarded-For), ``source_ip`` (the connection's peer
    address) too. ``peer`` is None for plaintext. ``dynamic_metadata`` maps a
    filter name to its JSON-like struct; ``filter_state`` maps a key to the
    object's string serialization.
    """

    direct_remote_ip: str = "127.0.0.1"
    remote_ip: str | None = None
    source_ip: str | None = None
    destination_ip: str = "127.0.0.1"
    destination_port: int = 0
    requested_server_name: str = ""
    peer: PeerCertificate | None = None
    headers: Sequence[tuple[str, str]] | None = None
    dynamic_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    filter_state: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # derived once, read by the matchers
    header_map: dict[str, list[str]] = dataclasses.field(init=False, repr=False)
    path: str | None = dataclasses.field(init=False, repr=False)
    url_path: str | None = dataclasses.field(
        init=False, repr=False
    )  # path without query and fragment
    ip_direct: tuple[int, int] | None = dataclasses.field(init=False, repr=False)
    ip_remote: tuple[int, int] | None = dataclasses.field(init=False, repr=False)
    ip_source: tuple[int, int] | None = dataclasses.field(init=False, repr=False)
    ip_destination: tuple[int, int] | None = dataclasses.field(init=False, repr=False)
    # What a principal_name is matched against, in Envoy 1.40's order: each URI
    # SAN, then each DNS SAN, then the subject; the first match wins, so a
    # subject can match even when the cert has SANs (verified). None: no TLS peer.
    peer_names: tuple[str, ...] | None = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        hm: dict[str, list[str]] = {}
        for name, value in self.headers or ():
            hm.setdefault(name.lower(), []).append(value)
        self.header_map = hm
        paths = hm.get(":path")
        self.path = paths[0] if paths else None
        self.url_path = strip_query_and_fragment(self.path) if self.path is not None else None
        direct = self.direct_remote_ip
        self.ip_direct = ip = _ip(direct)
        # most requests: one address for all three (no X-Forwarded-For, no proxy between)
        remote, source = self.remote_ip, self.source_ip
        self.ip_remote = ip if not remote or remote == direct else _ip(remote)
        self.ip_source = ip if not source or source == direct else _ip(source)
        self.ip_destination = _ip(self.destination_ip)
        p = self.peer
        self.peer_names = None if p is None else (*p.uri_sans, *p.dns_sans, p.subject)

    def with_metadata(self, dynamic_metadata: Mapping[str, Any]) -> RbacInput:
        """The same request with other dynamic metadata: what is derived from the
        request (header map, paths, addresses) is shared, not computed again."""
        new = object.__new__(RbacInput)
        for name in _INPUT_SLOTS:
            object.__setattr__(new, name, getattr(self, name))
        new.dynamic_metadata = dynamic_metadata
        return new


_INPUT_SLOTS = RbacInput.__slots__


# --- compiling the tree ------------------------------------------------------------


def _true(inp: RbacInput) -> bool:
    """``any``, and any combination that is always true (recognized by identity)."""
    return True


# Small arities get dedicated closures: generator expressions cost more than
# the matchers themselves on the hot path.
def _all(fns: list[InputFn]) -> InputFn:
    fns = [f for f in fns if f is not _true]  # And(any, x) is x
    if not fns:
        return _true
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda inp: a(inp) and b(inp)
    if len(fns) == 3:
        a, b, c = fns
        return lambda inp: a(inp) and b(inp) and c(inp)
    t = tuple(fns)

    def all_fn(inp: RbacInput) -> bool:  # a loop beats all() on a generator
        for f in t:  # noqa: SIM110
            if not f(inp):
                return False
        return True

    return all_fn


def _any(fns: list[InputFn]) -> InputFn:
    if any(f is _true for f in fns):  # Or(any, x) is any
        return _true
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda inp: a(inp) or b(inp)
    if len(fns) == 3:
        a, b, c = fns
        return lambda inp: a(inp) or b(inp) or c(inp)
    t = tuple(fns)

    def any_fn(inp: RbacInput) -> bool:
        for f in t:  # noqa: SIM110
            if f(inp):
                return True
        return False

    return any_fn


# --- fused alternatives ----------------------------------------------------------------
# An Or of string matchers on the same input (Istio's lists of methods, paths,
# hosts and principals) is one lookup per kind of matcher (``string_set``: a set
# for exact values, a sorted table for prefixes and suffixes) instead of a
# closure per value; an Or of path templates tries only the templates of the
# path's first segment (``template_set``). Matchers are pure, so an Or's result
# does not depend on the order of its alternatives.


def _value_matcher(h: HeaderMatcher) -> StringMatcher | None:
    """The header's value test as a StringMatcher (None: not a string test)."""
    if h.kind == "string":
        return h.string
    if h.kind == "exact":
        # the deprecated exact_match: "" accepts any value, which no set says
        return StringMatcher("exact", h.value) if h.value != "" else None
    if h.kind in ("prefix", "suffix", "contains", "safe_regex"):
        return StringMatcher(cast(StringKind, h.kind), h.value)
    return None


_URL_PATH_KEY = ("url_path",)
_URI_TEMPLATE_KEY = ("uri_template",)
_AUTHENTICATED_KEY = ("authenticated",)


def _fusion_key(node: Any) -> tuple[Any, ...] | None:
    """Alternatives with the same key can be fused; None: not fusable. (By the
    node's exact class: the model's node classes have no subclasses, and this
    runs for every node of every chain a mesh builds.)"""
    t = type(node)
    if t is PermUrlPath or t is IdUrlPath:
        return _URL_PATH_KEY
    if t is PermHeader or t is IdHeader:
        h = node.header
        if h.invert_match or h.treat_missing_header_as_empty:
            return None
        if _value_matcher(h) is not None:
            return ("header", ascii_lower(h.name))
        return None
    if t is IdAuthenticated:
        return _AUTHENTICATED_KEY if node.principal_name is not None else None
    if t is PermUriTemplate:
        return _URI_TEMPLATE_KEY
    if t is IdFilterState:
        return ("filter_state", node.key)
    return None


def _string_of(node: Any) -> StringMatcher:
    """The string matcher of a fusable node (see ``_fusion_key``; by exact class,
    as there: this runs for every value of every list a mesh's chains hold)."""
    t = type(node)
    m: StringMatcher | None
    if t is IdAuthenticated:
        m = node.principal_name
    elif t is PermUrlPath or t is IdUrlPath:
        m = node.path
    elif t is PermHeader or t is IdHeader:
        m = _value_matcher(node.header)
    elif t is IdFilterState:
        m = node.string
    else:
        m = None
    if m is None:
        raise TypeError(node)
    return m


def _exact_values(matchers: list[StringMatcher]) -> frozenset[str] | None:
    """The values, when every matcher is a case-sensitive exact match."""
    values = []
    for m in matchers:
        if m.kind != "exact" or m.ignore_case:
            return None
        v = m.value
        values.append(sys.intern(v) if type(v) is str else v)
    return frozenset(values)


def _fused(key: tuple[Any, ...], nodes: list[Any]) -> InputFn:
    """A fused Or as a closure; ``PythonEmitter._fused`` writes the same test inline."""
    if key[0] == "uri_template":
        tset = template_set([n.path_template for n in nodes])
        return lambda inp: tset(inp.url_path or "")
    matchers = [_string_of(n) for n in nodes]
    exact = _exact_values(matchers)
    fn = string_set(matchers)
    if key[0] == "header":
        name = key[1]
        if exact is not None:
            return lambda inp: (
                (h := inp.header_map.get(name)) is not None and not exact.isdisjoint(h)
            )
        return lambda inp: (h := inp.header_map.get(name)) is not None and any(map(fn, h))
    if key[0] == "url_path":
        return lambda inp: (p := inp.url_path) is not None and fn(p)
    if key[0] == "filter_state":
        fs_key = key[1]
        return lambda inp: (v := inp.filter_state.get(fs_key)) is not None and fn(v)
    if exact is not None:  # authenticated: one of the peer's names (RbacInput.peer_names)
        return lambda inp: (n := inp.peer_names) is not None and not exact.isdisjoint(n)
    return lambda inp: (n := inp.peer_names) is not None and any(map(fn, n))


def _grouped(nodes: tuple[Any, ...]) -> list[tuple[tuple[Any, ...] | None, list[Any]]]:
    """An Or's alternatives in order, those with the same fusion key gathered at
    the first one's place: (key, [nodes]), or (None, [node]) for one not fusable."""
    if len(nodes) == 1:  # most lists of a rule: one value
        n = nodes[0]
        return [(_fusion_key(n), [n])]
    out: list[tuple[tuple[Any, ...] | None, list[Any]]] = []
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for n in nodes:
        key = _fusion_key(n)
        if key is None:
            out.append((None, [n]))
        elif key in groups:
            groups[key].append(n)
        else:
            groups[key] = [n]
            out.append((key, groups[key]))
    return out


def _compile_alternatives(nodes: tuple[Any, ...]) -> InputFn:
    fns: list[InputFn] = []
    for key, group in _grouped(nodes):
        if key is None or len(group) == 1:
            fns.extend(compile_node(n) for n in group)
        else:
            fns.append(_fused(key, group))
    return _any(fns)


def _authenticated(node: IdAuthenticated) -> InputFn:
    """Envoy 1.40: any TLS peer matches without principal_name; with it, one of
    the peer's names (``RbacInput.peer_names``) must match."""
    if node.principal_name is None:
        return lambda inp: inp.peer is not None
    fn = compile_string(node.principal_name)

    def auth(inp: RbacInput) -> bool:
        names = inp.peer_names
        return names is not None and any(map(fn, names))

    return auth


def compile_node(node: Any) -> InputFn:
    """A Permission or Principal node as a closure."""
    match node:
        case PermAny() | IdAny():
            return _true
        case PermAnd(rules=rules):
            return _all([compile_node(r) for r in rules])
        case IdAnd(ids=ids):
            return _all([compile_node(r) for r in ids])
        case PermOr(rules=rules):
            return _compile_alternatives(rules)
        case IdOr(ids=ids):
            return _compile_alternatives(ids)
        case PermNot(rule=sub) | IdNot(id=sub):
            f = compile_node(sub)
            return lambda inp: not f(inp)
        case PermHeader(header=h) | IdHeader(header=h):
            return compile_header(h)
        case PermUrlPath(path=s) | IdUrlPath(path=s):
            return url_path_fn(s)
        case PermUriTemplate(path_template=t):
            return uri_template_fn(t)
        case PermDestinationIp(cidr=c):
            cf = compile_cidr(c)
            return lambda inp: cf(inp.ip_destination)
        case IdDirectRemoteIp(cidr=c):
            cf = compile_cidr(c)
            return lambda inp: cf(inp.ip_direct)
        case IdRemoteIp(cidr=c):
            cf = compile_cidr(c)
            return lambda inp: cf(inp.ip_remote)
        case IdSourceIp(cidr=c):
            cf = compile_cidr(c)
            return lambda inp: cf(inp.ip_source)
        case PermDestinationPort(port=port):
            return lambda inp: inp.destination_port == port
        case PermDestinationPortRange(start=start, end=end):
            return lambda inp: start <= inp.destination_port < end
        case PermMetadata(metadata=m) | IdMetadata(metadata=m):
            return compile_metadata(m)
        case PermRequestedServerName(name=s):
            sf = compile_string(s)
            return lambda inp: sf(inp.requested_server_name)
        case IdAuthenticated():
            return _authenticated(node)
        case IdFilterState(key=key, string=s):
            sf = compile_string(s)

            def fs(inp: RbacInput) -> bool:
                v = inp.filter_state.get(key)
                return v is not None and sf(v)

            return fs
    raise TypeError(f"not an RBAC permission or principal: {node!r}")


def compile_policy(p: Policy) -> InputFn:
    perms = _compile_alternatives(p.permissions) if p.permissions else None
    ids = _compile_alternatives(p.principals) if p.principals else None
    if perms is None or ids is None:  # Envoy rejects such a policy; it can never match
        return lambda inp: False
    return _all([perms, ids])


# --- policies as Python source -------------------------------------------------------


_LAST_CHAR = chr(sys.maxunicode)


def prefix_bounds(prefix: str) -> tuple[str, str] | None:
    """``(lo, hi)`` with ``s.startswith(prefix) == (lo <= s < hi)`` for every
    string ``s``: in code point order, the strings that start with ``prefix``
    run from ``prefix`` up to, not including, ``prefix`` with its last
    character incremented. None for "" and a prefix ending in the last code
    point (no such bound)."""
    if not prefix or prefix[-1] == _LAST_CHAR:
        return None
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _intern(s: str) -> str:
    """Interned, a set lookup that hits compares identities (str subclasses are left as they are)."""
    return sys.intern(s) if type(s) is str else s


class PythonEmitter:
    """Policies as Python expressions over an ``RbacInput`` named ``inp``, for
    callers that compile many policies into one function (meshauthz.decide.runner).

    The expressions mean exactly what ``compile_node``/``compile_policy`` mean:
    the fusions (one lookup for an Or of string matchers on one input) are
    ``_fused``'s tests, written inline; And/Or/Not are Python's
    short-circuit operators, and every other leaf is a call of its compiled
    closure. Matchers are pure, so the operands of an And (nested Ands
    flattened) are ordered cheapest first: path, then headers, then the peer,
    then calls, keeping the order of equals. Constants (sets, tuples, closures)
    are items of one tuple named ``k`` (``k[<i>]``), per-request reads
    (``inp.url_path``, a header's values, the peer's names) ``v<i>``:
    ``prologue()`` assigns the reads, ``constants()`` is the tuple to bind to
    ``k``. Code that differs only in its constants is the same text, so one
    compiled function serves every policy set of that shape. Strings in sets are
    interned: a caller that interns the strings it reads makes hits identity
    comparisons.
    """

    def __init__(self) -> None:
        self._consts: list[Any] = []
        self._const_ids: dict[int, str] = {}
        self._reads: dict[str, str] = {}  # source -> variable
        self._headers: set[str] = set()  # the header names the code reads
        self._metadata: set[str] = set()  # the filters whose dynamic metadata it reads

    def copy(self) -> PythonEmitter:
        """An emitter in this one's state, to go on from there (this one unchanged)."""
        em = PythonEmitter.__new__(PythonEmitter)
        em._consts = list(self._consts)
        em._const_ids = dict(self._const_ids)
        em._reads = dict(self._reads)
        em._headers = set(self._headers)
        em._metadata = set(self._metadata)
        return em

    def constant(self, value: Any) -> str:
        """``value`` in the code: its item of ``k``."""
        expr = self._const_ids.get(id(value))
        if expr is None:
            expr = self._const_ids[id(value)] = f"k[{len(self._consts)}]"
            self._consts.append(value)
        return expr

    def read(self, source: str) -> str:
        var = self._reads.get(source)
        if var is None:
            var = self._reads[source] = f"v{len(self._reads)}"
        return var

    def constants(self) -> tuple[Any, ...]:
        """The tuple the code names ``k``."""
        return tuple(self._consts)

    def reads(self) -> list[str]:
        """The per-request variables, in the order of ``prologue()``."""
        return list(self._reads.values())

    def header_names(self) -> frozenset[str]:
        """The names of the headers the code reads (besides ``:path``, read as
        ``inp.url_path``); a compiled closure (``(inp)`` in the code) may read any."""
        return frozenset(self._headers)

    def metadata_filters(self) -> frozenset[str]:
        """The filter names whose dynamic metadata the code reads."""
        return frozenset(self._metadata)

    def prologue(self) -> list[str]:
        """Assignments of the reads, in order (a later read may use an earlier one)."""
        return [f"{var} = {src}" for src, var in self._reads.items()]

    def policy(self, p: Policy) -> str:
        if not p.permissions or not p.principals:  # as compile_policy: never matches
            return "False"
        return self._and([self._alternatives(p.permissions), self._alternatives(p.principals)])[1]

    # Terms are (cost, expression, the operands if it is an And).
    _Term = tuple[int, str, tuple[tuple[int, str], ...] | None]

    @staticmethod
    def _and(terms: list[_Term]) -> _Term:
        flat: list[tuple[int, str]] = []
        for cost, expr, ops in terms:
            if ops is not None:
                flat.extend(ops)
            elif expr != "True":
                flat.append((cost, expr))
        if not flat:
            return 0, "True", None
        if len(flat) == 1:
            return flat[0][0], flat[0][1], None
        flat.sort(key=lambda t: t[0])  # stable: equals keep their order
        expr = "(" + " and ".join(e for _, e in flat) + ")"
        return sum(c for c, _ in flat), expr, tuple(flat)

    def _alternatives(self, nodes: tuple[Any, ...]) -> _Term:
        if len(nodes) == 1:  # one value: its term (a "True" one is (0, "True", None))
            n = nodes[0]
            key = _fusion_key(n)
            return self._node(n) if key is None else self._fused(key, [n])
        terms: list[PythonEmitter._Term] = [
            self._node(group[0]) if key is None else self._fused(key, group)
            for key, group in _grouped(nodes)
        ]
        if any(t[1] == "True" for t in terms):
            return 0, "True", None
        if not terms:
            return 0, "False", None
        if len(terms) == 1:
            return terms[0]
        return sum(t[0] for t in terms), "(" + " or ".join(t[1] for t in terms) + ")", None

    def _fused(self, key: tuple[Any, ...], nodes: list[Any]) -> _Term:
        if key[0] == "uri_template":
            tset = self.constant(template_set([n.path_template for n in nodes]))
            return 4, f"{tset}({self.read('inp.url_path')} or '')", None
        matchers = [_string_of(n) for n in nodes]
        exact = _exact_values(matchers)
        if key[0] == "header":
            # a header matcher matches if any of the header's entries matches (an
            # absent header: none, as no entry)
            self._headers.add(key[1])
            h = self.read(f"{self.read('inp.header_map')}.get({key[1]!r}, ())")
            if exact is not None:
                return 2, f"(not {self.constant(exact)}.isdisjoint({h}))", None
            fn = self.constant(string_set(matchers))
            return 3, f"any(map({fn}, {h}))", None
        if key[0] == "url_path":
            up = self.read("inp.url_path")
            prefixes = [m.value for m in matchers if m.kind == "prefix" and not m.ignore_case]
            plain = [m for m in matchers if m.kind == "exact" and not m.ignore_case]
            if len(prefixes) + len(plain) == len(matchers) and len(prefixes) <= 4:
                # the common short lists, inline: a set test and a range per prefix
                tests = []
                if plain:
                    values = frozenset(_intern(m.value) for m in plain)
                    tests.append(
                        f"{up} == {self.constant(next(iter(values)))}"
                        if len(values) == 1
                        else f"{up} in {self.constant(values)}"
                    )
                for prefix in prefixes:
                    # CPython 3.11 parses startswith's arguments as a tuple on every
                    # call: two comparisons are several times cheaper
                    bounds = prefix_bounds(prefix)
                    if bounds is None:
                        tests.append(f"{up}.startswith({self.constant(prefix)})")
                    else:
                        lo, hi = (self.constant(_intern(b)) for b in bounds)
                        tests.append(f"{lo} <= {up} < {hi}")
                return 1, f"({up} is not None and ({' or '.join(tests)}))", None
            return 2, f"({up} is not None and {self.constant(string_set(matchers))}({up}))", None
        if key[0] == "filter_state":
            v = self.read(f"{self.read('inp.filter_state')}.get({key[1]!r})")
            return 3, f"({v} is not None and {self.constant(string_set(matchers))}({v}))", None
        # an authenticated principal: one of the peer's names (RbacInput.peer_names;
        # no TLS peer: none)
        peer = self.read("inp.peer_names or ()")
        if exact is not None:
            return 3, f"(not {self.constant(exact)}.isdisjoint({peer}))", None
        fn = self.constant(string_set(matchers))
        return 3, f"any(map({fn}, {peer}))", None

    def _node(self, node: Any) -> _Term:
        # by exact class, as ``_fusion_key``: every node of every chain a mesh builds
        t = type(node)
        if t is PermAnd:
            return self._and([self._node(s) for s in node.rules])
        if t is IdAnd:
            return self._and([self._node(s) for s in node.ids])
        if t is PermOr:
            return self._alternatives(node.rules)
        if t is IdOr:
            return self._alternatives(node.ids)
        if t is PermAny or t is IdAny:
            return 0, "True", None
        if t is PermNot or t is IdNot:
            cost, expr, _ = self._node(node.rule if t is PermNot else node.id)
            return cost, f"(not {expr})", None
        if t is PermDestinationPort and type(node.port) is int:
            return 1, f"({self.read('inp.destination_port')} == {node.port!r})", None
        key = _fusion_key(node)
        if key is not None:
            return self._fused(key, [node])
        if type(node) is PermMetadata or type(node) is IdMetadata:
            self._metadata.add(node.metadata.filter)
        return 10, f"{self.constant(compile_node(node))}(inp)", None


# --- traces ------------------------------------------------------------------------


class MatchTrace(Struct, frozen=True):
    """Whether one model node matched, with its children's traces."""

    node: Any
    matched: bool
    children: tuple[MatchTrace, ...] = ()

    @property
    def note(self) -> Any:
        return getattr(self.node, "note", None)

    def first_failure(self) -> MatchTrace | None:
        """The deepest node explaining a non-match: for And, its first failing child."""
        if self.matched:
            return None
        for c in self.children:
            if not c.matched:
                return c.first_failure() or c
        return self


class PolicyTrace(Struct, frozen=True):
    name: str
    policy: Policy
    matched: bool
    permissions: tuple[MatchTrace, ...]
    principals: tuple[MatchTrace, ...]


_COMPOUND = (PermAnd, IdAnd, PermOr, IdOr, PermNot, IdNot)


class _Leaves:
    """A traced engine's compiled leaves, by node; and for each Or whose
    alternatives are all leaves (Istio's value lists), its (leaf, closure) pairs,
    so that tracing a list of 10,000 principals is one loop."""

    __slots__ = ("flat_ors", "fns")

    def __init__(self) -> None:
        self.fns: dict[int, InputFn] = {}
        self.flat_ors: dict[int, tuple[tuple[Any, InputFn], ...] | None] = {}

    def fn(self, node: Any) -> InputFn:
        fn = self.fns.get(id(node))
        if fn is None:
            fn = self.fns[id(node)] = compile_node(node)
        return fn

    def flat(self, node: Any, subs: tuple[Any, ...]) -> tuple[tuple[Any, InputFn], ...] | None:
        key = id(node)
        if key not in self.flat_ors:
            leaf = not any(isinstance(s, _COMPOUND) for s in subs)
            self.flat_ors[key] = tuple((s, self.fn(s)) for s in subs) if leaf else None
        return self.flat_ors[key]


def _trace(node: Any, leaves: _Leaves, inp: RbacInput) -> MatchTrace:
    match node:
        case PermAnd(rules=subs) | IdAnd(ids=subs):
            kids = tuple(_trace(s, leaves, inp) for s in subs)
            return MatchTrace(node, all(k.matched for k in kids), kids)
        case PermOr(rules=subs) | IdOr(ids=subs):
            flat = leaves.flat(node, subs)
            if flat is not None:
                kids = tuple([MatchTrace(s, fn(inp)) for s, fn in flat])
            else:
                kids = tuple(_trace(s, leaves, inp) for s in subs)
            return MatchTrace(node, any(k.matched for k in kids), kids)
        case PermNot(rule=sub) | IdNot(id=sub):
            kid = _trace(sub, leaves, inp)
            return MatchTrace(node, not kid.matched, (kid,))
    return MatchTrace(node, leaves.fn(node)(inp))


# --- the engine ----------------------------------------------------------------------


class EngineResult(Struct, frozen=True):
    """One engine's answer. ``allowed`` is the engine's verdict (always True for
    LOG); ``effective_policy_id`` the first matching policy in Envoy's order;
    ``should_log`` is set for LOG (Envoy's access_log_hint)."""

    allowed: bool
    effective_policy_id: str | None
    should_log: bool | None = None
    trace: tuple[PolicyTrace, ...] | None = None


class CompiledRbac:
    """An RBAC engine. Envoy keeps policies in a std::map, so they are tried in
    bytewise order of their names, not config order (verified against Envoy
    1.40: of "zeta", "beta", "alpha2", "alpha10" all matching, "alpha10" is
    reported); Python's str order is the same as UTF-8 byte order."""

    __slots__ = ("_compiled", "_leaves", "_ordered", "_results", "action", "names", "rbac")

    def __init__(self, rbac: RBAC) -> None:
        self.rbac = rbac
        self.action = rbac.action
        self._ordered = sorted(rbac.policies, key=lambda kv: kv[0])
        self.names: tuple[str, ...] = tuple(n for n, _ in self._ordered)  # Envoy's order
        # The closures are compiled on first use: a chain the generated backend
        # runs untraced never needs them.
        self._compiled: tuple[tuple[str, Policy, InputFn], ...] | None = None
        self._leaves = _Leaves()
        # results are immutable: build each possible one once
        self._results: dict[str | None, EngineResult] = {
            n: self._result(True, n, None) for n in self.names
        }
        self._results[None] = self._result(False, None, None)

    @property
    def _policies(self) -> tuple[tuple[str, Policy, InputFn], ...]:
        if self._compiled is None:
            self._compiled = tuple((n, pol, compile_policy(pol)) for n, pol in self._ordered)
        return self._compiled

    @property
    def matchers(self) -> tuple[tuple[str, InputFn], ...]:
        """The compiled policies in Envoy's order: (name, fn(RbacInput) -> matched)."""
        return tuple((name, fn) for name, _, fn in self._policies)

    def result_for(self, matched: str | None) -> EngineResult:
        """The engine's answer when ``matched`` is the first policy that matches
        (None: none does), as ``evaluate`` gives it untraced."""
        return self._results[matched]

    def matched_policy(self, inp: RbacInput) -> str | None:
        for name, _, fn in self._policies:
            if fn(inp):
                return name
        return None

    def evaluate(self, inp: RbacInput, trace: bool = False) -> EngineResult:
        if trace:
            return self._evaluate_traced(inp)
        for name, _, fn in self._policies:
            if fn(inp):
                return self._results[name]
        return self._results[None]

    def _result(
        self, matched: bool, name: str | None, traces: tuple[PolicyTrace, ...] | None
    ) -> EngineResult:
        if self.action is Action.ALLOW:
            return EngineResult(matched, name, None, traces)
        if self.action is Action.DENY:
            return EngineResult(not matched, name, None, traces)
        return EngineResult(True, name, matched, traces)

    def _evaluate_traced(self, inp: RbacInput) -> EngineResult:
        traces = []
        first: str | None = None
        for name, pol in self._ordered:
            perms = tuple(_trace(p, self._leaves, inp) for p in pol.permissions)
            ids = tuple(_trace(p, self._leaves, inp) for p in pol.principals)
            ok = bool(perms) and bool(ids)
            ok = ok and any(t.matched for t in perms) and any(t.matched for t in ids)
            traces.append(PolicyTrace(name, pol, ok, perms, ids))
            if ok and first is None:
                first = name
        return self._result(first is not None, first, tuple(traces))


def compile_rbac(rbac: RBAC) -> CompiledRbac:
    return CompiledRbac(rbac)


def evaluate(rbac: RBAC | CompiledRbac, inp: RbacInput, trace: bool = False) -> EngineResult:
    """One RBAC engine's decision. Compile once with ``compile_rbac`` when
    evaluating many requests."""
    engine = rbac if isinstance(rbac, CompiledRbac) else compile_rbac(rbac)
    return engine.evaluate(inp, trace)


# --- the filters -----------------------------------------------------------------------

ALLOWED = "allowed"
DENIED = "denied"


class FilterResult(Struct, frozen=True):
    """What an RBAC filter does with one request or connection.

    ``allowed`` is the enforcement decision (True when there are no enforced
    rules). ``dynamic_metadata`` is what the filter writes, by namespace.
    ``response_code_details`` is set when an HTTP request is denied.
    """

    allowed: bool
    effective_policy_id: str | None
    engine_result: str | None  # "allowed"/"denied"; None without enforced rules
    shadow_engine_result: str | None  # None without shadow rules
    shadow_effective_policy_id: str | None
    should_log: bool | None
    dynamic_metadata: dict[str, dict[str, Any]]
    response_code_details: str | None = None
    enforced: EngineResult | None = None
    shadow: EngineResult | None = None


class CompiledFilter:
    """An HTTP or network RBAC filter, compiled once."""

    __slots__ = ("_engine", "_is_http", "_meta_ns", "_shadow", "filter")

    def __init__(self, f: HttpRbacFilter | NetworkRbacFilter) -> None:
        self.filter = f
        self._is_http = isinstance(f, HttpRbacFilter)
        if not self._is_http:
            from .serialize import check_network_rules  # start-up: HTTP chains never need it

            check_network_rules(f.rules, "rules")
            check_network_rules(f.shadow_rules, "shadowRules")
        self._meta_ns = "envoy.filters.http.rbac" if self._is_http else "envoy.filters.network.rbac"
        self._engine = compile_rbac(f.rules) if f.rules is not None else None
        self._shadow = compile_rbac(f.shadow_rules) if f.shadow_rules is not None else None

    @property
    def engine(self) -> CompiledRbac | None:
        """The enforced rules' engine (None: shadow rules only)."""
        return self._engine

    @property
    def shadow_engine(self) -> CompiledRbac | None:
        """The shadow (dry-run) rules' engine (None: no shadow rules)."""
        return self._shadow

    def evaluate(self, inp: RbacInput, trace: bool = False) -> FilterResult:
        f = self.filter
        meta: dict[str, Any] = {}
        out: dict[str, dict[str, Any]] = {}
        shadow = self._shadow.evaluate(inp, trace) if self._shadow is not None else None
        shadow_result = None
        if shadow is not None:
            shadow_result = ALLOWED if shadow.allowed else DENIED
            sp = f.shadow_rules_stat_prefix
            if shadow.effective_policy_id:
                meta[sp + "shadow_effective_policy_id"] = shadow.effective_policy_id
            meta[sp + "shadow_engine_result"] = shadow_result
        if self._engine is None:
            if meta:
                out[self._meta_ns] = meta
            return FilterResult(
                True, None, None, shadow_result, _pid(shadow), None, out, None, None, shadow
            )
        res = self._engine.evaluate(inp, trace)
        result = ALLOWED if res.allowed else DENIED
        if isinstance(f, HttpRbacFilter):
            # Envoy 1.40's HTTP filter also records the enforced outcome (verified)
            rp = f.rules_stat_prefix
            if res.effective_policy_id:
                meta[rp + "enforced_effective_policy_id"] = res.effective_policy_id
            meta[rp + "enforced_engine_result"] = result
        if res.should_log is not None:
            out["envoy.common"] = {"access_log_hint": res.should_log}
        if meta:
            out[self._meta_ns] = meta
        details = None
        if not res.allowed and self._is_http:
            details = f"rbac_access_denied_matched_policy[{res.effective_policy_id or 'none'}]"
        return FilterResult(
            res.allowed,
            res.effective_policy_id,
            result,
            shadow_result,
            _pid(shadow),
            res.should_log,
            out,
            details,
            res,
            shadow,
        )


def _pid(r: EngineResult | None) -> str | None:
    return r.effective_policy_id if r is not None else None


def compile_filter(f: HttpRbacFilter | NetworkRbacFilter) -> CompiledFilter:
    return CompiledFilter(f)


def evaluate_filter(
    f: HttpRbacFilter | NetworkRbacFilter | CompiledFilter, inp: RbacInput, trace: bool = False
) -> FilterResult:
    """The filter's decision: shadow rules (recorded only), then enforced rules."""
    cf = f if isinstance(f, CompiledFilter) else compile_filter(f)
    return cf.evaluate(inp, trace)

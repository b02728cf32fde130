"""Envoy's RBAC evaluation (engine and HTTP/network filters), Envoy 1.40 semantics.

``compile_rbac`` turns an ``RBAC`` into closures once; ``CompiledRbac.evaluate``
is the hot path. ``trace=True`` walks the model instead, evaluating every node
(results are the same: matchers are pure) and recording a ``MatchTrace`` tree
whose nodes point at the model nodes and therefore at their notes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .matchers import (
    InputFn,
    compile_cidr,
    compile_header,
    compile_metadata,
    compile_string,
    uri_template_fn,
    url_path_fn,
)
from .model import (
    RBAC,
    Action,
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
)
from .serialize import check_network_rules

# --- the request as the filter sees it ---------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The downstream TLS peer. ``PeerCertificate()`` (no SANs, empty subject)
    is a TLS connection without a client certificate: Envoy 1.40 still counts
    it as authenticated and matches its subject as ""."""

    uri_sans: tuple[str, ...] = ()
    dns_sans: tuple[str, ...] = ()
    subject: str = ""  # RFC 2253 form, e.g. "CN=foo,O=bar"


def _ip(s: str | None) -> tuple[int, int] | None:
    if not s:
        return None
    a = ipaddress.ip_address(s)
    return (a.version, int(a))


@dataclass(slots=True)
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
    dynamic_metadata: Mapping[str, Any] = field(default_factory=dict)
    filter_state: Mapping[str, str] = field(default_factory=dict)
    # derived once, read by the matchers
    header_map: dict[str, list[str]] = field(init=False, repr=False)
    path: str | None = field(init=False, repr=False)
    ip_direct: tuple[int, int] | None = field(init=False, repr=False)
    ip_remote: tuple[int, int] | None = field(init=False, repr=False)
    ip_source: tuple[int, int] | None = field(init=False, repr=False)
    ip_destination: tuple[int, int] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        hm: dict[str, list[str]] = {}
        for name, value in self.headers or ():
            hm.setdefault(name.lower(), []).append(value)
        self.header_map = hm
        paths = hm.get(":path")
        self.path = paths[0] if paths else None
        self.ip_direct = _ip(self.direct_remote_ip)
        self.ip_remote = _ip(self.remote_ip) if self.remote_ip else self.ip_direct
        self.ip_source = _ip(self.source_ip) if self.source_ip else self.ip_direct
        self.ip_destination = _ip(self.destination_ip)


# --- compiling the tree ------------------------------------------------------------


# Small arities get dedicated closures: generator expressions cost more than
# the matchers themselves on the hot path.
def _all(fns: list[InputFn]) -> InputFn:
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


def _authenticated(node: IdAuthenticated) -> InputFn:
    """Envoy 1.40: any TLS peer matches without principal_name; with it, each
    URI SAN, then each DNS SAN, then the subject is tried, and the first match
    wins (so a subject can match even when the cert has SANs; verified)."""
    if node.principal_name is None:
        return lambda inp: inp.peer is not None
    fn = compile_string(node.principal_name)

    def auth(inp: RbacInput) -> bool:
        p = inp.peer
        if p is None:
            return False
        return any(fn(u) for u in p.uri_sans) or any(fn(d) for d in p.dns_sans) or fn(p.subject)

    return auth


def compile_node(node: Any) -> InputFn:
    """A Permission or Principal node as a closure."""
    match node:
        case PermAny() | IdAny():
            return lambda inp: True
        case PermAnd(rules=rules):
            return _all([compile_node(r) for r in rules])
        case IdAnd(ids=ids):
            return _all([compile_node(r) for r in ids])
        case PermOr(rules=rules):
            return _any([compile_node(r) for r in rules])
        case IdOr(ids=ids):
            return _any([compile_node(r) for r in ids])
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
    perms = _any([compile_node(x) for x in p.permissions]) if p.permissions else None
    ids = _any([compile_node(x) for x in p.principals]) if p.principals else None
    if perms is None or ids is None:  # Envoy rejects such a policy; it can never match
        return lambda inp: False
    return lambda inp: perms(inp) and ids(inp)


# --- traces ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchTrace:
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


@dataclass(frozen=True, slots=True)
class PolicyTrace:
    name: str
    policy: Policy
    matched: bool
    permissions: tuple[MatchTrace, ...]
    principals: tuple[MatchTrace, ...]


def _trace(node: Any, leaves: dict[int, InputFn], inp: RbacInput) -> MatchTrace:
    match node:
        case PermAnd(rules=subs) | IdAnd(ids=subs):
            kids = tuple(_trace(s, leaves, inp) for s in subs)
            return MatchTrace(node, all(k.matched for k in kids), kids)
        case PermOr(rules=subs) | IdOr(ids=subs):
            kids = tuple(_trace(s, leaves, inp) for s in subs)
            return MatchTrace(node, any(k.matched for k in kids), kids)
        case PermNot(rule=sub) | IdNot(id=sub):
            kid = _trace(sub, leaves, inp)
            return MatchTrace(node, not kid.matched, (kid,))
    fn = leaves.get(id(node))
    if fn is None:
        fn = leaves[id(node)] = compile_node(node)
    return MatchTrace(node, fn(inp))


# --- the engine ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineResult:
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

    __slots__ = ("_leaves", "_policies", "_results", "action", "rbac")

    def __init__(self, rbac: RBAC) -> None:
        self.rbac = rbac
        self.action = rbac.action
        ordered = sorted(rbac.policies, key=lambda kv: kv[0])
        self._policies: tuple[tuple[str, Policy, InputFn], ...] = tuple(
            (name, pol, compile_policy(pol)) for name, pol in ordered
        )
        self._leaves: dict[int, InputFn] = {}
        # results are immutable: build each possible one once
        self._results = {n: self._result(n is not None, n, None) for n, *_ in ordered}
        self._results[None] = self._result(False, None, None)

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
        for name, pol, _ in self._policies:
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


@dataclass(frozen=True, slots=True)
class FilterResult:
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
            check_network_rules(f.rules, "rules")
            check_network_rules(f.shadow_rules, "shadowRules")
        self._meta_ns = "envoy.filters.http.rbac" if self._is_http else "envoy.filters.network.rbac"
        self._engine = compile_rbac(f.rules) if f.rules is not None else None
        self._shadow = compile_rbac(f.shadow_rules) if f.shadow_rules is not None else None

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

"""Envoy's listener: which filter chain a connection lands on.

The model holds what the filter chain lookup reads (``FilterChainManagerImpl``):
each chain's ``filter_chain_match``, the listener's ``default_filter_chain``
and the listener filters with their ``filter_disabled`` predicates. The
chains' filters and transport socket stay JSON for the filters' own readers.

``select_chain`` follows Envoy's lookup: the most specific match at each
level in turn (destination port, destination IP, server name, transport
protocol, application protocols, direct source IP, source type, source IP,
source port), with no fallback to a less specific branch once a level
matched; no chain at all gives the default chain, if any.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from msgspec import Struct

from meshauthz.envoy.proto_json import as_int, get, get_int, str_list

TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
DOWNSTREAM_TLS_TYPE = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
)

SourceType = Literal["ANY", "SAME_IP_OR_LOOPBACK", "EXTERNAL"]
_SOURCE_TYPES: tuple[SourceType, ...] = ("ANY", "SAME_IP_OR_LOOPBACK", "EXTERNAL")


class CidrRange(Struct, frozen=True):
    address_prefix: str
    prefix_len: int

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        try:
            return ipaddress.ip_network(f"{self.address_prefix}/{self.prefix_len}", strict=False)
        except ValueError:
            return None


class FilterChainMatch(Struct, frozen=True):
    destination_port: int | None = None
    prefix_ranges: tuple[CidrRange, ...] = ()
    server_names: tuple[str, ...] = ()
    transport_protocol: str = ""
    application_protocols: tuple[str, ...] = ()
    direct_source_prefix_ranges: tuple[CidrRange, ...] = ()
    source_type: SourceType = "ANY"
    source_prefix_ranges: tuple[CidrRange, ...] = ()
    source_ports: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, m: Any) -> FilterChainMatch:
        st = get(m, "source_type", "ANY")
        if isinstance(st, int) and 0 <= st < len(_SOURCE_TYPES):
            st = _SOURCE_TYPES[st]
        return cls(
            destination_port=get_int(m, "destination_port") or None,
            prefix_ranges=_cidrs(get(m, "prefix_ranges")),
            server_names=str_list(get(m, "server_names")),
            transport_protocol=str(get(m, "transport_protocol", "")),
            application_protocols=str_list(get(m, "application_protocols")),
            direct_source_prefix_ranges=_cidrs(get(m, "direct_source_prefix_ranges")),
            source_type=st if st in _SOURCE_TYPES else "ANY",
            source_prefix_ranges=_cidrs(get(m, "source_prefix_ranges")),
            source_ports=tuple(
                p for p in (as_int(x) for x in get(m, "source_ports", [])) if p is not None
            ),
        )

    def to_json(self) -> dict[str, Any]:
        """Envoy's JSON (snake_case), fields at their defaults left out; the inverse
        of ``from_json``."""
        out: dict[str, Any] = {}
        if self.destination_port is not None:
            out["destination_port"] = self.destination_port
        for key, ranges in (
            ("prefix_ranges", self.prefix_ranges),
            ("direct_source_prefix_ranges", self.direct_source_prefix_ranges),
            ("source_prefix_ranges", self.source_prefix_ranges),
        ):
            if ranges:
                out[key] = [
                    {"address_prefix": r.address_prefix, "prefix_len": r.prefix_len} for r in ranges
                ]
        if self.server_names:
            out["server_names"] = list(self.server_names)
        if self.transport_protocol:
            out["transport_protocol"] = self.transport_protocol
        if self.application_protocols:
            out["application_protocols"] = list(self.application_protocols)
        if self.source_type != "ANY":
            out["source_type"] = self.source_type
        if self.source_ports:
            out["source_ports"] = list(self.source_ports)
        return out


def _cidrs(v: Any) -> tuple[CidrRange, ...]:
    if not isinstance(v, list):
        return ()
    return tuple(
        CidrRange(str(get(r, "address_prefix", "")), get_int(r, "prefix_len") or 0) for r in v
    )


class FilterChain(Struct, frozen=True):
    name: str
    match: FilterChainMatch
    filters: tuple[Any, ...]  # the network filters' JSON, in order
    transport_socket: Any  # its JSON, None if absent

    @classmethod
    def from_json(cls, c: Any) -> FilterChain:
        filters = get(c, "filters", [])
        return cls(
            name=str(get(c, "name", "")),
            match=FilterChainMatch.from_json(get(c, "filter_chain_match", {})),
            filters=tuple(filters) if isinstance(filters, list) else (),
            transport_socket=get(c, "transport_socket"),
        )

    def to_json(self) -> dict[str, Any]:
        """Envoy's JSON (snake_case); the inverse of ``from_json``."""
        out: dict[str, Any] = {"name": self.name}
        match = self.match.to_json()
        if match:
            out["filter_chain_match"] = match
        if self.transport_socket is not None:
            out["transport_socket"] = self.transport_socket
        out["filters"] = list(self.filters)
        return out

    @property
    def requires_client_certificate(self) -> bool:
        """A TLS chain that asks the client for a certificate (mutual TLS)."""
        tc = get(self.transport_socket, "typed_config")
        return get(tc, "@type") == DOWNSTREAM_TLS_TYPE and bool(
            get(tc, "require_client_certificate", False)
        )

    def describe(self, index: int) -> str:
        m = self.match
        bits = [f"port {m.destination_port}" if m.destination_port else "any port"]
        if m.transport_protocol:
            bits.append(m.transport_protocol)
        if m.application_protocols:
            bits.append("alpn " + "/".join(m.application_protocols))
        return f"{self.name or f'[{index}]'} ({', '.join(bits)})"


# --------------------------------------------------------------------------- predicates


class AnyMatch(Struct, frozen=True):
    pass


class PortRange(Struct, frozen=True):
    start: int
    end: int  # exclusive


class OrMatch(Struct, frozen=True):
    rules: tuple[Predicate, ...]


class AndMatch(Struct, frozen=True):
    rules: tuple[Predicate, ...]


class NotMatch(Struct, frozen=True):
    rule: Predicate


class OtherMatch(Struct, frozen=True):
    """A predicate on something other than the destination port (e.g. the
    server name): taken as not matching."""

    kind: str


Predicate = AnyMatch | PortRange | OrMatch | AndMatch | NotMatch | OtherMatch


def predicate_from_json(p: Any) -> Predicate:
    """A ListenerFilterChainMatchPredicate."""
    if get(p, "any_match"):
        return AnyMatch()
    if (r := get(p, "destination_port_range")) is not None:
        return PortRange(get_int(r, "start") or 0, get_int(r, "end") or 0)
    if (o := get(p, "or_match")) is not None:
        return OrMatch(tuple(predicate_from_json(x) for x in get(o, "rules", [])))
    if (a := get(p, "and_match")) is not None:
        return AndMatch(tuple(predicate_from_json(x) for x in get(a, "rules", [])))
    if (n := get(p, "not_match")) is not None:
        return NotMatch(predicate_from_json(n))
    kinds = [str(k) for k in p] if isinstance(p, Mapping) else []
    return OtherMatch(kinds[0] if kinds else "")


def predicate_matches(p: Predicate, port: int) -> bool:
    """The predicate for a connection to ``port`` (only the destination port is known)."""
    if isinstance(p, AnyMatch):
        return True
    if isinstance(p, PortRange):
        return p.start <= port < p.end
    if isinstance(p, OrMatch):
        return any(predicate_matches(x, port) for x in p.rules)
    if isinstance(p, AndMatch):
        return all(predicate_matches(x, port) for x in p.rules)
    if isinstance(p, NotMatch):
        return not predicate_matches(p.rule, port)
    return False


class ListenerFilter(Struct, frozen=True):
    name: str
    filter_disabled: Predicate | None = None


# --------------------------------------------------------------------------- the listener


class Listener(Struct, frozen=True):
    name: str
    port: int | None  # the bound socket address's port
    traffic_direction: str
    listener_filters: tuple[ListenerFilter, ...]
    filter_chains: tuple[FilterChain, ...]
    default_filter_chain: FilterChain | None

    @classmethod
    def from_json(cls, d: Any, name: str = "") -> Listener:
        chains = get(d, "filter_chains", [])
        default = get(d, "default_filter_chain")
        return cls(
            name=str(name or get(d, "name", "")),
            port=get_int(get(get(d, "address"), "socket_address"), "port_value"),
            traffic_direction=str(get(d, "traffic_direction", "")),
            listener_filters=tuple(
                ListenerFilter(
                    str(get(f, "name", "")),
                    None
                    if get(f, "filter_disabled") is None
                    else predicate_from_json(get(f, "filter_disabled")),
                )
                for f in get(d, "listener_filters", [])
            ),
            filter_chains=tuple(
                FilterChain.from_json(c) for c in (chains if isinstance(chains, list) else [])
            ),
            default_filter_chain=None
            if not isinstance(default, Mapping)
            else FilterChain.from_json(default),
        )

    def listener_filter_runs(self, name: str, port: int) -> bool:
        """Whether the listener filter ``name`` runs for a connection to ``port``."""
        for f in self.listener_filters:
            if f.name == name:
                return f.filter_disabled is None or not predicate_matches(f.filter_disabled, port)
        return False


class Connection(Struct, frozen=True):
    """What the lookup knows of a connection (the client's port is unknown)."""

    port: int
    ip: str
    sni: str
    transport: str
    alpn: tuple[str, ...]
    source_ip: str


def _ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(s)
    except ValueError:
        return None


def _best_prefix(ranges: Sequence[CidrRange], ip: str) -> int | None:
    """The longest of ``ranges`` holding ``ip``; None if none does."""
    addr = _ip(ip)
    best: int | None = None
    for r in ranges:
        net = r.network()
        if net is not None and addr is not None and addr.version == net.version and addr in net:
            best = r.prefix_len if best is None else max(best, r.prefix_len)
    return best


_Cand = tuple[int, FilterChain]


def _narrow_ranges(cands: list[_Cand], key: str, ip: str) -> list[_Cand]:
    def ranges(c: _Cand) -> tuple[CidrRange, ...]:
        v: tuple[CidrRange, ...] = getattr(c[1].match, key)
        return v

    scored = [(c, _best_prefix(ranges(c), ip)) for c in cands if ranges(c)]
    hits = [(c, s) for c, s in scored if s is not None]
    if hits:
        top = max(s for _, s in hits)
        return [c for c, s in hits if s == top]
    return [c for c in cands if not ranges(c)]


def select_chain(listener: Listener, conn: Connection) -> tuple[int, FilterChain] | None:
    """The filter chain Envoy picks for ``conn`` and its index (-1: the default
    chain); None: no chain, so Envoy closes the connection."""
    cands: list[_Cand] = list(enumerate(listener.filter_chains))

    ports = [c for c in cands if c[1].match.destination_port == conn.port]
    cands = ports or [c for c in cands if not c[1].match.destination_port]
    cands = _narrow_ranges(cands, "prefix_ranges", conn.ip)

    named = [c for c in cands if c[1].match.server_names]
    exact = [c for c in named if conn.sni and conn.sni in c[1].match.server_names]
    if exact:
        cands = exact
    else:
        best, wild = 0, list[_Cand]()
        for c in named:
            for n in c[1].match.server_names:
                if n.startswith("*.") and conn.sni.endswith(n[1:]) and len(n) >= best:
                    if len(n) > best:
                        best, wild = len(n), []
                    wild.append(c)
        cands = wild or [c for c in cands if not c[1].match.server_names]

    tp = [c for c in cands if c[1].match.transport_protocol == conn.transport]
    cands = tp or [c for c in cands if not c[1].match.transport_protocol]

    for a in conn.alpn:
        hit = [c for c in cands if a in c[1].match.application_protocols]
        if hit:
            cands = hit
            break
    else:
        cands = [c for c in cands if not c[1].match.application_protocols]

    cands = _narrow_ranges(cands, "direct_source_prefix_ranges", conn.source_ip)
    src = _ip(conn.source_ip)
    local = src is not None and (src.is_loopback or conn.source_ip == conn.ip)
    want: SourceType = "SAME_IP_OR_LOOPBACK" if local else "EXTERNAL"
    typed = [c for c in cands if c[1].match.source_type == want]
    cands = typed or [c for c in cands if c[1].match.source_type == "ANY"]
    cands = _narrow_ranges(cands, "source_prefix_ranges", conn.source_ip)
    cands = [c for c in cands if not c[1].match.source_ports]  # the client port is unknown
    if cands:
        return cands[0]
    if listener.default_filter_chain is not None:
        return -1, listener.default_filter_chain
    return None

"""Envoy's listener model and filter chain lookup, on istiod's virtualInbound
listener from a real sidecar's config dump (tests/decide/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshauthz.envoy.listener import (
    HTTP_INSPECTOR,
    TLS_INSPECTOR,
    AndMatch,
    AnyMatch,
    Connection,
    FilterChain,
    Listener,
    NotMatch,
    OrMatch,
    OtherMatch,
    PortRange,
    predicate_from_json,
    predicate_matches,
    select_chain,
)

FIXTURE = Path(__file__).resolve().parents[1] / "decide" / "fixtures"


def _virtual_inbound() -> Listener:
    doc = json.loads((FIXTURE / "seed-backend.config_dump.json").read_text())

    def find(v: Any) -> Any:
        if isinstance(v, dict):
            if v.get("name") == "virtualInbound" and "filter_chains" in v:
                return v
            vals = list(v.values())
        elif isinstance(v, list):
            vals = v
        else:
            return None
        for x in vals:
            if (hit := find(x)) is not None:
                return hit
        return None

    return Listener.from_json(find(doc))


VI = _virtual_inbound()


def conn(port: int, transport: str, alpn: tuple[str, ...] = (), sni: str = "") -> Connection:
    return Connection(port, "10.0.0.5", sni, transport, alpn, "10.0.0.9")


def picked(c: Connection) -> tuple[str, str, tuple[str, ...]] | None:
    hit = select_chain(VI, c)
    if hit is None:
        return None
    _, chain = hit
    return chain.name, chain.match.transport_protocol, chain.match.application_protocols


def picked_some(c: Connection) -> tuple[str, str, tuple[str, ...]]:
    got = picked(c)
    assert got is not None
    return got


def test_listener_filter_predicates() -> None:
    # istiod disables the HTTP inspector on ports it knows are HTTP (80 here).
    assert VI.listener_filter_runs(TLS_INSPECTOR, 80)
    assert not VI.listener_filter_runs(HTTP_INSPECTOR, 80)
    assert VI.listener_filter_runs(HTTP_INSPECTOR, 8080)
    assert not VI.listener_filter_runs(TLS_INSPECTOR, 15006)
    assert not VI.listener_filter_runs("envoy.filters.listener.none", 80)


def test_the_port_level_wins_and_is_never_left() -> None:
    assert picked_some(conn(80, "tls", ("istio-http/1.1",)))[:2] == ("0.0.0.0_80", "tls")
    assert picked_some(conn(80, "raw_buffer"))[:2] == ("0.0.0.0_80", "raw_buffer")
    # An ALPN no port-80 chain lists: the chain without application_protocols
    # under the port would be taken; there is none for tls, and no fallback
    # to the catch-all chains.
    assert picked(conn(80, "tls", ("h2",))) is None


def test_catch_all_chains_by_transport_then_alpn() -> None:
    assert picked(conn(9000, "tls", ("istio-http/1.1",))) == (
        "virtualInbound-catchall-http",
        "tls",
        ("istio-http/1.0", "istio-http/1.1", "istio-h2"),
    )
    assert picked_some(conn(9000, "tls", ("istio-peer-exchange", "istio")))[2] == (
        "istio-peer-exchange",
        "istio",
    )
    assert picked_some(conn(9000, "raw_buffer", ("http/1.1",)))[0] == "virtualInbound-catchall-http"
    assert picked(conn(9000, "raw_buffer")) == ("virtualInbound", "raw_buffer", ())


def test_default_chain_when_nothing_matches() -> None:
    only_tls = Listener(
        "l", None, "INBOUND", (), VI.filter_chains[-2:], None
    )  # port 80 chains only
    assert select_chain(only_tls, conn(81, "raw_buffer")) is None
    default = FilterChain.from_json({"name": "fallback", "filters": []})
    with_default = Listener("l", None, "INBOUND", (), only_tls.filter_chains, default)
    assert select_chain(with_default, conn(81, "raw_buffer")) == (-1, default)


def test_server_names_exact_then_longest_wildcard() -> None:
    chains = tuple(
        FilterChain.from_json({"name": n, "filter_chain_match": {"server_names": sn}})
        for n, sn in (
            ("wild", ["*.example.com"]),
            ("longer", ["*.a.example.com"]),
            ("exact", ["x.a.example.com"]),
            ("none", []),
        )
    )
    lis = Listener("l", None, "", (), chains, None)

    def name(sni: str) -> str:
        hit = select_chain(lis, conn(1, "tls", sni=sni))
        assert hit is not None
        return hit[1].name

    assert name("x.a.example.com") == "exact"
    assert name("y.a.example.com") == "longer"
    assert name("b.example.com") == "wild"
    assert name("other.org") == "none"


def test_predicates_from_json() -> None:
    p = predicate_from_json(
        {
            "and_match": {
                "rules": [
                    {"not_match": {"destination_port_range": {"start": 80, "end": 81}}},
                    {"or_match": {"rules": [{"any_match": True}, {"requested_server_name": "x"}]}},
                ]
            }
        }
    )
    assert p == AndMatch(
        (NotMatch(PortRange(80, 81)), OrMatch((AnyMatch(), OtherMatch("requested_server_name"))))
    )
    assert predicate_matches(p, 8080) and not predicate_matches(p, 80)
    assert not predicate_matches(OtherMatch("requested_server_name"), 80)

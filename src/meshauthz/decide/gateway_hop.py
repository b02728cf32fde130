"""A request through a gateway: two proxies decide it, one after the other.

The client's request reaches the gateway's own Envoy first, which decides it
as ``check`` decides a request to the gateway (its mTLS mode, its filters, its
HCM's view: the remote address from the connection and X-Forwarded-For as
``gatewayTopology.numTrustedProxies`` says, the path normalized, the headers
its connection manager adds). A request the gateway lets through is sent on,
and the destination decides that onward request as ``check`` decides a
request from the gateway workload:

- the caller is the gateway: its identity (mTLS) and its address;
- the method, the Host and the headers are those the gateway's filters saw
  (the client's, with what the gateway's connection manager added), the path
  as the gateway normalized it;
- X-Forwarded-For: the client's entries, then the address of the gateway's
  peer, which a ``use_remote_address`` connection manager (every gateway's)
  appends; Envoy's own address (the pod's) when that peer is 127.0.0.1 or
  ::1 (Envoy's ``ConnectionManagerUtility::mutateRequestHeaders``; for
  IPv4 peers observed with Envoy 1.40: tests/envoy/test_gateway_forwarded_for.py). The
  destination's sidecar takes the last entry as the remote address;
- TCP: the destination sees the gateway's connection, nothing of the client.

Routing (Gateway servers, VirtualServices) is not read: the destination and
the SNI the gateway's cluster presents are given.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshauthz.decide.decision import Decision
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.envoy.request_headers import FORWARDED_FOR

if TYPE_CHECKING:
    from meshauthz.decide.engine import Decider


@dataclass(frozen=True, slots=True)
class ThroughGateway:
    """Both hops of one request: the gateway's decision, and when it lets the
    request through, the onward request and the destination's decision."""

    at_gateway: Decision
    onward: dict[str, Any] | None = None  # the request format
    at_destination: Decision | None = None

    @property
    def final(self) -> Decision:
        return self.at_destination if self.at_destination is not None else self.at_gateway

    @property
    def decided_at_gateway(self) -> bool:
        return self.at_destination is None


# The peers for which Envoy appends its own address (``isLoopbackAddress``:
# 127.0.0.1 itself, not all of 127.0.0.0/8, observed with Envoy 1.40; and ::1,
# from Envoy's source/common/network/utility.cc, which compares an IPv6 peer
# with in6addr_loopback: the tests' Envoy runs bind IPv4 only).
LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def appended_peer(peer: str, gateway_address: str) -> str:
    """The address a ``use_remote_address`` HCM appends to X-Forwarded-For."""
    return gateway_address if ipaddress.ip_address(peer) in LOOPBACK else peer


def forwarded_for(sent: list[str], peer: str, gateway_address: str) -> str:
    """The X-Forwarded-For a gateway's filters see and send on: the client's
    entries (its header lines joined with ","), then the peer appended."""
    return ",".join([*sent, appended_peer(peer, gateway_address)])


def through_gateway(
    decider: Decider,
    client: dict[str, Any],
    to: str,
    port: int,
    protocol: str,
    *,
    sni: str = "",
) -> ThroughGateway:
    """``client`` (a request to the gateway workload, in the request format)
    decided at the gateway, then sent on to ``to``:``port`` when allowed."""
    snap = decider.snapshot
    r = resolve(request_from_data(client), snap)
    if r.protocol != protocol:
        raise ValueError(f"a {r.protocol} request to the gateway is not sent on as {protocol}")
    at_gateway = decider.decide(r)
    if not at_gateway.allowed:
        return ThroughGateway(at_gateway)
    gateway = r.destination
    onward: dict[str, Any] = {"from": gateway.key, "to": to, "port": port, "protocol": protocol}
    if protocol == "http":
        view = decider.prepare_request(r).view
        assert view is not None and view.headers is not None  # allowed over HTTP
        headers: dict[str, list[str]] = {}
        authority = r.host
        for name, value in view.headers:
            if name == ":authority":
                authority = value
            elif not name.startswith(":"):
                headers.setdefault(name, []).append(value)
        headers[FORWARDED_FOR] = [
            forwarded_for(headers.pop(FORWARDED_FOR, []), r.source_ip, gateway.address)
        ]
        onward.update(
            method=r.method,
            path=view.path,
            host=authority,
            headers={n: vs[0] if len(vs) == 1 else vs for n, vs in headers.items()},
        )
    if sni:
        onward["sni"] = sni
    at_destination = decider.decide(resolve(request_from_data(onward), snap))
    return ThroughGateway(at_gateway, onward, at_destination)


__all__ = ["LOOPBACK", "ThroughGateway", "appended_peer", "forwarded_for", "through_gateway"]

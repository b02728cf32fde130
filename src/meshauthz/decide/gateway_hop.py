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
- X-Forwarded-For as the gateway's filters saw it: the client's entries,
  then the address of the gateway's peer, which a ``use_remote_address``
  connection manager (every gateway's) appends before the filters run
  (``envoy.request_headers``, rule 6). The destination's sidecar takes the
  last entry as the remote address;
- TCP: the destination sees the gateway's connection, nothing of the client.

Routing (Gateway servers, VirtualServices) is not read: the destination and
the SNI the gateway's cluster presents are given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgspec import Struct

from meshauthz.decide.decision import Decision
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data

if TYPE_CHECKING:
    from meshauthz.decide.engine import Decider


class ThroughGateway(Struct, frozen=True):
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
        view = decider.prepare_request(r).full_view()
        assert view is not None and view.headers is not None  # allowed over HTTP
        headers: dict[str, list[str]] = {}
        authority = r.host
        for name, value in view.headers:
            if name == ":authority":
                authority = value
            elif not name.startswith(":"):
                headers.setdefault(name, []).append(value)
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


__all__ = ["ThroughGateway", "through_gateway"]

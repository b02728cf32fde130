"""Port protocols as istiod decides them, and which inbound filter chain a request takes.

Mirrors, in our own code:

* ``pkg/config/protocol/instance.go`` ``Parse`` and the ``Is*`` predicates;
* ``pkg/config/kube/conversion.go`` ``ConvertProtocol`` (a Kubernetes Service
  port's protocol: UDP first, then ``appProtocol``, then the port-name prefix,
  then TCP for a few well-known ports);
* ``pilot/pkg/networking/networking.go`` ``ModelProtocolToListenerProtocol``
  (a protocol's inbound listener kind: HTTP, TCP, or auto-detected).

The chain rule for auto-detected ports (``chain_for``) follows the inbound
filter-chain match options in ``pilot/pkg/networking/core/filterchain_options.go``:
on an auto port istiod builds both an HTTP and a TCP chain; a connection whose
first bytes (or, over Istio mTLS, whose ALPN set by the client sidecar) say
HTTP/1.x or h2c takes the HTTP chain, anything else takes the TCP chain.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class Protocol(StrEnum):
    """Istio's protocol.Instance values (their string forms are Istio's)."""

    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTP = "HTTP"
    HTTP_PROXY = "HTTP_PROXY"
    HTTP2 = "HTTP2"
    HTTPS = "HTTPS"
    TCP = "TCP"
    TLS = "TLS"
    UDP = "UDP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    HBONE = "HBONE"
    DOUBLE_HBONE = "DoubleHBONE"
    UNSUPPORTED = "UnsupportedProtocol"

    @property
    def is_http(self) -> bool:
        return self in _HTTP

    @property
    def is_http2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_tcp(self) -> bool:
        return self in _TCP

    @property
    def is_tls(self) -> bool:
        return self in (Protocol.HTTPS, Protocol.TLS)

    @property
    def is_unsupported(self) -> bool:
        return self is Protocol.UNSUPPORTED

    @property
    def is_http_or_sniffed(self) -> bool:
        return self.is_http or self.is_unsupported


_HTTP = frozenset(
    {Protocol.HTTP, Protocol.HTTP2, Protocol.HTTP_PROXY, Protocol.GRPC, Protocol.GRPC_WEB}
)
_TCP = frozenset(
    {Protocol.TCP, Protocol.HTTPS, Protocol.TLS, Protocol.MONGO, Protocol.REDIS, Protocol.MYSQL}
)

# protocol.Parse compares the lower-cased input with these keys. Istio's table
# also has a "DoubleHBONE" case that can never match a lower-cased string, so
# Parse never yields DoubleHBONE (nor HBONE); we keep that behaviour.
_PARSE: dict[str, Protocol] = {
    "tcp": Protocol.TCP,
    "udp": Protocol.UDP,
    "grpc": Protocol.GRPC,
    "grpc-web": Protocol.GRPC_WEB,
    "http": Protocol.HTTP,
    "http_proxy": Protocol.HTTP_PROXY,
    "http2": Protocol.HTTP2,
    "https": Protocol.HTTPS,
    "tls": Protocol.TLS,
    "mongo": Protocol.MONGO,
    "redis": Protocol.REDIS,
    "mysql": Protocol.MYSQL,
}

# ConvertProtocol: ports where a port without a recognised name is TCP, since
# sniffing would break server-first protocols (SMTP, DNS, MySQL, MongoDB).
WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})

# Kubernetes' standard appProtocol values, honoured only in appProtocol.
_K8S_APP_PROTOCOLS = {
    "kubernetes.io/h2c": Protocol.HTTP2,
    "kubernetes.io/ws": Protocol.HTTP,
    "kubernetes.io/wss": Protocol.HTTPS,
}


def parse_protocol(s: str) -> Protocol:
    """protocol.Parse: a protocol name, case-insensitively; UNSUPPORTED otherwise."""
    return _PARSE.get(s.lower(), Protocol.UNSUPPORTED)


def convert_protocol(
    port: int, port_name: str, proto: str = "TCP", app_protocol: str | None = None
) -> Protocol:
    """ConvertProtocol: the protocol istiod gives a Kubernetes Service port.

    ``app_protocol`` None or "" means not set (Kubernetes rejects an empty
    appProtocol, so the two cannot differ in a real cluster).
    """
    if proto == "UDP":
        return Protocol.UDP
    name = port_name
    if app_protocol:
        name = app_protocol
        if name in _K8S_APP_PROTOCOLS:
            return _K8S_APP_PROTOCOLS[name]
    # "grpc-web" holds a hyphen, so it is checked before the prefix split.
    if name[:8].lower() == "grpc-web":
        return Protocol.GRPC_WEB
    prefix = name.split("-", 1)[0]
    p = parse_protocol(prefix)
    if p is Protocol.UNSUPPORTED and port in WELL_KNOWN_TCP_PORTS:
        return Protocol.TCP
    return p


ListenerProtocol = Literal["http", "tcp", "auto"]
Chain = Literal["http", "tcp"]


def listener_protocol(p: Protocol) -> ListenerProtocol:
    """ModelProtocolToListenerProtocol, in our words.

    "http": only HTTP filter chains; "tcp": only TCP chains; "auto": both, the
    traffic decides (protocol sniffing). UDP maps to Istio's
    ListenerProtocolUnknown, for which ``getFilterChainMatchOptions`` falls
    through to the TCP options: TCP connections to such a port take TCP chains
    (UDP datagrams themselves are not redirected to the sidecar at all).
    """
    if p.is_http:
        return "http"
    if p.is_unsupported:
        return "auto"
    return "tcp"


def chain_for(listener: ListenerProtocol, *, http_request: bool) -> Chain:
    """The inbound filter chain a connection takes on a port of this kind.

    * "http" ports: the HTTP chain, whatever is sent (bytes that are not HTTP
      fail in the HTTP codec before any authorization).
    * "tcp" ports: the TCP chain, even for an HTTP request (the request is then
      authorized with TCP semantics: HTTP-only fields are not seen).
    * "auto" ports: the HTTP chain for an HTTP request (HTTP/1.x or h2c seen by
      the HTTP inspector, or Istio's HTTP ALPN over mTLS), the TCP chain otherwise
      (raw TCP, or one-way TLS such as HTTPS straight from the application).
    """
    if listener == "auto":
        return "http" if http_request else "tcp"
    return listener


__all__ = [
    "WELL_KNOWN_TCP_PORTS",
    "Chain",
    "ListenerProtocol",
    "Protocol",
    "chain_for",
    "convert_protocol",
    "listener_protocol",
    "parse_protocol",
]

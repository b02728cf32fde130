"""Port protocols and filter chains.

Sources (istio/istio at the pinned commit):
* pkg/config/kube/conversion_test.go TestConvertProtocol (table ported as is);
* pkg/config/protocol/instance.go Parse, Is* (code: the switch statements);
* pilot/pkg/networking/networking.go ModelProtocolToListenerProtocol (code);
* pilot/pkg/networking/core/filterchain_options.go (code): which chains exist
  on HTTP / TCP / auto ports.
"""

from __future__ import annotations

import pytest

from meshauthz.mesh import Protocol, chain_for, convert_protocol, listener_protocol, parse_protocol

# TestConvertProtocol: (name, port, portName, proto, appProto, expected). Go's
# zero values: port 0, name "", proto "" (not UDP), appProto nil.
CONVERT_CASES = [
    ("resolves empty", 0, "", "", None, Protocol.UNSUPPORTED),
    ("resolves from protocol directly", 0, "", "UDP", None, Protocol.UDP),
    ("resolves from port name", 0, "http-something", "", None, Protocol.HTTP),
    ("prefers appProto over portName", 0, "http-something", "", "https", Protocol.HTTPS),
    ("resolves from appProto", 0, "something-httpx", "", "https", Protocol.HTTPS),
    ("resolves grpc-web", 0, "grpc-web-x", "", None, Protocol.GRPC_WEB),
    ("makes sure grpc-web is not resolved incorrectly", 0, "grpcweb-x", "", None, Protocol.UNSUPPORTED),
    ("resolves based on known ports", 3306, "random-name", "", None, Protocol.TCP),
    ("standard app protocol", 3306, "random-name", "", "kubernetes.io/h2c", Protocol.HTTP2),
]  # fmt: skip


@pytest.mark.parametrize(
    "name,port,port_name,proto,app,expected", CONVERT_CASES, ids=[c[0] for c in CONVERT_CASES]
)
def test_convert_protocol(name, port, port_name, proto, app, expected):
    assert convert_protocol(port, port_name, proto, app) is expected


@pytest.mark.parametrize(
    "name,expected",
    [
        ("http", Protocol.HTTP),
        ("HTTP", Protocol.HTTP),
        ("http2", Protocol.HTTP2),
        ("grpc", Protocol.GRPC),
        ("grpc-web", Protocol.GRPC_WEB),
        ("https", Protocol.HTTPS),
        ("tls", Protocol.TLS),
        ("tcp", Protocol.TCP),
        ("udp", Protocol.UDP),
        ("mongo", Protocol.MONGO),
        ("redis", Protocol.REDIS),
        ("mysql", Protocol.MYSQL),
        ("http_proxy", Protocol.HTTP_PROXY),
        ("websocket", Protocol.UNSUPPORTED),
        # Parse lower-cases its input, so its "DoubleHBONE" case never matches.
        ("DoubleHBONE", Protocol.UNSUPPORTED),
        ("hbone", Protocol.UNSUPPORTED),
    ],
)
def test_parse_protocol(name, expected):
    assert parse_protocol(name) is expected


def test_port_name_prefix_and_well_known_ports():
    # ConvertProtocol: the name up to the first "-" is the protocol; an
    # unrecognised name is sniffed except on 25, 53, 3306 and 27017 (TCP).
    assert convert_protocol(80, "http", "TCP") is Protocol.HTTP
    assert convert_protocol(80, "HTTP2-web", "TCP") is Protocol.HTTP2
    assert convert_protocol(80, "tcp-db", "TCP") is Protocol.TCP
    assert convert_protocol(80, "web", "TCP") is Protocol.UNSUPPORTED
    assert convert_protocol(80, "", "TCP") is Protocol.UNSUPPORTED
    for port in (25, 53, 3306, 27017):
        assert convert_protocol(port, "", "TCP") is Protocol.TCP
    # appProtocol replaces the name entirely, including for the well-known ports.
    assert convert_protocol(3306, "tcp", "TCP", "http") is Protocol.HTTP
    # Kubernetes' standard values are read only from appProtocol.
    assert convert_protocol(80, "", "TCP", "kubernetes.io/ws") is Protocol.HTTP
    assert convert_protocol(80, "", "TCP", "kubernetes.io/wss") is Protocol.HTTPS
    # UDP wins over everything.
    assert convert_protocol(80, "http", "UDP", "http") is Protocol.UDP


@pytest.mark.parametrize(
    "proto,listener",
    [
        (Protocol.HTTP, "http"),
        (Protocol.HTTP2, "http"),
        (Protocol.HTTP_PROXY, "http"),
        (Protocol.GRPC, "http"),
        (Protocol.GRPC_WEB, "http"),
        (Protocol.TCP, "tcp"),
        (Protocol.HTTPS, "tcp"),
        (Protocol.TLS, "tcp"),
        (Protocol.MONGO, "tcp"),
        (Protocol.REDIS, "tcp"),
        (Protocol.MYSQL, "tcp"),
        (Protocol.UNSUPPORTED, "auto"),
        # ListenerProtocolUnknown falls through to the TCP chain options.
        (Protocol.UDP, "tcp"),
    ],
)
def test_listener_protocol(proto, listener):
    # ModelProtocolToListenerProtocol; HTTPS is TCP (TLS is passed through).
    assert listener_protocol(proto) == listener


def test_chain_rule():
    # filterchain_options.go: an auto port has HTTP chains (ALPN http/1.1, h2c, or
    # Istio's mTLS HTTP ALPNs) and TCP chains (everything else); declared ports
    # have only one kind.
    assert chain_for("auto", http_request=True) == "http"
    assert chain_for("auto", http_request=False) == "tcp"
    assert chain_for("tcp", http_request=True) == "tcp"
    assert chain_for("http", http_request=False) == "http"


def test_protocol_predicates():
    # protocol.Instance IsHTTP / IsTCP / IsHTTP2 / IsTLS / IsHTTPOrSniffed.
    assert Protocol.GRPC.is_http and Protocol.GRPC.is_http2
    assert Protocol.HTTPS.is_tcp and Protocol.HTTPS.is_tls and not Protocol.HTTPS.is_http
    assert Protocol.UNSUPPORTED.is_http_or_sniffed and not Protocol.TCP.is_http_or_sniffed
    assert str(Protocol.GRPC_WEB) == "GRPC-Web"

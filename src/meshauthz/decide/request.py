"""The resolved request: what the destination's Envoy sees.

``resolve`` turns the friendly request format (``request_spec``) into this,
using the mesh: a workload caller gives its principal, namespace and address;
a Service destination gives the workload and the port it receives on.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from msgspec import Struct

from meshauthz.ambient.topology import enrollment
from meshauthz.decide.request_spec import RequestSpec
from meshauthz.envoy import jwt_authn
from meshauthz.errors import InputError
from meshauthz.mesh import (
    InboundPort,
    Injection,
    LookupFailed,
    MeshSnapshot,
    MeshWorkload,
    Target,
    inbound_port,
    inbound_ports,
    resolve_target,
    resolve_targets,
    service_targets,
)

if TYPE_CHECKING:
    from meshauthz.envoy.jwt_authn import JwtPresented

# The address of a caller given only by identity (documentation range, RFC 5737).
DEFAULT_SOURCE_IP = "192.0.2.10"

# Which filter chain the request takes: the HTTP filters or the network (TCP) ones.
Transport = Literal["http", "tcp"]
Inferred = Literal["undeclared", "unnamed"]


class Request(Struct, frozen=True):
    destination: MeshWorkload
    port: int
    protocol: Transport
    source_principal: str | None  # "td/ns/x/sa/y" without spiffe://; None: no client certificate
    source_namespace: str | None
    source_ip: str
    remote_ip: str | None  # None: from X-Forwarded-For as the sidecar computes it
    source_workload: str | None = None
    method: str = "GET"
    path: str = "/"
    host: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    jwt: JwtPresented | None = None
    sni: str = ""
    name: str | None = None
    # The caller is a workload without a sidecar (why): it sends plaintext.
    source_injection: Injection | None = None
    # The protocol was not declared for the port, so the sidecar infers it from the
    # traffic: "undeclared" (no Service declares the port) or "unnamed" (a Service
    # port without a protocol in its name or appProtocol).
    protocol_inferred: Inferred | None = None

    @property
    def plaintext(self) -> bool:
        return self.source_principal is None


def _namespace_of(principal: str) -> str | None:
    parts = principal.split("/")
    for i, p in enumerate(parts[:-1]):
        if p == "ns":
            return parts[i + 1]
    return None


class ResolvedSource(Struct, frozen=True):
    principal: str | None
    namespace: str | None
    ip: str
    workload: str | None
    injection: Injection | None = None  # a workload caller without a sidecar: why


@contextmanager
def _named_at(spec: RequestSpec, field: str) -> Iterator[None]:
    """A name that does not resolve is an error in the request: say where it is
    written (the request file's line, or the command line) and in which field."""
    try:
        yield
    except LookupFailed as e:
        if e.location is None:
            e.field = e.field or field
            e.location = spec.at(e.field)
        raise


def resolve_source(spec: RequestSpec, snapshot: MeshSnapshot | None) -> ResolvedSource:
    """The caller: a workload gives its identity and address; explicit fields win."""
    src = spec.source
    principal: str | None = None
    namespace: str | None = None
    ip: str | None = src.ip
    workload_key: str | None = None
    no_sidecar: Injection | None = None
    if src.workload is not None:
        if snapshot is None:
            raise InputError(
                f"the caller {src.workload} is a workload: give the manifests that define it "
                "(-f), or its identity (--principal, from.principal) or --plaintext",
                location=spec.at("from"),
                field="from",
            )
        with _named_at(spec, "from"):
            w = snapshot.workload(src.workload)
        workload_key, principal, namespace = w.key, w.identity.principal, w.namespace
        ip = ip or w.address
        if w.injection is not None and enrollment(snapshot, w).mode == "none":
            # no sidecar nor ztunnel to originate mTLS: plaintext, from the pod's own address
            principal, no_sidecar = None, w.injection
    if src.principal is not None:
        principal = src.principal.removeprefix("spiffe://")
        namespace = _namespace_of(principal)
        no_sidecar = None  # an identity given: it presents that certificate
    if src.namespace is not None:
        namespace = src.namespace
    if src.plaintext:
        principal = None
    return ResolvedSource(principal, namespace, ip or DEFAULT_SOURCE_IP, workload_key, no_sidecar)


# The port an http:// URL implies; a client leaves it out of the Host header.
HTTP_DEFAULT_PORT = 80


def default_host(snapshot: MeshSnapshot, target: Target, inbound: InboundPort) -> str:
    """The Host a client calling the destination by its Service name sends: the
    Service's hostname, with ``:port`` unless the Service port is http's default
    (as curl and every HTTP client write it, RFC 9110 7.2). The Service port is the
    one named, else the one istiod gives the workload's port (``inbound``: the
    first Service whose port reaches it); when none does, the client calls the
    pod: its address."""
    if target.host:
        number = target.host_port or inbound.port
        return target.host if number == HTTP_DEFAULT_PORT else f"{target.host}:{number}"
    svc, svc_port = target.service, target.service_port
    if svc_port is None:
        first = inbound.target
        if first is not None and svc in (None, first.service):
            svc, svc_port = first.service, first.service_port
        elif svc is not None:  # the named Service, though not the first to reach the port
            for st in service_targets(snapshot, target.workload):
                if st.service is svc and st.target_port == inbound.port:
                    svc_port = st.service_port
                    break
    if svc is None or svc_port is None:
        name, number = target.workload.address, inbound.port
    else:
        name, number = svc.hostname, svc_port.port
    return name if number == HTTP_DEFAULT_PORT else f"{name}:{number}"


# Names resolve the same way for every request to a snapshot: what a request's
# ``from`` and its destination fields resolve to is kept per snapshot (bounded),
# so a stream of requests resolves each distinct caller and destination once.
# Errors are not kept: a failing request raises again, naming its own location.
_RESOLVED: weakref.WeakKeyDictionary[MeshSnapshot, dict[Any, Any]] = weakref.WeakKeyDictionary()
_RESOLVED_MAX = 65536


def _resolved(snapshot: MeshSnapshot) -> dict[Any, Any]:
    memo = _RESOLVED.get(snapshot)
    if memo is None or len(memo) >= _RESOLVED_MAX:
        memo = _RESOLVED[snapshot] = {}
    return memo


def _source(spec: RequestSpec, snapshot: MeshSnapshot) -> ResolvedSource:
    memo = _resolved(snapshot)
    source = memo.get(spec.source)
    if source is None:
        source = memo[spec.source] = resolve_source(spec, snapshot)
    return source


def resolve(spec: RequestSpec, snapshot: MeshSnapshot) -> Request:
    """Resolve names against the mesh. Raises InputError naming what is missing, or
    LookupFailed (code "ambiguous") for a Service that selects several workloads."""
    source = _source(spec, snapshot)
    (dest,) = _destinations(spec, snapshot, each=False)
    return _request(spec, source, dest)


def resolve_each(spec: RequestSpec, snapshot: MeshSnapshot) -> list[Request]:
    """``resolve``, once for each workload the destination names: a Service that
    selects several workloads gives one request to each, in the snapshot's order."""
    source = _source(spec, snapshot)
    return [_request(spec, source, d) for d in _destinations(spec, snapshot, each=True)]


def _destinations(spec: RequestSpec, snapshot: MeshSnapshot, each: bool) -> list[_Destination]:
    """The destination's workload (``each``: every workload it names), resolved once
    per snapshot for the same destination fields."""
    memo = _resolved(snapshot)
    key = (each, spec.to, spec.to_port, spec.port, spec.protocol, spec.host is None)
    dests = memo.get(key)
    if dests is None:
        ref = _target_ref(spec)
        with _named_at(spec, "to"):
            targets = resolve_targets(snapshot, ref) if each else [resolve_target(snapshot, ref)]
        dests = memo[key] = [_destination(spec, snapshot, t) for t in targets]
    return dests


def _target_ref(spec: RequestSpec) -> str:
    # with an explicit workload port ("port"), a port after "to" is not read
    if spec.port is None and spec.to_port:
        return f"{spec.to}:{spec.to_port}"
    return spec.to


class _Destination(Struct, frozen=True):
    """What a request's destination fields (to, port, protocol) resolve to;
    ``host``: the Host a client sends when the request gives none."""

    workload: MeshWorkload
    port: int
    protocol: Transport
    inferred: Inferred | None
    host: str | None


def _destination(spec: RequestSpec, snapshot: MeshSnapshot, target: Target) -> _Destination:
    port = spec.port if spec.port is not None else target.port
    dest = target.workload
    if port is None:
        ports = inbound_ports(snapshot, dest)
        declared = sorted({p.port for p in ports} | {p.container_port for p in dest.ports})
        if len(declared) != 1:
            listed = ", ".join(map(str, declared)) or "none declared"
            raise InputError(
                f"{dest.key} receives on several ports or none ({listed}): give the port "
                f'("port" in a request file, --port on the command line)',
                location=spec.location,
                field="port",
            )
        port = declared[0]
    protocol: Transport
    inferred: Inferred | None = None
    inbound = inbound_port(snapshot, dest, port)
    if spec.protocol is not None:
        protocol = "tcp" if spec.protocol == "tcp" else "http"
    else:
        protocol = "tcp" if inbound.listener == "tcp" else "http"
        if inbound.listener == "auto":
            # no protocol declared: the sidecar sniffs it; a request here is HTTP
            inferred = "undeclared" if inbound.passthrough else "unnamed"
    host = None if spec.host is not None else default_host(snapshot, target, inbound)
    return _Destination(dest, port, protocol, inferred, host)


def _request(spec: RequestSpec, source: ResolvedSource, d: _Destination) -> Request:
    jwt: JwtPresented | None = None
    if spec.jwt is not None or spec.token is not None:
        jwt = jwt_authn.JwtPresented.from_request(spec.jwt, spec.jwt_location, spec.token)
    principal = source.principal
    if principal is not None and not d.workload.auto_mtls and spec.source.principal is None:
        principal = None  # its proxy sends plaintext there; a given principal stands for mTLS
    return Request(
        destination=d.workload,
        port=d.port,
        protocol=d.protocol,
        source_principal=principal,
        source_namespace=source.namespace,
        source_ip=source.ip,
        remote_ip=spec.remote_ip,
        source_workload=source.workload,
        method=spec.method,
        path=spec.path,
        host=spec.host if spec.host is not None else d.host or "",
        headers=spec.headers,
        jwt=jwt,
        sni=spec.sni or "",
        name=spec.name,
        source_injection=source.injection,
        protocol_inferred=d.inferred,
    )

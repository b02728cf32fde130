"""A workload's inbound ports and their protocols, and "to" targets.

The sidecar's inbound listener has one set of filter chains per port the
workload receives on (the container port, i.e. the Service's resolved target
port), built from the Services that select the workload; every other port goes
through the passthrough chains, whose protocol is auto-detected. Mirrors, in our
own code:

* target port resolution: ``pilot/pkg/serviceregistry/kube/controller/util.go``
  ``FindPort`` (a numeric targetPort is used as is; a named one is looked up
  among the containers' port names with the same protocol, no match = the
  Service port gives the pod no target). A missing targetPort is the port
  itself (Kubernetes defaults it so before istiod ever sees the Service);
* ``controller.go`` ``GetProxyServiceTargetsByPod``: per Service, target ports
  deduplicated by (port, protocol), in the Service's port order;
* ``Proxy.SetServiceTargets`` + ``listener_inbound.go``
  ``getFilterChainsByServicePort``: Services in order of creation time, then
  hostname; the first Service port that targets a port decides its protocol,
  the others are conflicts (reported, not used);
* passthrough chains (``buildInboundPassthroughChains``): protocol
  ``UnsupportedProtocol`` = auto-detected.
"""

from __future__ import annotations

import re
import weakref
from typing import Literal

from msgspec import Struct

from meshauthz.mesh.labels import match
from meshauthz.mesh.protocol import (
    Chain,
    ListenerProtocol,
    Protocol,
    chain_for,
    convert_protocol,
    listener_protocol,
)
from meshauthz.mesh.snapshot import LookupFailed, MeshService, MeshSnapshot, MeshWorkload
from meshauthz.resources.k8s import ServicePort


def service_port_protocol(sp: ServicePort) -> Protocol:
    """The protocol istiod gives a Service port (kube ``convertPort``)."""
    return convert_protocol(sp.port, sp.name, sp.protocol, sp.app_protocol or None)


def resolve_target_port(workload: MeshWorkload, sp: ServicePort) -> int | None:
    """``FindPort``: the port on the workload's pods that ``sp`` sends to, or None."""
    tp = sp.target_port
    if tp is None:
        return sp.port
    if isinstance(tp, int):
        return tp
    for cp in workload.ports:
        if cp.name == tp and cp.protocol == sp.protocol:
            return cp.container_port
    return None


class ServiceTarget(Struct, frozen=True):
    service: MeshService
    service_port: ServicePort
    target_port: int
    protocol: Protocol


def service_targets(snapshot: MeshSnapshot, workload: str | MeshWorkload) -> list[ServiceTarget]:
    """The workload's service targets in istiod's order (``SetServiceTargets``)."""
    w = snapshot.workload(workload)
    out: list[ServiceTarget] = []
    for svc in snapshot.services_for(w):
        seen: set[tuple[int, Protocol]] = set()
        for sp in svc.ports:
            tp = resolve_target_port(w, sp)
            if tp is None:
                continue
            proto = service_port_protocol(sp)
            if (tp, proto) in seen:
                continue
            seen.add((tp, proto))
            out.append(ServiceTarget(svc, sp, tp, proto))
    return out


class InboundPort(Struct, frozen=True):
    """How the sidecar treats traffic arriving on ``port`` of the workload."""

    port: int
    protocol: Protocol
    listener: ListenerProtocol  # "http", "tcp" or "auto" (both chains; traffic decides)
    target: ServiceTarget | None  # None: not declared by any Service (passthrough)
    conflicts: tuple[ServiceTarget, ...] = ()  # later Service ports on the same port

    @property
    def passthrough(self) -> bool:
        return self.target is None

    @property
    def service(self) -> MeshService | None:
        return self.target.service if self.target else None

    def chain(self, *, http_request: bool) -> Chain:
        """The filter chain a connection takes (see ``protocol.chain_for``)."""
        return chain_for(self.listener, http_request=http_request)


# Per snapshot, per workload: its inbound ports, with the Service list they were
# computed from (a list that changed since is read again). Every request to a
# workload asks for them.
_INBOUND: weakref.WeakKeyDictionary[
    MeshSnapshot,
    tuple[list[MeshService], int, dict[MeshWorkload, tuple[InboundPort, ...]]],
] = weakref.WeakKeyDictionary()


def inbound_ports(snapshot: MeshSnapshot, workload: str | MeshWorkload) -> list[InboundPort]:
    """The ports with their own inbound chains, by port number."""
    w = snapshot.workload(workload)
    services = snapshot.services
    hit = _INBOUND.get(snapshot)
    if hit is None or hit[0] is not services or hit[1] != len(services):
        hit = _INBOUND[snapshot] = (services, len(services), {})
    ports = hit[2].get(w)
    if ports is None:
        ports = hit[2][w] = tuple(_inbound_ports(snapshot, w))
    return list(ports)


def _inbound_ports(snapshot: MeshSnapshot, workload: MeshWorkload) -> list[InboundPort]:
    by_port: dict[int, list[ServiceTarget]] = {}
    for t in service_targets(snapshot, workload):
        by_port.setdefault(t.target_port, []).append(t)
    out = []
    for port in sorted(by_port):
        first, *rest = by_port[port]
        out.append(
            InboundPort(port, first.protocol, listener_protocol(first.protocol), first, tuple(rest))
        )
    return out


def inbound_port(snapshot: MeshSnapshot, workload: str | MeshWorkload, port: int) -> InboundPort:
    """How ``port`` of the workload is treated; an undeclared port is passthrough
    (protocol auto-detected)."""
    for ip in inbound_ports(snapshot, workload):
        if ip.port == port:
            return ip
    return InboundPort(port, Protocol.UNSUPPORTED, "auto", None)


# --------------------------------------------------------------------------- "to" targets

_PORT_RE = re.compile(r"^(?P<ref>[^:]+)(?::(?P<port>\d+))?$")


class Target(Struct, frozen=True):
    """A resolved destination: the workload, the port it receives on, and how.

    ``via`` is "workload" (``ns/name`` named a workload; the port is the
    workload's own port) or "service" (a Service; the port was a Service port,
    mapped to its target port). ``port`` is None when none was given and none
    could be implied.
    """

    workload: MeshWorkload
    port: int | None
    via: Literal["workload", "service"]
    service: MeshService | None = None
    service_port: ServicePort | None = None
    # A ServiceEntry host named the destination: the Host a client sends, with
    # the ServiceEntry port's number.
    host: str = ""
    host_port: int | None = None

    def inbound(self, snapshot: MeshSnapshot) -> InboundPort | None:
        return inbound_port(snapshot, self.workload, self.port) if self.port is not None else None


def resolve_target(snapshot: MeshSnapshot, ref: str) -> Target:
    """The one destination ``ref`` names (``resolve_targets``); a Service that
    selects several workloads is an error (LookupFailed, code "ambiguous")."""
    targets = resolve_targets(snapshot, ref)
    if len(targets) > 1:
        svc = targets[0].service
        assert svc is not None
        names = ", ".join(t.workload.key for t in targets)
        raise LookupFailed(
            f"service {svc.key} selects several workloads ({names}); name one", code="ambiguous"
        )
    return targets[0]


def resolve_targets(snapshot: MeshSnapshot, ref: str) -> list[Target]:
    """Resolve a destination written as ``ns/name[:port]`` or ``<svc>.<ns>.svc.<suffix>[:port]``.

    Rules (ours, documented):

    1. A hostname (no "/") names a Service, else a host of a ServiceEntry
       with a workloadSelector (its port, mapped to its targetPort).
    2. ``ns/name`` with a port that is a port of a Service ``ns/name``: the
       Service port, mapped to its target port (what ``curl name:port`` reaches).
    3. Otherwise, if a workload ``ns/name`` exists: that workload, the port as
       written (its container port).
    4. Otherwise the Service ``ns/name``.

    A Service resolves to each workload it selects, in the snapshot's order; none
    is an error (LookupFailed, code "not-found"). Without a port, a Service with
    exactly one port implies it. ``ns/name:port`` where ``ns/name`` is both a
    Service without that port and a workload is the workload's port only if the
    workload receives on it (a Service target or a container port); otherwise it
    is an error naming the Service's ports.
    """
    m = _PORT_RE.match(ref.strip())
    if not m:
        raise LookupFailed(f"cannot read target {ref!r}: expected ns/name[:port]", code="not-found")
    name_ref, port_s = m.group("ref"), m.group("port")
    port = int(port_s) if port_s is not None else None

    svc: MeshService | None
    if "/" not in name_ref:
        svc = snapshot.service_by_hostname(name_ref)
        if svc is None:
            by_entry = _via_service_entry(snapshot, name_ref, port)
            if by_entry:
                return by_entry
            raise LookupFailed(f"no service with hostname {name_ref}", code="not-found")
        return _via_service(snapshot, svc, port)
    svc = snapshot.find_service(name_ref)
    if svc is not None and port is not None and svc.port(port) is not None:
        return _via_service(snapshot, svc, port)
    try:
        w = snapshot.workload(name_ref)
    except LookupFailed as e:
        if e.code == "ambiguous":
            raise
    else:
        if svc is None or port is None or port in _receives_on(snapshot, w):
            return [Target(w, port, "workload")]
    if svc is None:
        gateway = _gateway_target(snapshot, name_ref, port)
        if gateway is not None:
            return [gateway]
        ns, _, name = name_ref.partition("/")
        raise LookupFailed(
            f"no workload or service {name_ref}{snapshot.elsewhere(ns, name)}",
            code="not-found",
        )
    return _via_service(snapshot, svc, port)


def _via_service_entry(snapshot: MeshSnapshot, host: str, port: int | None) -> list[Target]:
    """A host of a ServiceEntry with a workloadSelector: the workloads it selects
    in its namespace, on the target port of the ServiceEntry port ``port`` (the
    only one when none is given). A ServiceEntry without a workloadSelector names
    no workload: nothing here."""
    wanted = host.lower().rstrip(".")
    for se in snapshot.service_entries:
        sel = se.spec.workload_selector
        if sel is None or wanted not in (h.lower() for h in se.spec.hosts):
            continue
        ports = se.spec.ports
        chosen = [p for p in ports if p.number == port] if port is not None else list(ports)
        if port is not None and not chosen:
            shown = ", ".join(str(p.number) for p in ports) or "none"
            raise LookupFailed(
                f"service entry {se.key} has no port {port} (ports: {shown})", code="not-found"
            )
        sp = chosen[0] if len(chosen) == 1 else None
        ws = [
            w
            for w in snapshot.workloads
            if w.namespace == se.namespace and match(sel.labels, w.labels)
        ]
        if not ws:
            raise LookupFailed(f"service entry {se.key} selects no workload", code="not-found")
        tp = (sp.target_port or sp.number) if sp is not None else None
        number = sp.number if sp is not None else None
        return [Target(w, tp, "service", host=wanted, host_port=number) for w in ws]
    return []


def _receives_on(snapshot: MeshSnapshot, w: MeshWorkload) -> set[int]:
    """The ports a workload declares: its Service targets and container ports."""
    return {p.port for p in inbound_ports(snapshot, w)} | {cp.container_port for cp in w.ports}


def _gateway_target(snapshot: MeshSnapshot, ref: str, port: int | None) -> Target | None:
    """A Gateway's own name: the pods that implement it (for a managed Gateway API
    Gateway, the deployment istiod creates, ``<name>-<class>``)."""
    ns, _, name = ref.partition("/")
    pods: list[MeshWorkload] = []
    for g in snapshot.gateways:
        if g.namespace == ns and g.name == name:
            pods.extend(w for w in snapshot.gateway_workloads(g) if w not in pods)
    if not pods:
        if any(g.namespace == ns and g.name == name for g in snapshot.gateways):
            raise LookupFailed(
                f"gateway {ref} has no pods in the manifests (an Istio Gateway selects them "
                "by spec.selector; a Gateway API Gateway of an unmanaged class needs its own)",
                code="not-found",
            )
        return None
    if len(pods) > 1:
        names = ", ".join(w.key for w in pods)
        raise LookupFailed(
            f"gateway {ref} has several workloads ({names}); name one", code="ambiguous"
        )
    return Target(pods[0], port, "workload")


def _via_service(snapshot: MeshSnapshot, svc: MeshService, port: int | None) -> list[Target]:
    ws = snapshot.workloads_for(svc)
    if not ws:
        raise LookupFailed(f"service {svc.key} selects no workload", code="not-found")
    return [_service_target(svc, w, port) for w in ws]


def _service_target(svc: MeshService, w: MeshWorkload, port: int | None) -> Target:
    sp: ServicePort | None
    if port is None:
        if len(svc.ports) != 1:
            return Target(w, None, "service", svc, None)
        sp = svc.ports[0]
    else:
        sp = svc.port(port)
        if sp is None:
            shown = ", ".join(str(p.port) for p in svc.ports) or "none"
            raise LookupFailed(
                f"service {svc.key} has no port {port} (ports: {shown})", code="not-found"
            )
    tp = resolve_target_port(w, sp)
    if tp is None:
        raise LookupFailed(
            f"service {svc.key} port {sp.port} targets {sp.target_port!r}, "
            f"which no container of {w.key} declares",
            code="not-found",
        )
    return Target(w, tp, "service", svc, sp)


__all__ = [
    "InboundPort",
    "ServiceTarget",
    "Target",
    "inbound_port",
    "inbound_ports",
    "resolve_target",
    "resolve_target_port",
    "resolve_targets",
    "service_port_protocol",
    "service_targets",
]

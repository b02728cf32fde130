"""Effective mutual-TLS mode of a workload and port, as istiod composes it.

Mirrors, in our own code, ``pilot/pkg/security/authn/policy_applier.go``
``ComposePeerAuthentication`` and ``GetMutualTLSModeForPort``, fed by the
PeerAuthentications ``getConfigsForWorkload`` selects
(``pilot/pkg/model/authentication.go``):

* scopes: mesh (root namespace, no or empty selector), namespace (other
  namespace, no or empty selector), workload (a selector with labels, not in the
  root namespace; one with a selector in the root namespace is ignored);
* within a scope the oldest policy wins (strictly older creation time; on a tie
  the first in store order, i.e. by name then namespace);
* resolution mesh → namespace → workload: an UNSET (or absent) ``mtls`` inherits
  the parent's mode; with nothing set at all the mode is PERMISSIVE;
* ``portLevelMtls`` of the workload policy (keys are the ports the workload
  receives on, i.e. container/target ports) override per port; an UNSET port
  mode inherits the workload's resolved mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from msgspec import Struct, field

from meshauthz.mesh.selection import PolicyMatcher, list_policies, peer_authentication_store
from meshauthz.mesh.snapshot import MeshSnapshot, MeshWorkload, creation_time
from meshauthz.resources.istio import MutualTls
from meshauthz.resources.objects import PeerAuthentication

MtlsMode = Literal["DISABLE", "PERMISSIVE", "STRICT"]


def _unset(mtls: MutualTls | None) -> bool:
    return mtls is None or mtls.mode == "UNSET"


def _mode(mtls: MutualTls | None) -> MtlsMode:
    assert mtls is not None and mtls.mode != "UNSET"
    return mtls.mode


class EffectiveMtls(Struct, frozen=True):
    """MergedPeerAuthentication, with the policies that decided it."""

    mode: MtlsMode
    per_port: Mapping[int, MtlsMode] = field(default_factory=dict)
    mesh_policy: PeerAuthentication | None = None
    namespace_policy: PeerAuthentication | None = None
    workload_policy: PeerAuthentication | None = None
    # Selected but without effect, with why.
    ignored: tuple[tuple[PeerAuthentication, str], ...] = ()

    def mode_for_port(self, port: int) -> MtlsMode:
        """``GetMutualTLSModeForPort``: the port-level mode, else the workload's."""
        return self.per_port.get(port, self.mode)

    def source_for_port(self, port: int) -> PeerAuthentication | None:
        """The policy whose setting gives the port's mode (None: the PERMISSIVE default)."""
        if self.workload_policy is not None:
            pl = self.workload_policy.spec.port_level_mtls.get(str(port))
            if pl is not None and not _unset(pl):
                return self.workload_policy
        for p in (self.workload_policy, self.namespace_policy, self.mesh_policy):
            if p is not None and not _unset(p.spec.mtls):
                return p
        return None


def compose_peer_authentication(
    root_namespace: str, configs: Sequence[PeerAuthentication]
) -> EffectiveMtls:
    """``ComposePeerAuthentication`` over the applicable policies (in the order given)."""
    mesh: PeerAuthentication | None = None
    ns: PeerAuthentication | None = None
    wl: PeerAuthentication | None = None
    ignored: list[tuple[PeerAuthentication, str]] = []

    def older(a: PeerAuthentication, b: PeerAuthentication | None) -> bool:
        return b is None or creation_time(a) < creation_time(b)

    for cfg in configs:
        sel = cfg.spec.selector
        if sel is None or not sel.match_labels:
            if cfg.namespace == root_namespace:
                if older(cfg, mesh):
                    if mesh is not None:
                        ignored.append((mesh, "an older mesh-level PeerAuthentication wins"))
                    mesh = cfg
                else:
                    ignored.append((cfg, "an older mesh-level PeerAuthentication wins"))
            elif older(cfg, ns):
                if ns is not None:
                    ignored.append((ns, "an older namespace-level PeerAuthentication wins"))
                ns = cfg
            else:
                ignored.append((cfg, "an older namespace-level PeerAuthentication wins"))
        elif cfg.namespace != root_namespace:
            if older(cfg, wl):
                if wl is not None:
                    ignored.append((wl, "an older workload-level PeerAuthentication wins"))
                wl = cfg
            else:
                ignored.append((cfg, "an older workload-level PeerAuthentication wins"))
        else:
            ignored.append(
                (cfg, "a PeerAuthentication with a selector in the root namespace has no effect")
            )

    mode: MtlsMode = "PERMISSIVE"
    for p in (mesh, ns, wl):
        if p is not None and p.spec.mtls is not None and not _unset(p.spec.mtls):
            mode = _mode(p.spec.mtls)
    per_port: dict[int, MtlsMode] = {}
    if wl is not None:
        for key, m in wl.spec.port_level_mtls.items():
            try:
                port = int(key)
            except ValueError:
                continue
            per_port[port] = mode if _unset(m) else _mode(m)
    return EffectiveMtls(mode, per_port, mesh, ns, wl, tuple(ignored))


def effective_mtls(snapshot: MeshSnapshot, workload: str | MeshWorkload) -> EffectiveMtls:
    """The workload's composed PeerAuthentication (``NewMtlsPolicy``)."""
    w = snapshot.workload(workload)
    selected = list_policies(
        snapshot,
        PolicyMatcher.for_workload(w, root_namespace=snapshot.root_namespace),
        "PeerAuthentication",
    )
    policies = [s.policy for s in selected if isinstance(s.policy, PeerAuthentication)]
    return compose_peer_authentication(snapshot.root_namespace, policies)


def effective_mtls_mode(
    snapshot: MeshSnapshot, workload: str | MeshWorkload, port: int
) -> MtlsMode:
    """The mTLS mode the workload's sidecar enforces on inbound ``port`` (the port
    it receives on: the container/target port)."""
    return effective_mtls(snapshot, workload).mode_for_port(port)


def listener_mtls_mode(snapshot: MeshSnapshot, workload: MeshWorkload, port: int) -> MtlsMode:
    """The mTLS mode the workload's proxy enforces on ``port``: its sidecar's
    (``effective_mtls_mode``); a gateway's listeners take their TLS from its
    Gateway servers alone, never from PeerAuthentication (gateway.go), so what
    the caller presents reaches it (tests/decide/test_gateway_mtls.py: Istio's
    pqc TestIngress)."""
    if workload.proxy == "gateway":
        return "PERMISSIVE"
    return effective_mtls_mode(snapshot, workload, port)


def namespace_mtls_mode(snapshot: MeshSnapshot, namespace: str) -> MtlsMode | None:
    """``GetNamespaceMutualTLSMode``: the namespace-level mode (UNSET inheriting the
    mesh-level one, or PERMISSIVE), else the mesh-level mode, else None (unknown)."""
    root = snapshot.root_namespace
    global_mode: MtlsMode | None = None
    ns_spec: MutualTls | None = None
    ns_found = False
    for pa in peer_authentication_store(snapshot):
        sel = pa.spec.selector
        if sel is not None and sel.match_labels:
            continue
        if pa.namespace == root:
            global_mode = "PERMISSIVE" if _unset(pa.spec.mtls) else _mode(pa.spec.mtls)
        elif pa.namespace == namespace:
            ns_found, ns_spec = True, pa.spec.mtls
    if ns_found and namespace != root:
        if _unset(ns_spec):
            return global_mode or "PERMISSIVE"
        return _mode(ns_spec)
    return global_mode


__all__ = [
    "EffectiveMtls",
    "MtlsMode",
    "compose_peer_authentication",
    "effective_mtls",
    "effective_mtls_mode",
    "listener_mtls_mode",
    "namespace_mtls_mode",
]

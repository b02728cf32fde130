"""The mesh snapshot and policy selection, as istiod sees them.

Built from loaded manifests (``meshauthz.resources``) only:

* ``snapshot``: namespaces, workloads (with identities and addresses),
  services, gateways; lookups;
* ``selection``: which AuthorizationPolicy / RequestAuthentication /
  PeerAuthentication apply to a workload, why, and in istiod's order;
* ``peerauthn``: the effective mTLS mode per workload port;
* ``ports`` and ``protocol``: inbound ports, their protocols and filter chains,
  and "to" targets;
* ``injection``: which workloads the sidecar injector gives an Envoy.
"""

from meshauthz.mesh.injection import Injection, injection
from meshauthz.mesh.peerauthn import (
    EffectiveMtls,
    MtlsMode,
    compose_peer_authentication,
    effective_mtls,
    effective_mtls_mode,
    listener_mtls_mode,
    namespace_mtls_mode,
)
from meshauthz.mesh.ports import (
    InboundPort,
    ServiceTarget,
    Target,
    inbound_port,
    inbound_ports,
    resolve_target,
    resolve_target_port,
    resolve_targets,
    service_port_protocol,
    service_targets,
)
from meshauthz.mesh.protocol import (
    Chain,
    ListenerProtocol,
    Protocol,
    chain_for,
    convert_protocol,
    listener_protocol,
    parse_protocol,
)
from meshauthz.mesh.selection import (
    ByAction,
    PolicyKind,
    PolicyMatcher,
    SelectedPolicy,
    SelectionReason,
    ServiceRef,
    by_action,
    list_policies,
    select_policies,
    should_attach,
)
from meshauthz.mesh.snapshot import (
    Identity,
    LookupFailed,
    MeshNamespace,
    MeshService,
    MeshSnapshot,
    MeshWorkload,
    build_snapshot,
)

__all__ = [
    "ByAction",
    "Chain",
    "EffectiveMtls",
    "Identity",
    "InboundPort",
    "Injection",
    "ListenerProtocol",
    "LookupFailed",
    "MeshNamespace",
    "MeshService",
    "MeshSnapshot",
    "MeshWorkload",
    "MtlsMode",
    "PolicyKind",
    "PolicyMatcher",
    "Protocol",
    "SelectedPolicy",
    "SelectionReason",
    "ServiceRef",
    "ServiceTarget",
    "Target",
    "build_snapshot",
    "by_action",
    "chain_for",
    "compose_peer_authentication",
    "convert_protocol",
    "effective_mtls",
    "effective_mtls_mode",
    "inbound_port",
    "inbound_ports",
    "injection",
    "list_policies",
    "listener_mtls_mode",
    "listener_protocol",
    "namespace_mtls_mode",
    "parse_protocol",
    "resolve_target",
    "resolve_target_port",
    "resolve_targets",
    "select_policies",
    "service_port_protocol",
    "service_targets",
    "should_attach",
]

"""What istiod sends to ztunnel for a mesh, and what ztunnel holds for one
workload (pilot/pkg/serviceregistry/ambient/policies.go ``PolicyCollections``,
workloads.go ``buildWorkloadPolicies`` and ``implicitWaypointPolicies``).
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from meshauthz.ambient.authorization import Authorization
from meshauthz.ambient.convert import (
    Conversion,
    convert_authorization_policy,
    convert_peer_authentication,
    converted_selector_peer_authentications,
    implicit_waypoint_policy,
    static_strict_policy,
)
from meshauthz.ambient.flags import DEFAULT_FLAGS, AmbientFlags
from meshauthz.ambient.store import PolicyStore
from meshauthz.ambient.topology import (
    Binding,
    Enrollment,
    Waypoint,
    enrollment,
    service_waypoint,
    waypoints,
    workload_waypoint,
)
from meshauthz.mesh.labels import subset_of
from meshauthz.mesh.snapshot import MeshSnapshot, MeshWorkload, creation_time
from meshauthz.resources.objects import AuthorizationPolicy, PeerAuthentication


class IstiodAmbient(Struct):
    """Everything istiod sends to ztunnels, with each AuthorizationPolicy's conversion."""

    store: PolicyStore
    conversions: list[tuple[AuthorizationPolicy, Conversion]] = []
    _by_key: dict[str, AuthorizationPolicy] | None = None

    def source_policy(self, key: str) -> AuthorizationPolicy | None:
        """The AuthorizationPolicy a ztunnel policy key was converted from."""
        if self._by_key is None:
            self._by_key = {
                c.authorization.key: p for p, c in self.conversions if c.authorization is not None
            }
        return self._by_key.get(key)

    def conversion(self, policy: AuthorizationPolicy) -> Conversion | None:
        for p, c in self.conversions:
            if p is policy:
                return c
        return None


def _oldest(pas: list[PeerAuthentication]) -> PeerAuthentication | None:
    return min(pas, key=creation_time) if pas else None


def istiod_ambient(snapshot: MeshSnapshot, flags: AmbientFlags = DEFAULT_FLAGS) -> IstiodAmbient:
    root = snapshot.root_namespace
    out = IstiodAmbient(PolicyStore())
    for ap in snapshot.authorization_policies:
        conv = convert_authorization_policy(root, ap, flags)
        out.conversions.append((ap, conv))
        if conv.authorization is not None:
            out.store.insert(conv.authorization)
    pas = snapshot.peer_authentications
    by_ns: dict[str, list[PeerAuthentication]] = {}
    for pa in pas:
        if pa.spec.selector is None:
            by_ns.setdefault(pa.namespace, []).append(pa)
    for pa in pas:
        converted = convert_peer_authentication(
            root, pa, _oldest(by_ns.get(pa.namespace, [])), _oldest(by_ns.get(root, []))
        )
        if converted is not None:
            out.store.insert(converted)
    if pas:
        out.store.insert(static_strict_policy(root))
    if flags.auto_allow_waypoint:
        td = snapshot.trust_domain
        for wp in waypoints(snapshot).values():
            if wp.ready and wp.service_accounts:
                principals = [f"{td}/ns/{wp.namespace}/sa/{sa}" for sa in wp.service_accounts]
                out.store.insert(implicit_waypoint_policy(wp.namespace, wp.name, principals))
    return out


class ZtunnelWorkload(Struct):
    """What the destination's ztunnel holds for one workload."""

    workload: MeshWorkload
    enrollment: Enrollment
    waypoint: Binding
    workload_policies: list[str]  # the Workload's authorizationPolicies
    policies: list[Authorization]  # namespace, global, then the listed ones
    istiod: IstiodAmbient
    trust_domain: str
    domain_suffix: str

    def dump(self) -> dict[str, Any]:
        """ztunnel's config dump (``/config_dump``) restricted to this workload:
        its ``workloads`` entry and the ``policies`` that apply to it."""
        w = self.workload
        entry: dict[str, Any] = {
            "uid": f"Kubernetes//{w.kind}/{w.namespace}/{w.name}",
            "workloadIps": [w.address],
        }
        wp = self.waypoint.waypoint
        if wp is not None:
            host = f"{wp.name}.{wp.namespace}.svc.{self.domain_suffix}"
            entry["waypoint"] = {"destination": f"{wp.namespace}/{host}", "hboneMtlsPort": 15008}
        entry.update(
            {
                "protocol": "HBONE" if self.enrollment.mode == "ambient" else "TCP",
                "name": w.name,
                "namespace": w.namespace,
                "trustDomain": self.trust_domain,
                "serviceAccount": w.service_account,
                "workloadName": w.name,
                "workloadType": w.kind.lower(),
            }
        )
        if self.workload_policies:
            entry["authorizationPolicies"] = list(self.workload_policies)
        entry["status"] = "Healthy"
        entry["clusterId"] = "Kubernetes"
        return {"workloads": [entry], "policies": [p.dump() for p in self.policies]}


def _peer_authentications_for(snapshot: MeshSnapshot, w: MeshWorkload) -> list[PeerAuthentication]:
    """workloads.go ``fetchPeerAuthentications``."""
    root = snapshot.root_namespace
    out = [
        pa
        for pa in snapshot.peer_authentications
        if pa.namespace == w.namespace
        and (pa.spec.selector is None or subset_of(pa.spec.selector.match_labels, w.labels))
    ]
    if w.namespace != root:
        out += [
            pa
            for pa in snapshot.peer_authentications
            if pa.namespace == root and pa.spec.selector is None
        ]
    return out


def ztunnel_workload(
    snapshot: MeshSnapshot,
    workload: str | MeshWorkload,
    flags: AmbientFlags = DEFAULT_FLAGS,
    istiod: IstiodAmbient | None = None,
) -> ZtunnelWorkload:
    w = snapshot.workload(workload)
    istiod = istiod or istiod_ambient(snapshot, flags)
    root = snapshot.root_namespace
    # buildWorkloadPolicies: selector policies (an empty selector has no label
    # map and attaches nowhere) of the root or the workload's namespace.
    selected = sorted(
        conv.authorization.key
        for ap, conv in istiod.conversions
        if conv.authorization is not None
        and ap.spec.selector is not None
        and ap.spec.selector.match_labels
        and ap.namespace in (root, w.namespace)
        and subset_of(ap.spec.selector.match_labels, w.labels)
    )
    keys = selected + converted_selector_peer_authentications(
        root, _peer_authentications_for(snapshot, w)
    )
    binding = workload_waypoint(snapshot, w)
    if flags.auto_allow_waypoint:
        # implicitWaypointPolicies: its Services' waypoints, then its own.
        wps: list[Waypoint] = []
        for svc in snapshot.services_for(w):
            sw = service_waypoint(snapshot, svc).waypoint
            if sw is not None and sw is not binding.waypoint and all(sw is not x for x in wps):
                wps.append(sw)
        if binding.waypoint is not None:
            wps.append(binding.waypoint)
        for wp in wps:
            k = f"{wp.namespace}/istio_allow_waypoint_{wp.namespace}_{wp.name}"
            if k in istiod.store.by_key and k not in keys:
                keys.append(k)
    return ZtunnelWorkload(
        workload=w,
        enrollment=enrollment(snapshot, w),
        waypoint=binding,
        workload_policies=keys,
        policies=istiod.store.for_workload(w.namespace, keys),
        istiod=istiod,
        trust_domain=snapshot.trust_domain,
        domain_suffix=snapshot.domain_suffix,
    )


__all__ = ["IstiodAmbient", "ZtunnelWorkload", "istiod_ambient", "ztunnel_workload"]

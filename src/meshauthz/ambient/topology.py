"""Ambient topology: which workloads ztunnel captures, which waypoints exist,
and which waypoint a Service or workload uses.

* Capture (istio-cni, cni/pkg/util/podutil.go and the ambient enablement
  selectors): a pod with a sidecar is never captured; otherwise the pod label
  ``istio.io/dataplane-mode`` decides (``ambient``, or ``none`` to opt out),
  else the namespace label. Whether a pod has a sidecar is the injector's
  decision (``mesh/injection.py``): a label that injects wins over capture; an
  injection that is only assumed (no label enables it) yields to an ambient
  label; a pod neither injected nor captured is outside the mesh.
* Waypoints (waypoints.go ``gatewayToWaypointTransform``): Gateway API
  Gateways; ``istio.io/waypoint-for`` on the Gateway (service by default);
  allowed namespaces from the HBONE listener's ``allowedRoutes`` (Same by
  default). A Gateway is a waypoint only once ``status.addresses`` is set;
  a manifest as applied has no ``status`` and is taken as ready, a ``status``
  without addresses as not ready.
* Binding (``fetchWaypointForTarget``, ``GetUseWaypoint``): the object's
  ``istio.io/use-waypoint`` (``none`` opts out), else its namespace's; the
  waypoint's namespace from ``istio.io/use-waypoint-namespace`` next to it,
  else the object's namespace. Services and ServiceEntries need a waypoint for ``service`` or
  ``all`` traffic, workloads one for ``workload`` or ``all``.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, Literal

from msgspec import Struct

from meshauthz.mesh.injection import DATAPLANE_MODE_LABEL, Why
from meshauthz.mesh.snapshot import (
    GATEWAY_NAME_LABEL,
    MeshService,
    MeshSnapshot,
    MeshWorkload,
)
from meshauthz.resources.objects import Gateway, ServiceEntry

USE_WAYPOINT_LABEL = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE_LABEL = "istio.io/use-waypoint-namespace"
WAYPOINT_FOR_LABEL = "istio.io/waypoint-for"
INGRESS_USE_WAYPOINT_LABEL = "istio.io/ingress-use-waypoint"
SIDECAR_STATUS_ANNOTATION = "sidecar.istio.io/status"
HBONE_PORT = 15008

Mode = Literal["ambient", "sidecar", "none", "waypoint", "gateway"]
TrafficType = Literal["service", "workload", "all", "none"]


class Enrollment(Struct, frozen=True):
    mode: Mode
    reason: str


def _pod_annotations(w: MeshWorkload) -> Mapping[str, str]:
    return w.resource.pod_annotations if w.resource is not None else {}


_ENROLLMENT: weakref.WeakKeyDictionary[MeshSnapshot, dict[int, Enrollment]] = (
    weakref.WeakKeyDictionary()
)


def enrollment(snapshot: MeshSnapshot, w: MeshWorkload) -> Enrollment:
    """How the workload's traffic is handled: by its own proxy (sidecar,
    gateway, waypoint), by ztunnel (ambient) or by nothing (none)."""
    known = _ENROLLMENT.setdefault(snapshot, {})
    hit = known.get(id(w))
    if hit is None:
        hit = known[id(w)] = _enrollment(snapshot, w)
    return hit


def _enrollment(snapshot: MeshSnapshot, w: MeshWorkload) -> Enrollment:
    if w.proxy in ("waypoint", "gateway"):
        return Enrollment(w.proxy, f"{w.key} is a {w.proxy} proxy")
    if SIDECAR_STATUS_ANNOTATION in _pod_annotations(w):
        return Enrollment("sidecar", f"the pod has a sidecar ({SIDECAR_STATUS_ANNOTATION})")
    # Sidecar injection as the injector decides it (mesh/injection.py): a label
    # that injects beats ambient capture (istio-cni skips pods with a sidecar).
    inj = w.injection
    if inj is not None and inj.injected and inj.why in (Why.NAMESPACE_LABEL, Why.POD_LABEL):
        why = (
            f"namespace {w.namespace} is labelled {inj.key}={inj.value} for sidecar injection"
            if inj.why is Why.NAMESPACE_LABEL
            else f"pod label {inj.key}={inj.value} injects a sidecar"
        )
        return Enrollment("sidecar", why)
    pod_mode = w.labels.get(DATAPLANE_MODE_LABEL)
    ns = snapshot.namespace(w.namespace)
    ns_mode = ns.labels.get(DATAPLANE_MODE_LABEL) if ns is not None else None
    if w.resource is None or not w.resource.host_network:  # never captured
        if pod_mode == "ambient":
            return Enrollment("ambient", f"pod label {DATAPLANE_MODE_LABEL}=ambient")
        if pod_mode != "none" and ns_mode == "ambient":
            return Enrollment(
                "ambient", f"namespace {w.namespace} has {DATAPLANE_MODE_LABEL}=ambient"
            )
    if w.has_proxy:
        # injection assumed (no label says otherwise): the historical default
        return Enrollment("sidecar", "no ambient or injection label: assumed to have a sidecar")
    return Enrollment("none", "it has no sidecar and ztunnel does not capture it")


# --------------------------------------------------------------------------- waypoints


class Waypoint(Struct, frozen=True, eq=False):
    gateway: Gateway
    traffic_type: str
    allowed_from: str  # All | Same | Selector
    allowed_selector: Mapping[str, str]
    ready: bool
    workloads: tuple[MeshWorkload, ...]

    @property
    def name(self) -> str:
        return self.gateway.name

    @property
    def namespace(self) -> str:
        return self.gateway.namespace

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def service_accounts(self) -> tuple[str, ...]:
        return tuple(sorted({w.service_account for w in self.workloads}))

    def allows_namespace(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """``AllowsAttachmentFromNamespace``."""
        if self.allowed_from == "All":
            return True
        if self.allowed_from == "Selector":
            return all(labels.get(k) == v for k, v in self.allowed_selector.items())
        return namespace == self.namespace


def _allowed_routes(spec: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """``makeAllowedRoutes`` with the default HBONE listener (no inbound binding)."""

    def obj(value: Any) -> Mapping[str, Any]:
        return value if isinstance(value, dict) else {}

    listeners = spec.get("listeners")
    for listener in listeners if isinstance(listeners, list) else []:
        listener = obj(listener)
        if listener.get("protocol") == "HBONE" and listener.get("port") == HBONE_PORT:
            ns = obj(obj(listener.get("allowedRoutes")).get("namespaces"))
            sel = obj(obj(ns.get("selector")).get("matchLabels"))
            return str(ns.get("from") or "Same"), {str(k): str(v) for k, v in sel.items()}
    return "Same", {}


_WAYPOINTS: weakref.WeakKeyDictionary[MeshSnapshot, dict[str, Waypoint]] = (
    weakref.WeakKeyDictionary()
)


def waypoints(snapshot: MeshSnapshot) -> dict[str, Waypoint]:
    """Every Gateway API Gateway as istiod's Waypoints collection holds it (computed
    once per snapshot: a snapshot does not change)."""
    hit = _WAYPOINTS.get(snapshot)
    if hit is None:
        hit = _WAYPOINTS[snapshot] = _waypoints(snapshot)
    return hit


def _waypoints(snapshot: MeshSnapshot) -> dict[str, Waypoint]:
    out: dict[str, Waypoint] = {}
    for g in snapshot.gateways:
        if g.flavor != "gateway-api":
            continue
        raw = g.written()
        status = raw.get("status")
        ready = status is None or bool(isinstance(status, dict) and status.get("addresses"))
        spec = raw.get("spec")
        allowed_from, selector = _allowed_routes(spec if isinstance(spec, dict) else {})
        pods = tuple(
            w
            for w in snapshot.workloads
            if w.namespace == g.namespace and w.labels.get(GATEWAY_NAME_LABEL) == g.name
        )
        out[f"{g.namespace}/{g.name}"] = Waypoint(
            gateway=g,
            traffic_type=g.labels.get(WAYPOINT_FOR_LABEL, "service"),
            allowed_from=allowed_from,
            allowed_selector=selector,
            ready=ready,
            workloads=pods,
        )
    return out


class Binding(Struct, frozen=True):
    """Which waypoint traffic to a Service or workload goes through."""

    waypoint: Waypoint | None
    reason: str  # why (the label that binds or opts out), "" when nothing does
    # istiod's status when a binding is written but does not take (status.go).
    problem_reason: str = ""
    problem: str = ""


def use_waypoint(labels: Mapping[str, str], default_namespace: str) -> tuple[str | None, bool]:
    """``GetUseWaypoint``: ("ns/name" or None, whether the value is ``none``)."""
    if USE_WAYPOINT_LABEL not in labels:
        return None, False
    value = labels[USE_WAYPOINT_LABEL]
    if value == "none":
        return None, True
    ns = labels.get(USE_WAYPOINT_NAMESPACE_LABEL, default_namespace)
    return f"{ns}/{value}", False


def _for_target(
    snapshot: MeshSnapshot,
    all_waypoints: Mapping[str, Waypoint],
    what: str,
    namespace: str,
    labels: Mapping[str, str],
) -> tuple[Binding, bool]:
    """``fetchWaypointForTarget``; also whether the object itself carries the label."""
    ns = snapshot.namespace(namespace)
    ns_labels = ns.labels if ns is not None else {}
    ref, none = use_waypoint(labels, namespace)
    if none:
        return Binding(None, f"{what} has {USE_WAYPOINT_LABEL}=none"), True
    source = f"{what} has {USE_WAYPOINT_LABEL}"
    own = ref is not None
    if ref is None:
        ref, _ = use_waypoint(ns_labels, namespace)
        source = f"namespace {namespace} has {USE_WAYPOINT_LABEL}"
        if ref is None:
            return Binding(None, ""), False
    wp = all_waypoints.get(ref)
    if wp is None or not wp.ready:
        return Binding(None, source, "WaypointIsNotReady", f'waypoint "{ref}" is not ready'), own
    if not wp.allows_namespace(namespace, ns_labels):
        return (
            Binding(
                None,
                source,
                "AttachmentDenied",
                f'we are not permitted to attach to waypoint "{ref}" (missing allowedRoutes?)',
            ),
            own,
        )
    return Binding(wp, f"{source}={wp.name}"), own


def service_waypoint(snapshot: MeshSnapshot, svc: MeshService | ServiceEntry) -> Binding:
    """``fetchWaypointForService``, for a Service or a ServiceEntry alike
    (services.go reads both through it)."""
    labels = svc.labels if isinstance(svc, ServiceEntry) else svc.resource.labels
    if labels.get("gateway.istio.io/managed") in (
        "istio.io-mesh-controller",
        "istio.io-eastwest-controller",
    ):
        return Binding(None, "")
    what = f"{'ServiceEntry' if isinstance(svc, ServiceEntry) else 'Service'} {svc.key}"
    binding, _ = _for_target(snapshot, waypoints(snapshot), what, svc.namespace, labels)
    wp = binding.waypoint
    if wp is not None and wp.traffic_type not in ("service", "all"):
        return Binding(
            None,
            binding.reason,
            "UnsupportedTrafficType",
            f'attempting to bind to traffic type "service" which the waypoint "{wp.key}" does not support',
        )
    return binding


def ingress_uses_waypoint(snapshot: MeshSnapshot, svc: MeshService | ServiceEntry) -> bool:
    """services.go ``ingressUseWaypointFromLabels``: the Service's
    ``istio.io/ingress-use-waypoint``, else its namespace's, read as a Go boolean;
    without it an ingress gateway calls the Service's endpoints directly."""
    labels = svc.labels if isinstance(svc, ServiceEntry) else svc.resource.labels
    if INGRESS_USE_WAYPOINT_LABEL not in labels:
        ns = snapshot.namespace(svc.namespace)
        labels = dict(ns.labels) if ns is not None else {}
    value = labels.get(INGRESS_USE_WAYPOINT_LABEL)
    return value in ("1", "t", "T", "TRUE", "true", "True")


def workload_waypoint(snapshot: MeshSnapshot, w: MeshWorkload) -> Binding:
    """``fetchWaypointForWorkload``: a namespace-inherited binding to a waypoint
    that is not for workloads is silently no binding."""
    binding, own = _for_target(
        snapshot, waypoints(snapshot), f"workload {w.key}", w.namespace, w.labels
    )
    wp = binding.waypoint
    if wp is not None and wp.traffic_type not in ("workload", "all"):
        if not own:
            return Binding(None, "")
        return Binding(
            None,
            binding.reason,
            "UnsupportedTrafficType",
            f'attempting to bind to traffic type "workload" which the waypoint "{wp.key}" does not support',
        )
    return binding


__all__ = [
    "DATAPLANE_MODE_LABEL",
    "USE_WAYPOINT_LABEL",
    "USE_WAYPOINT_NAMESPACE_LABEL",
    "WAYPOINT_FOR_LABEL",
    "Binding",
    "Enrollment",
    "Mode",
    "Waypoint",
    "enrollment",
    "ingress_uses_waypoint",
    "service_waypoint",
    "use_waypoint",
    "waypoints",
    "workload_waypoint",
]

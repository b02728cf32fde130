"""The checks Istio and Kiali make for ambient mode, plus two of ours, as a
library (``ambient_findings``) for the commands that report findings.

* ``IST0171`` (istioctl analyze NegativeConditionStatus, analyzers/conditions/
  conditions.go): istiod's ``ZtunnelAccepted`` condition is false (AUDIT, CUSTOM,
  dry-run without the flag), or ``WaypointAccepted`` is false or PartiallyInvalid.
* ``IST0166`` (IneffectiveSelector, pkg/config/analysis/analyzers/k8sgateway/
  workloadselector.go): a selector policy matching the pods of a Gateway API
  gateway or waypoint; their proxies take only targetRefs policies.
* ``KIA0109`` / ``KIA0110`` (Kiali business/checkers/ambient_policy_checker.go):
  an L7 AuthorizationPolicy in an ambient namespace whose target is not enrolled
  in a waypoint / that has no targetRefs. Which fields are L7 is istiod's list
  (what it drops for ztunnel: convert.py), which is wider than Kiali's.
* ``ambient-waypoint-identity`` (ours): a selector or namespace ALLOW at a
  workload that traffic reaches through a waypoint, none of whose rules admits
  the waypoint's identity: ztunnel sees the waypoint, not the client.
* ``ambient-deny-no-op`` (ours): a DENY that istiod sends to ztunnel with no
  rule that can match once its HTTP fields are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from msgspec import Struct

from meshauthz.ambient.flags import DEFAULT_FLAGS, AmbientFlags
from meshauthz.ambient.topology import (
    DATAPLANE_MODE_LABEL,
    USE_WAYPOINT_LABEL,
    enrollment,
    service_waypoint,
)
from meshauthz.mesh.labels import subset_of
from meshauthz.mesh.ports import resolve_target_port
from meshauthz.mesh.selection import target_refs
from meshauthz.mesh.snapshot import GATEWAY_NAME_LABEL, MeshSnapshot, MeshWorkload
from meshauthz.resources.findings import Finding, Severity
from meshauthz.resources.istio import PolicyTargetReference
from meshauthz.resources.objects import AuthorizationPolicy, Manifests, RequestAuthentication

if TYPE_CHECKING:
    from meshauthz.ambient.authorization import Authorization

# Message texts: Istio's pkg/config/analysis/msg/messages.yaml, Kiali's models/istio_validation.go.
IST0171 = "A condition with a negative status is present: type={}, reason={}, message={}."
IST0166 = "Ineffective selector on Kubernetes Gateway {}. Use the TargetRef field instead."
KIA0109 = "L7 AuthorizationPolicy in Ambient namespace requires waypoint enrollment (istio.io/use-waypoint)"
KIA0110 = (
    "L7 AuthorizationPolicy in Ambient requires targetRefs to a Service or Gateway; selector "
    "policies are ignored by waypoints"
)


class AmbientFinding(Struct, frozen=True):
    code: str
    policy: AuthorizationPolicy | RequestAuthentication
    message: str
    severity: Severity = "warning"

    def to_finding(self) -> Finding:
        p = self.policy
        return Finding(
            self.severity, self.code, self.message, p.location(), p.kind, p.namespace, p.name
        )


def _enrolled(labels: dict[str, str] | None, ns_labels: dict[str, str]) -> bool:
    """Kiali's IsEnrolledForWaypoint: the object's use-waypoint label, else the namespace's."""
    for source in (labels or {}, ns_labels):
        if USE_WAYPOINT_LABEL in source:
            value = source[USE_WAYPOINT_LABEL]
            return value not in ("", "none")
    return False


def _ambient_namespace(snapshot: MeshSnapshot, name: str) -> bool:
    ns = snapshot.namespace(name)
    return ns is not None and ns.labels.get(DATAPLANE_MODE_LABEL) == "ambient"


def needs_ambient_checks(manifests: Manifests) -> bool:
    """Whether the manifests hold anything these checks look at: an ambient label,
    a Gateway API gateway or its pods (a mesh without any needs no snapshot built)."""
    labelled = [n.labels for n in manifests.namespaces] + [
        w.pod_labels for w in manifests.workloads
    ]
    return any(
        DATAPLANE_MODE_LABEL in labels or GATEWAY_NAME_LABEL in labels for labels in labelled
    ) or any(g.flavor == "gateway-api" for g in manifests.gateways)


def ambient_findings(
    snapshot: MeshSnapshot, flags: AmbientFlags = DEFAULT_FLAGS
) -> list[AmbientFinding]:
    # istiod's conversion is imported here: a mesh without anything ambient (see
    # needs_ambient_checks) is never converted, and its commands do not load it
    from meshauthz.ambient.convert import (
        convert_authorization_policy,
        has_effective_rules,
        http_attributes,
    )
    from meshauthz.ambient.waypoint_status import waypoint_condition

    out: list[AmbientFinding] = []
    root = snapshot.root_namespace
    ambient_workloads = [w for w in snapshot.workloads if enrollment(snapshot, w).mode == "ambient"]
    gateway_pods = [w for w in snapshot.workloads if GATEWAY_NAME_LABEL in w.labels]
    for ra in snapshot.request_authentications:
        _ineffective_selector(ra, gateway_pods, out)
    for ap in snapshot.authorization_policies:
        _ineffective_selector(ap, gateway_pods, out)
        conv = convert_authorization_policy(root, ap, flags)
        refs = target_refs(ap.spec.target_ref, ap.spec.target_refs)
        in_scope = [w for w in ambient_workloads if ap.namespace in (root, w.namespace)]
        cond = conv.condition
        if cond is not None and not cond.status and in_scope:
            out.append(
                AmbientFinding(
                    "IST0171", ap, IST0171.format("ZtunnelAccepted", cond.reason, cond.message)
                )
            )
        wcond = waypoint_condition(snapshot, ap) if in_scope else None
        # conditions.go: a false WaypointAccepted, and PartiallyInvalid though it is true.
        if wcond is not None and (not wcond.status or wcond.reason == "PartiallyInvalid"):
            out.append(
                AmbientFinding(
                    "IST0171",
                    ap,
                    IST0171.format("WaypointAccepted", wcond.reason, wcond.message),
                )
            )
        auth = conv.authorization
        if (
            auth is not None
            and auth.action == "DENY"
            and conv.dropped_http
            and not has_effective_rules(auth.rules)
        ):
            out.append(
                AmbientFinding(
                    "ambient-deny-no-op",
                    ap,
                    f"at ztunnel this DENY never matches: istiod drops its HTTP fields "
                    f"({', '.join(conv.dropped_http)}) and no rule is left that can match; "
                    "give it targetRefs to the waypoint of the Service instead",
                )
            )
        if _ambient_namespace(snapshot, ap.namespace):
            _kiali(snapshot, ap, refs, bool(http_attributes(ap.spec)), out)
        if auth is not None and auth.action == "ALLOW" and not refs and not ap.dry_run:
            _waypoint_identity(snapshot, ap, auth, in_scope, out)
    return out


def _ineffective_selector(
    p: AuthorizationPolicy | RequestAuthentication,
    gateway_pods: list[MeshWorkload],
    out: list[AmbientFinding],
) -> None:
    # workloadselector.go: a policy with a targetRef is skipped; a selector whose labels
    # the gateway pod carries (maps.Contains) is reported once per pod.
    if p.spec.target_ref is not None or p.spec.selector is None:
        return
    for w in gateway_pods:
        if w.namespace == p.namespace and subset_of(p.spec.selector.match_labels, w.labels):
            out.append(AmbientFinding("IST0166", p, IST0166.format(w.labels[GATEWAY_NAME_LABEL])))


def _kiali(
    snapshot: MeshSnapshot,
    ap: AuthorizationPolicy,
    refs: Sequence[PolicyTargetReference],
    l7: bool,
    out: list[AmbientFinding],
) -> None:
    if not l7:
        return
    if not refs:
        out.append(AmbientFinding("KIA0110", ap, KIA0110))
    ns = snapshot.namespace(ap.namespace)
    ns_labels = dict(ns.labels) if ns is not None else {}
    services = [
        snapshot.find_service(f"{ap.namespace}/{r.name}")
        for r in refs
        if r.kind == "Service" and r.group in ("", "core")
    ]
    resolved = [s for s in services if s is not None]
    if resolved:
        if any(not _enrolled(dict(s.resource.labels), ns_labels) for s in resolved):
            out.append(AmbientFinding("KIA0109", ap, KIA0109))
        return
    sel = ap.spec.selector.match_labels if ap.spec.selector is not None else {}
    if not sel:
        if not _enrolled(None, ns_labels):
            out.append(AmbientFinding("KIA0109", ap, KIA0109))
        return
    matched_ambient = opted_out = False
    for w in snapshot.workloads:
        if w.namespace != ap.namespace or w.is_waypoint or not subset_of(sel, w.labels):
            continue
        if w.labels.get(DATAPLANE_MODE_LABEL) == "none":
            opted_out = True
            continue
        matched_ambient = True
        if not _enrolled(dict(w.labels), ns_labels):
            out.append(AmbientFinding("KIA0109", ap, KIA0109))
            return
    if not matched_ambient and not opted_out and not _enrolled(None, ns_labels):
        out.append(AmbientFinding("KIA0109", ap, KIA0109))


def _waypoint_identity(
    snapshot: MeshSnapshot,
    ap: AuthorizationPolicy,
    auth: Authorization,
    in_scope: list[MeshWorkload],
    out: list[AmbientFinding],
) -> None:
    from meshauthz.ambient.evaluate import Connection, SpiffeIdentity, matches

    sel = ap.spec.selector
    for w in in_scope:
        if sel is not None and (not sel.match_labels or not subset_of(sel.match_labels, w.labels)):
            continue
        for svc in snapshot.services_for(w):
            wp = service_waypoint(snapshot, svc).waypoint
            if wp is None or not wp.workloads:
                continue
            waypoint = wp.workloads[0]
            ident = SpiffeIdentity.parse(waypoint.identity.principal)
            for sp in svc.ports:
                target = resolve_target_port(w, sp)
                conn = Connection.of(
                    waypoint.address, w.address, target if target is not None else sp.port, ident
                )
                if not matches(auth, conn):
                    out.append(
                        AmbientFinding(
                            "ambient-waypoint-identity",
                            ap,
                            f"traffic to Service {svc.key} passes waypoint {wp.key}, so the "
                            f"ztunnel of {w.key} sees the waypoint's identity "
                            f"{waypoint.identity.principal}; no rule of this ALLOW admits it, "
                            "so that traffic is denied",
                        )
                    )
                    return


__all__ = [
    "IST0166",
    "IST0171",
    "KIA0109",
    "KIA0110",
    "AmbientFinding",
    "ambient_findings",
    "needs_ambient_checks",
]

"""The AuthorizationPolicies that apply to a request's destination, and why, as
``explain`` reports them (text and ``-o json``'s ``applicable``).

In ambient mode each entry says where it is enforced (``enforcer``): at the
destination's ztunnel (selector and namespace policies, as istiod converted
them) or at the waypoint the request passes (targetRefs policies); a policy
whose targetRef names the destination's Service while the request passes no
waypoint is listed with ``"enforcer": null`` and why it applies nowhere.
"""

from __future__ import annotations

from typing import Any

from meshauthz.ambient.convert import convert_authorization_policy
from meshauthz.ambient.topology import enrollment
from meshauthz.decide.path import addressed, binding_for, client_in_mesh, ingress_bypasses
from meshauthz.decide.request import Request
from meshauthz.mesh import MeshSnapshot, SelectedPolicy, select_policies
from meshauthz.mesh.selection import target_refs
from meshauthz.resources.objects import AuthorizationPolicy


def _entry(s: SelectedPolicy, detail: str, enforcer: str | None) -> dict[str, Any]:
    return {
        "policy": s.key,
        "action": s.action,
        "why": s.reason.kind,
        "detail": detail,
        "file": s.policy.file,
        "line": s.policy.line,
    } | ({"enforcer": enforcer} if enforcer != "sidecar" else {})


def applicable_policies(snapshot: MeshSnapshot, r: Request) -> list[dict[str, Any]]:
    """The AuthorizationPolicies that apply to the request's destination, and why."""
    dest = r.destination
    at_dest = select_policies(snapshot, dest, "AuthorizationPolicy")
    if enrollment(snapshot, dest).mode != "ambient":
        return [_entry(s, s.reason.detail, "sidecar") for s in at_dest]
    out: list[dict[str, Any]] = []
    binding = binding_for(snapshot, r)
    wp = binding.waypoint
    svc, _ = addressed(snapshot, r)
    passes = (
        wp is not None
        and bool(wp.workloads)
        and client_in_mesh(snapshot, r)[0]
        and not ingress_bypasses(snapshot, r, svc)
    )
    if wp is not None and passes:
        w = wp.workloads[0]
        for s in select_policies(snapshot, w, "AuthorizationPolicy", service=svc):
            out.append(_entry(s, f"at waypoint {wp.key}: {s.reason.detail}", "waypoint"))
    for s in at_dest:
        if not isinstance(s.policy, AuthorizationPolicy):
            continue
        conv = convert_authorization_policy(snapshot.root_namespace, s.policy)
        cond = conv.condition
        detail = f"at ztunnel of {dest.key}: {s.reason.detail}"
        if cond is not None and not cond.status:
            out.append(_entry(s, f"{detail}; not sent to ztunnel: {cond.message}", None))
            continue
        if cond is not None and cond.reason != "Accepted":
            detail += f"; {cond.message}"
        out.append(_entry(s, detail, "ztunnel"))
    if not passes:
        if wp is None:
            why = "the request passes no waypoint"
        elif ingress_bypasses(snapshot, r, svc):
            why = f"the request bypasses waypoint {wp.key} (an ingress gateway calls the endpoints)"
        else:
            why = f"the request bypasses waypoint {wp.key} (the client is not in the mesh)"
        for p in snapshot.authorization_policies_by_namespace.get(dest.namespace, ()):
            for ref in target_refs(p.spec.target_ref, p.spec.target_refs):
                aimed = (svc is not None and ref.kind == "Service" and ref.name == svc.name) or (
                    wp is not None and ref.kind == "Gateway" and ref.name == wp.name
                )
                if aimed:
                    out.append(
                        {
                            "policy": p.key,
                            "action": p.spec.action,
                            "why": "target-ref",
                            "detail": f"targetRef to {ref.kind} {p.namespace}/{ref.name}, "
                            f"applies nowhere: {why}",
                            "file": p.file,
                            "line": p.line,
                            "enforcer": None,
                        }
                    )
                    break
    return out


__all__ = ["applicable_policies"]

"""istiod's ``WaypointAccepted`` status of a targetRefs AuthorizationPolicy
(pilot/pkg/serviceregistry/ambient/policies.go ``WaypointPolicyStatusCollection``,
pilot/pkg/model/service.go ``flattenConditions``), pinned by Istio's
``TestWaypointPolicyStatusCollection`` (tests/ambient/data/waypoint_status.yaml).

GatewayClass objects are not read: the built-in ``istio-waypoint`` class
(istiod's, controller istio.io/mesh-controller) is taken to exist, any other
class not.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct

from meshauthz.ambient.topology import service_waypoint, waypoints
from meshauthz.mesh.selection import target_refs
from meshauthz.mesh.snapshot import WAYPOINT_GATEWAY_CLASS, MeshSnapshot
from meshauthz.resources.objects import AuthorizationPolicy

ACCEPTED = "Accepted"
INVALID = "Invalid"
PARTIALLY_INVALID = "PartiallyInvalid"
ANCESTOR_NOT_BOUND = "AncestorNotBound"
TARGET_NOT_FOUND = "TargetNotFound"


class PolicyBinding(Struct, frozen=True):
    """``model.PolicyBindingStatus`` of one targetRef."""

    ancestor: str  # "<Kind>.<group or core>:<namespace>/<name>"
    reason: str
    message: str
    bound: bool


class WaypointCondition(Struct, frozen=True):
    """The ``WaypointAccepted`` condition (``flattenConditions``)."""

    status: bool
    reason: str
    message: str


def waypoint_bindings(snapshot: MeshSnapshot, policy: AuthorizationPolicy) -> list[PolicyBinding]:
    """One binding per targetRef (none for a policy without targetRefs)."""
    out: list[PolicyBinding] = []
    all_waypoints = waypoints(snapshot)
    for ref in target_refs(policy.spec.target_ref, policy.spec.target_refs):
        namespace = ref.namespace or policy.namespace
        key = f"{namespace}/{ref.name}"
        reason, message, bound = "unknown", "not bound", False
        if ref.kind == "GatewayClass":
            root = snapshot.root_namespace
            if namespace != root:
                reason = INVALID
                message = (
                    f"AuthorizationPolicy must be in the root namespace `{root}` when "
                    "referencing a GatewayClass"
                )
            elif ref.name == WAYPOINT_GATEWAY_CLASS:
                reason, message, bound = ACCEPTED, f"bound to {ref.name}", True
            else:
                reason = TARGET_NOT_FOUND
        elif ref.kind == "Gateway":
            wp = all_waypoints.get(key)
            if wp is not None and wp.ready:
                reason, message, bound = ACCEPTED, f"bound to {wp.key}", True
            else:
                reason = TARGET_NOT_FOUND
        elif ref.kind == "Service":
            svc = snapshot.find_service(key)
            if svc is None:
                reason, message = TARGET_NOT_FOUND, f"Service {key} was not found"
            else:
                bound_to = service_waypoint(snapshot, svc).waypoint
                if bound_to is not None:
                    reason, message, bound = ACCEPTED, f"bound to {bound_to.key}", True
                else:
                    reason = ANCESTOR_NOT_BOUND
                    message = f"Service {key} is not bound to a waypoint"
        elif ref.kind == "ServiceEntry":
            se = snapshot.find_service_entry(key)
            if se is None:
                reason, message = TARGET_NOT_FOUND, f"ServiceEntry {key} was not found"
            else:
                bound_to = service_waypoint(snapshot, se).waypoint
                if bound_to is not None:
                    reason, message, bound = ACCEPTED, f"bound to {bound_to.key}", True
                else:
                    reason = ANCESTOR_NOT_BOUND
                    message = f"ServiceEntry {key} is not bound to a waypoint"
        else:
            continue
        group = ref.group or "core"
        out.append(PolicyBinding(f"{ref.kind}.{group}:{key}", reason, message, bound))
    return out


def flatten(bindings: Sequence[PolicyBinding]) -> WaypointCondition | None:
    """``flattenConditions``: one binding keeps its own reason and message; several
    are Accepted if any is bound, PartiallyInvalid if some are not, else Invalid."""
    if not bindings:
        return None
    if len(bindings) == 1:
        b = bindings[0]
        return WaypointCondition(b.bound, b.reason, b.message)
    unbound = [b.ancestor for b in bindings if not b.bound]
    status = len(unbound) < len(bindings)
    reason = INVALID
    if status:
        reason = PARTIALLY_INVALID if unbound else ACCEPTED
    message = f"Invalid targetRefs: {', '.join(unbound)}" if unbound else ""
    return WaypointCondition(status, reason, message)


def waypoint_condition(
    snapshot: MeshSnapshot, policy: AuthorizationPolicy
) -> WaypointCondition | None:
    return flatten(waypoint_bindings(snapshot, policy))


__all__ = [
    "PolicyBinding",
    "WaypointCondition",
    "flatten",
    "waypoint_bindings",
    "waypoint_condition",
]

"""Which policies apply to a workload, as istiod selects them.

Mirrors, in our own code:

* ``pilot/pkg/model/policyattachment.go`` ``WorkloadPolicyMatcher.ShouldAttachPolicy``
  (``should_attach``): selector vs targetRefs, Gateway API workloads, waypoints;
* ``pilot/pkg/model/authorization.go`` ``ListAuthorizationPolicies``: candidates
  only from the root namespace, the workload's namespace and (waypoint chains)
  the Service's namespace, in that order;
* ``pilot/pkg/model/authentication.go`` ``getConfigsForWorkload``: for
  RequestAuthentication and PeerAuthentication the order is the workload's
  namespace first, then the root namespace, then the Service's; a
  PeerAuthentication is chosen by its selector alone (it has no targetRef), and
  a later namespace- or mesh-level PeerAuthentication in a namespace that
  already has one is dropped from the store (``addPeerAuthentication``);
* within a namespace, istiod's store order: creation time, then name, then
  namespace (``sortConfigByCreationTime``).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Literal

from msgspec import Struct, field

from meshauthz.mesh.labels import subset_of
from meshauthz.mesh.snapshot import (
    GATEWAY_NAME_LABEL,
    WAYPOINT_GATEWAY_CLASS,
    MeshService,
    MeshSnapshot,
    MeshWorkload,
)
from meshauthz.resources.istio import PolicyTargetReference, WorkloadSelector
from meshauthz.resources.objects import (
    AuthorizationPolicy,
    PeerAuthentication,
    RequestAuthentication,
    ServiceEntry,
)

PolicyKind = Literal["AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication"]
Policy = AuthorizationPolicy | RequestAuthentication | PeerAuthentication
ReasonKind = Literal["mesh-wide", "namespace-wide", "selector", "target-ref"]
Registry = Literal["Kubernetes", "External"]

# features.EnableSelectorBasedK8sGatewayPolicy (ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY).
DEFAULT_SELECTOR_BASED_K8S_GATEWAY_POLICY = True


class ServiceRef(Struct, frozen=True):
    """ServiceInfoForPolicyMatcher: the Service of a waypoint's service chain."""

    name: str
    namespace: str
    registry: Registry = "Kubernetes"


class PolicyMatcher(Struct, frozen=True):
    """WorkloadPolicyMatcher: what istiod knows about the proxy when it selects."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    is_waypoint: bool = False
    services: tuple[ServiceRef, ...] = ()
    root_namespace: str = ""

    @staticmethod
    def for_workload(
        w: MeshWorkload,
        *,
        root_namespace: str,
        service: MeshService | ServiceEntry | None = None,
    ) -> PolicyMatcher:
        services: tuple[ServiceRef, ...] = ()
        if isinstance(service, ServiceEntry):
            services = (ServiceRef(service.name, service.namespace, "External"),)
        elif service is not None:
            services = (ServiceRef(service.name, service.namespace),)
        return PolicyMatcher(w.namespace, w.labels, w.is_waypoint, services, root_namespace)


class SelectionReason(Struct, frozen=True):
    """Why a policy applies.

    * ``mesh-wide``: in the root namespace, no (or an empty) selector;
    * ``namespace-wide``: in the workload's namespace, no (or an empty) selector;
    * ``selector``: ``matched_labels`` are the selector's labels, all on the workload
      (a root-namespace selector matches workloads of every namespace);
    * ``target-ref``: ``target_ref`` names the workload's Gateway, the waypoint's
      GatewayClass, or the Service/ServiceEntry of a waypoint chain.
    """

    kind: ReasonKind
    detail: str
    matched_labels: Mapping[str, str] = field(default_factory=dict)
    target_ref: PolicyTargetReference | None = None


class SelectedPolicy(Struct, frozen=True):
    policy: Policy
    reason: SelectionReason

    @property
    def key(self) -> str:
        return self.policy.key

    @property
    def action(self) -> str | None:
        """The AuthorizationPolicy action (ALLOW when unset), else None."""
        if isinstance(self.policy, AuthorizationPolicy):
            return self.policy.spec.action
        return None


def target_refs(
    target_ref: PolicyTargetReference | None, refs: Sequence[PolicyTargetReference]
) -> tuple[PolicyTargetReference, ...]:
    """``GetTargetRefs``: ``targetRefs``, or the legacy ``targetRef`` when that is empty."""
    if refs:
        return tuple(refs)
    return (target_ref,) if target_ref is not None else ()


def canonical_group(group: str) -> str:
    """``config.CanonicalGroup``: the core group "" is spelled "core"."""
    return group or "core"


def _is(ref: PolicyTargetReference, group: str, kind: str) -> bool:
    return canonical_group(ref.group) == canonical_group(group) and ref.kind == kind


def _selector_reason(
    matcher: PolicyMatcher, policy_namespace: str, selector: WorkloadSelector | None
) -> SelectionReason | None:
    labels = dict(selector.match_labels) if selector is not None else {}
    if not subset_of(labels, matcher.labels):
        return None
    if labels:
        where = (
            " (root namespace: every namespace)"
            if policy_namespace == matcher.root_namespace
            else ""
        )
        shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return SelectionReason("selector", f"selector matches labels {shown}{where}", labels)
    empty = " (empty selector)" if selector is not None else ""
    if matcher.root_namespace and policy_namespace == matcher.root_namespace:
        return SelectionReason("mesh-wide", f"no selector in the root namespace{empty}")
    return SelectionReason("namespace-wide", f"no selector in namespace {policy_namespace}{empty}")


def should_attach(
    matcher: PolicyMatcher,
    policy_namespace: str,
    selector: WorkloadSelector | None,
    refs: Sequence[PolicyTargetReference],
    *,
    selector_based_k8s_gateway_policy: bool = DEFAULT_SELECTOR_BASED_K8S_GATEWAY_POLICY,
) -> SelectionReason | None:
    """``ShouldAttachPolicy``: the reason the policy attaches, or None.

    ``refs`` are the policy's effective targetRefs (see ``target_refs``).
    """
    gateway_name = matcher.labels.get(GATEWAY_NAME_LABEL)
    # Not a Gateway API workload (sidecar, Istio gateway): selector only, and a
    # policy with any targetRef is ignored altogether.
    if gateway_name is None:
        if refs:
            return None
        return _selector_reason(matcher, policy_namespace, selector)
    # Gateway API workload without targetRefs: waypoints never; gateways by
    # selector when the feature flag is on.
    if not refs:
        if matcher.is_waypoint or not selector_based_k8s_gateway_policy:
            return None
        return _selector_reason(matcher, policy_namespace, selector)
    for ref in refs:
        if matcher.is_waypoint and _is(ref, "", "Service"):
            for svc in matcher.services:
                if (
                    ref.name == svc.name
                    and policy_namespace == svc.namespace
                    and svc.registry == "Kubernetes"
                ):
                    return SelectionReason(
                        "target-ref", f"targetRef to Service {svc.namespace}/{svc.name}", {}, ref
                    )
        if matcher.is_waypoint and _is(ref, "networking.istio.io", "ServiceEntry"):
            for svc in matcher.services:
                if (
                    ref.name == svc.name
                    and policy_namespace == svc.namespace
                    and svc.registry == "External"
                ):
                    return SelectionReason(
                        "target-ref",
                        f"targetRef to ServiceEntry {svc.namespace}/{svc.name}",
                        {},
                        ref,
                    )
        if (
            policy_namespace == matcher.root_namespace
            and matcher.is_waypoint
            and _is(ref, "gateway.networking.k8s.io", "GatewayClass")
            and ref.name == WAYPOINT_GATEWAY_CLASS
        ):
            return SelectionReason(
                "target-ref",
                f"targetRef to GatewayClass {WAYPOINT_GATEWAY_CLASS} in the root namespace",
                {},
                ref,
            )
        if matcher.namespace != policy_namespace:
            continue
        if ref.namespace not in ("", matcher.namespace):
            continue
        if _is(ref, "gateway.networking.k8s.io", "Gateway") and ref.name == gateway_name:
            return SelectionReason(
                "target-ref", f"targetRef to Gateway {matcher.namespace}/{gateway_name}", {}, ref
            )
    return None


# --------------------------------------------------------------------------- listing


def peer_authentication_store(snapshot: MeshSnapshot) -> list[PeerAuthentication]:
    """The PeerAuthentications istiod keeps (``addPeerAuthentication``): in store
    order, a namespace- or mesh-level one (no or empty selector) in a namespace
    that already has one is dropped."""
    seen: set[str] = set()
    kept: list[PeerAuthentication] = []
    for pa in snapshot.peer_authentications:
        sel = pa.spec.selector
        if sel is None or not sel.match_labels:
            if pa.namespace in seen:
                continue
            seen.add(pa.namespace)
        kept.append(pa)
    return kept


_PA_STORES: weakref.WeakKeyDictionary[
    MeshSnapshot, tuple[list[PeerAuthentication], int, dict[str, list[Policy]]]
] = weakref.WeakKeyDictionary()


def _peer_authentications_by_namespace(snapshot: MeshSnapshot) -> Mapping[str, Sequence[Policy]]:
    """``peer_authentication_store`` by namespace, computed once per snapshot."""
    pas = snapshot.peer_authentications
    hit = _PA_STORES.get(snapshot)
    if hit is None or hit[0] is not pas or hit[1] != len(pas):
        kept: dict[str, list[Policy]] = {}
        for pa in peer_authentication_store(snapshot):
            kept.setdefault(pa.namespace, []).append(pa)
        hit = _PA_STORES[snapshot] = (pas, len(pas), kept)
    return hit[2]


def dropped_peer_authentications(snapshot: MeshSnapshot) -> list[PeerAuthentication]:
    kept = {id(p) for p in peer_authentication_store(snapshot)}
    return [p for p in snapshot.peer_authentications if id(p) not in kept]


class _Candidates:
    """One namespace's policies of one kind, indexed so that a workload reads only
    those that can attach to it: a policy whose selector has labels can only
    attach to a workload that carries the selector's first label; a policy with
    targetRefs only to a Gateway API workload (``should_attach``). Everything else
    (no or an empty selector) is a candidate for every workload. Candidates keep
    the namespace's order; ``should_attach`` still decides each one."""

    __slots__ = ("always", "by_label", "policies", "targeted")

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = policies
        self.always: list[int] = []
        self.by_label: dict[tuple[str, str], list[int]] = {}
        self.targeted: list[int] = []
        for i, p in enumerate(policies):
            refs = (
                () if isinstance(p, PeerAuthentication) else (p.spec.target_ref, p.spec.target_refs)
            )
            if refs and (refs[0] is not None or refs[1]):
                self.targeted.append(i)
                continue
            sel = p.spec.selector
            labels = sel.match_labels if sel is not None else None
            if labels:
                self.by_label.setdefault(min(labels.items()), []).append(i)
            else:
                self.always.append(i)

    def candidates(self, matcher: PolicyMatcher) -> Sequence[Policy]:
        if matcher.labels.get(GATEWAY_NAME_LABEL) is not None:
            return self.policies  # Gateway API workloads: rare, and targetRefs decide
        found = list(self.always)
        for item in matcher.labels.items():
            found += self.by_label.get(item, ())
        if len(found) == len(self.policies):
            return self.policies
        found.sort()
        return [self.policies[i] for i in found]


# Per snapshot, per (kind, namespace): the index, with the list it was built from
# (a list that changed since is indexed again).
_INDEXES: weakref.WeakKeyDictionary[
    MeshSnapshot, dict[tuple[str, str], tuple[Sequence[Policy], int, _Candidates]]
] = weakref.WeakKeyDictionary()


def _candidates(
    snapshot: MeshSnapshot, kind: str, ns: str, policies: Sequence[Policy], matcher: PolicyMatcher
) -> Sequence[Policy]:
    if len(policies) < 8:  # not worth an index
        return policies
    cache = _INDEXES.setdefault(snapshot, {})
    hit = cache.get((kind, ns))
    if hit is None or hit[0] is not policies or hit[1] != len(policies):
        hit = cache[(kind, ns)] = (policies, len(policies), _Candidates(policies))
    return hit[2].candidates(matcher)


def list_policies(
    snapshot: MeshSnapshot,
    matcher: PolicyMatcher,
    kind: PolicyKind = "AuthorizationPolicy",
    *,
    selector_based_k8s_gateway_policy: bool = DEFAULT_SELECTOR_BASED_K8S_GATEWAY_POLICY,
) -> list[SelectedPolicy]:
    """The policies of ``kind`` that apply for ``matcher``, in istiod's order."""
    root = snapshot.root_namespace
    matcher = PolicyMatcher(
        matcher.namespace, matcher.labels, matcher.is_waypoint, matcher.services, root
    )
    by_namespace: Mapping[str, Sequence[Policy]]
    if kind == "AuthorizationPolicy":
        lookup = [root, matcher.namespace]
        by_namespace = snapshot.authorization_policies_by_namespace
    elif kind == "RequestAuthentication":
        lookup = [matcher.namespace, root]
        by_namespace = snapshot.request_authentications_by_namespace
    elif kind == "PeerAuthentication":
        lookup = [matcher.namespace, root]
        by_namespace = _peer_authentications_by_namespace(snapshot)
    else:
        raise ValueError(f"unknown policy kind {kind!r}")
    lookup += [s.namespace for s in matcher.services]
    out: list[SelectedPolicy] = []
    for ns in dict.fromkeys(lookup):
        for p in _candidates(snapshot, kind, ns, by_namespace.get(ns, ()), matcher):
            reason: SelectionReason | None
            if isinstance(p, PeerAuthentication):
                reason = _selector_reason(matcher, ns, p.spec.selector)
                if reason is not None and reason.kind == "selector" and ns == root:
                    reason = SelectionReason(
                        "selector",
                        reason.detail
                        + "; ignored when composing: a PeerAuthentication with a selector "
                        "in the root namespace has no effect",
                        reason.matched_labels,
                    )
            else:
                reason = should_attach(
                    matcher,
                    ns,
                    p.spec.selector,
                    target_refs(p.spec.target_ref, p.spec.target_refs),
                    selector_based_k8s_gateway_policy=selector_based_k8s_gateway_policy,
                )
            if reason is not None:
                out.append(SelectedPolicy(p, reason))
    return out


def select_policies(
    snapshot: MeshSnapshot,
    workload: str | MeshWorkload,
    kind: PolicyKind = "AuthorizationPolicy",
    *,
    service: str | MeshService | ServiceEntry | None = None,
    selector_based_k8s_gateway_policy: bool = DEFAULT_SELECTOR_BASED_K8S_GATEWAY_POLICY,
) -> list[SelectedPolicy]:
    """The policies of ``kind`` that apply to ``workload`` ("ns/name" or a
    MeshWorkload), each with its reason, in istiod's order.

    ``service`` is only meaningful for a waypoint: the Service whose chain is
    being built (policies with a Service targetRef attach to that chain only), or
    the ServiceEntry (its ServiceEntry targetRefs).
    Sidecars and gateways are selected without a Service, as istiod does
    (``authz.NewBuilder``).
    """
    w = snapshot.workload(workload)
    svc = (
        service
        if service is None or isinstance(service, ServiceEntry)
        else snapshot.service(service)
    )
    matcher = PolicyMatcher.for_workload(w, root_namespace=snapshot.root_namespace, service=svc)
    return list_policies(
        snapshot,
        matcher,
        kind,
        selector_based_k8s_gateway_policy=selector_based_k8s_gateway_policy,
    )


class ByAction(Struct, frozen=True):
    """``AuthorizationPoliciesResult``: the selected AuthorizationPolicies by action,
    each list in selection order."""

    custom: tuple[SelectedPolicy, ...] = ()
    deny: tuple[SelectedPolicy, ...] = ()
    allow: tuple[SelectedPolicy, ...] = ()
    audit: tuple[SelectedPolicy, ...] = ()


def by_action(selected: Sequence[SelectedPolicy]) -> ByAction:
    groups: dict[str, list[SelectedPolicy]] = {"CUSTOM": [], "DENY": [], "ALLOW": [], "AUDIT": []}
    for s in selected:
        if s.action in groups:
            groups[s.action].append(s)
    return ByAction(
        tuple(groups["CUSTOM"]),
        tuple(groups["DENY"]),
        tuple(groups["ALLOW"]),
        tuple(groups["AUDIT"]),
    )


__all__ = [
    "DEFAULT_SELECTOR_BASED_K8S_GATEWAY_POLICY",
    "ByAction",
    "PolicyKind",
    "PolicyMatcher",
    "SelectedPolicy",
    "SelectionReason",
    "ServiceRef",
    "by_action",
    "canonical_group",
    "dropped_peer_authentications",
    "list_policies",
    "peer_authentication_store",
    "select_policies",
    "should_attach",
    "target_refs",
]

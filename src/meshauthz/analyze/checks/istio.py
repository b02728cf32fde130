"""The checks istioctl analyze makes on these resources, with the same meaning:
MA1001 (IST0127 NoMatchingWorkloadsFound, KIA0004), MA1002 (IST0101
ReferencedResourceNotFound for namespaces, KIA0101). Mirrors pkg/config/analysis/analyzers/authz/
authorizationpolicies.go. MA1003 (IST0166) is ambient.lint's check (checks/ambient)."""

from __future__ import annotations

from typing import Any

from meshauthz.ambient.topology import enrollment
from meshauthz.analyze.context import Context
from meshauthz.analyze.finding import AnalysisFinding, at
from meshauthz.mesh import MeshWorkload
from meshauthz.mesh.labels import subset_of
from meshauthz.mesh.selection import canonical_group, target_refs
from meshauthz.resources.objects import AuthorizationPolicy

# Labels and annotations istioctl's util.PodInMesh and PodInAmbientMode read.
INJECT = "sidecar.istio.io/inject"
INJECTION_NAMESPACE_LABEL = "istio-injection"
AMBIENT_REDIRECTION = "ambient.istio.io/redirection"


def in_mesh(ctx: Context, w: MeshWorkload) -> bool:
    """istioctl's ``PodInMesh`` or ``PodInAmbientMode`` (or ztunnel capture as the
    manifests say it, ``ambient.topology.enrollment``): a proxy container, else the
    pod's inject label or annotation, else its namespace's istio-injection label.
    A namespace the input does not declare cannot say: meshauthz takes such a
    workload as in the mesh, as every command does (istioctl, which would look
    the namespace up in a cluster, takes it as out)."""
    r = w.resource
    if r is None or w.proxy != "sidecar":
        return True  # a gateway's pods run a proxy
    if r.proxy_container:
        return True
    labels = w.labels
    annotations = r.pod_annotations
    if annotations.get(AMBIENT_REDIRECTION) == "enabled":
        return True
    # the CNI sets that annotation in a cluster; manifests carry what makes ztunnel
    # capture the pod (istio.io/dataplane-mode), which every command reads
    if enrollment(ctx.snapshot, w).mode == "ambient":
        return True
    if INJECT in labels:
        return labels[INJECT] == "true"
    if INJECT in annotations:
        return annotations[INJECT] == "true"
    ns = ctx.snapshot.namespace(w.namespace)
    if ns is None or not ns.declared:
        return True
    return ns.labels.get(INJECTION_NAMESPACE_LABEL) == "enabled"


def _selector_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def check_no_matching_workloads(ctx: Context) -> None:
    snap = ctx.snapshot
    meshed = [w for w in snap.workloads if in_mesh(ctx, w)]
    root = snap.root_namespace
    policies: list[AuthorizationPolicy] = ctx.authorization_policies
    meshed_by_namespace: dict[str, list[MeshWorkload]] = {}
    for w in meshed:
        meshed_by_namespace.setdefault(w.namespace, []).append(w)
    for p in policies:
        refs = target_refs(p.spec.target_ref, p.spec.target_refs)
        if refs:
            missing = [r for r in refs if not _target_exists(ctx, p.namespace, r)]
            if len(missing) == len(refs):
                names = ", ".join(f"{r.kind} {r.name}" for r in missing)
                ctx.add(
                    AnalysisFinding(
                        "MA1001",
                        f"no {names} exists in namespace {p.namespace}: the policy applies to "
                        "nothing",
                        fix="name an existing Gateway or Service in targetRefs",
                        **at(p, "spec", "targetRefs" if p.spec.target_refs else "targetRef"),
                    )
                )
            continue
        sel = p.spec.selector
        labels = dict(sel.match_labels) if sel is not None else {}
        if p.namespace == root:
            # mesh-wide: only a selector can match nothing (in any namespace)
            if sel is None or any(subset_of(labels, w.labels) for w in meshed):
                continue
            where = "in any namespace of the mesh"
        elif sel is None:
            if meshed_by_namespace.get(p.namespace):
                continue
            injected = ctx.snapshot.namespace(p.namespace)
            why = (
                " (its workloads get no sidecar: the namespace is not labelled "
                "istio-injection=enabled)"
                if injected is not None and ctx.workloads_by_namespace.get(p.namespace)
                else ""
            )
            ctx.add(
                AnalysisFinding(
                    "MA1001",
                    f"namespace {p.namespace} has no workload in the mesh{why}: the policy "
                    "applies to nothing",
                    fix="put the policy in the namespace of the workloads it is meant for",
                    **at(p, "metadata", "namespace"),
                )
            )
            continue
        else:
            if any(subset_of(labels, w.labels) for w in meshed_by_namespace.get(p.namespace, ())):
                continue
            where = f"in namespace {p.namespace}"
        outside = [w for w in ctx.candidates(p.namespace, labels) if subset_of(labels, w.labels)]
        if outside:
            message = (
                f"the workloads {where} with the labels {_selector_text(labels)} "
                f"({', '.join(w.key for w in outside[:3])}) are not in the mesh (no sidecar "
                "injected, no ambient redirection): the policy applies to nothing"
            )
            fix = (
                "enable injection: label the namespace istio-injection=enabled (or the pods "
                "sidecar.istio.io/inject=true)"
            )
        else:
            message = (
                f"no workload {where} has the labels {_selector_text(labels)}: the policy "
                "applies to nothing"
            )
            fix = "correct the selector's labels (kubectl get pods --show-labels)"
        ctx.add(AnalysisFinding("MA1001", message, fix=fix, **at(p, "spec", "selector")))


def _target_exists(ctx: Context, namespace: str, ref: Any) -> bool:
    group = canonical_group(ref.group)
    snap = ctx.snapshot
    if ref.kind == "Gateway" and group == "gateway.networking.k8s.io":
        return any(
            g.flavor == "gateway-api" and g.name == ref.name and g.namespace == namespace
            for g in snap.gateways
        )
    if ref.kind == "Service" and group == "core":
        return snap.find_service(f"{namespace}/{ref.name}") is not None
    return True  # GatewayClass, ServiceEntry: not something the input can refute


def namespace_matches(namespace: str, pattern: str) -> bool:
    """istioctl's ``namespaceMatch``: ``*``, a leading or trailing ``*``, else
    equality ignoring case."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return namespace.endswith(pattern[1:])
    if pattern.endswith("*"):
        return namespace.startswith(pattern[:-1])
    return namespace.lower() == pattern.lower()


def check_unknown_namespaces(ctx: Context) -> None:
    names = list(ctx.snapshot.namespaces)
    for p in ctx.authorization_policies:
        for i, rule in enumerate(p.spec.rules):
            for j, f in enumerate(rule.from_):
                src = f.source
                if src is None:
                    continue
                for field, values in (
                    ("namespaces", src.namespaces),
                    ("notNamespaces", src.not_namespaces),
                ):
                    for k, ns in enumerate(values):
                        if any(namespace_matches(n, ns) for n in names):
                            continue
                        ctx.add(
                            AnalysisFinding(
                                "MA1002",
                                f"no namespace {ns!r} exists",
                                fix="correct the namespace's name, or add its Namespace to "
                                "the input",
                                **at(p, "spec", "rules", i, "from", j, "source", field, k),
                            )
                        )
            for j, c in enumerate(rule.when):
                if c.key != "source.namespace":
                    continue
                for field, values in (("values", c.values), ("notValues", c.not_values)):
                    for k, ns in enumerate(values):
                        if not any(namespace_matches(n, ns) for n in names):
                            ctx.add(
                                AnalysisFinding(
                                    "MA1002",
                                    f"no namespace {ns!r} exists",
                                    fix="correct the namespace's name, or add its Namespace to "
                                    "the input",
                                    **at(p, "spec", "rules", i, "when", j, field, k),
                                )
                            )

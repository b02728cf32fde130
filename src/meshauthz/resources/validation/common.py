"""Checks Istio applies to every security resource: metadata, selector, targetRef."""

from __future__ import annotations

from meshauthz.resources.istio import PolicyTargetReference, WorkloadSelector
from meshauthz.resources.objects import DRY_RUN_ANNOTATION, AuthorizationPolicy, Resource
from meshauthz.resources.validation.gosyntax import parse_go_bool
from meshauthz.resources.validation.report import Report

# Internal annotations that Istio's webhook refuses on any user resource.
RESERVED_ANNOTATIONS = (
    "internal.istio.io/webhook-always-reject",
    "internal.istio.io/parent-namespace",
    "internal.istio.io/parents",
)

# The kinds a targetRef may point at: (canonical group, kind). An empty group is "core".
ALLOWED_TARGET_REFS = (
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
)


def check_metadata(resource: Resource, report: Report) -> None:
    annotations = resource.annotations
    path = ("metadata", "annotations", DRY_RUN_ANNOTATION)
    if DRY_RUN_ANNOTATION in annotations:
        value = annotations[DRY_RUN_ANNOTATION]
        if not isinstance(resource, AuthorizationPolicy):
            report.error(
                "dry-run-annotation",
                f"annotation {DRY_RUN_ANNOTATION} is only supported on AuthorizationPolicy; "
                "remove it",
                *path,
            )
        elif resource.spec.action not in ("ALLOW", "DENY"):
            report.error(
                "dry-run-annotation",
                f"annotation {DRY_RUN_ANNOTATION} is only supported with action ALLOW or DENY, "
                f"not {resource.spec.action}",
                *path,
            )
        elif parse_go_bool(value) is None:
            report.error(
                "dry-run-annotation",
                f'annotation {DRY_RUN_ANNOTATION} must be a boolean ("true" or "false"), '
                f"got {value!r}",
                *path,
            )
    for name in RESERVED_ANNOTATIONS:
        if name in annotations:
            report.error(
                "reserved-annotation",
                f"annotation {name} is internal to Istio and may not be set on a resource",
                "metadata",
                "annotations",
                name,
            )


def check_selector(selector: WorkloadSelector | None, report: Report) -> None:
    """Istio's workload selector rules (errors and the no-labels warning)."""
    if selector is None:
        return
    for key, value in selector.match_labels.items():
        path = ("spec", "selector", "matchLabels", key)
        if key == "":
            report.error(
                "selector-empty-key",
                f'spec.selector.matchLabels: a label key must not be empty ("{key}={value}")',
                *path,
            )
        if "*" in key or "*" in value:
            report.error(
                "selector-wildcard",
                f'spec.selector.matchLabels: wildcards are not supported ("{key}={value}")',
                *path,
            )
    if not selector.match_labels:
        report.warning(
            "selector-no-labels",
            "spec.selector has no labels: it selects every workload in the namespace",
            "spec",
            "selector",
        )


def check_one_selector_kind(
    selector: WorkloadSelector | None,
    target_ref: PolicyTargetReference | None,
    target_refs: tuple[PolicyTargetReference, ...],
    report: Report,
) -> None:
    count = (selector is not None) + (target_ref is not None) + (len(target_refs) > 0)
    if count > 1:
        report.error(
            "selector-and-target-ref",
            "only one of selector, targetRef or targetRefs may be set",
            "spec",
        )


def check_target_ref(ref: PolicyTargetReference, report: Report, *path: str | int) -> None:
    where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
    if ref.name == "":
        report.error("target-ref-name", f"{where}.name must be set", *path, "name")
    if ref.namespace != "":
        report.error(
            "target-ref-namespace",
            f"{where}.namespace must be empty: cross-namespace references are not supported",
            *path,
            "namespace",
        )
    group = ref.group or "core"
    if (group, ref.kind) not in ALLOWED_TARGET_REFS:
        allowed = ", ".join(f"{g}/{k}" for g, k in ALLOWED_TARGET_REFS)
        report.error(
            "target-ref-kind",
            f"{where} must refer to one of {allowed}; got {ref.group}/{ref.kind}",
            *path,
        )


def check_targets(
    selector: WorkloadSelector | None,
    target_ref: PolicyTargetReference | None,
    target_refs: tuple[PolicyTargetReference, ...],
    report: Report,
) -> None:
    check_one_selector_kind(selector, target_ref, target_refs, report)
    check_selector(selector, report)
    if target_ref is not None:
        check_target_ref(target_ref, report, "spec", "targetRef")
    for i, ref in enumerate(target_refs):
        check_target_ref(ref, report, "spec", "targetRefs", i)

"""Manifests that rely on an older Istio release than the one modelled.

Istio accepts them, but the behaviour they were written for is gone; meshauthz
answers as the modelled release (``resources.istio_release``) does, and says so.
"""

from __future__ import annotations

from meshauthz.resources.findings import Finding
from meshauthz.resources.istio_release import ISTIO
from meshauthz.resources.objects import (
    AuthorizationPolicy,
    Manifests,
    PeerAuthentication,
    RequestAuthentication,
)
from meshauthz.resources.validation.report import Report

# istiod put this label on the pods of Gateway API gateways until 1.24, whose
# release notes say "Removed istio.io/gateway-name, please use
# gateway.networking.k8s.io/gateway-name" (istio/istio releasenotes/notes/52049.yaml).
# Deployments created before the upgrade keep it in their selector
# (gatewaycommon/deploymentcontroller.go; testdata/deployment/istio-upgrade-to-1.24.yaml).
OLD_GATEWAY_NAME_LABEL = "istio.io/gateway-name"
NEW_GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_NAME_LABEL_REMOVED_IN = "1.24"


def release_findings(manifests: Manifests) -> list[Finding]:
    """A policy selecting pods by the old gateway-name label that no workload of
    the manifests carries: since 1.24 istiod's gateways do not have it."""
    labelled = {
        (w.namespace, w.pod_labels[OLD_GATEWAY_NAME_LABEL])
        for w in manifests.workloads
        if OLD_GATEWAY_NAME_LABEL in w.pod_labels
    }
    out: list[Finding] = []
    policies: list[AuthorizationPolicy | RequestAuthentication | PeerAuthentication] = [
        *manifests.authorization_policies,
        *manifests.request_authentications,
        *manifests.peer_authentications,
    ]
    for p in policies:
        selector = p.spec.selector
        if selector is None or OLD_GATEWAY_NAME_LABEL not in selector.match_labels:
            continue
        value = selector.match_labels[OLD_GATEWAY_NAME_LABEL]
        if (p.namespace, value) in labelled:
            continue  # a workload still has it (a Deployment from before the upgrade)
        report = Report(p)
        report.warning(
            "removed-gateway-name-label",
            f"selects {OLD_GATEWAY_NAME_LABEL}={value}, a label istiod stopped putting on "
            f"gateway pods in Istio {GATEWAY_NAME_LABEL_REMOVED_IN}; meshauthz models Istio "
            f"{ISTIO.version}, where this selects no gateway: select "
            f"{NEW_GATEWAY_NAME_LABEL}: {value} instead (or use targetRefs)",
            "spec",
            "selector",
            "matchLabels",
            OLD_GATEWAY_NAME_LABEL,
        )
        out.extend(report.findings)
    return out


__all__ = ["OLD_GATEWAY_NAME_LABEL", "release_findings"]

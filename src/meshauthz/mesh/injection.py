"""Sidecar injection: which workloads get an Envoy, as istiod's injector decides it.

Two steps, as in a cluster:

1. Kubernetes calls the injection webhook only when one of the webhooks that
   istiod's chart installs matches the namespace's and the pod's labels
   (``manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml``):

   - ``namespace.``: namespace ``istio-injection=enabled``, pod label
     ``sidecar.istio.io/inject`` not ``"false"``;
   - ``rev.namespace.``: namespace ``istio.io/rev=<rev>`` and no
     ``istio-injection`` label, pod label ``sidecar.istio.io/inject`` not ``"false"``;
   - ``rev.object.``: namespace without either label, pod labels
     ``istio.io/rev=<rev>`` and ``sidecar.istio.io/inject`` not ``"false"``;
   - ``object.``: namespace without either label, pod label
     ``sidecar.istio.io/inject=true`` and no ``istio.io/rev`` label;
   - ``auto.`` (only with ``sidecarInjectorWebhook.enableNamespacesByDefault``):
     namespace without either label and not a system namespace, pod without
     either label.

   Every revision a label names is taken to be installed.
2. The webhook then decides (``pkg/kube/inject/inject.go`` ``injectRequired``,
   with the chart's default policy ``enabled``): no injection with
   ``hostNetwork``, nor in Kubernetes' system namespaces; otherwise the pod's
   ``sidecar.istio.io/inject`` label, else its annotation, ``"true"`` injects and
   ``"false"`` does not; any other value, or none, injects.

What manifests cannot say: whether the namespaces carry labels that were set
with ``kubectl label`` rather than written in the repository. So when no
namespace in the input enables injection by label (``istio-injection=enabled``
or ``istio.io/rev``), the mesh is modelled as installed with
``enableNamespacesByDefault`` (every namespace injected unless it or the pod
opts out); as soon as one namespace does, the labels in the input are taken as
the cluster's, and a namespace declared without one gets no sidecars (as in a
default install); a namespace the input does not declare, whose labels are
unknown, is still taken to be injected.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from msgspec import Struct

NAMESPACE_LABEL = "istio-injection"  # the legacy namespace label
REVISION_LABEL = "istio.io/rev"  # label.IoIstioRev
INJECT_KEY = "sidecar.istio.io/inject"  # label.SidecarInject and annotation.SidecarInject
DEFAULT_REVISION = "default"
DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"  # ambient capture (label.IoIstioDataplaneMode)
# pkg/kube/inject/initializer.go IgnoredNamespaces (also the auto webhook's exclusions).
SYSTEM_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}
)


class Why(enum.StrEnum):
    """What decided injection, for the explanation."""

    NAMESPACE_LABEL = "namespace-label"  # the namespace's label selected a webhook
    POD_LABEL = "pod-label"  # the pod's label selected a webhook
    ASSUMED = "assumed"  # no label anywhere enables injection: every namespace is injected
    # the namespace is not in the input (its labels are unknown): taken to be injected
    UNDECLARED_NAMESPACE = "undeclared-namespace"
    NAMESPACE_OPT_OUT = "namespace-opt-out"  # istio-injection is not "enabled"
    POD_LABEL_OPT_OUT = "pod-label-opt-out"  # the pod's label is "false"
    POD_ANNOTATION_OPT_OUT = "pod-annotation-opt-out"  # the pod's annotation is "false"
    NO_LABEL = "no-label"  # neither namespace nor pod selects a webhook
    # the namespace or pod sets istio.io/dataplane-mode: its labels say how it is
    # meshed, so injection is not assumed
    DATAPLANE_LABEL = "dataplane-label"
    HOST_NETWORK = "host-network"
    SYSTEM_NAMESPACE = "system-namespace"


class Injection(Struct, frozen=True):
    """Whether a workload's pods get a sidecar, and why.

    ``key``/``value``: the label or annotation that decided (None when none
    did); ``revision``: the control plane revision that injects."""

    injected: bool
    why: Why
    namespace: str
    key: str | None = None
    value: str | None = None
    revision: str | None = None


def opt_in_by_label(namespace_labels: Iterable[Mapping[str, str]]) -> bool:
    """Whether some namespace enables injection by label: then labels are taken as
    written, and an unlabelled namespace is not injected."""
    return any(
        labels.get(NAMESPACE_LABEL) == "enabled" or REVISION_LABEL in labels
        for labels in namespace_labels
    )


def dataplane_labelled(namespace_labels: Mapping[str, str], pod_labels: Mapping[str, str]) -> bool:
    """Whether the namespace or the pod says how it joins the mesh by the ambient
    label (``ambient``, or ``none`` to stay out): then injection is not assumed
    for it, only what an injection label enables."""
    return DATAPLANE_MODE_LABEL in namespace_labels or DATAPLANE_MODE_LABEL in pod_labels


def injection(
    namespace: str,
    namespace_labels: Mapping[str, str],
    pod_labels: Mapping[str, str],
    pod_annotations: Mapping[str, str],
    *,
    host_network: bool = False,
    by_default: bool = False,
) -> Injection:
    """Whether the injector gives the pod a sidecar. ``by_default``: namespaces
    without a label are injected (``enableNamespacesByDefault``)."""
    ns_inject = namespace_labels.get(NAMESPACE_LABEL)
    ns_rev = namespace_labels.get(REVISION_LABEL)
    pod_inject = pod_labels.get(INJECT_KEY)
    pod_rev = pod_labels.get(REVISION_LABEL)
    not_false = pod_inject != "false"  # the objectSelector "NotIn [false]"
    ns_unlabelled = ns_inject is None and ns_rev is None

    # Step 1: which webhook Kubernetes calls, if any.
    matched: Injection | None = None
    if ns_inject == "enabled" and not_false:
        matched = Injection(
            True, Why.NAMESPACE_LABEL, namespace, NAMESPACE_LABEL, ns_inject, DEFAULT_REVISION
        )
    elif ns_rev is not None and ns_inject is None and not_false:
        matched = Injection(True, Why.NAMESPACE_LABEL, namespace, REVISION_LABEL, ns_rev, ns_rev)
    elif ns_unlabelled and pod_rev is not None and not_false:
        matched = Injection(True, Why.POD_LABEL, namespace, REVISION_LABEL, pod_rev, pod_rev)
    elif ns_unlabelled and pod_inject == "true" and pod_rev is None:
        matched = Injection(True, Why.POD_LABEL, namespace, INJECT_KEY, "true", DEFAULT_REVISION)
    elif (
        by_default
        and ns_unlabelled
        and namespace not in SYSTEM_NAMESPACES
        and pod_inject is None
        and pod_rev is None
    ):
        matched = Injection(True, Why.ASSUMED, namespace, revision=DEFAULT_REVISION)
    if matched is None:
        if ns_inject is not None and ns_inject != "enabled":
            return Injection(False, Why.NAMESPACE_OPT_OUT, namespace, NAMESPACE_LABEL, ns_inject)
        if pod_inject == "false":
            return Injection(False, Why.POD_LABEL_OPT_OUT, namespace, INJECT_KEY, "false")
        if namespace in SYSTEM_NAMESPACES:
            return Injection(False, Why.SYSTEM_NAMESPACE, namespace)
        return Injection(False, Why.NO_LABEL, namespace)

    # Step 2: injectRequired.
    if host_network:
        return Injection(False, Why.HOST_NETWORK, namespace)
    if namespace in SYSTEM_NAMESPACES:
        return Injection(False, Why.SYSTEM_NAMESPACE, namespace)
    # The label is the newer API; when both are given the label wins.
    if pod_inject is not None:
        choice, opt_out = pod_inject, Why.POD_LABEL_OPT_OUT
    else:
        choice, opt_out = pod_annotations.get(INJECT_KEY, ""), Why.POD_ANNOTATION_OPT_OUT
    if choice == "false":
        return Injection(False, opt_out, namespace, INJECT_KEY, "false")
    return matched


__all__ = [
    "DATAPLANE_MODE_LABEL",
    "DEFAULT_REVISION",
    "INJECT_KEY",
    "NAMESPACE_LABEL",
    "REVISION_LABEL",
    "SYSTEM_NAMESPACES",
    "Injection",
    "Why",
    "dataplane_labelled",
    "injection",
    "opt_in_by_label",
]

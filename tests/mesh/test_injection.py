"""Sidecar injection, pinned to Istio's own test cases.

Two tables, one per step istiod takes:

* which webhook Kubernetes calls, from the namespace's and the pod's labels:
  istioctl's ``Test_analyzeRunningWebhooks``
  (istioctl/pkg/checkinject/checkinject_test.go, commit 86c9f01f), which runs
  the webhook selectors of the default revision and of revision ``1-16``; a pod
  is injected when one of them says ``Injected: true``;
* what the webhook decides once called (``injectRequired``):
  ``TestInjectRequired`` (pkg/kube/inject/webhook_test.go) with the chart's
  default policy ``enabled`` and no always/never selectors.
"""

from __future__ import annotations

import pytest

from meshauthz.mesh.injection import Why, injection, opt_in_by_label


def _ns(inject: str = "", rev: str = "") -> dict[str, str]:
    """``nsTestObject(namespace, injLabelValue, revLabelValue)``."""
    labels = {}
    if inject:
        labels["istio-injection"] = inject
    if rev:
        labels["istio.io/rev"] = rev
    return labels


def _pod(inject: str = "", rev: str = "") -> dict[str, str]:
    """``podTestObject(name, namespace, injLabelValue, revLabelValue)``."""
    labels = {}
    if inject:
        labels["sidecar.istio.io/inject"] = inject
    if rev:
        labels["istio.io/rev"] = rev
    return labels


# (case name in Test_analyzeRunningWebhooks, pod labels, namespace labels, injected, why)
WEBHOOK_CASES = [
    ("no inj because of no match labels", _pod(), _ns(), False, Why.NO_LABEL),
    ("default ns injection", _pod(), _ns("enabled"), True, Why.NAMESPACE_LABEL),
    ("rev ns injection", _pod(), _ns(rev="1-16"), True, Why.NAMESPACE_LABEL),
    ("rev po label injection", _pod(rev="1-16"), _ns(), True, Why.POD_LABEL),
    ("default pod label injection", _pod("true"), _ns(), True, Why.POD_LABEL),
    ("both default label injection", _pod("true"), _ns("enabled"), True, Why.NAMESPACE_LABEL),
    ("both rev label injection", _pod(rev="1-16"), _ns(rev="1-16"), True, Why.NAMESPACE_LABEL),
    (
        "disable ns label and rev po label",
        _pod(rev="1-16"),
        _ns("disabled"),
        False,
        Why.NAMESPACE_OPT_OUT,
    ),
    ("ns and rev pod label", _pod(rev="1-16"), _ns("enabled"), True, Why.NAMESPACE_LABEL),
    ("pod label with not inject", _pod("false"), _ns("enabled"), False, Why.POD_LABEL_OPT_OUT),
    ("pod not injectable for ns rev", _pod("false"), _ns(rev="1-16"), False, Why.POD_LABEL_OPT_OUT),
]


@pytest.mark.parametrize(
    ("pod", "ns", "injected", "why"),
    [c[1:] for c in WEBHOOK_CASES],
    ids=[c[0] for c in WEBHOOK_CASES],
)
def test_webhook_selection(pod, ns, injected, why):
    got = injection("test1", ns, pod, {})
    assert (got.injected, got.why) == (injected, why)


def test_webhook_selection_names_the_revision():
    # "Namespace label istio.io/rev=1-16 matches" / "Pod label istio.io/rev=1-16 matches"
    assert injection("test1", _ns(rev="1-16"), {}, {}).revision == "1-16"
    assert injection("test1", _ns(), _pod(rev="1-16"), {}).revision == "1-16"
    assert injection("test1", _ns("enabled"), _pod(rev="1-16"), {}).revision == "default"


INJECT = "sidecar.istio.io/inject"

# (case name in TestInjectRequired with Policy InjectionPolicyEnabled,
#  pod labels, pod annotations, hostNetwork, want)
REQUIRED_CASES = [
    ("no-policy", {}, {}, False, True),
    ("force-on-policy", {}, {INJECT: "true"}, False, True),
    ("force-off-policy", {}, {INJECT: "false"}, False, False),
    ("invalid-inject-value-yes", {}, {INJECT: "yes"}, False, True),
    ("invalid-inject-value-random", {INJECT: "random"}, {}, False, True),
    ("force-off-policy (hostNetwork)", {}, {}, True, False),
]


@pytest.mark.parametrize(
    ("labels", "annotations", "host_network", "want"),
    [c[1:] for c in REQUIRED_CASES],
    ids=[c[0] for c in REQUIRED_CASES],
)
def test_inject_required(labels, annotations, host_network, want):
    # The webhook is called (namespace labelled), then injectRequired decides.
    got = injection(
        "test-namespace", _ns("enabled"), labels, annotations, host_network=host_network
    )
    assert got.injected is want


def test_label_wins_over_annotation():
    # TestInjectRequired "policy-disabled-label-enabled-annotation-disabled" and
    # "policy-disabled-label-disabled-annotation-enabled": the label is the newer API
    ns = _ns(rev="default")  # the rev.namespace webhook lets a "true" label through
    assert injection("ns", ns, {INJECT: "true"}, {INJECT: "false"}).injected
    got = injection("ns", _ns("enabled"), {INJECT: "false"}, {INJECT: "true"})
    assert not got.injected and got.why is Why.POD_LABEL_OPT_OUT


def test_system_namespaces_are_never_injected():
    # pkg/kube/inject/initializer.go IgnoredNamespaces, checked by injectRequired
    got = injection("kube-system", _ns("enabled"), {}, {})
    assert not got.injected and got.why is Why.SYSTEM_NAMESPACE
    # ... and left out of the auto webhook's namespaceSelector
    assert not injection("kube-public", {}, {}, {}, by_default=True).injected


def test_by_default_is_the_auto_webhook():
    # mutatingwebhook.yaml "auto." (enableNamespacesByDefault): namespace and pod
    # without either label; an explicit opt-out still holds
    assert injection("foo", {}, {}, {}, by_default=True).why is Why.ASSUMED
    assert not injection("foo", _ns("disabled"), {}, {}, by_default=True).injected
    assert not injection("foo", {}, _pod("false"), {}, by_default=True).injected
    assert not injection("foo", {}, {}, {INJECT: "false"}, by_default=True).injected
    # any value of istio-injection other than "enabled" selects no webhook
    assert not injection("foo", _ns("true"), {}, {}, by_default=True).injected


def test_opt_in_by_label():
    assert not opt_in_by_label([{}, _ns("disabled")])
    assert opt_in_by_label([{}, _ns("enabled")])
    assert opt_in_by_label([_ns(rev="canary")])

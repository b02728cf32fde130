"""Policy selection, pinned with Istio's own test tables.

Sources (istio/istio at the pinned commit):
* pilot/pkg/model/policyattachment_test.go  TestPolicyMatcher
* pilot/pkg/model/authorization_test.go     TestAuthorizationPolicies_ListAuthorizationPolicies
* pilot/pkg/model/authentication_test.go    TestGetPoliciesForWorkload,
                                            TestGetPoliciesForGatewayPolicyAttachmentOnly
"""

from __future__ import annotations

import msgspec
import pytest

from meshauthz.mesh import PolicyMatcher, ServiceRef, by_action, list_policies, should_attach
from meshauthz.mesh.selection import target_refs
from meshauthz.resources.istio import PolicyTargetReference, WorkloadSelector
from tests.mesh.mesh_builders import (
    BASE_TIME,
    GATEWAY_CLASS_KIND,
    GATEWAY_KIND,
    SERVICE_ENTRY_KIND,
    SERVICE_KIND,
    ap,
    pa,
    ra,
    unvalidated_snapshot,
)

GW_LABEL = "gateway.networking.k8s.io/gateway-name"


def ref(kind: dict, name: str, namespace: str = "") -> PolicyTargetReference:
    return msgspec.convert({**kind, "name": name, "namespace": namespace}, PolicyTargetReference)


def sel(labels: dict[str, str]) -> WorkloadSelector:
    return msgspec.convert({"matchLabels": labels}, WorkloadSelector)


# --------------------------------------------------------------------------- TestPolicyMatcher

SAMPLE_TARGET_REF = ref(GATEWAY_KIND, "sample-gateway")
WAYPOINT_TARGET_REF = ref(GATEWAY_KIND, "sample-waypoint")
ISTIO_WAYPOINT_CLASS_REF = ref(GATEWAY_CLASS_KIND, "istio-waypoint")
SERVICE_TARGET_REF = ref(SERVICE_KIND, "sample-svc")
SERVICE_ENTRY_TARGET_REF = ref(SERVICE_ENTRY_KIND, "sample-svc-entry")
SAMPLE_SELECTOR = sel({"app": "my-app"})
SAMPLE_GATEWAY_SELECTOR = sel({GW_LABEL: "sample-gateway"})
SAMPLE_WAYPOINT_SELECTOR = sel({GW_LABEL: "sample-waypoint"})

REGULAR_APP = PolicyMatcher("default", {"app": "my-app"})
SAMPLE_GATEWAY = PolicyMatcher("default", {GW_LABEL: "sample-gateway"})
SAMPLE_WAYPOINT = PolicyMatcher(
    "default", {GW_LABEL: "sample-waypoint"}, is_waypoint=True, root_namespace="istio-system"
)
SERVICE_TARGET = PolicyMatcher(
    "default",
    {"app": "my-app", GW_LABEL: "sample-waypoint"},
    is_waypoint=True,
    services=(ServiceRef("sample-svc", "default", "Kubernetes"),),
)
SERVICE_ENTRY_TARGET = PolicyMatcher(
    "default",
    {"app": "my-app", GW_LABEL: "sample-waypoint"},
    is_waypoint=True,
    services=(ServiceRef("sample-svc-entry", "default", "External"),),
)
GATEWAY_MULTI_SERVICE = PolicyMatcher(
    "default",
    {"app": "my-app", GW_LABEL: "sample-waypoint"},
    is_waypoint=True,
    services=(
        ServiceRef("sample-svc", "default"),
        ServiceRef("sample-svc-1", "default"),
    ),
)
CROSS_NS_SERVICE = PolicyMatcher(
    "waypoint",
    {"app": "my-app", GW_LABEL: "sample-waypoint"},
    is_waypoint=True,
    services=(ServiceRef("sample-svc", "default"),),
)

# (name, matcher, selector, targetRef, targetRefs, flag, policy namespace, expected)
POLICY_MATCHER_CASES = [
    ("non-gateway API workload and a targetRef", REGULAR_APP, None, SAMPLE_TARGET_REF, None, True, "default", False),
    ("non-gateway API workload and a selector", REGULAR_APP, SAMPLE_SELECTOR, None, None, True, "default", True),
    ("non-gateway API workload and both a targetRef and a selector", REGULAR_APP, SAMPLE_SELECTOR, SAMPLE_TARGET_REF, None, True, "default", False),
    ("non-gateway API workload and no targetRef or selector", REGULAR_APP, None, None, None, True, "default", True),
    ("gateway API ingress and a targetRef", SAMPLE_GATEWAY, None, SAMPLE_TARGET_REF, None, False, "default", True),
    ("gateway API ingress and a selector", SAMPLE_GATEWAY, SAMPLE_GATEWAY_SELECTOR, None, None, True, "default", True),
    ("gateway API ingress and a selector (policy attachment only)", SAMPLE_GATEWAY, SAMPLE_GATEWAY_SELECTOR, None, None, False, "default", False),
    ("gateway API ingress and both a targetRef and a selector", SAMPLE_GATEWAY, SAMPLE_GATEWAY_SELECTOR, SAMPLE_TARGET_REF, None, False, "default", True),
    ("gateway API ingress and non-matching targetRef", SAMPLE_GATEWAY, None, WAYPOINT_TARGET_REF, None, True, "default", False),
    ("gateway API ingress and no targetRef or selector", SAMPLE_GATEWAY, None, None, None, True, "default", True),
    ("waypoint and a targetRef", SAMPLE_WAYPOINT, None, WAYPOINT_TARGET_REF, None, True, "default", True),
    ("waypoint and a selector", SAMPLE_WAYPOINT, SAMPLE_WAYPOINT_SELECTOR, None, None, True, "default", False),
    ("waypoint and both a targetRef and a selector", SAMPLE_WAYPOINT, SAMPLE_WAYPOINT_SELECTOR, WAYPOINT_TARGET_REF, None, True, "default", True),
    ("waypoint and no targetRef or selector", SAMPLE_WAYPOINT, None, None, None, True, "default", False),
    ("waypoint and non-matching targetRef", SAMPLE_WAYPOINT, None, SAMPLE_TARGET_REF, None, True, "default", False),
    ("waypoint and matching targetRefs", SAMPLE_WAYPOINT, None, None, [WAYPOINT_TARGET_REF], True, "default", True),
    ("waypoint and partial matching targetRefs", SAMPLE_WAYPOINT, None, None, [WAYPOINT_TARGET_REF, SAMPLE_TARGET_REF], True, "default", True),
    ("waypoint and non matching targetRefs", SAMPLE_WAYPOINT, None, None, [SAMPLE_TARGET_REF], True, "default", False),
    ("service attached policy", SERVICE_TARGET, None, None, [SERVICE_TARGET_REF], False, "default", True),
    ("service entry attached policy", SERVICE_ENTRY_TARGET, None, None, [SERVICE_ENTRY_TARGET_REF], False, "default", True),
    ("service entry policy selecting", SERVICE_TARGET, None, None, [ref(SERVICE_ENTRY_KIND, "sample-svc")], False, "default", False),
    ("gateway attached policy with service", SERVICE_TARGET, None, None, [WAYPOINT_TARGET_REF], False, "default", True),
    ("gateway attached policy with multi-service", GATEWAY_MULTI_SERVICE, None, None, [WAYPOINT_TARGET_REF], False, "default", True),
    ("gateway attached policy with cross-namespace service", CROSS_NS_SERVICE, None, None, [WAYPOINT_TARGET_REF], False, "default", False),
    ("gateway class attached policy in root namespace", SAMPLE_WAYPOINT, None, None, [ISTIO_WAYPOINT_CLASS_REF], False, "istio-system", True),
    ("gateway class attached policy in non-root namespace", SAMPLE_WAYPOINT, None, None, [ISTIO_WAYPOINT_CLASS_REF], False, "default", False),
]  # fmt: skip


@pytest.mark.parametrize(
    "name,matcher,selector,tref,trefs,flag,policy_ns,expected",
    POLICY_MATCHER_CASES,
    ids=[c[0] for c in POLICY_MATCHER_CASES],
)
def test_policy_matcher(name, matcher, selector, tref, trefs, flag, policy_ns, expected):
    # policyattachment_test.go TestPolicyMatcher: same inputs, same expectations.
    got = should_attach(
        matcher,
        policy_ns,
        selector,
        target_refs(tref, trefs or ()),
        selector_based_k8s_gateway_policy=flag,
    )
    assert (got is not None) is expected


def test_policy_matcher_reasons():
    r = should_attach(SERVICE_TARGET, "default", None, [SERVICE_TARGET_REF])
    assert r is not None and r.kind == "target-ref" and r.target_ref == SERVICE_TARGET_REF
    r = should_attach(REGULAR_APP, "default", SAMPLE_SELECTOR, [])
    assert r is not None and r.kind == "selector" and r.matched_labels == {"app": "my-app"}
    r = should_attach(REGULAR_APP, "default", None, [])
    assert r is not None and r.kind == "namespace-wide"


def test_legacy_target_ref_used_only_when_target_refs_empty():
    # GetTargetRefs: targetRefs wins; targetRef only when targetRefs is empty.
    assert target_refs(SAMPLE_TARGET_REF, []) == (SAMPLE_TARGET_REF,)
    assert target_refs(SAMPLE_TARGET_REF, [WAYPOINT_TARGET_REF]) == (WAYPOINT_TARGET_REF,)


def test_core_group_is_canonical():
    # matchesGroupKind compares config.CanonicalGroup: "" and "core" are the same group.
    core = ref({"group": "core", "kind": "Service"}, "sample-svc")
    assert should_attach(SERVICE_TARGET, "default", None, [core]) is not None


# ---------------------------------------------------- TestAuthorizationPolicies_ListAuthorizationPolicies

ROOT = "istio-config"  # createFakeAuthorizationPolicies: RootNamespace "istio-config"
HTTPBIN_V1 = {"app": "httpbin", "version": "v1"}
TR_GATEWAY = {**GATEWAY_KIND, "name": "my-gateway", "namespace": "bar"}
TR_SERVICE = {**SERVICE_KIND, "name": "foo-svc", "namespace": "foo"}
TR_GWCLASS = {**GATEWAY_CLASS_KIND, "name": "istio-waypoint"}


def listed(objs, matcher, kind="AuthorizationPolicy"):
    s = unvalidated_snapshot(*objs, root=ROOT)
    return list_policies(s, matcher, kind)


def keys(selected):
    return [(p.policy.name, p.policy.namespace) for p in selected]


def grouped(selected):
    g = by_action(selected)
    return {
        "allow": keys(g.allow),
        "deny": keys(g.deny),
        "audit": keys(g.audit),
        "custom": keys(g.custom),
    }


def empty(**kw):
    return {"allow": [], "deny": [], "audit": [], "custom": [], **kw}


LIST_CASES = [
    ("no policies", PolicyMatcher("foo"), [], empty()),
    (
        "no policies in namespace foo",
        PolicyMatcher("foo"),
        [ap("authz-1", "bar"), ap("authz-2", "bar")],
        empty(),
    ),
    (
        "no policies with a targetRef in namespace foo",
        PolicyMatcher("foo", {GW_LABEL: "my-gateway"}),
        [ap("authz-1", "bar", target_ref=TR_GATEWAY)],
        empty(),
    ),
    ("one allow policy", PolicyMatcher("bar"), [ap("authz-1", "bar")], empty(allow=[("authz-1", "bar")])),
    ("one deny policy", PolicyMatcher("bar"), [ap("authz-1", "bar", action="DENY")], empty(deny=[("authz-1", "bar")])),
    ("one audit policy", PolicyMatcher("bar"), [ap("authz-1", "bar", action="AUDIT")], empty(audit=[("authz-1", "bar")])),
    ("one custom policy", PolicyMatcher("bar"), [ap("authz-1", "bar", action="CUSTOM")], empty(custom=[("authz-1", "bar")])),
    (
        "two policies",
        PolicyMatcher("bar"),
        [ap("authz-1", "foo"), ap("authz-1", "bar"), ap("authz-2", "bar")],
        empty(allow=[("authz-1", "bar"), ("authz-2", "bar")]),
    ),
    (
        "mixing allow, deny, and audit policies",
        PolicyMatcher("bar"),
        [
            ap("authz-1", "bar"),
            ap("authz-2", "bar", action="DENY"),
            ap("authz-3", "bar", action="AUDIT"),
            ap("authz-4", "bar", action="AUDIT"),
        ],
        empty(
            allow=[("authz-1", "bar")],
            deny=[("authz-2", "bar")],
            audit=[("authz-3", "bar"), ("authz-4", "bar")],
        ),
    ),
    (
        "targetRef is an exact match",
        PolicyMatcher("bar", {GW_LABEL: "my-gateway"}),
        [ap("authz-1", "bar", target_ref=TR_GATEWAY)],
        empty(allow=[("authz-1", "bar")]),
    ),
    (
        "selector exact match",
        PolicyMatcher("bar", HTTPBIN_V1),
        [ap("authz-1", "bar", selector=HTTPBIN_V1)],
        empty(allow=[("authz-1", "bar")]),
    ),
    (
        "selector subset match",
        PolicyMatcher("bar", {**HTTPBIN_V1, "env": "dev"}),
        [ap("authz-1", "bar", selector=HTTPBIN_V1)],
        empty(allow=[("authz-1", "bar")]),
    ),
    (
        "targetRef is not a match",
        PolicyMatcher("bar", {GW_LABEL: "my-gateway2"}),
        [ap("authz-1", "bar", target_ref=TR_GATEWAY)],
        empty(),
    ),
    (
        "selector not match",
        PolicyMatcher("bar", {"app": "httpbin", "version": "v2"}),
        [ap("authz-1", "bar", selector=HTTPBIN_V1)],
        empty(),
    ),
    (
        "namespace not match",
        PolicyMatcher("foo", HTTPBIN_V1),
        [ap("authz-1", "bar", selector=HTTPBIN_V1)],
        empty(),
    ),
    ("root namespace", PolicyMatcher("bar"), [ap("authz-1", ROOT)], empty(allow=[("authz-1", ROOT)])),
    (
        "root namespace equals config namespace",
        PolicyMatcher(ROOT),
        [ap("authz-1", ROOT)],
        empty(allow=[("authz-1", ROOT)]),
    ),
    (
        "root namespace and config namespace",
        PolicyMatcher("bar"),
        [ap("authz-1", ROOT), ap("authz-2", "bar")],
        empty(allow=[("authz-1", ROOT), ("authz-2", "bar")]),
    ),
    (
        "waypoint service attached",
        PolicyMatcher(
            "foo",
            {GW_LABEL: "foo-waypoint", **HTTPBIN_V1},
            is_waypoint=True,
            services=(ServiceRef("foo-svc", "foo"),),
        ),
        [ap("authz-1", "foo", target_ref=TR_SERVICE), ap("authz-2", "foo", selector=HTTPBIN_V1)],
        empty(allow=[("authz-1", "foo")]),
    ),
    (
        "waypoint with default policies",
        PolicyMatcher(
            "foo",
            {GW_LABEL: "foo-waypoint", **HTTPBIN_V1},
            is_waypoint=True,
            services=(ServiceRef("foo-svc", "foo"),),
        ),
        [
            ap("authz-1", "foo", target_ref=TR_SERVICE),
            ap("default", ROOT, target_ref=TR_GWCLASS),
            ap("default-non-waypoint", ROOT, selector=HTTPBIN_V1),
        ],
        empty(allow=[("default", ROOT), ("authz-1", "foo")]),
    ),
]  # fmt: skip


@pytest.mark.parametrize("name,matcher,objs,want", LIST_CASES, ids=[c[0] for c in LIST_CASES])
def test_list_authorization_policies(name, matcher, objs, want):
    # authorization_test.go TestAuthorizationPolicies_ListAuthorizationPolicies.
    assert grouped(listed(objs, matcher)) == want


def test_authz_order_root_first_then_creation_time_then_name():
    # ListAuthorizationPolicies walks [root, workload namespace]; within a namespace
    # the store order is creation time, then name (configCompareByCreationTime).
    objs = [
        ap("b", "bar", created="2024-01-01T00:00:00Z"),
        ap("a", "bar", created="2024-01-02T00:00:00Z"),
        ap("c", "bar", created="2024-01-01T00:00:00Z"),
        ap("z", ROOT, created="2025-01-01T00:00:00Z"),
        ap("d", "bar"),  # no timestamp: Go's zero time, oldest of all
    ]
    got = keys(listed(objs, PolicyMatcher("bar")))
    assert got == [("z", ROOT), ("d", "bar"), ("b", "bar"), ("c", "bar"), ("a", "bar")]


def test_root_namespace_selector_applies_in_every_namespace():
    # "default-non-waypoint" above is not attached to the waypoint only because it
    # is a waypoint; for a sidecar in any namespace a root-namespace selector
    # applies (lookup list includes the root namespace; isSelected has no
    # namespace check). Same for RequestAuthentication: "global-with-selector"
    # is selected in "bar" in TestGetPoliciesForWorkload.
    got = listed([ap("p", ROOT, selector=HTTPBIN_V1)], PolicyMatcher("anywhere", HTTPBIN_V1))
    assert keys(got) == [("p", ROOT)]
    assert got[0].reason.kind == "selector"
    assert "root namespace" in got[0].reason.detail
    got = listed([ap("p", ROOT)], PolicyMatcher("anywhere"))
    assert got[0].reason.kind == "mesh-wide"


# ------------------------------------------------------------- TestGetPoliciesForWorkload

T1 = "2020-02-02T02:02:03Z"  # baseTimestamp + 1s
T2 = "2020-02-02T02:02:04Z"  # baseTimestamp + 2s


def authn_configs(with_mesh_peer_authn: bool = True) -> list[dict]:
    """authentication_test.go createTestConfigs."""
    selector = {"app": "httpbin", "version": "v1"}
    objs = [
        ra("default", ROOT),
        ra("global-with-selector", ROOT, selector={"app": "httpbin"}),
        ra("global-with-ref", ROOT, target_ref={**GATEWAY_CLASS_KIND, "name": "istio-waypoint"}),
        ra("default", "foo"),
        ra("default", "bar"),
        ra("with-selector", "foo", selector=selector),
        ra("with-targetref", "foo", target_ref={**GATEWAY_KIND, "name": "my-gateway"}),
        ra("ignored-gateway-selector", "foo", selector={GW_LABEL: "my-gateway"}),
        ra(
            "with-targetref",
            "bar",
            selector={"app": "httpbin"},
            target_ref={**GATEWAY_KIND, "name": "my-gateway"},
        ),
        ra(
            "with-targetref-service",
            "bar",
            target_ref={**SERVICE_KIND, "name": "target-service-bar"},
        ),
        pa(
            "global-peer-with-selector",
            ROOT,
            selector={"app": "httpbin", "version": "v2"},
            mode="UNSET",
            created=BASE_TIME,
        ),
        pa("default", "foo", mode="STRICT", created=BASE_TIME),
        pa("ignored-newer-default", "foo", mode="STRICT", created=T1),
        pa(
            "peer-with-selector",
            "foo",
            selector={"version": "v1"},
            mode="DISABLE",
            created=BASE_TIME,
        ),
    ]
    if with_mesh_peer_authn:
        objs += [
            pa("ignored-newer", ROOT, mode="UNSET", created=T2),
            pa("default", ROOT, mode="UNSET", created=BASE_TIME),
            pa("ignored-another-newer", ROOT, mode="UNSET", created=T1),
        ]
    return objs


GW_FOO = {GW_LABEL: "my-gateway"}
WAYPOINT_LABELS = {GW_LABEL: "my-waypoint"}
SVC_BAR = (ServiceRef("target-service-bar", "bar"),)

# (name, namespace, labels, waypoint, services, want RA, want PA, want namespace mTLS)
AUTHN_CASES = [
    ("Empty workload labels in foo", "foo", {}, False, (),
     [("default", "foo"), ("default", ROOT)],
     [("default", "foo"), ("default", ROOT)], "STRICT"),
    ("Gateway targetRef foo namespace", "foo", GW_FOO, False, (),
     [("default", "foo"), ("ignored-gateway-selector", "foo"), ("with-targetref", "foo"), ("default", ROOT)],
     [("default", "foo"), ("default", ROOT)], "STRICT"),
    ("waypoint targetRef foo namespace", "foo", GW_FOO, True, (),
     [("with-targetref", "foo"), ("global-with-ref", ROOT)],
     [("default", "foo"), ("default", ROOT)], "STRICT"),
    ("Gateway targetRef bar namespace", "bar", GW_FOO, False, (),
     [("default", "bar"), ("with-targetref", "bar"), ("default", ROOT)],
     [("default", ROOT)], "PERMISSIVE"),
    ("Empty workload labels in bar", "bar", {}, False, (),
     [("default", "bar"), ("default", ROOT)],
     [("default", ROOT)], "PERMISSIVE"),
    ("Empty workload labels in baz", "baz", {}, False, (),
     [("default", ROOT)],
     [("default", ROOT)], "PERMISSIVE"),
    ("Match workload labels in foo", "foo", {"app": "httpbin", "version": "v1", "other": "labels"}, False, (),
     [("default", "foo"), ("with-selector", "foo"), ("default", ROOT), ("global-with-selector", ROOT)],
     [("default", "foo"), ("peer-with-selector", "foo"), ("default", ROOT)], "STRICT"),
    ("Match workload labels in bar", "bar", {"app": "httpbin", "version": "v1"}, False, (),
     [("default", "bar"), ("default", ROOT), ("global-with-selector", ROOT)],
     [("default", ROOT)], "PERMISSIVE"),
    ("Partial match workload labels in foo", "foo", {"app": "httpbin"}, False, (),
     [("default", "foo"), ("default", ROOT), ("global-with-selector", ROOT)],
     [("default", "foo"), ("default", ROOT)], "STRICT"),
    ("Service targetRef bar namespace", "bar", WAYPOINT_LABELS, True, SVC_BAR,
     [("with-targetref-service", "bar"), ("global-with-ref", ROOT)],
     [("default", ROOT)], "PERMISSIVE"),
    ("Service targetRef cross namespace", "gateway", WAYPOINT_LABELS, True, SVC_BAR,
     [("global-with-ref", ROOT), ("with-targetref-service", "bar")],
     [("default", ROOT)], "PERMISSIVE"),
]  # fmt: skip


@pytest.mark.parametrize(
    "name,ns,labels,waypoint,services,want_ra,want_pa,want_ns_mtls",
    AUTHN_CASES,
    ids=[c[0] for c in AUTHN_CASES],
)
def test_get_policies_for_workload(
    name, ns, labels, waypoint, services, want_ra, want_pa, want_ns_mtls
):
    # authentication_test.go TestGetPoliciesForWorkload: same configs, same expectations
    # (RequestAuthentication list, PeerAuthentication list, namespace mTLS mode).
    from meshauthz.mesh import namespace_mtls_mode

    s = unvalidated_snapshot(*authn_configs(), root=ROOT)
    m = PolicyMatcher(ns, labels, waypoint, services)
    assert keys(list_policies(s, m, "RequestAuthentication")) == want_ra
    assert keys(list_policies(s, m, "PeerAuthentication")) == want_pa
    assert namespace_mtls_mode(s, ns) == want_ns_mtls


# TestGetPoliciesForGatewayPolicyAttachmentOnly: the same configs with
# ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY=false; only the gateway case differs.
def test_gateway_policy_attachment_only():
    s = unvalidated_snapshot(*authn_configs(), root=ROOT)
    m = PolicyMatcher("foo", GW_FOO)
    got = list_policies(s, m, "RequestAuthentication", selector_based_k8s_gateway_policy=False)
    assert keys(got) == [("with-targetref", "foo")]


def test_namespace_mtls_without_mesh_peer_authn():
    # authentication_test.go TestGetPoliciesForWorkloadWithoutMeshPeerAuthn:
    # foo is STRICT from its own policy; bar and baz have no mode at all (MTLSUnknown).
    from meshauthz.mesh import namespace_mtls_mode

    s = unvalidated_snapshot(*authn_configs(with_mesh_peer_authn=False), root=ROOT)
    assert namespace_mtls_mode(s, "foo") == "STRICT"
    assert namespace_mtls_mode(s, "bar") is None
    assert namespace_mtls_mode(s, "baz") is None


def test_targetref_policies_never_attach_to_sidecars():
    # ShouldAttachPolicy: a non-Gateway-API workload ignores any policy with a
    # targetRef, even with a matching selector ("with-targetref" in bar above).
    s = unvalidated_snapshot(*authn_configs(), root=ROOT)
    got = list_policies(s, PolicyMatcher("bar", {"app": "httpbin"}), "RequestAuthentication")
    assert ("with-targetref", "bar") not in keys(got)

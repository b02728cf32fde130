"""PeerAuthentication composition, pinned with Istio's test table.

Source: pilot/pkg/security/authn/policy_applier_test.go TestComposePeerAuthentication
(root namespace "root-namespace"; "now" is any fixed time). Istio's policies named
"second ago" and "second later" are "second-ago" and "second-later" here: the API
server refuses a name with a space (not a DNS-1123 subdomain). The two sort by
name as before, which decides between policies created at the same time.
"""

from __future__ import annotations

import pytest

from meshauthz.mesh import compose_peer_authentication, effective_mtls, effective_mtls_mode
from meshauthz.resources.objects import PeerAuthentication
from tests.mesh.mesh_builders import manifests, pa, snapshot

ROOT = "root-namespace"
NOW = "2024-05-05T10:00:10Z"
SECOND_AGO = "2024-05-05T10:00:09Z"


def pas(*objs: dict) -> list[PeerAuthentication]:
    # The loader keeps document order, which is the order Istio's test passes them in.
    return list(manifests(*objs, root=ROOT).peer_authentications)


COMPOSE_CASES = [
    ("no config", [], "PERMISSIVE", {}),
    ("mesh only", [pa("default", ROOT, mode="STRICT")], "STRICT", {}),
    (
        "mesh vs namespace",
        [
            pa("default", ROOT, selector={}, mode="STRICT"),
            pa("default", "my-ns", mode="PERMISSIVE"),
        ],
        "PERMISSIVE",
        {},
    ),
    (
        "ignore non-emptypb selector in root namespace",
        [pa("default", ROOT, selector={"app": "foo"}, mode="STRICT")],
        "PERMISSIVE",
        {},
    ),
    (
        "workload vs namespace config",
        [pa("default", "my-ns"), pa("foo", "my-ns", selector={"app": "foo"})],
        "PERMISSIVE",
        {},
    ),
    (
        "workload vs mesh config",
        [pa("default", "my-ns", mode="PERMISSIVE"), pa("default", ROOT, mode="DISABLE")],
        "PERMISSIVE",
        {},
    ),
    (
        "multiple mesh policy",
        [
            pa("now", ROOT, mode="DISABLE", created=NOW),
            pa("second-ago", ROOT, mode="PERMISSIVE", created=SECOND_AGO),
            pa("second-later", ROOT, mode="STRICT", created=SECOND_AGO),
        ],
        "PERMISSIVE",
        {},
    ),
    (
        "multiple namespace policy",
        [
            pa("now", "my-ns", mode="DISABLE", created=NOW),
            pa("second-ago", "my-ns", mode="PERMISSIVE", created=SECOND_AGO),
            pa("second-later", "my-ns", mode="STRICT", created=SECOND_AGO),
        ],
        "PERMISSIVE",
        {},
    ),
    (
        "multiple workload policy",
        [
            pa("now", "my-ns", selector={"app": "foo"}, mode="DISABLE", created=NOW),
            pa(
                "second-ago",
                "my-ns",
                selector={"app": "foo"},
                mode="PERMISSIVE",
                created=SECOND_AGO,
            ),
            pa(
                "second-later",
                "my-ns",
                selector={"stage": "prod"},
                mode="STRICT",
                created=SECOND_AGO,
            ),
        ],
        "PERMISSIVE",
        {},
    ),
    ("inheritance: default mesh", [pa("default", ROOT, mode="UNSET")], "PERMISSIVE", {}),
    (
        "inheritance: mesh to workload",
        [pa("default", ROOT, mode="STRICT"), pa("foo", "my-ns", selector={"app": "foo"})],
        "STRICT",
        {},
    ),
    (
        "inheritance: namespace to workload",
        [pa("default", "my-ns", mode="STRICT"), pa("foo", "my-ns", selector={"app": "foo"})],
        "STRICT",
        {},
    ),
    (
        "inheritance: mesh to namespace to workload",
        [
            pa("default", ROOT, mode="STRICT"),
            pa("default", "my-ns", mode="UNSET"),
            pa("foo", "my-ns", selector={"app": "foo"}),
        ],
        "STRICT",
        {},
    ),
    (
        "port level",
        [
            pa("default", ROOT, mode="STRICT"),
            pa(
                "foo",
                "my-ns",
                selector={"app": "foo"},
                ports={80: "DISABLE", 90: "UNSET", 100: None},
            ),
        ],
        "STRICT",
        {80: "DISABLE", 90: "STRICT", 100: "STRICT"},
    ),
]


@pytest.mark.parametrize(
    "name,objs,mode,per_port", COMPOSE_CASES, ids=[c[0] for c in COMPOSE_CASES]
)
def test_compose_peer_authentication(name, objs, mode, per_port):
    got = compose_peer_authentication(ROOT, pas(*objs))
    assert got.mode == mode
    assert dict(got.per_port) == per_port


def test_compose_reports_what_decided_and_what_was_ignored():
    got = compose_peer_authentication(
        ROOT,
        pas(
            pa("now", ROOT, mode="DISABLE", created=NOW),
            pa("second-ago", ROOT, mode="PERMISSIVE", created=SECOND_AGO),
            pa("sel", ROOT, selector={"app": "x"}, mode="STRICT"),
        ),
    )
    assert got.mesh_policy is not None and got.mesh_policy.name == "second-ago"
    ignored = {p.name: why for p, why in got.ignored}
    assert set(ignored) == {"now", "sel"}
    assert "root namespace" in ignored["sel"]


def test_mode_for_port_falls_back_to_workload_mode():
    # GetMutualTLSModeForPort: the per-port entry, else the composed mode.
    got = compose_peer_authentication(
        ROOT,
        pas(pa("foo", "my-ns", selector={"app": "foo"}, mode="STRICT", ports={8080: "DISABLE"})),
    )
    assert got.mode_for_port(8080) == "DISABLE"
    assert got.mode_for_port(80) == "STRICT"
    assert got.source_for_port(8080) is got.workload_policy


def test_effective_mtls_for_a_workload():
    # Selection (TestGetPoliciesForWorkload "Match workload labels in foo": default/foo
    # STRICT, peer-with-selector DISABLE, default/root UNSET) composed as
    # ComposePeerAuthentication does: the workload policy wins.
    from tests.mesh.mesh_builders import deployment

    objs = [
        pa("default", "istio-system", mode="UNSET"),
        pa("default", "foo", mode="STRICT"),
        pa(
            "peer-with-selector",
            "foo",
            selector={"version": "v1"},
            mode="DISABLE",
            ports={9000: "STRICT"},
        ),
        deployment("httpbin", "foo", {"app": "httpbin", "version": "v1"}),
        deployment("other", "foo", {"app": "other"}),
    ]
    s = snapshot(*objs)
    assert effective_mtls_mode(s, "foo/httpbin", 80) == "DISABLE"
    assert effective_mtls_mode(s, "foo/httpbin", 9000) == "STRICT"
    assert effective_mtls_mode(s, "foo/other", 80) == "STRICT"
    e = effective_mtls(s, "foo/other")
    assert e.namespace_policy is not None and e.namespace_policy.key == "foo/default"

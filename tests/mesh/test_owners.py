"""One workload is one workload: a Deployment, its ReplicaSets and its Pods (as
``kubectl get all -o yaml`` lists them) are folded by ``metadata.ownerReferences``,
or by the ``pod-template-hash`` naming convention when the references were stripped.
And each workload's sidecar, as the injector decides it."""

from __future__ import annotations

from pathlib import Path

from meshauthz.mesh.injection import Why
from meshauthz.mesh.loading import load_mesh
from meshauthz.mesh.ports import resolve_target
from tests.mesh.mesh_builders import deployment, meta, namespace, pod, snapshot

GET_ALL = Path(__file__).parent / "fixtures" / "kubectl-get-all.yaml"


def test_kubectl_get_all_is_one_workload():
    s = load_mesh([str(GET_ALL)]).snapshot
    assert [w.key for w in s.workloads] == ["foo/httpbin"]
    w = s.workloads[0]
    assert w.kind == "Deployment"
    assert sorted((m.kind, m.name) for m in w.members) == [
        ("Pod", "httpbin-7b549f7859-4xv8z"),
        ("Pod", "httpbin-7b549f7859-q2k9d"),
        ("ReplicaSet", "httpbin-7b549f7859"),
    ]
    # the pods' address, not a synthetic one: the first pod's by name
    assert (w.address, w.address_synthetic) == ("10.244.0.17", False)
    t = resolve_target(s, "foo/httpbin:8000")
    assert (t.workload, t.port, t.via) == (w, 8080, "service")
    # a pod's or ReplicaSet's own name still names the workload
    assert s.workload("foo/httpbin-7b549f7859-q2k9d") is w
    assert s.workload("foo/httpbin-7b549f7859") is w


def _owned(obj: dict, kind: str, name: str, uid: str = "") -> dict:
    ref = {"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": True}
    if uid:
        ref["uid"] = uid
    obj["metadata"]["ownerReferences"] = [ref]
    return obj


def _replicaset(name: str, ns: str, labels: dict[str, str]) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta(name, ns, labels),
        "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": []}}},
    }


def test_owner_by_name_when_there_is_no_uid():
    s = snapshot(
        deployment("web", "ns", {"app": "web"}),
        _owned(pod("web-abc", "ns", {"app": "web"}, ip="10.1.2.3"), "Deployment", "web"),
    )
    assert [w.key for w in s.workloads] == ["ns/web"]
    assert s.workloads[0].address == "10.1.2.3"


def test_owner_by_uid_wins_over_name():
    d = deployment("web", "ns", {"app": "web"})
    d["metadata"]["uid"] = "u-1"
    other = deployment("web2", "ns", {"app": "web"})
    p = _owned(pod("web-abc", "ns", {"app": "web"}), "Deployment", "web2", uid="u-1")
    s = snapshot(d, other, p)
    assert sorted(w.key for w in s.workloads) == ["ns/web", "ns/web2"]
    assert [m.name for m in s.workload("ns/web").members] == ["web-abc"]


def test_a_non_controller_reference_or_an_absent_owner_keeps_the_object():
    p = _owned(pod("web-abc", "ns", {"app": "web"}), "ReplicaSet", "gone")
    q = pod("other", "ns", {"app": "other"})
    q["metadata"]["ownerReferences"] = [{"kind": "Deployment", "name": "web", "controller": False}]
    s = snapshot(deployment("web", "ns", {"app": "web"}), p, q)
    assert sorted(w.key for w in s.workloads) == ["ns/other", "ns/web", "ns/web-abc"]


def test_pod_template_hash_without_owner_references():
    labels = {"app": "web", "pod-template-hash": "5d9c7"}
    s = snapshot(
        deployment("web", "ns", {"app": "web"}),
        _replicaset("web-5d9c7", "ns", labels),
        pod("web-5d9c7-x1y2z", "ns", labels),
        # the hash alone, with a name that does not end in it, proves nothing
        pod("unrelated", "ns", labels),
    )
    assert sorted(w.key for w in s.workloads) == ["ns/unrelated", "ns/web"]
    assert len(s.workload("ns/web").members) == 2


def test_pod_template_hash_to_the_deployment_when_the_replicaset_is_absent():
    labels = {"app": "web", "pod-template-hash": "5d9c7"}
    s = snapshot(deployment("web", "ns", {"app": "web"}), pod("web-5d9c7-x1y2z", "ns", labels))
    assert [w.key for w in s.workloads] == ["ns/web"]


def test_injection_assumed_until_a_namespace_opts_in():
    # nothing in the input enables injection by label: every workload is injected,
    # unless it or its namespace opts out
    s = snapshot(
        namespace("legacy", {"istio-injection": "disabled"}),
        deployment("a", "foo", {"app": "a"}),
        deployment("b", "legacy", {"app": "b"}),
    )
    assert s.workload("foo/a").has_proxy and s.workload("foo/a").injection.why is Why.ASSUMED
    assert not s.workload("legacy/b").has_proxy
    # once a namespace enables it by label, one without a label is not injected
    s = snapshot(
        namespace("foo", {"istio-injection": "enabled"}),
        namespace("bar"),
        deployment("a", "foo", {"app": "a"}),
        deployment("b", "bar", {"app": "b"}),
        deployment("c", "undeclared", {"app": "c"}),
    )
    assert s.workload("foo/a").has_proxy
    assert s.workload("bar/b").injection.why is Why.NO_LABEL
    # a namespace the input does not declare: its labels are unknown, taken as injected
    assert s.workload("undeclared/c").injection.why is Why.UNDECLARED_NAMESPACE
    assert s.workload("undeclared/c").has_proxy


def test_injection_reads_the_pod_template_not_the_controller():
    d = deployment("a", "foo", {"app": "a"})
    d["metadata"]["annotations"] = {"sidecar.istio.io/inject": "false"}  # not the pods'
    s = snapshot(d)
    assert s.workload("foo/a").has_proxy
    d["spec"]["template"]["metadata"]["annotations"] = {"sidecar.istio.io/inject": "false"}
    s = snapshot(d)
    assert s.workload("foo/a").injection.why is Why.POD_ANNOTATION_OPT_OUT


def test_host_network_pods_get_no_sidecar():
    d = deployment("a", "foo", {"app": "a"})
    d["spec"]["template"]["spec"]["hostNetwork"] = True
    assert snapshot(d).workload("foo/a").injection.why is Why.HOST_NETWORK

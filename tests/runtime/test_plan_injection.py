"""``mesh up`` plans a sidecar exactly where istiod's injector would put one
(``mesh.injection``: the namespace's labels too, not only the pod's), and one
Envoy per workload however many objects ``kubectl get all`` lists for it."""

from __future__ import annotations

from pathlib import Path

from meshauthz.runtime.controlplane import load_snapshot
from meshauthz.runtime.plan import make_plan

from .conftest import REPO

MIGRATION = REPO / "tests" / "decide" / "fixtures" / "mtls-migration"
GET_ALL = REPO / "tests" / "mesh" / "fixtures" / "kubectl-get-all.yaml"


def _plan(path: Path, state: Path):
    snapshot = load_snapshot(str(path))
    return make_plan(
        snapshot, name="inject", manifests=str(path), state_dir=state, cert_ttl_seconds=3600
    )


def test_namespace_label_and_pod_annotation_decide_the_sidecar(tmp_path: Path) -> None:
    plan = _plan(MIGRATION, tmp_path / "state")
    sidecars = {k: w.sidecar for k, w in plan.workloads.items()}
    assert sidecars == {
        "bar/sleep": False,  # pod template annotated sidecar.istio.io/inject: "false"
        "foo/httpbin": True,
        "foo/sleep": True,
        "legacy/sleep": False,  # namespace labelled istio-injection: disabled
    }
    # without a sidecar the application listens on the workload's port itself,
    # and the workload has no outbound listeners: its client sends plaintext
    legacy = plan.workloads["legacy/sleep"]
    assert legacy.inbound == legacy.app_ports and not legacy.outbound_http


def test_kubectl_get_all_plans_one_envoy(tmp_path: Path) -> None:
    plan = _plan(GET_ALL, tmp_path / "state")
    assert list(plan.workloads) == ["foo/httpbin"]


def test_the_command_comes_from_the_pod_template_then_the_object(tmp_path: Path) -> None:
    """mesh.meshauthz.io/command: a pod template's annotation over its
    Deployment's own; a Pod's own."""
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "workloads.yaml").write_text(
        """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: foo
  annotations: {mesh.meshauthz.io/command: "from the deployment"}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {mesh.meshauthz.io/command: "from the template"}
    spec:
      containers: [{name: web, image: x, ports: [{containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: foo
  annotations: {mesh.meshauthz.io/command: "from the deployment"}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: x, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata:
  name: tool
  namespace: foo
  annotations: {mesh.meshauthz.io/command: "from the pod"}
spec:
  containers: [{name: tool, image: x}]
"""
    )
    plan = _plan(d, tmp_path / "state")
    assert {k: w.command for k, w in plan.workloads.items()} == {
        "foo/api": "from the deployment",
        "foo/tool": "from the pod",
        "foo/web": "from the template",
    }


def test_mesh_enforces_injection_as_check_decides(mesh_runner, tmp_path: Path) -> None:
    """Real Envoys: the caller in the namespace labelled istio-injection: disabled
    connects without a sidecar and the STRICT destination resets it, as check says;
    the injected caller gets through."""
    import shutil

    from meshauthz.runtime import client

    from .test_one_truth import check_all

    d = tmp_path / "migration"
    shutil.copytree(MIGRATION, d)
    mesh = mesh_runner(d)
    url = "http://httpbin.foo.svc.cluster.local:8000/get"
    got, sent = [], []
    for caller in ("legacy/sleep", "bar/sleep", "foo/sleep"):
        r = mesh.curl(caller, url)
        got.append(r.status)
        sent.append(
            client.check_request(
                r, mesh.plan.workload(caller), plaintext=False, method="GET", path="/get", jwt=None
            )
        )
    assert got == [client.RESET, client.RESET, 200]
    # check, told only the workloads (not that they send plaintext), agrees
    for want in sent:
        want["from"] = want["from"]["workload"]
    expected = check_all(d, sent, tmp_path)
    assert [e["status"] for e in expected] == ["connection reset", "connection reset", 200]

"""``validate`` notes a workload that asks ``meshauthz mesh up`` to run a command."""

from __future__ import annotations

from tests.validation.validation_helpers import check_text, errors, warnings

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: foo
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations:
        mesh.meshauthz.io/command: "python3 -m http.server"
    spec:
      containers: [{name: web, image: x}]
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: tool
  namespace: foo
  annotations:
    mesh.meshauthz.io/command: "sleep 1"
spec:
  containers: [{name: tool, image: x}]
"""


def test_command_annotation_on_a_pod_template_is_a_warning() -> None:
    _, findings = check_text(DEPLOYMENT)
    assert not errors(findings)
    (w,) = warnings(findings)
    assert (w.code, w.kind, w.namespace, w.name, w.location.line) == (
        "mesh-command-annotation",
        "Deployment",
        "foo",
        "web",
        12,
    )
    assert w.field == "spec.template.metadata.annotations.mesh.meshauthz.io/command"
    assert "--run-commands" in w.message and "python3 -m http.server" in w.message


def test_command_annotation_on_a_pod() -> None:
    _, findings = check_text(POD)
    (w,) = warnings(findings)
    assert (w.code, w.name, w.location.line) == ("mesh-command-annotation", "tool", 7)


def test_command_annotation_on_a_deployment_and_its_template() -> None:
    text = DEPLOYMENT.replace(
        "  namespace: foo\n", '  namespace: foo\n  annotations: {mesh.meshauthz.io/command: "a"}\n'
    )
    _, findings = check_text(text)
    assert [(w.field, w.location.line) for w in warnings(findings)] == [
        ("metadata.annotations.mesh.meshauthz.io/command", 6),
        ("spec.template.metadata.annotations.mesh.meshauthz.io/command", 13),
    ]
    assert "'a'" in warnings(findings)[0].message


def test_no_annotation_no_note() -> None:
    text = DEPLOYMENT.replace('        mesh.meshauthz.io/command: "python3 -m http.server"\n', "")
    text = text.replace("      annotations:\n", "")
    _, findings = check_text(text)
    assert findings == []

"""What a large mesh holds once: the typed models of equal shape share the set of
fields given (each model still says which fields were written), objects keep
the labels their metadata model holds rather than copies, and equal strings of
a file are one string."""

from __future__ import annotations

from pathlib import Path

from meshauthz.resources.loader import load
from meshauthz.resources.objects import AuthorizationPolicy

TEXT = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: ns, labels: {team: x}}
spec:
  selector: {matchLabels: {app: a}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/ns/sa/x"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/a"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: b, namespace: ns}
spec:
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/ns/sa/x"]}}]
    to: [{operation: {methods: ["GET"]}}]
  - when: [{key: "request.headers[x]", values: ["1"]}]
"""


def _policies(tmp_path: Path) -> tuple[AuthorizationPolicy, AuthorizationPolicy]:
    """TEXT's two policies, loaded cleanly."""
    f = tmp_path / "p.yaml"
    f.write_text(TEXT)
    loaded = load([str(f)])
    assert not loaded.unreadable and not loaded.findings
    a, b = loaded.manifests.authorization_policies
    return a, b


def test_models_of_one_shape_share_the_set_of_fields_given(tmp_path: Path) -> None:
    a, b = _policies(tmp_path)
    ra, rb, rb2 = a.spec.rules[0], b.spec.rules[0], b.spec.rules[1]
    assert a.spec.model_fields_set == {"selector", "rules"}
    assert b.spec.model_fields_set == {"action", "rules"}
    assert ra.model_fields_set == rb.model_fields_set == {"from_", "to"}
    assert rb2.model_fields_set == {"when"}
    assert ra.model_fields_set is rb.model_fields_set
    assert ra.from_[0].source.model_fields_set is rb.from_[0].source.model_fields_set
    op_a, op_b = ra.to[0].operation, rb.to[0].operation
    assert op_a.model_fields_set == {"methods", "paths"} and op_b.model_fields_set == {"methods"}
    assert b.spec.rules[1].when[0].model_fields_set == {"key", "values"}
    # what is written decides what is dumped, as before
    assert op_b.model_dump(exclude_unset=True) == {"methods": ("GET",)}
    # a copy with changes has a set of its own: the shared one is left alone
    copied = rb.model_copy(update={"when": ()})
    assert copied.model_fields_set == {"from_", "to", "when"}
    assert ra.model_fields_set == {"from_", "to"}


def test_objects_hold_their_metadata_and_strings_once(tmp_path: Path) -> None:
    a, b = _policies(tmp_path)
    assert a.labels == {"team": "x"} and b.labels == {} and b.annotations == {}
    pa = a.spec.rules[0].from_[0].source.principals[0]
    pb = b.spec.rules[0].from_[0].source.principals[0]
    assert pa == pb == "cluster.local/ns/ns/sa/x" and pa is pb

"""What a large mesh holds, and how: the typed models are frozen Structs that the
garbage collector never walks, objects keep the labels their metadata model
holds rather than copies, and equal strings of a file are one string."""

from __future__ import annotations

import gc
from pathlib import Path

import msgspec
import pytest

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


def test_models_are_frozen_and_untracked_by_the_collector(tmp_path: Path) -> None:
    a, b = _policies(tmp_path)
    ra, rb, rb2 = a.spec.rules[0], b.spec.rules[0], b.spec.rules[1]
    op_a = ra.to[0].operation
    models = (a.spec, b.spec, ra, rb, rb2, ra.from_[0], ra.from_[0].source, ra.to[0], op_a)
    models += (a.spec.selector, b.spec.rules[1].when[0])
    assert not any(gc.is_tracked(m) for m in models)
    with pytest.raises(AttributeError):
        op_a.methods = ("POST",)  # type: ignore[misc]
    # what is written (the fields holding other than their defaults), by its names
    assert msgspec.to_builtins(op_a) == {"methods": ("GET",), "paths": ("/a",)}
    assert msgspec.to_builtins(b.spec.rules[1]) == {
        "when": ({"key": "request.headers[x]", "values": ("1",)},)
    }
    assert msgspec.to_builtins(ra)["from"] == (
        {"source": {"principals": ("cluster.local/ns/ns/sa/x",)}},
    )
    # a copy with changes leaves the original alone
    copied = msgspec.structs.replace(rb, when=rb2.when)
    assert copied.when == rb2.when and rb.when == () and copied.to is rb.to


def test_objects_hold_their_metadata_and_strings_once(tmp_path: Path) -> None:
    a, b = _policies(tmp_path)
    assert a.labels == {"team": "x"} and b.labels == {} and b.annotations == {}
    assert b.labels is a.annotations  # the maps not written: one empty map
    pa = a.spec.rules[0].from_[0].source.principals[0]
    pb = b.spec.rules[0].from_[0].source.principals[0]
    assert pa == pb == "cluster.local/ns/ns/sa/x" and pa is pb

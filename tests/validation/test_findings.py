"""Findings name the field and point at its line; warnings stay apart from errors."""

from __future__ import annotations

from tests.validation.validation_helpers import check_text, errors, warnings

POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: foo
spec:
  action: DENY
  rules:
  - to:
    - operation:
        methods:
        - GET
        - ""
        paths: ["/a/{**}/{*}"]
    when:
    - key: source.ip
      values: ["10.0.0.0/8", "10.0.0.1/33"]
"""


def test_error_fields_and_lines() -> None:
    _, findings = check_text(POLICY, "p.yaml")
    by_field = {f.field: f for f in errors(findings)}
    empty = by_field["spec.rules[0].to[0].operation.methods[1]"]
    assert (empty.code, empty.location.file, empty.location.line) == ("empty-value", "p.yaml", 13)
    tmpl = by_field["spec.rules[0].to[0].operation.paths[0]"]
    assert (tmpl.code, tmpl.location.line) == ("invalid-path-template", 14)
    ip = by_field["spec.rules[0].when[0].values[1]"]
    assert (ip.code, ip.location.line) == ("invalid-condition-value", 17)
    assert all(
        (f.kind, f.namespace, f.name) == ("AuthorizationPolicy", "foo", "p") for f in findings
    )


def test_warning_is_not_an_error() -> None:
    # Istio's L7DenyWithTo case: a DENY rule with only HTTP fields warns and is accepted.
    text = POLICY.split('        - ""\n')[0].replace("        - GET\n", "        - GET\n")
    _, findings = check_text(text.rstrip() + "\n")
    assert not errors(findings)
    (warning,) = warnings(findings)
    assert (warning.code, warning.field, warning.location.line) == (
        "deny-http-only",
        "spec.rules[0]",
        9,
    )


def test_shared_check_reported_once() -> None:
    # The CRD's CEL rule and Istio's webhook both reject a wildcard label key: one finding.
    text = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa, namespace: foo}
spec:
  selector:
    matchLabels:
      "app*": x
"""
    _, findings = check_text(text)
    assert [(f.code, f.field, f.location.line) for f in findings] == [
        ("selector-wildcard", "spec.selector.matchLabels.app*", 7)
    ]


def test_an_object_defined_twice_is_an_error_naming_both_places(tmp_path) -> None:
    from meshauthz.resources.loader import load
    from meshauthz.resources.validation import validate

    policy = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: p, namespace: foo}\nspec:\n  action: DENY\n  rules: [{}]\n"
    )
    (tmp_path / "a.yaml").write_text(policy)
    (tmp_path / "b.yaml").write_text(policy.replace("DENY", "AUDIT"))
    # the same name in another API group's kind, or another namespace, is another object
    (tmp_path / "c.yaml").write_text(policy.replace("namespace: foo", "namespace: bar"))
    loaded = load([str(tmp_path)])
    dups = [f for f in validate(loaded.manifests) if f.code == "duplicate-object"]
    assert len(dups) == 1
    (d,) = dups
    assert d.severity == "error" and (d.kind, d.namespace, d.name) == (
        "AuthorizationPolicy",
        "foo",
        "p",
    )
    assert d.location.file.endswith("b.yaml") and f"{tmp_path / 'a.yaml'}:1" in d.message

"""Typing a document's values (resources.structs): every error of a document in
one run, each at its field's line and column, in Kubernetes' words; no value
coerced; null lists and maps read as not written."""

from __future__ import annotations

import msgspec
import pytest

from meshauthz.resources.istio import AuthorizationPolicySpec, JWTRule, Rule
from meshauthz.resources.k8s import ServicePort
from meshauthz.resources.loader import LoadResult, load
from meshauthz.resources.structs import convert


def _load(write, text: str) -> tuple[LoadResult, list[str]]:
    """The loaded result and its findings as ``line:column field: message``."""
    loaded = load([write("m.yaml", text)])
    shown = [
        f"{f.location.line}:{f.location.column} {f.field}: {f.message}" for f in loaded.findings
    ]
    return loaded, shown


def test_every_error_of_a_spec_in_field_order_unknown_fields_last(write) -> None:
    # a wrong type, a missing required field and unknown fields, nested in lists
    _, shown = _load(
        write,
        """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  bogus: 1
  targetRefs:
  - {name: gw}
  rules:
  - from:
    - source: {principals: [1, "ok", true], nope: x}
    to:
    - operation: {methods: GET}
  - when:
    - {values: ["a"]}
  action: MAYBE
""",
    )
    assert shown == [
        "7:5 spec.targetRefs[0].kind: required field is missing",
        "10:29 spec.rules[0].from[0].source.principals[0]: expected a string, got a number (1)",
        "10:38 spec.rules[0].from[0].source.principals[2]: expected a string, got a boolean (true)",
        '10:45 spec.rules[0].from[0].source.nope: unknown field "nope"',
        '12:19 spec.rules[0].to[0].operation.methods: expected a list, got a string ("GET")',
        "14:7 spec.rules[1].when[0].key: required field is missing",
        '15:3 spec.action: unsupported value "MAYBE"; supported values: "ALLOW", "DENY", "AUDIT", "CUSTOM"',
        '5:3 spec.bogus: unknown field "bogus"',
    ]


def test_no_coercion(write) -> None:
    _, shown = _load(
        write,
        """\
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports:
  - {port: "80", targetPort: 1.5}
  - {port: 81, targetPort: true}
  - {port: 82, targetPort: web}
  - {port: 83, targetPort: 8080}
""",
    )
    assert shown == [
        '6:6 spec.ports[0].port: expected an integer, got a string ("80")',
        # targetPort is an integer or a name: what each alternative finds wrong
        "6:18 spec.ports[0].targetPort: expected an integer, got a number (1.5)",
        "6:18 spec.ports[0].targetPort: expected a string, got a number (1.5)",
        "7:16 spec.ports[1].targetPort: expected an integer, got a boolean (true)",
        "7:16 spec.ports[1].targetPort: expected a string, got a boolean (true)",
    ]


def test_null_lists_and_maps_are_not_written(write) -> None:
    loaded, shown = _load(
        write,
        """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, labels: null}
spec:
  selector: {matchLabels: null}
  targetRefs: null
  rules:
  - from: null
    to:
    - operation: {methods: null, paths: ["/a"]}
    when: null
""",
    )
    assert shown == []
    p = loaded.manifests.authorization_policies[0]
    assert p.labels == {} and p.spec.selector is not None and p.spec.selector.match_labels == {}
    assert p.spec.target_refs == () and p.spec.rules[0].from_ == ()
    op = p.spec.rules[0].to[0].operation
    assert op is not None and op.methods == () and op.paths == ("/a",)


def test_null_where_a_value_is_required(write) -> None:
    # null is "not written" for a list or map only: a string, a mode, a map's value are not
    _, shown = _load(
        write, "apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: {a: null}}\n"
    )
    assert shown == ["3:30 metadata.labels.a: expected a string, got null"]
    _, shown = _load(
        write,
        """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa}
spec:
  mtls: {mode: null}
  portLevelMtls: {"8080": null, "9090": {mode: strict}}
""",
    )
    supported = '"UNSET", "DISABLE", "PERMISSIVE", "STRICT"'
    assert shown == [
        f"5:10 spec.mtls.mode: unsupported value null; supported values: {supported}",
        "6:19 spec.portLevelMtls.8080: expected a mapping, got null",
        f'6:42 spec.portLevelMtls.9090.mode: unsupported value "strict"; supported values: {supported}',
    ]


def test_an_objects_spec_metadata_and_status_are_mappings_or_null(write) -> None:
    # null is "not written", as for a map within them; any other value is an
    # error, false ones (0, "", []) too
    loaded, shown = _load(
        write,
        """\
apiVersion: v1
kind: Pod
metadata: {name: a}
spec: null
status: null
---
apiVersion: v1
kind: Pod
metadata: {name: b}
spec: {}
status: 0
---
apiVersion: v1
kind: Namespace
metadata: []
""",
    )
    assert shown == [
        "11:1 status: expected a mapping, got a number (0)",
        "15:1 metadata: expected a mapping, got a list",
    ]
    assert [w.name for w in loaded.manifests.workloads] == ["a"]


def test_from_and_both_spellings_of_jwks_uri(write) -> None:
    loaded, shown = _load(
        write,
        """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r}
spec:
  jwtRules:
  - {issuer: a, jwksUri: "https://a/jwks"}
  - {issuer: b, jwks_uri: "https://b/jwks", presence: SOMETIMES}
  - {issuer: c, jwks_uri: "https://c/jwks"}
  - {issuer: d, jwksURI: "https://d/jwks"}
""",
    )
    assert shown == [
        '7:45 spec.jwtRules[1].presence: unsupported value "SOMETIMES"; '
        'supported values: "OPTIONAL", "REQUIRED"',
        '9:17 spec.jwtRules[3].jwksURI: unknown field "jwksURI"',
    ]
    # the rules without errors are not read: the object is left out, as a cluster refuses it
    assert loaded.manifests.request_authentications == []
    rules = [
        convert({"issuer": i, k: f"https://{i}"}, JWTRule)[0]
        for i, k in (("a", "jwksUri"), ("c", "jwks_uri"))
    ]
    assert [r.jwks_url for r in rules if r is not None] == ["https://a", "https://c"]
    # `from` is the field from_, written `from`; from_ is not a field of the manifest
    rule, problems = convert({"from": [{"source": {"namespaces": ["x"]}}]}, Rule)
    assert not problems and rule is not None and rule.from_[0].source is not None
    assert convert({"from_": []}, Rule) == (None, [(("from_",), 'unknown field "from_"')])


def test_every_error_once_whatever_the_order_of_keys() -> None:
    value, problems = convert(
        {
            "action": 1,
            "rules": [{"to": [{"operation": []}]}, "x"],
            "selector": {"matchLabels": {"a": 1}},
        },
        AuthorizationPolicySpec,
    )
    assert value is None
    assert problems == [
        (("selector", "matchLabels", "a"), "expected a string, got a number (1)"),
        (("rules", 0, "to", 0, "operation"), "expected a mapping, got a list"),
        (("rules", 1), 'expected a mapping, got a string ("x")'),
        (
            ("action",),
            'unsupported value a number (1); supported values: "ALLOW", "DENY", "AUDIT", "CUSTOM"',
        ),
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"port": 80.0}, (("port",), "expected an integer, got a number (80.0)")),
        ({"port": True}, (("port",), "expected an integer, got a boolean (true)")),
        ({"port": 1, "protocol": 6}, (("protocol",), "expected a string, got a number (6)")),
        ({"name": "x"}, (("port",), "required field is missing")),
    ],
)
def test_strict_types(data: dict[str, object], problem: tuple[object, str]) -> None:
    assert convert(data, ServicePort) == (None, [problem])


def test_fields_not_modelled_of_kubernetes_kinds_are_ignored() -> None:
    port, problems = convert({"port": 1, "nodePort": "x", "targetPort": None}, ServicePort)
    assert not problems and port == msgspec.convert({"port": 1}, ServicePort)


def _structs() -> list[type[msgspec.Struct]]:
    from meshauthz.resources import istio, k8s

    return [
        c
        for m in (istio, k8s)
        for c in vars(m).values()
        if isinstance(c, type)
        and issubclass(c, msgspec.Struct)
        and c.__module__ == m.__name__
        and msgspec.structs.fields(c)  # not the bases
    ]


@pytest.mark.parametrize("cls", _structs(), ids=lambda c: c.__name__)
def test_the_walk_reads_every_field_type_of_the_models(cls: type[msgspec.Struct]) -> None:
    # a value of no JSON type in every field: each field is reported (none is a type
    # the walk does not know), at its name as written
    fields = msgspec.structs.fields(cls)
    value, problems = convert({f.encode_name: object() for f in fields}, cls)
    assert value is None
    assert {p[0] for p, _ in problems} == {f.encode_name for f in fields}

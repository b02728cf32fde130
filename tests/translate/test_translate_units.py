"""Unit tests of the builder's pieces.

Expectations come from istio/istio's own unit tests (cited per test) or from
reading istiod's code (pilot/pkg/security/authz), as noted.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from meshauthz.envoy.rbac.model import (
    RBAC,
    Action,
    IdAnd,
    IdAuthenticated,
    IdOr,
    Note,
    PermAnd,
    PermAny,
    PermHeader,
    PermOr,
    Policy,
    StringMatcher,
)
from meshauthz.mesh.loading import load_mesh
from meshauthz.resources.loader import load
from meshauthz.resources.meshconfig import ExtensionProvider
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.translate import BuildOptions, Chain, Problem, TrustDomainBundle, build
from meshauthz.translate import matchers as m
from meshauthz.translate.rule import _request_principal


def _policies(tmp_path: Path, text: str) -> list[AuthorizationPolicy]:
    f = tmp_path / "policies.yaml"
    f.write_text(textwrap.dedent(text).lstrip())
    return load_mesh([str(f)]).manifests.authorization_policies


def _unvalidated_policies(tmp_path: Path, text: str) -> list[AuthorizationPolicy]:
    """Policies Istio's webhook would reject, read without validation: istiod's
    builder still meets them (objects stored before a check existed) and must
    handle them as istiod does."""
    f = tmp_path / "policies.yaml"
    f.write_text(textwrap.dedent(text).lstrip())
    loaded = load([str(f)])
    assert not loaded.errors, loaded.errors
    return loaded.manifests.authorization_policies


def _only_policy(result_filter: object) -> tuple[str, Policy]:
    rules = getattr(result_filter, "rules", None)
    assert isinstance(rules, RBAC) and len(rules.policies) == 1
    return rules.policies[0]


# --- notes ----------------------------------------------------------------------

NOTES_YAML = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: get-only
  namespace: foo
spec:
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/a/sa/b"]
    to:
    - operation:
        methods: ["GET"]
    when:
    - key: request.headers[x-id]
      values: ["1"]
"""


def _line_of(text: str, needle: str) -> int:
    lines = textwrap.dedent(text).lstrip().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_method_leaf_note_points_at_the_value(tmp_path: Path) -> None:
    [p] = _policies(tmp_path, NOTES_YAML)
    [f] = build([p], Chain.HTTP).filters
    name, pol = _only_policy(f.filter)
    assert name == "ns[foo]-policy[get-only]-rule[0]"
    [perm] = pol.permissions
    assert isinstance(perm, PermAnd)
    [methods] = perm.rules
    assert isinstance(methods, PermOr)
    [leaf] = methods.rules
    assert isinstance(leaf, PermHeader) and leaf.header.name == ":method"
    line = _line_of(NOTES_YAML, 'methods: ["GET"]')
    assert leaf.note == Note(
        policy="foo/get-only",
        rule=0,
        section="to",
        field="operation.methods",
        value="GET",
        file=str(tmp_path / "policies.yaml"),
        line=line,
    )
    # The OR wrapper points at the list, the AND at the `to` element.
    assert methods.note is not None and methods.note.field == "operation.methods"
    assert methods.note.line == line and methods.note.value is None
    assert perm.note is not None and perm.note.section == "to"
    assert perm.note.line == _line_of(NOTES_YAML, "- operation:")
    assert pol.note is not None and pol.note.rule == 0
    assert pol.note.line == _line_of(NOTES_YAML, "- from:")


def test_principal_and_when_notes(tmp_path: Path) -> None:
    [p] = _policies(tmp_path, NOTES_YAML)
    [f] = build([p], Chain.HTTP).filters
    _, pol = _only_policy(f.filter)
    [ids] = pol.principals
    assert isinstance(ids, IdAnd)
    principals, header = ids.ids
    assert isinstance(principals, IdOr)
    [leaf] = principals.ids
    assert isinstance(leaf, IdAuthenticated)
    assert leaf.note is not None
    assert (leaf.note.section, leaf.note.field, leaf.note.value) == (
        "from",
        "source.principals",
        "cluster.local/ns/a/sa/b",
    )
    assert leaf.note.line == _line_of(NOTES_YAML, "principals:")
    assert isinstance(header, IdOr)
    [hleaf] = header.ids
    assert hleaf.note is not None
    assert (hleaf.note.section, hleaf.note.field, hleaf.note.value) == (
        "when",
        "request.headers[x-id]",
        "1",
    )
    assert hleaf.note.line == _line_of(NOTES_YAML, 'values: ["1"]')


def test_rule_without_to_gets_any_with_a_note(tmp_path: Path) -> None:
    [p] = _policies(
        tmp_path, NOTES_YAML.replace('    to:\n    - operation:\n        methods: ["GET"]\n', "")
    )
    [f] = build([p], Chain.HTTP).filters
    _, pol = _only_policy(f.filter)
    [perm] = pol.permissions
    assert isinstance(perm, PermAnd)
    [anything] = perm.rules
    assert isinstance(anything, PermAny)
    assert anything.note is not None and anything.note.policy == "foo/get-only"


def test_notes_do_not_change_equality(tmp_path: Path) -> None:
    [p] = _policies(tmp_path, NOTES_YAML)
    a = build([p], Chain.HTTP).filters[0].filter
    other = tmp_path / "other"
    other.mkdir()
    [q] = _policies(other, "\n\n\n" + NOTES_YAML)  # same content, other file and lines
    b = build([q], Chain.HTTP).filters[0].filter
    assert a == b


# --- trust domains: pilot/pkg/security/trustdomain/bundle_test.go ---------------


@pytest.mark.parametrize(
    ("bundle", "principals", "expect"),
    [
        (("cluster.local",), ["cluster.local/ns/foo/sa/bar"], ["cluster.local/ns/foo/sa/bar"]),
        (("cluster.local",), ["*"], ["*"]),
        (("cluster.local",), ["*/ns/foo/sa/bar"], ["*/ns/foo/sa/bar"]),
        (("td2", "td1"), ["td1/ns/foo/sa/bar"], ["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar"]),
        (
            ("td1", "cluster.local"),
            ["cluster.local/ns/foo/sa/bar", "cluster.local/ns/yyy/sa/zzz"],
            [
                "td1/ns/foo/sa/bar",
                "cluster.local/ns/foo/sa/bar",
                "td1/ns/yyy/sa/zzz",
                "cluster.local/ns/yyy/sa/zzz",
            ],
        ),
        (
            ("td1", "cluster.local"),
            ["*/ns/foo/sa/bar", "*sa/zzz", "*"],
            ["*/ns/foo/sa/bar", "*sa/zzz", "*"],
        ),
        (
            ("td2", "foo-td1", "cluster.local"),
            ["*-td1/ns/foo/sa/bar"],
            ["td2/ns/foo/sa/bar", "*-td1/ns/foo/sa/bar", "cluster.local/ns/foo/sa/bar"],
        ),
        (("td1", "td2"), ["some-td/ns/foo/sa/bar"], ["some-td/ns/foo/sa/bar"]),
        (
            ("td1", "td2", "some-td"),
            ["some-td/ns/foo/sa/bar"],
            ["td1/ns/foo/sa/bar", "td2/ns/foo/sa/bar", "some-td/ns/foo/sa/bar"],
        ),
        (
            ("new-td", "td2", "td3"),
            ["td1/ns/some-ns/sa/some-sa", "td2/ns/foo/sa/bar"],
            [
                "td1/ns/some-ns/sa/some-sa",
                "new-td/ns/foo/sa/bar",
                "td2/ns/foo/sa/bar",
                "td3/ns/foo/sa/bar",
            ],
        ),
        (("new-td", "td2", "td3"), ["/ns/some-ns/sa/some-sa"], ["/ns/some-ns/sa/some-sa"]),
        (("new-td", "old-td"), ["*-td/ns/some-ns/sa/some-sa"], ["*-td/ns/some-ns/sa/some-sa"]),
    ],
)
def test_replace_trust_domain_aliases(
    bundle: tuple[str, ...], principals: list[str], expect: list[str]
) -> None:
    b = TrustDomainBundle(bundle)
    assert [x for p in principals for x in b.replace_aliases(p)] == expect


def test_cluster_local_principal_vanishes_without_a_bundle() -> None:
    # trustdomain/bundle.go: cluster.local always "matches", and an empty
    # bundle has no domain to substitute [code-read].
    assert TrustDomainBundle().replace_aliases("cluster.local/ns/a/sa/b") == []


def test_shared_when_principal_is_rewritten_once_per_from(tmp_path: Path) -> None:
    # model.go: the `when` rule objects are shared by every `from` list and
    # MigrateTrustDomain rewrites them once per list [code-read], so the
    # values are expanded twice with two `from` elements.
    [p] = _policies(
        tmp_path,
        """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: p, namespace: foo}
        spec:
          rules:
          - from:
            - source: {namespaces: [a]}
            - source: {namespaces: [b]}
            when:
            - key: source.principal
              values: ["cluster.local/ns/a/sa/b"]
        """,
    )
    opts = BuildOptions(trust_domains=("td1", "cluster.local"))
    _, pol = _only_policy(build([p], Chain.HTTP, opts).filters[0].filter)
    for ids in pol.principals:
        assert isinstance(ids, IdAnd)
        when = ids.ids[-1]
        assert isinstance(when, IdOr)
        names = [
            i.principal_name.value
            for i in when.ids
            if isinstance(i, IdAuthenticated) and i.principal_name
        ]
        assert names == [
            "spiffe://td1/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b",
            "spiffe://td1/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b",
        ]


# --- matchers: model/generator_test.go, model/util_test.go -------------------------

ANY = StringMatcher("safe_regex", ".+")


@pytest.mark.parametrize(
    ("value", "iss", "sub"),
    [
        ("*", ANY, ANY),
        ("foo*", m.prefix("foo"), ANY),
        ("foo/*", m.exact("foo"), ANY),
        ("foo/bar*", m.exact("foo"), m.prefix("bar")),
        ("*foo", ANY, m.suffix("foo")),
        ("*/foo", ANY, m.exact("foo")),
        ("*bar/foo", m.suffix("bar"), m.exact("foo")),
        ("foo/bar", m.exact("foo"), m.exact("bar")),
        ("https://example.com/*", m.exact("https://example.com"), ANY),
    ],
)
def test_request_principal(value: str, iss: StringMatcher, sub: StringMatcher) -> None:
    assert _request_principal(value) == (iss, sub)


@pytest.mark.parametrize(
    ("value", "port"),
    [
        ("443", 443),
        ("080", 80),
        ("0", 0),
        ("-80", None),
        ("xyz", None),
        ("91234", None),
        ("+80", None),
    ],
)
def test_port(value: str, port: int | None) -> None:
    if port is None:
        with pytest.raises(m.GenerationError):
            m.parse_port(value)
    else:
        assert m.parse_port(value) == port


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("[good]", "good"),
        ("[[good]]", "[good]"),
        ("[]", ""),
        ("[bad", None),
        ("bad]", None),
        ("bad", None),
    ],
)
def test_name_in_brackets(text: str, want: str | None) -> None:
    if want is None:
        with pytest.raises(m.GenerationError):
            m.name_in_brackets(text)
    else:
        assert m.name_in_brackets(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("[good]", ["good"]),
        ("[good][abc][xyz]", ["good", "abc", "xyz"]),
        ("[]", [""]),
        ("[[good]", ["[good"]),
        ("[good]]", ["good]"]),
        ("[[good]]", ["[good]"]),
        ("x[bad]", None),
        ("[bad", None),
        ("bad]", None),
        ("bad", None),
    ],
)
def test_names_in_nested_brackets(text: str, want: list[str] | None) -> None:
    if want is None:
        with pytest.raises(m.GenerationError):
            m.names_in_nested_brackets(text)
    else:
        assert m.names_in_nested_brackets(text) == want


def test_quote_meta_is_gos() -> None:
    # generator_test.go TestServiceAccountRegex: only Go's metacharacters are escaped.
    assert m.quote_meta("ns+foo") == r"ns\+foo"
    assert m.quote_meta("sa(bar)") == r"sa\(bar\)"
    assert m.quote_meta("my-ns/a_b~c") == "my-ns/a_b~c"


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("10.0.0.1/24", ("10.0.0.1", 24)),  # host bits kept
        ("1.2.3.4", ("1.2.3.4", 32)),
        ("2001:db8::1", ("2001:db8::1", 128)),
        ("::ffff:1.2.3.4", ("::ffff:1.2.3.4", 128)),
    ],
)
def test_cidr(value: str, want: tuple[str, int]) -> None:
    c = m.parse_cidr(value)
    assert (c.address_prefix, c.prefix_len) == want


@pytest.mark.parametrize("value", ["", "1.2.3", "1.2.3.4/33", "01.2.3.4", "1.2.3.4/024"])
def test_bad_cidr(value: str) -> None:
    with pytest.raises(m.GenerationError):
        m.parse_cidr(value)


# --- builder behaviour (builder.go, model.go) ---------------------------------------

HTTP_ONLY_YAML = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: foo}
spec:
  action: ACTION
  rules:
  - to:
    - operation: {methods: ["GET"], ports: ["80"]}
"""


def test_tcp_allow_rule_with_http_field_is_dropped(tmp_path: Path) -> None:
    [p] = _policies(tmp_path, HTTP_ONLY_YAML.replace("ACTION", "ALLOW"))
    result = build([p], Chain.TCP)
    [f] = result.filters
    assert f.filter.rules is not None and f.filter.rules.policies == ()  # type: ignore[union-attr]
    assert [x.severity for x in result.problems] == ["info"]
    assert "skipped rule ns[foo]-policy[p]-rule[0]" in result.problems[0].message


def test_tcp_deny_drops_only_the_http_field(tmp_path: Path) -> None:
    [p] = _policies(tmp_path, HTTP_ONLY_YAML.replace("ACTION", "DENY"))
    result = build([p], Chain.TCP)
    [f] = result.filters
    assert f.stage == "DENY"
    _, pol = _only_policy(f.filter)
    [perm] = pol.permissions
    assert isinstance(perm, PermAnd) and len(perm.rules) == 1  # ports only
    [problem] = result.problems
    assert "operation.methods" in problem.message and problem.location is not None


def test_unknown_when_key_skips_the_rule_for_every_action(tmp_path: Path) -> None:
    [p] = _unvalidated_policies(
        tmp_path,
        """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: p, namespace: foo}
        spec:
          action: DENY
          rules:
          - when: [{key: request.auth.presenters, values: ["x"]}]
          - to: [{operation: {ports: ["80"]}}]
        """,
    )
    result = build([p], Chain.HTTP)
    names = [n for n, _ in result.filters[0].filter.rules.policies]  # type: ignore[union-attr]
    assert names == ["ns[foo]-policy[p]-rule[1]"]
    assert result.problems[0].severity == "error"
    assert "unknown attribute request.auth.presenters" in result.problems[0].message


@pytest.mark.parametrize(
    ("value", "dry"), [("true", True), ("T", True), ("0", False), ("yes", False)]
)
def test_dry_run_annotation_is_a_go_bool(tmp_path: Path, value: str, dry: bool) -> None:
    [p] = _unvalidated_policies(
        tmp_path,
        f"""
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: p
          namespace: foo
          annotations: {{"istio.io/dry-run": "{value}"}}
        spec:
          rules: [{{}}]
        """,
    )
    result = build([p], Chain.HTTP)
    [f] = result.filters
    assert (f.filter.shadow_rules is not None) is dry  # type: ignore[union-attr]
    assert (f.filter.rules is not None) is not dry  # type: ignore[union-attr]
    assert f.placements[0].dry_run is dry
    assert any(x.severity == "error" for x in result.problems) is (value == "yes")


def test_filters_come_in_istiod_order(tmp_path: Path) -> None:
    docs = []
    for action in ("ALLOW", "DENY", "AUDIT", "CUSTOM"):
        extra = "\n  provider: {name: ext}" if action == "CUSTOM" else ""
        docs.append(
            f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: {action.lower()}, namespace: foo}}\n"
            f"spec:\n  action: {action}{extra}\n  rules: [{{}}]\n"
        )
    policies = _policies(tmp_path, "---\n".join(docs))
    provider = ExtensionProvider(
        "ext", "envoyExtAuthzGrpc", {"service": "ext.foo.svc.cluster.local", "port": 9000}
    )
    opts = BuildOptions(
        extension_providers=(provider,), known_services={("foo", "ext.foo.svc.cluster.local")}
    )
    result = build(policies, Chain.HTTP, opts)
    assert [f.stage for f in result.filters] == ["CUSTOM", "CUSTOM", "AUDIT", "DENY", "ALLOW"]
    assert [f.filter.name for f in result.filters][:2] == [
        "envoy.filters.http.rbac",
        "envoy.filters.http.ext_authz",
    ]
    audit = result.filters[2].filter
    assert audit.rules is not None and audit.rules.action is Action.LOG  # type: ignore[union-attr]
    assert result.filters[0].placements[0].target == "shadow_rules"
    assert result.filters[0].sources == {
        "istio-ext-authz-ext-ns[foo]-policy[custom]-rule[0]": ("foo/custom", 0)
    }
    assert result.problems == []


def test_provider_service_lookup(tmp_path: Path) -> None:
    policies = _policies(
        tmp_path,
        """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: c, namespace: foo}
        spec:
          action: CUSTOM
          provider: {name: ext}
          rules: [{}]
        """,
    )
    host = "ext.foo.svc.cluster.local"
    provider = ExtensionProvider("ext", "envoyExtAuthzGrpc", {"service": host, "port": 9000})
    # The same hostname in two namespaces is ambiguous without a namespace.
    ambiguous = BuildOptions(
        extension_providers=(provider,), known_services={("foo", host), ("bar", host)}
    )
    result = build(policies, Chain.HTTP, ambiguous)
    assert [f.filter.name for f in result.filters] == ["envoy.filters.http.rbac"]
    assert "multiple namespaces" in result.problems[0].message
    # A callable registry works too.
    by_callable = BuildOptions(
        extension_providers=(provider,), known_services=lambda h: ["foo"] if h == host else []
    )
    result = build(policies, Chain.HTTP, by_callable)
    assert [f.filter.name for f in result.filters] == [
        "envoy.filters.http.rbac",
        "envoy.filters.http.ext_authz",
    ]
    ext = result.filters[1].to_dict()["typedConfig"]
    assert ext["grpcService"]["envoyGrpc"]["clusterName"] == f"outbound|9000||{host}"
    assert ext["grpcService"]["timeout"] == "600s"


def test_multiple_custom_providers_with_the_feature_flag(tmp_path: Path) -> None:
    docs = [
        f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {n}, namespace: foo}}\n"
        f"spec:\n  action: CUSTOM\n  provider: {{name: {n}}}\n  rules: [{{}}]\n"
        for n in ("b", "a")
    ]
    policies = _policies(tmp_path, "---\n".join(docs))
    providers = tuple(
        ExtensionProvider(
            n, "envoyExtAuthzGrpc", {"service": "foo/x.foo.svc.cluster.local", "port": 1}
        )
        for n in ("a", "b")
    )
    opts = BuildOptions(
        extension_providers=providers,
        known_services={("foo", "x.foo.svc.cluster.local")},
        multiple_custom_providers=True,
    )
    result = build(policies, Chain.HTTP, opts)
    assert [f.provider for f in result.filters] == ["a", "a", "b", "b"]
    assert result.filters[1].filter.metadata_prefix == "istio-ext-authz-a"  # type: ignore[union-attr]


def test_problem_type_is_exported() -> None:
    assert Problem("error", "x").severity == "error"


def test_from_mesh_config() -> None:
    from meshauthz.resources.meshconfig import MeshConfig

    opts = BuildOptions.from_mesh_config(
        MeshConfig(trust_domain="td", trust_domain_aliases=("old",))
    )
    assert opts.trust_domains == ("td", "old")


@pytest.mark.parametrize(
    ("kind", "data", "names"),
    [
        ("source", {}, []),
        ("source", {"principals": ["a/ns/b/sa/c"]}, ["source.principals"]),
        ("source", {"principals": [], "notNamespaces": ["x"]}, ["source.namespaces"]),
        (
            "source",
            {"notPrincipals": ["*"], "ipBlocks": ["10.0.0.0/8"], "remoteIpBlocks": None},
            ["source.principals", "source.ipBlocks"],
        ),
        (
            "source",
            {"requestPrincipals": ["i/s"], "trustDomains": ["t"], "serviceAccounts": ["s"]},
            ["source.requestPrincipals", "source.serviceAccounts", "source.trustDomains"],
        ),
        (
            "operation",
            {"methods": ["GET"], "notPaths": ["/x"], "ports": []},
            ["operation.methods", "operation.paths"],
        ),
        (
            "operation",
            {"hosts": ["h"], "notHosts": ["g"], "notPorts": ["1"], "paths": ["/"]},
            ["operation.hosts", "operation.paths", "operation.ports"],
        ),
    ],
)
def test_clause_fields_are_the_fields_holding_values_in_istiods_order(
    kind: str, data: dict[str, object], names: list[str]
) -> None:
    # a field written empty (or null) is a field not written, as an empty list in a proto
    from meshauthz.resources.istio import Operation, Source
    from meshauthz.resources.structs import convert
    from meshauthz.translate import rule

    model, table = (
        (Source, rule.SOURCE_FIELDS) if kind == "source" else (Operation, rule.OPERATION_FIELDS)
    )
    obj, problems = convert(data, model)
    assert not problems
    section = "from" if kind == "source" else "to"
    got = rule._clause_fields(obj, table, section, kind, ("spec", "rules", 0, section, 0))
    assert [f.name for f in got] == names

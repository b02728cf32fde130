"""The suite file format: what it accepts, and errors that name file, line and field."""

from __future__ import annotations

import json

import pytest

from meshauthz.errors import InputError
from meshauthz.mesh.loading import load_mesh
from meshauthz.suite import find_suites, load_suite
from meshauthz.suite import format as fmt
from tests.conftest import EXAMPLES, REPO

SEED = str(EXAMPLES / "seed")
SCHEMA = REPO / "src/meshauthz/schemas/suite.schema.json"


def suite_text(body: str, resources: str = f"[{SEED}]") -> str:
    return f"resources: {resources}\n{body}"


def test_minimal_suite(write):
    p = write(
        "a.test.yaml",
        suite_text(
            "cases:\n"
            "  - name: c\n"
            "    request: {from: default/frontend, to: default/backend}\n"
            "    expect: deny\n"
        ),
    )
    s = load_suite(p)
    assert s.name == "a" and s.resources == [SEED] and s.mesh is None
    (c,) = s.cases
    assert c.expect.decision == "DENY" and not c.expect.pins_policy and not c.expect.pins_rule
    assert c.location.line == 3 and c.request.to == "default/backend"


def test_expect_map_pins_and_null_policy(write):
    p = write(
        "a.test.yaml",
        suite_text(
            "cases:\n"
            "  - name: c\n"
            "    request: {from: default/frontend, to: default/backend}\n"
            "    expect: {decision: ALLOW, status: '200', stage: default, policy: null, rule: null}\n"
            "  - name: d\n"
            "    request: {from: default/frontend, to: default/backend}\n"
            "    expect: {decision: DENY, policy: default/p, rule: 2}\n"
        ),
    )
    c, d = load_suite(p).cases
    assert c.expect.status == 200 and c.expect.pins_policy and c.expect.policy is None
    assert c.expect.to_json() == {
        "decision": "ALLOW",
        "status": 200,
        "stage": "default",
        "policy": None,
        "rule": None,
    }
    assert (d.expect.policy, d.expect.rule) == ("default/p", 2)


def test_mesh_section(write):
    p = write(
        "a.test.yaml",
        suite_text(
            "mesh:\n"
            "  rootNamespace: istio-config\n"
            "  trustDomain: td.example\n"
            "  trustDomainAliases: [old.example]\n"
            "  pathNormalization: MERGE_SLASHES\n"
            "  extensionProviders: [{name: ext, envoyExtAuthzHttp: {service: x, port: 8000}}]\n"
            "cases: [{name: c, request: {from: default/frontend, to: default/backend}, expect: DENY}]\n"
        ),
    )
    m = load_suite(p).mesh
    assert m is not None
    assert (m.root_namespace, m.trust_domain, m.trust_domain_aliases) == (
        "istio-config",
        "td.example",
        ("old.example",),
    )
    assert m.path_normalization == "MERGE_SLASHES" and m.provider("ext") is not None


def test_resources_relative_to_the_suite_and_globs_skip_suites(tmp_path, write):
    write("m/a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    write("m/b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n")
    case = "cases: [{name: c, request: {from: x/a, to: x/b}, expect: DENY}]\n"
    p = write("m/s.test.yaml", "resources: ['*.yaml']\n" + case)
    assert [r.rsplit("/", 1)[1] for r in load_suite(p).resources] == ["a.yaml", "b.yaml"]
    p2 = write("t.test.yaml", "resources: m\n" + case)
    assert load_suite(p2).resources == [str(tmp_path / "m")]
    # The directory's suite is not loaded as a manifest.
    assert len(load_mesh([str(tmp_path / "m")]).manifests.namespaces) == 2


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        ("cases: []\n", 2, "cases", "non-empty list"),
        ("bogus: 1\ncases: []\n", 2, "bogus", 'unknown field "bogus"'),
        (
            "cases:\n  - name: c\n    request: {from: default/frontend, to: default/backend}\n"
            "    expect: MAYBE\n",
            5,
            "cases[0].expect",
            "expected ALLOW or DENY",
        ),
        (
            "cases:\n  - name: c\n    request: {from: default/frontend, to: default/backend}\n"
            "    expect: {decision: DENY, policy: nons}\n",
            5,
            "cases[0].expect.policy",
            "namespace/name",
        ),
        (
            "cases:\n  - name: c\n    request: {from: default/frontend, to: default/backend}\n"
            "    expect: {decision: DENY, rule: -1}\n",
            5,
            "cases[0].expect.rule",
            "rule index",
        ),
        (
            "cases:\n  - name: c\n    request: {from: default/frontend}\n    expect: DENY\n",
            4,
            "cases[0].request",
            'needs "to"',
        ),
        (
            "cases:\n  - name: c\n    request: {from: default/frontend, to: default/backend, verb: GET}\n"
            "    expect: DENY\n",
            4,
            "cases[0].request.verb",
            'unknown field "verb"',
        ),
        (
            "cases:\n  - {name: c, request: {from: a/b, to: c/d}, expect: DENY}\n"
            "  - {name: c, request: {from: a/b, to: c/d}, expect: DENY}\n",
            4,
            "cases[1].name",
            "duplicate case name",
        ),
        (
            "mesh: {pathNormalization: SOMETIMES}\ncases: []\n",
            2,
            "mesh.pathNormalization.normalization",
            "unknown normalization",
        ),
        (
            "cases:\n  - {name: c, request: {from: a/b, to: c/d}, expect: DENY, extAuthz: maybe}\n",
            3,
            "cases[0].extAuthz",
            '"allow" or "deny"',
        ),
    ],
)
def test_errors_name_line_and_field(write, body, line, field, message):
    p = write("bad.test.yaml", suite_text(body))
    with pytest.raises(InputError) as e:
        load_suite(p)
    assert e.value.location is not None and e.value.location.file == p
    assert e.value.location.line == line
    assert e.value.field == field
    assert message in e.value.message


def test_missing_resources(write):
    p = write("a.test.yaml", "resources: [nothere/]\ncases: []\n")
    with pytest.raises(InputError, match="no such file or directory: 'nothere/'"):
        load_suite(p)
    p = write("b.test.yaml", "resources: ['*.json']\ncases: []\n")
    with pytest.raises(InputError, match="matches no manifest"):
        load_suite(p)
    p = write("c.test.yaml", "cases: []\n")
    with pytest.raises(InputError, match='needs "resources"'):
        load_suite(p)


def test_find_suites(tmp_path, write):
    a = write("x/a.test.yaml", "")
    b = write("x/y/b.test.yaml", "")
    write("x/c.yaml", "")
    write("x/.hidden/d.test.yaml", "")
    assert find_suites([str(tmp_path / "x"), a]) == [a, b]
    with pytest.raises(InputError):
        find_suites([str(tmp_path / "missing")])


def test_schema_names_the_fields_the_parser_knows():
    schema = json.loads(SCHEMA.read_text())
    assert set(schema["properties"]) == fmt._SUITE_FIELDS
    assert set(schema["properties"]["mesh"]["properties"]) == fmt._MESH_FIELDS
    case = schema["$defs"]["case"]
    assert set(case["properties"]) == fmt._CASE_FIELDS
    expect_map = case["properties"]["expect"]["oneOf"][1]
    assert set(expect_map["properties"]) == fmt._EXPECT_FIELDS
    assert case["properties"]["request"]["$ref"].startswith("request.schema.json")


def test_example_suites_parse():
    for example in ("seed", "seed-fixed"):
        (path,) = find_suites([str(EXAMPLES / example)])
        assert load_suite(path).cases

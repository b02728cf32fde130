"""A changed class is described by what its requests meet (the deciding rules'
matches on both sides), not by its witness: a rule that admits every caller
must not read as one caller's change."""

from __future__ import annotations

from pathlib import Path

from meshauthz.symbolic import compare_meshes
from meshauthz.symbolic.witness import Confirmer
from tests.symbolic.test_compare import mesh_dir, policy, snapshot

ANY_CALLER_GET = policy("viewer", "ALLOW", "  - to: [{operation: {methods: [GET]}}]")
DENY_ALL = policy("deny-all", "DENY", "  - {}")
DENY_ADMIN = policy("deny-admin", "DENY", '  - to: [{operation: {paths: ["/admin*"]}}]')
STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
"""


def _changes(tmp_path: Path, old: str, new: str):  # type: ignore[no-untyped-def]
    a, b = snapshot(mesh_dir(tmp_path, "old", old)), snapshot(mesh_dir(tmp_path, "new", new))
    result = compare_meshes(a, b)
    assert not result.unknown
    for change in result.opened + result.closed:  # each witness as check decides it
        assert Confirmer(a).decide(change.witness).verdict == change.old.verdict
        assert Confirmer(b).decide(change.witness).verdict == change.new.verdict
    return result


def test_a_rule_for_every_caller_is_described_without_the_witness_caller(
    tmp_path: Path,
) -> None:
    result = _changes(tmp_path, "", ANY_CALLER_GET)
    assert not result.opened
    # allowing GET closes every other method, for every caller
    descriptions = {c.description for c in result.closed}
    # not "any request": GET is not among them
    assert descriptions == {"requests to default/backend:80"}
    (change,) = result.closed
    assert change.witness["method"] != "GET"
    assert "principal" not in change.description


def test_the_opening_rule_is_the_description(tmp_path: Path) -> None:
    result = _changes(tmp_path, DENY_ALL, ANY_CALLER_GET)
    (change,) = result.opened
    assert change.description == "methods GET to default/backend:80"
    assert change.witness["method"] == "GET"


def test_both_sides_rules_are_conjoined(tmp_path: Path) -> None:
    # removing the DENY on /admin* opens GET /admin* (ALLOW GET on both sides)
    result = _changes(tmp_path, ANY_CALLER_GET + DENY_ADMIN, ANY_CALLER_GET)
    (change,) = result.opened
    assert change.description == "paths /admin* and methods GET to default/backend:80"
    assert change.witness["path"].startswith("/admin")


def test_a_reset_by_mutual_tls_reads_plaintext(tmp_path: Path) -> None:
    result = _changes(tmp_path, "", STRICT)
    assert not result.opened
    assert sorted(c.description for c in result.closed) == [
        "plaintext to default/backend:80",
        "plaintext to default/frontend:80",
    ]
    assert all(c.witness["from"].get("plaintext") is True for c in result.closed)


def test_a_rule_naming_several_methods_is_described_by_those_that_changed(
    tmp_path: Path,
) -> None:
    get_post = ANY_CALLER_GET.replace("methods: [GET]", "methods: [GET, POST, PUT]")
    result = _changes(tmp_path, ANY_CALLER_GET, get_post)
    # GET was allowed already: what opened is POST and PUT, through the same rule
    assert not result.closed
    assert {c.description for c in result.opened} == {"methods POST, PUT to default/backend:80"}
    assert {c.witness["method"] for c in result.opened} <= {"POST", "PUT"}
    # and the reverse closes them
    (tmp_path / "back").mkdir()
    back = _changes(tmp_path / "back", get_post, ANY_CALLER_GET)
    assert {c.description for c in back.closed} == {"methods POST, PUT to default/backend:80"}


def test_a_tcp_port_is_described_without_the_http_only_fields_left_out(
    tmp_path: Path,
) -> None:
    # On TCP istiod leaves a DENY rule's HTTP-only fields out: it denies every
    # connection from the namespace, which has no method, path or header.
    deny = policy(
        "deny-get",
        "DENY",
        "  - from: [{source: {namespaces: [default]}}]\n"
        "    to: [{operation: {methods: [GET], notPaths: [/x]}}]\n"
        '    when: [{key: "request.headers[x-a]", values: [a]}]',
    )
    dirs = [mesh_dir(tmp_path, name, p) for name, p in (("old", ""), ("new", deny))]
    for d in dirs:
        backend = d / "backend.yaml"
        backend.write_text(backend.read_text().replace("name: http\n", "name: tcp\n"))
    result = compare_meshes(snapshot(dirs[0]), snapshot(dirs[1]))
    assert not result.opened and not result.unknown
    (change,) = result.closed
    assert change.destination.protocol == "tcp"
    assert change.description == "namespaces default to default/backend:80"

"""The symbolic engine compares two meshes over every request: the seed pair,
twins written differently, and the cases it must answer "unknown"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from meshauthz.mesh.loading import load_mesh
from meshauthz.symbolic import compare_meshes
from meshauthz.symbolic.witness import Confirmer
from tests.conftest import EXAMPLES

SEED = EXAMPLES / "seed"
SEED_FIXED = EXAMPLES / "seed-fixed"
WORKLOADS = ("backend.yaml", "frontend.yaml", "namespace.yaml")


def snapshot(*paths: Path | str):  # type: ignore[no-untyped-def]
    return load_mesh(tuple(str(p) for p in paths)).snapshot


def mesh_dir(tmp_path: Path, name: str, policies: str) -> Path:
    """The seed's workloads with ``policies`` instead of the seed's policies."""
    d = tmp_path / name
    d.mkdir()
    for f in WORKLOADS:
        shutil.copy(SEED / f, d / f)
    if policies:
        (d / "policies.yaml").write_text(policies)
    return d


def policy(name: str, action: str, rules: str) -> str:
    return f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  action: {action}
  rules:
{rules}
---
"""


def test_seed_to_seed_fixed_opens_frontends_get_and_nothing_else() -> None:
    old, new = snapshot(SEED), snapshot(SEED_FIXED)
    result = compare_meshes(old, new)
    assert not result.closed and not result.unknown
    assert len(result.opened) == 1
    change = result.opened[0]
    w = change.witness
    assert (change.destination.workload, change.destination.port) == ("default/backend", 80)
    assert w["from"]["principal"] == "cluster.local/ns/default/sa/frontend"
    assert (w["method"], w["path"]) == ("GET", "/api/v1/data")
    assert (change.old.verdict, change.old.policy, change.old.rule) == (
        "DENY",
        "default/deny-all-backend",
        0,
    )
    assert (change.new.verdict, change.new.policy) == ("ALLOW", "default/allow-frontend-get-data")
    # the witness as check decides it, on both sides
    assert Confirmer(old).decide(w).verdict == "DENY"
    assert Confirmer(new).decide(w).verdict == "ALLOW"


def test_the_reverse_closes_it() -> None:
    result = compare_meshes(snapshot(SEED_FIXED), snapshot(SEED))
    assert not result.opened and len(result.closed) == 1
    assert result.closed[0].witness["path"] == "/api/v1/data"


def test_a_mesh_equals_itself() -> None:
    assert compare_meshes(snapshot(SEED), snapshot(SEED)).equivalent


ONE_RULE = policy(
    "p",
    "ALLOW",
    """  - from: [{source: {principals: ["cluster.local/ns/default/sa/frontend"]}}]
    to: [{operation: {methods: ["GET", "POST"], paths: ["/api/*", "/health"]}}]""",
)
# the same, written differently: methods in another order, the rule split in two
TWIN = policy(
    "q",
    "ALLOW",
    """  - from: [{source: {principals: ["cluster.local/ns/default/sa/frontend"]}}]
    to: [{operation: {methods: ["POST", "GET"], paths: ["/health"]}}]
  - from: [{source: {principals: ["cluster.local/ns/default/sa/frontend"]}}]
    to: [{operation: {paths: ["/api/*"], methods: ["POST", "GET"]}}]""",
)


def test_a_differently_written_twin_is_equivalent(tmp_path: Path) -> None:
    a = mesh_dir(tmp_path, "a", ONE_RULE)
    b = mesh_dir(tmp_path, "b", TWIN)
    result = compare_meshes(snapshot(a), snapshot(b))
    assert result.equivalent, result.to_json()


def test_a_narrowed_method_list_closes_exactly_that_method(tmp_path: Path) -> None:
    a = mesh_dir(tmp_path, "a", ONE_RULE)
    b = mesh_dir(tmp_path, "b", ONE_RULE.replace('["GET", "POST"]', '["GET"]'))
    result = compare_meshes(snapshot(a), snapshot(b))
    assert not result.opened and not result.unknown
    assert [c.witness["method"] for c in result.closed] == ["POST"]


def test_path_normalization_is_the_constrained_variable(tmp_path: Path) -> None:
    """A DENY on /admin catches /admin only after normalization; the witness of
    what it closes is a path that normalizes to what the rule names."""
    a = mesh_dir(tmp_path, "a", "")
    b = mesh_dir(
        tmp_path,
        "b",
        policy("deny-admin", "DENY", '  - to: [{operation: {paths: ["/admin/*"]}}]'),
    )
    result = compare_meshes(snapshot(a), snapshot(b))
    assert not result.opened and not result.unknown
    backend = [c for c in result.closed if c.destination.workload == "default/backend"]
    assert len(backend) == 1
    assert backend[0].witness["path"].startswith("/admin/")


def test_callers_workloads_limits_callers_to_the_meshes_workloads(tmp_path: Path) -> None:
    a = mesh_dir(tmp_path, "a", "")
    b = mesh_dir(
        tmp_path,
        "b",
        policy(
            "only-frontend",
            "ALLOW",
            '  - from: [{source: {principals: ["cluster.local/ns/default/sa/frontend"]}}]',
        ),
    )
    every = compare_meshes(snapshot(a), snapshot(b))
    assert every.closed and all(c.witness["from"] != "default/frontend" for c in every.closed)
    known = compare_meshes(snapshot(a), snapshot(b), callers="workloads")
    # only the backend (default service account) is a workload that loses access
    assert [c.witness["from"] for c in known.closed] == ["default/backend"]


REQUEST_AUTHN = """apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  jwtRules: [{issuer: "https://issuer.example", jwksUri: "https://issuer.example/jwks"}]
"""


@pytest.mark.parametrize(
    "policies",
    [
        policy(
            "p",
            "DENY",
            '  - when: [{key: "request.headers[x-forwarded-for]", values: ["1.2.3.4"]}]',
        ),
        REQUEST_AUTHN
        + "---\n"
        + policy("p", "DENY", '  - when: [{key: "request.headers[authorization]", values: ["x"]}]'),
    ],
    ids=["header-the-proxy-writes", "header-a-jwt-travels-in"],
)
def test_what_cannot_be_encoded_is_unknown_never_equivalent(tmp_path: Path, policies: str) -> None:
    a = mesh_dir(tmp_path, "a", "")
    b = mesh_dir(tmp_path, "b", policies)
    result = compare_meshes(snapshot(a), snapshot(b))
    assert not result.equivalent
    assert [u.destination.workload for u in result.unknown] == ["default/backend"]


def test_a_label_change_that_moves_a_policy_counts(tmp_path: Path) -> None:
    """NEW relabels the backend: the seed's policies no longer select it."""
    new = tmp_path / "new"
    shutil.copytree(SEED, new)
    backend = new / "backend.yaml"
    backend.write_text(backend.read_text().replace("app: backend", "app: backend2"))
    result = compare_meshes(snapshot(SEED), snapshot(new))
    assert not result.closed and not result.unknown
    (change,) = result.opened
    assert change.destination.workload == "default/backend"
    assert change.old.policy == "default/deny-all-backend"
    assert (change.new.verdict, change.new.policy) == ("ALLOW", None)


def test_strict_mtls_closes_plaintext_callers(tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(SEED_FIXED, new)
    (new / "strict.yaml").write_text(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: default}\nspec: {mtls: {mode: STRICT}}\n"
    )
    result = compare_meshes(snapshot(SEED_FIXED), snapshot(new))
    assert not result.opened and not result.unknown
    assert result.closed
    assert all(c.witness["from"].get("plaintext") for c in result.closed)
    assert {c.destination.workload for c in result.closed} == {"default/frontend"}

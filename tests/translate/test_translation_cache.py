"""A policy that applies to many workloads is translated once per snapshot
(``build_for_workload``'s cache): every workload's filters are what building it
alone gives (rules, names, notes, problems), and they share the translated rules.
What changes a rule (the chain, peer identities from filter state, the trust
domains, a replaced spec) makes a translation of its own."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import msgspec

from meshauthz.mesh import select_policies
from meshauthz.mesh.loading import load_mesh
from meshauthz.mesh.snapshot import MeshSnapshot
from meshauthz.translate import BuildResult, Chain, build
from meshauthz.translate.workload import (
    authorization_policies,
    build_for_workload,
    mesh_build_options,
)

MESH = """
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ns-wide, namespace: shop}
spec:
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/shop/sa/front", "*/sa/ops"]
        namespaces: ["shop"]
    to:
    - operation: {methods: ["GET"], ports: ["8080"]}
  - when:
    - key: request.headers[x-team]
      values: ["a"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: shop}
spec:
  action: AUDIT
  rules:
  - to:
    - operation: {methods: ["POST"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: trial, namespace: shop, annotations: {istio.io/dry-run: "true"}}
spec:
  action: DENY
  rules:
  - to:
    - operation: {notPaths: ["/public/*"]}
"""


def _workload(name: str) -> str:
    return f"""
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      serviceAccountName: {name}
      containers: [{{name: app, image: app, ports: [{{containerPort: 8080}}]}}]
"""


def _snapshot(tmp_path: Path) -> MeshSnapshot:
    f = tmp_path / "mesh.yaml"
    f.write_text(textwrap.dedent(MESH) + "".join(_workload(n) for n in ("a", "b", "c")))
    return load_mesh([str(f)]).snapshot


def _alone(snapshot: MeshSnapshot, name: str, chain: Chain, **options: object) -> BuildResult:
    w = snapshot.workload(f"shop/{name}")
    policies = authorization_policies(select_policies(snapshot, w))
    return build(policies, chain, msgspec.structs.replace(mesh_build_options(snapshot), **options))


def _notes(value: object) -> list[object]:
    """Every note in a built tree, depth first (notes take no part in equality)."""
    out: list[object] = []
    names: tuple[str, ...] = ()
    if isinstance(value, msgspec.Struct):
        names = value.__struct_fields__
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = tuple(f.name for f in dataclasses.fields(value))
    if names:
        for name in names:
            item = getattr(value, name)
            if name == "note":
                out.append(item)
            else:
                out += _notes(item)
    elif isinstance(value, tuple | list):
        for item in value:
            out += _notes(item)
    return out


def _same(got: BuildResult, want: BuildResult) -> None:
    assert got.to_dicts() == want.to_dicts()
    assert got.problems == want.problems
    for g, w in zip(got.filters, want.filters, strict=True):
        assert (g.stage, g.placements, g.sources) == (w.stage, w.placements, w.sources)
        assert g.filter == w.filter
        assert _notes(g.filter) == _notes(w.filter)
    assert _notes([f.filter for f in got.filters])  # there were notes to compare


def test_every_workload_gets_what_building_it_alone_gives(tmp_path: Path) -> None:
    snapshot = _snapshot(tmp_path)
    for chain in (Chain.HTTP, Chain.TCP, Chain.HTTP):
        for name in ("a", "b", "c"):
            _, got = build_for_workload(snapshot, snapshot.workload(f"shop/{name}"), chain)
            _same(got, _alone(snapshot, name, chain))
            assert [f.stage for f in got.filters] == ["AUDIT", "DENY", "ALLOW"]


def test_workloads_share_the_rules_of_a_policy_and_not_across_chains(tmp_path: Path) -> None:
    snapshot = _snapshot(tmp_path)

    def rules(name: str, chain: Chain, **options: object) -> list[object]:
        opts = msgspec.structs.replace(mesh_build_options(snapshot), **options)
        _, result = build_for_workload(snapshot, snapshot.workload(f"shop/{name}"), chain, opts)
        out: list[object] = []
        for f in result.filters:
            for rbac in (f.filter.rules, f.filter.shadow_rules):  # type: ignore[union-attr]
                out += [p for _, p in rbac.policies] if rbac is not None else []
        return out

    a, b = rules("a", Chain.HTTP), rules("b", Chain.HTTP)
    assert a and all(x is y for x, y in zip(a, b, strict=True))
    tcp = rules("a", Chain.TCP)
    assert not any(x is y for x, y in zip(a, tcp, strict=False))
    waypoint = rules("a", Chain.HTTP, use_filter_state=True)
    assert not any(x is y for x, y in zip(a, waypoint, strict=True))
    aliased = rules("a", Chain.HTTP, trust_domains=("cluster.local", "old.td"))
    assert not any(x is y for x, y in zip(a, aliased, strict=True))
    assert aliased != a  # the principal in cluster.local now also stands for old.td


def test_a_replaced_spec_is_translated_again(tmp_path: Path) -> None:
    snapshot = _snapshot(tmp_path)
    w = snapshot.workload("shop/a")
    _, before = build_for_workload(snapshot, w, Chain.HTTP)
    policy = next(p for p in snapshot.authorization_policies if p.name == "ns-wide")
    policy.spec = msgspec.structs.replace(policy.spec, rules=policy.spec.rules[:1])
    _, after = build_for_workload(snapshot, w, Chain.HTTP)
    assert after.to_dicts() != before.to_dicts()
    _same(after, _alone(snapshot, "a", Chain.HTTP))


SHARED_VALUES = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-{name}, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  rules:
  - from:
    - source: {{principals: ["cluster.local/ns/shop/sa/front", "{name}-only"]}}
    to:
    - operation:
        methods: ["GET", "POST"]
        paths: ["/api/*", "/{name}"]
        hosts: ["shop.example.com"]
"""


def test_equal_values_of_different_policies_share_their_leaf_matchers(tmp_path: Path) -> None:
    f = tmp_path / "mesh.yaml"
    f.write_text(
        textwrap.dedent(MESH)
        + "".join(_workload(n) for n in ("a", "b"))
        + "".join("---\n" + SHARED_VALUES.format(name=n) for n in ("a", "b"))
    )
    snapshot = load_mesh([str(f)]).snapshot

    def leaves(result: BuildResult) -> dict[str, object]:
        allow = result.stage("ALLOW")[0].filter.rules
        assert allow is not None
        policy = next(p for n, p in allow.policies if "allow-" in n)
        ((to,), (frm,)) = (policy.permissions, policy.principals)
        hosts, methods, paths = to.rules  # type: ignore[union-attr]
        principals = frm.ids[0]  # type: ignore[union-attr]
        return {
            "GET": methods.rules[0].header,
            "/api/*": paths.rules[0].path,
            "host": hosts.rules[0].header,
            "front": principals.ids[0].principal_name,
            "own path": paths.rules[1].path,
        }

    got = {}
    for name in ("a", "b"):
        _, result = build_for_workload(snapshot, snapshot.workload(f"shop/{name}"), Chain.HTTP)
        _same(result, _alone(snapshot, name, Chain.HTTP))  # as built afresh, notes and all
        got[name] = leaves(result)
    a, b = got["a"], got["b"]
    for value in ("GET", "/api/*", "host", "front"):
        assert a[value] is b[value], value
    assert a["own path"] != b["own path"]


def test_workloads_of_the_same_policies_share_a_stage_filter_in_its_context(
    tmp_path: Path,
) -> None:
    """A stage's whole filter is built once for the workloads its policies select
    alike (a mesh-wide DENY), and again for whatever changes it: the chain, the
    peer identities, the trust domains, a dry-run annotation changed."""
    snapshot = _snapshot(tmp_path)

    def deny(name: str, chain: Chain = Chain.HTTP, **options: object) -> object:
        opts = msgspec.structs.replace(mesh_build_options(snapshot), **options)
        _, result = build_for_workload(snapshot, snapshot.workload(f"shop/{name}"), chain, opts)
        _same(result, _alone(snapshot, name, chain, **options))
        return result.stage("DENY")[0]

    a = deny("a")
    assert deny("b") is a
    contexts: list[tuple[Chain, dict[str, object]]] = [
        (Chain.TCP, {}),
        (Chain.HTTP_FOR_TCP, {}),
        (Chain.HTTP, {"use_filter_state": True}),
        (Chain.HTTP, {"trust_domains": ("cluster.local", "old.td")}),
    ]
    built = [deny("b", chain, **options) for chain, options in contexts]
    assert all(b is not a for b in built)
    assert deny("c", Chain.TCP) is built[0]
    # the DENY policy in dry-run: its rules go to the filter's shadow rules
    policy = next(p for p in snapshot.authorization_policies if p.name == "deny-admin")
    policy.annotations = {"istio.io/dry-run": "true"}
    dry = deny("c")
    assert dry is not a and dry.placements[0].dry_run  # type: ignore[attr-defined]
    # an unparseable value: enforced, with istiod's error each time it is built
    policy.annotations = {"istio.io/dry-run": "maybe"}
    for name in ("a", "b"):
        _, result = build_for_workload(snapshot, snapshot.workload(f"shop/{name}"), Chain.HTTP)
        assert [p.message for p in result.problems if "maybe" in p.message]
        _same(result, _alone(snapshot, name, Chain.HTTP))

"""The local mesh's Envoy configuration is generated apart from its delivery.

``envoy_config.generate`` gives each workload's listeners, clusters, secrets
and ECDS filters as resources by type; it depends on its arguments only, and
on the delivery only through the config sources by which one resource names
another. ``FileDelivery`` writes those resources, and nothing else, as the
files Envoy watches, rewriting only what changed. (That Envoy accepts and
enforces what is written is what the other tests here check, on a real mesh.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshauthz.mesh import MeshSnapshot
from meshauthz.runtime.controlplane import load_snapshot
from meshauthz.runtime.delivery import FileDelivery
from meshauthz.runtime.envoy_config import (
    ConfigSources,
    ResourceSet,
    ResourceType,
    TlsMaterial,
    bootstrap_base,
    generate,
    secret_resources,
)
from meshauthz.runtime.plan import MeshPlan, make_plan

from .conftest import REPO, copy_example
from .test_one_truth import PORTS, TOOLS, jwt_policies

TLS = TlsMaterial(b"chain one", b"key one", b"root")
DENY, ALLOW = "meshauthz.deny", "meshauthz.allow"


def plan_for(directory: Path, state: Path) -> tuple[MeshPlan, MeshSnapshot]:
    snapshot = load_snapshot(str(directory))
    plan = make_plan(
        snapshot, name="gen", manifests=str(directory), state_dir=state, cert_ttl_seconds=3600
    )
    return plan, snapshot


def generate_all(
    plan: MeshPlan, snapshot: MeshSnapshot, sources: ConfigSources | None = None
) -> dict[str, ResourceSet]:
    return {
        w.key: generate(plan, w, snapshot, sources or FileDelivery(plan.config_dir(w)), TLS, "7")[0]
        for w in plan.workloads.values()
        if w.sidecar
    }


def as_json(sets: dict[str, ResourceSet]) -> str:
    # Not sorted: the order of resources and fields is part of what must not vary.
    return json.dumps({k: [rs.version, rs.by_type] for k, rs in sets.items()})


@pytest.fixture
def everything(tmp_path: Path) -> Path:
    """Every kind of port, mTLS mode, caller and filter the mesh generates."""
    d = copy_example("seed", tmp_path / "all", skip=("backend.yaml",))
    (d / "backend.yaml").write_text(PORTS)
    (d / "tools.yaml").write_text(TOOLS)
    (d / "jwt.yaml").write_text(jwt_policies())
    return d


GENERATE = """
import sys
from pathlib import Path
from meshauthz.runtime.controlplane import load_snapshot
from meshauthz.runtime.plan import MeshPlan
from tests.runtime.test_generation import as_json, generate_all
plan = MeshPlan.load(Path(sys.argv[1]))
print(as_json(generate_all(plan, load_snapshot(plan.manifests))))
"""


def test_generation_is_deterministic(everything: Path, tmp_path: Path) -> None:
    """The same inputs give the same resources, in this process and in another one
    (whose string hashing differs): a restarted control plane churns nothing."""
    plan, snapshot = plan_for(everything, tmp_path / "state")
    first = generate_all(plan, snapshot)
    again = generate_all(plan, load_snapshot(str(everything)))
    assert first == again
    assert {ResourceType(t) for rs in first.values() for t in rs.by_type} == set(ResourceType)
    plan.state.mkdir(parents=True)
    plan.save()
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", GENERATE, str(plan.state)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
        check=True,
    ).stdout
    assert out.strip() == as_json(first)
    assert not any(plan.state.glob("config/*/*")), "generation wrote files"


def test_a_policy_change_changes_only_the_filters_of_the_workloads_it_selects(
    tmp_path: Path,
) -> None:
    """The seed's DENY-everything policy replaced by an ALLOW-nothing one (both select
    the backend): only the backend's DENY and ALLOW filters differ."""
    seed = copy_example("seed", tmp_path / "seed")
    fixed = copy_example("seed", tmp_path / "fixed", skip=("deny-all-backend.yaml",))
    (fixed / "allow-nothing-backend.yaml").write_text(
        (REPO / "examples" / "seed-fixed" / "allow-nothing-backend.yaml").read_text()
    )
    plan, before_snap = plan_for(seed, tmp_path / "state")
    before = generate_all(plan, before_snap)
    after = generate_all(plan, load_snapshot(str(fixed)))
    assert after["default/frontend"] == before["default/frontend"]
    b0, b1 = before["default/backend"], after["default/backend"]
    for t in ResourceType:
        if t is not ResourceType.EXTENSION_CONFIG:
            assert b1[t] == b0[t], t
    filters0, filters1 = b0[ResourceType.EXTENSION_CONFIG], b1[ResourceType.EXTENSION_CONFIG]
    assert filters0.keys() == filters1.keys()
    assert {n for n in filters0 if filters0[n] != filters1[n]} == {DENY, ALLOW}
    assert filters1[DENY]["typed_config"] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
    }
    allow = filters1[ALLOW]["typed_config"]["rules"]["policies"]
    assert "ns[default]-policy[allow-nothing-backend]-rule[0]" in allow


class Refs:
    """Config sources that only name what they refer to."""

    def config_source(self, t: ResourceType, name: str) -> dict[str, Any]:
        return {"ref": [str(t), name]}


class Ads:
    """The config sources an xDS server's delivery would give."""

    def config_source(self, t: ResourceType, name: str) -> dict[str, Any]:
        return {"ads": {}, "resource_api_version": "V3"}


def resolve(node: Any, sources: ConfigSources, seen: set[tuple[str, str]]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"ref"}:
            t, name = node["ref"]
            seen.add((t, name))
            return sources.config_source(ResourceType(t), name)
        return {k: resolve(v, sources, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, sources, seen) for v in node]
    return node


def test_generation_depends_on_the_delivery_only_through_its_config_sources(
    everything: Path, tmp_path: Path
) -> None:
    """Generated with references only, then each reference replaced by a delivery's
    config source: the same as generated for that delivery. Every reference names a
    resource of the set, and nothing outside the set (no file) is named."""
    plan, snapshot = plan_for(everything, tmp_path / "state")
    refs = generate_all(plan, snapshot, Refs())
    ads = generate_all(plan, snapshot, Ads())
    files = generate_all(plan, snapshot)
    for key, rs in refs.items():
        named: set[tuple[str, str]] = set()
        deliveries: list[tuple[ConfigSources, ResourceSet]] = [
            (Ads(), ads[key]),
            (FileDelivery(plan.config_dir(plan.workloads[key])), files[key]),
        ]
        for sources, expected in deliveries:
            resolved = {t: resolve(items, sources, named) for t, items in rs.by_type.items()}
            assert resolved == expected.by_type
        assert named, key
        assert named <= {(str(t), n) for t, items in rs.by_type.items() for n in items}
        assert "path_config_source" not in json.dumps(ads[key].by_type)


def read_back(directory: Path) -> tuple[dict[ResourceType, dict[str, Any]], set[str]]:
    """Every discovery file in the directory: the resources by type, and the versions."""
    out: dict[ResourceType, dict[str, Any]] = {}
    versions = set()
    for f in sorted(directory.glob("*.json")):
        doc = json.loads(f.read_text())
        versions.add(doc["version_info"])
        for r in doc["resources"]:
            items = out.setdefault(ResourceType(r["@type"]), {})
            assert r["name"] not in items, f"{r['name']} twice"
            items[r["name"]] = r
    return out, versions


def inodes(directory: Path) -> dict[str, int]:
    return {f.name: f.stat().st_ino for f in directory.glob("*.json")}


def test_file_delivery_writes_exactly_the_generated_resources(
    everything: Path, tmp_path: Path
) -> None:
    plan, snapshot = plan_for(everything, tmp_path / "state")
    w = plan.workload("default/backend")
    delivery = FileDelivery(plan.config_dir(w))
    rs, _ = generate(plan, w, snapshot, delivery, TLS, "7")
    assert delivery.deliver(rs) == len(delivery.files(rs))
    got, versions = read_back(delivery.directory)
    assert got == rs.by_type
    assert versions == {"7"}
    for f in delivery.directory.glob("*.json"):
        mode = f.stat().st_mode & 0o777
        assert mode == (0o600 if f.name.startswith("sds-") else 0o644), f.name
    # Every file the bootstrap and the resources name exists, and nothing else is written.
    boot = delivery.bootstrap(bootstrap_base(w))
    named = _paths(boot["dynamic_resources"]) | _paths(dict(rs.by_type))
    assert named == {str(f) for f in delivery.directory.glob("*.json")}


def _paths(node: Any) -> set[str]:
    if isinstance(node, dict):
        if "path_config_source" in node:
            return {node["path_config_source"]["path"]}
        return {p for v in node.values() for p in _paths(v)}
    if isinstance(node, list):
        return {p for v in node for p in _paths(v)}
    return set()


def test_file_delivery_rewrites_only_what_changed(tmp_path: Path) -> None:
    """A new version with the same resources rewrites nothing; a policy change rewrites
    the one filter's file; a certificate rotation the secrets' files."""
    seed = copy_example("seed", tmp_path / "seed")
    plan, snapshot = plan_for(seed, tmp_path / "state")
    w = plan.workload("default/backend")
    delivery = FileDelivery(plan.config_dir(w))
    rs, _ = generate(plan, w, snapshot, delivery, TLS, "1")
    delivery.deliver(rs)
    start = inodes(delivery.directory)

    same, _ = generate(plan, w, load_snapshot(str(seed)), delivery, TLS, "2")
    assert delivery.deliver(same) == 0
    assert inodes(delivery.directory) == start

    (seed / "deny-all-backend.yaml").unlink()
    changed, _ = generate(plan, w, load_snapshot(str(seed)), delivery, TLS, "3")
    assert delivery.deliver(changed) == 1
    now = inodes(delivery.directory)
    assert {n for n in start if now[n] != start[n]} == {
        delivery.path(ResourceType.EXTENSION_CONFIG, DENY).name
    }
    assert read_back(delivery.directory)[0] == changed.by_type

    rotated = changed.replace(
        ResourceType.SECRET, secret_resources(TlsMaterial(b"chain two", b"key two", b"root")), "4"
    )
    assert delivery.deliver(rotated) == 1
    after = inodes(delivery.directory)
    assert {n for n in now if after[n] != now[n]} == {
        delivery.path(ResourceType.SECRET, "default").name
    }
    assert read_back(delivery.directory)[0] == rotated.by_type


def test_a_resource_is_filed_under_its_own_type_and_name() -> None:
    listener = {"@type": ResourceType.LISTENER, "name": "inbound|80"}
    ResourceSet("1", {ResourceType.LISTENER: {"inbound|80": listener}})
    with pytest.raises(ValueError, match=re.escape("named 'inbound|80'")):
        ResourceSet("1", {ResourceType.LISTENER: {"inbound|81": listener}})
    with pytest.raises(ValueError, match=re.escape("is a " + ResourceType.LISTENER.value)):
        ResourceSet("1", {ResourceType.CLUSTER: {"inbound|80": listener}})

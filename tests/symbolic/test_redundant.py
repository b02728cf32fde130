"""Redundant rules and policies (each verified by comparing the mesh without
it), and always-denies / always-allows per workload and port."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meshauthz.cli.main import main
from meshauthz.mesh.loading import load_mesh
from meshauthz.resources.istio_release import ISTIO
from meshauthz.symbolic.redundant import always, redundant
from tests.conftest import EXAMPLES

SEED = EXAMPLES / "seed"


def snapshot(path: Path):  # type: ignore[no-untyped-def]
    return load_mesh((str(path),)).snapshot


def found(path: Path) -> list[tuple[str, int | None, str]]:
    return [(f.policy, f.rule, f.reason) for f in redundant(snapshot(path)).findings]


def mesh(tmp_path: Path, policies: str, *, tcp: bool = False) -> Path:
    d = tmp_path / "mesh"
    d.mkdir()
    shutil.copy(SEED / "frontend.yaml", d)
    shutil.copy(SEED / "namespace.yaml", d)
    backend = (SEED / "backend.yaml").read_text()
    if tcp:  # the Service port named tcp: the backend's port 80 is a TCP listener
        backend = backend.replace("  - name: http", "  - name: tcp")
    (d / "backend.yaml").write_text(backend)
    (d / "policies.yaml").write_text(policies)
    return d


HEAD = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  rules:
"""
FRONTEND = '{source: {principals: ["cluster.local/ns/default/sa/frontend"]}}'


def test_the_seeds_allow_is_shadowed_by_its_deny() -> None:
    assert found(SEED) == [("default/allow-frontend-get-data", None, "shadowed by a DENY")]


def test_a_policy_without_rules_beside_another_allow_is_an_empty_match() -> None:
    assert found(EXAMPLES / "seed-fixed") == [
        ("default/allow-nothing-backend", None, "empty match")
    ]


def test_a_rule_covered_by_a_wider_one(tmp_path: Path) -> None:
    d = mesh(
        tmp_path,
        HEAD
        + f"""  - from: [{FRONTEND}]
  - from: [{FRONTEND}]
    to: [{{operation: {{methods: ["GET"], paths: ["/api/*"]}}}}]
""",
    )
    assert found(d) == [("default/p", 1, "covered by other rules")]


def test_an_http_only_rule_on_a_tcp_port_is_unreachable(tmp_path: Path) -> None:
    d = mesh(
        tmp_path,
        HEAD
        + f"""  - from: [{FRONTEND}]
  - to: [{{operation: {{methods: ["GET"]}}}}]
""",
        tcp=True,
    )
    assert found(d) == [("default/p", 1, "unreachable on this port's protocol")]


def test_a_rule_that_decides_is_not_reported(tmp_path: Path) -> None:
    d = mesh(
        tmp_path,
        HEAD
        + f"""  - from: [{FRONTEND}]
    to: [{{operation: {{methods: ["GET"]}}}}]
  - from: [{FRONTEND}]
    to: [{{operation: {{methods: ["POST"]}}}}]
""",
    )
    assert found(d) == []


def test_always_denies_and_always_allows() -> None:
    (a,) = always(snapshot(SEED))
    assert (a.destination.workload, a.destination.port, a.kind) == (
        "default/backend",
        80,
        "always-denies",
    )
    assert always(snapshot(EXAMPLES / "seed-fixed")) == []


def test_always_allows(tmp_path: Path) -> None:
    d = mesh(
        tmp_path,
        """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-nothing, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  action: DENY
  rules:
  - to: [{operation: {methods: ["GET"], notMethods: ["GET"]}}]
""",
    )
    assert [(a.destination.workload, a.kind) for a in always(snapshot(d))] == [
        ("default/backend", "always-allows")
    ]


def test_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["redundant", str(SEED), "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert exc.value.code == 1
    assert doc.pop("istioVersion") == ISTIO.version
    assert doc == {
        "redundant": [
            {
                "policy": "default/allow-frontend-get-data",
                "rule": None,
                "reason": "shadowed by a DENY",
                "destinations": [{"workload": "default/backend", "port": 80, "protocol": "http"}],
                "file": str(SEED / "allow-frontend-get-data.yaml"),
                "line": 2,
            }
        ],
        "unknown": [],
    }
    with pytest.raises(SystemExit) as exc:
        main(["redundant", str(EXAMPLES / "twins" / "workloads.yaml")])
    assert exc.value.code == 0
    assert capsys.readouterr().out == "no redundant policy or rule\n"

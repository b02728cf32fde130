"""Workload callers a destination's chain cannot tell apart share one row's
answer (``reach._caller_class``), and so do destinations whose formulas are
the same (``Reacher._classes``: replicas, ports a policy treats alike; their
chains are encoded once, ``Reacher.encoded``): the
rows are the ones computed caller by caller and destination by destination,
but for the witnesses' sender and receiver, and every witness is still
decided by ``check`` as the row says."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from meshauthz.mesh.loading import load_mesh
from meshauthz.symbolic import reach as reach_module
from meshauthz.symbolic.reach import Reachability, reach
from meshauthz.symbolic.witness import Confirmer
from tests.conftest import EXAMPLES, REPO
from tests.symbolic.test_soundness import policies, write_mesh

# Callers with the identities and addresses the random policies name: some
# share an identity, some an address block, some neither.
CALLERS = [
    ("c1", "frontend", "192.0.2.5"),
    ("c2", "frontend", "192.0.2.6"),
    ("c3", "frontend", "10.1.2.3"),
    ("c4", "default", "192.0.2.7"),
    ("c5", "default", "172.16.0.9"),
    ("c6", "other", "10.9.9.9"),
]
NCA_ATTRS = REPO / "benchmarks" / "nca_inputs" / "bookinfo_request_attrs"
BOOKINFO_NS = REPO / "benchmarks" / "nca_inputs" / "bookinfo" / "bookinfo_ns_list.json"


def _replica(d: Path) -> None:
    """A second backend Deployment the Service and the policies select alike."""
    text = (d / "backend.yaml").read_text().split("---")[0]
    (d / "backend-2.yaml").write_text(text.replace("name: backend\n", "name: backend-2\n", 1))


def _callers_file(d: Path) -> None:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": sa, "namespace": "default"},
        }
        for sa in ("default", "other")
    ]
    for name, sa, ip in CALLERS:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
                "spec": {"serviceAccountName": sa, "containers": [{"name": "c", "image": "x"}]},
                "status": {"podIP": ip},
            }
        )
    (d / "callers.yaml").write_text(yaml.safe_dump_all(docs))


def _both_ways(
    paths: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Reachability, Reachability, Any]:
    snap = load_mesh(paths).snapshot
    classes = reach(snap)
    with monkeypatch.context() as m:
        m.setattr(reach_module, "_caller_class", lambda c, reads: ("caller", c))
        m.setattr(reach_module.Reacher, "_classes", lambda self, *a: {})
        m.setattr(reach_module, "chain_shape", lambda p: object())  # each encoded anew
        alone = reach(snap)
    return classes, alone, snap


def assert_same_rows(classes: Reachability, alone: Reachability, snap: Any) -> None:
    """Every row as computed caller by caller; each witness decided as claimed."""
    assert len(classes.rows) == len(alone.rows)
    confirmer = Confirmer(snap)
    for got, want in zip(classes.rows, alone.rows, strict=True):
        g, w = got.to_json(), want.to_json()
        for key in ("allowedWitness", "deniedWitness"):
            witness = g.pop(key)
            assert (witness is None) == (w.pop(key) is None), (g, w)
            if witness is not None:
                verdict = confirmer.decide(witness).verdict
                assert verdict == ("ALLOW" if key == "allowedWitness" else "DENY"), witness
                if got.caller.workload is not None:
                    assert witness["from"] == got.caller.workload
        assert g == w


def _shared(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the rows computed in full (the others are a class's), by the
    destination's workload."""
    calls: Counter[str] = Counter()
    found_row = reach_module.Reacher.found_row

    def counting(self: Any, caller: Any, dest: Any, *args: Any, **kwargs: Any) -> Any:
        calls[dest.workload] += 1
        return found_row(self, caller, dest, *args, **kwargs)

    monkeypatch.setattr(reach_module.Reacher, "found_row", counting)
    return calls


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ps=policies)
def test_random_policies_give_the_rows_computed_caller_by_caller(
    ps: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d = write_mesh(tmp_path_factory.mktemp("mesh"), "mesh", ps)
    _callers_file(d)
    _replica(d)
    classes, alone, snap = _both_ways([str(d)], monkeypatch)
    assert_same_rows(classes, alone, snap)


@pytest.mark.parametrize(
    "paths",
    [
        [str(EXAMPLES / "seed")],
        [str(EXAMPLES / "seed-fixed")],
        [str(REPO / "tests" / "reach" / "bookinfo")],
        *[
            [str(p), str(NCA_ATTRS / "bookinfo_pods_list.json"), str(BOOKINFO_NS)]
            for p in sorted(NCA_ATTRS.glob("bookinfo-policy-*.yaml"))
        ],
    ],
    ids=lambda paths: Path(paths[0]).stem,
)
def test_corpora_give_the_rows_computed_caller_by_caller(
    paths: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    classes, alone, snap = _both_ways(paths, monkeypatch)
    assert_same_rows(classes, alone, snap)


def test_callers_of_one_class_are_answered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a policy on the caller's identity: c1, c2, c3 (frontend) are one class,
    # c4, c5 (default) another, c6 (other) a third; the address is not read
    ps = [
        {
            "action": "ALLOW",
            "rules": [
                {"from": [{"source": {"principals": ["cluster.local/ns/default/sa/frontend"]}}]}
            ],
        }
    ]
    d = write_mesh(tmp_path, "mesh", ps)
    _callers_file(d)
    calls = _shared(monkeypatch)
    rows = [
        r
        for r in reach(load_mesh([str(d)]).snapshot).rows
        if r.destination.workload == "default/backend"
    ]
    by_caller = {r.caller.label: r.verdict for r in rows}
    assert by_caller == {
        "default/frontend": "all", "default/c1": "all", "default/c2": "all", "default/c3": "all",
        "default/c4": "none", "default/c5": "none", "default/backend": "none",
        "default/c6": "none", "plaintext": "none",
    }  # fmt: skip
    # backend's callers, four classes: frontend's identity (frontend, c1-c3),
    # default's (c4, c5, backend itself), other's (c6), and plaintext
    assert calls["default/backend"] == 4


def test_destinations_of_one_shape_are_answered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ps = [{"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}]
    d = write_mesh(tmp_path, "mesh", ps)
    _replica(d)
    calls = _shared(monkeypatch)
    rows = reach(load_mesh([str(d)]).snapshot).rows
    replicas = [r for r in rows if r.destination.workload.startswith("default/backend")]
    assert {r.destination.workload for r in replicas} == {"default/backend", "default/backend-2"}
    assert {r.verdict for r in replicas} == {"some"}
    for r in replicas:
        assert r.allowed_witness is not None and r.denied_witness is not None
        assert r.allowed_witness["to"] == r.denied_witness["to"] == r.destination.workload
    # nothing reads the caller: per shape (the replicas', frontend's) one row
    # for the workloads and one for plaintext are computed, the others reused
    assert len(rows) == 12 and sum(calls.values()) == 4

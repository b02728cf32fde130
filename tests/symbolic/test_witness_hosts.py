"""A Host the policies match without regard to case (Istio's ``hosts``) is
witnessed as the policy wrote it, not in the mixed case the solver happens to
pick; the witness is still decided as claimed."""

from __future__ import annotations

from pathlib import Path

from meshauthz.symbolic import compare_meshes
from meshauthz.symbolic.reach import reach
from meshauthz.symbolic.witness import Confirmer
from tests.symbolic.test_compare import mesh_dir, policy, snapshot

DENY_HOST = policy(
    "deny-host",
    "DENY",
    '  - to: [{operation: {hosts: ["www.company.com", "api.company.com:8443"]}}]',
)
ALLOW_HOST = policy("allow-host", "ALLOW", '  - to: [{operation: {hosts: ["WWW.Company.com"]}}]')


def test_diff_witnesses_a_host_as_the_policy_writes_it(tmp_path: Path) -> None:
    a, b = snapshot(mesh_dir(tmp_path, "old", "")), snapshot(mesh_dir(tmp_path, "new", DENY_HOST))
    result = compare_meshes(a, b)
    assert not result.opened and not result.unknown
    (change,) = result.closed
    assert change.witness["host"] in {"www.company.com", "api.company.com:8443"}
    assert Confirmer(a).decide(change.witness).verdict == "ALLOW"
    assert Confirmer(b).decide(change.witness).verdict == "DENY"


def test_reach_witnesses_a_host_as_the_policy_writes_it(tmp_path: Path) -> None:
    snap = snapshot(mesh_dir(tmp_path, "mesh", ALLOW_HOST))
    rows = [r for r in reach(snap).rows if r.destination.workload == "default/backend"]
    assert rows and all(r.verdict == "some" for r in rows)
    confirmer = Confirmer(snap)
    for r in rows:
        assert r.allowed_witness is not None
        # written in mixed case in the policy: its lower-case form is what
        # Envoy's case-insensitive match is given
        assert r.allowed_witness["host"] in {"www.company.com", "WWW.Company.com"}
        assert confirmer.decide(r.allowed_witness).verdict == "ALLOW"

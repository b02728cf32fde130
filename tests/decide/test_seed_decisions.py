"""The seed's four bullet cases, decided as Istio does, and the fixed example.

Why these expectations hold in Istio: the DENY filter is placed before the
ALLOW filter (builder golden ``deny-and-allow``: out1 is the DENY filter, out2
the ALLOW filter) and an empty rule becomes a policy whose permission and
principal are ``any`` (golden ``deny-empty-rule``), which Envoy matches for
every request.
"""

from __future__ import annotations

import pytest
import yaml

from meshauthz.decide.engine import Decider
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.mesh.loading import load_mesh
from tests.conftest import CONFORMANCE, EXAMPLES

GOLDEN = CONFORMANCE / "pilot/pkg/security/authz/builder/testdata/http"

SEED_CASES = [
    # (caller, method, path, seed's claim, Istio's truth)
    ("default/frontend", "GET", "/api/v1/data", "ALLOW", "DENY"),
    ("default/frontend", "POST", "/api/v1/data", "DENY", "DENY"),
    ("default/frontend", "GET", "/api/v1/other", "DENY", "DENY"),
    ("default/backend", "GET", "/api/v1/data", "DENY", "DENY"),
]


def decide(example: str, req: dict):
    snap = load_mesh([str(EXAMPLES / example)]).snapshot
    return Decider(snap).decide(resolve(request_from_data(req), snap), trace=True)


def test_goldens_back_the_order_and_the_empty_rule():
    out1 = yaml.safe_load((GOLDEN / "deny-and-allow-out1.yaml").read_text())
    out2 = yaml.safe_load((GOLDEN / "deny-and-allow-out2.yaml").read_text())
    assert out1["typedConfig"]["rules"]["action"] == "DENY"
    assert out2["typedConfig"]["rules"].get("action", "ALLOW") == "ALLOW"
    empty = yaml.safe_load((GOLDEN / "deny-empty-rule-out.yaml").read_text())
    (policy,) = empty["typedConfig"]["rules"]["policies"].values()
    assert policy["permissions"] == [{"andRules": {"rules": [{"any": True}]}}]


@pytest.mark.parametrize(("caller", "method", "path", "claimed", "truth"), SEED_CASES)
def test_seed_cases_are_all_denied_by_the_empty_deny_rule(caller, method, path, claimed, truth):
    d = decide("seed", {"from": caller, "to": "default/backend", "method": method, "path": path})
    assert (d.verdict, d.status, d.stage) == (truth, 403, "DENY")
    assert (d.policy, d.rule) == ("default/deny-all-backend", 0)
    assert d.body == "RBAC: access denied"
    assert "empty" in d.reason and "DENY policies are evaluated before ALLOW" in d.reason
    step = next(t for t in d.trace if t.policy == "default/deny-all-backend")
    assert step.matched and step.file.endswith("deny-all-backend.yaml")


def test_without_policies_frontend_reaches_backend(tmp_path):
    for name in ("namespace.yaml", "frontend.yaml", "backend.yaml"):
        (tmp_path / name).write_text((EXAMPLES / "seed" / name).read_text())
    snap = load_mesh([str(tmp_path)]).snapshot
    d = Decider(snap).decide(
        resolve(request_from_data({"from": "default/frontend", "to": "default/backend"}), snap)
    )
    assert (d.verdict, d.status, d.stage, d.policy) == ("ALLOW", 200, "default", None)


@pytest.mark.parametrize(
    ("caller", "method", "path", "verdict", "policy", "missed"),
    [
        (
            "default/frontend",
            "GET",
            "/api/v1/data",
            "ALLOW",
            "default/allow-frontend-get-data",
            None,
        ),
        ("default/frontend", "POST", "/api/v1/data", "DENY", None, "to.operation.methods"),
        ("default/frontend", "GET", "/api/v1/other", "DENY", None, "to.operation.paths"),
        ("default/backend", "GET", "/api/v1/data", "DENY", None, "from.source.principals"),
    ],
)
def test_seed_fixed_keeps_the_authors_intent(caller, method, path, verdict, policy, missed):
    d = decide(
        "seed-fixed", {"from": caller, "to": "default/backend", "method": method, "path": path}
    )
    assert d.verdict == verdict and d.policy == policy
    if missed:
        assert (d.status, d.stage) == (403, "ALLOW")
        step = next(t for t in d.trace if t.policy == "default/allow-frontend-get-data")
        assert (
            step.matched is False
            and step.field is not None
            and missed.endswith(step.field.split(".")[-1])
        )
        assert step.file.endswith("allow-frontend-get-data.yaml") and step.line is not None


def test_plaintext_caller_has_no_principal():
    d = decide(
        "seed-fixed", {"from": {"plaintext": True}, "to": "default/backend", "path": "/api/v1/data"}
    )
    assert d.verdict == "DENY" and d.stage == "ALLOW"

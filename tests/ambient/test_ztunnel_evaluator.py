"""ztunnel's matcher and order, pinned by ztunnel's own tests
(data/ztunnel_rbac.yaml: src/rbac.rs; data/ztunnel_order.yaml: src/state.rs,
src/state/policy.rs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec.structs
import pytest
import yaml

from meshauthz.ambient.authorization import authorization_from_dump
from meshauthz.ambient.evaluate import Connection, SpiffeIdentity, assert_rbac, matches
from meshauthz.ambient.store import PolicyStore

DATA = Path(__file__).parent / "data"
RBAC = yaml.safe_load((DATA / "ztunnel_rbac.yaml").read_text())
ORDER = yaml.safe_load((DATA / "ztunnel_order.yaml").read_text())


def _conn(c: dict[str, Any]) -> Connection:
    ident = SpiffeIdentity(*c["identity"]) if "identity" in c else None
    return Connection.of(c["src"], c["dst"], c["port"], ident)


def _allow_policy(name: str, rules: Any) -> Any:
    # rbac.rs allow_policy()
    return authorization_from_dump(
        {
            "name": name,
            "namespace": "namespace",
            "scope": "Global",
            "action": "Allow",
            "rules": rules,
            "dryRun": False,
        }
    )


@pytest.mark.parametrize("case", RBAC["cases"], ids=[c["test"] for c in RBAC["cases"]])
def test_rbac_matches(case: dict[str, Any]) -> None:
    pol = _allow_policy(case["test"], case["rules"])
    got = {name: matches(pol, _conn(RBAC["connections"][name])) for name in case["expect"]}
    assert got == case["expect"]


@pytest.mark.parametrize("row", RBAC["string_match"], ids=[r[0] for r in RBAC["string_match"]])
def test_string_match(row: list[Any]) -> None:
    _, matcher, matchee, expect = row
    pol = _allow_policy("s", [[[{"namespaces": [matcher]}]]])
    (((m,),),) = pol.rules
    assert m.namespaces[0].matches(matchee) is expect


def test_rbac_tables_are_complete() -> None:
    # 4 + 1 + 1 + 13 rbac_test! cases; 11 string_match rows.
    assert len(RBAC["cases"]) == 19
    assert len(RBAC["string_match"]) == 11


def _store(policies: dict[str, Any]) -> PolicyStore:
    store = PolicyStore()
    for key, data in policies.items():
        store.insert(authorization_from_dump(data), key)
    return store


@pytest.mark.parametrize("case", ORDER, ids=[c["test"] for c in ORDER])
def test_assert_rbac(case: dict[str, Any]) -> None:
    store = _store(case["policies"])
    for check in case["checks"]:
        n = check["workload"]
        conn = Connection.of(
            "192.168.1.1",
            f"192.168.0.{n}",
            8080,
            SpiffeIdentity("cluster.local", "default", check["sa"]),
        )
        decision = assert_rbac(store.for_workload(f"ns{n}", []), conn)
        assert (decision.verdict == "ALLOW") is check["allowed"], check
        if "error" in check:
            if decision.reason == "explicitly-denied":
                assert decision.deciding is not None
                p = decision.deciding.policy
                error = f"ExplicitlyDenied({p.namespace}, {p.name})"
            else:
                error = "NotAllowed"
            assert error == check["error"]
        if "dryRunDenies" in check:
            assert [h.policy.key for h in decision.dry_run_denies] == check["dryRunDenies"]
            assert [h.policy.key for h in decision.dry_run_allows] == check["dryRunAllows"]


def test_rbac_change_scope() -> None:
    # src/state/policy.rs rbac_change_scope
    store = PolicyStore()
    policy = authorization_from_dump(
        {
            "name": "test_policy",
            "namespace": "default",
            "scope": "Namespace",
            "action": "Allow",
            "rules": [[[{"namespaces": [{"Exact": "whatever"}]}]]],
            "dryRun": False,
        }
    )
    store.insert(policy, "default/test_policy")
    assert policy.key in store.get_by_namespace("default")
    store.insert(msgspec.structs.replace(policy, scope="WORKLOAD_SELECTOR"), "default/test_policy")
    assert policy.key not in store.get_by_namespace("default")


def test_not_allowed_text() -> None:
    # proxy.rs AuthorizationRejectionError's Display
    store = _store(ORDER[0]["policies"])
    conn = Connection.of(
        "192.168.1.1", "192.168.0.1", 8080, SpiffeIdentity("cluster.local", "default", "x")
    )
    assert assert_rbac(store.for_workload("ns1", []), conn).log_text == (
        "allow policies exist, but none allowed"
    )

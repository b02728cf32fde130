"""Soundness on random policy sets and random edits: when the engine says
"equivalent", random requests through the concrete decision path (``check``'s)
agree on both sides; when it says "differs", each witness is decided
differently by that path. The seed pair and the examples are checked the
same way."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshauthz.mesh.loading import load_mesh
from meshauthz.symbolic import Comparison, compare_meshes
from meshauthz.symbolic.witness import Confirmer
from tests.conftest import EXAMPLES

SEED = EXAMPLES / "seed"
PRINCIPALS = [
    "cluster.local/ns/default/sa/frontend",
    "cluster.local/ns/default/sa/default",
    "*",
    "cluster.local/ns/other/*",
    "*/sa/frontend",
]
METHODS = ["GET", "POST", "DELETE"]
PATHS = ["/api/*", "/api/v1/data", "/health", "*", "*/data"]
IP_BLOCKS = ["192.0.2.0/24", "10.0.0.0/8"]
HEADER_VALUES = ["a", "b*", "*"]

values = st.lists
source = st.fixed_dictionaries(
    {"principals": values(st.sampled_from(PRINCIPALS), min_size=1, max_size=2)},
    optional={
        "notPrincipals": values(st.sampled_from(PRINCIPALS), min_size=1, max_size=1),
        "namespaces": values(st.sampled_from(["default", "other"]), min_size=1, max_size=1),
        "ipBlocks": values(st.sampled_from(IP_BLOCKS), min_size=1, max_size=1),
    },
)
operation = st.fixed_dictionaries(
    {"methods": values(st.sampled_from(METHODS), min_size=1, max_size=2)},
    optional={
        "paths": values(st.sampled_from(PATHS), min_size=1, max_size=2),
        "notPaths": values(st.sampled_from(PATHS), min_size=1, max_size=1),
    },
)
condition = st.builds(
    lambda vs: {"key": "request.headers[x-user]", "values": vs},
    values(st.sampled_from(HEADER_VALUES), min_size=1, max_size=2),
)
rule = st.fixed_dictionaries(
    {},
    optional={
        "from": st.lists(st.builds(lambda s: {"source": s}, source), min_size=1, max_size=1),
        "to": st.lists(st.builds(lambda o: {"operation": o}, operation), min_size=1, max_size=2),
        "when": st.lists(condition, min_size=1, max_size=1),
    },
)
policy = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["ALLOW", "DENY"]),
        "rules": st.lists(rule, min_size=0, max_size=2),
    }
)
policies = st.lists(policy, min_size=1, max_size=3)


def edit(
    draw: Any,
    ps: list[dict[str, Any]],
    new_rule: st.SearchStrategy[dict[str, Any]] = rule,
    tweak: Callable[[Any, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One small change of a policy set: a policy or a rule dropped, an action
    flipped, a rule added (drawn from ``new_rule``), or the first rule of a
    policy changed by ``tweak`` (by default: its methods)."""
    ps = yaml.safe_load(yaml.safe_dump(ps))  # a deep copy
    i = draw(st.integers(0, len(ps) - 1))
    kind = draw(st.sampled_from(["drop-policy", "drop-rule", "flip", "new-rule", "tweak"]))
    rules = ps[i]["rules"]
    if kind == "drop-policy":
        del ps[i]
    elif kind == "drop-rule" and rules:
        del rules[draw(st.integers(0, len(rules) - 1))]
    elif kind == "flip":
        ps[i]["action"] = "DENY" if ps[i]["action"] == "ALLOW" else "ALLOW"
    elif kind == "tweak" and rules:
        (tweak or _other_method)(draw, rules[0])
    else:
        rules.append(draw(new_rule))
    return ps


def _other_method(draw: Any, r: dict[str, Any]) -> None:
    r["to"] = [{"operation": {"methods": [draw(st.sampled_from(METHODS))]}}]


def write_mesh(root: Path, name: str, ps: list[dict[str, Any]]) -> Path:
    d = root / name
    d.mkdir()
    for f in ("backend.yaml", "frontend.yaml", "namespace.yaml"):
        shutil.copy(SEED / f, d / f)
    # Istio rejects a DENY policy without rules; give it the empty rule
    ps = [{**p, "rules": p["rules"] or [{}]} if p["action"] == "DENY" else p for p in ps]
    docs = [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": f"p{i}", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "backend"}}, **p},
        }
        for i, p in enumerate(ps)
    ]
    if docs:
        (d / "policies.yaml").write_text(yaml.safe_dump_all(docs))
    return d


def random_requests(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        caller: Any = rng.choice(
            [
                "default/frontend",
                "default/backend",
                {"principal": "cluster.local/ns/other/sa/x", "ip": "10.1.2.3"},
                {"principal": "spiffe.example/ns/default/sa/frontend"},
                {"plaintext": True, "ip": rng.choice(["192.0.2.7", "10.9.9.9", "203.0.113.1"])},
            ]
        )
        req: dict[str, Any] = {
            "from": caller,
            "to": "default/backend",
            "method": rng.choice([*METHODS, "PUT"]),
            "path": rng.choice(
                ["/api/v1/data", "/api/x", "/health", "/x/data", "/", "/API/v1/data"]
            ),
        }
        user = rng.choice([None, "a", "b1", "c", ""])
        if user is not None:
            req["headers"] = {"x-user": user}
        out.append(req)
    return out


RequestMaker = Callable[[random.Random, int], list[dict[str, Any]]]


def assert_sound(
    old_dir: Path, new_dir: Path, seed: int, n: int = 150, requests: RequestMaker | None = None
) -> Comparison:
    """The engine's answer on two meshes, checked by ``check``: each witness is
    decided differently on the two sides; when it says "equivalent", ``n``
    random requests (from ``requests``, by default ``random_requests``) are
    decided alike."""
    old, new = load_mesh((str(old_dir),)).snapshot, load_mesh((str(new_dir),)).snapshot
    result = compare_meshes(old, new)
    a, b = Confirmer(old), Confirmer(new)
    for change in [*result.opened, *result.closed]:
        assert a.decide(change.witness).verdict != b.decide(change.witness).verdict, change
    if result.equivalent:
        for req in (requests or random_requests)(random.Random(seed), n):
            assert a.decide(req).verdict == b.decide(req).verdict, req
    return result


def assert_no_gap(result: Comparison) -> None:
    """Every destination answered, or left unknown only because the solver ran
    out of time (an honest answer, never a guess; it depends on the machine's
    load): these policies hold nothing the engine cannot encode."""
    for u in result.unknown:
        assert u.reason.startswith("the solver gave up"), result.to_json()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), ps=policies)
def test_random_policy_sets_and_edits(data: st.DataObject, ps: list[dict[str, Any]]) -> None:
    edited = edit(data.draw, ps)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result = assert_sound(write_mesh(root, "a", ps), write_mesh(root, "b", edited), len(ps))
        assert_no_gap(result)


def test_the_seed_pair_and_the_examples() -> None:
    for old, new in [
        (SEED, EXAMPLES / "seed-fixed"),
        (EXAMPLES / "seed-fixed", SEED),
        (SEED, EXAMPLES / "twins"),
        (EXAMPLES / "twins", EXAMPLES / "seed-fixed"),
    ]:
        result = assert_sound(old, new, 7)
        assert not result.unknown

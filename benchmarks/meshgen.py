"""Scenarios for benchmarks/run.py: manifests, requests and the logical policies.

A scenario is three things, all deterministic for a given seed:

* manifests on disk (loaded through meshauthz's real loader by the caller);
* requests: ``Req(destination, principal, method, path)``, all HTTP with mTLS;
* the logical policies the peers decide on: per destination, the DENY rules
  and the ALLOW rules, each rule a conjunction of optional conditions
  (principal in a set, method in a set, path exact or prefix). Semantics, as
  Istio's: a matching DENY rule denies; otherwise, if the destination has an
  ALLOW policy, the request is allowed iff some ALLOW rule matches; otherwise
  it is allowed.

The logical policies are read from the loaded AuthorizationPolicy resources
(``logical_policies``), restricted to the fields the scenarios use, so that the
peers decide the same policies meshauthz does; which policies apply to which
workload comes from meshauthz's selection (that is setup, not decision).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

GENERATED_SEED = 20240611
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
TRUST_DOMAIN = "cluster.local"
NAMESPACES = 10


@dataclass(frozen=True, slots=True)
class Req:
    destination: str  # "ns/name"
    principal: str  # "cluster.local/ns/x/sa/y" (no spiffe://)
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A conjunction; None means the condition is absent (matches anything)."""

    principals: frozenset[str] | None = None
    methods: frozenset[str] | None = None
    paths_exact: frozenset[str] | None = None  # with paths_prefix: one "paths" condition
    paths_prefix: tuple[str, ...] | None = None

    def matches(self, r: Req) -> bool:
        if self.principals is not None and r.principal not in self.principals:
            return False
        if self.methods is not None and r.method not in self.methods:
            return False
        if self.paths_exact is not None or self.paths_prefix is not None:
            exact = self.paths_exact or frozenset()
            prefix = self.paths_prefix or ()
            if r.path not in exact and not r.path.startswith(prefix):
                return False
        return True


@dataclass(frozen=True, slots=True)
class DestinationPolicies:
    deny: tuple[Rule, ...]
    allow: tuple[Rule, ...]
    has_allow: bool  # an ALLOW policy applies (even one with no rules)

    def decide(self, r: Req) -> bool:
        """The reference semantics (Python, used only to describe the model)."""
        if any(rule.matches(r) for rule in self.deny):
            return False
        if self.has_allow:
            return any(rule.matches(r) for rule in self.allow)
        return True


# --- the generated mesh ---------------------------------------------------------------


def _principal(k: int) -> str:
    return f"{TRUST_DOMAIN}/ns/ns{k % NAMESPACES}/sa/client{k}"


@dataclass(frozen=True, slots=True)
class GeneratedRule:
    principals: tuple[str, ...]
    methods: tuple[str, ...]
    prefix: str  # without the trailing "*"


def generate_mesh(
    directory: Path, policies: int = 1000, seed: int = GENERATED_SEED
) -> list[list[GeneratedRule]]:
    """Write ``policies`` workloads, one ALLOW policy each (3 rules of 5
    principals, 2 methods and a path prefix), and a mesh-wide DENY on paths
    with prefix /admin, as YAML files under ``directory``. Returns the rules."""
    rng = random.Random(seed)
    pool = max(200, policies * 2)
    directory.mkdir(parents=True, exist_ok=True)
    ns_docs = [
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns{i}\n" for i in range(NAMESPACES)
    ]
    ns_docs.append("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n")
    (directory / "namespaces.yaml").write_text("---\n".join(ns_docs))
    (directory / "deny-admin.yaml").write_text(
        "apiVersion: security.istio.io/v1\n"
        "kind: AuthorizationPolicy\n"
        "metadata:\n  name: deny-admin\n  namespace: istio-system\n"
        "spec:\n  action: DENY\n  rules:\n  - to:\n    - operation:\n"
        '        paths: ["/admin*"]\n'
    )
    all_rules: list[list[GeneratedRule]] = []
    workloads: list[str] = []
    authz: list[str] = []
    for i in range(policies):
        ns = f"ns{i % NAMESPACES}"
        name = f"svc{i}"
        workloads.append(
            "apiVersion: apps/v1\nkind: Deployment\n"
            f"metadata:\n  name: {name}\n  namespace: {ns}\n"
            f"spec:\n  selector:\n    matchLabels:\n      app: {name}\n"
            f"  template:\n    metadata:\n      labels:\n        app: {name}\n"
            f"    spec:\n      serviceAccountName: {name}\n"
            f"      containers:\n      - name: app\n        image: app\n"
            f"        ports:\n        - containerPort: 8080\n"
        )
        rules = []
        text = []
        for j in range(3):
            principals = tuple(_principal(k) for k in rng.sample(range(pool), 5))
            methods = tuple(rng.sample(METHODS, 2))
            prefix = f"/{name}/r{j}/"
            rules.append(GeneratedRule(principals, methods, prefix))
            plist = ", ".join(f'"{p}"' for p in principals)
            mlist = ", ".join(f'"{m}"' for m in methods)
            text.append(
                f"  - from:\n    - source:\n        principals: [{plist}]\n"
                f"    to:\n    - operation:\n        methods: [{mlist}]\n"
                f'        paths: ["{prefix}*"]\n'
            )
        all_rules.append(rules)
        authz.append(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata:\n  name: allow-{name}\n  namespace: {ns}\n"
            f"spec:\n  selector:\n    matchLabels:\n      app: {name}\n"
            "  action: ALLOW\n  rules:\n" + "".join(text)
        )
    (directory / "workloads.yaml").write_text("---\n".join(workloads))
    (directory / "policies.yaml").write_text("---\n".join(authz))
    return all_rules


def mesh_requests(
    rules: list[list[GeneratedRule]], n: int, seed: int = GENERATED_SEED + 1
) -> list[Req]:
    """Random requests to the generated mesh, about half of them allowed."""
    rng = random.Random(seed)
    pool = max(200, len(rules) * 2)
    out = []
    for _ in range(n):
        i = rng.randrange(len(rules))
        rule = rng.choice(rules[i])
        principal = (
            rng.choice(rule.principals) if rng.random() < 0.7 else _principal(rng.randrange(pool))
        )
        method = rng.choice(rule.methods) if rng.random() < 0.75 else rng.choice(METHODS)
        x = rng.random()
        if x < 0.85:
            path = f"{rule.prefix}item{rng.randrange(1000)}"
        elif x < 0.93:
            path = f"/admin{rng.choice(('', '/', '/users', 'istrator'))}"
        else:
            path = f"/svc{rng.randrange(len(rules))}/r{rng.randrange(3)}/x"
        out.append(Req(f"ns{i % NAMESPACES}/svc{i}", principal, method, path))
    return out


# --- the seed -----------------------------------------------------------------------------


def seed_requests(n: int, seed: int = GENERATED_SEED + 2) -> list[Req]:
    """Random requests between the seed's two workloads (and strangers)."""
    rng = random.Random(seed)
    principals = (
        f"{TRUST_DOMAIN}/ns/default/sa/frontend",
        f"{TRUST_DOMAIN}/ns/default/sa/default",
        f"{TRUST_DOMAIN}/ns/other/sa/stranger",
    )
    paths = ("/api/v1/data", "/api/v1/other", "/", "/api/v1/data/x", "/admin")
    return [
        Req(
            rng.choice(("default/backend", "default/frontend")),
            rng.choice(principals),
            rng.choice(("GET", "GET", "POST", "DELETE")),
            rng.choice(paths),
        )
        for _ in range(n)
    ]


# --- the logical policies, read from the loaded resources ---------------------------------


def _rule_of(rule: Any, where: str) -> Rule:
    """One AuthorizationPolicy rule as a conjunction. Only the fields the
    scenarios use are supported; anything else is refused, not guessed."""
    principals: set[str] | None = None
    methods: set[str] | None = None
    exact: set[str] | None = None
    prefix: list[str] | None = None
    if rule.when:
        raise ValueError(f"{where}: 'when' is not modelled for the peers")
    for f in rule.from_ or ():
        s = f.source
        data = msgspec.to_builtins(s) if s is not None else {}  # the fields written
        if set(data) - {"principals"}:
            raise ValueError(f"{where}: source fields {sorted(data)} are not modelled")
        if "principals" in data:
            if principals is not None:
                raise ValueError(f"{where}: several from clauses are not modelled")
            principals = set(data["principals"])
    for t in rule.to or ():
        o = t.operation
        data = msgspec.to_builtins(o) if o is not None else {}
        if set(data) - {"methods", "paths"}:
            raise ValueError(f"{where}: operation fields {sorted(data)} are not modelled")
        if methods is not None or exact is not None:
            raise ValueError(f"{where}: several to clauses are not modelled")
        if "methods" in data:
            methods = set(data["methods"])
        if "paths" in data:
            exact, prefix = set(), []
            for p in data["paths"]:
                if p == "*" or p.startswith("*") or ("*" in p and not p.endswith("*")):
                    raise ValueError(f"{where}: path {p!r} is not modelled")
                if p.endswith("*"):
                    prefix.append(p[:-1])
                else:
                    exact.add(p)
    return Rule(
        frozenset(principals) if principals is not None else None,
        frozenset(methods) if methods is not None else None,
        frozenset(exact) if exact is not None else None,
        tuple(prefix) if prefix is not None else None,
    )


def logical_policies(snapshot: Any, workload_keys: list[str]) -> dict[str, DestinationPolicies]:
    from meshauthz.mesh import select_policies

    out: dict[str, DestinationPolicies] = {}
    for key in workload_keys:
        w = snapshot.workload(key)
        deny: list[Rule] = []
        allow: list[Rule] = []
        has_allow = False
        for s in select_policies(snapshot, w, "AuthorizationPolicy"):
            spec = s.policy.spec
            action = (spec.action or "ALLOW").upper()
            if action not in ("ALLOW", "DENY"):
                raise ValueError(f"{s.key}: action {action} is not modelled for the peers")
            if action == "ALLOW":
                has_allow = True
            for i, rule in enumerate(spec.rules or ()):
                (allow if action == "ALLOW" else deny).append(_rule_of(rule, f"{s.key} rule {i}"))
        out[key] = DestinationPolicies(tuple(deny), tuple(allow), has_allow)
    return out

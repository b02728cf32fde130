"""Rules and policies that never change a decision, and workloads whose
answer never depends on the request.

``redundant(snapshot)``: every AuthorizationPolicy (and every rule of a policy
with several) whose removal changes no decision on any workload, port and
protocol it applies to. Each finding is verified by the engine: the mesh with
the rule or policy removed is compared with the mesh as it is
(``meshauthz.symbolic.compare``), and only an "equivalent" answer makes a
finding. Its reason says why, from the chain's formulas: an empty match (it
matches no request), unreachable on the port's protocol (it only matches on
the other chain), shadowed by a DENY (every request it matches is denied
before its filter), or covered by other rules. Dry-run and AUDIT policies
never decide and are not reported, nor are destinations nothing enforces
(no sidecar, no ztunnel: every request reaches the application, whatever the
policies say).

``always(snapshot)``: per workload, port and protocol with at least one
policy, ``always-denies`` (no request is allowed) and ``always-allows`` (no
request is denied), for the lint front end; a destination nothing enforces
allows every request.

The library (for ``analyze`` and other front ends):

    redundant(snapshot: MeshSnapshot, *, ext_authz="deny") -> RedundancyReport
        ``.findings``: ``Redundant(policy, rule, reason, destinations, file, line)``
        (``rule`` None for a whole policy); ``.unknown``: ``Unknown``
        destinations that could not be answered exactly; ``.to_json()``.
    always(snapshot: MeshSnapshot, *, ext_authz="deny") -> list[Always]
        ``Always(destination, kind, policies)`` with kind ``"always-denies"``
        or ``"always-allows"``; destinations the engine cannot encode exactly
        are left out (never guessed).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import z3
from msgspec import Struct, field

from meshauthz.ambient.topology import enrollment
from meshauthz.decide.engine import Decider, Prepared
from meshauthz.decide.runner import ExtAuthzAssumption
from meshauthz.mesh import MeshSnapshot
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.symbolic.chain import SymbolicChain, encode_chain
from meshauthz.symbolic.compare import (
    Comparer,
    Unknown,
    build_space,
    destinations,
    sat,
    unenforced,
)
from meshauthz.symbolic.regex import Unencodable
from meshauthz.symbolic.witness import Destination

Reason = Literal[
    "empty match",
    "unreachable on this port's protocol",
    "shadowed by a DENY",
    "covered by other rules",
]


class Redundant(Struct, frozen=True):
    policy: str  # "namespace/name"
    rule: int | None  # None: the whole policy
    reason: Reason
    destinations: tuple[Destination, ...]
    file: str | None = None
    line: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "rule": self.rule,
            "reason": self.reason,
            "destinations": [d.to_json() for d in self.destinations],
            "file": self.file,
            "line": self.line,
        }


class RedundancyReport(Struct):
    findings: list[Redundant] = field(default_factory=list)
    unknown: list[Unknown] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "redundant": [f.to_json() for f in self.findings],
            "unknown": [u.to_json() for u in self.unknown],
        }


class Always(Struct, frozen=True):
    destination: Destination
    kind: Literal["always-denies", "always-allows"]
    policies: tuple[str, ...]  # the policies that apply there

    def to_json(self) -> dict[str, Any]:
        d = self.destination
        return {
            "workload": d.workload,
            "port": d.port,
            "protocol": d.protocol,
            "kind": self.kind,
            "policies": list(self.policies),
        }


def without_rule(
    snapshot: MeshSnapshot, policy: AuthorizationPolicy, rule: int | None
) -> MeshSnapshot:
    """The mesh without ``policy`` (``rule`` None) or without one of its rules."""
    kept: list[AuthorizationPolicy] = []
    for ap in snapshot.authorization_policies:
        if ap is not policy:
            kept.append(ap)
        elif rule is not None:
            rules = ap.spec.rules[:rule] + ap.spec.rules[rule + 1 :]
            kept.append(
                msgspec.structs.replace(ap, spec=msgspec.structs.replace(ap.spec, rules=rules))
            )
    return MeshSnapshot(
        mesh_config=snapshot.mesh_config,
        namespaces=snapshot.namespaces,
        workloads=snapshot.workloads,
        services=snapshot.services,
        gateways=snapshot.gateways,
        authorization_policies=kept,
        request_authentications=snapshot.request_authentications,
        peer_authentications=snapshot.peer_authentications,
        domain_suffix=snapshot.domain_suffix,
    )


class _Mesh:
    """One mesh's destinations, prepared and encoded once."""

    def __init__(self, snapshot: MeshSnapshot, ext_authz: ExtAuthzAssumption) -> None:
        self.snapshot = snapshot
        self.ext_authz = ext_authz
        self.decider = Decider(snapshot, ext_authz=ext_authz)
        self.dests = destinations(snapshot, snapshot)
        self._chains: dict[Destination, tuple[SymbolicChain, z3.BoolRef]] = {}

    def prepared(self, d: Destination) -> Prepared:
        proto: Any = d.protocol
        return self.decider.prepare(self.snapshot.workload(d.workload), d.port, proto)

    def mode(self, d: Destination) -> str:
        """Who enforces at ``d``: "sidecar", "ambient" (ztunnel) or "none"."""
        return enrollment(self.snapshot, self.snapshot.workload(d.workload)).mode

    def chain(self, d: Destination) -> tuple[SymbolicChain, z3.BoolRef]:
        """The chain's formulas and the space's domain (raises ``Unencodable``)."""
        hit = self._chains.get(d)
        if hit is None:
            p = self.prepared(d)
            mode = self.mode(d)
            if mode == "ambient":
                raise Unencodable(
                    f"{d.workload} is in ambient mode (ztunnel and waypoints enforce)"
                )
            if mode == "none":
                space = build_space(d.protocol == "http", ())
                chain = unenforced(p)
            else:
                space = build_space(d.protocol == "http", (p,))
                chain = encode_chain(p, space, self.ext_authz)
            hit = self._chains[d] = (chain, space.domain())
        return hit


def _reason(mesh: _Mesh, key: str, rule: int | None, dests: list[Destination]) -> Reason:
    """Why the rule (or every rule of the policy) never decides, from the formulas."""
    matched_somewhere = False
    reached_somewhere = False
    on_other_protocol = False
    for d in dests:
        chain, domain = mesh.chain(d)
        for pm in chain.policies:
            src = pm.built.sources.get(pm.name)
            if pm.shadow or src is None or src[0] != key or (rule is not None and src[1] != rule):
                continue
            if sat(domain, pm.matches):
                matched_somewhere = True
                if sat(domain, pm.matches, pm.reached):
                    reached_somewhere = True
        if d.protocol == "tcp":
            on_other_protocol = True
    if not matched_somewhere:
        # the same destinations' HTTP chains: does it match there?
        http = {Destination(d.workload, d.port, "http") for d in dests}
        if on_other_protocol and any(_matches_on(mesh, key, rule, d) for d in http):
            return "unreachable on this port's protocol"
        return "empty match"
    if not reached_somewhere:
        return "shadowed by a DENY"
    return "covered by other rules"


def _matches_on(mesh: _Mesh, key: str, rule: int | None, d: Destination) -> bool:
    chain, domain = mesh.chain(d)
    return any(
        sat(domain, pm.matches)
        for pm in chain.policies
        if not pm.shadow
        and (src := pm.built.sources.get(pm.name)) is not None
        and src[0] == key
        and (rule is None or src[1] == rule)
    )


def redundant(
    snapshot: MeshSnapshot, *, ext_authz: ExtAuthzAssumption = "deny"
) -> RedundancyReport:
    """Every policy, and every rule of a policy with several, whose removal
    changes no decision, each verified by comparing the mesh without it."""
    report = RedundancyReport()
    mesh = _Mesh(snapshot, ext_authz)
    applies: dict[str, list[Destination]] = {}
    for d in mesh.dests:
        if mesh.mode(d) == "none":
            continue  # nothing enforces there: no policy decides anything
        for s in mesh.prepared(d).selected:
            applies.setdefault(s.key, []).append(d)
    unknown: dict[Destination, Unknown] = {}
    for ap in snapshot.authorization_policies:
        dests = applies.get(ap.key, [])
        if not dests or ap.dry_run or ap.spec.action == "AUDIT":
            continue
        candidates: list[int | None] = [None]
        if len(ap.spec.rules) > 1:
            candidates += list(range(len(ap.spec.rules)))
        for rule in candidates:
            if (
                rule is not None
                and report.findings
                and report.findings[-1].policy == ap.key
                and report.findings[-1].rule is None
            ):
                break  # the whole policy is redundant: so is each of its rules
            result = Comparer(
                snapshot, without_rule(snapshot, ap, rule), ext_authz=ext_authz, max_classes=1
            ).compare(only=dests)
            for u in result.unknown:
                unknown.setdefault(u.destination, u)
            if result.opened or result.closed or result.unknown:
                continue
            try:
                reason = _reason(mesh, ap.key, rule, dests)
            except Unencodable:
                reason = "covered by other rules"
            report.findings.append(
                Redundant(
                    ap.key,
                    rule,
                    reason,
                    tuple(dests),
                    ap.file,
                    ap.line,
                )
            )
    report.unknown = list(unknown.values())
    return report


def always(snapshot: MeshSnapshot, *, ext_authz: ExtAuthzAssumption = "deny") -> list[Always]:
    """Per workload, port and protocol with at least one policy: whether every
    request is denied, or every request allowed."""
    mesh = _Mesh(snapshot, ext_authz)
    out: list[Always] = []
    for d in mesh.dests:
        p = mesh.prepared(d)
        if not p.selected:
            continue
        try:
            chain, domain = mesh.chain(d)
            allowed = chain.allowed
            policies = tuple(s.key for s in p.selected)
            if not sat(domain, allowed):
                out.append(Always(d, "always-denies", policies))
            elif not sat(domain, z3.Not(allowed)):
                out.append(Always(d, "always-allows", policies))
        except Unencodable:
            continue
    return out


__all__ = ["Always", "RedundancyReport", "Redundant", "always", "redundant"]

"""ztunnel's decision on a connection as formulas over the source address.

ztunnel sees a connection, not a request (``meshauthz.ambient.evaluate``): the
peer's identity, the source and destination addresses and the destination
port. For one caller of one destination the identity, the destination and the
port are given, so every field of a match but the source address is decided
by ztunnel's own predicates (``evaluate.match_matches``) on the connection;
the source address is the space's variable (``Space.src``) and ``sourceIps``
become prefix comparisons on it. The ends follow ``evaluate.assert_rbac``:
the DENY policies in the order given, the first matching rule of each, then
"no ALLOW policy: allowed", else the ALLOW policies, else denied. Dry-run
policies only log.
"""

from __future__ import annotations

from collections.abc import Sequence

import z3
from msgspec.structs import replace

from meshauthz.ambient.authorization import Address, Authorization, Match
from meshauthz.ambient.evaluate import Connection, match_matches
from meshauthz.decide.cause import Stage
from meshauthz.envoy.rbac.model import CidrRange
from meshauthz.symbolic.chain import End
from meshauthz.symbolic.matchers import cidr_formula
from meshauthz.symbolic.space import Space


def contains(a: Address, space: Space) -> z3.BoolRef:
    """``Address.contains`` of the source address: the same IP version and
    prefix, as an RBAC CIDR range compares them (``matchers.cidr_formula``)."""
    return cidr_formula(CidrRange(str(a.ip), a.length), space.src_v6, space.src)


def _match(m: Match, conn: Connection, space: Space) -> z3.BoolRef:
    rest = replace(m, source_ips=(), not_source_ips=())
    if not match_matches(rest, conn):
        return z3.BoolVal(False)
    pos = z3.Or(*[contains(a, space) for a in m.source_ips]) if m.source_ips else z3.BoolVal(True)
    neg = [contains(a, space) for a in m.not_source_ips]
    return z3.And(pos, z3.Not(z3.Or(*neg))) if neg else pos


def rule_formulas(p: Authorization, conn: Connection, space: Space) -> list[z3.BoolRef]:
    """Each rule's match (``evaluate.matching_rule``): every clause, any
    non-empty match of it; a clause without matches matches."""
    out = []
    for rule in p.rules:
        clauses = [
            z3.Or(
                *[_match(m, conn, space) for m in clause if not m.is_empty] or [z3.BoolVal(False)]
            )
            for clause in rule
            if clause
        ]
        out.append(z3.And(*clauses) if clauses else z3.BoolVal(True))
    return out


def _stage(p: Authorization) -> Stage:
    # policies istiod converts from a PeerAuthentication (STRICT) deny as mTLS does
    return Stage.DENY if p.source.startswith("AuthorizationPolicy") else Stage.MTLS


ZtunnelEnd = tuple[z3.BoolRef, End, str | None]


def ztunnel_ends(
    policies: Sequence[Authorization], conn: Connection, space: Space
) -> list[ZtunnelEnd]:
    """The ways ztunnel decides ``conn`` (its source address left open), each
    with the policy and origin rule ``check`` reports and, for a policy's
    rule, what it asks of the source address; the conditions partition the
    source addresses."""
    ends: list[ZtunnelEnd] = []
    reach: z3.BoolRef = z3.BoolVal(True)

    def policy(p: Authorization, verdict: str, stage: Stage) -> None:
        nonlocal reach
        earlier: list[z3.BoolRef] = []
        for i, f in enumerate(rule_formulas(p, conn, space)):
            first = z3.And(reach, f, *[z3.Not(e) for e in earlier])
            end = End("ALLOW" if verdict == "ALLOW" else "DENY", stage, p.key, p.origin_rule(i))
            text = f"{source_ips_text(p, i)} [{p.key} rule {p.origin_rule(i)}]"
            ends.append((first, end, text))
            earlier.append(f)
        if earlier:
            reach = z3.And(reach, z3.Not(z3.Or(*earlier)))

    for p in policies:
        if p.action == "DENY" and not p.dry_run:
            policy(p, "DENY", _stage(p))
    allow = [p for p in policies if p.action == "ALLOW" and not p.dry_run]
    if not allow:
        ends.append((reach, End("ALLOW", Stage.DEFAULT), None))
        return ends
    for p in allow:
        policy(p, "ALLOW", Stage.ALLOW)
    ends.append((reach, End("DENY", Stage.ALLOW), None))
    return ends


def source_ips_text(p: Authorization, rule: int) -> str:
    """What a rule asks of the source address, in the AuthorizationPolicy's
    fields (the rest is decided by the caller itself)."""
    parts = []
    for clause in p.rules[rule]:
        for m in clause:
            if m.source_ips:
                parts.append("ipBlocks " + ", ".join(a.dump() for a in m.source_ips))
            if m.not_source_ips:
                parts.append("ipBlocks not " + ", ".join(a.dump() for a in m.not_source_ips))
    return " and ".join(dict.fromkeys(parts)) or "any request"


__all__ = ["ZtunnelEnd", "contains", "rule_formulas", "source_ips_text", "ztunnel_ends"]

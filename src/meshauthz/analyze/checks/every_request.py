"""The findings that need facts about every request, from the symbolic engine
(``meshauthz.symbolic.redundant``): MA2014 (a rule or policy whose removal
changes no decision), MA2015 (a port that denies every request) and MA2016 (a
port with policies that allow every request).

The engine answers; each witness is then decided by the one decision path
(``Context.witnesses``, as ``check`` decides it) and a finding is made only
when that decision says what the finding claims. Where the engine answers
"unknown" (a matcher it cannot encode exactly, a solver time-out, a
destination ztunnel enforces), there is no finding: never a guess.

The engine's cost grows with the destinations and rules (about a second per
compared destination): ``analyze --deep`` runs these checks, plain ``analyze``
does not (docs/analyze.md, "Cost").
"""

from __future__ import annotations

from typing import Any

import z3

from meshauthz.ambient.topology import enrollment
from meshauthz.analyze.checks.deny_all import matches_everything
from meshauthz.analyze.context import Context
from meshauthz.analyze.finding import AnalysisFinding, Witness, at
from meshauthz.analyze.witness import Witnesses
from meshauthz.decide.engine import Decider
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.symbolic.chain import SymbolicChain, encode_chain
from meshauthz.symbolic.compare import SOLVER_TIMEOUT_MS, build_space, destinations
from meshauthz.symbolic.redundant import Always, Redundant, always, redundant, without_rule
from meshauthz.symbolic.regex import Unencodable
from meshauthz.symbolic.space import Space
from meshauthz.symbolic.witness import Destination, default_host, readable_model, witness_request

_REASONS = {
    "empty match": "it matches no request",
    "unreachable on this port's protocol": (
        "it only matches HTTP requests and every port it applies to is TCP"
    ),
    "shadowed by a DENY": "every request it matches is denied by a DENY policy first",
    "covered by other rules": "every request it matches is decided the same without it",
}


class _Encoded:
    """One destination's chain as formulas, for witnesses."""

    def __init__(self, ctx: Context, decider: Decider, d: Destination) -> None:
        w = ctx.snapshot.workload(d.workload)
        proto: Any = d.protocol
        self.prepared = decider.prepare(w, d.port, proto)
        http = d.protocol == "http"
        if http and self.prepared.path_options.unmodelled():
            raise Unencodable(str(self.prepared.path_options.unmodelled()))
        self.space: Space = build_space(http, (self.prepared,))
        self.chain: SymbolicChain = encode_chain(self.prepared, self.space, "deny")
        self.domain = self.space.domain()
        self.host = default_host(ctx.snapshot, d.workload) if http else None

    def request(self, d: Destination, *question: z3.BoolRef) -> dict[str, Any] | None:
        """A readable request to ``d`` for which ``question`` holds; None if none."""
        solver = z3.Solver()
        solver.set("timeout", SOLVER_TIMEOUT_MS)
        solver.add(self.domain, *question)
        if solver.check() != z3.sat:
            return None
        model = readable_model(solver, self.space, self.host, SOLVER_TIMEOUT_MS)
        return witness_request(model, self.space, d, host=self.host)


def _modelled(ctx: Context, d: Destination) -> bool:
    """A destination the engine models: its own proxy enforces (not ztunnel, not nothing)."""
    mode = enrollment(ctx.snapshot, ctx.snapshot.workload(d.workload)).mode
    return mode not in ("ambient", "none")


def _deny_all_on(ctx: Context, d: Destination) -> bool:
    """A DENY rule that matches every request applies at ``d``: MA2001 says it already."""
    w = ctx.snapshot.workload(d.workload)
    return any(
        p.spec.action == "DENY"
        and not p.dry_run
        and any(matches_everything(r) for r in p.spec.rules)
        for p in ctx.policies_of(w)
    )


def check_every_request(ctx: Context) -> None:
    if ctx.only is not None or ctx.manifests is None:
        return
    snap = ctx.snapshot
    decider = Decider(snap)
    with_policy = [
        d
        for d in destinations(snap, snap)
        if _modelled(ctx, d)
        and decider.prepare(snap.workload(d.workload), d.port, d.protocol).selected  # type: ignore[arg-type]
    ]
    if not with_policy:
        return  # no policy anywhere the engine models: nothing to ask it
    encoded: dict[Destination, _Encoded | None] = {}

    def enc(d: Destination) -> _Encoded | None:
        if d not in encoded:
            try:
                encoded[d] = _Encoded(ctx, decider, d)
            except Unencodable:
                encoded[d] = None
        return encoded[d]

    policies = {p.key: p for p in snap.authorization_policies}
    for r in redundant(snap).findings:
        p = policies.get(r.policy)
        if p is not None:
            _redundant(ctx, p, r, enc)
    for a in always(snap):
        if _modelled(ctx, a.destination):
            _always(ctx, a, enc)


def _confirmed(ctx: Context, request: dict[str, Any] | None, holds: Any) -> Witness | None:
    if request is None:
        return None
    got = ctx.witnesses.decide(request)
    return got.witness if got is not None and holds(got.decision) else None


def _redundant(ctx: Context, p: AuthorizationPolicy, r: Redundant, enc: Any) -> None:
    dests = [d for d in r.destinations if _modelled(ctx, d)]
    if not dests:
        return
    if r.reason == "shadowed by a DENY" and all(_deny_all_on(ctx, d) for d in dests):
        return  # MA2001 names this dead ALLOW at the DENY that kills it
    if r.rule is None and not p.spec.rules:
        return  # a policy without rules (allow-nothing) is written to stay when others go
    what = "this policy" if r.rule is None else f"rule {r.rule} of this policy"
    places = ", ".join(sorted({f"{d.workload} port {d.port}" for d in dests}))
    witness: Witness | None = None
    if r.reason in ("shadowed by a DENY", "covered by other rules"):
        witness = _removal_witness(ctx, p, r, dests, enc)
        if witness is None:
            return  # the decision path does not show it: no finding
    path: tuple[str | int, ...] = ("spec",) if r.rule is None else ("spec", "rules", r.rule)
    ctx.add(
        AnalysisFinding(
            "MA2014",
            f"{what} never changes a decision ({r.reason}): {_REASONS[r.reason]} (on {places})",
            fix="remove it, or fix what it was meant to match"
            if r.reason != "shadowed by a DENY"
            else "narrow the DENY that denies these requests first, or remove this "
            + ("policy" if r.rule is None else "rule"),
            witness=witness,
            **at(p, *path),
        )
    )


def _removal_witness(
    ctx: Context, p: AuthorizationPolicy, r: Redundant, dests: list[Destination], enc: Any
) -> Witness | None:
    """A request the rule (or policy) matches that the mesh without it decides as
    the mesh does, both decided by the concrete path; preferably one that another
    policy decides, so the witness shows who does."""
    without = Witnesses(without_rule(ctx.snapshot, p, r.rule))
    for d in dests:
        e = enc(d)
        if e is None:
            continue
        mine = [
            pm.matches
            for pm in e.chain.policies
            if not pm.shadow
            and (src := pm.built.sources.get(pm.name)) is not None
            and src[0] == p.key
            and (r.rule is None or src[1] == r.rule)
        ]
        if not mine:
            continue
        others = [
            c
            for c, end in e.chain.ends
            if end.policy != p.key or (r.rule is not None and end.rule != r.rule)
        ]
        for question in ([z3.Or(*mine), z3.Or(*others)] if others else None, [z3.Or(*mine)]):
            if question is None:
                continue
            req = e.request(d, *question)
            got = ctx.witnesses.decide(req) if req is not None else None
            alt = without.decide(req) if req is not None else None
            if (
                got is not None
                and alt is not None
                and (got.witness.decision, got.witness.status)
                == (alt.witness.decision, alt.witness.status)
            ):
                return got.witness
    return None


def _always(ctx: Context, a: Always, enc: Any) -> None:
    d = a.destination
    deny = a.kind == "always-denies"
    if deny and _deny_all_on(ctx, d):
        return  # MA2001 says it, with the DENY rule to narrow
    e = enc(d)
    if e is None:
        return
    verdict = "DENY" if deny else "ALLOW"
    req = e.request(d)
    witness = _confirmed(ctx, req, lambda dec: dec.verdict == verdict)
    if witness is None:
        return
    policies = [p for p in ctx.snapshot.authorization_policies if p.key in a.policies]
    if not policies:
        return
    if not deny and not any(p.spec.action in ("ALLOW", "DENY") and not p.dry_run for p in policies):
        return  # only AUDIT, CUSTOM or dry-run policies there: allowing all is their design
    first = policies[0]
    names = ", ".join(a.policies)
    if deny:
        message = (
            f"port {d.port} ({d.protocol}) of {d.workload} denies every request: no request "
            f"is allowed under the policies that apply there ({names})"
        )
        fix = "add an ALLOW rule for the callers meant to reach it, or remove the port"
    else:
        message = (
            f"port {d.port} ({d.protocol}) of {d.workload} allows every request although "
            f"policies apply there ({names}): none of them denies anything on this port"
        )
        fix = "check that the policies select this port's traffic as meant"
    ctx.add(
        AnalysisFinding(
            "MA2015" if deny else "MA2016",
            message,
            fix=fix,
            witness=witness,
            **at(first, "spec"),
        )
    )


__all__ = ["check_every_request"]

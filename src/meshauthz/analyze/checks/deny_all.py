"""MA2001: a DENY rule that matches every request next to ALLOW policies (the
seed's mistake); MA2011: a root-namespace ALLOW that a DENY policy overrides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from meshauthz.analyze.context import Context
from meshauthz.analyze.finding import AnalysisFinding, at
from meshauthz.analyze.requests import request_for_rule
from meshauthz.analyze.witness import Decided, decided_by, rule_matched
from meshauthz.decide.cause import Stage
from meshauthz.decide.decision import Decision
from meshauthz.mesh import MeshWorkload
from meshauthz.resources.istio import Rule
from meshauthz.resources.objects import AuthorizationPolicy

# Fields whose "*" matches every HTTP request (a header that is always present,
# a path that is never empty).
_WILDCARD_FIELDS = ("methods", "paths", "hosts")


def matches_everything(rule: Rule) -> bool:
    """The rule is ``{}`` or only lists ``*`` in fields every request has."""
    if rule.from_ or rule.when:
        return False
    for t in rule.to:
        op = t.operation
        if op is None:
            continue
        data = msgspec.structs.asdict(op)
        for name, values in data.items():
            if not values:
                continue
            if name not in _WILDCARD_FIELDS or "*" not in values:
                return False
    return True


def _key(p: AuthorizationPolicy) -> str:
    return f"{p.namespace}/{p.name}"


def check_deny_all(ctx: Context) -> None:
    for deny in ctx.authorization_policies:
        if deny.spec.action != "DENY" or deny.dry_run:
            continue
        for i, rule in enumerate(deny.spec.rules):
            if not matches_everything(rule):
                continue
            dead: dict[str, str] = {}  # ALLOW policy -> the workload it is dead on
            witness: Decided | None = None
            for w in ctx.workloads_of(deny):
                for allow in ctx.policies_of(w):
                    if allow.spec.action != "ALLOW" or allow.dry_run or not allow.spec.rules:
                        continue
                    got = _dead_witness(ctx, deny, i, allow, w)
                    if got is not None and _key(allow) not in dead:
                        dead[_key(allow)] = w.key
                        witness = witness or got
            if not dead or witness is None:
                continue
            names = ", ".join(f"{a} (on {w})" for a, w in dead.items())
            plural = "policies" if len(dead) > 1 else "policy"
            ctx.add(
                AnalysisFinding(
                    "MA2001",
                    f"this DENY rule matches every request, and DENY policies are evaluated "
                    f"before ALLOW policies: the ALLOW {plural} {names} can never let a "
                    "request through",
                    fix="to deny what no ALLOW rule lists, replace this DENY policy with an ALLOW "
                    "policy that has no rules (spec: {selector: ...}); or narrow this rule",
                    witness=witness.witness,
                    **at(deny, "spec", "rules", i),
                )
            )


def _dead_witness(
    ctx: Context, deny: AuthorizationPolicy, i: int, allow: AuthorizationPolicy, w: MeshWorkload
) -> Decided | None:
    """A request an ALLOW rule matches that the DENY rule denies, decided."""
    port = ctx.default_port(w)
    candidates = [request_for_rule(ctx, r, w, port) for r in allow.spec.rules]
    for j, c in enumerate(candidates):
        got = ctx.witnesses.decide(c)
        if (
            got is not None
            and got.decision.stage is Stage.DENY
            and decided_by(got.decision, _key(deny), i)
            and rule_matched(got.decision, _key(allow), j)
        ):
            return got
    return None


def check_root_allow(ctx: Context) -> None:
    root = ctx.snapshot.root_namespace
    for allow in ctx.authorization_policies:
        if allow.namespace != root or allow.spec.action != "ALLOW" or allow.dry_run:
            continue
        for j, rule in enumerate(allow.spec.rules):
            found: Decided | None = None
            for w in ctx.workloads_of(allow):
                if not any(p.spec.action == "DENY" for p in ctx.policies_of(w)):
                    continue
                base = request_for_rule(ctx, rule, w, ctx.default_port(w))
                # the ALLOW names no caller: try the mesh's, then a plaintext one
                callers: list[Any] = [base["from"]] if rule.from_ else []
                callers += [o.key for o in ctx.snapshot.workloads if o is not w][:8]
                callers.append({"plaintext": True})
                found = ctx.witnesses.first(
                    [{**base, "from": c} for c in callers], _denied_though(_key(allow), j)
                )
                if found is not None:
                    break
            if found is None:
                continue
            by = f"{found.decision.policy} rule {found.decision.rule}"
            ctx.add(
                AnalysisFinding(
                    "MA2011",
                    f"this ALLOW rule in the root namespace cannot exempt requests from the DENY "
                    f"policy {found.decision.policy}: DENY policies are evaluated first, "
                    f"wherever they are (denied by {by})",
                    fix="narrow the DENY policy so that it does not match these requests; an "
                    "ALLOW policy never overrides a DENY",
                    witness=found.witness,
                    **at(allow, "spec", "rules", j),
                )
            )


def _denied_though(allow: str, rule: int) -> Callable[[Decision], bool]:
    """Denied by a DENY policy although ``allow`` rule ``rule`` matches."""
    return lambda d: d.stage is Stage.DENY and rule_matched(d, allow, rule)

"""Rule coverage, like ``opa test --coverage``: which rules did the cases exercise?

Every rule of every AuthorizationPolicy in the suites' manifests is a unit.
A rule is *matched* when some case's request matched it in a filter the
request reached. A DENY or ALLOW rule is also *missed* when some case reached
it and did not match it: a near case, one that tests the rule's boundary from
the other side (the clause that failed is kept). A DENY or ALLOW rule is
covered when it was both matched and missed (an empty rule, ``{}``, matches
every request and cannot be missed, so matching it is enough); a CUSTOM or
AUDIT rule when it was matched. Rules evaluated only after the decision (not
reached) do not count: Envoy never ran them.
"""

from __future__ import annotations

import os
from typing import Any

from msgspec import Struct, field

from meshauthz.decide.decision import Decision
from meshauthz.mesh import MeshSnapshot
from meshauthz.resources.objects import AuthorizationPolicy

_RULE_STAGES = ("CUSTOM", "AUDIT", "DENY", "ALLOW")


class RuleCoverage(Struct):
    index: int
    file: str
    line: int | None
    empty: bool  # {}: matches every request
    two_sided: bool  # DENY/ALLOW: must also be missed by a near case
    matched_by: list[str] = field(default_factory=list)
    missed_by: list[tuple[str, str | None]] = field(default_factory=list)  # (case, field)

    @property
    def matched(self) -> bool:
        return bool(self.matched_by)

    @property
    def missed(self) -> bool:
        return bool(self.missed_by)

    @property
    def covered(self) -> bool:
        if not self.matched:
            return False
        return self.missed or self.empty or not self.two_sided

    def status(self) -> str:
        if self.covered:
            return "covered"
        if self.matched:
            return "matched only: no case reached it without matching"
        if self.missed:
            return "never matched"
        return "not exercised"

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.index,
            "file": self.file,
            "line": self.line,
            "covered": self.covered,
            "matched": self.matched,
            "missed": self.missed,
            "empty": self.empty,
            "matchedBy": self.matched_by,
            "missedBy": [{"case": c, "field": f} for c, f in self.missed_by],
        }


class PolicyCoverage(Struct):
    policy: str  # namespace/name
    action: str
    file: str
    line: int
    dry_run: bool
    rules: list[RuleCoverage]
    reached_by: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "action": self.action,
            "file": self.file,
            "line": self.line,
            "dryRun": self.dry_run,
            "reached": bool(self.reached_by),
            "rules": [r.to_json() for r in self.rules],
        }


class Coverage:
    """Coverage gathered across suites; a policy loaded by several suites counts once."""

    def __init__(self) -> None:
        self.policies: dict[tuple[str, str], PolicyCoverage] = {}
        # Per snapshot: policy key -> the merged entry (a snapshot has one policy per key).
        self._current: dict[str, PolicyCoverage] = {}

    def add_snapshot(self, snapshot: MeshSnapshot) -> None:
        self._current = {}
        for p in snapshot.authorization_policies:
            key = (os.path.realpath(p.file), p.key)
            entry = self.policies.get(key)
            if entry is None:
                entry = self.policies[key] = _policy_entry(p)
            self._current[p.key] = entry

    def record(self, decision: Decision, case: str) -> None:
        for step in decision.trace:
            if step.stage not in _RULE_STAGES or step.policy is None:
                continue
            if step.message.startswith("(not reached)"):
                continue
            entry = self._current.get(step.policy)
            if entry is None:
                continue
            if case not in entry.reached_by:
                entry.reached_by.append(case)
            if step.rule is None or step.rule >= len(entry.rules) or step.matched is None:
                continue
            rule = entry.rules[step.rule]
            if step.matched:
                if case not in rule.matched_by:
                    rule.matched_by.append(case)
            elif not any(c == case for c, _ in rule.missed_by):
                field = step.field
                if field and step.section and not field.startswith(step.section):
                    field = f"{step.section}.{field}"
                rule.missed_by.append((case, field))

    # --- reports ------------------------------------------------------------

    def ordered(self) -> list[PolicyCoverage]:
        return sorted(self.policies.values(), key=lambda p: (p.file, p.line, p.policy))

    def totals(self) -> tuple[int, int]:
        rules = [r for p in self.policies.values() for r in p.rules]
        return sum(1 for r in rules if r.covered), len(rules)

    def percent(self) -> float:
        """Rules covered, in percent, unrounded (100 when there is no rule)."""
        covered, total = self.totals()
        return 100.0 * covered / total if total else 100.0

    def to_json(self) -> dict[str, Any]:
        covered, total = self.totals()
        return {
            "rules": {
                "covered": covered,
                "total": total,
                "percent": round(self.percent(), 1),
            },
            "policies": [p.to_json() for p in self.ordered()],
        }

    def text_lines(self) -> list[str]:
        covered, total = self.totals()
        pct = f"{100.0 * covered / total:.1f}%" if total else "100%"
        lines = [f"coverage: {covered} of {total} rules covered ({pct})"]
        for p in self.ordered():
            dry = ", dry-run" if p.dry_run else ""
            lines.append(f"  {p.action:<6} {p.policy} ({p.file}:{p.line}{dry})")
            if not p.rules:
                reached = "reached by a case" if p.reached_by else "reached by no case"
                lines.append(f"    no rules: it matches no request ({reached})")
            for r in p.rules:
                mark = "+" if r.covered else "-"
                where = f"line {r.line}" if r.line else r.file
                counts = f"matched by {len(r.matched_by)}"
                if r.two_sided and not r.empty:
                    counts += f", missed by {len(r.missed_by)}"
                lines.append(f"    {mark} rule {r.index} ({where}): {r.status()}; {counts}")
        return lines


def _policy_entry(p: AuthorizationPolicy) -> PolicyCoverage:
    action = p.spec.action or "ALLOW"
    rules = []
    for i, r in enumerate(p.spec.rules):
        loc = p.location("spec", "rules", i)
        rules.append(
            RuleCoverage(
                index=i,
                file=loc.file,
                line=loc.line,
                empty=not (r.from_ or r.to or r.when),
                two_sided=action in ("ALLOW", "DENY"),
            )
        )
    return PolicyCoverage(p.key, action, p.file, p.line, p.dry_run, rules)


__all__ = ["Coverage", "PolicyCoverage", "RuleCoverage"]

"""The findings on the rule that decided a request, for ``check`` and
``explain`` to name: the analysis runs on the deciding policies only, and the
evaluator knows nothing of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshauthz.analyze.finding import AnalysisFinding
    from meshauthz.decide.decision import Decision
    from meshauthz.mesh import MeshSnapshot


class DecisionNotes:
    """Warnings and errors by (policy, rule), computed once for the policies that decided."""

    def __init__(self, snapshot: MeshSnapshot, decisions: Iterable[Decision]) -> None:
        deciding: set[tuple[str, int]] = set()
        for d in decisions:
            if d.policy and d.rule is not None:
                deciding.add((d.policy, d.rule))
        self._by_rule: dict[tuple[str, int], list[AnalysisFinding]] = {}
        if not deciding:
            return
        # the checks are imported only here: a decision no rule made (the default
        # of a chain, a mode's refusal) has nothing for them to name
        from meshauthz.analyze.context import Context
        from meshauthz.analyze.run import CHECKS

        rules_of: dict[str, list[int]] = {}
        for policy, rule in deciding:
            rules_of.setdefault(policy, []).append(rule)
        # only these rules' findings are shown, and no remark (see notes_by_rule)
        ctx = Context(snapshot, only=frozenset(rules_of), rules=frozenset(deciding), info=False)
        for check in CHECKS:
            check(ctx)
        self._by_rule = notes_by_rule(ctx.findings, rules_of)

    def findings(self, d: Decision) -> list[AnalysisFinding]:
        if d.policy is None or d.rule is None:
            return []
        return self._by_rule.get((d.policy, d.rule), [])

    def lines(self, d: Decision) -> list[str]:
        """One line per finding on the deciding rule."""
        return [
            f"  finding {f.code} ({f.info.name}) on {d.policy} rule {d.rule}: {f.message} "
            f"(meshauthz analyze; {f.info.doc})"
            for f in self.findings(d)
        ]

    def to_json(self, d: Decision) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.findings(d)]


def notes_by_rule(
    findings: Iterable[AnalysisFinding], rules_of: Mapping[str, Iterable[int]]
) -> dict[tuple[str, int], list[AnalysisFinding]]:
    """What a decision names of ``findings``, by (policy, rule) for the rules of
    ``rules_of`` (a policy's key to its rule indexes): the warnings and errors
    not suppressed, on the rule or a field under it, the first of each code."""
    from meshauthz.analyze.run import annotation_suppresses

    out: dict[tuple[str, int], list[AnalysisFinding]] = {}
    for f in findings:
        # an info finding is a remark, not a warning about the answer
        if f.severity == "info" or annotation_suppresses(f):
            continue
        # only the deciding rules of the finding's own policy (a batch of
        # requests decides with many policies)
        for rule in rules_of.get(f.resource_key, ()):
            prefix = f"spec.rules[{rule}]"
            if f.field == prefix or f.field.startswith((prefix + ".", prefix + "[")):
                found = out.setdefault((f.resource_key, rule), [])
                if all(g.code != f.code for g in found):
                    found.append(f)
    return out


__all__ = ["DecisionNotes", "notes_by_rule"]

"""Witness requests, decided by the one decision path (``decide``), as ``check``
would decide them: a finding shows its request only once the decision says
what the finding claims."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from msgspec import Struct

from meshauthz.analyze.finding import Witness
from meshauthz.decide.decision import Decision
from meshauthz.decide.engine import Decider
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.errors import MeshauthzError
from meshauthz.mesh import MeshSnapshot, MeshWorkload


class Decided(Struct, frozen=True):
    witness: Witness
    decision: Decision


class Witnesses:
    """Decides candidate requests against one mesh (one ``Decider``, so each
    destination's filters are built once)."""

    def __init__(self, snapshot: MeshSnapshot) -> None:
        self.snapshot = snapshot
        self.decider = Decider(snapshot)

    def decide(self, request: dict[str, Any]) -> Decided | None:
        """The decision for ``request`` (the request format); None when it does
        not resolve against the mesh or the decision failed."""
        try:
            spec = request_from_data(request, "<witness>")
            resolved = resolve(spec, self.snapshot)
        except MeshauthzError:
            return None
        d = self.decider.decide(resolved, trace=True, explain=True)
        if d.internal_error:
            return None
        w = Witness(dict(request), d.verdict, str(d.stage), d.policy, d.rule, d.status)
        return Decided(w, d)

    def first(
        self, candidates: list[dict[str, Any]], holds: Callable[[Decision], bool]
    ) -> Decided | None:
        """The first candidate whose decision ``holds``."""
        for c in candidates:
            got = self.decide(c)
            if got is not None and holds(got.decision):
                return got
        return None


def destination(w: MeshWorkload) -> str:
    return w.key


def rule_matched(d: Decision, policy: str, rule: int) -> bool:
    """Whether the decision's trace says ``policy`` rule ``rule`` matched (reached or not)."""
    return any(t.policy == policy and t.rule == rule and t.matched for t in d.trace)


def decided_by(d: Decision, policy: str, rule: int | None = None) -> bool:
    return d.policy == policy and (rule is None or d.rule == rule)


__all__ = ["Decided", "Witnesses", "decided_by", "destination", "rule_matched"]

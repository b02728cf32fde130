"""The AuthorizationPolicies that apply to a request's destination, and why, as
``explain`` reports them (text and ``-o json``'s ``applicable``)."""

from __future__ import annotations

from typing import Any

from meshauthz.decide.request import Request
from meshauthz.mesh import MeshSnapshot, select_policies


def applicable_policies(snapshot: MeshSnapshot, r: Request) -> list[dict[str, Any]]:
    """The AuthorizationPolicies that apply to the request's destination, and why."""
    return [
        {
            "policy": s.key,
            "action": s.action,
            "why": s.reason.kind,
            "detail": s.reason.detail,
            "file": s.policy.file,
            "line": s.policy.line,
        }
        for s in select_policies(snapshot, r.destination, "AuthorizationPolicy")
    ]


__all__ = ["applicable_policies"]

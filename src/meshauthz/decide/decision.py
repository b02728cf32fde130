"""The Decision: what a client would see, which stage and policy decided, and why."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["ALLOW", "DENY"]


class Stage(enum.StrEnum):
    """The stage that decided (``"stage"`` in ``check -o json``); a member equals its text."""

    MTLS = "mTLS"
    NORMALIZATION = "normalization"
    CUSTOM = "CUSTOM"
    JWT = "JWT"
    AUDIT = "AUDIT"
    DENY = "DENY"
    ALLOW = "ALLOW"
    DEFAULT = "default"
    ERROR = "error"


# How the decision reached the client.
STATUS_OK = 200
STATUS_FORBIDDEN = 403
STATUS_RESET = "connection reset"  # a TCP connection closed by the network RBAC filter
DENIED_BODY = "RBAC: access denied"


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One step of the evaluation, mapped back to the user's policy where it can be."""

    stage: str  # "mTLS", "normalization", "CUSTOM", "JWT", "AUDIT", "DENY", "ALLOW"
    message: str
    policy: str | None = None  # "namespace/name"
    rule: int | None = None
    envoy_policy: str | None = None
    matched: bool | None = None
    dry_run: bool = False
    section: str | None = None  # "from", "to", "when"
    field: str | None = None  # e.g. "to.operation.methods"
    value: str | None = None
    file: str | None = None
    line: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "message": self.message,
            "policy": self.policy,
            "rule": self.rule,
            "envoyPolicy": self.envoy_policy,
            "matched": self.matched,
            "dryRun": self.dry_run,
            "section": self.section,
            "field": self.field,
            "value": self.value,
            "file": self.file,
            "line": self.line,
        }


@dataclass(frozen=True, slots=True)
class DryRunResult:
    """A dry-run (shadow) policy's result: what it would have done."""

    stage: str  # "ALLOW" or "DENY"
    result: Literal["allowed", "denied"]
    policy: str | None
    rule: int | None
    envoy_policy: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "result": self.result,
            "policy": self.policy,
            "rule": self.rule,
            "envoyPolicy": self.envoy_policy,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    status: int | str  # 200, 401, 403, 400, or "connection reset" for TCP
    stage: (
        str  # the stage that decided: mTLS, normalization, CUSTOM, JWT, DENY, ALLOW, default, error
    )
    reason: str  # one sentence for a person
    policy: str | None = None
    rule: int | None = None
    envoy_policy: str | None = None
    body: str | None = None
    dry_run: tuple[DryRunResult, ...] = ()
    audit: bool = False
    audit_policy: str | None = None
    trace: tuple[TraceStep, ...] = ()
    error: str | None = None  # an internal error that made the decision fail closed
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.verdict == "ALLOW"

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.verdict,
            "status": self.status,
            "stage": self.stage,
            "policy": self.policy,
            "rule": self.rule,
            "envoyPolicy": self.envoy_policy,
            "reason": self.reason,
            "body": self.body,
            "dryRun": [d.to_json() for d in self.dry_run],
            "audit": self.audit,
            "auditPolicy": self.audit_policy,
            "error": self.error,
            "request": self.request,
            "trace": [t.to_json() for t in self.trace],
        }

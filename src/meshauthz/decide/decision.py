"""The Decision: what a client would see, which stage and policy decided, and why.

``Outcome`` is what the chain runner (``meshauthz.decide.runner``) returns for
a request, traced or not; ``Decision`` is an outcome with the request it is
about, as ``check`` and ``explain`` report it. Why is data (``stage`` and
``cause``, ``meshauthz.decide.cause``); ``reason`` is rendered from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from msgspec import Struct, field

from meshauthz.decide import render
from meshauthz.decide.cause import Cause, InternalError, NotEvaluated, Stage
from meshauthz.envoy.codec import sent_host

if TYPE_CHECKING:
    from meshauthz.decide.request import Request
    from meshauthz.decide.view import RequestView

Verdict = Literal["ALLOW", "DENY"]


# How the decision reached the client.
STATUS_OK = 200
STATUS_FORBIDDEN = 403
STATUS_RESET = "connection reset"  # a TCP connection closed by the network RBAC filter
DENIED_BODY = "RBAC: access denied"


class TraceStep(Struct, frozen=True):
    """One step of the evaluation, mapped back to the user's policy where it can be."""

    stage: Stage
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


class DryRunResult(Struct, frozen=True):
    """A dry-run (shadow) policy's result: what it would have done."""

    stage: Stage  # ALLOW or DENY
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


Enforcer = Literal["sidecar", "waypoint", "ztunnel"]


class Hop(Struct, frozen=True):
    """One enforcement point a request passes, in the order traffic passes them."""

    enforcer: Enforcer
    workload: str  # "namespace/name" of the proxy's workload (a waypoint's own)
    identity: str | None  # the peer identity it sees; None: plaintext
    decision: Verdict
    policy: str | None
    rule: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "enforcer": self.enforcer,
            "workload": self.workload,
            "identity": self.identity,
            "decision": self.decision,
            "policy": self.policy,
            "rule": self.rule,
        }


class Outcome(Struct, frozen=True):
    """What the destination's path did with one request: the chain runner's
    answer, the same from its traced and untraced backends (``trace`` aside)."""

    verdict: Verdict
    status: int | str  # 200, 401, 403, 400, "connected", or "connection reset" for TCP
    stage: Stage
    cause: Cause
    policy: str | None = None  # "namespace/name"
    rule: int | None = None
    envoy_policy: str | None = None
    body: str | None = None  # the body Envoy answers a denial with (a HEAD gets none)
    dry_run: tuple[DryRunResult, ...] = ()
    audit: bool = False
    audit_policy: str | None = None
    trace: tuple[TraceStep, ...] = ()
    condition: NotEvaluated | None = None  # None: the decision holds as it is

    @property
    def allowed(self) -> bool:
        return self.verdict == "ALLOW"


class Decision(Struct, frozen=True):
    verdict: Verdict
    status: int | str  # 200, 401, 403, 400, or "connection reset" for TCP
    stage: Stage  # the stage that decided
    cause: Cause
    policy: str | None = None
    rule: int | None = None
    envoy_policy: str | None = None
    body: str | None = None
    dry_run: tuple[DryRunResult, ...] = ()
    audit: bool = False
    audit_policy: str | None = None
    trace: tuple[TraceStep, ...] = ()
    request: dict[str, Any] = field(default_factory=dict)
    condition: NotEvaluated | None = None  # None: the decision holds as it is
    # The enforcement points passed (empty: not walked, e.g. a config dump's proxy)
    # and what the walk noticed on the way (a waypoint bypassed, not ready, ...).
    hops: tuple[Hop, ...] = ()
    notes: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        outcome: Outcome,
        request: Request,
        view: RequestView | None = None,
        hops: tuple[Hop, ...] = (),
    ) -> Decision:
        """``view``: the request as the filters saw it, for what the connection
        manager derived (the remote address from X-Forwarded-For)."""
        http = request.protocol == "http"
        return cls(
            verdict=outcome.verdict,
            status=outcome.status,
            stage=outcome.stage,
            cause=outcome.cause,
            policy=outcome.policy,
            rule=outcome.rule,
            envoy_policy=outcome.envoy_policy,
            # a response to HEAD has no body (Envoy 1.40 sends the headers only)
            body=outcome.body if http and request.method != "HEAD" else None,
            dry_run=outcome.dry_run,
            audit=outcome.audit,
            audit_policy=outcome.audit_policy,
            trace=outcome.trace,
            request=request_summary(request, view),
            condition=outcome.condition,
            hops=hops,
        )

    @property
    def reason(self) -> str:
        """One sentence for a person."""
        return render.reason(self.cause)

    @property
    def enforced_by(self) -> str:
        """The enforcement point whose answer the client sees: the hop that
        denied, else the last one passed; "none" when nothing enforces."""
        if not self.hops:
            return "none"
        deny = next((h for h in self.hops if h.decision == "DENY"), None)
        return (deny or self.hops[-1]).enforcer

    @property
    def conditional(self) -> bool:
        """Whether filters meshauthz does not run stand before the point of decision."""
        return self.condition is not None

    @property
    def error(self) -> str | None:
        """An internal error that made the decision fail closed."""
        return self.cause.error if isinstance(self.cause, InternalError) else None

    @property
    def allowed(self) -> bool:
        return self.verdict == "ALLOW"

    @property
    def internal_error(self) -> bool:
        """meshauthz failed and the DENY is fail-closed, not an answer: never
        the DENY an expectation asks for."""
        return self.stage is Stage.ERROR

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
            "conditionalOn": list(self.condition.filters) if self.condition else [],
            "request": self.request,
            "trace": [t.to_json() for t in self.trace],
        } | ({"hops": [h.to_json() for h in self.hops]} if self.hops else {})


def request_summary(r: Request, view: RequestView | None = None) -> dict[str, Any]:
    """The request as the destination saw it; ``remoteIP`` is the effective
    remote address (given, or derived from X-Forwarded-For by the view)."""
    remote_ip = view.inp.remote_ip if view is not None and view.inp is not None else r.remote_ip
    return {
        "from": {
            "workload": r.source_workload,
            # a workload caller: whether it has a sidecar (without one it sends plaintext)
            "sidecar": (r.source_injection is None) if r.source_workload else None,
            "principal": r.source_principal,
            "namespace": r.source_namespace,
            "ip": r.source_ip,
        },
        "remoteIP": remote_ip,
        "to": r.destination.key,
        "port": r.port,
        "protocol": r.protocol,
        **(
            {
                "method": r.method,
                "path": r.path,
                "host": sent_host(r.host, r.headers),
                "headers": [list(h) for h in r.headers],
            }
            if r.protocol == "http"
            else {}
        ),
        "sni": r.sni or None,
    }

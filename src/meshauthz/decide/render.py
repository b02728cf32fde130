"""Every sentence meshauthz says about a decision: reasons, trace steps, and
the text of ``check`` and ``explain``.

The deciding code records what happened as data (``meshauthz.decide.cause``,
the trace's policies and clauses); the words are chosen here, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshauthz.decide.cause import (
    AllowedByPolicy,
    Cause,
    CodecRejected,
    CustomDenied,
    DefaultAllow,
    DeniedByPolicy,
    InternalError,
    JwtRejected,
    JwtUnverifiable,
    MtlsRequired,
    NoAllowMatched,
    NoSidecar,
    NotEvaluated,
    PathRejected,
    Stage,
    ZtunnelAllowed,
    ZtunnelDenied,
)
from meshauthz.envoy.codec import sent_host
from meshauthz.mesh.injection import Injection, Why
from meshauthz.mesh.snapshot import TLS_MODE_LABEL

if TYPE_CHECKING:
    from meshauthz.decide.config_dump import ChainInfo
    from meshauthz.decide.decision import Decision, Hop, TraceStep
    from meshauthz.decide.request import Request
    from meshauthz.decide.request_spec import RequestSpec
    from meshauthz.envoy.rbac.model import Note

# --- reasons -------------------------------------------------------------------------------


def injection(inj: Injection) -> str:
    """Why the injector does or does not give a workload's pods a sidecar."""
    ns = inj.namespace
    match inj.why:
        case Why.NAMESPACE_LABEL:
            return f"namespace {ns} is labelled {inj.key}={inj.value}"
        case Why.POD_LABEL:
            return f"its pods are labelled {inj.key}={inj.value}"
        case Why.ASSUMED:
            return (
                "no namespace in the input enables injection by label, so every namespace "
                "is taken to be injected"
            )
        case Why.UNDECLARED_NAMESPACE:
            return (
                f"namespace {ns} is not in the input, so its labels are unknown: it is taken "
                "to be injected"
            )
        case Why.NAMESPACE_OPT_OUT:
            return f"namespace {ns} is labelled {inj.key}={inj.value}"
        case Why.POD_LABEL_OPT_OUT:
            return f'its pods are labelled {inj.key}: "false"'
        case Why.POD_ANNOTATION_OPT_OUT:
            return f'its pods are annotated {inj.key}: "false"'
        case Why.NO_LABEL:
            return (
                f"namespace {ns} has no istio-injection or istio.io/rev label, nor its pods "
                "a sidecar.istio.io/inject or istio.io/rev label, and a namespace of the "
                "input enables injection by label, so the labels are taken as the cluster's"
            )
        case Why.DATAPLANE_LABEL:
            return (
                "neither its namespace nor its pods enable injection by label, and "
                "istio.io/dataplane-mode is set, so the labels are taken as the cluster's"
            )
        case Why.HOST_NETWORK:
            return "its pods use hostNetwork, which istiod never injects"
        case Why.SYSTEM_NAMESPACE:
            return f"{ns} is a Kubernetes system namespace, which istiod never injects"
    raise TypeError(f"not an injection reason: {inj.why!r}")


def caller_without_sidecar(workload: str, inj: Injection) -> str:
    return (
        f"the caller {workload} has no sidecar ({injection(inj)}): it sends plaintext from "
        "its own address, with no client certificate"
    )


def caller_note(r: Request) -> str | None:
    """Why a workload caller arrives in plaintext, when the request does not say."""
    if not r.source_workload:
        return None
    if r.source_injection is not None:
        return caller_without_sidecar(r.source_workload, r.source_injection)
    if r.plaintext and not r.destination.auto_mtls:
        return (
            f"the caller {r.source_workload} sends plaintext to {r.destination.key}: its "
            f"sidecar originates Istio mTLS only to pods labelled {TLS_MODE_LABEL}=istio, "
            "which gateway pods are not (where a "
            "DestinationRule sets ISTIO_MUTUAL, give the caller's principal)"
        )
    return None


def reason(cause: Cause) -> str:
    """The one sentence that says why."""
    match cause:
        case NoSidecar(workload, inj):
            return (
                f"{workload} has no sidecar ({injection(inj)}): no Envoy stands in front of "
                "it, so no policy is enforced and the request reaches the application unchecked"
            )
        case MtlsRequired(workload, port):
            return (
                f"{workload} port {port} requires mTLS (PeerAuthentication STRICT) and the "
                "caller sent plaintext: the connection is closed before any policy runs"
            )
        case PathRejected(why, status):
            return f"Envoy rejects the request ({why}) with {status} before any filter"
        case CodecRejected(why, status):
            return (
                f"Envoy's HTTP/1.1 codec refuses the request ({why}) with {status} "
                "before any filter"
            )
        case CustomDenied(provider, policy, rule):
            return (
                f"CUSTOM policy {policy} rule {rule} sends the request to ext_authz provider "
                f"{provider}, whose answer decides; assumed to deny (use --ext-authz allow to "
                "assume it allows)"
            )
        case JwtUnverifiable(source, why):
            return (
                f"the token cannot be verified offline ({why}): its keys are only at the "
                f"jwksUri of {source}; meshauthz does not guess (fail closed)"
            )
        case JwtRejected(source, body):
            return f"the JWT filter built from {source} rejects the token: {body}"
        case DeniedByPolicy(stage, None, _, _):
            return f"denied by the {stage} filter"
        case DeniedByPolicy(stage, policy, rule, empty_rule):
            text = f"denied by {stage} policy {policy} rule {rule}"
            if stage is Stage.CUSTOM:
                # the RBAC stand-in istiod builds for CUSTOM policies whose provider it
                # cannot use (builder goldens custom-bad-*): no request reaches a provider
                text += (
                    ": istiod cannot use the CUSTOM provider(s) of this workload's CUSTOM "
                    "policies (meshauthz validate says why), so it denies every request "
                    "their rules match instead of sending it to a provider"
                )
            if empty_rule:
                # Istio's documented evaluation order: DENY before ALLOW.
                text += (
                    ": the rule is empty ({}), so it matches every request, and DENY "
                    "policies are evaluated before ALLOW policies, so no ALLOW policy can "
                    "let a request through"
                )
            return text
        case NoAllowMatched():
            return "denied: no rule of any ALLOW policy matched the request"
        case AllowedByPolicy(None, _):
            return "allowed by the ALLOW filter"
        case AllowedByPolicy(policy, rule):
            return f"allowed by ALLOW policy {policy} rule {rule}"
        case DefaultAllow():
            return "allowed: no DENY policy matched and no ALLOW policy applies to this workload"
        case InternalError(error):
            return f"meshauthz hit an internal error and denies (fail closed): {error}"
        case ZtunnelDenied() | ZtunnelAllowed():
            return ambient_reason(cause)
    raise TypeError(f"not a cause: {cause!r}")


def condition(c: NotEvaluated) -> str:
    """What a conditional decision depends on."""
    one = len(c.filters) == 1
    return (
        f"conditional: {', '.join(c.filters)} run{'s' if one else ''} before the point of "
        f"decision and {'is' if one else 'are'} not evaluated by meshauthz; "
        f"{'it' if one else 'each'} could answer the request itself or change it, so the "
        f"answer holds only if {'it lets' if one else 'they let'} the request through unchanged"
    )


def verdict(d: Decision) -> str:
    """The verdict as the first word of the answer: a conditional one says so."""
    return f"CONDITIONAL {d.verdict}" if d.condition is not None else d.verdict


# --- trace steps ---------------------------------------------------------------------------

NO_FILTERS = "no Envoy, no filter: the application receives the request as sent"
MTLS_DISABLED = "mTLS is DISABLEd on this port: the caller's identity is not seen"
NOT_REACHED = "(not reached) "


def path_normalized(normalization: str, before: str, after: str) -> str:
    return f"path normalized ({normalization}): {before!r} -> {after!r}"


def absolute_url(normalization: str, url: str, authority: str, path: str) -> str:
    """A request target in absolute form, as the codec and the HCM read it."""
    return (
        f"absolute URL {url!r}: Envoy takes :authority {authority!r} from it, in place of "
        f"the Host header, and :path {path!r} ({normalization} normalization)"
    )


def custom_not_sent(provider: str | None) -> str:
    return f"no CUSTOM policy of provider {provider} matched: not sent to it"


def custom_assumed_allow(provider: str | None) -> str:
    return f"sent to ext_authz provider {provider}; assumed to allow"


def jwt_accepted(source: str) -> str:
    return f"token accepted by {source}"


def jwt_no_token(source: str) -> str:
    return f"no token presented; {source} lets the request through without a request principal"


def policy_without_rules(policy: str) -> str:
    return f"{policy} has no rules: it matches no request"


def policy_matches(where: str) -> str:
    return f"{where} matches"


def policy_misses(where: str, note: Note | None) -> str:
    """An Envoy policy that did not match, at the first clause that failed (if noted)."""
    if note is None or not note.field:
        return f"{where} does not match"
    value = f" {note.value}" if note.value is not None else ""
    section = f"{note.section}." if note.section and not note.field.startswith(note.section) else ""
    return f"{where} does not match: {section}{note.field}:{value} does not match the request"


def http_only_on_tcp(action: str, policy: str | None, rule: int | None, field: str) -> str:
    """A rule with a field only HTTP requests have, on a TCP port: istiod drops it
    from an ALLOW filter and leaves the field out of any other."""
    if action == "ALLOW":
        return (
            f"{policy} rule {rule} is not in this TCP port's filter: it uses {field}, which "
            "only HTTP requests have, and istiod drops an ALLOW rule it cannot build whole "
            "(no TCP connection could meet it), so the rule allows nothing here"
        )
    why = (
        ": istiod errs toward denying, never letting a connection through because a "
        "field cannot be checked on it"
        if action == "DENY"
        else ""
    )
    return (
        f"{policy} rule {rule}: {field} is left out on this TCP port (only HTTP requests "
        f"have it); istiod keeps the rule's other conditions, so the {action} rule matches "
        f"more connections than it would requests{why}"
    )


def claim_missing(where: str, note: Note, claim: str, token: bool) -> str:
    """A policy whose clause reads a JWT claim the request does not carry."""
    field = note.field or ""
    section = f"{note.section}." if note.section and not field.startswith(note.section) else ""
    lack = (
        f"claim {claim} is missing from the token"
        if token
        else f"no validated token, so claim {claim} is missing"
    )
    return f"{where} does not match: {section}{field}: {lack}"


def policy_where(policy: str | None, rule: int | None, envoy_policy: str) -> str:
    return f"{policy} rule {rule}" if policy is not None else envoy_policy


# --- check and explain ---------------------------------------------------------------------


def describe_chain(c: ChainInfo) -> str:
    kind = "passthrough filter chain" if c.passthrough else "filter chain"
    s = f"config dump: listener {c.listener}, {kind} {c.chain} ({c.protocol.upper()}, {c.mtls}"
    s += f", path normalization {c.normalization})" if c.normalization else ")"
    if c.not_evaluated:
        s += "; not evaluated: " + ", ".join(c.not_evaluated)
    if c.per_route:
        s += f"; per-route configuration of {c.route}: " + ", ".join(c.per_route)
    return s


def describe_request(r: Request) -> str:
    who = r.source_workload or r.source_principal or "a plaintext caller"
    if r.source_workload and r.source_injection is not None:
        who += " (no sidecar: plaintext)"
    elif r.source_workload and r.plaintext:
        who += " (plaintext)"
    what = f"{r.method} {r.path}" if r.protocol == "http" else "TCP"
    return f"{what} from {who} to {r.destination.key} port {r.port}"


def protocol_inferred(r: Request) -> str | None:
    """Why the request's chain was chosen by protocol detection, if it was."""
    if r.protocol_inferred is None:
        return None
    why = (
        "no Service declares it"
        if r.protocol_inferred == "undeclared"
        else "its Service port names no protocol (name prefix or appProtocol)"
    )
    return (
        f"port {r.port}: {why}, so the sidecar infers the protocol from the traffic; "
        f"this request is taken as {r.protocol.upper()} (--protocol http|tcp to choose)"
    )


def request_line(r: Request) -> str:
    """``describe_request`` with the Host header the request carries (HTTP)."""
    if r.protocol != "http":
        return describe_request(r)
    return f"{describe_request(r)} (Host: {sent_host(r.host, r.headers)})"


def named(r: Request, line: str) -> str:
    """A request's first line, led by its name when it has one (a request
    file's ``name``): which of many requests this is."""
    return line if r.name is None else f"{r.name}: {line}"


def named_json(r: Request, doc: dict[str, Any]) -> dict[str, Any]:
    """A decision's JSON document with the request's ``name`` first, when it has one."""
    return doc if r.name is None else {"name": r.name, **doc}


def target_as_written(spec: RequestSpec) -> str:
    """The destination as the request names it (``ns/name[:port]``)."""
    return f"{spec.to}:{spec.to_port}" if spec.to_port else spec.to


def _answer(d: Decision) -> str:
    return f"{verdict(d)} ({d.status})"


def decisions_differ(decisions: list[Decision]) -> bool:
    """Whether the workloads one request reaches answer it differently (as a client
    would see it: the verdict and the status)."""
    return len({(verdict(d), d.status) for d in decisions}) > 1


def several_workloads(to: str, g: list[tuple[Request, Decision]]) -> str:
    """The line before the decisions of a request that reaches several workloads."""
    names = ", ".join(r.destination.key for r, _ in g)
    head = f"{to} selects {len(g)} workloads ({names})"
    decisions = [d for _, d in g]
    if not decisions_differ(decisions):
        return f"{head}; each decides the same: {_answer(decisions[0])}"
    each = ", ".join(f"{r.destination.key} {_answer(d)}" for r, d in g)
    return f"{head}; their decisions differ: {each}"


def expectation_missed(expect: str) -> str:
    return f"<- differs from --expect {expect}"


def expectations_missed(missed: int, total: int, expect: str) -> str:
    return f"{missed} of {total} decisions differ from --expect {expect}"


def _where(t: TraceStep) -> str:
    return f" ({t.file}:{t.line})" if t.file else ""


def internal_error_line(r: Request, d: Decision) -> str:
    """What a decision that hit an internal error means for the one who asked."""
    return (
        f"internal error in meshauthz deciding {describe_request(r)}: {d.error}; its DENY is "
        "fail-closed, not an answer (this is a bug; set MESHAUTHZ_DEBUG=1 for the details "
        "to report)"
    )


def check_lines(
    r: Request, d: Decision, chain: ChainInfo | None = None, *, trace: bool = False
) -> list[str]:
    """``check``'s text for one decision."""
    lines = [named(r, f"{verdict(d)} ({d.status}) {request_line(r)}"), f"  {d.reason}"]
    if (note := caller_note(r)) is not None:
        lines.append(f"  {note}")
    if (inferred := protocol_inferred(r)) is not None:
        lines.append(f"  {inferred}")
    if d.condition is not None:
        lines.append(f"  {condition(d.condition)}")
    lines += path_lines(d)
    if chain is not None:
        lines.append(f"  {describe_chain(chain)}")
    if d.policy:
        lines.append(f"  policy: {d.policy} rule {d.rule}")
    for dr in d.dry_run:
        lines.append(
            f"  dry-run {dr.stage}: {dr.result}"
            + (f" by {dr.policy} rule {dr.rule}" if dr.policy else "")
        )
    if d.audit:
        lines.append(f"  audited by {d.audit_policy}")
    if trace:
        lines += [f"    [{t.stage}] {t.message}{_where(t)}" for t in d.trace]
    return lines


def explain_lines(r: Request, d: Decision, applicable: list[dict[str, Any]]) -> list[str]:
    """``explain``'s text for one decision (decided with ``explain=True``);
    ``applicable``: the policies that apply to the destination, as ``explain --format json``
    lists them."""
    lines = [named(r, request_line(r)), f"=> {d.verdict} ({d.status}): {d.reason}"]
    lines += path_lines(d)
    if (note := caller_note(r)) is not None:
        lines.append(note)
    if (inferred := protocol_inferred(r)) is not None:
        lines.append(inferred)
    if applicable:
        lines.append(f"policies that apply to {r.destination.key}:")
        for a in applicable:
            lines.append(
                f"  {a['action']:<6} {a['policy']} ({a['detail']}; {a['file']}:{a['line']})"
            )
    else:
        lines.append(f"no AuthorizationPolicy applies to {r.destination.key}")
    lines.append("evaluation:")
    for t in d.trace:
        dry = " [dry-run]" if t.dry_run else ""
        lines.append(f"  [{t.stage}]{dry} {t.message}{_where(t)}")
    return lines


# --- ambient mode: ztunnel and the hops of a path ------------------------------------------


def _seen_as(identity: str | None) -> str:
    return f"the peer identity {identity}" if identity else "no peer identity (plaintext)"


def ambient_reason(cause: ZtunnelDenied | ZtunnelAllowed) -> str:
    match cause:
        case ZtunnelDenied(workload, None, _, identity, _, _, via):
            text = (
                f"ztunnel of {workload} refuses the connection: ALLOW policies apply and none "
                f"matches {_seen_as(identity)} (ztunnel: allow policies exist, but none allowed)"
            )
        case ZtunnelDenied(workload, policy, rule, identity, empty_rule, source, via):
            what = f"DENY policy {policy} rule {rule}"
            if source:
                what += f" ({source})"
            text = (
                f"ztunnel of {workload} refuses the connection: {what} matches {_seen_as(identity)}"
            )
            if empty_rule:
                text += (
                    ": the rule is empty ({}), so it matches every connection, and DENY "
                    "policies are evaluated before ALLOW policies"
                )
        case ZtunnelAllowed(workload, None, _):
            return f"ztunnel of {workload} lets the connection through: no DENY policy matched and no ALLOW policy applies"
        case ZtunnelAllowed(workload, policy, rule):
            return f"ztunnel of {workload} lets the connection through: ALLOW policy {policy} rule {rule} matches"
    if via:
        text += f" (through waypoint {via}, ztunnel sees the waypoint's identity, not the client's)"
    return text


def hop_line(h: Hop) -> str:
    """One enforcement point of a decision's path."""
    who = h.identity or "no identity (plaintext)"
    decided = f" by {h.policy} rule {h.rule}" if h.policy is not None else ""
    return f"  {h.enforcer} {h.workload} sees {who}: {h.decision}{decided}"


def path_lines(d: Decision) -> list[str]:
    """The hops of an ambient decision (a sidecar's single hop adds nothing)."""
    if not d.hops or (len(d.hops) == 1 and d.hops[0].enforcer == "sidecar" and not d.notes):
        return []
    lines = ["  path:"] + ["  " + hop_line(h) for h in d.hops]
    lines += [f"  note: {n}" for n in d.notes]
    return lines


def at_ztunnel(workload: str, message: str) -> str:
    return f"ztunnel of {workload}: {message}"


def waypoint_bypassed(waypoint: str, workload: str, why: str) -> str:
    return (
        f"{why}; its traffic goes straight to the ztunnel of {workload}, bypassing waypoint "
        f"{waypoint}: policies attached to the waypoint are not enforced"
    )


def waypoint_without_pods(waypoint: str) -> str:
    return f"waypoint {waypoint} has no pods in the manifests: its policies are not evaluated"


def waypoint_not_bound(reason: str, problem: str) -> str:
    return f"{reason}, but {problem}: traffic goes straight to the destination's ztunnel"


def identity_not_spiffe(identity: str) -> str:
    return (
        f"the identity {identity} is not of the form td/ns/NS/sa/SA: ztunnel would not "
        "accept such a peer; decided as if it had none"
    )


def waypoint_termination_denied(waypoint: str) -> str:
    return (
        f"denied at the HBONE termination of waypoint {waypoint} by a policy selecting its "
        "pods (ENABLE_LAYERED_WAYPOINT_AUTHORIZATION_POLICIES): the CONNECT is refused"
    )


def ingress_bypasses_waypoint(gateway: str, waypoint: str) -> str:
    return (
        f"{gateway} is an ingress gateway: it calls the Service's endpoints directly, "
        f"bypassing waypoint {waypoint}, unless the Service or its namespace has "
        "istio.io/ingress-use-waypoint=true"
    )

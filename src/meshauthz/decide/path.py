"""A decision is a path: the enforcement points a request passes on its way.

* A destination with its own proxy (sidecar, gateway): one hop, that proxy's
  filters (``Decider.decide_at_proxy``).
* An ambient destination (captured by ztunnel): the waypoint, when the Service
  or ServiceEntry the request's Host names (Service-addressed traffic) or the
  workload uses one and the client's traffic
  reaches it, decided by the same Envoy layer as sidecars with istiod's
  waypoint build (``Decider.prepare_waypoint``); then the destination's
  ztunnel (``meshauthz.ambient``), which sees the waypoint's identity and
  address when traffic came through it, else the client's (none for a client
  outside the mesh, whose plaintext bypasses any waypoint).
* A destination nobody captures: nothing enforces.

What the client sees: a waypoint's denial (403, or a reset for TCP); a
ztunnel refusal is a reset of the connection (HBONE answers 401 to the
client's ztunnel, which closes it), or 503 from the waypoint when the request
went through one (its upstream connection is refused).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import Struct, field
from msgspec.structs import replace

from meshauthz.ambient.topology import (
    HBONE_PORT,
    Binding,
    enrollment,
    ingress_uses_waypoint,
    service_waypoint,
    workload_waypoint,
)
from meshauthz.decide import render
from meshauthz.decide.cause import (
    Stage,
    ZtunnelAllowed,
    ZtunnelDenied,
)
from meshauthz.decide.decision import (
    STATUS_OK,
    STATUS_RESET,
    Decision,
    DryRunResult,
    Enforcer,
    Hop,
    TraceStep,
    request_summary,
)
from meshauthz.envoy.route import strip_port
from meshauthz.mesh import MeshService, MeshSnapshot, resolve_target_port
from meshauthz.mesh.labels import match
from meshauthz.resources.k8s import ServicePort
from meshauthz.resources.objects import ServiceEntry

if TYPE_CHECKING:
    from meshauthz.ambient.authorization import Authorization
    from meshauthz.ambient.evaluate import Connection, PolicyHit, SpiffeIdentity, ZtunnelDecision
    from meshauthz.ambient.ztunnel_config import IstiodAmbient, ZtunnelWorkload
    from meshauthz.decide.engine import Decider
    from meshauthz.decide.request import Request

STATUS_UNAVAILABLE = 503  # a waypoint whose upstream connection was refused


def walk(decider: Decider, r: Request, *, trace: bool = False, explain: bool = False) -> Decision:
    snap = decider.snapshot
    dest = r.destination
    mode = enrollment(snap, dest)
    if mode.mode in ("sidecar", "gateway", "waypoint"):
        # a client outside the mesh is already plaintext: decide.request resolves it so
        enforcer: Enforcer = "waypoint" if mode.mode == "waypoint" else "sidecar"
        return decider.decide_at_proxy(r, trace=trace, explain=explain, hop=enforcer)
    if mode.mode == "none":
        # no sidecar and not captured: nothing enforces (the engine says why)
        return decider.decide_at_proxy(r, trace=trace, explain=explain)
    return _ambient(decider, r, trace=trace, explain=explain)


class _Ambient(Struct):
    """What a Decider keeps about ambient mode, computed on first use."""

    istiod: IstiodAmbient
    held: dict[str, ZtunnelWorkload] = field(default_factory=dict)
    bindings: dict[
        tuple[str, str, int], tuple[MeshService | ServiceEntry | None, int | None, Binding]
    ] = field(default_factory=dict)


def _state(decider: Decider) -> _Ambient:
    if decider.ambient_ is None:
        # ztunnel's model is imported by the first ambient destination only
        from meshauthz.ambient.ztunnel_config import istiod_ambient

        decider.ambient_ = _Ambient(istiod_ambient(decider.snapshot, decider.flags))
    state: _Ambient = decider.ambient_
    return state


def client_in_mesh(snap: MeshSnapshot, r: Request) -> tuple[bool, str]:
    """Whether the client's traffic is in the mesh (mTLS/HBONE), and why not."""
    if r.source_workload is not None:
        e = enrollment(snap, snap.workload(r.source_workload))
        if e.mode == "none":
            return False, f"{r.source_workload} is not captured ({e.reason}): it sends plaintext"
    if r.source_principal is None:
        return False, "the caller sends plaintext"
    return True, ""


def service_of(snap: MeshSnapshot, r: Request) -> tuple[MeshService | None, ServicePort | None]:
    """The Service the request is addressed to (its Host names a Service that
    selects the destination, on a port that targets the request's port);
    (None, None): addressed to the workload itself."""
    # the Host a client sends carries the port unless it is the scheme's default
    svc = snap.service_by_hostname(strip_port(r.host)) if r.host else None
    if svc is None or all(w is not r.destination for w in snap.workloads_for(svc)):
        return None, None
    for sp in svc.ports:
        if resolve_target_port(r.destination, sp) == r.port:
            return svc, sp
    return None, None


def service_entry_of(snap: MeshSnapshot, r: Request) -> tuple[ServiceEntry, int] | None:
    """The ServiceEntry the request is addressed to when no Service is: one of its
    ``hosts`` is the request's Host, its ``workloadSelector`` selects the
    destination (in the ServiceEntry's namespace) and one of its ports sends to
    the request's port (``targetPort``, else the port ``number``); with that
    port's number. ServiceEntries without a workloadSelector name no workload
    of the mesh and address nothing here."""
    host = strip_port(r.host).lower().rstrip(".") if r.host else ""
    dest = r.destination
    for se in snap.service_entries:
        sel = se.spec.workload_selector
        if sel is None or se.namespace != dest.namespace or not host:
            continue
        if host not in (h.lower() for h in se.spec.hosts) or not match(sel.labels, dest.labels):
            continue
        for p in se.spec.ports:
            if (p.target_port or p.number) == r.port:
                return se, p.number
    return None


def ingress_bypasses(
    snap: MeshSnapshot, r: Request, svc: MeshService | ServiceEntry | None
) -> bool:
    """An ingress gateway calls a Service's endpoints directly unless the Service
    (or its namespace) has istio.io/ingress-use-waypoint=true (ENABLE_INGRESS_WAYPOINT_ROUTING,
    on by default: features/ambient.go; services.go ``ingressUseWaypointFromLabels``)."""
    client = snap.find_workload(r.source_workload) if r.source_workload else None
    if client is None or client.proxy != "gateway":
        return False
    return not (svc is not None and ingress_uses_waypoint(snap, svc))


def addressed(
    snap: MeshSnapshot, r: Request
) -> tuple[MeshService | ServiceEntry | None, int | None]:
    """The Service or ServiceEntry the request is addressed to and its service
    port; (None, None): addressed to the workload itself."""
    svc, sport = service_of(snap, r)
    if svc is not None and sport is not None:
        return svc, sport.port
    hit = service_entry_of(snap, r)
    return hit if hit is not None else (None, None)


def binding_for(snap: MeshSnapshot, r: Request) -> Binding:
    svc, _ = addressed(snap, r)
    return (
        service_waypoint(snap, svc) if svc is not None else workload_waypoint(snap, r.destination)
    )


def _ambient(decider: Decider, r: Request, *, trace: bool, explain: bool) -> Decision:
    snap = decider.snapshot
    dest = r.destination
    state = _state(decider)
    captured, why_not = client_in_mesh(snap, r)
    identity = r.source_principal if captured else None
    bkey = (dest.key, r.host, r.port)
    if bkey not in state.bindings:
        svc_, sport_ = addressed(snap, r)
        state.bindings[bkey] = (svc_, sport_, binding_for(snap, r))
    svc, sport, binding = state.bindings[bkey]
    hops: list[Hop] = []
    notes: list[str] = []
    zt_identity, zt_src_ip, via = identity, r.source_ip, None
    at_waypoint: Decision | None = None
    wp = binding.waypoint
    if wp is not None and ingress_bypasses(snap, r, svc):
        notes.append(render.ingress_bypasses_waypoint(r.source_workload or "", wp.key))
        wp = None
    if wp is not None and not captured:
        notes.append(render.waypoint_bypassed(wp.key, dest.key, why_not))
    elif wp is not None and not wp.workloads:
        notes.append(render.waypoint_without_pods(wp.key))
    elif wp is not None:
        w = wp.workloads[0]
        if decider.flags.layered_waypoint:
            term = decider.decide_with(
                decider.prepare_waypoint_termination(w),
                replace(r, port=HBONE_PORT, protocol="tcp", source_principal=identity),
                trace=trace,
                explain=explain,
            )
            if not term.allowed:
                hops.append(Hop("waypoint", w.key, identity, "DENY", term.policy, term.rule))
                notes.append(render.waypoint_termination_denied(w.key))
                return replace(
                    term, request=request_summary(r), hops=tuple(hops), notes=tuple(notes)
                )
        port = sport if sport is not None else r.port
        prepared = decider.prepare_waypoint(w, svc, port, r.protocol)
        d = decider.decide_with(
            prepared, replace(r, port=port, source_principal=identity), trace=trace, explain=explain
        )
        hops.append(Hop("waypoint", w.key, identity, d.verdict, d.policy, d.rule))
        if not d.allowed:
            return replace(d, request=request_summary(r), hops=tuple(hops), notes=tuple(notes))
        at_waypoint = d
        zt_identity, zt_src_ip, via = w.identity.principal, w.address, wp.key
    elif binding.problem and binding.waypoint is None:
        notes.append(render.waypoint_not_bound(binding.reason, binding.problem))
    from meshauthz.ambient.evaluate import SpiffeIdentity, assert_rbac
    from meshauthz.ambient.ztunnel_config import ztunnel_workload

    held = state.held.get(dest.key)
    if held is None:
        held = state.held[dest.key] = ztunnel_workload(snap, dest, decider.flags, state.istiod)
    peer = SpiffeIdentity.parse(zt_identity) if zt_identity else None
    if zt_identity and peer is None:
        notes.append(render.identity_not_spiffe(zt_identity))
    seen = zt_identity if peer is not None else None
    zd = assert_rbac(held.policies, _connection(zt_src_ip, dest.address, r.port, peer))
    policy, rule = _hit(zd.deciding)
    hops.append(Hop("ztunnel", dest.key, seen, zd.verdict, policy, rule))
    steps = tuple(_steps(zd, dest.key, state.istiod))
    dry = _dry_run(zd)
    if zd.verdict == "DENY":
        hit = zd.deciding
        source = hit.policy.source if hit is not None else ""
        from_pa = hit is not None and not source.startswith("AuthorizationPolicy")
        stage = Stage.ALLOW if hit is None else (Stage.MTLS if from_pa else Stage.DENY)
        cause = ZtunnelDenied(
            dest.key,
            policy,
            rule,
            seen,
            empty_rule=hit is not None and hit.policy.rules[hit.rule] == (),
            source=source if from_pa else "",
            via_waypoint=via,
        )
        status: int | str = (
            STATUS_UNAVAILABLE if via is not None and r.protocol == "http" else STATUS_RESET
        )
        before = at_waypoint.trace if at_waypoint is not None else ()
        return Decision(
            verdict="DENY",
            status=status,
            stage=stage,
            cause=cause,
            policy=policy,
            rule=rule,
            dry_run=(at_waypoint.dry_run if at_waypoint else ()) + dry,
            trace=before + steps,
            request=request_summary(r),
            hops=tuple(hops),
            notes=tuple(notes),
        )
    if at_waypoint is not None:
        return replace(
            at_waypoint,
            request=request_summary(r),
            dry_run=at_waypoint.dry_run + dry,
            trace=at_waypoint.trace + steps,
            hops=tuple(hops),
            notes=tuple(notes),
        )
    return Decision(
        verdict="ALLOW",
        status=STATUS_OK if r.protocol == "http" else "connected",
        stage=Stage.ALLOW if zd.deciding is not None else Stage.DEFAULT,
        cause=ZtunnelAllowed(dest.key, policy, rule),
        policy=policy,
        rule=rule,
        dry_run=dry,
        trace=steps,
        request=request_summary(r),
        hops=tuple(hops),
        notes=tuple(notes),
    )


def _connection(src: str, dst: str, port: int, peer: SpiffeIdentity | None) -> Connection:
    from meshauthz.ambient.evaluate import Connection

    return Connection.of(src, dst, port, peer)


def _hit(hit: PolicyHit | None) -> tuple[str | None, int | None]:
    if hit is None:
        return None, None
    return hit.policy.key, hit.policy.origin_rule(hit.rule)


def _dry_run(zd: ZtunnelDecision) -> tuple[DryRunResult, ...]:
    out = [DryRunResult(Stage.DENY, "denied", *_hit(h), None) for h in zd.dry_run_denies] + [
        DryRunResult(Stage.ALLOW, "allowed", *_hit(h), None) for h in zd.dry_run_allows
    ]
    if zd.dry_run_no_allow_match:
        out.append(DryRunResult(Stage.ALLOW, "denied", None, None, None))
    return tuple(out)


def _steps(zd: ZtunnelDecision, workload: str, state: IstiodAmbient) -> list[TraceStep]:
    """ztunnel's evaluation as trace steps, in its order, up to the decision."""
    out: list[TraceStep] = []
    ordered = [p for p in zd.evaluated if p.action == "DENY"] + [
        p for p in zd.evaluated if p.action == "ALLOW"
    ]
    for p in ordered:
        out.append(_step(p, zd, workload, state))
        if zd.deciding is not None and p is zd.deciding.policy:
            break
    return out


def _step(p: Authorization, zd: ZtunnelDecision, workload: str, state: IstiodAmbient) -> TraceStep:
    hits = {id(h.policy): h for h in (zd.dry_run_denies + zd.dry_run_allows)}
    if zd.deciding is not None:
        hits[id(zd.deciding.policy)] = zd.deciding
    hit = hits.get(id(p))
    stage = Stage.DENY if p.action == "DENY" else Stage.ALLOW
    src = state.source_policy(p.key)
    file, line = (src.file, src.line) if src is not None else (None, None)
    if not p.rules:
        msg = render.policy_without_rules(p.key)
        return TraceStep(
            stage,
            render.at_ztunnel(workload, msg),
            p.key,
            None,
            None,
            False,
            p.dry_run,
            file=file,
            line=line,
        )
    if hit is None:
        msg = render.policy_misses(p.key, None)
        return TraceStep(
            stage,
            render.at_ztunnel(workload, msg),
            p.key,
            None,
            None,
            False,
            p.dry_run,
            file=file,
            line=line,
        )
    rule = p.origin_rule(hit.rule)
    msg = render.policy_matches(render.policy_where(p.key, rule, p.key))
    return TraceStep(
        stage,
        render.at_ztunnel(workload, msg),
        p.key,
        rule,
        None,
        True,
        p.dry_run,
        file=file,
        line=line,
    )


__all__ = [
    "STATUS_UNAVAILABLE",
    "addressed",
    "binding_for",
    "client_in_mesh",
    "ingress_bypasses",
    "service_entry_of",
    "service_of",
    "walk",
]

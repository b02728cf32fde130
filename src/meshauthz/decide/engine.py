"""Deciding requests against a mesh: the destination's filters, prepared once.

``Decider.prepare`` builds what istiod would build for a destination workload
and port (its RBAC filters, its JWT providers, its mTLS mode and path
normalization); every request to it is then seen as the filters see it
(``meshauthz.decide.view``) and run through them by the one chain runner
(``meshauthz.decide.runner``):

    d = decider.decide(request)                # a Decision (trace=True: with its trace)
    pr = decider.prepare_request(request)      # the per-request work, done once
    o = decider.decide_prepared(pr)            # the Outcome, untraced: the fast path
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from msgspec import Struct
from msgspec.structs import replace

from meshauthz.ambient.flags import DEFAULT_FLAGS, AmbientFlags
from meshauthz.ambient.topology import HBONE_PORT
from meshauthz.collector import paused_gc
from meshauthz.decide import render
from meshauthz.decide.cause import NoSidecar, Stage
from meshauthz.decide.decision import STATUS_OK, Decision, Enforcer, Hop, Outcome, TraceStep
from meshauthz.decide.path import walk
from meshauthz.decide.request import Request, Transport
from meshauthz.decide.runner import (
    ChainRunner,
    ExtAuthzAssumption,
    PreparedRequest,
    internal_error,
)
from meshauthz.decide.view import ViewMemo, request_view
from meshauthz.envoy.hcm import PathOptions, XffSettings
from meshauthz.envoy.jwt_authn import JwtAuthentication
from meshauthz.envoy.rbac.evaluate import CompiledFilter, compile_filter
from meshauthz.envoy.rbac.model import HttpRbacFilter, NetworkRbacFilter
from meshauthz.envoy.request_headers import HeaderSettings
from meshauthz.envoy.runtime import EnvoyRuntime
from meshauthz.mesh import (
    MeshService,
    MeshSnapshot,
    MeshWorkload,
    PolicyMatcher,
    SelectedPolicy,
    list_policies,
    listener_mtls_mode,
    select_policies,
)
from meshauthz.resources.objects import ServiceEntry
from meshauthz.translate import BuildResult, BuiltFilter, Chain, build
from meshauthz.translate.bootstrap import ISTIO_RUNTIME
from meshauthz.translate.hcm import SIDECAR_INBOUND_XFF, gateway_xff, path_options
from meshauthz.translate.hcm_headers import SIDECAR_INBOUND_HEADERS, header_settings
from meshauthz.translate.requestauthn import jwt_authentication
from meshauthz.translate.workload import (
    authorization_policies,
    build_for_workload,
    mesh_build_options,
)


class PreparedStage(Struct):
    built: BuiltFilter
    compiled: CompiledFilter | None  # None for an ext_authz filter


@dataclasses.dataclass(slots=True)
class Prepared:
    """Everything about one destination workload and port that does not depend
    on the request: built once, reused for every request."""

    workload: MeshWorkload
    port: int
    protocol: Transport
    selected: list[SelectedPolicy]
    build: BuildResult
    custom: list[PreparedStage]
    rest: list[PreparedStage]
    jwt_rules: list[SelectedPolicy]
    jwt: JwtAuthentication | None  # the jwt_authn filter; None: there is none
    mtls_mode: str
    normalization: str  # Istio's pathNormalization mode, for display
    path_options: PathOptions  # the HCM's path options, which normalization follows
    principal_prefix: str = "spiffe://"
    # What the HCM does to the request's headers before the filters: XFCC, request
    # id, and how it derives the remote address from X-Forwarded-For (a gateway's
    # settings differ from a sidecar's: translate/hcm_headers.py).
    header_settings: HeaderSettings = SIDECAR_INBOUND_HEADERS
    # The proxy's runtime flags (fragment handling): istiod's bootstrap sets them.
    runtime: EnvoyRuntime = ISTIO_RUNTIME
    # Where the jwt_authn filter came from, when not from ``jwt_rules``.
    jwt_source: str = ""
    # (policy, rule) pairs known to be an empty rule ``{}`` though not in
    # ``selected`` (a config dump's policies).
    empty_rules: frozenset[tuple[str, int | None]] = frozenset()
    # Filters on the chain that run before the authorization filters and are
    # not evaluated (a config dump's): an ALLOW holds only if they let the
    # request through; a denial at a stage only if those before its filter do.
    not_evaluated: tuple[str, ...] = ()
    not_evaluated_before: dict[Stage, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    # A waypoint: the peer's identity reaches the filters as the filter state
    # HBONE termination sets (io.istio.peer_principal), as istiod builds for it.
    peer_filter_state: bool = False
    # the code of chains' first stages, shared by the destinations of a snapshot
    # (decide.runner._emit); None: not shared
    emitted: dict[tuple[Any, ...], Any] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    # not copied by dataclasses.replace: a changed Prepared gets its own runner
    runner_: ChainRunner | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    # what request views to this destination computed, by their inputs (decide.view)
    view_memo: ViewMemo = dataclasses.field(
        default_factory=ViewMemo, init=False, repr=False, compare=False
    )

    @property
    def xff(self) -> XffSettings:
        """How the HCM derives the remote address (part of its header settings)."""
        return self.header_settings.xff

    @property
    def runner(self) -> ChainRunner:
        """The chain runner for this destination, built on first use."""
        if self.runner_ is None:
            self.runner_ = ChainRunner(self)
        return self.runner_


class _Shared:
    """What every Decider of one snapshot shares: the chains built, by destination
    and port, and the filters compiled, by the filter (the translation shares a
    stage's filter among the workloads its policies select: a mesh-wide DENY)."""

    __slots__ = ("compiled", "emitted", "prepared", "waypoints")

    def __init__(self) -> None:
        self.prepared: dict[tuple[str, int, str], Prepared] = {}
        self.waypoints: dict[tuple[str, str, int, str], Prepared] = {}
        # id of the filter -> (the filter, kept so that the id stays its own; compiled)
        self.compiled: dict[int, tuple[Any, CompiledFilter]] = {}
        self.emitted: dict[tuple[Any, ...], Any] = {}  # (see Prepared.emitted)

    def compile(self, f: HttpRbacFilter | NetworkRbacFilter) -> CompiledFilter:
        hit = self.compiled.get(id(f))
        if hit is None or hit[0] is not f:
            hit = self.compiled[id(f)] = (f, compile_filter(f))
        return hit[1]


_PREPARED: weakref.WeakKeyDictionary[MeshSnapshot, _Shared] = weakref.WeakKeyDictionary()


class Decider:
    """Decides requests against a mesh snapshot; caches per destination and port."""

    def __init__(
        self,
        snapshot: MeshSnapshot,
        *,
        ext_authz: ExtAuthzAssumption = "deny",
        flags: AmbientFlags = DEFAULT_FLAGS,
    ) -> None:
        self.snapshot = snapshot
        self.ext_authz = ext_authz
        self.flags = flags  # istiod's ambient feature flags
        # A destination's chain depends on the snapshot alone (the ext_authz
        # assumption applies when a request is bound): every Decider of a
        # snapshot (check's, the analysis' witnesses') shares the chains built.
        shared = _PREPARED.get(snapshot)
        if shared is None:
            shared = _PREPARED[snapshot] = _Shared()
        self._shared = shared
        self._cache = shared.prepared
        self._waypoint_cache = shared.waypoints
        self.options = mesh_build_options(snapshot)
        self.ambient_: Any = None  # the ambient state, built on first use (decide.path)

    def prepare(self, workload: MeshWorkload, port: int, protocol: Transport) -> Prepared:
        key = (workload.key, port, protocol)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        chain = Chain.HTTP if protocol == "http" else Chain.TCP
        selected, result = build_for_workload(self.snapshot, workload, chain, self.options)
        jwt_rules = (
            select_policies(self.snapshot, workload, "RequestAuthentication")
            if protocol == "http"
            else []
        )
        prepared = self._assemble(
            workload,
            port,
            protocol,
            selected,
            result,
            jwt_rules,
            listener_mtls_mode(self.snapshot, workload, port),
        )
        self._cache[key] = prepared
        return prepared

    def prepare_waypoint(
        self,
        waypoint: MeshWorkload,
        service: MeshService | ServiceEntry | None,
        port: int,
        protocol: Transport,
    ) -> Prepared:
        """A waypoint's chain for ``service`` and its service ``port`` (None: the
        chain for traffic addressed to a workload, where only Gateway and
        GatewayClass policies apply; a ServiceEntry: its chain), built as istiod builds waypoints: the
        policies attached by targetRefs, the peer identity from filter state
        (pilot/pkg/networking/core/listener_waypoint.go)."""
        name = f"{service.kind} {service.key}" if isinstance(service, ServiceEntry) else ""
        key = (waypoint.key, name or (service.key if service else ""), port, protocol)
        hit = self._waypoint_cache.get(key)
        if hit is not None:
            return hit
        chain = Chain.HTTP if protocol == "http" else Chain.TCP
        selected = select_policies(self.snapshot, waypoint, "AuthorizationPolicy", service=service)
        options = replace(self.options, use_filter_state=True)
        result = build(authorization_policies(selected), chain, options)
        jwt_rules = (
            select_policies(self.snapshot, waypoint, "RequestAuthentication", service=service)
            if protocol == "http"
            else []
        )
        # HBONE is always mutual TLS: the waypoint never sees a plaintext peer.
        prepared = self._assemble(
            waypoint, port, protocol, selected, result, jwt_rules, "STRICT", peer_filter_state=True
        )
        self._waypoint_cache[key] = prepared
        return prepared

    def prepare_waypoint_termination(self, waypoint: MeshWorkload) -> Prepared:
        """ENABLE_LAYERED_WAYPOINT_AUTHORIZATION_POLICIES: the policies that select
        the waypoint's own pods by the standard rules (``NewWaypointTerminationBuilder``
        lists them as for a non-waypoint), enforced with L4 semantics at HBONE
        termination, on the client's certificate (listener_waypoint.go)."""
        key = (waypoint.key, "<termination>", HBONE_PORT, "tcp")
        hit = self._waypoint_cache.get(key)
        if hit is not None:
            return hit
        matcher = PolicyMatcher(
            waypoint.namespace, waypoint.labels, False, (), self.snapshot.root_namespace
        )
        selected = list_policies(self.snapshot, matcher, "AuthorizationPolicy")
        result = build(authorization_policies(selected), Chain.TCP, self.options)
        prepared = self._assemble(waypoint, HBONE_PORT, "tcp", selected, result, [], "STRICT")
        self._waypoint_cache[key] = prepared
        return prepared

    def _assemble(
        self,
        workload: MeshWorkload,
        port: int,
        protocol: Transport,
        selected: list[SelectedPolicy],
        result: BuildResult,
        jwt_rules: list[SelectedPolicy],
        mtls_mode: str,
        *,
        peer_filter_state: bool = False,
    ) -> Prepared:
        custom: list[PreparedStage] = []
        rest: list[PreparedStage] = []
        for bf in result.filters:
            compiled = None
            if isinstance(bf.filter, HttpRbacFilter | NetworkRbacFilter):
                compiled = self._shared.compile(bf.filter)
            (custom if bf.stage == "CUSTOM" else rest).append(PreparedStage(bf, compiled))
        mode = self.snapshot.mesh_config.path_normalization
        gateway = workload.proxy == "gateway"
        xff = (
            gateway_xff(self.snapshot.mesh_config.gateway_num_trusted_proxies)
            if gateway
            else SIDECAR_INBOUND_XFF
        )
        return Prepared(
            workload=workload,
            port=port,
            protocol=protocol,
            selected=selected,
            build=result,
            custom=custom,
            rest=rest,
            jwt_rules=jwt_rules,
            jwt=jwt_authentication([s.policy for s in jwt_rules]),
            mtls_mode=mtls_mode,
            normalization=mode,
            path_options=path_options(mode),
            header_settings=header_settings(gateway, xff),
            peer_filter_state=peer_filter_state,
            emitted=self._shared.emitted,
        )

    def decide(self, request: Request, *, trace: bool = False, explain: bool = False) -> Decision:
        """The decision for ``request``: the path Istio takes to its destination
        (its sidecar; or in ambient mode its waypoint, if bound, and its ztunnel),
        each hop decided, and what the client sees. An internal error denies
        (fail closed).

        ``explain``: also trace the filters after the one that decided (marked
        as not reached), so every applicable policy's rules are explained."""
        try:
            return walk(self, request, trace=trace, explain=explain)
        except Exception as e:  # fail closed, and say so
            return Decision.of(internal_error(request, e), request)

    def decide_with(
        self, prepared: Prepared, request: Request, *, trace: bool = False, explain: bool = False
    ) -> Decision:
        """Decide ``request`` against ``prepared`` (e.g. a waypoint's chain)."""
        return run_prepared(
            prepared, request, ext_authz=self.ext_authz, trace=trace, explain=explain
        )

    def decide_at_proxy(
        self,
        request: Request,
        *,
        trace: bool = False,
        explain: bool = False,
        hop: Enforcer | None = None,
    ) -> Decision:
        """The decision of the destination's own proxy (its sidecar or gateway);
        ``hop``: the proxy is an enforcement point of the request's path, of this kind."""
        pr = self.prepare_request(request)
        outcome = self.decide_prepared(pr, trace=trace, explain=explain)
        if (trace or explain) and request.protocol == "tcp" and pr.runner is not None:
            notes = http_only_notes(pr.runner.p)
            if notes:
                outcome = replace(outcome, trace=(*notes, *outcome.trace))
        hops: tuple[Hop, ...] = ()
        if hop is not None:
            o = outcome
            dest = request.destination.key
            hops = (Hop(hop, dest, request.source_principal, o.verdict, o.policy, o.rule),)
        return Decision.of(outcome, request, pr.view, hops)

    def decide_many(
        self,
        requests: Sequence[Request],
        *,
        trace: bool = False,
        explain: bool = False,
        progress: Callable[[int], Callable[[int], None] | None] | None = None,
    ) -> list[Decision]:
        """``decide`` for each request; identical requests are decided once (a
        decision depends on the request and the mesh only). ``progress(total)``
        may return a function told how many are done, now and then.

        No cyclic collection meanwhile: every decision (and its view, its
        destination's chain) lives on, and deciding makes no cyclic garbage
        (tests/decide/test_engine.py), so a collector run would walk a growing
        heap again and again for nothing."""
        seen: dict[Request, Decision] = {}
        out: list[Decision] = []
        tick = progress(len(requests)) if progress is not None else None
        with paused_gc():
            for i, r in enumerate(requests):
                try:
                    d = seen.get(r)
                except TypeError:  # a request holding unhashable values (JWT claims)
                    d = self.decide(r, trace=trace, explain=explain)
                else:
                    if d is None:
                        d = seen[r] = self.decide(r, trace=trace, explain=explain)
                out.append(d)
                if tick is not None and (i % 500 == 499 or i == len(requests) - 1):
                    tick(i + 1)
        return out

    def prepare_request(self, request: Request) -> PreparedRequest:
        """Do a request's per-request work once (its destination's chain, its view);
        decide it with ``decide_prepared``, as many times as wanted."""
        dest = request.destination
        if not dest.has_proxy and dest.injection is not None:
            o = no_sidecar(request, NoSidecar(dest.key, dest.injection))
            return PreparedRequest.known(request, o)
        try:
            p = self.prepare(request.destination, request.port, request.protocol)
            runner = p.runner
            return runner.bind(request_view(p, request, runner.lean), self.ext_authz)
        except Exception as e:  # fail closed, and say so, when it is decided
            error = internal_error(request, e)
            return PreparedRequest.known(request, error)

    # trace and explain are not keyword-only here: CPython 3.11 looks a missing
    # keyword-only argument's default up in a dict on every call, a cost this,
    # the fastest path, would pay for nothing.
    def decide_prepared(
        self, pr: PreparedRequest, trace: bool = False, explain: bool = False
    ) -> Outcome:
        """The outcome of a prepared request: untraced, the generated backend
        where the chain allows it; ``Decision.of(outcome, pr.request, pr.view)`` for the
        Decision."""
        if trace or explain:
            return pr.outcome(trace=trace, explain=explain)
        o = pr.constant
        if o is not None:
            return o
        run = pr.run  # an attribute load, which 3.11 specializes, not a method lookup
        try:
            return run(pr.args)
        except Exception as e:  # fail closed, as every path does
            return internal_error(pr.request, e)


def http_only_notes(p: Prepared) -> tuple[TraceStep, ...]:
    """What istiod did to rules with HTTP-only fields when it built this TCP port's
    filters (``Problem.http_only``), once per rule and field, as trace steps."""
    actions = {s.key: s.action for s in p.selected}
    seen: set[tuple[str | None, int | None, str]] = set()
    out: list[TraceStep] = []
    for pb in p.build.problems:
        if pb.http_only is None or (pb.policy, pb.rule, pb.http_only) in seen:
            continue
        seen.add((pb.policy, pb.rule, pb.http_only))
        action = actions.get(pb.policy or "") or "ALLOW"
        loc = pb.location
        out.append(
            TraceStep(
                Stage(action),
                render.http_only_on_tcp(action, pb.policy, pb.rule, pb.http_only),
                pb.policy,
                pb.rule,
                field=pb.http_only,
                file=loc.file if loc else None,
                line=loc.line if loc else None,
            )
        )
    return tuple(out)


def no_sidecar(request: Request, cause: NoSidecar) -> Outcome:
    """No Envoy in front of the destination: the application gets the request as
    sent, whatever the policies say (they are never built into a filter)."""
    return Outcome(
        verdict="ALLOW",
        status=STATUS_OK if request.protocol == "http" else "connected",
        stage=Stage.NO_SIDECAR,
        cause=cause,
        trace=(TraceStep(Stage.NO_SIDECAR, render.NO_FILTERS),),
    )


def run_prepared(
    prepared: Prepared,
    request: Request,
    *,
    ext_authz: ExtAuthzAssumption = "deny",
    trace: bool = False,
    explain: bool = False,
) -> Decision:
    """Decide ``request`` against a chain prepared elsewhere (e.g. read from a
    proxy's config dump by ``meshauthz.decide.config_dump``), as ``decide`` does."""
    try:
        pr = prepared.runner.bind(request_view(prepared, request), ext_authz)
    except Exception as e:  # fail closed, and say so
        return Decision.of(internal_error(request, e), request)
    return Decision.of(pr.outcome(trace=trace, explain=explain), request, pr.view)


__all__ = ["Decider", "Prepared", "PreparedStage", "run_prepared"]

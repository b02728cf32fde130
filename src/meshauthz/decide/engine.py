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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from meshauthz.decide.cause import Stage
from meshauthz.decide.decision import Decision, Outcome
from meshauthz.decide.request import Request, Transport
from meshauthz.decide.runner import (
    ChainRunner,
    ExtAuthzAssumption,
    PreparedRequest,
    internal_error,
)
from meshauthz.decide.view import request_view
from meshauthz.envoy.hcm import PathOptions, XffSettings
from meshauthz.envoy.jwt_authn import JwtAuthentication
from meshauthz.envoy.rbac.evaluate import CompiledFilter, compile_filter
from meshauthz.envoy.rbac.model import HttpRbacFilter, NetworkRbacFilter
from meshauthz.envoy.request_headers import HeaderSettings
from meshauthz.envoy.runtime import EnvoyRuntime
from meshauthz.mesh import (
    MeshSnapshot,
    MeshWorkload,
    SelectedPolicy,
    effective_mtls_mode,
    select_policies,
)
from meshauthz.translate import BuildResult, BuiltFilter, Chain
from meshauthz.translate.bootstrap import ISTIO_RUNTIME
from meshauthz.translate.hcm import SIDECAR_INBOUND_XFF, gateway_xff, path_options
from meshauthz.translate.hcm_headers import SIDECAR_INBOUND_HEADERS, header_settings
from meshauthz.translate.requestauthn import jwt_authentication
from meshauthz.translate.workload import build_for_workload, mesh_build_options


@dataclass(slots=True)
class PreparedStage:
    built: BuiltFilter
    compiled: CompiledFilter | None  # None for an ext_authz filter


@dataclass(slots=True)
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
    not_evaluated_before: dict[Stage, tuple[str, ...]] = field(default_factory=dict)
    # not copied by dataclasses.replace: a changed Prepared gets its own runner
    runner_: ChainRunner | None = field(default=None, init=False, repr=False, compare=False)

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


class Decider:
    """Decides requests against a mesh snapshot; caches per destination and port."""

    def __init__(self, snapshot: MeshSnapshot, *, ext_authz: ExtAuthzAssumption = "deny") -> None:
        self.snapshot = snapshot
        self.ext_authz = ext_authz
        self._cache: dict[tuple[str, int, str], Prepared] = {}
        self.options = mesh_build_options(snapshot)

    def prepare(self, workload: MeshWorkload, port: int, protocol: Transport) -> Prepared:
        key = (workload.key, port, protocol)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        chain = Chain.HTTP if protocol == "http" else Chain.TCP
        selected, result = build_for_workload(self.snapshot, workload, chain, self.options)
        custom: list[PreparedStage] = []
        rest: list[PreparedStage] = []
        for bf in result.filters:
            compiled = None
            if isinstance(bf.filter, HttpRbacFilter | NetworkRbacFilter):
                compiled = compile_filter(bf.filter)
            (custom if bf.stage == "CUSTOM" else rest).append(PreparedStage(bf, compiled))
        jwt_rules = (
            select_policies(self.snapshot, workload, "RequestAuthentication")
            if protocol == "http"
            else []
        )
        mode = self.snapshot.mesh_config.path_normalization
        gateway = workload.proxy == "gateway"
        xff = (
            gateway_xff(self.snapshot.mesh_config.gateway_num_trusted_proxies)
            if gateway
            else SIDECAR_INBOUND_XFF
        )
        prepared = Prepared(
            workload=workload,
            port=port,
            protocol=protocol,
            selected=selected,
            build=result,
            custom=custom,
            rest=rest,
            jwt_rules=jwt_rules,
            jwt=jwt_authentication([s.policy for s in jwt_rules]),
            mtls_mode=effective_mtls_mode(self.snapshot, workload, port),
            normalization=mode,
            path_options=path_options(mode),
            header_settings=header_settings(gateway, xff),
        )
        self._cache[key] = prepared
        return prepared

    def decide(self, request: Request, *, trace: bool = False, explain: bool = False) -> Decision:
        """The decision for ``request``. An internal error denies (fail closed).

        ``explain``: also trace the filters after the one that decided (marked
        as not reached), so every applicable policy's rules are explained."""
        pr = self.prepare_request(request)
        outcome = self.decide_prepared(pr, trace=trace, explain=explain)
        return Decision.of(outcome, request, pr.view)

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
        may return a function told how many are done, now and then."""
        seen: dict[Request, Decision] = {}
        out: list[Decision] = []
        tick = progress(len(requests)) if progress is not None else None
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
        try:
            p = self.prepare(request.destination, request.port, request.protocol)
            return p.runner.bind(request_view(p, request), self.ext_authz)
        except Exception as e:  # fail closed, and say so, when it is decided
            error = internal_error(request, e)
            return PreparedRequest(request, lambda args: error)

    def decide_prepared(
        self, pr: PreparedRequest, *, trace: bool = False, explain: bool = False
    ) -> Outcome:
        """The outcome of a prepared request: untraced, the generated backend
        where the chain allows it; ``Decision.of(outcome, pr.request, pr.view)`` for the
        Decision."""
        if trace or explain:
            return pr.outcome(trace=trace, explain=explain)
        try:
            return pr.run(pr.args)
        except Exception as e:  # fail closed, as every path does
            return internal_error(pr.request, e)


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

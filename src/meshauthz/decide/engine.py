"""A Request through the filters istiod builds for its destination, in order.

The HTTP chain on a sidecar's inbound listener runs, as istiod assembles it
(pilot/pkg/networking/core/listener_builder.go): the CUSTOM filters (an RBAC
filter with shadow rules that marks requests, then ext_authz), the JWT filter
built from RequestAuthentications, then the AUDIT, DENY and ALLOW RBAC filters.
The TCP chain has the same RBAC stages as network filters and no JWT. Before
any filter, the connection must pass mTLS (PeerAuthentication) and the HTTP
connection manager normalizes the path as the mesh config says.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from meshauthz.decide import fast
from meshauthz.decide.decision import (
    DENIED_BODY,
    STATUS_FORBIDDEN,
    STATUS_OK,
    STATUS_RESET,
    Decision,
    DryRunResult,
    TraceStep,
)
from meshauthz.decide.request import Request
from meshauthz.envoy.hcm import (
    SIDECAR_INBOUND_XFF,
    XffSettings,
    check_method,
    gateway_xff,
    normalize_path,
    remote_address,
)
from meshauthz.envoy.jwt_authn import JWT_FILTER, Provider, apply_providers, build_providers
from meshauthz.envoy.rbac.evaluate import (
    CompiledFilter,
    FilterResult,
    MatchTrace,
    PeerCertificate,
    PolicyTrace,
    RbacInput,
    compile_filter,
)
from meshauthz.envoy.rbac.model import HttpRbacFilter, NetworkRbacFilter, Note
from meshauthz.envoy.request_headers import Downstream, request_headers
from meshauthz.mesh import (
    MeshSnapshot,
    MeshWorkload,
    SelectedPolicy,
    effective_mtls_mode,
    select_policies,
)
from meshauthz.translate import BuildOptions, BuildResult, BuiltFilter, Chain, build
from meshauthz.translate.extauthz import ExtAuthzFilter
from meshauthz.translate.hcm_headers import header_settings

ExtAuthzAssumption = Literal["deny", "allow"]
_RBAC_META = ("envoy.filters.http.rbac", "envoy.filters.network.rbac")


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
    protocol: Literal["http", "tcp"]
    selected: list[SelectedPolicy]
    build: BuildResult
    custom: list[PreparedStage]
    rest: list[PreparedStage]
    jwt_rules: list[SelectedPolicy]
    jwt_providers: list[Provider]
    mtls_mode: str
    normalization: str
    principal_prefix: str = "spiffe://"
    notes: dict[str, Any] = field(default_factory=dict)
    # How the HCM derives the remote address from X-Forwarded-For: a gateway's
    # settings differ from a sidecar's (envoy/hcm.py, gateway_xff).
    xff: XffSettings = SIDECAR_INBOUND_XFF


class Decider:
    """Decides requests against a mesh snapshot; caches per destination and port."""

    def __init__(self, snapshot: MeshSnapshot, *, ext_authz: ExtAuthzAssumption = "deny") -> None:
        self.snapshot = snapshot
        self.ext_authz = ext_authz
        self._cache: dict[tuple[str, int, str], Prepared] = {}
        mc = snapshot.mesh_config
        known = {(s.namespace, s.hostname) for s in snapshot.services}
        self.options = BuildOptions.from_mesh_config(mc, known_services=known)
        self._fast_chains: dict[tuple[str, int, str], Any] = {}  # fast.chain_for

    def prepare(
        self, workload: MeshWorkload, port: int, protocol: Literal["http", "tcp"]
    ) -> Prepared:
        key = (workload.key, port, protocol)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        selected = select_policies(self.snapshot, workload, "AuthorizationPolicy")
        chain = Chain.HTTP if protocol == "http" else Chain.TCP
        result = build([s.policy for s in selected], chain, self.options)  # type: ignore[misc]
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
        providers = build_providers([s.policy for s in jwt_rules]) if jwt_rules else []
        prepared = Prepared(
            workload=workload,
            port=port,
            protocol=protocol,
            selected=selected,
            build=result,
            custom=custom,
            rest=rest,
            jwt_rules=jwt_rules,
            jwt_providers=providers,
            mtls_mode=effective_mtls_mode(self.snapshot, workload, port),
            normalization=self.snapshot.mesh_config.path_normalization,
            xff=(
                gateway_xff(self.snapshot.mesh_config.gateway_num_trusted_proxies)
                if workload.proxy == "gateway"
                else SIDECAR_INBOUND_XFF
            ),
        )
        self._cache[key] = prepared
        return prepared

    def decide(self, request: Request, *, trace: bool = False, explain: bool = False) -> Decision:
        """The decision for ``request``. An internal error denies (fail closed).

        ``explain``: also trace the filters after the one that decided (marked
        as not reached), so every applicable policy's rules are explained."""
        try:
            prepared = self.prepare(request.destination, request.port, request.protocol)
        except Exception as e:  # fail closed, and say so
            return _internal_error(request, e)
        return run_prepared(
            prepared, request, ext_authz=self.ext_authz, trace=trace, explain=explain
        )

    # --- the fast path (meshauthz.decide.fast) ------------------------------------------

    def prepare_request(self, request: Request) -> fast.PreparedRequest:
        """Do a request's per-request work once; decide it with ``decide_prepared``."""
        return fast.prepare_request(self, request)

    def decide_prepared(
        self, pr: fast.PreparedRequest, *, trace: bool = False
    ) -> fast.FastDecision | Decision:
        """``decide``'s verdict, stage, policy and rule, without building a Decision;
        with ``trace``, the full Decision (as ``decide(pr.request, trace=True)``)."""
        if trace:
            return self.decide(pr.request, trace=True)
        try:
            return pr.run(pr.args)
        except Exception:  # fail closed, as decide does
            return fast.ERROR


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
        run = _Run(prepared, request, trace or explain, ext_authz)
        run.explain = explain
        return run.run()
    except Exception as e:  # fail closed, and say so
        return _internal_error(request, e)


def _internal_error(request: Request, e: Exception) -> Decision:
    return Decision(
        verdict="DENY",
        status=STATUS_FORBIDDEN if request.protocol == "http" else STATUS_RESET,
        stage="error",
        reason=f"meshauthz hit an internal error and denies (fail closed): {type(e).__name__}: {e}",
        error=f"{type(e).__name__}: {e}",
        request=request_summary(request),
    )


def request_summary(r: Request) -> dict[str, Any]:
    return {
        "from": {
            "workload": r.source_workload,
            "principal": r.source_principal,
            "namespace": r.source_namespace,
            "ip": r.source_ip,
        },
        "remoteIP": r.remote_ip,
        "to": r.destination.key,
        "port": r.port,
        "protocol": r.protocol,
        **(
            {
                "method": r.method,
                "path": r.path,
                "host": r.host,
                "headers": [list(h) for h in r.headers],
            }
            if r.protocol == "http"
            else {}
        ),
        "sni": r.sni or None,
    }


class _Run:
    """One request through one prepared chain."""

    def __init__(
        self, prepared: Prepared, request: Request, trace: bool, ext_authz: ExtAuthzAssumption
    ) -> None:
        self.p = prepared
        self.r = request
        self.want_trace = trace
        self.ext_authz = ext_authz
        self.steps: list[TraceStep] = []
        self.dry_run: list[DryRunResult] = []
        self.audit = False
        self.audit_policy: str | None = None
        self.metadata: dict[str, dict[str, Any]] = {}
        self.http = request.protocol == "http"
        self.explain = False

    # --- the chain ------------------------------------------------------------

    def run(self) -> Decision:
        r, p = self.r, self.p
        peer = (
            None
            if r.plaintext
            else PeerCertificate(uri_sans=(p.principal_prefix + r.source_principal,))
        )  # type: ignore[operator]
        if p.mtls_mode == "STRICT" and r.plaintext:
            return self.deny(
                "mTLS",
                f"{p.workload.key} port {p.port} requires mTLS (PeerAuthentication STRICT) and the caller "
                "sent plaintext: the connection is closed before any policy runs",
                status=STATUS_RESET,
            )
        if p.mtls_mode == "DISABLE":
            peer = None  # mTLS is off on this port: no peer certificate reaches the filters
            self.step("mTLS", "mTLS is DISABLEd on this port: the caller's identity is not seen")
        headers: list[tuple[str, str]] | None = None
        path = r.path
        if self.http:
            norm = check_method(r.method, r.headers) or normalize_path(
                r.path,
                p.normalization,  # type: ignore[arg-type]
            )
            if norm.path is None:
                return self.deny(
                    "normalization",
                    f"Envoy rejects the request ({norm.reason}) with {norm.rejected_status} "
                    "before any filter",
                    status=norm.rejected_status or 400,
                    body=None,
                )
            path = norm.path
            if path != r.path:
                self.step(
                    "normalization", f"path normalized ({p.normalization}): {r.path!r} -> {path!r}"
                )
            # HTTP/1.1's Host header is HTTP/2's :authority; Envoy keeps only the latter.
            host = next((v for n, v in r.headers if n == "host"), r.host)
            user = [(n, v) for n, v in r.headers if n != "host"]
            headers = [
                (":authority", host),
                (":method", r.method),
                (":path", path),
                # what the HCM adds, rewrites and drops before any filter
                *request_headers(
                    header_settings(p.workload.proxy == "gateway", p.xff),
                    Downstream(
                        peer is not None,
                        peer,
                        (p.workload.identity.spiffe_uri,),
                        r.source_ip,
                        r.remote_ip,
                    ),
                    user,
                ),
            ]
            xff = [v for n, v in user if n == "x-forwarded-for"]
            if r.remote_ip is not None and not xff:
                headers.append(("x-forwarded-for", r.remote_ip))
        remote_ip = r.remote_ip
        if remote_ip is None:
            xff_values = [v for n, v in (headers or []) if n == "x-forwarded-for"]
            remote_ip = remote_address(
                r.source_ip,
                xff_values,
                p.xff.xff_num_trusted_hops,
                p.xff.use_remote_address,
            )
        self.inp_args: dict[str, Any] = dict(
            direct_remote_ip=r.source_ip,
            remote_ip=remote_ip,
            source_ip=r.source_ip,
            destination_ip=p.workload.address,
            destination_port=p.port,
            requested_server_name=r.sni,
            peer=peer,
            filter_state={},
        )
        self.headers = headers

        for i, stage in enumerate(p.custom):
            d = self.run_stage(stage)
            if d is not None:
                return self.unreached(d, [*p.custom[i + 1 :], *p.rest])
        if self.http and p.jwt_providers:
            d = self.run_jwt(path)
            if d is not None:
                return self.unreached(d, p.rest)
        allow_matched: tuple[str | None, int | None, str | None] | None = None
        had_allow = False
        for i, stage in enumerate(p.rest):
            d = self.run_stage(stage)
            if d is not None:
                return self.unreached(d, p.rest[i + 1 :])
            if (
                stage.built.stage == "ALLOW"
                and self.last is not None
                and self.last.engine_result is not None
            ):
                had_allow = True
                allow_matched = self.locate(stage.built, self.last.effective_policy_id)
        if had_allow and allow_matched is not None:
            policy, rule, envoy_policy = allow_matched
            return self.allow(
                "ALLOW", f"allowed by ALLOW policy {policy} rule {rule}", policy, rule, envoy_policy
            )
        return self.allow(
            "default",
            "allowed: no DENY policy matched and no ALLOW policy applies to this workload",
            None,
            None,
            None,
        )

    def unreached(self, decision: Decision, stages: list[PreparedStage]) -> Decision:
        """For explain: trace the filters the request never reached."""
        if not self.explain:
            return decision
        extra: list[TraceStep] = []
        for stage in stages:
            if stage.compiled is None:
                continue
            res = stage.compiled.evaluate(self.rbac_input(), True)
            for engine, dry in ((res.enforced, False), (res.shadow, True)):
                for pt in (engine.trace or ()) if engine is not None else ():
                    step = policy_step(stage.built, pt, dry)
                    extra.append(replace(step, message=f"(not reached) {step.message}"))
        return replace(decision, trace=(*decision.trace, *extra))

    def rbac_input(self) -> RbacInput:
        return RbacInput(headers=self.headers, dynamic_metadata=self.metadata, **self.inp_args)

    def run_stage(self, stage: PreparedStage) -> Decision | None:
        bf = stage.built
        self.last: FilterResult | None = None
        if stage.compiled is None:
            return self.run_ext_authz(bf)
        res = stage.compiled.evaluate(self.rbac_input(), self.want_trace)
        self.last = res
        for ns, values in res.dynamic_metadata.items():
            self.metadata.setdefault(ns, {}).update(values)
        if self.want_trace:
            self.trace_filter(bf, res)
        if res.shadow_engine_result is not None and bf.stage != "CUSTOM":
            policy, rule, envoy_policy = self.locate(bf, res.shadow_effective_policy_id)
            self.dry_run.append(
                DryRunResult(bf.stage, res.shadow_engine_result, policy, rule, envoy_policy)  # type: ignore[arg-type]
            )
        if bf.stage == "AUDIT" and res.should_log:
            self.audit = True
            self.audit_policy = self.locate(bf, res.effective_policy_id)[0]
        if not res.allowed:
            policy, rule, envoy_policy = self.locate(bf, res.effective_policy_id)
            if bf.stage == "ALLOW":
                reason = "denied: no rule of any ALLOW policy matched the request"
            elif policy is not None:
                reason = f"denied by {bf.stage} policy {policy} rule {rule}"
                if self.empty_rule(policy, rule):
                    reason += (
                        ": the rule is empty ({}), so it matches every request, and DENY "
                        "policies are evaluated before ALLOW policies, so no ALLOW policy can "
                        "let a request through"
                    )
            else:
                reason = f"denied by the {bf.stage} filter"
            return self.deny(bf.stage, reason, policy=policy, rule=rule, envoy_policy=envoy_policy)
        return None

    def run_ext_authz(self, bf: BuiltFilter) -> Decision | None:
        f = bf.filter
        assert isinstance(f, ExtAuthzFilter)
        ns = "envoy.filters.network.rbac" if f.is_network else "envoy.filters.http.rbac"
        marked = self.metadata.get(ns, {}).get("istio_ext_authz_shadow_effective_policy_id", "")
        if not (isinstance(marked, str) and marked.startswith(f.metadata_prefix)):
            self.step(
                "CUSTOM", f"no CUSTOM policy of provider {bf.provider} matched: not sent to it"
            )
            return None
        policy, rule, envoy_policy = self.locate_custom(marked)
        if self.ext_authz == "allow":
            self.step(
                "CUSTOM",
                f"sent to ext_authz provider {bf.provider}; assumed to allow",
                policy,
                rule,
                envoy_policy,
                True,
            )
            return None
        return self.deny(
            "CUSTOM",
            f"CUSTOM policy {policy} rule {rule} sends the request to ext_authz provider "
            f"{bf.provider}, whose answer decides; assumed to deny (use --ext-authz allow to assume it allows)",
            policy=policy,
            rule=rule,
            envoy_policy=envoy_policy,
        )

    def run_jwt(self, path: str) -> Decision | None:
        r = self.r
        headers = [h for h in (self.headers or []) if not h[0].startswith(":")]
        outcome = apply_providers(self.p.jwt_providers, r.jwt, headers, path, method=r.method)
        names = ", ".join(s.key for s in self.p.jwt_rules) or str(self.p.notes.get("jwt_source"))
        if not outcome.decided:
            return self.deny(
                "JWT",
                f"the token cannot be verified offline ({outcome.reason}): its keys are only at the jwksUri "
                f"of {names}; meshauthz does not guess (fail closed)",
                status=401,
                body=outcome.body or None,
            )
        if outcome.status is not None:
            return self.deny(
                "JWT",
                f"the JWT filter built from {names} rejects the token: {outcome.body}",
                status=outcome.status,
                body=outcome.body,
            )
        if outcome.metadata is not None:
            self.metadata[JWT_FILTER] = dict(outcome.metadata)
            self.step("JWT", f"token accepted by {names}")
        else:
            self.step(
                "JWT",
                f"no token presented; {names} lets the request through without a request principal",
            )
        if outcome.removed_headers:
            self.headers = [h for h in (self.headers or []) if h[0] not in outcome.removed_headers]
        return None

    # --- mapping Envoy policy names back to the user's policies -------------------

    def empty_rule(self, policy: str, rule: int | None) -> bool:
        if (policy, rule) in self.p.notes.get("empty_rules", ()):  # e.g. from a config dump
            return True
        for s in self.p.selected:
            if s.key == policy and rule is not None:
                rules = s.policy.spec.rules  # type: ignore[union-attr]
                if rule < len(rules):
                    r = rules[rule]
                    return not (r.from_ or r.to or r.when)
        return False

    def locate(
        self, bf: BuiltFilter, envoy_policy: str | None
    ) -> tuple[str | None, int | None, str | None]:
        if envoy_policy is None:
            return None, None, None
        src = bf.sources.get(envoy_policy)
        if src is None:
            return None, None, envoy_policy
        return src[0], src[1], envoy_policy

    def locate_custom(self, envoy_policy: str) -> tuple[str | None, int | None, str | None]:
        for stage in (*self.p.custom, *self.p.rest):
            if envoy_policy in stage.built.sources:
                return self.locate(stage.built, envoy_policy)
        return None, None, envoy_policy

    # --- trace ----------------------------------------------------------------------

    def step(
        self,
        stage: str,
        message: str,
        policy: str | None = None,
        rule: int | None = None,
        envoy_policy: str | None = None,
        matched: bool | None = None,
    ) -> None:
        self.steps.append(TraceStep(stage, message, policy, rule, envoy_policy, matched))

    def trace_filter(self, bf: BuiltFilter, res: FilterResult) -> None:
        for engine, dry in ((res.enforced, False), (res.shadow, True)):
            if engine is None or engine.trace is None:
                continue
            for pt in engine.trace:
                self.steps.append(policy_step(bf, pt, dry))

    # --- outcomes -------------------------------------------------------------------

    def deny(
        self,
        stage: str,
        reason: str,
        *,
        policy: str | None = None,
        rule: int | None = None,
        envoy_policy: str | None = None,
        status: int | str | None = None,
        body: str | None = DENIED_BODY,
    ) -> Decision:
        if status is None:
            status = STATUS_FORBIDDEN if self.http else STATUS_RESET
        return Decision(
            verdict="DENY",
            status=status,
            stage=stage,
            reason=reason,
            policy=policy,
            rule=rule,
            envoy_policy=envoy_policy,
            # a response to HEAD has no body (Envoy 1.40 sends the headers only)
            body=body if self.http and self.r.method != "HEAD" else None,
            dry_run=tuple(self.dry_run),
            audit=self.audit,
            audit_policy=self.audit_policy,
            trace=tuple(self.steps),
            request=_summary(self.r),
        )

    def allow(
        self,
        stage: str,
        reason: str,
        policy: str | None,
        rule: int | None,
        envoy_policy: str | None,
    ) -> Decision:
        return Decision(
            verdict="ALLOW",
            status=STATUS_OK if self.http else "connected",
            stage=stage,
            reason=reason,
            policy=policy,
            rule=rule,
            envoy_policy=envoy_policy,
            dry_run=tuple(self.dry_run),
            audit=self.audit,
            audit_policy=self.audit_policy,
            trace=tuple(self.steps),
            request=_summary(self.r),
        )


def _summary(r: Request) -> dict[str, Any]:
    return request_summary(r)


def policy_step(bf: BuiltFilter, pt: PolicyTrace, dry_run: bool) -> TraceStep:
    """One Envoy policy's result, in the user's terms: the first clause that failed."""
    src = bf.sources.get(pt.name)
    policy, rule = (src[0], src[1]) if src else (None, None)
    where = f"{policy} rule {rule}" if policy is not None else pt.name
    if not pt.matched and src is not None and rule is None:
        return TraceStep(
            bf.stage,
            f"{policy} has no rules: it matches no request",
            policy,
            None,
            pt.name,
            False,
            dry_run,
        )
    if pt.matched:
        note = pt.policy.note
        return TraceStep(
            bf.stage,
            f"{where} matches",
            policy,
            rule,
            pt.name,
            True,
            dry_run,
            file=note.file if note else None,
            line=note.line if note else None,
        )
    failure = first_failure(pt)
    note: Note | None = failure.note if failure is not None else None
    if note is not None and note.field:
        detail = describe_miss(note)
        return TraceStep(
            bf.stage,
            f"{where} does not match: {detail}",
            policy,
            rule,
            pt.name,
            False,
            dry_run,
            note.section,
            note.field,
            note.value,
            note.file,
            note.line,
        )
    return TraceStep(bf.stage, f"{where} does not match", policy, rule, pt.name, False, dry_run)


def first_failure(pt: PolicyTrace) -> MatchTrace | None:
    """Envoy requires every permission list and principal list to have a match;
    report the first list in which nothing matched, at its deepest noted node."""
    for group in (pt.permissions, pt.principals):
        if group and not any(t.matched for t in group):
            t = group[0]
            node = t.first_failure() or t
            return _noted(t, node)
    return None


def _noted(root: MatchTrace, node: MatchTrace) -> MatchTrace:
    """The deepest node on the failing path that carries a note with a field."""
    best = root if (root.note is not None and root.note.field) else None
    cur = root
    while not cur.matched:
        nxt = next((c for c in cur.children if not c.matched), None)
        if nxt is None:
            break
        cur = nxt
        if cur.note is not None and cur.note.field:
            best = cur
    return best or node


def describe_miss(note: Note) -> str:
    value = f" {note.value}" if note.value is not None else ""
    return f"{note.section + '.' if note.section and not (note.field or '').startswith(note.section) else ''}{note.field}:{value} does not match the request"


__all__ = ["Decider", "Prepared", "request_summary"]

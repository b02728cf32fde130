"""The chain runner: one request view through one destination's filters, in istiod's order.

The HTTP chain on a sidecar's inbound listener runs, as istiod assembles it
(pilot/pkg/networking/core/listener_builder.go): the CUSTOM filters (an RBAC
filter with shadow rules that marks requests, then ext_authz), the JWT filter
built from RequestAuthentications, then the AUDIT, DENY and ALLOW RBAC
filters. The TCP chain has the same RBAC stages as network filters and no
JWT. What happens before the first filter (mTLS, the connection manager) is
the request view's (``meshauthz.decide.view``).

There is one description of what the chain does, ``_Walk``, and two ways to
run it:

- the walk itself, over the compiled filters (``CompiledFilter.evaluate``),
  tracing each policy's clauses when asked: every chain, traced or not;
- for the chains without CUSTOM and JWT whose matchers read nothing an earlier
  filter writes, and only when no trace is asked, one generated Python
  function (``_generate``) that tries each filter's policies in Envoy's order
  and returns an ``Outcome`` built in advance. Every outcome it can return,
  and what each policy's match does to the request (``ChainRunner.effect``,
  ``ChainRunner.dry_run_entry``), comes from the same methods the walk uses;
  the generated code only chooses among them.

Both return the same ``Outcome`` (tests/decide/test_one_path.py compares them
field by field over every corpus the project has).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from msgspec import Struct
from msgspec.structs import replace

from meshauthz.decide import render
from meshauthz.decide.cause import (
    AllowedByPolicy,
    Cause,
    CustomDenied,
    DefaultAllow,
    DeniedByPolicy,
    InternalError,
    JwtRejected,
    JwtUnverifiable,
    MtlsRequired,
    NoAllowMatched,
    NotEvaluated,
    Stage,
)
from meshauthz.decide.decision import (
    DENIED_BODY,
    STATUS_FORBIDDEN,
    STATUS_OK,
    STATUS_RESET,
    DryRunResult,
    Outcome,
    TraceStep,
)
from meshauthz.decide.view import PSEUDO_HEADERS, RequestView, request_view
from meshauthz.envoy import jwt_authn
from meshauthz.envoy.ext_authz import ExtAuthzFilter
from meshauthz.envoy.jwt_authn import JWT_FILTER
from meshauthz.envoy.rbac.evaluate import (
    EngineResult,
    FilterResult,
    MatchTrace,
    PolicyTrace,
    PythonEmitter,
    RbacInput,
)
from meshauthz.envoy.rbac.model import (
    IdMetadata,
    Note,
    PermMetadata,
)
from meshauthz.resources.objects import AuthorizationPolicy

if TYPE_CHECKING:
    from meshauthz.decide.engine import Prepared, PreparedStage
    from meshauthz.decide.request import Request
    from meshauthz.translate import BuiltFilter

ExtAuthzAssumption = Literal["deny", "allow"]
Audit = tuple[bool, str | None]  # (audited, by which policy)
NOT_AUDITED: Audit = (False, None)
Located = tuple[str | None, int | None, str | None]  # policy, rule, Envoy policy name


class Effect(Struct, frozen=True):
    """What one RBAC filter's enforced answer does to the request."""

    stop: Outcome | None = None  # the chain ends here (denied)
    allowed_by: Outcome | None = None  # an ALLOW policy matched: the answer unless later denied
    audit: Audit | None = None  # the request is marked for audit


_NO_EFFECT = Effect()


def finish(
    o: Outcome, dry_run: tuple[DryRunResult, ...], audit: Audit, trace: tuple[TraceStep, ...] = ()
) -> Outcome:
    """An outcome with what the request collected on its way (both backends)."""
    if not dry_run and audit is NOT_AUDITED and not trace:
        return o
    return replace(o, dry_run=dry_run, audit=audit[0], audit_policy=audit[1], trace=trace)


def internal_error(request: Request, e: Exception) -> Outcome:
    if os.environ.get("MESHAUTHZ_DEBUG"):  # the details for a report; the decision says the rest
        import traceback  # start-up: needed only here

        traceback.print_exception(e, file=sys.stderr)
    return Outcome(
        verdict="DENY",
        status=STATUS_FORBIDDEN if request.protocol == "http" else STATUS_RESET,
        stage=Stage.ERROR,
        cause=InternalError(f"{type(e).__name__}: {e}"),
    )


class PreparedRequest:
    """A request with its per-request work done (the view, and the values the
    generated chain reads): ``run(args)`` decides it untraced. ``constant``: the
    untraced outcome when it is known without running anything (a chain that
    reads nothing of the request, a request refused before the chain): what
    ``run(args)`` returns, and ``decide_prepared`` returns it without the call.
    ``view`` may be lean (``request_view``): ``full_view()`` is the complete one."""

    __slots__ = ("args", "constant", "ext_authz", "request", "run", "runner", "view")

    def __init__(
        self,
        request: Request,
        run: Callable[[Any], Outcome],
        args: Any = None,
        *,
        runner: ChainRunner | None = None,
        view: RequestView | None = None,
        ext_authz: ExtAuthzAssumption = "deny",
        constant: Outcome | None = None,
    ) -> None:
        self.request = request
        self.run = run
        self.args = args
        self.runner = runner
        self.view = view
        self.ext_authz = ext_authz
        self.constant = constant

    @classmethod
    def known(
        cls,
        request: Request,
        outcome: Outcome,
        *,
        runner: ChainRunner | None = None,
        view: RequestView | None = None,
        ext_authz: ExtAuthzAssumption = "deny",
    ) -> PreparedRequest:
        """A request whose untraced outcome is known before it is run: ``constant``,
        which ``run`` returns too."""
        return cls(
            request,
            lambda args: outcome,
            runner=runner,
            view=view,
            ext_authz=ext_authz,
            constant=outcome,
        )

    def outcome(self, *, trace: bool = False, explain: bool = False) -> Outcome:
        """The request's outcome; traced (and with the unreached filters, for
        ``explain``) when asked. An internal error denies (fail closed)."""
        try:
            if (trace or explain) and self.runner is not None and self.view is not None:
                view = self.full_view()
                assert view is not None
                return self.runner.outcome(view, self.ext_authz, trace=True, explain=explain)
            if self.constant is not None:
                return self.constant
            return self.run(self.args)
        except Exception as e:
            return internal_error(self.request, e)

    def full_view(self) -> RequestView | None:
        """The request view with every header the filters see (worked out now,
        and kept, when the view bound was lean)."""
        view = self.view
        if view is not None and not view.complete:
            assert self.runner is not None
            view = self.view = request_view(self.runner.p, self.request)
        return view

    def __repr__(self) -> str:
        r = self.request
        return f"PreparedRequest({r.method} {r.path} to {r.destination.key}:{r.port})"


class ChainRunner:
    """One prepared destination's chain; picks the backend for each request."""

    def __init__(self, prepared: Prepared) -> None:
        self.p = prepared
        self.http = prepared.protocol == "http"
        # What each answer depends on: the filters not evaluated before it.
        self.allow_condition = _condition(prepared.not_evaluated)
        self.deny_conditions = {
            stage: _condition(names) for stage, names in prepared.not_evaluated_before.items()
        }
        self.default = self.allow(Stage.DEFAULT, DefaultAllow(), (None, None, None))
        # the code of a first stage may be shared with other chains (``_emit``) only
        # when its outcomes depend on the filter alone: no filter not evaluated
        # before it, no empty rules known besides the policies' own
        self.shares_code = not (
            prepared.not_evaluated or prepared.not_evaluated_before or prepared.empty_rules
        )
        self.generated: Generated | None = _generate(self)
        # its requests' views may be lean (``request_view``): the generated chain
        # decides them, and reads no header the connection manager adds
        self.lean = self.generated is not None and self.generated.lean

    # --- running ---------------------------------------------------------------------

    def bind(self, view: RequestView, ext_authz: ExtAuthzAssumption) -> PreparedRequest:
        """The request ready to be decided untraced by the fastest backend that can."""
        r = view.request
        g = self.generated
        if not view.complete and not self.lean:  # only the generated chain reads a lean one
            view = request_view(self.p, r)
        if g is not None and view.inp is not None and view.rejected is None:
            return PreparedRequest(
                r,
                g.run,
                g.args(view.inp),
                runner=self,
                view=view,
                ext_authz=ext_authz,
                constant=g.constant,
            )
        if view.rejected is not None:
            o = self.rejected(view, False)
            return PreparedRequest.known(r, o, runner=self, view=view, ext_authz=ext_authz)

        def walk(args: Any) -> Outcome:
            return _Walk(self, view, ext_authz, trace=False, explain=False).run()

        return PreparedRequest(r, walk, runner=self, view=view, ext_authz=ext_authz)

    def outcome(
        self, view: RequestView, ext_authz: ExtAuthzAssumption, *, trace: bool, explain: bool
    ) -> Outcome:
        if view.rejected is not None:
            return self.rejected(view, trace or explain)
        return _Walk(self, view, ext_authz, trace=trace or explain, explain=explain).run()

    def outcome_and_metadata(
        self,
        view: RequestView,
        ext_authz: ExtAuthzAssumption,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> tuple[Outcome, dict[str, dict[str, Any]]]:
        """The untraced outcome, with ``metadata`` present before the first filter
        (e.g. what a filter ahead of the chain wrote), and the dynamic metadata
        the request carries afterwards (what the filters wrote, by namespace)."""
        seeded = {ns: copy.deepcopy(dict(values)) for ns, values in (metadata or {}).items()}
        if view.rejected is not None:
            return self.rejected(view, False), seeded
        walk = _Walk(self, view, ext_authz, trace=False, explain=False, metadata=seeded)
        return walk.run(), walk.metadata

    def rejected(self, view: RequestView, trace: bool) -> Outcome:
        """A request refused before any filter."""
        cause = view.rejected
        if isinstance(cause, MtlsRequired):
            # the handshake fails: the caller sees its connection reset
            return self.deny(Stage.MTLS, cause, status=STATUS_RESET)
        assert cause is not None
        steps = (TraceStep(Stage.MTLS, render.MTLS_DISABLED),) if trace and view.peer_hidden else ()
        o = self.deny(Stage.NORMALIZATION, cause, status=cause.status, body=None)
        return finish(o, (), NOT_AUDITED, steps)

    # --- outcomes, and what a filter's answer does (shared by both backends) ------------

    def deny(
        self,
        stage: Stage,
        cause: Cause,
        located: Located = (None, None, None),
        *,
        status: int | str | None = None,
        body: str | None = DENIED_BODY,
    ) -> Outcome:
        if status is None:
            status = STATUS_FORBIDDEN if self.http else STATUS_RESET
        policy, rule, envoy_policy = located
        condition = self.deny_conditions.get(stage)
        return Outcome(
            "DENY", status, stage, cause, policy, rule, envoy_policy, body, condition=condition
        )

    def allow(self, stage: Stage, cause: Cause, located: Located) -> Outcome:
        policy, rule, envoy_policy = located
        status = STATUS_OK if self.http else "connected"
        return Outcome(
            "ALLOW",
            status,
            stage,
            cause,
            policy,
            rule,
            envoy_policy,
            condition=self.allow_condition,
        )

    def effect(self, bf: BuiltFilter, result: EngineResult) -> Effect:
        """What an RBAC filter's enforced answer does to the request at its stage."""
        stage = _stage(bf.stage)
        located = locate(bf, result.effective_policy_id)
        audit: Audit | None = None
        if stage is Stage.AUDIT and result.should_log:
            audit = (True, located[0])
        if not result.allowed:
            cause: Cause
            if stage is Stage.ALLOW:
                cause = NoAllowMatched()
            else:
                policy, rule, _ = located
                empty = policy is not None and self.empty_rule(policy, rule)
                cause = DeniedByPolicy(stage, policy, rule, empty)
            return Effect(stop=self.deny(stage, cause, located), audit=audit)
        if stage is Stage.ALLOW:
            allowed = self.allow(Stage.ALLOW, AllowedByPolicy(*located[:2]), located)
            return Effect(allowed_by=allowed, audit=audit)
        return Effect(audit=audit) if audit is not None else _NO_EFFECT

    @staticmethod
    def dry_run_entry(bf: BuiltFilter, result: EngineResult) -> DryRunResult:
        """What a filter's shadow (dry-run) rules would have done."""
        policy, rule, envoy_policy = locate(bf, result.effective_policy_id)
        verdict: Literal["allowed", "denied"] = "allowed" if result.allowed else "denied"
        return DryRunResult(_stage(bf.stage), verdict, policy, rule, envoy_policy)

    def empty_rule(self, policy: str, rule: int | None) -> bool:
        if (policy, rule) in self.p.empty_rules:  # e.g. from a config dump
            return True
        for s in self.p.selected:
            if s.key == policy and rule is not None and isinstance(s.policy, AuthorizationPolicy):
                rules = s.policy.spec.rules
                if rule < len(rules):
                    r = rules[rule]
                    return not (r.from_ or r.to or r.when)
        return False

    def locate_custom(self, envoy_policy: str) -> Located:
        for stage in (*self.p.custom, *self.p.rest):
            if envoy_policy in stage.built.sources:
                return locate(stage.built, envoy_policy)
        return None, None, envoy_policy


# a filter's stage by its name: Stage(name), without the enum's call (building a
# chain asks for each of its filters, and for each policy's outcome)
_STAGES = {s.value: s for s in Stage}


def _stage(name: str) -> Stage:
    return _STAGES.get(name) or Stage(name)


def _condition(names: tuple[str, ...]) -> NotEvaluated | None:
    return NotEvaluated(names) if names else None


def locate(bf: BuiltFilter, envoy_policy: str | None) -> Located:
    """An Envoy policy name back to the AuthorizationPolicy and rule it came from."""
    if envoy_policy is None:
        return None, None, None
    src = bf.sources.get(envoy_policy)
    if src is None:
        return None, None, envoy_policy
    return src[0], src[1], envoy_policy


# --- the walk: the chain's semantics ------------------------------------------------------


class _Walk:
    """One request view through one chain, filter by filter."""

    def __init__(
        self,
        runner: ChainRunner,
        view: RequestView,
        ext_authz: ExtAuthzAssumption,
        *,
        trace: bool,
        explain: bool,
        metadata: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        assert view.inp is not None and view.complete  # the walk may read any header
        self.runner = runner
        self.p = runner.p
        self.view = view
        self.r = view.request
        self.ext_authz = ext_authz
        self.trace = trace
        self.explain = explain
        self.steps: list[TraceStep] = []
        self.dry_run: list[DryRunResult] = []
        self.audit: Audit = NOT_AUDITED
        self.metadata: dict[str, dict[str, Any]] = {} if metadata is None else metadata
        self.headers = view.headers
        # each walk writes its own metadata: the view's input is shared
        self.inp: RbacInput = view.inp.with_metadata(self.metadata)

    def run(self) -> Outcome:
        p, view = self.p, self.view
        if view.peer_hidden:
            self.step(Stage.MTLS, render.MTLS_DISABLED)
        if view.normalized:
            target = self.r.path
            if target.startswith("/"):
                message = render.path_normalized(p.normalization, target, view.path)
            else:  # an absolute URL (envoy.request_target): it set :authority too
                authority = next((v for n, v in view.headers or () if n == ":authority"), "")
                message = render.absolute_url(p.normalization, target, authority, view.path)
            self.step(Stage.NORMALIZATION, message)
        # "If there are any CUSTOM policies that match the request, evaluate and deny
        # the request if the evaluation result is deny." (istio.io, Authorization Policy)
        for i, stage in enumerate(p.custom):
            stop = self.filter(stage).stop
            if stop is not None:
                return self.done(stop, [*p.custom[i + 1 :], *p.rest])
        # "It will reject a request if the request contains invalid authentication
        # information [...] A request that does not contain any authentication credentials
        # will be accepted but will not have any authenticated identity."
        # (istio.io, RequestAuthentication); there is no JWT filter on a TCP chain.
        if self.runner.http and p.jwt is not None:
            stop = self.jwt()
            if stop is not None:
                return self.done(stop, p.rest)
        # "AUDIT policies do not affect whether requests are allowed or denied to the
        # workload." "If there are any DENY policies that match the request, deny the
        # request." "If any of the ALLOW policies match the request, allow the request."
        # "Deny the request." (istio.io, Authorization Policy; the AUDIT, DENY and ALLOW
        # filters in that order, each ALLOW filter denying what none of its policies match)
        allowed: Outcome | None = None
        for i, stage in enumerate(p.rest):
            effect = self.filter(stage)
            if effect.stop is not None:
                return self.done(effect.stop, p.rest[i + 1 :])
            if effect.allowed_by is not None:
                allowed = effect.allowed_by
        # "If there are no ALLOW policies for the workload, allow the request."
        return self.done(allowed if allowed is not None else self.runner.default, [])

    def done(self, o: Outcome, unreached: list[PreparedStage]) -> Outcome:
        if self.explain:  # also show the filters the request never reached
            for stage in unreached:
                if stage.compiled is None:
                    continue
                res = stage.compiled.evaluate(self.inp, True)
                for step in self.policy_steps(stage.built, res):
                    self.steps.append(replace(step, message=render.NOT_REACHED + step.message))
        return finish(o, tuple(self.dry_run), self.audit, tuple(self.steps))

    def filter(self, stage: PreparedStage) -> Effect:
        """One filter: an RBAC filter (its shadow rules recorded, its enforced
        rules' effect returned) or an ext_authz filter."""
        if stage.compiled is None:
            stop = self.ext_authz_filter(stage.built)
            return _NO_EFFECT if stop is None else Effect(stop=stop)
        res = self.rbac(stage)
        if res.enforced is None:
            return _NO_EFFECT
        effect = self.runner.effect(stage.built, res.enforced)
        if effect.audit is not None:
            self.audit = effect.audit
        return effect

    def rbac(self, stage: PreparedStage) -> FilterResult:
        bf = stage.built
        assert stage.compiled is not None
        res = stage.compiled.evaluate(self.inp, self.trace)
        for ns, values in res.dynamic_metadata.items():
            self.metadata.setdefault(ns, {}).update(values)
        if self.trace:
            self.steps.extend(self.policy_steps(bf, res))
        if res.shadow is not None and Stage(bf.stage) is not Stage.CUSTOM:
            self.dry_run.append(self.runner.dry_run_entry(bf, res.shadow))
        return res

    def ext_authz_filter(self, bf: BuiltFilter) -> Outcome | None:
        f = bf.filter
        assert isinstance(f, ExtAuthzFilter)
        # The filter's own gate (filter_enabled_metadata) says whether its service is called.
        marked = f.gate_value(self.metadata)
        if not f.calls_service(self.metadata):
            self.step(Stage.CUSTOM, render.custom_not_sent(bf.provider))
            return None
        located = self.runner.locate_custom(marked)
        if self.ext_authz == "allow":
            self.step(Stage.CUSTOM, render.custom_assumed_allow(bf.provider), *located, True)
            return None
        cause = CustomDenied(bf.provider, located[0], located[1])
        return self.runner.deny(Stage.CUSTOM, cause, located)

    def jwt(self) -> Outcome | None:
        r, p = self.r, self.p
        headers = [h for h in self.headers or () if not h[0].startswith(":")]
        outcome = jwt_authn.apply_jwt_authn(p.jwt, r.jwt, headers, self.view.path, method=r.method)
        source = ", ".join(s.key for s in p.jwt_rules) or p.jwt_source
        if not outcome.decided:
            cause: Cause = JwtUnverifiable(source, outcome.reason)
            return self.runner.deny(Stage.JWT, cause, status=401, body=outcome.body or None)
        if outcome.status is not None:
            cause = JwtRejected(source, outcome.body)
            return self.runner.deny(Stage.JWT, cause, status=outcome.status, body=outcome.body)
        if outcome.metadata is not None:
            self.metadata[JWT_FILTER] = dict(outcome.metadata)
            self.step(Stage.JWT, render.jwt_accepted(source))
        else:
            self.step(Stage.JWT, render.jwt_no_token(source))
        if outcome.removed_headers:
            self.headers = tuple(
                h for h in self.headers or () if h[0] not in outcome.removed_headers
            )
            self.inp = dataclasses.replace(
                self.inp, headers=self.headers, dynamic_metadata=self.metadata
            )
        return None

    # --- trace -------------------------------------------------------------------------

    def step(
        self,
        stage: Stage,
        message: str,
        policy: str | None = None,
        rule: int | None = None,
        envoy_policy: str | None = None,
        matched: bool | None = None,
    ) -> None:
        if self.trace:
            self.steps.append(TraceStep(stage, message, policy, rule, envoy_policy, matched))

    def policy_steps(self, bf: BuiltFilter, res: FilterResult) -> list[TraceStep]:
        out = []
        for engine, shadow in ((res.enforced, False), (res.shadow, True)):
            for pt in (engine.trace or ()) if engine is not None else ():
                out.append(policy_step(bf, pt, dry_run_of(bf, pt.name, shadow), self.metadata))
        return out


def dry_run_of(bf: BuiltFilter, envoy_policy: str, in_shadow: bool) -> bool:
    """Whether an Envoy policy comes from a dry-run AuthorizationPolicy. A CUSTOM
    filter keeps its enforced policies in the shadow rules (they only mark the
    request for ext_authz), so where the policy went says it, not the rule set."""
    for pl in bf.placements:
        if envoy_policy in pl.names:
            return pl.dry_run
    # not built here (a config dump's filter): a CUSTOM mark is enforced
    return in_shadow and Stage(bf.stage) is not Stage.CUSTOM


def _jwt_claim_missing(
    failure: MatchTrace, metadata: Mapping[str, Mapping[str, Any]]
) -> tuple[str, bool] | None:
    """When the failing clause reads a JWT claim that the request does not carry:
    the claim (dotted) and whether a validated token was presented at all."""
    t: MatchTrace | None = failure
    while t is not None and not isinstance(t.node, IdMetadata | PermMetadata):
        t = next((c for c in t.children if not c.matched), None)
    if t is None:
        return None
    m = t.node.metadata
    if m.filter != JWT_FILTER or len(m.path) < 2:
        return None
    data: Any = metadata.get(JWT_FILTER)
    for key in m.path:
        if not isinstance(data, Mapping) or key not in data:
            payload = metadata.get(JWT_FILTER, {}).get(m.path[0])
            return ".".join(m.path[1:]), payload is not None
        data = data[key]
    return None


def policy_step(
    bf: BuiltFilter,
    pt: PolicyTrace,
    dry_run: bool,
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
) -> TraceStep:
    """One Envoy policy's result, in the user's terms: the first clause that failed."""
    stage = Stage(bf.stage)
    src = bf.sources.get(pt.name)
    policy, rule = (src[0], src[1]) if src else (None, None)
    where = render.policy_where(policy, rule, pt.name)
    if not pt.matched and src is not None and rule is None:
        message = render.policy_without_rules(str(policy))
        return TraceStep(stage, message, policy, None, pt.name, False, dry_run)
    if pt.matched:
        note = pt.policy.note
        return TraceStep(
            stage,
            render.policy_matches(where),
            policy,
            rule,
            pt.name,
            True,
            dry_run,
            file=note.file if note else None,
            line=note.line if note else None,
        )
    failure = first_failure(pt)
    miss: Note | None = failure.note if failure is not None else None
    if miss is not None and miss.field:
        missing = _jwt_claim_missing(failure, metadata or {}) if failure is not None else None
        return TraceStep(
            stage,
            render.claim_missing(where, miss, *missing)
            if missing is not None
            else render.policy_misses(where, miss),
            policy,
            rule,
            pt.name,
            False,
            dry_run,
            miss.section,
            miss.field,
            miss.value,
            miss.file,
            miss.line,
        )
    return TraceStep(
        stage, render.policy_misses(where, None), policy, rule, pt.name, False, dry_run
    )


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


# --- the generated backend ----------------------------------------------------------------


class Generated(Struct, frozen=True):
    """A chain as one function: ``run(args(inp))`` is the walk's untraced outcome.

    ``run`` and ``extract`` are shared by every chain of the same shape (a mesh
    of similar policies has one or a few): what is this chain's own, its sets,
    prefixes and outcomes, is the tuple ``constants``, which ``args`` passes
    first. One function for all makes its call site in ``decide_prepared`` one
    the interpreter specializes, and a call touches one tuple of the chain's
    instead of a closure cell per constant."""

    run: Callable[[Any], Outcome]
    extract: Callable[[RbacInput], tuple[Any, ...]]
    constants: tuple[Any, ...]
    noted_source: str  # the generated code with its notes marked (see ``source``)
    # reads no header the connection manager adds or rewrites (``request_view``'s
    # ``lean``): only the pseudo headers, the peer, addresses and ports
    lean: bool
    # the chain reads nothing of the request (no policy, or each decides alike
    # whatever comes: an empty DENY rule first, ...): run's one outcome
    constant: Outcome | None = None

    @property
    def source(self) -> str:
        """The generated code, for whoever wonders what runs (notes as comments)."""
        return _with_notes(self.noted_source)

    def args(self, inp: RbacInput) -> tuple[Any, ...]:
        """What ``run`` takes for ``inp``: the constants, then the values the
        chain reads, each as the one object every request with that value shares
        (``shared``)."""
        return (self.constants, *[shared(v) for v in self.extract(inp)])


# The sets the generated chains test and the values they read, one object per
# value (bounded: emptied when full, which only ends the sharing so far).
_SHARED: dict[frozenset[str], frozenset[str]] = {}
_SHARED_MAX = 1 << 16


def _one_set(values: Any) -> Any:
    """The strings ``values`` as the one frozenset of interned strings every
    caller shares; anything else as it came."""
    for v in values:  # (a loop: all() over a generator costs more for a few values)
        if type(v) is not str:
            return values
    key = values if type(values) is frozenset else frozenset(values)
    got = _SHARED.get(key)
    if got is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        got = _SHARED[key] = frozenset([sys.intern(v) for v in key])
    return got


def shared(value: Any) -> Any:
    """A value the generated chain reads as one object per value: a string
    interned (the chains' sets hold interned strings, so a hit compares
    identities); a header's values (a list) or the peer's names (a tuple) as
    one frozenset. The chain only asks whether any of them is in a set or
    matches (``not s.isdisjoint(v)``, ``any(map(f, v))``), which a frozenset
    answers as the list does, and a set against a set without an iterator.
    Requests then share what they read (a method, a caller's names), and
    deciding many touches less memory."""
    t = type(value)
    if t is str:
        return sys.intern(value)
    if t is tuple or t is list:
        # by the values as read: a dict lookup, where making the set to look it
        # up by costs several times that (a request's method, its caller's names)
        key = value if t is tuple else tuple(value)
        try:
            got = _BY_VALUES.get(key)
        except TypeError:  # a value that is not hashable: no set of strings either
            return _one_set(value)
        if got is None:
            got = _one_set(value)
            if type(got) is frozenset:
                if len(_BY_VALUES) >= _SHARED_MAX:
                    _BY_VALUES.clear()
                _BY_VALUES[key] = got
        return got
    return value


# ``shared``'s sets by the values read (a tuple of them, in the order read)
_BY_VALUES: dict[tuple[Any, ...], frozenset[str]] = {}


def _shared_constant(value: Any) -> Any:
    """A chain's constant, as ``shared``: equal string sets of different chains
    (a list of methods) are one object, strings interned."""
    t = type(value)
    if t is str:
        return sys.intern(value)
    if t is frozenset:
        return _one_set(value)
    return value


# The filters whose dynamic metadata an RBAC filter writes: a matcher reading it
# reads what an earlier filter of the chain wrote.
_WRITTEN_BY_FILTERS = frozenset(
    ["envoy.filters.http.rbac", "envoy.filters.network.rbac", "envoy.common"]
)


def _generate(runner: ChainRunner) -> Generated | None:
    """The walk's untraced run of ``runner``'s chain as generated code, or None
    when the chain needs what only the walk does: CUSTOM (ext_authz and its
    marks), the JWT filter, matchers reading an earlier filter's metadata."""
    p = runner.p
    if p.custom or (runner.http and p.jwt is not None):
        return None
    stages = []
    for stage in p.rest:
        if stage.compiled is None or _stage(stage.built.stage) is Stage.CUSTOM:
            return None
        stages.append(stage)
    try:
        return _emit(runner, stages)
    except (SyntaxError, RecursionError, MemoryError, ValueError):  # too deep for Python
        return None


class _Prefix(Struct, frozen=True):
    """A chain's code up to the end of its first stage, to take up again for
    every chain that starts with the same filter (``_prefix_key``)."""

    built: BuiltFilter  # kept: the key holds its id
    emitter: PythonEmitter  # its state then (copied before use)
    body: tuple[str, ...]
    sets_allowed: bool
    returns: bool  # every way through the stage returns: nothing follows


def _prefix_key(
    runner: ChainRunner, first: BuiltFilter, collects: bool, last: bool
) -> tuple[Any, ...]:
    """What the code of a chain's first stage depends on besides the filter: whether
    the chain collects dry-run results and audit marks, whether the stage is the
    last, HTTP or TCP (the statuses), and which of its rules are empty ``{}``
    (the causes; ``ChainRunner.empty_rule`` reads the destination's policies)."""
    empty = tuple([runner.empty_rule(policy, rule) for policy, rule in first.sources.values()])
    return (id(first), collects, last, runner.http, empty)


def _emit(runner: ChainRunner, stages: list[PreparedStage]) -> Generated | None:
    em = PythonEmitter()
    collects = any(
        s.compiled is not None
        and (
            s.compiled.shadow_engine is not None
            or (_stage(s.built.stage) is Stage.AUDIT and s.compiled.engine is not None)
        )
        for s in stages
    )

    def returned(o: Outcome | str) -> str:
        expr = o if isinstance(o, str) else em.constant(o)
        return f"return _finish({expr}, dr, au)" if collects else f"return {expr}"

    body: list[str] = []
    if collects:
        body += ["dr = ()", f"au = {em.constant(NOT_AUDITED)}"]
    sets_allowed = False

    def branches(cases: list[tuple[str, str, list[str]]], otherwise: list[str]) -> bool:
        """First match wins; whether every way through returns (what follows is
        never reached, and not written)."""
        for i, (_, cond, _) in enumerate(cases):
            if cond == "True":  # matches every request: the policies after it never run
                cases, otherwise = cases[: i + 1], []
                break
        for i, (name, cond, code) in enumerate(cases):
            body.append(f"{'if' if i == 0 else 'elif'} {cond}:{_NOTE}{name}")
            body.extend(f"    {line}" for line in code or ["pass"])
        if otherwise:
            if cases:
                body.append("else:")
                body.extend(f"    {line}" for line in otherwise)
            else:
                body.extend(otherwise)
        ways = [code for _, _, code in cases]
        if not (cases and cases[-1][1] == "True"):
            ways.append(otherwise)
        return all(any(line.startswith("return ") for line in way) for way in ways)

    def emit_stage(stage: PreparedStage, last: bool) -> bool:
        """One filter's code; whether every way through it returns (the stages
        after it are never reached)."""
        assert stage.compiled is not None
        bf = stage.built
        shadow, engine = stage.compiled.shadow_engine, stage.compiled.engine
        if shadow is not None:
            body.append(f"{_NOTE}{bf.stage}: dry-run rules")
            policies = dict(shadow.rbac.policies)
            branches(
                [
                    (
                        name,
                        em.policy(policies[name]),
                        [
                            f"dr = (*dr, {em.constant(runner.dry_run_entry(bf, shadow.result_for(name)))})"
                        ],
                    )
                    for name in shadow.names
                ],
                [f"dr = (*dr, {em.constant(runner.dry_run_entry(bf, shadow.result_for(None)))})"],
            )
        if engine is None:
            return False

        def code(effect: Effect) -> list[str]:
            nonlocal sets_allowed
            lines = []
            if effect.audit is not None:
                lines.append(f"au = {em.constant(effect.audit)}")
            if effect.stop is not None:
                lines.append(returned(effect.stop))
            elif effect.allowed_by is not None:
                if last:  # nothing after it can deny
                    lines.append(returned(effect.allowed_by))
                else:
                    sets_allowed = True
                    lines.append(f"al = {em.constant(effect.allowed_by)}")
            return lines

        body.append(f"{_NOTE}{bf.stage}")
        policies = dict(engine.rbac.policies)
        return branches(
            [
                (name, em.policy(policies[name]), code(runner.effect(bf, engine.result_for(name))))
                for name in engine.names
            ],
            code(runner.effect(bf, engine.result_for(None))),
        )

    # A first stage shared with other chains (a mesh-wide DENY policy's filter) is
    # written once: the code so far and the emitter's state, taken up again.
    n, ended = 0, False
    prefixes, key = runner.p.emitted, None
    if prefixes is not None and stages and runner.shares_code:
        first = stages[0].built
        key = _prefix_key(runner, first, collects, len(stages) == 1)
        hit = prefixes.get(key)
        if hit is not None and hit.built is first:
            em, body = hit.emitter.copy(), list(hit.body)
            sets_allowed, ended, n, key = hit.sets_allowed, hit.returns, 1, None
    while not ended and n < len(stages):
        ended = emit_stage(stages[n], n == len(stages) - 1)
        if n == 0 and key is not None and prefixes is not None:
            prefixes[key] = _Prefix(stages[0].built, em.copy(), tuple(body), sets_allowed, ended)
        n += 1
    if not ended:
        default = em.constant(runner.default)
        body.append(returned(f"al if al is not None else {default}" if sets_allowed else default))
    if not em.metadata_filters().isdisjoint(_WRITTEN_BY_FILTERS):
        return None  # it reads what an RBAC filter writes, which only the walk does
    if sets_allowed:
        body.insert(0, "al = None")
    # the code only: a note quotes policy names, which may read like a value ("v2-get")
    code = _code_lines(body)
    # the per-request reads the code uses, and the input itself when it calls a
    # compiled closure (which takes it)
    used = _names_in("\n".join(code), [*em.reads(), "inp"])
    values = "".join(f"{v}, " for v in used)
    head = [
        "def extract(inp):",
        *(f"  {line}" for line in em.prologue()),
        f"  return ({values})",
        "def run(values):",
        f"  k, {values}= values",
    ]
    source = "\n".join([*head, *(f"  {line}" for line in body), ""])
    # Chains of the same shape (a mesh of similar policies) share one compiled
    # function: only the constants differ, so the notes naming policies are left out.
    run, extract = _maker("\n".join([*head, *(f"  {line}" for line in code), ""]))
    k = tuple([_shared_constant(c) for c in em.constants()])
    lean = "inp" not in used and em.header_names() <= PSEUDO_HEADERS
    # reading nothing, the function is constant: its outcome, computed once
    return Generated(run, extract, k, source, lean, run((k,)) if not used else None)


# Marks a note for people in the generated source; NUL never occurs in Python code
# or in the names the notes quote.
_NOTE = "\x00"


def _with_notes(source: str) -> str:
    """The source as people read it: each note a comment."""
    return "\n".join(
        line.replace(_NOTE, "# " if line.lstrip().startswith(_NOTE) else "  # ")
        for line in source.split("\n")
    )


def _code_lines(lines: list[str]) -> list[str]:
    """The lines without their notes, those left blank left out."""
    cut = (line.split(_NOTE, 1)[0] if _NOTE in line else line for line in lines)
    return [line for line in cut if line.strip()]


def _names_in(text: str, names: list[str]) -> list[str]:
    """Those of ``names`` that ``text`` holds as a whole word (as a regex's
    ``\bname\b`` finds it: "v1" is not in "v12"), in their order."""
    out = []
    for name in names:
        i = text.find(name)
        while i >= 0:
            j = i + len(name)
            before = text[i - 1] if i else " "
            after = text[j] if j < len(text) else " "
            if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
                out.append(name)
                break
            i = text.find(name, i + 1)
    return out


@functools.lru_cache(maxsize=1024)
def _maker(code: str) -> tuple[Callable[[Any], Outcome], Callable[[Any], Any]]:
    namespace: dict[str, Any] = {"_finish": finish}
    exec(compile(code, "<meshauthz chain>", "exec"), namespace)
    return namespace["run"], namespace["extract"]


__all__ = [
    "ChainRunner",
    "Effect",
    "ExtAuthzAssumption",
    "Generated",
    "PreparedRequest",
    "finish",
    "internal_error",
    "locate",
    "shared",
]

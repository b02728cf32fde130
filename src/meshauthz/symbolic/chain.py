"""One destination's chain as formulas: every way it can end, and when.

``encode_chain`` follows the chain runner (``meshauthz.decide.runner``) step
by step over the same ``Prepared`` lists, in the order the runner walks them
(``Prepared.custom``, then the JWT filter, then ``Prepared.rest``), and the
runner's ``ChainRunner.effect`` says what each filter's answer does:

- mTLS: a STRICT port resets plaintext callers; DISABLE hides the peer;
- CUSTOM: the marking RBAC filter's shadow rules write their metadata, the
  ext_authz filter's gate reads it; a request sent to the provider is
  decided by the same assumption ``check --ext-authz`` takes (deny by default);
- JWT: a token the filter rejects ends the chain (401/403); one it accepts
  gives the later matchers its claims (``meshauthz.symbolic.jwt``);
- AUDIT, DENY, ALLOW: each RBAC filter's policies are tried in Envoy's order
  (by name), the first match is the effective policy; a DENY match or an
  ALLOW filter without a match stops the chain; dry-run rules only write
  metadata; without an ALLOW filter the request is allowed.

The result is a list of (condition, ``End``) whose conditions partition the
request space, each ``End`` saying what ``check`` would report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import z3
from msgspec import Struct, field

from meshauthz.decide.cause import Stage
from meshauthz.decide.engine import Prepared, PreparedStage
from meshauthz.decide.runner import ExtAuthzAssumption, locate
from meshauthz.envoy.ext_authz import ExtAuthzFilter
from meshauthz.envoy.rbac.evaluate import ALLOWED, DENIED, CompiledRbac
from meshauthz.envoy.rbac.model import Action, HttpRbacFilter
from meshauthz.symbolic.jwt import jwt_filter
from meshauthz.symbolic.matchers import Context, policy_formula
from meshauthz.symbolic.regex import Unencodable
from meshauthz.symbolic.space import Space
from meshauthz.translate import BuiltFilter

Verdict = Literal["ALLOW", "DENY"]


class End(Struct, frozen=True):
    """How the chain ends for a class of requests: what ``check`` reports."""

    verdict: Verdict
    stage: Stage
    policy: str | None = None  # "namespace/name"
    rule: int | None = None
    envoy_policy: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"decision": self.verdict, "policy": self.policy, "rule": self.rule}


class PolicyMatch(Struct, frozen=True):
    """One Envoy policy of one filter: when it matches, and when a request
    reaches its filter at all (what the chain let through before it)."""

    built: BuiltFilter
    name: str  # the Envoy policy name
    shadow: bool  # a dry-run (shadow) rule
    matches: z3.BoolRef
    reached: z3.BoolRef


class SymbolicChain(Struct):
    prepared: Prepared
    ends: list[tuple[z3.BoolRef, End]] = field(default_factory=list)
    policies: list[PolicyMatch] = field(default_factory=list)

    @property
    def allowed(self) -> z3.BoolRef:
        return z3.Or(*[c for c, e in self.ends if e.verdict == "ALLOW"] or [z3.BoolVal(False)])

    def end_in(self, model: z3.ModelRef) -> End:
        """Which end a concrete request (a model of the space) reaches."""
        for cond, end in self.ends:
            if z3.is_true(model.eval(cond, model_completion=True)):
                return end
        raise AssertionError("the ends of a chain partition the request space")

    def cond_of(self, end: End) -> z3.BoolRef:
        return z3.Or(*[c for c, e in self.ends if e == end] or [z3.BoolVal(False)])


def _first_matches(
    engine: CompiledRbac, ctx: Context, seen: Callable[[str, z3.BoolRef], None]
) -> list[tuple[str, z3.BoolRef]]:
    """Each policy's "first to match" condition, in Envoy's order (by name);
    ``seen`` is told each policy's own match condition."""
    out = []
    earlier: list[z3.BoolRef] = []
    policies = dict(engine.rbac.policies)
    for name, _ in engine.matchers:
        m = policy_formula(policies[name], ctx)
        seen(name, m)
        out.append((name, z3.And(m, *[z3.Not(e) for e in earlier])))
        earlier.append(m)
    return out


def _engine_allowed(action: Action, matched: z3.BoolRef) -> z3.BoolRef:
    if action is Action.ALLOW:
        return matched
    if action is Action.DENY:
        return z3.Not(matched)
    return z3.BoolVal(True)


class _Encoder:
    def __init__(self, p: Prepared, space: Space, ext_authz: ExtAuthzAssumption) -> None:
        self.p = p
        self.runner = p.runner
        self.ext_authz = ext_authz
        plaintext = space.plaintext
        peer = z3.BoolVal(False) if p.mtls_mode == "DISABLE" else z3.Not(plaintext)
        self.ctx = Context(space, peer, p.workload.address, p.port)
        self.chain = SymbolicChain(p)
        self.reach: z3.BoolRef = z3.BoolVal(True)

    def stop(self, cases: list[tuple[z3.BoolRef, End]]) -> None:
        for cond, end in cases:
            self.chain.ends.append((z3.And(self.reach, cond), end))
        if cases:
            self.reach = z3.And(self.reach, *[z3.Not(c) for c, _ in cases])

    def run(self) -> SymbolicChain:
        p = self.p
        if p.mtls_mode == "STRICT":
            # "the TLS handshake fails": plaintext callers are reset
            self.stop([(self.ctx.space.plaintext, End("DENY", Stage.MTLS))])
        for stage in p.custom:
            self.stop(self.filter(stage)[0])
        if self.runner.http and p.jwt is not None:
            self.stop([(jwt_filter(p.jwt, self.ctx), End("DENY", Stage.JWT))])
        allowed: list[tuple[z3.BoolRef, End]] | None = None
        for stage in p.rest:
            stops, allowed_by = self.filter(stage)
            self.stop(stops)
            if allowed_by is not None:
                allowed = allowed_by
        if allowed is None:
            default = self.runner.default
            self.chain.ends.append((self.reach, End("ALLOW", default.stage)))
        else:
            self.stop(allowed)
        return self.chain

    def filter(
        self, stage: PreparedStage
    ) -> tuple[list[tuple[z3.BoolRef, End]], list[tuple[z3.BoolRef, End]] | None]:
        """(the cases in which the filter stops the chain, the ALLOW cases it grants)."""
        bf = stage.built
        if stage.compiled is None:
            assert isinstance(bf.filter, ExtAuthzFilter)
            return self.ext_authz_filter(bf.filter), None
        cf = stage.compiled
        ctx = self.ctx
        http = isinstance(bf.filter, HttpRbacFilter)
        ns = "envoy.filters.http.rbac" if http else "envoy.filters.network.rbac"
        writes: list[tuple[str, str, z3.BoolRef, object]] = []
        reached = self.reach

        def seen(shadow: bool) -> Callable[[str, z3.BoolRef], None]:
            def record(name: str, m: z3.BoolRef) -> None:
                self.chain.policies.append(PolicyMatch(bf, name, shadow, m, reached))

            return record

        if cf.shadow_engine is not None:
            sp = cf.filter.shadow_rules_stat_prefix
            firsts = _first_matches(cf.shadow_engine, ctx, seen(True))
            matched = z3.Or(*[c for _, c in firsts] or [z3.BoolVal(False)])
            for name, c in firsts:
                writes.append((ns, sp + "shadow_effective_policy_id", c, name))
            ok = _engine_allowed(cf.shadow_engine.action, matched)
            writes.append((ns, sp + "shadow_engine_result", ok, ALLOWED))
            writes.append((ns, sp + "shadow_engine_result", z3.Not(ok), DENIED))
        stops: list[tuple[z3.BoolRef, End]] = []
        allowed_by: list[tuple[z3.BoolRef, End]] | None = None
        engine = cf.engine
        if engine is not None:
            firsts = _first_matches(engine, ctx, seen(False))
            matched = z3.Or(*[c for _, c in firsts] or [z3.BoolVal(False)])
            ok = _engine_allowed(engine.action, matched)
            if isinstance(bf.filter, HttpRbacFilter):
                rp = bf.filter.rules_stat_prefix
                for name, c in firsts:
                    writes.append((ns, rp + "enforced_effective_policy_id", c, name))
                writes.append((ns, rp + "enforced_engine_result", ok, ALLOWED))
                writes.append((ns, rp + "enforced_engine_result", z3.Not(ok), DENIED))
            if engine.action is Action.LOG:
                writes.append(("envoy.common", "access_log_hint", matched, True))
                writes.append(("envoy.common", "access_log_hint", z3.Not(matched), False))
            # what the runner's effect() makes of each answer
            cases = [(c, engine.result_for(name)) for name, c in firsts]
            cases.append((z3.Not(matched), engine.result_for(None)))
            for cond, result in cases:
                effect = self.runner.effect(bf, result)
                if effect.stop is not None:
                    o = effect.stop
                    stops.append((cond, End("DENY", o.stage, o.policy, o.rule, o.envoy_policy)))
                elif effect.allowed_by is not None:
                    o = effect.allowed_by
                    allowed_by = allowed_by or []
                    allowed_by.append(
                        (cond, End("ALLOW", o.stage, o.policy, o.rule, o.envoy_policy))
                    )
        for wns, key, cond, value in writes:
            self.ctx.writes.write(wns, key, cond, value)
        return stops, allowed_by

    def ext_authz_filter(self, f: ExtAuthzFilter) -> list[tuple[z3.BoolRef, End]]:
        """The provider is called when the gate holds; under the assumption
        "deny" that ends the chain, located by the mark the gate read."""
        if "filterEnabledMetadata" not in f.typed_config:
            cases: list[tuple[z3.BoolRef, object]] = [(z3.BoolVal(True), None)]
        else:
            path = f.metadata_path
            if len(path) != 1:
                raise Unencodable("an ext_authz gate on a metadata path of several keys")
            cases = [
                (cond, value)
                for cond, value in self.ctx.writes.outcomes(f.metadata_filter, path[0])
                if f.calls_service({} if value is None else {f.metadata_filter: {path[0]: value}})
            ]
        if self.ext_authz == "allow":
            return []
        out = []
        for cond, value in cases:
            policy, rule, envoy_policy = (
                self.runner.locate_custom(value) if isinstance(value, str) else (None, None, None)
            )
            out.append((cond, End("DENY", Stage.CUSTOM, policy, rule, envoy_policy)))
        return out


def encode_chain(
    p: Prepared, space: Space, ext_authz: ExtAuthzAssumption = "deny"
) -> SymbolicChain:
    """The ends of ``p``'s chain over ``space``; raises ``Unencodable``."""
    return _Encoder(p, space, ext_authz).run()


__all__ = ["End", "PolicyMatch", "SymbolicChain", "encode_chain", "locate"]

"""Tokens: MA2009 (requestPrincipals or request.auth conditions on a workload
no RequestAuthentication applies to), MA2010 (a RequestAuthentication that no
policy turns into a requirement: tokens stay optional)."""

from __future__ import annotations

from typing import Any

from meshauthz.analyze.context import Context
from meshauthz.analyze.finding import AnalysisFinding, at
from meshauthz.analyze.requests import request_for_rule, source_for
from meshauthz.analyze.witness import decided_by
from meshauthz.decide.cause import Stage
from meshauthz.mesh import select_policies
from meshauthz.resources.istio import Rule
from meshauthz.resources.objects import AuthorizationPolicy


def _key(p: AuthorizationPolicy) -> str:
    return f"{p.namespace}/{p.name}"


def _jwt_field(rule: Rule) -> tuple[tuple[str | int, ...], str] | None:
    for j, f in enumerate(rule.from_):
        src = f.source
        if src is None:
            continue
        if src.request_principals:
            return ("from", j, "source", "requestPrincipals"), "requestPrincipals"
        if src.not_request_principals:
            return ("from", j, "source", "notRequestPrincipals"), "notRequestPrincipals"
    for j, c in enumerate(rule.when):
        if c.key.startswith("request.auth."):
            return ("when", j, "key"), c.key
    return None


def _claims_for(value: str) -> dict[str, Any]:
    """JWT claims whose iss/sub make the request principal ``value``."""
    if value == "*" or "/" not in value:
        return {"iss": "https://issuer.example", "sub": "user"}
    iss, _, sub = value.replace("*", "x").rpartition("/")
    return {"iss": iss, "sub": sub}


def check_jwt_without_requestauthentication(ctx: Context) -> None:
    for p in ctx.authorization_policies:
        if p.dry_run or p.spec.action not in ("ALLOW", "DENY", "AUDIT"):
            continue
        bare = [
            w
            for w in ctx.workloads_of(p)
            if not select_policies(ctx.snapshot, w, "RequestAuthentication")
        ]
        if not bare:
            continue
        w = bare[0]
        for i, rule in enumerate(p.spec.rules):
            found = _jwt_field(rule)
            if found is None:
                continue
            path, field = found
            witness = None
            req = request_for_rule(ctx, rule, w, ctx.default_port(w))
            src = rule.from_[0].source if rule.from_ else None
            if p.spec.action == "ALLOW" and src is not None and src.request_principals:
                req["jwt"] = {**_claims_for(src.request_principals[0]), **req.get("jwt", {})}
                got = ctx.witnesses.decide(req)
                if got is not None and not decided_by(got.decision, _key(p), i):
                    witness = got.witness
            elif p.spec.action == "DENY" and field == "notRequestPrincipals":
                req.pop("jwt", None)
                got = ctx.witnesses.decide(req)
                if (
                    got is not None
                    and got.decision.stage is Stage.DENY
                    and decided_by(got.decision, _key(p), i)
                ):
                    witness = got.witness
            effect = (
                "this ALLOW rule never matches"
                if p.spec.action == "ALLOW"
                else f"this {p.spec.action} rule sees every request as carrying no token"
            )
            ctx.add(
                AnalysisFinding(
                    "MA2009",
                    f"{field} needs a validated token, but no RequestAuthentication applies "
                    f"to {w.key}: {effect}",
                    fix="add a RequestAuthentication (issuer and JWKS) that selects the same "
                    "workloads",
                    witness=witness,
                    **at(p, "spec", "rules", i, *path),
                )
            )


def _requires_token(p: AuthorizationPolicy) -> bool:
    if p.dry_run:
        return False
    for rule in p.spec.rules:
        srcs = [f.source for f in rule.from_ if f.source is not None]
        if p.spec.action == "ALLOW" and (
            any(s.request_principals for s in srcs)
            or any(c.key.startswith("request.auth.") and c.values for c in rule.when)
        ):
            return True
        if p.spec.action == "DENY" and any(s.not_request_principals for s in srcs):
            return True
    return False


def check_optional_tokens(ctx: Context) -> None:
    for ra in ctx.request_authentications:
        workloads = ctx.workloads_of(ra)
        if not workloads:
            continue
        open_ = [w for w in workloads if not any(_requires_token(p) for p in ctx.policies_of(w))]
        if not open_:
            continue
        w = open_[0]
        req: dict[str, Any] = {"from": source_for(ctx, Rule(), w), "to": w.key}
        port = ctx.default_port(w)
        if port is not None:
            req["port"] = port
        got = ctx.witnesses.decide(req)
        witness = got.witness if got is not None and got.decision.allowed else None
        ctx.add(
            AnalysisFinding(
                "MA2010",
                f"no AuthorizationPolicy on {w.key} requires a token: this "
                "RequestAuthentication rejects invalid tokens, but a request without any "
                "token is accepted",
                fix="require a token: an ALLOW policy with from.source.requestPrincipals: ['*'] "
                "(or a DENY with notRequestPrincipals: ['*']) on the same workloads",
                witness=witness,
                **at(ra, "spec"),
            )
        )

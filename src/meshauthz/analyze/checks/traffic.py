"""How a policy behaves on the traffic the workload gets, each finding with
a witness request decided by ``decide``: MA2002 (from and to split into two
rules), MA2003 (identity fields on a port that accepts plaintext), MA2004
(HTTP-only fields on a TCP port, from the translator's own notes), MA2008
(remoteIpBlocks on a sidecar)."""

from __future__ import annotations

import ipaddress
from typing import Any

from meshauthz.analyze.context import Context
from meshauthz.analyze.finding import AnalysisFinding, at
from meshauthz.analyze.requests import request_for_rule, source_for
from meshauthz.analyze.witness import Decided, decided_by, rule_matched
from meshauthz.decide.cause import Stage
from meshauthz.decide.decision import Decision
from meshauthz.mesh import MeshWorkload, effective_mtls_mode
from meshauthz.resources.findings import Severity
from meshauthz.resources.istio import Rule
from meshauthz.resources.objects import AuthorizationPolicy

# Fields and conditions that need the caller's mTLS certificate.
_IDENTITY_FIELDS = ("principals", "namespaces", "service_accounts", "trust_domains")
_IDENTITY_KEYS = (
    "source.principal",
    "source.namespace",
    "source.serviceAccount",
    "source.trustDomain",
    "connection.sni",
)


def _key(p: AuthorizationPolicy) -> str:
    return f"{p.namespace}/{p.name}"


def _denied_by(d: Decision, p: AuthorizationPolicy, i: int) -> bool:
    return d.stage is Stage.DENY and decided_by(d, _key(p), i)


def _allowed_by(d: Decision, p: AuthorizationPolicy, i: int) -> bool:
    return d.allowed and decided_by(d, _key(p), i)


def _acts(p: AuthorizationPolicy) -> bool:
    return p.spec.action in ("ALLOW", "DENY") and not p.dry_run


# --------------------------------------------------------------------------- MA2002


def _only_from(r: Rule) -> bool:
    return bool(r.from_) and not r.to and not r.when


def _only_to(r: Rule) -> bool:
    return bool(r.to) and not r.from_ and not r.when


def check_split_rules(ctx: Context) -> None:
    for p in ctx.authorization_policies:
        if not _acts(p):
            continue
        rules = p.spec.rules
        for i in range(len(rules) - 1):
            a, b = rules[i], rules[i + 1]
            if _only_from(a) and _only_to(b):
                to_index = i + 1
            elif _only_to(a) and _only_from(b):
                to_index = i
            else:
                continue
            witness = _split_witness(ctx, p, to_index)
            verb = "allows" if p.spec.action == "ALLOW" else "denies"
            ctx.add(
                AnalysisFinding(
                    "MA2002",
                    f"rules {i} and {i + 1} hold only 'from' and only 'to': the policy {verb} "
                    f"rule {to_index}'s operations from every caller, not only from rule "
                    f"{i + (to_index == i)}'s sources",
                    fix=f"make them one rule: remove the '-' before 'to' in rule {i + 1} "
                    "(from and to of one rule must both match)",
                    witness=witness.witness if witness else None,
                    **at(p, "spec", "rules", i + 1),
                )
            )


def _split_witness(ctx: Context, p: AuthorizationPolicy, to_index: int) -> Decided | None:
    for w in ctx.workloads_of(p):
        req = request_for_rule(ctx, p.spec.rules[to_index], w, ctx.default_port(w))
        req["from"] = {"plaintext": True}  # a caller no 'from' source names
        got = ctx.witnesses.decide(req)
        if got is None:
            continue
        d = got.decision
        if (p.spec.action == "ALLOW" and _allowed_by(d, p, to_index)) or _denied_by(d, p, to_index):
            return got
    return None


# --------------------------------------------------------------------------- MA2003


def _identity_field(rule: Rule) -> tuple[tuple[str | int, ...], str] | None:
    """The first identity-backed field of the rule: its path and name."""
    for j, f in enumerate(rule.from_):
        src = f.source
        if src is None:
            continue
        for name in _IDENTITY_FIELDS:
            if getattr(src, name):
                camel = {"service_accounts": "serviceAccounts", "trust_domains": "trustDomains"}
                field = camel.get(name, name)
                return ("from", j, "source", field), field
    for j, c in enumerate(rule.when):
        if c.key in _IDENTITY_KEYS and c.values:
            return ("when", j, "key"), c.key
    return None


def check_plaintext(ctx: Context) -> None:
    for p in ctx.authorization_policies:
        if not _acts(p):
            continue
        for i, rule in enumerate(p.spec.rules):
            found = _identity_field(rule)
            if found is None or not ctx.wants_rule(_key(p), i):
                continue
            path, field = found
            accepting = []  # the sidecars' ports that let a plaintext caller in
            for w in ctx.workloads_of(p):
                port = _sidecar_port(ctx, rule, w)
                if port is None:
                    continue
                mode = effective_mtls_mode(ctx.snapshot, w, port)
                if mode in ("PERMISSIVE", "DISABLE"):
                    accepting.append((w, port, mode))
            # an ALLOW rule's finding on a PERMISSIVE port is a remark: without
            # remarks wanted and no port with mTLS disabled, no witness can matter
            remarks_only = p.spec.action == "ALLOW" and all(
                m == "PERMISSIVE" for *_, m in accepting
            )
            if remarks_only and not ctx.info:
                continue
            for w, port, mode in accepting:
                if _plaintext_finding(ctx, p, i, rule, w, port, mode, path, field):
                    break


def _sidecar_port(ctx: Context, rule: Rule, w: MeshWorkload) -> int | None:
    """The port a plaintext witness to ``w`` goes to; None: ``w`` has no sidecar or no port."""
    if w.proxy != "sidecar":
        return None
    return _rule_port(rule) or ctx.default_port(w)


def _rule_port(rule: Rule) -> int | None:
    for t in rule.to:
        if t.operation is not None and t.operation.ports:
            try:
                return int(t.operation.ports[0])
            except ValueError:
                return None
    return None


def _plaintext_finding(
    ctx: Context,
    p: AuthorizationPolicy,
    i: int,
    rule: Rule,
    w: MeshWorkload,
    port: int,
    mode: str,
    path: tuple[str | int, ...],
    field: str,
) -> bool:
    req = request_for_rule(ctx, rule, w, port)
    req["from"] = {"plaintext": True}
    got = ctx.witnesses.decide(req)
    if got is None:
        return False
    d = got.decision
    accepts = "accepts plaintext" if mode == "PERMISSIVE" else "has mTLS disabled"
    where = f"port {port} of {w.key} ({mode}: it {accepts})"
    if p.spec.action == "DENY":
        if _denied_by(d, p, i):
            return False
        message = (
            f"{field} needs the caller's mTLS identity, and {where}: a plaintext caller is not "
            "denied by this rule"
        )
        severity: Severity | None = None
    else:
        if _allowed_by(d, p, i) or rule_matched(d, _key(p), i):
            return False
        message = (
            f"{field} needs the caller's mTLS identity, and {where}: this ALLOW rule never "
            "matches a plaintext caller"
        )
        severity = "info" if mode == "PERMISSIVE" else None
    ctx.add(
        AnalysisFinding(
            "MA2003",
            message,
            fix="require mTLS on the workload (a PeerAuthentication with mtls.mode STRICT); "
            "for a DENY, also deny callers without an identity (notPrincipals: ['*'])",
            witness=got.witness,
            severity_override=severity,
            **at(p, "spec", "rules", i, *path),
        )
    )
    return True


# --------------------------------------------------------------------------- MA2004


def check_http_fields_on_tcp(ctx: Context) -> None:
    by_key = {_key(p): p for p in ctx.authorization_policies}
    seen: set[tuple[str, int | None, int]] = set()
    scope = (
        ctx.snapshot.workloads
        if ctx.only is None
        else list(
            {id(w): w for p in ctx.authorization_policies for w in ctx.workloads_of(p)}.values()
        )
    )
    for w in scope:
        for ip in ctx.ports_of(w):
            if ip.listener != "tcp":
                continue
            prepared = ctx.witnesses.decider.prepare(w, ip.port, "tcp")
            for problem in prepared.build.problems:
                if "is HTTP only" not in problem.message or problem.policy is None:
                    continue
                p = by_key.get(problem.policy)
                if p is None or (problem.policy, problem.rule, ip.port) in seen:
                    continue
                seen.add((problem.policy, problem.rule, ip.port))
                if problem.rule is not None and not _may_match_port(p, problem.rule, ip.port):
                    continue
                fields = (
                    http_only_fields(p.spec.rules[problem.rule]) if problem.rule is not None else []
                )
                _tcp_finding(ctx, p, problem.rule, w, ip.port, ", ".join(fields) or "HTTP fields")


def http_only_fields(rule: Rule) -> list[str]:
    """The fields and conditions of ``rule`` that only an HTTP request has."""
    out: list[str] = []
    for f in rule.from_:
        if f.source is not None:
            if f.source.request_principals:
                out.append("requestPrincipals")
            if f.source.not_request_principals:
                out.append("notRequestPrincipals")
    for t in rule.to:
        op = t.operation
        if op is None:
            continue
        for name, camel in (
            ("hosts", "hosts"),
            ("not_hosts", "notHosts"),
            ("methods", "methods"),
            ("not_methods", "notMethods"),
            ("paths", "paths"),
            ("not_paths", "notPaths"),
        ):
            if getattr(op, name):
                out.append(camel)
    out += [c.key for c in rule.when if c.key.startswith(("request.headers", "request.auth."))]
    return list(dict.fromkeys(out))


def _may_match_port(p: AuthorizationPolicy, i: int, port: int) -> bool:
    """Whether rule ``i``'s ports (if it lists any in every ``to``) include ``port``."""
    tos = [t.operation for t in p.spec.rules[i].to if t.operation is not None]
    if not tos:
        return True
    return any(not op.ports or str(port) in op.ports for op in tos)


def _tcp_finding(
    ctx: Context,
    p: AuthorizationPolicy,
    rule: int | None,
    w: MeshWorkload,
    port: int,
    note: str,
) -> None:
    name = f"port {port} of {w.key}"
    if p.spec.action == "ALLOW":
        message = (
            f"on TCP {name}, istiod drops this ALLOW rule: it uses {note}, which only HTTP "
            "requests have"
        )
        witness = None
    else:
        message = (
            f"on TCP {name}, istiod leaves {note} (HTTP only) out of this {p.spec.action} "
            "rule, which then matches more connections than written"
        )
        got = None
        if rule is not None:
            req: dict[str, Any] = {
                "from": source_for(ctx, p.spec.rules[rule], w),
                "to": w.key,
                "port": port,
                "protocol": "tcp",
            }
            got = ctx.witnesses.decide(req)
        if got is None or rule is None or not _denied_by(got.decision, p, rule):
            return  # the broadened rule still does not match this port's connections
        witness = got.witness
    path: tuple[str | int, ...] = ("spec", "rules", rule) if rule is not None else ("spec",)
    ctx.add(
        AnalysisFinding(
            "MA2004",
            message,
            fix=f"confine the rule to the HTTP ports with to.operation.ports (not {port}), "
            "or move the HTTP fields to a policy that selects only HTTP workloads",
            witness=witness,
            **at(p, *path),
        )
    )


# --------------------------------------------------------------------------- MA2008


def check_remote_ip(ctx: Context) -> None:
    for p in ctx.authorization_policies:
        if not _acts(p):
            continue
        sidecars = [w for w in ctx.workloads_of(p) if w.proxy == "sidecar"]
        if not sidecars:
            continue
        for i, rule in enumerate(p.spec.rules):
            for j, f in enumerate(rule.from_):
                src = f.source
                if src is None:
                    continue
                for field, values in (
                    ("remoteIpBlocks", src.remote_ip_blocks),
                    ("notRemoteIpBlocks", src.not_remote_ip_blocks),
                ):
                    if values:
                        _remote_finding(
                            ctx, p, i, rule, sidecars[0], ("from", j, "source", field), field
                        )
            for j, c in enumerate(rule.when):
                if c.key == "remote.ip":
                    _remote_finding(ctx, p, i, rule, sidecars[0], ("when", j, "key"), c.key)


def _remote_finding(
    ctx: Context,
    p: AuthorizationPolicy,
    i: int,
    rule: Rule,
    w: MeshWorkload,
    path: tuple[str | int, ...],
    field: str,
) -> None:
    witness = None
    block = next(
        (
            f.source.remote_ip_blocks[0]
            for f in rule.from_
            if f.source and f.source.remote_ip_blocks
        ),
        None,
    )
    if block is not None:
        net = ipaddress.ip_network(block, strict=False)
        inside = str(next(net.hosts(), net.network_address))
        outside = "198.51.100.77" if inside != "198.51.100.77" else "203.0.113.77"
        req = request_for_rule(ctx, rule, w, ctx.default_port(w))
        if p.spec.action == "DENY":
            # a caller inside the block claims to be elsewhere
            req["from"] = {"plaintext": True, "ip": inside}
            req["headers"] = {**req.get("headers", {}), "x-forwarded-for": outside}
            got = ctx.witnesses.decide(req)
            ok = got is not None and not _denied_by(got.decision, p, i)
        else:
            # a caller outside the block claims to be inside
            req["headers"] = {**req.get("headers", {}), "x-forwarded-for": inside}
            got = ctx.witnesses.decide(req)
            ok = got is not None and _allowed_by(got.decision, p, i)
        witness = got.witness if ok and got is not None else None
    ctx.add(
        AnalysisFinding(
            "MA2008",
            f"{field} on the sidecar of {w.key}: the remote address comes from the "
            "X-Forwarded-For header the caller sends, so any caller can claim any address",
            fix="match the peer's own address with ipBlocks, or enforce remoteIpBlocks on an "
            "ingress gateway with meshConfig numTrustedProxies set",
            witness=witness,
            **at(p, "spec", "rules", i, *path),
        )
    )

"""Requests that slip past a DENY (or into an ALLOW) by how they spell a path
or a host: MA2005 (hosts without the port clients send, a trailing dot),
MA2006 (DENY paths and the mesh's path normalization), MA2007 (ALLOW with
notPaths). Every raw spelling is run through the project's normalizer
(``envoy.hcm.normalize_path`` with the mesh's options) and decided by ``decide``."""

from __future__ import annotations

from typing import Any

from meshauthz.analyze.context import Context
from meshauthz.analyze.finding import AnalysisFinding, at
from meshauthz.analyze.requests import concrete_path, request_for_rule
from meshauthz.analyze.witness import Decided, decided_by
from meshauthz.decide.cause import Stage
from meshauthz.decide.decision import Decision
from meshauthz.envoy.hcm import normalize_path
from meshauthz.mesh.ports import service_port_protocol
from meshauthz.resources.objects import AuthorizationPolicy
from meshauthz.translate.bootstrap import ISTIO_RUNTIME
from meshauthz.translate.hcm import path_options


def _key(p: AuthorizationPolicy) -> str:
    return f"{p.namespace}/{p.name}"


def _denied_by(d: Decision, p: AuthorizationPolicy, i: int) -> bool:
    return d.stage is Stage.DENY and decided_by(d, _key(p), i)


def raw_variants(path: str) -> list[str]:
    """Spellings of ``path`` that applications commonly serve as ``path`` itself:
    a doubled slash, an escaped slash, a ;parameter, another case, a dot segment,
    an escaped letter."""
    out = ["/" + path]
    inner = path.find("/", 1)
    if inner > 0:
        out.append(path[:inner] + "%2F" + path[inner + 1 :])
    seg_end = inner if inner > 0 else len(path)
    out.append(path[:seg_end] + ";x" + path[seg_end:])
    if path.upper() != path:
        out.append(path.upper())
    out.append("/x/.." + path)
    for k, ch in enumerate(path):
        if ch.isalpha():
            out.append(f"{path[:k]}%{ord(ch):02X}{path[k + 1 :]}")
            break
    return [v for v in dict.fromkeys(out) if v != path]


def _seen_as(ctx: Context, raw: str) -> str | None:
    """The path the filters see for ``raw`` under the mesh's normalization
    (None: the proxy refuses the request)."""
    options = path_options(ctx.snapshot.mesh_config.path_normalization)
    n = normalize_path(raw, options, ISTIO_RUNTIME)
    return n.path


# --------------------------------------------------------------------------- MA2006 / MA2007


def check_paths(ctx: Context) -> None:
    mode = ctx.snapshot.mesh_config.path_normalization
    for p in ctx.authorization_policies:
        if p.dry_run or p.spec.action not in ("ALLOW", "DENY"):
            continue
        workloads = [w for w in ctx.workloads_of(p) if ctx.default_port(w) is not None]
        if not workloads:
            continue
        w = workloads[0]
        port = ctx.default_port(w)
        for i, rule in enumerate(p.spec.rules):
            for j, t in enumerate(rule.to):
                op = t.operation
                if op is None:
                    continue
                if p.spec.action == "DENY" and op.paths:
                    base = request_for_rule(ctx, rule, w, port)
                    got = ctx.witnesses.decide(base)
                    if got is None or not _denied_by(got.decision, p, i):
                        continue  # the rule does not deny its own path: nothing to slip past
                    path = base.get("path", "/")
                    passed: list[tuple[str, str, Decided]] = []
                    for raw in raw_variants(path):
                        seen = _seen_as(ctx, raw)
                        if seen is None:
                            continue
                        got = ctx.witnesses.decide({**base, "path": raw})
                        if got is not None and not _denied_by(got.decision, p, i):
                            passed.append((raw, seen, got))
                    if not passed:
                        continue
                    shown = ", ".join(f"{raw!r} (seen as {seen!r})" for raw, seen, _ in passed)
                    ctx.add(
                        AnalysisFinding(
                            "MA2006",
                            f"under path normalization {mode}, these spellings of {path!r} are "
                            f"not denied: {shown}",
                            fix="set meshConfig.pathNormalization to MERGE_SLASHES or "
                            "DECODE_AND_MERGE_SLASHES, and write the DENY as an ALLOW of the "
                            "paths that are meant; or also deny the variants",
                            witness=passed[0][2].witness,
                            **at(p, "spec", "rules", i, "to", j, "operation", "paths"),
                        )
                    )
                if p.spec.action == "ALLOW" and op.not_paths:
                    witness = None
                    path = concrete_path(op.not_paths[0])
                    req = request_for_rule(ctx, rule, w, port)
                    for raw in raw_variants(path):
                        if _seen_as(ctx, raw) is None:
                            continue
                        got = ctx.witnesses.decide({**req, "path": raw})
                        if (
                            got is not None
                            and got.decision.allowed
                            and decided_by(got.decision, _key(p), i)
                        ):
                            witness = got.witness
                            break
                    ctx.add(
                        AnalysisFinding(
                            "MA2007",
                            "this ALLOW rule allows every path but the ones listed, "
                            "including spellings of them that the path normalization "
                            f"({mode}) does not rewrite",
                            fix="list the allowed paths with paths instead, or deny the listed "
                            "ones with a DENY policy on paths",
                            witness=witness,
                            **at(p, "spec", "rules", i, "to", j, "operation", "notPaths"),
                        )
                    )


# --------------------------------------------------------------------------- MA2005


def check_hosts(ctx: Context) -> None:
    for p in ctx.authorization_policies:
        if p.dry_run or p.spec.action not in ("ALLOW", "DENY"):
            continue
        for i, rule in enumerate(p.spec.rules):
            for j, t in enumerate(rule.to):
                op = t.operation
                if op is None:
                    continue
                for k, h in enumerate(op.hosts):
                    if ":" in h or h.endswith("*") or h.endswith("."):
                        continue
                    found = _host_bypass(ctx, p, i, h)
                    if found is None:
                        continue
                    message, witness = found
                    ctx.add(
                        AnalysisFinding(
                            "MA2005",
                            message,
                            fix=f"add {h + ':*'!r} (hosts compares the Host header as sent, "
                            "port included)",
                            witness=witness.witness,
                            **at(p, "spec", "rules", i, "to", j, "operation", "hosts", k),
                        )
                    )


def _host_bypass(
    ctx: Context, p: AuthorizationPolicy, i: int, host: str
) -> tuple[str, Decided] | None:
    rule = p.spec.rules[i]
    for w in ctx.workloads_of(p):
        # clients of a Service on a port other than 80 send Host: name:port
        for svc in ctx.snapshot.services_for(w):
            names = {svc.hostname, svc.name, f"{svc.name}.{svc.namespace}"}
            names |= {f"{svc.name}.{svc.namespace}.svc"}
            if host.lower() not in names:
                continue
            for sp in svc.ports:
                if sp.port == 80 or not service_port_protocol(sp).is_http_or_sniffed:
                    continue
                req = request_for_rule(ctx, rule, w, None)
                req.pop("port", None)
                req["to"] = f"{svc.namespace}/{svc.name}:{sp.port}"
                req["host"] = f"{host}:{sp.port}"
                got = ctx.witnesses.decide(req)
                if got is None:
                    continue
                d = got.decision
                if p.spec.action == "ALLOW" and not decided_by(d, _key(p), i):
                    return (
                        f"clients of {svc.key} port {sp.port} send 'Host: {host}:{sp.port}', "
                        f"which {host!r} does not match: this ALLOW rule never matches them",
                        got,
                    )
                if p.spec.action == "DENY" and not _denied_by(d, p, i):
                    return (
                        f"clients of {svc.key} port {sp.port} send 'Host: {host}:{sp.port}', "
                        f"which {host!r} does not match: this DENY rule does not deny them",
                        got,
                    )
        if p.spec.action != "DENY":
            continue
        port = ctx.default_port(w)
        base = request_for_rule(ctx, rule, w, port)
        base["host"] = host
        got = ctx.witnesses.decide(base)
        if got is None or not _denied_by(got.decision, p, i):
            continue
        # a trailing dot, a port, a second Host header (the codec joins the two)
        variants: list[tuple[str, dict[str, Any]]] = [
            (f"'Host: {host}.'", {"host": f"{host}."}),
            (f"'Host: {host}:{port or 80}'", {"host": f"{host}:{port or 80}"}),
            (
                f"two Host headers, {host} and another",
                {"headers": {**base.get("headers", {}), "host": [host, "other.example"]}},
            ),
        ]
        for described, change in variants:
            got = ctx.witnesses.decide({**base, **change})
            if got is not None and not _denied_by(got.decision, p, i):
                return (
                    f"a request with {described} reaches {w.key} and is not denied: "
                    f"{host!r} matches the Host only as written",
                    got,
                )
    return None

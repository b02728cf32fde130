"""Candidate witness requests built from what a rule says (its positive
values); the decision path then says whether each one shows the finding."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Any

from meshauthz.analyze.context import Context
from meshauthz.mesh import MeshWorkload
from meshauthz.resources.istio import Rule

# compiled on first use (re's cache), not at import: start-up
_CLAIM = r"^request\.auth\.claims\[([^\]]+)\]$"
_HEADER = r"^request\.headers\[([^\]]+)\]$"


def concrete_path(pattern: str) -> str:
    """A path ``pattern`` (exact, prefix ``/a/*``, suffix ``*.json``, ``*`` or a
    ``{*}``/``{**}`` template) matches."""
    if pattern == "*":
        return "/"
    p = pattern.replace("{**}", "x").replace("{*}", "x")
    if p.endswith("*"):
        p = p[:-1] + "x"
    if p.startswith("*"):
        p = "/x" + p[1:]
    return p if p.startswith("/") else "/" + p


def concrete_host(pattern: str) -> str:
    if pattern.startswith("*"):
        return "x" + pattern[1:]
    if pattern.endswith("*"):
        return pattern[:-1] + "x"
    return pattern


def _exact(values: tuple[str, ...]) -> str | None:
    return next((v for v in values if "*" not in v), None)


def source_for(ctx: Context, rule: Rule, dest: MeshWorkload) -> dict[str, Any] | str:
    """A caller the rule's first ``from`` admits, as the request format writes it:
    a workload when one has the identity, else the identity itself."""
    snap = ctx.snapshot
    other = next((w for w in ctx.sidecars if w is not dest), None)
    default: dict[str, Any] | str = (
        other.key if other else {"principal": f"{snap.trust_domain}/ns/default/sa/default"}
    )
    if not rule.from_:
        return default
    src = rule.from_[0].source
    if src is None:
        return default
    out: dict[str, Any] = {}
    principal = _exact(src.principals)
    if principal is not None:
        w = ctx.by_principal.get(principal)
        if w is not None and not src.ip_blocks:
            return w.key
        out["principal"] = principal
    elif src.namespaces:
        ns = _exact(src.namespaces)
        w = ctx.first_in_namespace.get(ns) if ns is not None else None
        if w is not None and not src.ip_blocks:
            return w.key
        out["principal"] = f"{snap.trust_domain}/ns/{ns or 'default'}/sa/default"
    elif src.principals:  # only wildcards: any mTLS caller
        if isinstance(default, str):
            return default
        out.update(default)
    elif isinstance(default, str):
        out["workload"] = default
    if src.ip_blocks:
        try:
            net = ipaddress.ip_network(src.ip_blocks[0], strict=False)
            out["ip"] = str(net.network_address)
        except ValueError:
            pass
    return out


def request_for_rule(
    ctx: Context, rule: Rule, dest: MeshWorkload, port: int | None
) -> dict[str, Any]:
    """One request the rule's first ``from``, first ``to`` and ``when`` admit."""
    req: dict[str, Any] = {"from": source_for(ctx, rule, dest), "to": dest.key}
    op = rule.to[0].operation if rule.to else None
    if op is not None:
        m = _exact(op.methods)
        if m is not None:
            req["method"] = m
        if op.paths:
            req["path"] = concrete_path(op.paths[0])
        if op.hosts:
            req["host"] = concrete_host(op.hosts[0])
        if op.ports:
            with contextlib.suppress(ValueError):
                port = int(op.ports[0])
    headers: dict[str, str] = {}
    claims: dict[str, Any] = {}
    for c in rule.when:
        if not c.values:
            continue
        v = c.values[0].replace("*", "x")
        if h := re.match(_HEADER, c.key):
            headers[h.group(1)] = v
        elif cl := re.match(_CLAIM, c.key):
            claims[cl.group(1)] = v
        elif c.key == "destination.port":
            with contextlib.suppress(ValueError):
                port = int(v)
    if headers:
        req["headers"] = headers
    if claims:
        req["jwt"] = claims
    if port is not None:
        req["port"] = port
    return req


__all__ = ["concrete_host", "concrete_path", "request_for_rule", "source_for"]

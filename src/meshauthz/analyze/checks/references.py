"""Names a policy refers to that the mesh does not have (the checks Kiali makes
on AuthorizationPolicies): MA1004 service accounts (KIA0106), MA1005 trust
domains (KIA0108), MA1006 principals written with spiffe://, MA1007 methods
(KIA0102), MA1008 hosts (KIA0104)."""

from __future__ import annotations

from collections.abc import Iterator

from meshauthz.analyze.context import Context
from meshauthz.analyze.finding import AnalysisFinding, at
from meshauthz.mesh.snapshot import sanitize_trust_domain
from meshauthz.resources.meshconfig import DEFAULT_TRUST_DOMAIN
from meshauthz.resources.objects import AuthorizationPolicy

# RFC 9110 and RFC 5789: the methods an HTTP request can carry (methods are
# compared with :method as sent, case-sensitively).
HTTP_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)

Path = tuple[str | int, ...]


def _principals(p: AuthorizationPolicy) -> Iterator[tuple[str, Path]]:
    """Every principal value of the policy, with its field path."""
    for i, rule in enumerate(p.spec.rules):
        for j, f in enumerate(rule.from_):
            if f.source is None:
                continue
            for name, values in (
                ("principals", f.source.principals),
                ("notPrincipals", f.source.not_principals),
            ):
                for k, v in enumerate(values):
                    yield v, ("spec", "rules", i, "from", j, "source", name, k)
        for j, c in enumerate(rule.when):
            if c.key == "source.principal":
                for name, values in (("values", c.values), ("notValues", c.not_values)):
                    for k, v in enumerate(values):
                        yield v, ("spec", "rules", i, "when", j, name, k)


def _known_accounts(ctx: Context) -> set[tuple[str, str]]:
    declared = ctx.manifests.service_accounts if ctx.manifests is not None else []
    known = {(sa.namespace, sa.name) for sa in declared}
    known |= {(w.namespace, w.service_account) for w in ctx.snapshot.workloads}
    # every namespace has a "default" service account
    known |= {(ns, "default") for ns in ctx.snapshot.namespaces}
    return known


def check_references(ctx: Context) -> None:
    snap = ctx.snapshot
    mesh = snap.mesh_config
    domains = {
        sanitize_trust_domain(td)
        for td in (mesh.trust_domain, *mesh.trust_domain_aliases, DEFAULT_TRUST_DOMAIN)
    }
    # without the objects as read, the declared ServiceAccounts are unknown
    accounts = _known_accounts(ctx) if ctx.manifests is not None else None
    for p in ctx.authorization_policies:
        for value, path in _principals(p):
            if value.startswith("spiffe://"):
                ctx.add(
                    AnalysisFinding(
                        "MA1006",
                        f"{value!r} starts with spiffe://, which Istio adds itself: the value "
                        "matches no caller",
                        fix=f"write {value.removeprefix('spiffe://')!r}",
                        **at(p, *path),
                    )
                )
                continue
            parts = value.split("/")
            if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa" or "*" in value:
                continue
            td, ns, sa = parts[0], parts[2], parts[4]
            if td not in domains:
                shown = ", ".join(sorted(domains))
                ctx.add(
                    AnalysisFinding(
                        "MA1005",
                        f"trust domain {td!r} of {value!r} is not the mesh's ({shown}): the "
                        "value matches only callers from another mesh",
                        fix="use the mesh's trust domain (or cluster.local), or add "
                        f"{td!r} to meshConfig.trustDomainAliases",
                        **at(p, *path),
                    )
                )
                continue
            if accounts is not None and (ns, sa) not in accounts:
                ctx.add(
                    AnalysisFinding(
                        "MA1004",
                        f"no service account {sa!r} in namespace {ns!r} (no ServiceAccount, "
                        "no workload runs as it): no caller has the identity "
                        f"{value!r}",
                        fix="correct the namespace or service account in the principal",
                        **at(p, *path),
                    )
                )
        for i, rule in enumerate(p.spec.rules):
            for j, f in enumerate(rule.from_):
                if f.source is None:
                    continue
                for name, values in (
                    ("serviceAccounts", f.source.service_accounts),
                    ("notServiceAccounts", f.source.not_service_accounts),
                ):
                    for k, v in enumerate(values):
                        ns, _, sa = v.rpartition("/")
                        ns = ns or p.namespace
                        if accounts is None or "*" in v or (ns, sa) in accounts:
                            continue
                        ctx.add(
                            AnalysisFinding(
                                "MA1004",
                                f"no service account {sa!r} in namespace {ns!r} (no "
                                "ServiceAccount, no workload runs as it)",
                                fix="correct the service account (a name without a namespace "
                                "is in the policy's namespace)",
                                **at(p, "spec", "rules", i, "from", j, "source", name, k),
                            )
                        )
            for j, t in enumerate(rule.to):
                op = t.operation
                if op is None:
                    continue
                for name, values in (("methods", op.methods), ("notMethods", op.not_methods)):
                    for k, m in enumerate(values):
                        if m == "*" or m in HTTP_METHODS:
                            continue
                        hint = (
                            f"methods are case-sensitive: write {m.upper()!r}"
                            if m.upper() in HTTP_METHODS
                            else "use an HTTP method (gRPC calls are POST; match them with "
                            "paths: /package.Service/Method)"
                        )
                        ctx.add(
                            AnalysisFinding(
                                "MA1007",
                                f"{m!r} is not an HTTP method: it matches no request",
                                fix=hint,
                                **at(p, "spec", "rules", i, "to", j, "operation", name, k),
                            )
                        )
                _check_hosts(ctx, p, i, j)


def _check_hosts(ctx: Context, p: AuthorizationPolicy, i: int, j: int) -> None:
    op = p.spec.rules[i].to[j].operation
    assert op is not None
    if not op.hosts and not op.not_hosts:
        return
    workloads = ctx.workloads_of(p)
    # A gateway's hosts are names from outside the mesh, not Services.
    if not workloads or any(w.proxy != "sidecar" for w in workloads):
        return
    names = ctx.service_names
    for name, values in (("hosts", op.hosts), ("notHosts", op.not_hosts)):
        for k, h in enumerate(values):
            if "*" in h:
                continue
            host = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
            if host.lower().rstrip(".") in names:
                continue
            ctx.add(
                AnalysisFinding(
                    "MA1008",
                    f"no Service is reached by the host {h!r}: requests to the selected "
                    "workloads do not carry it",
                    fix="use a Service's hostname (name, name.namespace or the FQDN), with "
                    "':*' or the port",
                    **at(p, "spec", "rules", i, "to", j, "operation", name, k),
                )
            )


def check_custom_providers(ctx: Context) -> None:
    """MA1009: a CUSTOM provider the mesh config does not define (istiod then
    denies what the policy's rules match)."""
    defined = {e.name for e in ctx.snapshot.mesh_config.extension_providers}
    for p in ctx.authorization_policies:
        if p.spec.action != "CUSTOM" or p.spec.provider is None:
            continue
        name = p.spec.provider.name
        if name in defined:
            continue
        shown = ", ".join(sorted(defined)) or "none"
        ctx.add(
            AnalysisFinding(
                "MA1009",
                f"the mesh config defines no extension provider {name!r} (defined: {shown}): "
                "istiod denies every request this policy's rules match",
                fix="define the provider in meshConfig.extensionProviders (pass the mesh config "
                "with --mesh-config or the istio ConfigMap), or correct the name",
                **at(p, "spec", "provider", "name"),
            )
        )

"""Findings about a whole mesh that need istiod's translation to see: a CUSTOM
policy whose provider is missing from the mesh config, or one that istiod's
builder rejects (its workloads then get a deny filter instead of ext_authz)."""

from __future__ import annotations

from meshauthz.mesh.snapshot import MeshSnapshot
from meshauthz.resources.findings import Finding
from meshauthz.translate.extauthz import GRPC_PROVIDER, HTTP_PROVIDER, resolve_providers
from meshauthz.translate.workload import mesh_build_options

EXT_AUTHZ_KINDS = (HTTP_PROVIDER, GRPC_PROVIDER)


def mesh_findings(snapshot: MeshSnapshot) -> list[Finding]:
    """One warning per CUSTOM policy whose provider istiod cannot use, naming
    the providers the mesh config has."""
    custom = [p for p in snapshot.authorization_policies if p.spec.action == "CUSTOM"]
    if not custom:
        return []
    options = mesh_build_options(snapshot)
    resolved = resolve_providers(options.extension_providers, options.known_services)
    defined = snapshot.mesh_config.extension_providers
    ext_authz = [f"{p.name} ({p.kind})" for p in defined if p.kind in EXT_AUTHZ_KINDS]
    others = [p.name for p in defined if p.kind not in EXT_AUTHZ_KINDS]
    listed = "ext_authz providers: " + (", ".join(ext_authz) or "none")
    if others:
        listed += f"; others: {', '.join(others)}"
    out: list[Finding] = []
    for policy in custom:
        name = policy.spec.provider.name if policy.spec.provider is not None else ""
        if not name:
            continue  # validation's custom-provider-name error
        rp = resolved.get(name)
        if rp is None:
            kind = next((p.kind for p in defined if p.name == name), None)
            what = (
                f'provider "{name}" is a {kind} provider, not ext_authz'
                if kind
                else f'provider "{name}" is not in the mesh config'
            )
            code = "custom-provider-rejected" if kind else "custom-provider-unknown"
        elif rp.errors:
            what = f'istiod rejects provider "{name}": ' + "; ".join(rp.errors)
            code = "custom-provider-rejected"
        else:
            continue
        out.append(
            Finding(
                "warning",
                code,
                f"{what}; istiod gives the workloads it selects a filter that denies every "
                f"request its rules match ({listed})",
                policy.location("spec", "provider", "name"),
                policy.kind,
                policy.namespace,
                policy.name,
                "spec.provider.name",
            )
        )
    return out


__all__ = ["mesh_findings"]

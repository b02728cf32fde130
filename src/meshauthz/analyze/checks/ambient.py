"""The ambient checks of istioctl analyze and Kiali (``meshauthz.ambient.lint``,
which ``validate`` reports too) as analyzer findings: the checks are written
once, there; this module only gives each its MA code, field and fix."""

from __future__ import annotations

from meshauthz.ambient.lint import ambient_findings, needs_ambient_checks
from meshauthz.analyze.context import Context
from meshauthz.analyze.finding import AnalysisFinding, at
from meshauthz.resources.objects import AuthorizationPolicy

# lint's code -> (ours, the field it is about, the fix)
_CONVERSION: dict[str, tuple[str, tuple[str, ...], str]] = {
    "IST0166": (
        "MA1003",
        ("spec", "selector"),
        "replace the selector with targetRefs: [{kind: Gateway, group: "
        "gateway.networking.k8s.io, name: <the gateway>}]",
    ),
    "IST0171": (
        "MA1010",
        ("spec",),
        "meshauthz check on a request to the workload shows what ztunnel or the waypoint "
        "does instead; remove what istiod cannot apply there",
    ),
    "KIA0109": (
        "MA1011",
        ("spec",),
        "label the Service or namespace istio.io/use-waypoint=<the waypoint>, or drop the HTTP fields",
    ),
    "KIA0110": (
        "MA1012",
        ("spec", "selector"),
        "replace the selector with targetRefs: [{kind: Service, group: '', name: <the Service>}]",
    ),
    "ambient-waypoint-identity": (
        "MA2012",
        ("spec", "rules"),
        "admit the waypoint's identity in this ALLOW (source.principals), or attach the "
        "policy to the waypoint with targetRefs",
    ),
    "ambient-deny-no-op": (
        "MA2013",
        ("spec", "rules"),
        "give it targetRefs to the Service (enrolled in a waypoint) so the waypoint enforces "
        "its HTTP fields",
    ),
}


def check_ambient(ctx: Context) -> None:
    if ctx.manifests is None or not needs_ambient_checks(ctx.manifests):
        return
    for f in ambient_findings(ctx.snapshot):
        p = f.policy
        if ctx.only is not None and (
            not isinstance(p, AuthorizationPolicy) or p.key not in ctx.only
        ):
            continue
        code, path, fix = _CONVERSION[f.code]
        if path[-1] == "selector" and p.spec.selector is None:
            path = ("spec",)
        ctx.add(AnalysisFinding(code, f.message, fix=fix, **at(p, *path)))


__all__ = ["check_ambient"]

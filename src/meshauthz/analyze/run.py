"""Running the analysis: every check over one loaded mesh, then the
suppressions (annotation and command line, as istioctl analyze has them)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence

from msgspec import Struct

from meshauthz.analyze.checks import (
    ambient,
    deny_all,
    istio,
    jwt,
    paths_hosts,
    references,
    traffic,
)
from meshauthz.analyze.codes import CODES
from meshauthz.analyze.context import Context
from meshauthz.analyze.finding import SEVERITY_RANK, AnalysisFinding
from meshauthz.errors import InputError
from meshauthz.mesh.loading import LoadedMesh
from meshauthz.resources.findings import Severity

# istioctl's annotation (annotation.GalleyAnalyzeSuppress): a comma-separated
# list of codes, or "*", suppressed on the annotated resource.
SUPPRESS_ANNOTATION = "galley.istio.io/analyze-suppress"

Check = Callable[[Context], None]

CHECKS: tuple[Check, ...] = (
    istio.check_no_matching_workloads,
    istio.check_unknown_namespaces,
    ambient.check_ambient,
    references.check_references,
    references.check_custom_providers,
    deny_all.check_deny_all,
    deny_all.check_root_allow,
    traffic.check_split_rules,
    traffic.check_plaintext,
    traffic.check_http_fields_on_tcp,
    paths_hosts.check_hosts,
    paths_hosts.check_paths,
    traffic.check_remote_ip,
    jwt.check_jwt_without_requestauthentication,
    jwt.check_optional_tokens,
)


def deep_checks() -> tuple[Check, ...]:
    """What --deep adds: the checks about every request, from the symbolic
    engine (imported here: z3 and the symbolic package only when asked for)."""
    from meshauthz.analyze.checks import every_request

    return (every_request.check_every_request,)


class Suppression(Struct, frozen=True):
    """``--suppress CODE[=RESOURCE]``: RESOURCE is a glob over the resource as
    istioctl names it (``Kind name.namespace``) or as meshauthz does
    (``Kind namespace/name``, ``namespace/name``); no RESOURCE: everywhere."""

    code: str
    resource: str | None = None

    @staticmethod
    def parse(text: str) -> Suppression:
        code, sep, resource = text.partition("=")
        code = code.strip()
        if not code or (sep and not resource.strip()):
            raise InputError(
                f"--suppress expects CODE or CODE=RESOURCE, got {text!r}", field="--suppress"
            )
        if code not in CODES and not _is_equivalent(code):
            raise InputError(
                f"--suppress: unknown code {code!r} (docs/analyze.md lists the codes)",
                field="--suppress",
            )
        return Suppression(code, resource.strip() if sep else None)

    def matches(self, f: AnalysisFinding) -> bool:
        if not _code_matches(self.code, f):
            return False
        if self.resource is None:
            return True
        names = (
            f"{f.kind} {f.name}.{f.namespace}",
            f"{f.kind} {f.namespace}/{f.name}",
            f"{f.namespace}/{f.name}",
        )
        return any(fnmatch.fnmatchcase(n, self.resource) for n in names)


def _is_equivalent(code: str) -> bool:
    return any(code in c.equivalents for c in CODES.values())


def _code_matches(code: str, f: AnalysisFinding) -> bool:
    """A code names a finding as ours (MA####) or as istioctl's or Kiali's."""
    return code == "*" or code == f.code or code in f.equivalents


def annotation_suppresses(f: AnalysisFinding) -> bool:
    value = f.annotations.get(SUPPRESS_ANNOTATION, "")
    return bool(value) and any(_code_matches(c.strip(), f) for c in value.split(","))


def validation_warnings(ctx: Context) -> None:
    """MA0001: what Istio's validation warns about (errors make the input unusable)."""
    if ctx.manifests is None:
        return
    resources = {(r.kind, r.namespace, r.name): r for r in ctx.manifests.all()}
    for f in ctx.warnings:
        if f.severity != "warning":
            continue
        r = resources.get((f.kind, f.namespace, f.name))
        ctx.add(
            AnalysisFinding(
                "MA0001",
                f"{f.message} ({f.code})",
                f.location,
                f.kind,
                f.namespace,
                f.name,
                f.field,
                fix="meshauthz validate shows the same warning",
                annotations=dict(r.annotations) if r is not None else {},
            )
        )


class Analysis(Struct, frozen=True):
    findings: tuple[AnalysisFinding, ...]  # shown, sorted by place
    suppressed: int

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def fails(self, threshold: Severity) -> bool:
        """Whether a finding reaches ``threshold`` (istioctl's --failure-threshold)."""
        return any(SEVERITY_RANK[f.severity] >= SEVERITY_RANK[threshold] for f in self.findings)


def analyze(
    loaded: LoadedMesh,
    *,
    suppress: Sequence[Suppression] = (),
    checks: Iterable[Check] = CHECKS,
    deep: bool = False,
) -> Analysis:
    """``deep``: also the checks about every request (``deep_checks``)."""
    ctx = Context.of(loaded)
    validation_warnings(ctx)
    for check in (*checks, *deep_checks()) if deep else checks:
        check(ctx)
    kept: list[AnalysisFinding] = []
    seen: set[tuple[str, str, str, str, int | None]] = set()
    dropped = 0
    for f in ctx.findings:
        key = (f.code, f.resource_key, f.field, f.message, f.location.line)
        if key in seen:
            continue
        seen.add(key)
        if annotation_suppresses(f) or any(s.matches(f) for s in suppress):
            dropped += 1
            continue
        kept.append(f)
    kept.sort(key=AnalysisFinding.sort_key)
    return Analysis(tuple(kept), dropped)


__all__ = ["CHECKS", "SUPPRESS_ANNOTATION", "Analysis", "Suppression", "analyze"]

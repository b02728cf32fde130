"""``meshauthz validate``: Istio's validation of manifests, with locations."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from meshauthz.ambient.lint import ambient_findings, needs_ambient_checks
from meshauthz.analyze.sarif import validation_sarif
from meshauthz.cli.common import MESH_CONFIG_OPTION, PathArg, input_options, loading
from meshauthz.cli.output import emit_json, emit_sarif, error_json, format_option
from meshauthz.errors import EXIT_FAILED, EXIT_INPUT, EXIT_OK
from meshauthz.mesh.loading import UnreadableInput, read_manifests
from meshauthz.mesh.snapshot import build_snapshot
from meshauthz.translate.provider_findings import mesh_findings


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=PathArg())
@MESH_CONFIG_OPTION
@input_options
@format_option(
    "Text for a person, JSON with a documented, stable shape, or SARIF 2.1.0 for code scanning.",
    ("text", "json", "sarif"),
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Also list the documents and objects that were skipped."
)
def validate_command(
    paths: tuple[str, ...],
    mesh_config: str | None,
    namespace: str | None,
    exclude: Sequence[str],
    fmt: str,
    verbose: bool,
) -> None:
    """Check manifests as Istio would when they are applied.

    PATHS are files, directories (searched recursively for .yaml, .yml and
    .json; *.test.yaml suites and hidden directories are skipped) or '-' for
    standard input. Documents that are not Kubernetes objects and objects of
    kinds meshauthz does not read are skipped (-v lists them), unrendered Helm
    templates too (with a note). Exit 0 when valid (warnings allowed), 1 when
    any object has errors, 2 when the input cannot be used (nothing found, a
    path that does not exist, a file that cannot be read or parsed: the other
    files are still checked).
    """
    with loading():
        checked = read_manifests(
            paths, mesh_config=mesh_config, namespace=namespace, exclude=exclude
        )
    manifests = checked.manifests
    findings = list(checked.findings)
    custom = any(p.spec.action == "CUSTOM" for p in manifests.authorization_policies)
    ambient = needs_ambient_checks(manifests)
    if (custom or ambient) and not checked.errors and not checked.unreadable:
        # what needs the mesh built: CUSTOM providers istiod cannot use, ambient mode's checks
        snapshot = build_snapshot(manifests)
        if custom:
            findings.extend(mesh_findings(snapshot))
        if ambient:
            findings += [f.to_finding() for f in ambient_findings(snapshot)]
    findings.sort(key=lambda f: (f.location.file, f.location.line or 0, f.location.column or 0))
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = sum(1 for f in findings if f.severity == "warning")
    unreadable = list(checked.unreadable)
    objects = len(manifests.all())
    if fmt == "sarif":
        emit_sarif(validation_sarif(findings))
    elif fmt == "json":
        emit_json(
            # with unreadable files, "error" is the first (as any unusable input's)
            ({"error": error_json(UnreadableInput(unreadable))["error"]} if unreadable else {})
            | {
                "valid": errors == 0 and not unreadable,
                "summary": {
                    "errors": errors,
                    "warnings": warnings,
                    "files": len(manifests.files),
                    "objects": objects,
                    "skipped": len(manifests.skipped),
                    "unreadable": len(unreadable),
                },
                "findings": [f.to_json() for f in findings],
                "skipped": [
                    {
                        "kind": s.kind,
                        "apiVersion": s.api_version,
                        "namespace": s.namespace,
                        "name": s.name,
                        "file": s.location.file,
                        "line": s.location.line,
                        "reason": s.reason,
                    }
                    for s in manifests.skipped
                ],
            }
        )
    else:
        for f in findings:
            click.echo(f.to_text())
        if verbose:
            for s in manifests.skipped:
                click.echo(f"{s.location}: {s.describe()}")
        verdict = "valid" if errors == 0 else "invalid"
        if unreadable:
            verdict = f"unusable ({len(unreadable)} file{'s' * (len(unreadable) != 1)} not read)"
        click.echo(
            f"{verdict}: {errors} error{'s' * (errors != 1)}, "
            f"{warnings} warning{'s' * (warnings != 1)} in {objects} object"
            f"{'s' * (objects != 1)} from {len(manifests.files)} file"
            f"{'s' * (len(manifests.files) != 1)}"
            + (
                f" ({len(manifests.skipped)} skipped; -v lists them)"
                if manifests.skipped and not verbose
                else ""
            )
        )
    for e in unreadable:  # on standard error, as every unusable input
        click.echo(f"error: {e}", err=True)
    if unreadable:
        sys.exit(EXIT_INPUT)
    sys.exit(EXIT_OK if errors == 0 else EXIT_FAILED)

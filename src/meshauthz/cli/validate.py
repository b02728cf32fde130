"""``meshauthz validate``: Istio's validation of manifests, with locations."""

from __future__ import annotations

import sys

import click

from meshauthz.ambient.lint import ambient_findings
from meshauthz.cli.common import MESH_CONFIG_OPTION, PathArg, loading
from meshauthz.cli.output import FORMAT_OPTION, emit_json
from meshauthz.errors import EXIT_FAILED, EXIT_OK
from meshauthz.mesh.loading import read_manifests
from meshauthz.mesh.snapshot import build_snapshot


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=PathArg())
@MESH_CONFIG_OPTION
@FORMAT_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Also list the objects that were skipped.")
def validate_command(
    paths: tuple[str, ...], mesh_config: str | None, fmt: str, verbose: bool
) -> None:
    """Check manifests as Istio would when they are applied.

    PATHS are files, directories (searched recursively for .yaml, .yml and
    .json; *.test.yaml suites are skipped) or '-' for standard input.
    Exit 0 when valid (warnings allowed), 1 when any object has errors,
    2 when the input cannot be used (none found, unreadable, not YAML).
    """
    with loading():
        checked = read_manifests(paths, mesh_config=mesh_config)
    manifests = checked.manifests
    findings = list(checked.findings)
    if not checked.errors:  # ambient mode's checks need the mesh, which errors forbid
        snapshot = build_snapshot(manifests)
        findings += [f.to_finding() for f in ambient_findings(snapshot)]
    findings.sort(key=lambda f: (f.location.file, f.location.line or 0, f.location.column or 0))
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = sum(1 for f in findings if f.severity == "warning")
    objects = len(manifests.all())
    if fmt == "json":
        emit_json(
            {
                "valid": errors == 0,
                "summary": {
                    "errors": errors,
                    "warnings": warnings,
                    "files": len(manifests.files),
                    "objects": objects,
                    "skipped": len(manifests.skipped),
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
                click.echo(
                    f"{s.location}: skipped {s.kind} {s.namespace}/{s.name} ({s.api_version})"
                )
        verdict = "valid" if errors == 0 else "invalid"
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
    sys.exit(EXIT_OK if errors == 0 else EXIT_FAILED)

"""Loading a mesh for the commands that decide or build, with one error policy."""

from __future__ import annotations

import sys

import click

from meshauthz.cli.output import report_input_error
from meshauthz.errors import EXIT_INPUT, MeshauthzError
from meshauthz.mesh import MeshSnapshot, build_snapshot
from meshauthz.resources.loader import load
from meshauthz.resources.validation import validate


def load_mesh(paths: tuple[str, ...], mesh_config: str | None, fmt: str) -> MeshSnapshot:
    """Load and validate; objects Istio would reject make the input unusable
    (exit 2): a cluster would never hold them, so no answer about them is true."""
    try:
        result = load(paths, mesh_config_file=mesh_config)
        findings = [*result.findings, *validate(result.manifests)]
        errors = [f for f in findings if f.severity == "error"]
        if errors:
            for f in errors:
                click.echo(f.to_text(), err=True)
            click.echo(
                f"error: {len(errors)} object error(s): Istio would reject these objects; "
                "fix them first (meshauthz validate shows every finding)",
                err=True,
            )
            sys.exit(EXIT_INPUT)
        return build_snapshot(result.manifests)
    except MeshauthzError as e:
        report_input_error(e, fmt)
        sys.exit(EXIT_INPUT)


MANIFEST_OPTION = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Manifests: a file, a directory or '-' (repeatable).",
)
MESH_CONFIG_OPTION = click.option(
    "--mesh-config",
    metavar="FILE",
    help="A MeshConfig YAML file (otherwise the 'istio' ConfigMap among the inputs, or Istio's defaults).",
)

"""Loading a mesh for the commands that decide or build, with one error policy."""

from __future__ import annotations

import sys

import click

from meshauthz.cli.output import report_input_error
from meshauthz.errors import EXIT_INPUT, MeshauthzError
from meshauthz.mesh import MeshSnapshot
from meshauthz.mesh.loading import InvalidInput
from meshauthz.mesh.loading import load_mesh as load_checked


def load_mesh(paths: tuple[str, ...], mesh_config: str | None, fmt: str) -> MeshSnapshot:
    """The one loader, with the commands' reporting: objects Istio would reject
    are listed on stderr with a summary line, other unusable input is reported
    as every input error is; both exit 2."""
    try:
        return load_checked(paths, mesh_config=mesh_config).snapshot
    except InvalidInput as e:
        for f in e.errors:
            click.echo(f.to_text(), err=True)
        click.echo(f"error: {e.message}", err=True)
        sys.exit(EXIT_INPUT)
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

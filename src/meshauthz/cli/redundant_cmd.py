"""``meshauthz redundant``: rules and policies whose removal changes no decision."""

from __future__ import annotations

import sys
from typing import Any

import click

from meshauthz.cli.common import MESH_CONFIG_OPTION, PathArg, load_mesh
from meshauthz.cli.output import FORMAT_OPTION, emit_json
from meshauthz.errors import EXIT_FAILED, EXIT_OK


@click.command("redundant")
@click.argument("paths", nargs=-1, required=True, type=PathArg(), metavar="PATH...")
@click.option(
    "--ext-authz",
    type=click.Choice(["deny", "allow"]),
    default="deny",
    show_default=True,
    help="What to assume a CUSTOM (ext_authz) provider answers when a request is sent to it.",
)
@MESH_CONFIG_OPTION
@FORMAT_OPTION
def redundant_command(
    paths: tuple[str, ...], ext_authz: Any, mesh_config: str | None, fmt: str
) -> None:
    """AuthorizationPolicies, and rules of policies with several, whose removal
    changes no decision on any workload, port and protocol they apply to, each
    verified by comparing the mesh without it over every request, with the
    reason: empty match, unreachable on this port's protocol, shadowed by a
    DENY, or covered by other rules. Dry-run and AUDIT policies are not
    reported.

    Exit 0 when none is found, 1 when some are, 2 on unusable input.
    """
    from meshauthz.symbolic.redundant import redundant  # the engine loads only when needed

    report = redundant(load_mesh(paths, mesh_config), ext_authz=ext_authz)
    if fmt == "json":
        emit_json(report.to_json())
    else:
        if not report.findings:
            click.echo("no redundant policy or rule")
        for f in report.findings:
            what = f.policy if f.rule is None else f"{f.policy} rule {f.rule}"
            where = ", ".join(f"{d.workload}:{d.port} ({d.protocol})" for d in f.destinations)
            click.echo(f"{f.file}:{f.line}: {what}: {f.reason} (on {where})")
        for u in report.unknown:
            d = u.destination
            click.echo(f"unknown on {d.workload}:{d.port} ({d.protocol}): {u.reason}")
    sys.exit(EXIT_FAILED if report.findings else EXIT_OK)


__all__ = ["redundant_command"]

"""``meshauthz build``: the Envoy filters istiod would build for a workload."""

from __future__ import annotations

import sys
from typing import Any

import click
import yaml
from msgspec.structs import replace

from meshauthz.ambient.flags import AmbientFlags
from meshauthz.ambient.ztunnel_config import ztunnel_workload
from meshauthz.cli.ambient_options import ISTIOD_FLAG_OPTION, ambient_flags
from meshauthz.cli.common import (
    EXCLUDE_OPTION,
    MANIFEST_OPTION,
    MESH_CONFIG_OPTION,
    NAMESPACE_HELP,
    load_mesh,
)
from meshauthz.cli.output import emit_json
from meshauthz.errors import EXIT_OK
from meshauthz.mesh import (
    LookupFailed,
    MeshSnapshot,
    PolicyMatcher,
    inbound_port,
    list_policies,
    select_policies,
)
from meshauthz.translate import Chain, build
from meshauthz.translate.workload import authorization_policies, mesh_build_options


@click.command("build")
@MANIFEST_OPTION
@EXCLUDE_OPTION
@click.option(
    "--workload",
    metavar="[NS/]NAME",
    help="The workload whose filters to build (NAME alone: in -n's namespace).",
)
@click.option(
    "-n",
    "--namespace",
    metavar="NS",
    help=NAMESPACE_HELP + " With --labels: the namespace of the proxy.",
)
@click.option(
    "--labels", metavar="K=V,...", help="Instead of --workload: a proxy with these labels."
)
@click.option(
    "--port",
    type=int,
    help="The inbound port; with --workload its Service port decides HTTP or TCP.",
)
@click.option(
    "--protocol",
    type=click.Choice(["http", "tcp"]),
    help="The filter chain (default: from the port, else http).",
)
@click.option("--trust-domain", metavar="TD", help="Overrides the mesh config's trust domain.")
@click.option(
    "--trust-domain-alias",
    "aliases",
    multiple=True,
    metavar="A",
    help="Trust domain aliases (repeatable).",
)
@MESH_CONFIG_OPTION
@click.option(
    "--ztunnel",
    is_flag=True,
    help="With --workload: what the workload's ztunnel holds (ambient mode), as ztunnel's "
    "config dump (its workload entry and the policies that apply to it).",
)
@ISTIOD_FLAG_OPTION
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="The filters as Envoy's own YAML or JSON.",
)
def build_command(
    paths: tuple[str, ...],
    exclude: tuple[str, ...],
    workload: str | None,
    namespace: str | None,
    labels: str | None,
    port: int | None,
    protocol: str | None,
    trust_domain: str | None,
    aliases: tuple[str, ...],
    mesh_config: str | None,
    ztunnel: bool,
    istiod_flags: tuple[str, ...],
    fmt: str,
) -> None:
    """Print the Envoy filters istiod would build, in order (CUSTOM, AUDIT, DENY, ALLOW),
    or with --ztunnel the L4 policies ztunnel holds for the workload."""
    flags = ambient_flags(istiod_flags)
    if ztunnel:
        if workload is None or labels is not None:
            raise click.UsageError("--ztunnel goes with --workload NS/NAME")
        if port is not None or protocol is not None or trust_domain is not None or aliases:
            raise click.UsageError("--ztunnel takes no --port, --protocol or trust-domain options")
    if (workload is None) == (labels is None):
        raise click.UsageError("give --workload NS/NAME, or --namespace NS with --labels K=V,...")
    if labels is not None and namespace is None:
        raise click.UsageError("--labels goes with --namespace")
    snapshot = load_mesh(paths, mesh_config, namespace=namespace, exclude=exclude)
    if workload is not None:
        if "/" not in workload:  # kubectl's NAME with -n NS
            workload = f"{namespace or 'default'}/{workload}"
        if ztunnel:
            _print_ztunnel(snapshot, workload, flags, fmt)
            return
        try:
            w = snapshot.workload(workload)
        except LookupFailed as e:
            e.field = "--workload"  # the name comes from this option: say so
            raise
        selected = select_policies(snapshot, w, "AuthorizationPolicy")
        if protocol is None and port is not None:
            protocol = "tcp" if inbound_port(snapshot, w, port).listener == "tcp" else "http"
    else:
        label_map: dict[str, str] = {}
        for item in filter(None, (labels or "").split(",")):
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise click.UsageError(f"--labels expects K=V pairs, got {item!r}")
            label_map[k.strip()] = v.strip()
        matcher = PolicyMatcher(namespace or "", label_map, root_namespace=snapshot.root_namespace)
        selected = list_policies(snapshot, matcher, "AuthorizationPolicy")
    options = mesh_build_options(snapshot)
    if trust_domain is not None or aliases:
        td = trust_domain or snapshot.mesh_config.trust_domain
        options = replace(
            options, trust_domains=(td, *(aliases or snapshot.mesh_config.trust_domain_aliases))
        )
    chain = Chain.TCP if protocol == "tcp" else Chain.HTTP
    result = build(authorization_policies(selected), chain, options)
    for p in result.problems:
        where = f"{p.location}: " if p.location else ""
        click.echo(f"{where}{p.severity}: {p.message}", err=True)
    filters: list[dict[str, Any]] = result.to_dicts("camel")
    if fmt == "json":
        emit_json(filters)
    else:
        click.echo(
            yaml.safe_dump_all(filters, sort_keys=False).rstrip()
            if filters
            else "# no filters: no AuthorizationPolicy applies"
        )
    sys.exit(EXIT_OK)


def _print_ztunnel(snapshot: MeshSnapshot, workload: str, flags: AmbientFlags, fmt: str) -> None:
    try:
        w = snapshot.workload(workload)
    except LookupFailed as e:
        e.field = "--workload"
        raise
    held = ztunnel_workload(snapshot, w, flags)
    # Policies that select the workload but reach ztunnel changed or not at all.
    for sp in select_policies(snapshot, w, "AuthorizationPolicy"):
        conv = held.istiod.conversion(sp.policy)  # type: ignore[arg-type]
        cond = conv.condition if conv is not None else None
        if cond is not None and cond.reason != "Accepted":
            state = "accepted with a warning" if cond.status else "not sent to ztunnel"
            click.echo(
                f"{sp.policy.file}:{sp.policy.line}: AuthorizationPolicy {sp.policy.key} "
                f"{state} ({cond.reason}): {cond.message}",
                err=True,
            )
    if held.enrollment.mode != "ambient":
        click.echo(
            f"note: {w.key} is not captured by ztunnel ({held.enrollment.reason}); "
            "this is what ztunnel would hold if it were",
            err=True,
        )
    dump = held.dump()
    if fmt == "json":
        emit_json(dump)
    else:
        click.echo(yaml.safe_dump(dump, sort_keys=False).rstrip())
    sys.exit(EXIT_OK)

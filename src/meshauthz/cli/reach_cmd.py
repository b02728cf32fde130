"""``meshauthz reach``: who can reach whom, as a matrix, JSON, CSV, Graphviz or a page
(``reach_page``)."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from meshauthz.cli.common import MANIFEST_OPTION, MESH_CONFIG_OPTION, load_mesh
from meshauthz.cli.diff_cmd import _end as end_text
from meshauthz.cli.output import emit_json
from meshauthz.cli.reach_page import dot_lines, page
from meshauthz.errors import EXIT_OK, InputError
from meshauthz.mesh import MeshSnapshot

if TYPE_CHECKING:  # the engine (and z3) load only when reach runs
    from meshauthz.symbolic.reach import Caller, Reachability, Row
    from meshauthz.symbolic.witness import Destination

_CELL = {"all": "all", "none": "-", "some": "some", "unknown": "?"}


def _selected(snapshot: MeshSnapshot, selectors: tuple[str, ...], option: str) -> set[str]:
    from meshauthz.symbolic.reach import PLAINTEXT, select_workloads

    out: set[str] = set()
    for sel in selectors:
        found = select_workloads(snapshot, sel)
        if not found and option == "--from" and sel in (PLAINTEXT,):
            continue
        if not found and not (option == "--from" and sel.startswith("gateway:")):
            raise InputError(f"{option} {sel}: selects no workload of the manifests", field=option)
        out |= found
    return out


def callers_for(
    snapshot: MeshSnapshot, from_: tuple[str, ...], extra: tuple[str, ...]
) -> list[Caller]:
    """The mesh's callers narrowed by ``--from``, then the ``--caller``s."""
    from meshauthz.symbolic.reach import Caller, mesh_callers

    callers = mesh_callers(snapshot)
    if from_:
        keys = _selected(snapshot, from_, "--from")
        callers = [
            c
            for c in callers
            if (c.workload is not None and c.workload in keys) or c.label in from_
        ]
    for text in extra:
        try:
            callers.append(Caller.parse(text))
        except ValueError as e:
            raise InputError(f"--caller {e}", field="--caller") from None
    return callers


def destinations_for(
    snapshot: MeshSnapshot, to: tuple[str, ...], ports: tuple[int, ...]
) -> list[Destination]:
    from meshauthz.symbolic.compare import destinations

    dests = destinations(snapshot, snapshot)
    dests = [d for d in dests if not snapshot.workload(d.workload).is_waypoint]
    if to:
        keys = _selected(snapshot, to, "--to")
        dests = [d for d in dests if d.workload in keys]
    if ports:
        dests = [d for d in dests if d.port in ports]
    return dests


# ------------------------------------------------------------------ text


def _dest_label(d: Destination, several: bool) -> str:
    return f"{d.workload}:{d.port}" + (f" ({d.protocol})" if several else "")


def _end_text(row: Row) -> Iterator[str]:
    for dec in sorted(row.deciding, key=lambda d: d.end.verdict != "ALLOW"):
        where = f" at {dec.file}:{dec.line}" if dec.file else ""
        yield f"{end_text(dec.end)}{where}"


def matrix_lines(result: Reachability, width: int) -> Iterator[str]:
    """A matrix of callers (rows) by destinations (numbered columns), then one
    paragraph per cell that is not "all": conditions, deciding rules, witnesses."""
    if not result.rows:
        yield "no destination: the manifests define no workload port (or the filters left none)"
        return
    dests = list(dict.fromkeys(r.destination for r in result.rows))
    callers = list(dict.fromkeys(r.caller.label for r in result.rows))
    protocols: dict[tuple[str, int], int] = {}
    for d in dests:
        protocols[(d.workload, d.port)] = protocols.get((d.workload, d.port), 0) + 1
    cells = {(r.caller.label, r.destination): r for r in result.rows}
    notes: dict[tuple[str, Destination], int] = {}
    for c in callers:
        for d in dests:
            r = cells.get((c, d))
            if r is not None and r.verdict != "all":
                notes[(c, d)] = len(notes) + 1
    lw = max(len(c) for c in callers)
    cw = max(6, len(f"D{len(dests)}"), len(f"some[{len(notes)}]"))
    per_block = max(1, (width - lw - 2) // (cw + 1))
    for start in range(0, len(dests), per_block):
        block = dests[start : start + per_block]
        head = " " * lw + "  " + " ".join(f"D{start + i + 1}".ljust(cw) for i in range(len(block)))
        yield head.rstrip()
        for c in callers:
            out = []
            for d in block:
                r = cells.get((c, d))
                text = "" if r is None else _CELL[r.verdict]
                if (c, d) in notes and r is not None and r.verdict != "none":
                    text += f"[{notes[(c, d)]}]"
                out.append(text.ljust(cw))
            yield (c.ljust(lw) + "  " + " ".join(out)).rstrip()
        yield ""
    for i, d in enumerate(dests):
        yield f"D{i + 1} = {_dest_label(d, protocols[(d.workload, d.port)] > 1)}"
    yield "all: every request allowed; -: none; some[N]: see N below; ?: not answered exactly"
    if notes:
        yield ""
    for (c, d), n in notes.items():
        r = cells[(c, d)]
        yield f"[{n}] {c} -> {d.workload}:{d.port} ({d.protocol}): {r.verdict}"
        if r.conditions:
            label = "reason" if r.verdict == "unknown" else "allowed when"
            yield f"    {label}: {r.conditions}"
        for line in _end_text(r):
            yield f"    {line}"
        if r.allowed_witness is not None:
            yield f"    allowed: {json.dumps(r.allowed_witness)}"
            if r.allowed_onward is not None:  # through a gateway: what it sends on
                yield f"      sent on: {json.dumps(r.allowed_onward)}"
        if r.denied_witness is not None:
            yield f"    denied:  {json.dumps(r.denied_witness)}"
            if r.denied_onward is not None:
                yield f"      sent on: {json.dumps(r.denied_onward)}"
            elif r.two_hops:
                yield "      (denied at the gateway)"


# ------------------------------------------------------------------ csv

CSV_FIELDS = (
    "from",
    "to",
    "port",
    "protocol",
    "verdict",
    "conditions",
    "allowedWitness",
    "deniedWitness",
)


def write_csv(result: Reachability) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for row in result.rows:
        j = row.to_json()
        w.writerow([json.dumps(j[k]) if isinstance(j[k], dict) else j[k] for k in CSV_FIELDS])


@click.command("reach")
@MANIFEST_OPTION
@click.option(
    "--from",
    "from_",
    multiple=True,
    metavar="SEL",
    help="Only these callers: NS, NS/NAME (workload or Service), k=v[,k=v] (labels), "
    "'plaintext' or gateway:NS/NAME (repeatable).",
)
@click.option(
    "--to",
    multiple=True,
    metavar="SEL",
    help="Only these destinations: NS, NS/NAME (workload or Service), k=v[,k=v] (repeatable).",
)
@click.option("--port", "ports", multiple=True, type=int, help="Only this port (repeatable).")
@click.option(
    "--caller",
    "extra",
    multiple=True,
    metavar="principal=ID[,ip=IP] | ip=IP",
    help="A caller that is no workload of the manifests: an mTLS identity (its namespace "
    "implied), optionally at an address, or a plaintext client's address (repeatable).",
)
@click.option(
    "--ext-authz",
    type=click.Choice(["deny", "allow"]),
    default="deny",
    show_default=True,
    help="What to assume a CUSTOM (ext_authz) provider answers when a request is sent to it.",
)
@MESH_CONFIG_OPTION
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["text", "json", "csv", "dot"]),
    default="text",
    show_default=True,
    help="A matrix with the conditions below it, JSON ({rows: [...]}), CSV or Graphviz.",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Also write one self-contained page: the graph, the matrix, a filter box, "
    "and each edge's or cell's conditions, deciding policies and witnesses on a click.",
)
def reach_command(
    paths: tuple[str, ...],
    from_: tuple[str, ...],
    to: tuple[str, ...],
    ports: tuple[int, ...],
    extra: tuple[str, ...],
    ext_authz: Any,
    mesh_config: str | None,
    fmt: str,
    html: str | None,
) -> None:
    """Who can reach whom: for every caller (each workload with its identity,
    each gateway, any plaintext caller, and --caller) and every destination
    workload and port, whether all, none or some requests are allowed; "some"
    with the conditions, and an allowed and a denied witness request that check
    decides as shown.

    Exit 0 when answered, 2 on unusable input.
    """
    from meshauthz.symbolic.reach import reach

    snapshot = load_mesh(paths, mesh_config)
    callers = callers_for(snapshot, from_, extra)
    dests = destinations_for(snapshot, to, ports)
    result = reach(snapshot, callers=callers, only=dests, ext_authz=ext_authz)
    if html is not None:
        try:
            Path(html).write_text(
                page(result, "meshauthz reach: " + " ".join(Path(p).name for p in paths))
            )
        except OSError as e:
            raise InputError(f"--html {html}: {e.strerror or e}", field="--html") from None
    if fmt == "json":
        emit_json(result.to_json())
    elif fmt == "dot":
        for line in dot_lines(result):
            click.echo(line)
    elif fmt == "csv":
        write_csv(result)
    else:
        width = shutil.get_terminal_size((100, 24)).columns
        for line in matrix_lines(result, width):
            click.echo(line)
    sys.exit(EXIT_OK)


__all__ = ["callers_for", "destinations_for", "matrix_lines", "reach_command", "write_csv"]

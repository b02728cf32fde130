"""``meshauthz analyze``: findings about policies before they are applied."""

from __future__ import annotations

import re
import sys
from typing import cast

import click

from meshauthz.analyze import Suppression, analyze
from meshauthz.analyze.sarif import analysis_sarif
from meshauthz.cli.common import MESH_CONFIG_OPTION, PathArg, input_options, loading
from meshauthz.cli.output import emit_json, emit_sarif, format_option
from meshauthz.errors import EXIT_FAILED, EXIT_OK
from meshauthz.mesh.loading import load_mesh
from meshauthz.resources.findings import Severity

SEVERITIES = ("error", "warning", "info")


@click.command("analyze")
@click.argument("paths", nargs=-1, required=True, type=PathArg())
@MESH_CONFIG_OPTION
@input_options
@format_option(
    "Text for a person, JSON with a documented, stable shape, or SARIF 2.1.0 for code scanning.",
    ("text", "json", "sarif"),
)
@click.option(
    "--failure-threshold",
    type=click.Choice(SEVERITIES),
    default="error",
    show_default=True,
    help="Exit 1 when a finding has this severity or a higher one.",
)
@click.option(
    "-S",
    "--suppress",
    "suppress",
    multiple=True,
    metavar="CODE[=RESOURCE]",
    help="Do not report CODE (MA####, or the istioctl/Kiali code it stands for) on RESOURCE "
    "(a glob over 'Kind name.namespace' or 'namespace/name'), or anywhere (repeatable).",
)
@click.option(
    "--docs-url",
    metavar="URL",
    help="With -o sarif: the absolute URL where docs/analyze.md is published; each rule's "
    "helpUri is URL#code (SARIF requires an absolute URI; without it there is none).",
)
@click.option(
    "--deep",
    is_flag=True,
    help="Also the checks about every request (MA2014-MA2016: rules that never decide, ports "
    "that always deny or allow), from the symbolic engine; slower (docs/analyze.md, Cost).",
)
def analyze_command(
    paths: tuple[str, ...],
    mesh_config: str | None,
    namespace: str | None,
    exclude: tuple[str, ...],
    fmt: str,
    failure_threshold: str,
    suppress: tuple[str, ...],
    docs_url: str | None,
    deep: bool,
) -> None:
    """Find the mistakes in AuthorizationPolicies that Istio accepts but that
    almost certainly do not do what was meant, each with a stable code, a fix
    and, where one exists, a request that shows it (decided as check decides).

    PATHS, -n and --exclude as for validate. Exit 0 when no finding reaches --failure-threshold,
    1 when one does, 2 when the input cannot be used (including objects Istio
    would reject: meshauthz validate lists them).
    """
    rules = [Suppression.parse(s) for s in suppress]
    if docs_url is not None and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^\s#]+$", docs_url):
        raise click.BadParameter(
            "expected an absolute URL without a fragment, e.g. "
            "https://github.com/OWNER/REPO/blob/main/docs/analyze.md",
            param_hint="--docs-url",
        )
    with loading():
        loaded = load_mesh(paths, mesh_config=mesh_config, namespace=namespace, exclude=exclude)
    result = analyze(loaded, suppress=rules, deep=deep)
    findings = result.findings
    summary = {
        "errors": result.count("error"),
        "warnings": result.count("warning"),
        "info": result.count("info"),
        "suppressed": result.suppressed,
        "files": len(loaded.manifests.files),
        "objects": len(loaded.manifests.all()),
    }
    if fmt == "json":
        emit_json({"findings": [f.to_json() for f in findings], "summary": summary})
    elif fmt == "sarif":
        emit_sarif(analysis_sarif(findings, docs_url))
    else:
        for f in findings:
            for line in f.text_lines():
                click.echo(line)
        counts = ", ".join(
            f"{n} {name}{'s' * (n != 1 and name != 'info')}"
            for name, n in (
                ("error", summary["errors"]),
                ("warning", summary["warnings"]),
                ("info", summary["info"]),
            )
        )
        objects = summary["objects"]
        suppressed = f" ({result.suppressed} suppressed)" if result.suppressed else ""
        click.echo(f"{counts} in {objects} object{'s' * (objects != 1)}{suppressed}")
    threshold = cast(Severity, failure_threshold)  # one of SEVERITIES (click.Choice)
    sys.exit(EXIT_FAILED if result.fails(threshold) else EXIT_OK)


__all__ = ["analyze_command"]

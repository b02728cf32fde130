"""``meshauthz test``: run ``*.test.yaml`` suites of expected decisions, for CI."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from meshauthz.cli.common import PathArg, input_options
from meshauthz.cli.output import FORMAT_OPTION, emit_json, error_json, report_error
from meshauthz.decide.applicable import applicable_policies
from meshauthz.decide.render import explain_lines, internal_error_line
from meshauthz.errors import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    InputError,
    Location,
    MeshauthzError,
)
from meshauthz.suite.junit import junit_xml
from meshauthz.suite.runner import CaseResult, RunResult, SuiteResult, run_paths
from meshauthz.suite.select import CaseSelector
from meshauthz.suite.watch import watch

if TYPE_CHECKING:  # the local mesh's modules load only for --mesh
    from meshauthz.runtime.mesh_suite import MeshRun
    from meshauthz.runtime.plan import MeshPlan


def _selector(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return CaseSelector(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _mesh_name(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A mesh name as mesh up --name takes it."""
    if value is not None:
        from meshauthz.runtime import supervisor

        try:
            supervisor.check_name(value)
        except supervisor.MeshError as e:
            raise click.BadParameter(str(e).removeprefix("--name ")) from None
    return value


def failure_lines(s: SuiteResult, c: CaseResult) -> list[str]:
    """Why a case failed: what differs, then what ``explain`` says."""
    lines = list(c.mismatches)
    if c.outcome == "error":
        return [c.error or "unusable case"]
    if c.outcome == "internal-error":
        assert c.request is not None and c.decision is not None
        return [
            internal_error_line(c.request, c.decision),
            f"the case expects {c.case.expect.decision}; a fail-closed DENY meets no expectation",
        ]
    if s.snapshot is not None and c.request is not None and c.explained is not None:
        lines.extend(
            explain_lines(c.request, c.explained, applicable_policies(s.snapshot, c.request))
        )
    return lines


def _where(c: CaseResult) -> str:
    loc = c.case.location
    return f"{loc.file}:{loc.line}" if loc.line else loc.file


def exit_code(result: RunResult) -> int:
    if result.count("internal-error"):
        return EXIT_INTERNAL
    if result.unusable or result.count("error"):
        return EXIT_INPUT
    return EXIT_OK if result.ok else EXIT_FAILED


def summary_line(result: RunResult) -> str:
    line = f"{result.count('pass')} passed, {result.count('fail')} failed"
    errors = result.count("error") + len(result.unusable)
    if errors:
        line += f", {errors} unusable"
    internal = result.count("internal-error")
    if internal:
        line += f", {internal} internal error{'s' * (internal != 1)}"
    return line


def print_text(result: RunResult, verbose: bool, coverage: bool) -> None:
    for s in result.suites:
        if s.error is not None:
            click.echo(f"ERROR {s.file}: {s.error}")
            continue
        if s.findings:
            click.echo(
                f"ERROR {s.file}: the cluster would reject these objects (Istio or the API server):"
            )
            for f in s.findings:
                click.echo(f"  {f.to_text()}")
            continue
        for c in s.cases:
            if c.outcome == "pass":
                if verbose:
                    assert c.decision is not None
                    click.echo(f"PASS {_where(c)}: {s.name}: {c.case.name} ({c.decision.verdict})")
                continue
            label = {"fail": "FAIL", "error": "ERROR", "internal-error": "INTERNAL ERROR"}[
                c.outcome
            ]
            click.echo(f"{label} {_where(c)}: {s.name}: {c.case.name}")
            for line in failure_lines(s, c):
                click.echo(f"    {line}")
    if coverage and result.coverage is not None:
        for line in result.coverage.text_lines():
            click.echo(line)
    if result.threshold is not None:
        click.echo(threshold_line(result))
    click.echo(summary_line(result))


def threshold_line(result: RunResult) -> str:
    assert result.coverage is not None and result.threshold is not None
    covered, total = result.coverage.totals()
    got = f"{covered} of {total} rules covered ({result.coverage.percent():.1f}%)"
    if result.below_threshold:
        return f"coverage below the threshold: {got}, {result.threshold:g}% required"
    return f"coverage threshold met: {got}, {result.threshold:g}% required"


def result_json(result: RunResult) -> dict[str, Any]:
    suites = []
    for s in result.suites:
        doc: dict[str, Any] = {
            "file": s.file,
            "name": s.name,
            "passed": s.count("pass"),
            "failed": s.count("fail"),
            "error": None,
            "findings": [f.to_json() for f in s.findings],
            "cases": [],
        }
        if s.error is not None:
            doc["error"] = error_json(s.error)["error"]
        elif s.findings:
            doc["error"] = {
                "code": "invalid",
                "message": "the cluster would reject these objects (Istio or the API server)",
                "file": s.file,
                "line": None,
                "column": None,
                "field": None,
            }
        for c in s.cases:
            case: dict[str, Any] = {
                "name": c.case.name,
                "file": c.case.location.file,
                "line": c.case.location.line,
                "result": c.outcome,
                "expect": c.case.expect.to_json(),
                "actual": None,
                "mismatches": c.mismatches,
                "error": c.error,
            }
            if c.decision is not None:
                d = c.decision
                case["actual"] = {
                    "decision": d.verdict,
                    "status": d.status,
                    "stage": d.stage,
                    "policy": d.policy,
                    "rule": d.rule,
                    "reason": d.reason,
                    "dryRun": [r.to_json() for r in d.dry_run],
                    "audit": d.audit,
                    "auditPolicy": d.audit_policy,
                }
            if c.outcome == "fail" and c.explained is not None and c.request is not None:
                assert s.snapshot is not None
                case["explain"] = {
                    **c.explained.to_json(),
                    "applicable": applicable_policies(s.snapshot, c.request),
                    "text": explain_lines(
                        c.request, c.explained, applicable_policies(s.snapshot, c.request)
                    ),
                }
            doc["cases"].append(case)
        suites.append(doc)
    out: dict[str, Any] = {
        "ok": result.ok,
        "summary": {
            "passed": result.count("pass"),
            "failed": result.count("fail"),
            "errors": result.count("error") + len(result.unusable),
            "internalErrors": result.count("internal-error"),
            "cases": sum(len(s.cases) for s in result.suites),
            "suites": len(result.suites),
        },
        "suites": suites,
    }
    if result.coverage is not None:
        out["coverage"] = result.coverage.to_json()
        out["coverage"]["threshold"] = result.threshold
        out["coverage"]["belowThreshold"] = result.below_threshold
    return out


def write_junit(result: RunResult, path: str) -> None:
    by_case = {id(c): s for s in result.suites for c in s.cases}
    data = junit_xml(result, lambda c: failure_lines(by_case[id(c)], c))
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _mesh_plan(name: str | None, state_dir: str | None) -> MeshPlan:
    """The mesh as the mesh commands find it: by name under the state root, or
    by its state directory."""
    from meshauthz.runtime import supervisor
    from meshauthz.runtime.plan import MeshPlan

    state = supervisor.mesh_dir(name, state_dir)
    if not (state / "plan.json").exists():
        raise supervisor.MeshError(f"no mesh at {state}; run: meshauthz mesh up DIR")
    return MeshPlan.load(state)


def run_once(
    paths: list[str],
    fmt: str,
    verbose: bool,
    coverage: bool,
    junit: str | None,
    select: CaseSelector | None = None,
    threshold: float | None = None,
    mesh: MeshPlan | None = None,
    namespace: str | None = None,
    exclude: tuple[str, ...] = (),
) -> int:
    mesh_run: MeshRun | None = None
    try:
        result = run_paths(
            paths,
            coverage=coverage,
            select=select,
            threshold=threshold,
            namespace=namespace,
            exclude=exclude,
        )
        if mesh is not None:
            from meshauthz.runtime.mesh_suite import run_on_mesh

            mesh_run = run_on_mesh(result, mesh)
        if junit:  # first: a report that cannot be written is an error, reported alone
            try:
                write_junit(result, junit)
            except OSError as e:
                raise InputError(
                    f"cannot write the JUnit report: {e.strerror or e}", location=Location(junit)
                ) from None
    except MeshauthzError as e:
        report_error(e, fmt)
        return EXIT_INPUT
    if fmt == "json":
        doc = result_json(result)
        if mesh_run is not None:
            add_mesh_json(doc, result, mesh_run)
        emit_json(doc)
    else:
        print_text(result, verbose, coverage)
        if mesh_run is not None:
            print_mesh(mesh_run, verbose)
    code = exit_code(result)
    if code == EXIT_OK and mesh_run is not None and not mesh_run.ok:
        return EXIT_FAILED
    return code


def print_mesh(run: MeshRun, verbose: bool) -> None:
    """The mesh's answers, after meshauthz's: failures, cases not run, and cases
    where the mesh and meshauthz differ (passing ones with -v)."""
    label = {"pass": "MESH PASS", "fail": "MESH FAIL", "not-run": "MESH NOT RUN"}
    for file, note in run.notes.items():
        click.echo(f"note: {file}: {note}")
    for m in run.cases:
        if m.outcome == "pass" and not m.differs and not verbose:
            continue
        c = m.case
        click.echo(f"{label[m.outcome]} {_where(c)}: {m.suite.name}: {c.case.name}")
        if m.reason:
            click.echo(f"    {m.reason}")
        for line in m.mismatches:
            click.echo(f"    {line}")
        for line in m.differs:
            click.echo(f"    the mesh and meshauthz differ: {line}")
    s = run.summary()
    click.echo(
        f"mesh {s['name']}: {s['passed']} passed, {s['failed']} failed, {s['notRun']} not run; "
        f"{s['differFromMeshauthz']} differ from meshauthz"
    )


def add_mesh_json(doc: dict[str, Any], result: RunResult, run: MeshRun) -> None:
    by_case = {id(m.case): m for m in run.cases}
    for s_doc, s in zip(doc["suites"], result.suites, strict=True):
        for c_doc, c in zip(s_doc["cases"], s.cases, strict=True):
            m = by_case.get(id(c))
            c_doc["mesh"] = m.to_json() if m is not None else None
    doc["mesh"] = run.summary()
    doc["ok"] = doc["ok"] and run.ok


@click.command("test")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...", type=PathArg())
@FORMAT_OPTION
@click.option("--coverage", is_flag=True, help="Report which policy rules the cases exercised.")
@click.option(
    "--run",
    "select",
    metavar="REGEX",
    callback=_selector,
    help="Run only the cases whose name 'SUITE: CASE' matches this RE2 expression (searched).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 100),
    metavar="PCT",
    help="Fail (exit 1) when less than PCT percent of the rules are covered (implies computing coverage).",
)
@click.option(
    "--mesh",
    "mesh_name",
    metavar="NAME",
    callback=_mesh_name,
    help="Also send each case through the running local mesh NAME (meshauthz mesh up --name).",
)
@click.option(
    "--mesh-state-dir",
    type=PathArg(),
    metavar="DIR",
    help="As --mesh, for a mesh started with mesh up --state-dir DIR.",
)
@click.option(
    "--junit", type=PathArg(), metavar="FILE", help="Also write a JUnit XML report to FILE."
)
@click.option("-v", "--verbose", is_flag=True, help="Also list the cases that pass.")
@click.option("--watch", "watch_mode", is_flag=True, help="Rerun whenever a watched file changes.")
@input_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="With --watch: seconds between checks for changes.",
)
def test_command(
    paths: tuple[str, ...],
    fmt: str,
    coverage: bool,
    select: CaseSelector | None,
    threshold: float | None,
    mesh_name: str | None,
    mesh_state_dir: str | None,
    junit: str | None,
    verbose: bool,
    watch_mode: bool,
    interval: float,
    namespace: str | None,
    exclude: tuple[str, ...],
) -> None:
    """Run test suites (*.test.yaml files, or directories holding them): each
    case's request is decided and compared with what it expects.

    Exit 0 when every case passes, 1 when one fails (or coverage is below
    --threshold), 2 on unusable input, 3 when meshauthz failed deciding a case
    (an internal error).
    """
    args = list(paths)
    if mesh_name is not None and mesh_state_dir is not None:
        raise click.UsageError("give the mesh once: --mesh NAME or --mesh-state-dir DIR")
    mesh = None
    if mesh_name is not None or mesh_state_dir is not None:
        mesh = _mesh_plan(mesh_name, mesh_state_dir)
    if not watch_mode:
        sys.exit(
            run_once(
                args, fmt, verbose, coverage, junit, select, threshold, mesh, namespace, exclude
            )
        )

    def again() -> None:
        run_once(args, fmt, verbose, coverage, junit, select, threshold, mesh, namespace, exclude)
        click.echo(f"watching {len(args)} path(s) for changes; Ctrl-C to stop", err=True)

    def changed(files: list[str]) -> None:
        shown = ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
        click.echo(f"\n--- changed: {shown}; rerunning", err=True)

    try:
        watch(args, again, interval=interval, on_change=changed)
    except KeyboardInterrupt:
        sys.exit(EXIT_OK)


__all__ = ["result_json", "run_once", "test_command"]

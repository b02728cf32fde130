"""``meshauthz check`` and ``meshauthz explain``: decide requests as Envoy would."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from meshauthz.analyze.decision_notes import DecisionNotes
from meshauthz.cli.ambient_options import ISTIOD_FLAG_OPTION, ambient_flags
from meshauthz.cli.common import (
    JWKS_OPTION,
    MESH_CONFIG_OPTION,
    PathArg,
    input_options,
    load_mesh,
    loading,
    stdin_read_once,
)
from meshauthz.cli.output import FORMAT_OPTION, emit_json, with_istio_version
from meshauthz.decide import render
from meshauthz.decide.decision import Decision
from meshauthz.decide.engine import Decider
from meshauthz.decide.request import Request, resolve_each
from meshauthz.decide.request_spec import (
    RequestSpec,
    read_request_file,
    request_from_data,
    requests_from_text,
)
from meshauthz.errors import EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, MeshauthzError
from meshauthz.mesh import MeshSnapshot

if TYPE_CHECKING:  # config dumps are read only by check --config-dump
    from meshauthz.decide.config_dump import ChainInfo

# -f is required unless check reads a config dump (checked in decide_all).
_MANIFESTS = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    type=PathArg(),
    metavar="PATH",
    help="Manifests: a file, a directory or '-' (repeatable); optional with --config-dump.",
)


def request_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--request",
            "request_file",
            type=PathArg(),
            metavar="FILE",
            help="A request file (YAML or JSON; one request or a list).",
        ),
        click.option("--from", "from_", metavar="NS/NAME", help="The calling workload."),
        click.option(
            "--principal",
            help="The caller's mTLS identity instead of a workload, e.g. cluster.local/ns/a/sa/b.",
        ),
        click.option(
            "--plaintext", is_flag=True, help="The caller sends no client certificate (no mTLS)."
        ),
        click.option("--source-ip", metavar="IP", help="The caller's address."),
        click.option("--remote-ip", metavar="IP", help="The client address after X-Forwarded-For."),
        click.option(
            "--to",
            metavar="NS/NAME[:PORT]",
            help="The destination workload, Service or Service/ServiceEntry host (a service port after ':'); with --config-dump also :PORT.",
        ),
        click.option("--port", type=int, help="The port the destination workload receives on."),
        click.option(
            "--protocol", type=click.Choice(["http", "tcp"]), help="Default: from the Service port."
        ),
        click.option("--method", default=None, help="Default GET."),
        click.option(
            "--path",
            default=None,
            help="As sent, before normalization; may carry a query. Default /.",
        ),
        click.option(
            "--host",
            help="The Host header. Default: the Service's hostname, with :PORT unless the "
            "Service port is 80 (as a client calling its URL sends it).",
        ),
        click.option(
            "-H",
            "--header",
            "headers",
            multiple=True,
            metavar="'NAME: VALUE'",
            help="A request header (repeatable).",
        ),
        click.option(
            "--jwt-claims",
            metavar="JSON",
            help="Claims of a JWT the client presents (taken as validly signed).",
        ),
        click.option("--sni", help="The TLS server name."),
        click.option(
            "--ext-authz",
            type=click.Choice(["deny", "allow"]),
            default="deny",
            show_default=True,
            help="What to assume a CUSTOM (ext_authz) provider answers when a request is sent to it.",
        ),
        MESH_CONFIG_OPTION,
        JWKS_OPTION,
        ISTIOD_FLAG_OPTION,
        _MANIFESTS,
        input_options,
        FORMAT_OPTION,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def request_source(o: dict[str, Any]) -> tuple[str, str] | None:
    """The request file's name and text, read once (standard input and pipes
    cannot be read again), or None without ``--request``."""
    return _read_request_file(o) if o["request_file"] else None


def _read_request_file(o: dict[str, Any]) -> tuple[str, str]:
    flags = [
        k
        for k in (
            "from_",
            "principal",
            "to",
            "port",
            "method",
            "path",
            "host",
            "jwt_claims",
            "sni",
        )
        if o[k]
    ]
    if flags or o["headers"] or o["plaintext"]:
        raise click.UsageError("give either --request FILE or request flags, not both")
    return read_request_file(o["request_file"])


def specs_from_options(
    o: dict[str, Any], *, positions: bool = True, file: tuple[str, str] | None = None
) -> list[RequestSpec]:
    """The requests the options give; ``file``: the request file as
    ``request_source`` read it (read here when not given)."""
    if o["request_file"]:
        display, text = file or _read_request_file(o)
        return requests_from_text(text, display, positions=positions)
    if not o["to"]:
        raise click.UsageError(
            "give --to (and --from or --principal or --plaintext), or --request FILE"
        )
    source: Any
    if o["from_"] and not (o["principal"] or o["plaintext"] or o["source_ip"]):
        source = o["from_"]
    else:
        source = {}
        if o["from_"]:
            source["workload"] = o["from_"]
        if o["principal"]:
            source["principal"] = o["principal"]
        if o["plaintext"]:
            source["plaintext"] = True
        if o["source_ip"]:
            source["ip"] = o["source_ip"]
        if not source:
            raise click.UsageError("give --from NS/NAME, --principal ID or --plaintext")
    data: dict[str, Any] = {"from": source, "to": o["to"]}
    for key, flag in (
        ("port", "port"),
        ("protocol", "protocol"),
        ("method", "method"),
        ("path", "path"),
        ("host", "host"),
        ("sni", "sni"),
        ("remoteIP", "remote_ip"),
    ):
        if o[flag] is not None:
            data[key] = o[flag]
    if o["headers"]:
        hdrs: dict[str, list[str]] = {}
        for h in o["headers"]:
            name, sep, value = h.partition(":")
            if not sep or not name.strip():
                raise click.UsageError(f"-H expects 'NAME: VALUE', got {h!r}")
            hdrs.setdefault(name.strip(), []).append(value.strip())
        data["headers"] = hdrs
    if o["jwt_claims"]:
        import json  # here, not at the top: only --jwt-claims reads JSON (start-up)

        try:
            claims = json.loads(o["jwt_claims"])
        except json.JSONDecodeError as e:
            raise click.UsageError(f"--jwt-claims is not JSON: {e.msg}") from None
        except RecursionError:
            raise click.UsageError("--jwt-claims is nested too deeply") from None
        if not isinstance(claims, dict):
            raise click.UsageError("--jwt-claims must be a JSON object of claims")
        data["jwt"] = claims
    return [request_from_data(data, "<command line>")]


# One request's destination as written, and its decision for each workload it
# reaches (several when it names a Service that selects several workloads).
Group = tuple[str, list[tuple[Request, Decision]]]


def decide_all(
    o: dict[str, Any], trace: bool, explain: bool = False
) -> tuple[MeshSnapshot, list[Group], bool]:
    if not o["paths"]:
        raise click.UsageError("Missing option '-f' / '--filename'.")
    stdin_read_once(
        {"-f": o["paths"], "--request": o["request_file"], "--mesh-config": o["mesh_config"]}
    )
    snapshot = load_mesh(
        o["paths"], o["mesh_config"], o["jwks"], namespace=o["namespace"], exclude=o["exclude"]
    )
    # the requests, resolved and decided, live until the command exits, as the
    # mesh does: no cyclic collection walks them meanwhile, nor after (deciding
    # makes no cyclic garbage)
    with loading():
        source = request_source(o)
        try:  # a request file is read without positions: fast for many requests
            specs = specs_from_options(o, positions=False, file=source)
            resolved = resolve_all(specs, snapshot)
        except MeshauthzError:
            if source is None:
                raise
            # its text parsed again with positions, so that the error names its line
            specs = specs_from_options(o, file=source)
            resolved = resolve_all(specs, snapshot)
        flags = ambient_flags(o["istiod_flags"])
        decider = Decider(snapshot, ext_authz=o["ext_authz"], flags=flags)
        single = not o["request_file"] or len(specs) == 1
        flat = [r for _, requests in resolved for r in requests]
        decided = decider.decide_many(flat, trace=trace, explain=explain, progress=progress_bar)
        decisions = iter(decided)
        groups = [
            (render.target_as_written(s), [(r, next(decisions)) for r in requests])
            for s, requests in resolved
        ]
    return snapshot, groups, single


def resolve_all(
    specs: list[RequestSpec], snapshot: MeshSnapshot
) -> list[tuple[RequestSpec, list[Request]]]:
    """Each request with the requests it makes (one per workload its destination
    reaches), each distinct request resolved once (request files repeat
    requests); the first one that fails is the first in the file."""
    seen: dict[RequestSpec, list[Request]] = {}
    out: list[tuple[RequestSpec, list[Request]]] = []
    for s in specs:
        try:
            rs = seen.get(s)
        except TypeError:  # unhashable values (JWT claims): resolved on its own
            out.append((s, resolve_each(s, snapshot)))
            continue
        if rs is None:
            rs = seen[s] = resolve_each(s, snapshot)
        out.append((s, rs))
    return out


def flatten(groups: list[Group]) -> list[tuple[Request, Decision]]:
    return [rd for _, g in groups for rd in g]


def group_json(
    to: str, g: list[tuple[Request, Decision]], doc: Callable[[Request, Decision], Any]
) -> Any:
    """One workload: its decision's document, as for any request. Several: the
    request as written, whether their decisions differ, and each decision. A
    named request's documents begin with its name."""
    if len(g) == 1:
        return render.named_json(g[0][0], doc(*g[0]))
    return render.named_json(g[0][0], {}) | {
        "to": to,
        "workloads": [r.destination.key for r, _ in g],
        "differ": render.decisions_differ([d for _, d in g]),
        "decisions": [render.named_json(r, doc(r, d)) for r, d in g],
    }


def progress_bar(total: int) -> Callable[[int], None] | None:
    """A progress bar on stderr for a long run, when stderr is a terminal."""
    if total < 2000 or not sys.stderr.isatty():
        return None
    bar = click.progressbar(length=total, label="deciding", file=sys.stderr)
    bar.render_progress()

    def advance(done: int) -> None:
        bar.update(done - bar.pos)
        if done >= total:
            bar.render_finish()

    return advance


def decide_with_dump(
    o: dict[str, Any],
) -> tuple[list[tuple[Request, Decision]], bool, list[ChainInfo | None]]:
    """check --config-dump: the requests against the proxy the dump comes from."""
    stdin_read_once(
        {
            "-f": o["paths"],
            "--request": o["request_file"],
            "--mesh-config": o["mesh_config"],
            "--config-dump": o["config_dump"],
        }
    )
    if o["mesh_config"] and not o["paths"]:
        raise click.UsageError(
            "--mesh-config needs -f; with --config-dump the dump holds the proxy's settings"
        )
    if o["jwks"]:
        raise click.UsageError(
            "--jwks applies to the manifests' RequestAuthentications; with --config-dump "
            "the dump holds the proxy's keys"
        )
    snapshot = (
        load_mesh(o["paths"], o["mesh_config"], namespace=o["namespace"], exclude=o["exclude"])
        if o["paths"]
        else None
    )
    from meshauthz.decide.config_dump import decide_in_dump, load_config_dump

    dump = load_config_dump(o["config_dump"])
    if not o["request_file"]:
        to: str | None = o["to"]
        port: int | None = o["port"]
        if to is not None and to.startswith(":"):
            if port is not None:
                raise click.UsageError("give the port once: --to :PORT or --port")
            if not to[1:].isdigit() or not 0 < int(to[1:]) < 65536:
                raise click.UsageError(f"--to :PORT expects a port number 1-65535, got {to!r}")
            port = int(to[1:])
            to = None
        if to is None and port is None:
            raise click.UsageError("give the port: --to :PORT or --port N (with --config-dump)")
        o = {**o, "to": to or dump.workload.key, "port": port}
    out: list[tuple[Request, Decision]] = []
    where: list[ChainInfo | None] = []
    for s in specs_from_options(o):
        request, d, info = decide_in_dump(dump, s, snapshot, ext_authz=o["ext_authz"])
        out.append((request, d))
        where.append(info)
    return out, not o["request_file"] or len(out) == 1, where


EXPECT_OPTION = click.option(
    "--expect",
    type=click.Choice(["allow", "deny"]),
    help="Exit 1 unless every decision is this (an internal error is never it: exit 3).",
)


def misses(d: Decision, expect: str | None) -> bool:
    """The decision does not meet ``--expect``: another verdict, a conditional one
    (filters not evaluated stand before it) or an internal error (fail-closed)."""
    return expect is not None and (d.verdict != expect.upper() or d.conditional or d.internal_error)


def exit_code(results: list[tuple[Request, Decision]], expect: str | None) -> int:
    """3 when a decision is an internal error (its DENY is fail-closed, not an
    answer, so it never meets an expectation), else 1 when one differs from
    ``expect`` or is conditional, else 0; an internal error is also said on stderr."""
    failed = [(r, d) for r, d in results if d.internal_error]
    for r, d in failed:
        click.echo(f"error: {render.internal_error_line(r, d)}", err=True)
    if failed:
        return EXIT_INTERNAL
    if any(misses(d, expect) for _, d in results):
        return EXIT_FAILED
    return EXIT_OK


def echo_text(
    groups: list[Group],
    expect: str | None,
    lines_of: Callable[[Request, Decision], list[str]],
) -> None:
    """The text of every decision; a request that reaches several workloads is
    introduced by whether their decisions differ; with ``--expect`` and several
    decisions, each one that misses it is marked, and their count closes."""
    results = flatten(groups)
    mark = expect is not None and len(results) > 1
    out: list[str] = []
    for to, g in groups:
        if len(g) > 1:
            out.append(render.several_workloads(to, g))
        for r, d in g:
            lines = lines_of(r, d)
            if mark and misses(d, expect):
                lines[0] += f"  {render.expectation_missed(expect or '')}"
            out += lines
    if mark:
        missed = sum(misses(d, expect) for _, d in results)
        if missed:
            out.append(render.expectations_missed(missed, len(results), expect or ""))
    if out:  # one write: echoing 10,000 decisions line by line cost more than deciding
        click.echo("\n".join(out))


@click.command("check")
@request_options
@EXPECT_OPTION
@click.option("--trace", "show_trace", is_flag=True, help="Also print the evaluation trace.")
@click.option(
    "--config-dump",
    type=PathArg(),
    metavar="FILE",
    help="Decide against this Envoy config dump (a live pod's /config_dump JSON, '-' for stdin) "
    "instead of the filters built from the manifests.",
)
def check_command(expect: str | None, show_trace: bool, **o: Any) -> None:
    """Decide a request (or a file of requests) as Istio's Envoy would.

    With --config-dump FILE, decide against the filters of that proxy's config
    dump (its inbound listener's filter chain for the port): -f is then
    optional, the caller is --principal ID or --plaintext (or --from with -f),
    and the destination is the dump's pod: --to :PORT or --port N.

    Exit 0 when it ran; with --expect, 1 when a decision differs or is
    conditional (a filter not evaluated stands before it); 3 when a decision
    hit an internal error (it denies, fail closed).
    """
    if o["config_dump"]:
        results, single, where = decide_with_dump(o)
        if o["fmt"] == "json":
            docs = [
                render.named_json(r, d.to_json()) | ({"configDump": w.to_json()} if w else {})
                for (r, d), w in zip(results, where, strict=True)
            ]
            emit_json(docs[0] if single else [with_istio_version(d) for d in docs])
        else:
            chains = {id(d): w for (_, d), w in zip(results, where, strict=True)}
            echo_text(
                [(r.destination.key, [(r, d)]) for r, d in results],
                expect,
                lambda r, d: render.check_lines(r, d, chains[id(d)], trace=show_trace),
            )
        sys.exit(exit_code(results, expect))
    # the text shows the trace only when asked; JSON always carries it
    snapshot, groups, single = decide_all(o, trace=show_trace or o["fmt"] == "json")
    notes = DecisionNotes(snapshot, (d for _, d in flatten(groups)))
    if o["fmt"] == "json":
        docs = [
            group_json(s, g, lambda r, d: d.to_json() | {"findings": notes.to_json(d)})
            for s, g in groups
        ]
        emit_json(docs[0] if single else [with_istio_version(d) for d in docs])
    else:
        echo_text(
            groups,
            expect,
            lambda r, d: [*render.check_lines(r, d, trace=show_trace), *notes.lines(d)],
        )
    sys.exit(exit_code(flatten(groups), expect))


@click.command("explain")
@request_options
@EXPECT_OPTION
def explain_command(expect: str | None, **o: Any) -> None:
    """Explain a decision: which policies apply and why, and per rule what
    matched or the first clause that failed.

    Takes check's request options and --expect; the evaluation (check's
    --trace) is always shown; against a config dump, use check --config-dump
    --trace. Exit codes as check's.
    """
    # explain's own: which policies apply (through ambient's conversion, which
    # check does not load for a mesh without anything ambient)
    from meshauthz.decide.applicable import applicable_policies

    snapshot, groups, single = decide_all(o, trace=True, explain=True)
    notes = DecisionNotes(snapshot, (d for _, d in flatten(groups)))

    if o["fmt"] == "json":
        docs = [
            group_json(
                s,
                g,
                lambda r, d: {
                    **d.to_json(),
                    "applicable": applicable_policies(snapshot, r),
                    "findings": notes.to_json(d),
                },
            )
            for s, g in groups
        ]
        emit_json(docs[0] if single else [with_istio_version(d) for d in docs])
    else:
        echo_text(
            groups,
            expect,
            lambda r, d: [
                *render.explain_lines(r, d, applicable_policies(snapshot, r)),
                *notes.lines(d),
            ],
        )
    sys.exit(exit_code(flatten(groups), expect))


__all__ = ["check_command", "explain_command"]

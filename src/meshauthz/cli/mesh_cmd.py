"""``meshauthz mesh``: run the manifests for real, a local mesh of Envoy sidecars.

mesh up DIR [--name N] [--state-dir D] [--cert-ttl S] [--jwks URI=FILE]... [--run-commands]
mesh status | mesh logs [NS/WORKLOAD] | mesh down
mesh curl --from NS/WORKLOAD URL [-X M] [-H 'k: v']... [--jwt T] [-d DATA] [--plaintext]
mesh token --issuer I --sub S [--aud A]... [--claim k=v]... | mesh token --jwks
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import click

from meshauthz.cli.common import JWKS_OPTION, PathArg, input_options
from meshauthz.cli.output import camel_keys, emit_json, format_option
from meshauthz.errors import EXIT_FAILED, InputError, Location
from meshauthz.runtime import client, supervisor
from meshauthz.runtime.controlplane import load_plan_snapshot
from meshauthz.runtime.plan import MeshPlan, WorkloadPlan, state_root

F = TypeVar("F", bound=Callable[..., Any])


def _which(f: Any) -> Any:
    f = click.option("--name", help="The mesh (default: the only one up).")(f)
    return click.option(
        "--state-dir",
        type=PathArg(),
        metavar="DIR",
        help="The mesh's state directory (instead of --name).",
    )(f)


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value}: expected a number of seconds above 0")
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _sendable(value: str, what: str) -> str:
    """A value that goes into the request line or a header: HTTP/1.1 cannot
    carry control characters there (curl refuses them too)."""
    if _CONTROL.search(value):
        raise click.BadParameter(f"{value!r}: control characters cannot be sent", param_hint=what)
    return value


def _workload(plan: MeshPlan, ref: str) -> WorkloadPlan:
    try:
        return plan.workload(ref)
    except KeyError as e:
        raise supervisor.MeshError(str(e.args[0])) from None


def _plan(name: str | None, state_dir: str | None) -> MeshPlan:
    state = supervisor.mesh_dir(name, state_dir)
    if not (state / "plan.json").exists():
        raise supervisor.MeshError(f"no mesh at {state}; run: meshauthz mesh up DIR")
    return MeshPlan.load(state)


@click.group("mesh")
def mesh_group() -> None:
    """A local mesh of real Envoy sidecars with mTLS identities, enforcing the
    manifests' policies as istiod would configure them (loopback only)."""


@mesh_group.command("up")
@click.argument("directory", type=click.Path(exists=True))
@_which
@click.option(
    "--cert-ttl",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    help="Workload certificate lifetime (s).",
)
@JWKS_OPTION
@click.option(
    "--run-commands",
    is_flag=True,
    help="Run the commands of the manifests' mesh.meshauthz.io/command annotations "
    "(as argv, without a shell, as you); without it, mesh up refuses such manifests.",
)
@click.option(
    "--timeout",
    default=90.0,
    show_default=True,
    callback=_seconds,
    help="Seconds to wait for ready.",
)
@input_options
@format_option("What was started, for a person or as JSON (the same document as mesh status).")
def up_command(
    directory: str,
    name: str | None,
    state_dir: str | None,
    cert_ttl: int,
    jwks: dict[str, str],
    run_commands: bool,
    timeout: float,
    namespace: str | None,
    exclude: tuple[str, ...],
    fmt: str,
) -> None:
    """Start the mesh for the manifests in DIRECTORY; return when it is ready."""
    start = time.monotonic()
    plan = supervisor.up(
        directory,
        name=name,
        state_dir=state_dir,
        cert_ttl_seconds=cert_ttl,
        jwks=jwks,
        timeout=timeout,
        run_commands=run_commands,
        namespace=namespace,
        exclude=exclude,
    )
    if fmt == "json":
        emit_json(_describe(plan))
        return
    click.echo(
        f"mesh {plan.name} is up in {time.monotonic() - start:.1f}s "
        f"(manifests {plan.manifests}, state {plan.state})"
    )
    _print_plan(plan)
    click.echo(
        f"try: meshauthz mesh curl --from NS/WORKLOAD http://SERVICE.NS.svc.cluster.local/ "
        f"{_which_flag(plan)}"
    )


def _which_flag(plan: MeshPlan) -> str:
    return (
        f"--name {plan.name}"
        if plan.state.parent == state_root()
        else (f"--state-dir {plan.state}")
    )


def _describe(plan: MeshPlan) -> dict[str, Any]:
    status = supervisor.read_json(plan.state / "status.json") or {}
    return {
        "name": plan.name,
        "manifests": plan.manifests,
        "stateDir": str(plan.state),
        "trustDomain": plan.trust_domain,
        "running": supervisor.is_running(plan.state),
        "status": status,
        "workloads": [
            {
                "workload": w.key,
                "address": w.ip,
                "serviceAccount": w.service_account,
                "spiffe": f"spiffe://{plan.trust_domain}/ns/{w.namespace}/sa/{w.service_account}",
                "sidecar": w.sidecar,
                "inbound": {str(p): v for p, v in w.inbound.items()},
                "app": {str(p): v for p, v in w.app_ports.items()},
                "outboundHttp": {str(p): v for p, v in w.outbound_http.items()},
                "outboundTcp": w.outbound_tcp,
                "admin": w.admin_port,
                "command": w.command,
            }
            for w in plan.workloads.values()
        ],
    }


def _print_plan(plan: MeshPlan) -> None:
    status = supervisor.read_json(plan.state / "status.json") or {}
    children = status.get("children", {})
    for w in plan.workloads.values():
        ident = f"spiffe://{plan.trust_domain}/ns/{w.namespace}/sa/{w.service_account}"
        click.echo(f"  {w.key} at {w.ip}  identity {ident}")
        for port in sorted(w.inbound):
            if w.sidecar:
                moved = "" if w.inbound[port] == port else f" (bound on {w.inbound[port]})"
                click.echo(
                    f"    port {port}: sidecar {w.ip}:{w.inbound[port]}{moved} -> app :{w.app_ports[port]}"
                )
            else:
                click.echo(f"    port {port}: app {w.ip}:{w.app_ports[port]} (no sidecar)")
        if w.outbound_http:
            outs = ", ".join(f"{p}->{v}" for p, v in sorted(w.outbound_http.items()))
            click.echo(f"    outbound HTTP (service port -> sidecar port): {outs}")
        for t, v in sorted(w.outbound_tcp.items()):
            click.echo(f"    outbound TCP {t} -> {w.ip}:{v}")
        procs = []
        for kind in ("envoy", "app"):
            c = children.get(f"{w.key}/{kind}")
            if c:
                procs.append(f"{kind} pid {c['pid']}{'' if c['alive'] else ' (exited)'}")
        if w.sidecar:
            procs.append(f"admin {w.ip}:{w.admin_port}")
        if w.command:
            procs.append(f"command {w.command!r}")
        click.echo("    " + ", ".join(procs))
        for note in status.get("notes", {}).get(w.key, []):
            click.echo(f"    note: {note}")


@mesh_group.command("status")
@_which
@format_option("For a person, or the mesh as JSON: its workloads, ports, processes and state.")
def status_command(name: str | None, state_dir: str | None, fmt: str) -> None:
    """What runs where, and the control plane's state. Exit 1 when the control plane
    is not running, the last change of the manifests was not applied, or a sidecar
    refused its configuration (it then denies every request)."""
    plan = _plan(name, state_dir)
    status = supervisor.read_json(plan.state / "status.json") or {}
    running = supervisor.is_running(plan.state)
    failed_closed = status.get("failClosed") or {}
    healthy = (
        running
        and status.get("state") == "ready"
        and not status.get("lastError")
        and not failed_closed
    )
    if fmt == "json":
        emit_json(_describe(plan))
        if not healthy:
            sys.exit(EXIT_FAILED)
        return
    applied = status.get("lastApplied")
    when = time.strftime("%H:%M:%S", time.localtime(applied)) if applied else "never"
    click.echo(
        f"mesh {plan.name}: {'up' if running else 'NOT RUNNING'} "
        f"(control plane {status.get('state', '?')}, pid {status.get('pid')}), "
        f"config generation {status.get('generation')} applied {when}"
    )
    click.echo(f"  manifests {plan.manifests}, state {plan.state}")
    if status.get("lastError"):
        click.echo(f"  last change NOT applied: {status['lastError']}")
    for key, fc in sorted(failed_closed.items()):
        denying = (
            "its inbound listeners deny every request until a change Envoy accepts"
            if fc.get("denyingAll")
            else "it refused the fail-closed configuration too, and may still enforce "
            "the policies that were replaced"
        )
        if fc.get("failClosedError"):
            denying += f" (refused again: {fc['failClosedError']})"
        click.echo(
            f"  {key}: FAILING CLOSED: its Envoy refused generation {fc.get('generation')} "
            f"({fc.get('reason')}); {denying}"
        )
    _print_plan(plan)
    for _key, c in sorted(status.get("certificates", {}).items()):
        click.echo(f"  certificate {c['spiffe']} valid until {c['notAfter']}")
    if not healthy:
        sys.exit(EXIT_FAILED)


@mesh_group.command("down")
@_which
def down_command(name: str | None, state_dir: str | None) -> None:
    """Stop everything the mesh started and remove its state directory (only a
    directory mesh up created; only processes it recorded that are still the same)."""
    state = supervisor.mesh_dir(name, state_dir)
    if not state.exists():
        raise supervisor.MeshError(f"no mesh at {state}")
    result = supervisor.down(state)
    for s in result.skipped:
        click.echo(f"warning: stale pids.json entry {s}", err=True)
    extra = f" ({len(result.killed)} process(es) had to be killed)" if result.killed else ""
    if not result.removed:
        raise supervisor.MeshError(f"mesh {state.name} is down, but {state} could not be removed")
    click.echo(f"mesh {state.name} is down; removed {state}{extra}")


def _fmt_entry(e: dict[str, Any]) -> str:
    d = client.interpret(e)
    who = e.get("peer") or "plaintext"
    if e.get("direction") == "inbound":
        req = f"{e.get('method')} {e.get('authority')}{e.get('path')}"
    else:
        req = f"TCP {e.get('local')}"
    line = f"{e.get('time')} {e.get('workload')} {req} from {who} ({e.get('remote')}) -> {d['status']} {d['decision']}"
    if d.get("policy"):
        line += f" by {d['stage']} {d['policy']} rule {d['rule']}"
    elif d["decision"] == "DENY":
        line += f" ({d['stage']}: {d.get('reason') or 'no ALLOW rule matched'})"
    elif d["stage"] == "default":
        line += " (no policy decided)"
    for dr in d["dryRun"]:
        line += f"; dry-run {dr['stage']} {dr['result']}"
        if dr["policy"]:
            line += f" by {dr['policy']} rule {dr['rule']}"
    return line


@mesh_group.command("logs")
@click.argument("workload", required=False, metavar="[NS/WORKLOAD]")
@_which
@click.option("--all", "show_all", is_flag=True, help="Also outbound entries.")
@click.option(
    "-n",
    "--tail",
    "tail",
    type=click.IntRange(min=0),
    default=0,
    help="Only the last N entries (0: all).",
)
@format_option("One line per request, or the access-log entries as JSON, each with its decision.")
def logs_command(
    workload: str | None,
    name: str | None,
    state_dir: str | None,
    show_all: bool,
    tail: int,
    fmt: str,
) -> None:
    """Access logs of the inbound sidecars: the decision, the policy that decided
    and the dry-run results, per request."""
    plan = _plan(name, state_dir)
    wls = [_workload(plan, workload)] if workload else list(plan.workloads.values())
    entries = []
    for w in wls:
        for e in client.read_log(plan, w):
            direction = e.get("direction")
            if direction == "inbound-listener" and e.get("flags") in (None, "-"):
                continue  # a connection that went on to a filter chain (logged there)
            if direction in ("outbound", "outbound-tcp") and not show_all:
                continue
            entries.append(e)
    entries.sort(key=lambda e: str(e.get("time")))
    if tail:
        entries = entries[-tail:]
    if fmt == "json":
        emit_json([camel_keys({**e, "decision": client.interpret(e)}) for e in entries])
        return
    for e in entries:
        if str(e.get("direction", "")).startswith("outbound"):
            click.echo(
                f"{e.get('time')} {e.get('workload')} outbound {e.get('method')} "
                f"{e.get('authority')}{e.get('path')} -> {e.get('code')}"
            )
        else:
            click.echo(_fmt_entry(e))


@mesh_group.command("curl")
@click.argument("url")
@click.option("--from", "from_", required=True, metavar="NS/WORKLOAD", help="The caller.")
@click.option("-X", "--request", "method", default=None, help="The method (default GET).")
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A request header (repeatable).",
)
@click.option("--jwt", "token", metavar="TOKEN", help="Sent as Authorization: Bearer TOKEN.")
@click.option("-d", "--data", default=None, help="A request body (method defaults to POST).")
@click.option(
    "--plaintext",
    is_flag=True,
    help="Bypass the caller's sidecar: plain HTTP straight to the destination's sidecar.",
)
@click.option("-i", "--include", is_flag=True, help="Also print the response headers.")
@click.option("-v", "--verbose", is_flag=True, help="Also the destination sidecar's log entry.")
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    callback=_seconds,
    help="Seconds to wait for the answer.",
)
@_which
@format_option("The status and body, or the response and the sidecar's decision as JSON.")
def curl_command(
    url: str,
    from_: str,
    method: str | None,
    headers: tuple[str, ...],
    token: str | None,
    data: str | None,
    plaintext: bool,
    include: bool,
    verbose: bool,
    timeout: float,
    name: str | None,
    state_dir: str | None,
    fmt: str,
) -> None:
    """Send a request from a workload through its sidecar (kubectl exec ... curl)."""
    plan = _plan(name, state_dir)
    if not supervisor.is_running(plan.state):
        raise supervisor.MeshError(f"mesh {plan.name} is not running")
    _workload(plan, from_)
    if re.search(r"[\x00-\x20\x7f]", url):  # the request target has no spaces either
        raise click.BadParameter(
            f"{url!r}: spaces and control characters cannot be sent; percent-encode them",
            param_hint="URL",
        )
    try:
        _ = urllib.parse.urlsplit(url).port  # a port that is not one raises
    except ValueError as e:
        raise click.BadParameter(f"{url}: {e}", param_hint="URL") from None
    hs = []
    for h in headers:
        k, sep, v = h.partition(":")
        if not sep or not k.strip():
            raise click.BadParameter(f"{h!r}: expected 'NAME: VALUE'", param_hint="-H")
        hs.append((_sendable(k, "-H"), _sendable(v, "-H")))
    if token is not None:
        _sendable(token, "--jwt")
    m = _sendable(method or ("POST" if data is not None else "GET"), "-X")
    snapshot = load_plan_snapshot(plan)
    resp = client.send(
        plan,
        snapshot,
        from_,
        url,
        method=m,
        headers=hs,
        jwt=token,
        data=data.encode() if data is not None else None,
        plaintext=plaintext,
        timeout=timeout,
    )
    entry = None
    if (verbose or fmt == "json") and resp.target is not None:
        entry = client.find_entry(plan, resp.target.workload, resp.request_id, 2.0)
    if fmt == "json":
        doc = resp.to_json()
        doc["envoy"] = client.interpret(entry) if entry else None
        emit_json(doc)
    else:
        if resp.status == client.RESET:
            click.echo("connection reset by peer (curl: (56) Recv failure)")
        else:
            click.echo(f"HTTP/1.1 {resp.status} {resp.reason}")
            if include:
                for k, v in resp.headers:
                    click.echo(f"{k}: {v}")
            click.echo("")
            click.echo(resp.body, nl=not resp.body.endswith("\n"))
        if verbose:
            click.echo(
                f"* {(entry and _fmt_entry(entry)) or 'no inbound log entry found'}", err=True
            )
    if resp.status == client.RESET:
        sys.exit(EXIT_FAILED)


@mesh_group.command("token")
@click.option("--issuer", help="The iss claim.")
@click.option("--sub", help="The sub claim.")
@click.option("--aud", multiple=True, help="The aud claim (repeatable).")
@click.option("--claim", "claims", multiple=True, metavar="K=V", help="A claim; V may be JSON.")
@click.option("--ttl", default=3600, show_default=True, help="Seconds until exp.")
@click.option(
    "--key",
    "key_file",
    type=PathArg(),
    metavar="PEM",
    help="Sign with this RSA key (default: demo key).",
)
@click.option("--jwks", "print_jwks", is_flag=True, help="Print the demo key's JWKS instead.")
def token_command(
    issuer: str | None,
    sub: str | None,
    aud: tuple[str, ...],
    claims: tuple[str, ...],
    ttl: int,
    key_file: str | None,
    print_jwks: bool,
) -> None:
    """Mint a JWT signed by the mesh's demo key (its JWKS: mesh token --jwks; put it
    in a RequestAuthentication's jwks, or give it to mesh up --jwks URI=FILE)."""
    if print_jwks:
        click.echo(client.demo_jwks(), nl=False)
        return
    if not issuer or not sub:
        raise click.UsageError("--issuer and --sub are required (or --jwks)")
    extra: dict[str, Any] = {}
    for c in claims:
        k, sep, v = c.partition("=")
        if not sep or not k:
            raise click.BadParameter(f"{c!r}: expected K=V", param_hint="--claim")
        try:
            extra[k] = json.loads(v)
        except ValueError:
            extra[k] = v
    try:
        token = client.mint_token(issuer, sub, extra, audience=aud, ttl=ttl, key_file=key_file)
    except (OSError, ValueError, TypeError) as e:
        if key_file is None:  # the bundled demo key: a bug
            raise
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise InputError(f"cannot sign with this key: {why}", location=Location(key_file)) from None
    click.echo(token)


__all__ = ["mesh_group"]

"""``meshauthz diff`` and ``meshauthz equiv``: two sets of manifests compared over
every request, with a witness request (confirmed as ``check`` decides it) for
each class of requests they decide differently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from meshauthz.cli.common import MESH_CONFIG_OPTION, PathArg, load_mesh
from meshauthz.cli.output import FORMAT_OPTION, emit_json
from meshauthz.errors import EXIT_FAILED, EXIT_OK, InputError
from meshauthz.mesh.loading import LoadRecord

if TYPE_CHECKING:  # the engine (and z3) load only when a command that needs them runs
    from meshauthz.symbolic import Change, Comparison, End, Unknown

CALLERS_OPTION = click.option(
    "--callers",
    type=click.Choice(["any", "workloads"]),
    default="any",
    show_default=True,
    help="Who may call: any identity or plaintext client from any address, or only the "
    "manifests' workloads with their own identities and addresses.",
)
EXT_AUTHZ_OPTION = click.option(
    "--ext-authz",
    type=click.Choice(["deny", "allow"]),
    default="deny",
    show_default=True,
    help="What to assume a CUSTOM (ext_authz) provider answers when a request is sent to it.",
)
SHARED_OPTION = click.option(
    "-f",
    "--filename",
    "shared",
    multiple=True,
    type=PathArg(),
    metavar="PATH",
    help="Manifests both sides share (e.g. the workloads), added to each side (repeatable).",
)


_WITHOUT_POLICY = {
    "ALLOW": "no ALLOW policy matches",
    "default": "no ALLOW policy applies",
    "mTLS": "plaintext refused, mTLS is STRICT",
    "CUSTOM": "sent to the CUSTOM provider",
    "JWT": "the JWT filter rejects the token",
    "no sidecar": "nothing enforces",
}


def _end(e: End) -> str:
    verdict = "ALLOW" if e.verdict == "ALLOW" else "DENY"
    if e.policy is None:
        why = _WITHOUT_POLICY.get(str(e.stage))
        return f"{verdict}: {why} ({e.stage})" if why else f"{verdict} ({e.stage})"
    rule = f" rule {e.rule}" if e.rule is not None else ""
    return f"{verdict} by {e.policy}{rule} ({e.stage})"


def _change_lines(c: Change, old: str, new: str) -> Iterator[str]:
    yield f"  {c.description}"
    yield f"    witness: {json.dumps(c.witness)}"
    yield f"    {old}: {_end(c.old)}"
    yield f"    {new}: {_end(c.new)}"


def _unknown_lines(unknown: list[Unknown]) -> Iterator[str]:
    if unknown:
        yield "unknown (not encoded exactly, so not compared):"
        for u in unknown:
            d = u.destination
            yield f"  {d.workload}:{d.port} ({d.protocol}): {u.reason}"


def _compare(
    old_paths: tuple[str, ...],
    new_paths: tuple[str, ...],
    mesh_config: str | None,
    callers: Any,
    ext_authz: Any,
) -> Comparison:
    from meshauthz.symbolic import compare_meshes

    # the documents NEW shares with OLD (most, in a review) are read once
    record = LoadRecord()
    old = load_mesh(old_paths, mesh_config, record=record)
    new = load_mesh(new_paths, mesh_config, record=record)
    result = compare_meshes(old, new, callers=callers, ext_authz=ext_authz)
    if result.compared == 0:
        raise InputError(
            "no workload is defined on both sides, so no request is compared: give the "
            "workloads (with -f for manifests both sides share)"
        )
    return result


@contextmanager
def _at_revision(rev: str, paths: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """The files under ``paths`` as git has them at ``rev``, in a temporary directory."""

    def git(*args: str, cwd: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, check=False
            )
        except OSError as e:
            raise InputError(f"--base needs git: {e}") from None
        if done.returncode != 0:
            raise InputError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
        return done.stdout

    with tempfile.TemporaryDirectory(prefix="meshauthz-base-") as tmp:
        out: list[str] = []
        for p in paths:
            where = p if os.path.isdir(p) else (os.path.dirname(p) or ".")
            if not os.path.exists(where):
                raise InputError(f"{p}: no such file or directory")
            top = git("rev-parse", "--show-toplevel", cwd=where).strip()
            rel = os.path.relpath(os.path.abspath(p), top)
            names = git("ls-tree", "-r", "--name-only", "-z", rev, "--", rel, cwd=top)
            files = [n for n in names.split("\0") if n]
            if not files:
                raise InputError(f"{p}: nothing at {rev}")
            for name in files:
                blob = subprocess.run(
                    ["git", "show", f"{rev}:{name}"], cwd=top, capture_output=True, check=False
                )
                target = Path(tmp, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob.stdout)
            out.append(os.path.join(tmp, rel))
        yield tuple(out)


@click.command("diff")
@click.argument("sides", nargs=-1, type=PathArg(), metavar="OLD NEW | --base REV PATH...")
@click.option(
    "--base",
    metavar="REV",
    help="Compare the PATHs as they are with the same PATHs at this git revision.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["opened", "closed", "any"]),
    default="any",
    show_default=True,
    help="Which changes make the exit code 1.",
)
@CALLERS_OPTION
@EXT_AUTHZ_OPTION
@SHARED_OPTION
@MESH_CONFIG_OPTION
@FORMAT_OPTION
def diff_command(
    sides: tuple[str, ...],
    base: str | None,
    fail_on: str,
    callers: str,
    ext_authz: str,
    shared: tuple[str, ...],
    mesh_config: str | None,
    fmt: str,
) -> None:
    """What NEW allows that OLD denied (opened) and the reverse (closed), for every
    workload and port both define, each class of requests with a witness request
    that check decides as shown, and the deciding policy and rule on each side.

    OLD and NEW are files or directories; with --base REV, the PATHs as they are
    are compared with the same PATHs at git revision REV.

    Exit 0 when they decide every request alike, 1 when they differ (--fail-on
    opened|closed|any; a destination that cannot be compared exactly counts as
    a difference), 2 on unusable input.
    """
    if base is not None:
        if not sides:
            raise click.UsageError("give the PATHs to compare with --base")
        with _at_revision(base, sides) as old_paths:
            result = _compare(old_paths + shared, sides + shared, mesh_config, callers, ext_authz)
    else:
        if len(sides) != 2:
            raise click.UsageError("give OLD and NEW (or --base REV and the PATHs)")
        result = _compare((sides[0], *shared), (sides[1], *shared), mesh_config, callers, ext_authz)
    if fmt == "json":
        emit_json(result.to_json())
    else:
        for line in diff_lines(result):
            click.echo(line)
    failing = {
        "opened": bool(result.opened),
        "closed": bool(result.closed),
        "any": bool(result.opened or result.closed),
    }[fail_on]
    sys.exit(EXIT_FAILED if failing or result.unknown else EXIT_OK)


def diff_lines(result: Comparison) -> Iterator[str]:
    if result.equivalent:
        yield "no change: every request is decided as before"
        return
    for title, changes in (
        ("opened (NEW allows, OLD denied)", result.opened),
        ("closed (NEW denies, OLD allowed)", result.closed),
    ):
        if not changes:
            yield f"{title}: none"
            continue
        yield f"{title}:"
        for c in changes:
            yield from _change_lines(c, "old", "new")
    yield from _unknown_lines(result.unknown)


@click.command("equiv")
@click.argument("a", type=PathArg())
@click.argument("b", type=PathArg())
@CALLERS_OPTION
@EXT_AUTHZ_OPTION
@SHARED_OPTION
@MESH_CONFIG_OPTION
@FORMAT_OPTION
def equiv_command(
    a: str,
    b: str,
    callers: str,
    ext_authz: str,
    shared: tuple[str, ...],
    mesh_config: str | None,
    fmt: str,
) -> None:
    """Whether A and B (files or directories; with -f, the manifests both
    share, such as the workloads) decide every request alike; each difference
    with a witness request that check decides as shown.

    Exit 0 when equivalent, 1 when not (or when a destination cannot be
    compared exactly), 2 on unusable input.
    """
    result = _compare((a, *shared), (b, *shared), mesh_config, callers, ext_authz)
    differences = [*result.opened, *result.closed]
    if fmt == "json":
        emit_json(
            {
                "equivalent": result.equivalent,
                "differences": [_ab(c.to_json()) for c in differences],
                "unknown": [u.to_json() for u in result.unknown],
            }
        )
    else:
        if result.equivalent:
            click.echo("equivalent: every request is decided alike")
        else:
            click.echo("not equivalent" if differences else "unknown")
            for c in differences:
                yield_lines = _change_lines(c, "a", "b")
                for line in yield_lines:
                    click.echo(line)
            for line in _unknown_lines(result.unknown):
                click.echo(line)
    sys.exit(EXIT_OK if result.equivalent else EXIT_FAILED)


def _ab(change: dict[str, Any]) -> dict[str, Any]:
    """A change as equiv reports it: sides ``a`` and ``b``."""
    out = {k: v for k, v in change.items() if k not in ("old", "new")}
    return {**out, "a": change["old"], "b": change["new"]}


__all__ = ["diff_command", "diff_lines", "equiv_command"]

"""What the commands share: loading a mesh, the manifest options, and the
types of their arguments (text, and file names that complete in the shell)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from meshauthz.collector import paused_gc, settle
from meshauthz.mesh import MeshSnapshot
from meshauthz.mesh.loading import LoadRecord
from meshauthz.mesh.loading import load_mesh as load_checked
from meshauthz.translate.provider_findings import mesh_findings

F = TypeVar("F", bound=Callable[..., Any])

# Warnings that change answers: each is also a line on standard error of the
# commands that decide (check, explain, build), not only a validate finding.
ANSWER_WARNINGS = frozenset(
    {"custom-provider-unknown", "custom-provider-rejected", "removed-gateway-name-label"}
)


def load_mesh(
    paths: tuple[str, ...],
    mesh_config: str | None,
    jwks: Mapping[str, str] | None = None,
    *,
    namespace: str | None = None,
    exclude: Sequence[str] = (),
    record: LoadRecord | None = None,
) -> MeshSnapshot:
    """The one loader; its errors (InvalidInput with the findings, other
    unusable input) are reported by the entry point, as every error is: exit 2.
    ``jwks``: local JWKS files by jwksUri (``--jwks``); ``namespace``,
    ``exclude``: ``-n``, ``--exclude``; ``record``: shared by the loads of a
    command that reads two versions of its input (``diff``). The warnings that
    change answers are said on standard error."""
    with loading():
        loaded = load_checked(
            paths,
            mesh_config=mesh_config,
            jwks=jwks,
            namespace=namespace,
            exclude=exclude,
            record=record,
        )
    for f in (*loaded.findings, *mesh_findings(loaded.snapshot)):
        if f.code in ANSWER_WARNINGS:
            click.echo(f.to_text(), err=True)
    return loaded.snapshot


def stdin_read_once(given: Mapping[str, str | Sequence[str] | None]) -> None:
    """Standard input can be read once: refuse '-' given to more than one
    option, or twice to one (``given``: each option's value, by its name)."""
    readers = [
        option
        for option, value in given.items()
        for v in ((value,) if value is None or isinstance(value, str) else value)
        if v == "-"
    ]
    if len(readers) > 1:
        raise click.UsageError(
            f"'-' (standard input) is given more than once ({', '.join(readers)}): "
            "standard input can be read only once"
        )


@contextmanager
def loading() -> Iterator[None]:
    """Around a command's reading of its input: no cyclic collection meanwhile,
    then ``settle``."""
    with paused_gc():
        yield
        settle()


class PathArg(click.Path):
    """A file or directory name ('-' for standard input): typed so that the
    shell completes it; meshauthz checks it itself when it reads it, with its
    own messages, so nothing else is checked here."""

    def __init__(self) -> None:
        super().__init__(allow_dash=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "\x00" in value:  # possible only through main(argv)
            self.fail("a file name cannot contain a NUL byte", param, ctx)
        return value


class Utf8Text(click.types.StringParamType):
    """Text given on the command line. Python decodes arguments that are not
    valid in the locale's encoding with surrogate escapes; such an argument is
    refused (exit 2) as a request file that is not UTF-8 is. File names are
    ``PathArg``s: they may hold any bytes the file system allows."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = super().convert(value, param, ctx)
        for i, ch in enumerate(text):
            if "\udc80" <= ch <= "\udcff":
                self.fail(
                    f"not UTF-8 text: byte 0x{ord(ch) - 0xDC00:02x} at position {i}", param, ctx
                )
        return text


UTF8_TEXT = Utf8Text()


def require_text(command: click.Command) -> None:
    """Every plain string option and argument of ``command`` and its
    subcommands takes UTF-8 text only (file names are ``PathArg``s)."""
    for p in command.params:
        if p.type is click.STRING:
            p.type = UTF8_TEXT
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            require_text(sub)


MANIFEST_OPTION = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    type=PathArg(),
    metavar="PATH",
    help="Manifests: a file, a directory or '-' (repeatable).",
)
MESH_CONFIG_OPTION = click.option(
    "--mesh-config",
    type=PathArg(),
    metavar="FILE",
    help="A MeshConfig YAML file, or the 'istio' ConfigMap as kubectl get cm istio -o yaml "
    "prints it (otherwise the 'istio' ConfigMap among the inputs, or Istio's defaults).",
)
NAMESPACE_HELP = (
    "The namespace of objects that name none, as kubectl apply -n (default: default); "
    "an object naming another namespace is an error."
)
NAMESPACE_OPTION = click.option(
    "-n", "--namespace", "namespace", metavar="NS", default=None, help=NAMESPACE_HELP
)
EXCLUDE_OPTION = click.option(
    "--exclude",
    "exclude",
    multiple=True,
    metavar="GLOB",
    help="Leave out files and directories found in a directory that match GLOB "
    "(repeatable): the path as walked, the path below the directory, or any one name "
    "along it ('charts', '*.json', 'overlays/*/secret.yaml').",
)


def input_options(f: F) -> F:
    """``-n/--namespace`` and ``--exclude``: how the manifests are read."""
    return NAMESPACE_OPTION(EXCLUDE_OPTION(f))


def parse_jwks(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--jwks URI=FILE`` values (``mesh up``, ``check``, ``explain``): the
    keys istiod would fetch from a RequestAuthentication's jwksUri, from a local
    file. Splits at the last ``=`` (a URI may hold one, a file name rarely)."""
    out: dict[str, str] = {}
    for item in items:
        uri, sep, path = item.rpartition("=")
        if not sep or not uri or not path:
            raise click.BadParameter(f"{item!r}: expected URI=FILE", param_hint="--jwks")
        if uri in out and out[uri] != path:
            raise click.BadParameter(
                f"{uri}: given twice ({out[uri]} and {path})", param_hint="--jwks"
            )
        if not os.path.isfile(path):
            raise click.BadParameter(f"{uri}={path}: no such file", param_hint="--jwks")
        # here, not at the top: only --jwks reads keys (start-up)
        from meshauthz.envoy.jwt_authn import jwks_problem

        try:
            with open(path, encoding="utf-8") as f:
                problem = jwks_problem(f.read())
        except (OSError, UnicodeDecodeError) as e:
            problem = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        if problem is not None:
            raise click.BadParameter(f"{uri}={path}: {problem}", param_hint="--jwks")
        out[uri] = path
    return out


def _jwks_callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    return parse_jwks(value)


JWKS_OPTION = click.option(
    "--jwks",
    "jwks",
    multiple=True,
    metavar="URI=FILE",
    callback=_jwks_callback,
    help="The keys of a RequestAuthentication jwksUri, from a local JWKS file (repeatable).",
)

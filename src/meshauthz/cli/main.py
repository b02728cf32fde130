"""Entry point: the command group, and the guard that reports every error the
same way (exit 2 for unusable input and usage errors, 3 for bugs)."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from meshauthz import __version__
from meshauthz.cli.output import (
    printable_streams,
    report_error,
    report_internal_error,
    report_usage_error,
    requested_format,
)
from meshauthz.errors import EXIT_INPUT, EXIT_INTERNAL, MeshauthzError
from meshauthz.resources.istio_release import ISTIO

# Each command's module is imported when the command runs (or help lists it):
# a command line pays for its own command only, and --version for none.
COMMANDS = {
    "validate": ("meshauthz.cli.validate", "validate_command"),
    "analyze": ("meshauthz.cli.analyze_cmd", "analyze_command"),
    "check": ("meshauthz.cli.check", "check_command"),
    "explain": ("meshauthz.cli.check", "explain_command"),
    "build": ("meshauthz.cli.build_cmd", "build_command"),
    "test": ("meshauthz.cli.test_cmd", "test_command"),
    "diff": ("meshauthz.cli.diff_cmd", "diff_command"),
    "equiv": ("meshauthz.cli.diff_cmd", "equiv_command"),
    "redundant": ("meshauthz.cli.redundant_cmd", "redundant_command"),
    "reach": ("meshauthz.cli.reach_cmd", "reach_command"),
    "mesh": ("meshauthz.cli.mesh_cmd", "mesh_group"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            from meshauthz.cli.common import require_text

            module, attr = COMMANDS[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            require_text(command)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__,
    prog_name="meshauthz",
    message=f"%(prog)s %(version)s, modelling Istio {ISTIO}",
)
def cli() -> None:
    """Istio's authorization, without a cluster: validate, build, check and explain
    AuthorizationPolicies exactly as Istio and Envoy would."""


def value_options(args: list[str]) -> set[str]:
    """The options of the command ``args`` names that take a value."""
    cmd: click.Command = cli
    ctx = click.Context(cli)
    for a in args:
        sub = cmd.get_command(ctx, a) if isinstance(cmd, click.Group) else None
        if sub is None:
            break
        cmd = sub
    return {
        name
        for p in cmd.params
        if isinstance(p, click.Option) and not (p.is_flag or p.count)
        for name in p.opts
    }


def kubectl_main() -> None:
    """``kubectl meshauthz ...``: kubectl runs the kubectl-meshauthz executable."""
    main(prog_name="kubectl meshauthz")


def main(argv: list[str] | None = None, prog_name: str = "meshauthz") -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    fmt = requested_format(args, value_options(args))
    printable_streams()
    try:
        cli.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INPUT)
    except click.ClickException as e:
        report_usage_error(e, fmt)
        sys.exit(EXIT_INPUT)
    except MeshauthzError as e:
        report_error(e, fmt)
        sys.exit(EXIT_INPUT)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:  # a bug: say so plainly, keep the details for a report
        report_internal_error(
            f"internal error in meshauthz: {type(e).__name__}: {e} (this is a bug; "
            "set MESHAUTHZ_DEBUG=1 for the details to report)",
            fmt,
        )
        if os.environ.get("MESHAUTHZ_DEBUG"):
            click.echo(traceback.format_exc(), err=True)
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()

"""Entry point: the command group, and the guard that reports every error the
same way (exit 2 for unusable input and usage errors, 3 for bugs)."""

from __future__ import annotations

import os
import sys
import traceback

import click

from meshauthz import __version__
from meshauthz.cli.build_cmd import build_command
from meshauthz.cli.check import check_command, explain_command
from meshauthz.cli.common import require_text
from meshauthz.cli.diff_cmd import diff_command, equiv_command
from meshauthz.cli.mesh_cmd import mesh_group
from meshauthz.cli.output import (
    printable_streams,
    report_error,
    report_internal_error,
    report_usage_error,
    requested_format,
)
from meshauthz.cli.reach_cmd import reach_command
from meshauthz.cli.redundant_cmd import redundant_command
from meshauthz.cli.test_cmd import test_command
from meshauthz.cli.validate import validate_command
from meshauthz.errors import EXIT_INPUT, EXIT_INTERNAL, MeshauthzError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meshauthz")
def cli() -> None:
    """Istio's authorization, without a cluster: validate, build, check and explain
    AuthorizationPolicies exactly as Istio and Envoy would."""


cli.add_command(validate_command)
cli.add_command(check_command)
cli.add_command(explain_command)
cli.add_command(build_command)
cli.add_command(test_command)
cli.add_command(diff_command)
cli.add_command(equiv_command)
cli.add_command(redundant_command)
cli.add_command(reach_command)
cli.add_command(mesh_group)
require_text(cli)


def value_options(args: list[str]) -> set[str]:
    """The options of the command ``args`` names that take a value."""
    cmd: click.Command = cli
    for a in args:
        if not isinstance(cmd, click.Group) or a not in cmd.commands:
            break
        cmd = cmd.commands[a]
    return {
        name
        for p in cmd.params
        if isinstance(p, click.Option) and not (p.is_flag or p.count)
        for name in p.opts
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    fmt = requested_format(args, value_options(args))
    printable_streams()
    try:
        cli.main(args=args, prog_name="meshauthz", standalone_mode=False)
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

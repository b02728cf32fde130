"""Entry point: the guard that reports every error the same way (exit 2 for
unusable input and usage errors, 3 for bugs) around the command group
(``group``)."""

from __future__ import annotations

import os
import sys


def kubectl_main() -> None:
    """``kubectl meshauthz ...``: kubectl runs the kubectl-meshauthz executable."""
    main(prog_name="kubectl meshauthz")


def main(argv: list[str] | None = None, prog_name: str = "meshauthz") -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:
        # answered before click and the group are imported (a third of its time);
        # the same line as the group's --version option prints
        from meshauthz.cli.version import version_line

        try:
            sys.stdout.write(version_line() + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            sys.exit(0)
        return
    from meshauthz.cli.lean_imports import prepare
    from meshauthz.collector import starting

    with starting():  # the command's modules: imported without collections
        prepare()
        import click

        from meshauthz.cli.group import cli, value_options
        from meshauthz.cli.output import (
            printable_streams,
            report_error,
            report_internal_error,
            report_usage_error,
            requested_format,
        )
        from meshauthz.errors import EXIT_INPUT, EXIT_INTERNAL, MeshauthzError

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
            import traceback

            click.echo(traceback.format_exc(), err=True)
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()

"""The command group: each command's module is imported when the command runs
(or help lists it)."""

from __future__ import annotations

import importlib

import click

from meshauthz import __version__
from meshauthz.cli.version import MESSAGE, PROG

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
@click.version_option(__version__, prog_name=PROG, message=MESSAGE)
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


__all__ = ["COMMANDS", "LazyGroup", "cli", "value_options"]

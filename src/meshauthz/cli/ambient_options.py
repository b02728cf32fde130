"""The options ambient-aware commands share: istiod's ambient feature flags."""

from __future__ import annotations

import click

from meshauthz.ambient.flags import AmbientFlags

_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool
_FALSE = ("0", "f", "F", "FALSE", "false", "False")

ISTIOD_FLAG_OPTION = click.option(
    "--istiod-flag",
    "istiod_flags",
    multiple=True,
    metavar="NAME=BOOL",
    help="An istiod feature flag for ambient mode (repeatable): "
    "AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY, PILOT_AUTO_ALLOW_WAYPOINT_POLICY, "
    "ENABLE_LAYERED_WAYPOINT_AUTHORIZATION_POLICIES (all false by default, as in istiod).",
)


def ambient_flags(values: tuple[str, ...]) -> AmbientFlags:
    """Parse ``--istiod-flag`` values; a bad one is a usage error (exit 2)."""
    parsed: dict[str, bool] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or value not in _TRUE + _FALSE:
            raise click.UsageError(f"--istiod-flag expects NAME=true|false, got {item!r}")
        parsed[name] = value in _TRUE
    try:
        return AmbientFlags.from_names(parsed)
    except ValueError as e:
        raise click.UsageError(f"--istiod-flag: {e}") from None

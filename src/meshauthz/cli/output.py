"""Shared printing conventions: text for a person, JSON for a script."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from meshauthz.errors import MeshauthzError

FORMAT_OPTION = click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Text for a person, or JSON with a documented, stable shape.",
)


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def error_json(err: MeshauthzError) -> dict[str, Any]:
    loc = err.location
    return {
        "error": {
            "code": err.code,
            "message": err.message,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
            "field": err.field,
        }
    }


def report_input_error(err: MeshauthzError, fmt: str) -> None:
    if fmt == "json":
        emit_json(error_json(err))
    click.echo(f"error: {err}", err=True)

"""Shared printing conventions: text for a person, JSON for a script.

Every error a command ends with goes through ``report_error``: its text on
standard error and, with ``-o json``, the error object on standard output
(the same object for unusable input, usage errors and internal errors).
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

import click

from meshauthz.errors import MeshauthzError
from meshauthz.resources.istio_release import ISTIO

# The top-level key of every JSON document a command prints (not of error
# objects): the Istio release whose behaviour the answer is.
ISTIO_VERSION_KEY = "istioVersion"

F = TypeVar("F", bound=Callable[..., Any])


def format_option(help: str, choices: Sequence[str] = ("text", "json")) -> Callable[[F], F]:
    """``-o/--output text|json``, the same on every command; ``help`` says what each gives."""
    return click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(list(choices)),
        default="text",
        show_default=True,
        help=help,
    )


FORMAT_OPTION = format_option("Text for a person, or JSON with a documented, stable shape.")


def emit_json(value: Any) -> None:
    """Print a command's JSON output; a document (not an error object) says
    which Istio release it models (``istioVersion``)."""
    if isinstance(value, dict) and set(value) != {"error"}:
        value = {**value, ISTIO_VERSION_KEY: ISTIO.version}
    sys.stdout.write(indented_json(value) + "\n")


def emit_sarif(log: dict[str, Any]) -> None:
    """Print a SARIF log as it is: its schema allows no other top-level key."""
    sys.stdout.write(indented_json(log) + "\n")


def indented_json(value: Any) -> str:
    """``json.dumps(value, indent=2)``, the text every JSON output is, made fast.
    With an indent, ``json`` encodes in pure Python: ``check -o json`` on 24,000
    requests spent 11 of its 14.6 s there. The standard library's C encoder
    writes the text compact, and msgspec indents it, copying every token as
    written (tests/test_cli_output.py checks the two texts are equal)."""
    import json  # here, not at the top: only -o json needs it (start-up of text output)

    from msgspec import DecodeError
    from msgspec.json import format as indent

    compact = json.dumps(value)
    try:
        return indent(compact, indent=2)
    except DecodeError:  # NaN or an infinity: json writes them, JSON has no such token
        return json.dumps(value, indent=2)


def with_istio_version(doc: dict[str, Any]) -> dict[str, Any]:
    """An element of a JSON list output (a decision of several) with ``istioVersion``."""
    return {**doc, ISTIO_VERSION_KEY: ISTIO.version}


def camel_keys(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its keys in the JSON outputs' style (``request_id`` -> ``requestId``)."""
    return {re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), k): v for k, v in doc.items()}


def error_object(
    code: str,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    column: int | None = None,
    field: str | None = None,
) -> dict[str, Any]:
    """The one JSON shape of an error: ``{"error": {code, message, file, line, column, field}}``."""
    return {
        "error": {
            "code": code,
            "message": message,
            "file": file,
            "line": line,
            "column": column,
            "field": field,
        }
    }


def error_json(err: MeshauthzError) -> dict[str, Any]:
    loc = err.location
    doc = error_object(
        err.code,
        err.message,
        file=loc.file if loc else None,
        line=loc.line if loc else None,
        column=loc.column if loc else None,
        field=err.field,
    )
    # not at start-up: --version needs none
    from meshauthz.mesh.loading import InvalidInput, UnreadableInput

    if isinstance(err, InvalidInput):  # the objects Istio would reject, as validate lists them
        doc["error"]["findings"] = [f.to_json() for f in err.errors]
    if isinstance(err, UnreadableInput):  # every file that could not be read, each an error
        doc["error"]["files"] = [error_json(p)["error"] for p in err.problems]
    return doc


def report_error(err: MeshauthzError, fmt: str) -> None:
    """Unusable input (exit 2): the error object on stdout for JSON, the text on stderr."""
    if fmt == "json":
        emit_json(error_json(err))
    from meshauthz.mesh.loading import InvalidInput, UnreadableInput

    if isinstance(err, InvalidInput):
        for line in err.error_lines():
            click.echo(line, err=True)
        click.echo(f"error: {err.message}", err=True)
    elif isinstance(err, UnreadableInput):
        for line in err.error_lines():
            click.echo(f"error: {line}", err=True)
    else:
        click.echo(f"error: {err}", err=True)


def report_usage_error(err: click.ClickException, fmt: str) -> None:
    """A usage error found by the command line parser (a missing option, a bad value)."""
    if fmt == "json":
        param = getattr(err, "param", None)
        field = param.opts[0] if param is not None and param.opts else None
        emit_json(error_object("usage", err.format_message(), field=field))
    err.show()


def report_internal_error(message: str, fmt: str) -> None:
    if fmt == "json":
        emit_json(error_object("internal", message))
    click.echo(message, err=True)


def requested_format(args: Sequence[str], takes_value: Collection[str] = ()) -> str:
    """The output format the command line asks for, read before (or without)
    parsing it, so that even a usage error is reported in it. ``takes_value``:
    the command's options that take a value; their value (even ``--`` or
    ``-o``) is not read as an option, as the parser does not."""
    fmt = "text"
    it = iter(args)
    for a in it:
        if a == "--":
            break
        if a in ("-o", "--output"):
            fmt = next(it, fmt)
        elif a.startswith("--output="):
            fmt = a.partition("=")[2]
        elif a.startswith("-o") and not a.startswith("--"):
            fmt = a[2:]
        elif a in takes_value:
            next(it, None)
    return "json" if fmt == "json" else "text"


def printable_streams() -> None:
    """Never fail on printing: a file name that is not UTF-8 (decoded by Python
    with surrogate escapes) is printed escaped, whatever the locale's encoding."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")

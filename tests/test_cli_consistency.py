"""One command line: every error in the chosen format, every option explained,
file names completed by the shell."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import click
import pytest

from meshauthz.cli import validate as validate_module
from meshauthz.cli.common import PathArg
from meshauthz.cli.group import cli
from meshauthz.cli.main import main

SEED = "examples/seed"
CHECK = ["check", "-f", SEED, "--from", "default/frontend", "--to", "default/backend"]
ERROR_KEYS = {"code", "message", "file", "line", "column", "field"}


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "--from", "a/b", "--to", "c/d"], "Missing option '-f' / '--filename'"),
        ([*CHECK, "--protocol", "udp"], "'udp' is not one of 'http', 'tcp'"),
        ([*CHECK, "--port", "eighty"], "'eighty' is not a valid integer"),
        ([*CHECK, "--no-such-flag"], "No such option '--no-such-flag'"),
        (["validate"], "Missing argument 'PATHS...'"),
        (["build", "-f", SEED], "give --workload NS/NAME, or --namespace NS with --labels"),
        (["test", "--interval", "0", SEED], "0 is not in the range x>=0.05"),
        (["mesh", "logs", "-n", "-1"], "-1 is not in the range x>=0"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
@pytest.mark.parametrize("json_flag", [["-o", "json"], ["--output=json"], ["-ojson"]])
def test_usage_errors_are_json_errors_with_o_json(capsys, args, message, json_flag):
    code, out, err = run(capsys, *args, *json_flag)
    assert code == 2
    doc = json.loads(out)
    assert set(doc) == {"error"} and set(doc["error"]) == ERROR_KEYS
    assert doc["error"]["code"] == "usage" and message in doc["error"]["message"]
    assert message in err  # the text as ever, on stderr
    # without -o json: the text only
    code, out, err = run(capsys, *args)
    assert code == 2 and out == "" and message in err


def test_input_errors_of_every_command_are_json_errors(capsys, tmp_path):
    missing = str(tmp_path / "missing")
    for args in (
        ["validate", missing],
        ["analyze", missing],
        ["check", "-f", missing, "--from", "a/b", "--to", "c/d"],
        ["explain", "-f", missing, "--from", "a/b", "--to", "c/d"],
        ["build", "-f", missing, "--workload", "a/b"],
        ["test", missing],
        ["test", SEED, "--junit", f"{missing}/junit.xml"],  # cannot be written
        ["mesh", "status", "--state-dir", missing],
    ):
        code, out, err = run(capsys, *args, "-o", "json")
        error = json.loads(out)["error"]
        assert code == 2 and set(error) >= ERROR_KEYS, args
        assert error["code"] == "input" and missing in err, args


def test_an_internal_error_is_a_json_error_too(capsys, monkeypatch):
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(validate_module, "read_manifests", boom)
    code, out, err = run(capsys, "validate", SEED, "-o", "json")
    assert code == 3
    error = json.loads(out)["error"]
    assert error["code"] == "internal" and "RuntimeError: injected fault" in error["message"]
    assert "internal error in meshauthz: RuntimeError: injected fault (this is a bug" in err


def _commands(
    cmd: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path) or "meshauthz", cmd
    if isinstance(cmd, click.Group):
        # every command, also those the group imports only when they run
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, name
            yield from _commands(sub, (*path, name))


def test_every_option_of_every_command_has_help():
    missing = [
        f"{where} {param.opts[0]}"
        for where, cmd in _commands(cli)
        for param in cmd.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []
    assert all(cmd.help for _, cmd in _commands(cli))


FILE_PARAMS = {
    "validate": {"paths", "mesh_config"},
    "analyze": {"paths", "mesh_config"},
    "check": {"paths", "request_file", "mesh_config", "config_dump"},
    "explain": {"paths", "request_file", "mesh_config"},
    "build": {"paths", "mesh_config"},
    "test": {"paths", "junit", "mesh_state_dir"},
    "diff": {"sides", "shared", "mesh_config"},
    "equiv": {"a", "b", "shared", "mesh_config"},
    "redundant": {"paths", "mesh_config"},
    "reach": {"paths", "mesh_config", "html"},
    "mesh up": {"directory", "state_dir"},
    "mesh status": {"state_dir"},
    "mesh down": {"state_dir"},
    "mesh logs": {"state_dir"},
    "mesh curl": {"state_dir"},
    "mesh token": {"key_file"},
}


def test_file_name_parameters_complete_as_files():
    commands = dict(_commands(cli))
    for where, names in FILE_PARAMS.items():
        params = {p.name: p for p in commands[where].params}
        for name in names:
            assert isinstance(params[name].type, click.Path), (where, name)
    # and no other parameter names a file without saying so
    for where, cmd in commands.items():
        for p in cmd.params:
            if isinstance(p.type, click.Path):
                assert p.name in FILE_PARAMS.get(where, set()), (where, p.name)
    assert isinstance(commands["validate"].params[0].type, PathArg)


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _meshauthz_completion meshauthz"),
        ("zsh", "#compdef meshauthz"),
        ("fish", "complete --no-files --command meshauthz"),
    ],
)
def test_the_completion_script_is_produced(capsys, monkeypatch, shell, marker):
    monkeypatch.setenv("_MESHAUTHZ_COMPLETE", f"{shell}_source")
    code, out, _ = run(capsys)
    assert code == 0 and marker in out


def test_the_shell_completes_file_names_and_options(capsys, monkeypatch):
    monkeypatch.setenv("_MESHAUTHZ_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "meshauthz validate exa")
    monkeypatch.setenv("COMP_CWORD", "2")
    code, out, _ = run(capsys)
    assert code == 0 and out.splitlines() == ["file,exa"]  # bash then lists the files
    monkeypatch.setenv("COMP_WORDS", "meshauthz check --conf")
    code, out, _ = run(capsys)
    assert code == 0 and out.splitlines() == ["plain,--config-dump"]


def _keys(doc: object) -> Iterator[str]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield k
            yield from _keys(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _keys(v)


@pytest.mark.parametrize(
    "args",
    [
        [*CHECK, "--path", "/api/v1/data", "-H", "x-user: a"],
        ["explain", *CHECK[1:]],
        ["validate", "-v", SEED],
        ["analyze", SEED],
        ["test", "--coverage", SEED, "examples/seed-fixed"],
        ["test", "examples/failing/claims.test.yaml"],
        ["build", "-f", SEED, "--workload", "default/backend"],
        ["check", "--config-dump", "tests/decide/fixtures/seed-backend.config_dump.json"]
        + ["--plaintext", "--to", ":80"],
        ["diff", SEED, "examples/seed-fixed"],
    ],
    ids=[
        "check",
        "explain",
        "validate",
        "analyze",
        "test",
        "test-failing",
        "build",
        "config-dump",
        "diff",
    ],
)
def test_every_json_output_names_its_keys_in_camel_case(capsys, args):
    _, out, _ = run(capsys, *args, "-o", "json")
    # names of fields; keys that are data (Envoy's policy names in build) are not names
    names = {k for k in _keys(json.loads(out)) if re.fullmatch(r"@?\w+", k)}
    assert names and not {k for k in names if not re.fullmatch(r"@?[a-z][a-zA-Z0-9]*", k)}

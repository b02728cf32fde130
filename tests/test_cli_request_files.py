"""Request files as a new user gives them to check and explain: on standard
input or a pipe, empty lists, named requests, errors at their field, the size
limit, the schema's forms; and manifests reached through overlapping paths."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings

from meshauthz.cli.main import main
from meshauthz.errors import InputError
from meshauthz.resources.yamlload import MAX_FILE_BYTES
from tests.conftest import EXAMPLES
from tests.decide.test_request_spec import _parsed, _request_data

SEED = str(EXAMPLES / "seed")
GOOD = {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}


def run(capsys: Any, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def stdin_of(monkeypatch: Any, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


# --- 1. a request on standard input or a pipe is read once ------------------------------

BAD_REQUESTS = {
    "unknown field": '{\n  "from": "default/frontend",\n  "bogus": 1,\n  "to": "default/backend"\n}\n',
    "wrong type": '{\n  "from": "default/frontend",\n  "to": "default/backend",\n  "method": 7\n}\n',
    "truncated": '[{"from": "default/frontend", "to": "defa',
    "unknown workload": '{\n  "from": "default/frontend",\n  "to": "default/nope"\n}\n',
}


@pytest.mark.parametrize("command", ["check", "explain"])
@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("problem", sorted(BAD_REQUESTS))
def test_a_bad_request_on_stdin_says_what_a_file_says(
    capsys, monkeypatch, tmp_path, command, fmt, problem
):
    """The same message as the same text in a file (named by the file given,
    or <stdin>), with its line and field: not "the request file is empty"."""
    text = BAD_REQUESTS[problem]
    path = tmp_path / "requests"  # no suffix: read as the same stream is
    path.write_text(text)
    args = [command, "-f", SEED, "-o", fmt, "--request"]
    code, out_file, err_file = run(capsys, *args, str(path))
    assert code == 2 and "empty" not in err_file and ":" in err_file
    stdin_of(monkeypatch, text)
    code, out, err = run(capsys, *args, "-")
    assert code == 2
    assert (out, err) == (
        out_file.replace(str(path), "<stdin>"),
        err_file.replace(str(path), "<stdin>"),
    )
    r, w = os.pipe()  # --request <(...): a pipe, named /dev/fd/N
    os.write(w, text.encode())
    os.close(w)
    try:
        code, out, err = run(capsys, *args, f"/dev/fd/{r}")
    finally:
        os.close(r)
    assert code == 2
    assert (out, err) == (
        out_file.replace(str(path), f"/dev/fd/{r}"),
        err_file.replace(str(path), f"/dev/fd/{r}"),
    )


def test_an_unknown_workload_on_stdin_names_its_field(capsys, monkeypatch):
    stdin_of(monkeypatch, BAD_REQUESTS["unknown workload"])
    code, _, err = run(capsys, "check", "-f", SEED, "--request", "-")
    assert code == 2 and "<stdin>:3:3: to: no workload or service default/nope" in err, err


# --- 2. one file reached through several paths is read once -----------------------------

PATH_COMMANDS = {
    "validate": lambda *p: ["validate", *p],
    "analyze": lambda *p: ["analyze", *p],
    "redundant": lambda *p: ["redundant", *p],
    "check": lambda *p: ["check", *flags("-f", p), "--from", "default/frontend", "--to",
                         "default/backend"],
    "explain": lambda *p: ["explain", *flags("-f", p), "--from", "default/frontend", "--to",
                           "default/backend"],
    "build": lambda *p: ["build", *flags("-f", p), "--workload", "default/backend"],
    "reach": lambda *p: ["reach", *flags("-f", p)],
}  # fmt: skip


def flags(flag: str, paths: tuple[str, ...]) -> list[str]:
    return [x for p in paths for x in (flag, p)]


@pytest.mark.parametrize("command", sorted(PATH_COMMANDS))
@pytest.mark.parametrize("overlap", ["dir and dir", "dir and file", "file and link"])
def test_a_file_given_twice_is_read_once(capsys, tmp_path, command, overlap):
    """As kubectl apply -f DIR -f DIR/file.yaml applies both (the second is a
    no-op), a file reached again through the paths given is read once: no
    duplicate-object error, and the same answer as with each file once."""
    seed = tmp_path / "seed"
    shutil.copytree(SEED, seed, ignore=shutil.ignore_patterns("*.test.yaml"))
    os.symlink(seed / "backend.yaml", tmp_path / "link.yaml")
    paths = {
        "dir and dir": (str(seed), str(seed)),
        "dir and file": (str(seed), os.path.join(str(seed), "..", "seed", "backend.yaml")),
        "file and link": (str(seed), str(tmp_path / "link.yaml")),
    }[overlap]
    args = PATH_COMMANDS[command]
    once = run(capsys, *args(str(seed)))
    twice = run(capsys, *args(*paths))
    assert "duplicate-object" not in twice[1] + twice[2]
    assert twice == once


def test_two_files_defining_one_object_still_clash(capsys, tmp_path):
    shutil.copytree(SEED, tmp_path / "seed")
    shutil.copy(tmp_path / "seed" / "backend.yaml", tmp_path / "seed" / "backend-copy.yaml")
    code, out, _ = run(capsys, "validate", str(tmp_path / "seed"))
    assert code == 1 and "error[duplicate-object] Deployment default/backend" in out
    code, _, err = run(
        capsys, "check", "-f", str(tmp_path / "seed"), "--from", "default/frontend", "--to",
        "default/backend",
    )  # fmt: skip
    assert code == 2 and "error[duplicate-object] Deployment default/backend" in err


def test_a_suite_naming_a_file_of_its_directory_reads_it_once(capsys, tmp_path):
    shutil.copytree(SEED, tmp_path / "seed")
    suite = tmp_path / "seed" / "seed.test.yaml"
    suite.write_text(suite.read_text().replace("resources: [.]", "resources: [., backend.yaml]"))
    assert "backend.yaml" in suite.read_text()
    code, out, _ = run(capsys, "test", str(suite))
    assert code == 0 and "duplicate-object" not in out, out


@pytest.mark.parametrize(
    ("args", "readers"),
    [
        (["-f", "-", "-f", "-", "--from", "default/frontend", "--to", "default/backend"],
         "-f, -f"),
        (["-f", "-", "--request", "-"], "-f, --request"),
        (["-f", SEED, "--mesh-config", "-", "--request", "-"], "--request, --mesh-config"),
    ],
)  # fmt: skip
def test_standard_input_given_twice_is_a_usage_error(capsys, monkeypatch, args, readers):
    manifests = "".join(
        f"---\n{p.read_text()}" for p in sorted((EXAMPLES / "seed").glob("[!.]*.yaml"))
    )
    for command in ("check", "explain"):
        stdin_of(monkeypatch, manifests)
        code, _, err = run(capsys, command, *args)
        assert code == 2
        assert f"'-' (standard input) is given more than once ({readers})" in err, err


def test_the_loader_refuses_standard_input_twice(capsys, monkeypatch):
    stdin_of(monkeypatch, (EXAMPLES / "seed" / "backend.yaml").read_text())
    code, out, err = run(capsys, "validate", "-", "-")
    assert code == 2 and "standard input can be read only once" in out + err
    assert "no Kubernetes objects" not in out + err


# --- 3. a request file without requests -------------------------------------------------


@pytest.mark.parametrize("text", ["", "null\n", "# nothing yet\n", "[]\n", "[ ]", "---\n[]\n"])
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_request_file_without_requests_is_unusable(capsys, tmp_path, text, suffix):
    """A generator that produced no requests must not make CI pass."""
    path = tmp_path / f"requests{suffix}"
    path.write_text(text)
    code, out, err = run(capsys, "check", "-f", SEED, "--request", str(path), "--expect", "allow")
    assert (code, out) == (2, "")
    assert f"{path}:" in err and "the request file is empty: it holds no requests" in err


# --- 4. a request's name is shown with it ----------------------------------------------


def named_file(tmp_path: Any) -> str:
    path = tmp_path / "requests.yaml"
    path.write_text(
        json.dumps(
            [
                {**GOOD, "name": "frontend reads the data"},
                {**GOOD, "method": "POST"},
                {"name": "to every backend", "from": "default/frontend", "to": "default/backend"},
            ]
        )
    )
    return str(path)


def test_a_request_name_leads_its_text(capsys, tmp_path):
    path = named_file(tmp_path)
    code, out, _ = run(capsys, "check", "-f", SEED, "--request", path, "--expect", "allow")
    heads = [ln for ln in out.splitlines() if not ln.startswith(" ")]
    assert code == 1
    assert heads[0].startswith("frontend reads the data: DENY (403) GET /api/v1/data from ")
    assert heads[0].endswith("<- differs from --expect allow")
    assert heads[1].startswith("DENY (403) POST /api/v1/data from ")  # no name: as before
    assert heads[2].startswith("to every backend: DENY (403) GET / from ")
    code, out, _ = run(capsys, "explain", "-f", SEED, "--request", path)
    heads = [
        ln for ln in out.splitlines() if ln.startswith(("frontend", "to every", "GET", "POST"))
    ]
    assert heads[0].startswith("frontend reads the data: GET /api/v1/data from default/frontend")
    assert heads[1].startswith("POST /api/v1/data from default/frontend")


@pytest.mark.parametrize("command", ["check", "explain"])
def test_a_request_name_is_in_its_json(capsys, tmp_path, command):
    path = named_file(tmp_path)
    code, out, _ = run(capsys, command, "-f", SEED, "--request", path, "-o", "json")
    docs = json.loads(out)
    assert code == 0 and [d.get("name") for d in docs] == [
        "frontend reads the data",
        None,
        "to every backend",
    ]
    assert "name" not in docs[1]  # only when given
    unnamed = {k: v for k, v in docs[0].items() if k != "name"}
    assert list(docs[0]) == ["name", *unnamed] and list(unnamed) == list(docs[1])


def test_a_request_name_on_the_command_line_file_alone(capsys, tmp_path):
    """One named request: the single-decision document, with its name."""
    path = tmp_path / "one.json"
    path.write_text(json.dumps({**GOOD, "name": "n1"}))
    code, out, _ = run(capsys, "check", "-f", SEED, "--request", str(path), "-o", "json")
    assert code == 0 and json.loads(out)["name"] == "n1"
    code, out, _ = run(capsys, "check", "-f", SEED, "--request", str(path))
    assert out.startswith("n1: DENY (403) GET /api/v1/data")


# --- 5. an error about a value names its field ------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("to", "default/nope", "to: no workload or service default/nope"),
        ("from", "default/nope", "from: no workload default/nope"),
    ],
)
def test_an_unresolved_name_is_reported_at_its_field(capsys, tmp_path, field, value, message):
    path = tmp_path / "r.json"
    path.write_text(json.dumps([GOOD, {**GOOD, field: value}], indent=2))
    lines = path.read_text().splitlines()
    (line,) = [n for n, t in enumerate(lines, 1) if value in t]
    column = lines[line - 1].index(f'"{field}"') + 1
    for command in ("check", "explain"):
        code, _, err = run(capsys, command, "-f", SEED, "--request", str(path))
        assert code == 2 and f"{path}:{line}:{column}: {message}" in err, err


# --- 6. the size limit names a request file ---------------------------------------------


def test_a_request_file_over_the_limit_says_so(capsys, tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b" " * MAX_FILE_BYTES + b"]")
    code, _, err = run(capsys, "check", "-f", SEED, "--request", str(path))
    assert code == 2 and "manifest" not in err
    assert "larger than the 32 MiB limit for a request file: split its requests" in err, err


# --- 7. the parser takes what the schema takes ------------------------------------------

SCHEMA = json.loads(files("meshauthz").joinpath("schemas/request.schema.json").read_text())
SCHEMA_VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)

AGAINST_THE_SCHEMA = [
    ({**GOOD, "protocol": "HTTP"}, "protocol", 'expected "http" or "tcp", got \'HTTP\''),
    ({**GOOD, "port": "9080"}, "port", 'expected a port number 1-65535, got a string ("9080")'),
    ({**GOOD, "to": "default/backend:09080"}, "to", "expected a port number 1-65535 after ':'"),
    ({**GOOD, "to": "default/backend:"}, "to", "expected a port number 1-65535 after ':'"),
    ({**GOOD, "to": "default/backend:0"}, "to", "expected a port number 1-65535 after ':'"),
    ({**GOOD, "to": "default/back:end:80"}, "to", 'expected "namespace/name"'),
    ({**GOOD, "to": "default/backend:99999"}, "to", "expected a port number 1-65535"),
]


@pytest.mark.parametrize(("request_", "field", "message"), AGAINST_THE_SCHEMA)
def test_what_the_schema_forbids_is_refused_at_its_field(
    capsys, tmp_path, request_, field, message
):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(request_, SCHEMA)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(request_, indent=2))
    lines = path.read_text().splitlines()
    (line,) = [n for n, t in enumerate(lines, 1) if t.lstrip().startswith(f'"{field}"')]
    code, _, err = run(capsys, "check", "-f", SEED, "--request", str(path))
    assert code == 2 and f"{path}:{line}:3: {field}: {message}" in err, err


@pytest.mark.parametrize(
    "request_",
    [
        {**GOOD, "protocol": "http", "port": 80},
        {**GOOD, "to": "default/backend:80"},
        {**GOOD, "to": "backend.default.svc.cluster.local:80"},
        {"from": {"plaintext": True, "ip": "10.0.0.1"}, "to": "default/backend", "port": 80,
         "protocol": "tcp"},
    ],
)  # fmt: skip
def test_what_the_schema_allows_is_decided(capsys, tmp_path, request_):
    jsonschema.validate(request_, SCHEMA)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(request_))
    code, _, err = run(capsys, "check", "-f", SEED, "--request", str(path))
    assert code == 0, err


def test_the_python_api_names_its_outcomes_as_check_does():
    import meshauthz

    mesh = meshauthz.load(SEED)
    named, unnamed = mesh.check([{**GOOD, "name": "n1"}, GOOD])
    assert named.to_json()["name"] == "n1" and "name" not in unnamed.to_json()
    assert named.explain().startswith("n1: GET /api/v1/data from default/frontend")


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("from: default/frontend\nto: default/backend\nhost:\n", 3, "host"),
        ("from: default/frontend\nto: default/backend\nport: null\n", 3, "port"),
        ("from: {workload: default/frontend, ip: ~}\nto: default/backend\n", 1, "from.ip"),
    ],
)
def test_a_field_without_a_value_is_refused(capsys, tmp_path, text, line, field):
    """The schema has no null values: a field written without one is an
    error at its line, not taken as left out."""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    code, _, err = run(capsys, "check", "-f", SEED, "--request", str(path))
    assert code == 2 and f"{path}:{line}:" in err
    assert f"{field}: no value (null): give one, or leave the field out" in err, err


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(data=_request_data())
def test_the_parser_takes_what_the_schema_takes(data: Any) -> None:
    """Requests near every edge of the format (the fast path's corpus): the
    parser accepts one exactly when the JSON schema does (its formats checked)."""
    assert SCHEMA_VALIDATOR.is_valid(data) == (not isinstance(_parsed(data), InputError)), data

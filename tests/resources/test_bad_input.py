"""Bad input: a clear message with file and line, a documented exit code, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from meshauthz.cli.main import main
from meshauthz.resources.yamlload import MAX_FILE_BYTES

GOOD = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: foo}
spec:
  rules:
  - to:
    - operation:
        methods: ["GET"]
"""


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def test_valid_input_exits_0(capsys, write):
    code, out, _ = run(capsys, "validate", write("p.yaml", GOOD))
    assert code == 0 and "valid: 0 errors" in out


def test_yaml_syntax_error(capsys, write):
    path = write("bad.yaml", GOOD + "  - [unclosed\n")
    code, _, err = run(capsys, "validate", path)
    assert code == 2
    assert f"{path}:10:" in err and "YAML syntax error" in err


def test_wrong_type_names_field_and_line(capsys, write):
    path = write("p.yaml", GOOD.replace('["GET"]', "GET"))
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    assert f"{path}:8:9: error[schema]" in out
    assert 'spec.rules[0].to[0].operation.methods: expected a list, got a string ("GET")' in out


def test_unknown_field_as_strict_field_validation_reports_it(capsys, write):
    path = write("p.yaml", GOOD.replace("methods:", "method:"))
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    assert f"{path}:8:9:" in out and 'unknown field "method"' in out
    assert "spec.rules[0].to[0].operation.method" in out


def test_duplicate_key(capsys, write):
    path = write("p.yaml", GOOD.replace("  rules:", "  action: DENY\n  action: ALLOW\n  rules:"))
    code, _, err = run(capsys, "validate", path)
    assert code == 2
    assert f"{path}:6:3:" in err and "duplicate key 'action' (first defined at line 5)" in err


def test_empty_file(capsys, write):
    path = write("empty.yaml", "")
    code, _, err = run(capsys, "validate", path)
    assert code == 2 and f"{path}:1:" in err and "empty" in err


def test_comments_only_file_is_empty_too(capsys, write):
    code, _, err = run(capsys, "validate", write("c.yaml", "# nothing\n---\n"))
    assert code == 2 and "empty" in err


def test_file_that_is_not_text(capsys, write):
    path = write("bin.yaml", b"apiVersion: v1\n\x00\x01\x02\xff")
    code, _, err = run(capsys, "validate", path)
    assert code == 2 and f"{path}:2:" in err and "not a text file" in err


def test_invalid_utf8(capsys, write):
    path = write(
        "latin1.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: caf\xe9}\n".encode("latin-1"),
    )
    code, _, err = run(capsys, "validate", path)
    assert code == 2 and f"{path}:3:" in err and "not a UTF-8 text file" in err


def test_very_large_file(capsys, write):
    path = write("big.yaml", b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    code, _, err = run(capsys, "validate", path)
    assert code == 2 and path in err and "larger than the 32 MiB limit" in err


def test_alias_bomb_is_refused_quickly(capsys, write):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    code, _, err = run(capsys, "validate", write("bomb.yaml", "\n".join(lines) + "\n"))
    assert code == 2 and "too many values" in err


def test_missing_path(capsys, tmp_path):
    path = str(tmp_path / "nope")
    code, _, err = run(capsys, "validate", path)
    assert code == 2 and f"{path}: no such file or directory" in err


def test_document_that_is_not_an_object_is_skipped(capsys, write):
    # Issue 11 point 7: a document without apiVersion and kind (a list, values.yaml,
    # a JWKS) is not a Kubernetes object: skipped and listed with -v, never an error.
    path = write("list.yaml", GOOD + "---\n- just\n- a list\n")
    code, out, _ = run(capsys, "validate", "-v", path)
    assert code == 0 and "error[" not in out
    assert f"{path}:10:1: skipped not a Kubernetes object (no apiVersion and kind)" in out


def test_a_kind_meshauthz_reads_without_apiversion_is_still_an_error(capsys, write):
    path = write("p.yaml", GOOD.replace("apiVersion: security.istio.io/v1\n", ""))
    code, out, _ = run(capsys, "validate", path)
    assert code == 1 and "error[not-an-object]" in out and "apiVersion is required" in out


def test_json_output_for_input_errors(capsys, write):
    path = write("bad.yaml", "a: [\n")
    code, out, _ = run(capsys, "validate", "-o", "json", path)
    assert code == 2
    err = json.loads(out)["error"]
    assert err["file"] == path and err["line"] == 2 and "YAML syntax error" in err["message"]


def test_json_output_shape(capsys, write):
    path = write("p.yaml", GOOD.replace('["GET"]', "GET"))
    code, out, _ = run(capsys, "validate", "-o", "json", path)
    doc = json.loads(out)
    assert code == 1 and doc["valid"] is False
    assert doc["summary"] == {
        "errors": 1,
        "warnings": 0,
        "files": 1,
        "objects": 0,
        "skipped": 0,
        "unreadable": 0,
    }
    (f,) = doc["findings"]
    assert f == {
        "severity": "error",
        "code": "schema",
        "message": 'expected a list, got a string ("GET")',
        "file": path,
        "line": 8,
        "column": 9,
        "resource": {"kind": "AuthorizationPolicy", "namespace": "foo", "name": "p"},
        "field": "spec.rules[0].to[0].operation.methods",
    }


def test_bad_flag_is_a_usage_error(capsys):
    code, _, err = run(capsys, "validate", "--no-such-flag", "x")
    assert code == 2 and "No such option" in err


def test_verbose_lists_skipped_kinds(capsys, write):
    path = write("s.yaml", GOOD + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
    code, out, _ = run(capsys, "validate", path)
    assert code == 0 and "(1 skipped; -v lists them)" in out
    code, out, _ = run(capsys, "validate", "-v", path)
    assert code == 0 and f"{path}:10:1: skipped Secret default/s (v1)" in out


NAMESPACE_WITH_LABEL = (
    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: {{x: {}}}\n"
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!int x", "'x' is not a valid !!int"),
        ("!!bool maybe", "'maybe' is not a valid !!bool"),
        ("!!timestamp x", "'x' is not a valid !!timestamp"),
        ("!!float zz", "'zz' is not a valid !!float"),
        ("!!python/tuple [1]", "unsupported YAML tag !!python/tuple on a list"),
        ("!!str [a]", "unsupported YAML tag !!str on a list"),
        ("!!set {a}", "unsupported YAML tag !!set on a mapping"),
        ("!foo bar", "unsupported YAML tag !foo"),
    ],
)
def test_explicit_yaml_tags_that_do_not_fit_are_input_errors(capsys, write, value, message):
    path = write("ns.yaml", NAMESPACE_WITH_LABEL.format(value))
    code, _, err = run(capsys, "validate", path)
    assert code == 2
    assert f"{path}:5:15:" in err and message in err


def test_deeply_nested_jwt_claims_are_a_usage_error(capsys):
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    code, _, err = run(
        capsys,
        "check",
        "-f",
        "examples/seed",
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "--jwt-claims",
        deep,
    )
    assert code == 2 and "--jwt-claims is nested too deeply" in err


# --- arguments that are not text ----------------------------------------------------------
# Python decodes an argument that is not valid in the locale's encoding with surrogate
# escapes ('\udcff' for the byte 0xff); capsys's streams are strict UTF-8, as a UTF-8
# locale's are, so printing such a string unescaped would fail here.

CHECK = ["check", "-f", "examples/seed", "--from", "default/frontend", "--to", "default/backend"]


@pytest.mark.parametrize("option", ["--path", "--host", "--method", "--principal", "-H"])
def test_an_argument_that_is_not_utf8_is_a_usage_error(capsys, option):
    value = "x-a: \udcff" if option == "-H" else "/\udcff"
    code, out, err = run(capsys, *CHECK, option, value)
    assert code == 2 and out == ""
    position = value.index("\udcff")
    assert f"not UTF-8 text: byte 0xff at position {position}" in err
    code, out, _ = run(capsys, *CHECK, option, value, "-o", "json")
    error = json.loads(out)["error"]
    assert code == 2 and error["code"] == "usage" and "not UTF-8 text" in error["message"]


def test_file_names_may_hold_any_bytes_and_are_printed_escaped(capsys, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    name = os.fsdecode(b"caf\xe9.yaml")  # a Latin-1 file name
    (d / name).write_text(GOOD.replace('["GET"]', "GET"))
    for arg in (str(d), str(d / name)):
        code, out, _ = run(capsys, "validate", arg)
        assert code == 1 and "caf\\udce9.yaml:8:9: error[schema]" in out
    code, _, err = run(capsys, "validate", str(tmp_path / name))
    assert code == 2 and "caf\\udce9.yaml: no such file or directory" in err
    code, _, err = run(capsys, "validate", "a\x00b")
    assert code == 2 and "a file name cannot contain a NUL byte" in err


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_non_utf8_bytes_on_a_real_command_line(tmp_path, locale):
    env = {**os.environ, "LC_ALL": locale, "PYTHONIOENCODING": "utf-8:strict"}
    cmd = [sys.executable, "-m", "meshauthz.cli.main", *CHECK, "--path", b"/\xff"]
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
    assert p.returncode == 2 and b"not UTF-8 text: byte 0xff at position 1" in p.stderr
    bad = tmp_path / os.fsdecode(b"\xff.yaml")
    bad.write_text("a: [\n")
    p = subprocess.run(
        [sys.executable, "-m", "meshauthz.cli.main", "validate", str(tmp_path)],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 2 and b"\\udcff.yaml:2:" in p.stderr and b"YAML syntax error" in p.stderr


# --- no manifests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "{d}"),
        ("validate", "examples/seed", "{d}"),
        ("check", "-f", "{d}", "--from", "a/b", "--to", "c/d"),
        ("build", "-f", "{d}", "--workload", "a/b"),
        ("mesh", "up", "{d}", "--state-dir", "{state}"),
    ],
    ids=["validate", "validate-two", "check", "build", "mesh-up"],
)
def test_a_directory_without_manifests_is_unusable_input(capsys, tmp_path, args):
    d = tmp_path / "empty"
    (d / "sub").mkdir(parents=True)
    (d / "only.test.yaml").write_text("cases: []\n")  # a suite is not a manifest
    (d / "notes.txt").write_text("x\n")
    state = tmp_path / "state"
    argv = [a.format(d=d, state=state) for a in args]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert f"error: {d}: no manifests found: no .yaml, .yml or .json files" in err
    assert not state.exists()  # mesh up started nothing


def test_service_entry_with_a_wrong_type_names_field_and_line(capsys, write):
    text = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: foo}
spec:
  hosts: [api.example.com]
  ports:
  - number: https
"""
    path = write("se.yaml", text)
    code, out, _ = run(capsys, "validate", path)
    assert code == 1
    assert f"{path}:7:5: error[schema] ServiceEntry foo/ext: spec.ports[0].number" in out

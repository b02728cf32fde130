"""The one loader: every front end gets the same answer about the same input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshauthz.errors import InputError
from meshauthz.mesh.loading import SHOWN_ERRORS, InvalidInput, load_mesh, read_manifests
from meshauthz.resources.meshconfig import MeshConfig
from meshauthz.runtime import supervisor
from meshauthz.suite.runner import run_paths
from tests.conftest import EXAMPLES

REJECTED = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.300"]}}]
"""
SUMMARY = (
    "1 object error(s): the cluster would reject these objects (Istio or the API server); "
    "fix them first (meshauthz validate shows every finding)"
)
FINDING = (
    "p.yaml:7:33: error[invalid-ip-block] AuthorizationPolicy default/bad: "
    "spec.rules[0].from[0].source.ipBlocks[0]: bad IP address (10.0.0.300)"
)


def _seed_with(tmp_path: Path, extra: str) -> Path:
    d = tmp_path / "m"
    d.mkdir()
    for f in (EXAMPLES / "seed").glob("*.yaml"):
        if f.name.endswith(".test.yaml"):
            continue
        (d / f.name).write_text(f.read_text())
    (d / "p.yaml").write_text(extra)
    return d


def test_rejected_objects_raise_with_their_findings(tmp_path: Path, monkeypatch) -> None:
    d = _seed_with(tmp_path, REJECTED)
    monkeypatch.chdir(d)
    with pytest.raises(InvalidInput) as e:
        load_mesh(["."])
    assert isinstance(e.value, InputError)
    assert [f.code for f in e.value.errors] == ["invalid-ip-block"]
    assert str(e.value).splitlines() == [FINDING.replace("p.yaml", "./p.yaml"), SUMMARY]
    # validate reports on the same reading and validation, without raising.
    checked = read_manifests(["."])
    assert checked.errors == e.value.errors


def test_schema_errors_reject_too(tmp_path: Path) -> None:
    d = _seed_with(tmp_path, REJECTED.replace('["10.0.0.300"]', '"10.0.0.3"'))
    with pytest.raises(InvalidInput) as e:
        load_mesh(d)
    assert [f.code for f in e.value.errors] == ["schema"]
    assert "expected a list" in str(e.value)


def test_warnings_and_skipped_objects_come_back_with_the_mesh(tmp_path: Path) -> None:
    warned = REJECTED.replace(
        '- from: [{source: {ipBlocks: ["10.0.0.300"]}}]', "- to: [{operation: {methods: [GET]}}]"
    )
    secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
    loaded = load_mesh(_seed_with(tmp_path, warned + secret))
    assert [f.code for f in loaded.findings] == ["deny-http-only"]
    assert [(s.kind, s.name) for s in loaded.skipped] == [("Secret", "s")]
    assert loaded.snapshot.workload("default/backend").key == "default/backend"


def test_unreadable_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or directory") as e:
        load_mesh([str(tmp_path / "nothing")])
    assert not isinstance(e.value, InvalidInput)


def test_a_mesh_config_object_takes_the_place_of_the_configmap() -> None:
    mc = MeshConfig(root_namespace="root", trust_domain="td.example")
    snap = load_mesh(EXAMPLES / "seed", mesh_config=mc).snapshot
    assert snap.mesh_config is mc
    assert snap.identity("default/frontend").principal == "td.example/ns/default/sa/frontend"


def test_local_jwks_are_inlined_for_their_uri(tmp_path: Path) -> None:
    ra = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: https://issuer.example/jwks.json
  - issuer: https://other.example
    jwksUri: https://other.example/jwks.json
"""
    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": []}')
    d = _seed_with(tmp_path, ra)
    loaded = load_mesh(d, jwks={"https://issuer.example/jwks.json": keys})
    rules = loaded.manifests.request_authentications[0].spec.jwt_rules
    assert [r.jwks for r in rules] == ['{"keys": []}', ""]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshauthz.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "-f", ".", "--from", "default/frontend", "--to", "default/backend"),
        ("explain", "-f", ".", "--from", "default/frontend", "--to", "default/backend"),
        ("build", "-f", ".", "--workload", "default/backend"),
    ],
    ids=["check", "explain", "build"],
)
def test_commands_refuse_rejected_objects_the_same_way(tmp_path: Path, args: tuple) -> None:
    d = _seed_with(tmp_path, REJECTED)
    p = _cli(*args, "-o", "json", cwd=d)
    assert p.returncode == 2
    assert p.stderr.splitlines() == [FINDING.replace("p.yaml", "./p.yaml"), f"error: {SUMMARY}"]
    # the script reading stdout gets the error object, with the findings validate lists
    error = json.loads(p.stdout)["error"]
    assert (error["code"], error["message"]) == ("rejected", SUMMARY)
    assert [f["code"] for f in error["findings"]] == ["invalid-ip-block"]


def test_thousands_of_errors_are_listed_briefly_then_counted(tmp_path: Path) -> None:
    # A generated input with one mistake repeated: the commands show a few errors and
    # how many more (validate and the JSON error object keep every one).
    docs = (REJECTED.replace("name: bad", f"name: bad{i}") for i in range(1500))
    d = _seed_with(tmp_path, "---\n".join(docs))
    p = _cli("build", "-f", ".", "--workload", "default/backend", "-o", "json", cwd=d)
    assert p.returncode == 2
    lines = p.stderr.splitlines()
    assert len(lines) == SHOWN_ERRORS + 2
    assert all("error[invalid-ip-block]" in line for line in lines[:SHOWN_ERRORS])
    assert lines[-2:] == [
        f"... and {1500 - SHOWN_ERRORS} more error(s)",
        "error: " + SUMMARY.replace("1 object", "1500 object"),
    ]
    assert len(json.loads(p.stdout)["error"]["findings"]) == 1500
    with pytest.raises(InvalidInput) as e:
        load_mesh([d])
    assert len(e.value.errors) == 1500
    assert str(e.value).splitlines()[SHOWN_ERRORS:] == lines[-2:-1] + [e.value.message]


def test_test_runner_reports_rejected_objects_per_suite(tmp_path: Path) -> None:
    d = _seed_with(tmp_path, REJECTED)
    (d / "s.test.yaml").write_text(
        "resources: [.]\ncases: [{name: c, request: {from: default/frontend, "
        "to: default/backend}, expect: DENY}]\n"
    )
    [suite] = run_paths([str(d)]).suites
    assert [f.code for f in suite.findings] == ["invalid-ip-block"] and not suite.cases


def test_mesh_up_refuses_rejected_objects_before_starting_anything(tmp_path: Path) -> None:
    d = _seed_with(tmp_path, REJECTED)
    state = tmp_path / "state"
    with pytest.raises(InvalidInput):
        supervisor.up(str(d), state_dir=str(state))
    assert not state.exists()
    # On the command line: the findings and exit 2 (input), not an internal error.
    p = _cli("mesh", "up", str(d), "--state-dir", str(state), cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "invalid-ip-block" in p.stderr and SUMMARY in p.stderr
    assert not state.exists()

"""check / explain / build on the examples, through the command line."""

from __future__ import annotations

import json

import pytest
import yaml

from meshauthz.cli.main import main
from meshauthz.decide.request_spec import load_request_file
from meshauthz.errors import InputError
from tests.conftest import EXAMPLES

SEED = str(EXAMPLES / "seed")
FIXED = str(EXAMPLES / "seed-fixed")


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def test_check_json_shape(capsys):
    code, out, _ = run(
        capsys,
        "check",
        "-f",
        SEED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "--path",
        "/api/v1/data",
        "-o",
        "json",
    )
    d = json.loads(out)
    assert code == 0
    assert {
        k: d[k] for k in ("decision", "status", "stage", "policy", "rule", "audit", "dryRun")
    } == {
        "decision": "DENY",
        "status": 403,
        "stage": "DENY",
        "policy": "default/deny-all-backend",
        "rule": 0,
        "audit": False,
        "dryRun": [],
    }
    assert isinstance(d["trace"], list) and d["trace"][0]["file"].endswith("deny-all-backend.yaml")


def test_check_expect_mismatch_exits_1(capsys):
    args = [
        "check",
        "-f",
        SEED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "--path",
        "/api/v1/data",
    ]
    code, out, _ = run(capsys, *args, "--expect", "allow")
    assert code == 1 and out.startswith(
        "DENY (403) GET /api/v1/data from default/frontend to default/backend port 80"
    )
    assert run(capsys, *args, "--expect", "deny")[0] == 0


def test_check_fixed_allows_and_names_the_policy(capsys):
    code, out, _ = run(
        capsys,
        "check",
        "-f",
        FIXED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend:80",
        "--path",
        "/api/v1/data",
        "--expect",
        "allow",
    )
    assert code == 0 and "policy: default/allow-frontend-get-data rule 0" in out


def test_check_request_file_with_a_list(capsys, write):
    path = write(
        "reqs.yaml",
        yaml.safe_dump(
            [
                {
                    "from": "default/frontend",
                    "to": "default/backend",
                    "method": "GET",
                    "path": "/api/v1/data",
                },
                {
                    "from": "default/frontend",
                    "to": "default/backend",
                    "method": "POST",
                    "path": "/api/v1/data",
                },
            ]
        ),
    )
    code, out, _ = run(capsys, "check", "-f", FIXED, "--request", path, "-o", "json")
    assert code == 0 and [d["decision"] for d in json.loads(out)] == ["ALLOW", "DENY"]


def test_check_unknown_workload_is_an_input_error(capsys):
    code, _, err = run(
        capsys, "check", "-f", SEED, "--from", "default/nope", "--to", "default/backend"
    )
    assert code == 2 and "default/nope" in err


def test_check_needs_a_destination(capsys):
    code, _, err = run(capsys, "check", "-f", SEED, "--from", "default/frontend")
    assert code == 2 and "--to" in err


def test_explain_says_why_the_seed_denies(capsys):
    code, out, _ = run(
        capsys,
        "explain",
        "-f",
        SEED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "--path",
        "/api/v1/data",
    )
    assert code == 0
    assert "=> DENY (403)" in out and "DENY policies are evaluated before ALLOW" in out
    assert (
        "DENY   default/deny-all-backend" in out and "ALLOW  default/allow-frontend-get-data" in out
    )


def test_explain_nearest_miss_on_the_fixed_example(capsys):
    code, out, _ = run(
        capsys,
        "explain",
        "-f",
        FIXED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "-X" if False else "--method",
        "POST",
        "--path",
        "/api/v1/data",
    )
    assert code == 0 and "to.operation.methods: GET does not match" in out


def test_build_prints_the_filters_in_order(capsys):
    code, out, _ = run(capsys, "build", "-f", SEED, "--workload", "default/backend", "-o", "json")
    filters = json.loads(out)
    assert code == 0
    assert [f["typedConfig"]["rules"].get("action", "ALLOW") for f in filters] == ["DENY", "ALLOW"]
    assert (
        "ns[default]-policy[deny-all-backend]-rule[0]"
        in filters[0]["typedConfig"]["rules"]["policies"]
    )


def test_build_by_namespace_and_labels_and_tcp(capsys):
    code, out, _ = run(
        capsys,
        "build",
        "-f",
        SEED,
        "--namespace",
        "default",
        "--labels",
        "app=backend",
        "--protocol",
        "tcp",
    )
    docs = list(yaml.safe_load_all(out))
    assert code == 0 and [d["name"] for d in docs] == ["envoy.filters.network.rbac"] * 2


SEED_DENIED = (
    "-f",
    SEED,
    "--from",
    "default/frontend",
    "--to",
    "default/backend",
    "--path",
    "/api/v1/data",
)


def test_an_internal_error_is_never_the_expected_deny(capsys, failing_matcher):
    # Without the fault this request is denied and --expect deny exits 0 (above);
    # with it the decision is a fail-closed DENY: exit 3, and said on stderr.
    for command in ("check", "explain"):
        code, out, err = run(capsys, command, *SEED_DENIED, "--expect", "deny")
        assert code == 3, command
        assert (
            "DENY (403)" in out
            and f"internal error and denies (fail closed): {failing_matcher}" in out
        )
        assert err == (
            "error: internal error in meshauthz deciding GET /api/v1/data from default/frontend "
            f"to default/backend port 80: {failing_matcher}; its DENY is fail-closed, not an "
            "answer (this is a bug; set MESHAUTHZ_DEBUG=1 for the details to report)\n"
        )
    # without --expect too, and in JSON: the decision says so, the exit code too
    code, out, _ = run(capsys, "check", *SEED_DENIED, "-o", "json")
    d = json.loads(out)
    assert code == 3 and (d["decision"], d["stage"], d["error"]) == (
        "DENY",
        "error",
        failing_matcher,
    )


def test_explain_takes_expect(capsys):
    assert run(capsys, "explain", *SEED_DENIED, "--expect", "deny")[0] == 0
    code, out, _ = run(capsys, "explain", *SEED_DENIED, "--expect", "allow")
    assert code == 1 and out.startswith("GET /api/v1/data from default/frontend")


def test_check_json_reports_the_remote_address_it_used(capsys):
    args = ["check", "-f", SEED, "--from", "default/frontend", "--to", "default/backend"]

    def remote(*extra: str) -> str:
        code, out, _ = run(capsys, *args, *extra, "-o", "json")
        assert code == 0
        return json.loads(out)["request"]["remoteIP"]

    # a sidecar's inbound HCM trusts no hop: the address X-Forwarded-For ends with
    assert remote("-H", "x-forwarded-for: 198.51.100.1, 203.0.113.7") == "203.0.113.7"
    # without the header: the caller's own address
    _, out, _ = run(capsys, *args, "-o", "json")
    request = json.loads(out)["request"]
    assert request["remoteIP"] == request["from"]["ip"] is not None
    assert remote("--remote-ip", "192.0.2.99") == "192.0.2.99"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_check_request_file_errors_name_their_line(capsys, tmp_path, suffix):
    """A request file is read without positions for speed; an error found in it,
    or a name the mesh does not hold, is still reported with its line."""
    good = {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}
    many = [good] * 3 + [{**good, "to": "default/nope"}] + [good]
    path = tmp_path / f"requests{suffix}"
    text = json.dumps(many, indent=1) if suffix == ".json" else yaml.safe_dump(many)
    path.write_text(text)
    where = load_request_file(str(path))[3].location  # the request's own line
    assert where is not None and where.line is not None and where.line > 1
    code, _, err = run(capsys, "check", "-f", SEED, "--request", str(path))
    assert code == 2 and "default/nope" in err
    assert f"{where}: to: no workload or service default/nope" in err, err
    many[1] = {**good, "method": 7}  # a malformed request: read again with positions
    text = json.dumps(many, indent=1) if suffix == ".json" else yaml.safe_dump(many)
    path.write_text(text)
    with pytest.raises(InputError) as e:
        load_request_file(str(path))  # positions: the message names the field's line
    assert e.value.location is not None and e.value.location.line is not None
    code, _, err = run(capsys, "check", "-f", SEED, "--request", str(path))
    assert code == 2 and f"{e.value.location}:" in err, err


def test_check_request_decides_repeated_requests_alike(capsys, tmp_path):
    good = {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}
    other = {**good, "method": "DELETE"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps([good, other, good, other, good]))
    code, out, _ = run(capsys, "check", "-f", SEED, "--request", str(path), "-o", "json")
    docs = json.loads(out)
    assert code == 0 and docs[0] == docs[2] == docs[4] and docs[1] == docs[3]


def test_check_request_shows_progress_on_a_terminal_only(tmp_path):
    """A long check --request draws a progress bar on stderr when stderr is a
    terminal; stdout (the decisions) is the same either way."""
    import os
    import pty
    import subprocess
    import sys

    good = {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{**good, "path": f"/api/v1/{i}"} for i in range(2500)]))
    args = [sys.executable, "-m", "meshauthz.cli.main", "check", "-f", SEED, "--request", str(path)]
    plain = subprocess.run(args, capture_output=True, text=True, timeout=600)
    master, slave = pty.openpty()
    try:
        tty = subprocess.run(args, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=600)
        os.close(slave)
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(master)
    assert plain.returncode == tty.returncode == 0
    assert tty.stdout == plain.stdout and plain.stdout.count("\n") >= 2500
    assert "deciding" not in plain.stderr and b"deciding" in drawn

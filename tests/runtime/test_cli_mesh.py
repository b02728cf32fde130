"""``meshauthz mesh`` as a user runs it: up, curl, logs, status, token, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt as pyjwt
import pytest

from meshauthz.runtime import supervisor

from .conftest import EXAMPLES, envoy_or_skip


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, "-m", "meshauthz.cli.main", "mesh", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"mesh {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def env(tmp_path: Path):
    envoy_or_skip()
    e = {**os.environ, "MESHAUTHZ_STATE_HOME": str(tmp_path / "state")}
    yield e
    root = tmp_path / "state"
    for plan in root.glob("*/plan.json"):
        supervisor.down(plan.parent, timeout=10)


def test_cli_round_trip(env: dict[str, str], tmp_path: Path) -> None:
    up = run(env, "up", str(EXAMPLES / "seed"))
    assert "mesh seed is up" in up.stdout
    assert "default/backend at 127." in up.stdout
    assert "spiffe://cluster.local/ns/default/sa/frontend" in up.stdout
    # Two meshes never collide: a second one from the same manifests, another name.
    up2 = run(env, "up", str(EXAMPLES / "seed-fixed"), "--name", "fixed")
    assert "mesh fixed is up" in up2.stdout

    r = run(
        env,
        "curl",
        "--name",
        "seed",
        "--from",
        "default/frontend",
        "http://backend.default.svc.cluster.local/api/v1/data",
    )
    assert r.stdout.startswith("HTTP/1.1 403 Forbidden")
    assert "RBAC: access denied" in r.stdout
    r = run(
        env,
        "curl",
        "--name",
        "fixed",
        "--from",
        "default/frontend",
        "http://backend.default.svc.cluster.local/api/v1/data",
        "-o",
        "json",
    )
    doc = json.loads(r.stdout)
    assert doc["status"] == 200
    assert doc["envoy"]["policy"] == "default/allow-frontend-get-data"
    assert json.loads(doc["body"])["caller"] == "spiffe://cluster.local/ns/default/sa/frontend"

    logs = run(env, "logs", "--name", "seed", "default/backend")
    assert "403 DENY by DENY default/deny-all-backend rule 0" in logs.stdout
    # as JSON, in the key style of every JSON output (camelCase), with its decision
    entries = json.loads(run(env, "logs", "--name", "fixed", "-o", "json").stdout)
    [entry] = [e for e in entries if e["requestId"] == doc["requestId"]]
    assert "networkRbac" in entry
    assert not [k for k in entry if "_" in k]
    assert entry["decision"]["policy"] == "default/allow-frontend-get-data"
    # a workload the mesh does not run is unusable input, not a bug
    nope = run(env, "logs", "--name", "fixed", "default/nope", "-o", "json", check=False)
    assert nope.returncode == 2 and "no workload default/nope" in nope.stderr
    assert json.loads(nope.stdout)["error"]["code"] == "input"
    st = run(env, "status", "--name", "fixed")
    assert "mesh fixed: up" in st.stdout

    tok = run(env, "token", "--issuer", "https://issuer.test", "--sub", "alice", "--claim", "n=5")
    claims = pyjwt.decode(tok.stdout.strip(), options={"verify_signature": False})
    assert (claims["iss"], claims["sub"], claims["n"]) == ("https://issuer.test", "alice", 5)
    jwks = json.loads(run(env, "token", "--jwks").stdout)
    assert jwks["keys"][0]["kid"] == "meshauthz-demo"

    # Without --name while two are up: refused, naming them.
    amb = run(env, "status", check=False)
    assert amb.returncode != 0 and "several meshes are up" in amb.stderr

    pids = supervisor.recorded_pids(tmp_path / "state" / "seed")
    assert len(pids) == 5  # the control plane, two Envoys, two applications
    down = run(env, "down", "--name", "seed")
    assert "mesh seed is down" in down.stdout
    assert down.stderr == ""  # every recorded process was the mesh's: nothing stale
    assert not (tmp_path / "state" / "seed").exists()
    assert not any(supervisor._alive(p) for p in pids)
    run(env, "down", "--name", "fixed")

"""The control plane's behaviour: JWKS from a local file, refused manifests, bad input."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshauthz.runtime import client, supervisor

from .conftest import copy_example

BACKEND = "http://backend.default.svc.cluster.local/api/v1/data"

JWT_BY_URI = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: by-uri, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: https://issuer.example/.well-known/jwks.json
  - issuer: https://elsewhere.example
    jwksUri: https://elsewhere.example/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-alice, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]
"""


def test_jwks_from_a_local_file(mesh_runner, tmp_path: Path) -> None:
    d = copy_example(
        "seed", tmp_path / "jwt", skip=("deny-all-backend.yaml", "allow-frontend-get-data.yaml")
    )
    (d / "jwt.yaml").write_text(JWT_BY_URI)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(client.demo_jwks())
    mesh = mesh_runner(d, jwks={"https://issuer.example/.well-known/jwks.json": str(jwks)})
    alice = client.mint_token("https://issuer.example", "alice")
    bob = client.mint_token("https://issuer.example", "bob")
    other = client.mint_token("https://elsewhere.example", "alice")
    assert mesh.status("default/frontend", BACKEND, jwt=alice) == 200
    assert mesh.status("default/frontend", BACKEND, jwt=bob) == 403
    assert mesh.status("default/frontend", BACKEND) == 403  # no token: no request principal
    # A jwksUri without local keys: istiod's fake JWKS, the token fails verification.
    r = mesh.curl("default/frontend", BACKEND, jwt=other)
    assert r.status == 401
    assert r.body in (
        "Jwt verification fails",
        "Jwks doesn't have key to match kid or alg from Jwt",
    )
    status = supervisor.read_json(mesh.state / "status.json") or {}
    assert any("elsewhere.example" in n for n in status["notes"]["default/backend"])


def test_rejected_manifests_keep_the_running_configuration(mesh_runner, tmp_path: Path) -> None:
    d = copy_example("seed-fixed", tmp_path / "fixed")
    mesh = mesh_runner(d)
    assert mesh.status("default/frontend", BACKEND) == 200
    bad = (
        (d / "allow-frontend-get-data.yaml")
        .read_text()
        .replace('methods: ["GET"]', 'methods: "GET"')
    )
    mesh.put("allow-frontend-get-data.yaml", bad)
    deadline = time.monotonic() + 3
    status: dict = {}
    while time.monotonic() < deadline and not status.get("lastError"):
        status = supervisor.read_json(mesh.state / "status.json") or {}
        time.sleep(0.05)
    assert "expected a list" in status["lastError"]
    # mesh status says so, and fails, until a change is applied again.
    st = mesh_status(mesh.state)
    assert st.returncode == 1
    assert "last change NOT applied" in st.stdout and "expected a list" in st.stdout
    # The Envoys still enforce the last good configuration.
    from meshauthz.runtime.controlplane import load_snapshot

    good = copy_example("seed-fixed", tmp_path / "good")
    snap = load_snapshot(str(good))
    assert mesh.status("default/frontend", BACKEND, snapshot=snap) == 200
    assert mesh.status("default/frontend", BACKEND, method="POST", snapshot=snap) == 403
    mesh.put("allow-frontend-get-data.yaml", (good / "allow-frontend-get-data.yaml").read_text())
    mesh.wait_for(lambda: mesh_status(mesh.state).returncode, 0)


def mesh_status(state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshauthz.cli.main", "mesh", "status", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_refuses_manifests_istio_would_reject(tmp_path: Path) -> None:
    d = copy_example("seed-fixed", tmp_path / "bad")
    p = d / "allow-frontend-get-data.yaml"
    p.write_text(p.read_text().replace('methods: ["GET"]', 'methods: "GET"'))
    state = tmp_path / "state"
    with pytest.raises(Exception, match="expected a list"):
        supervisor.up(str(d), state_dir=str(state))
    assert not (state / "pids.json").exists()

"""``meshauthz test --mesh NAME``: a suite's cases through a real local mesh.

One mesh of the seed (Envoy sidecars, mTLS) plus, on the frontend, a
RequestAuthentication whose keys are at a jwksUri (given to ``mesh up
--jwks``), a JWT ALLOW policy, a dry-run DENY policy and an AUDIT policy.
Suites run against it: the seed's own suite passes on the mesh; cases whose
expectations are wrong fail there too; cases the mesh cannot express (claims
taken as signed, a caller given by identity or address, remoteIP, a Host
header, a token whose jwksUri keys the mesh was not given) are not run, with
the reason; expectations the access log cannot establish (the AUDIT policy)
are not run either; a suite over other manifests (seed-fixed) is told so and
its cases differ from meshauthz's decisions where those manifests differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshauthz.cli.main import main
from meshauthz.runtime import client

from .conftest import EXAMPLES, copy_example

ISS = "https://issuer.meshauthz.test"
URI = "https://keys.meshauthz.test/jwks.json"

FRONTEND = f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: frontend-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: frontend}}}}
  jwtRules: [{{issuer: "{ISS}", jwksUri: "{URI}"}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: frontend-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: frontend}}}}
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISS}/alice"]}}}}]
    to: [{{operation: {{paths: ["/jwt*"]}}}}]
  - to: [{{operation: {{notPaths: ["/jwt*"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: dry-deny-post
  namespace: default
  annotations: {{istio.io/dry-run: "true"}}
spec:
  selector: {{matchLabels: {{app: frontend}}}}
  action: DENY
  rules: [{{to: [{{operation: {{methods: [POST]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: audit-audit, namespace: default}}
spec:
  selector: {{matchLabels: {{app: frontend}}}}
  action: AUDIT
  rules: [{{to: [{{operation: {{paths: ["/audit"]}}}}]}}]
"""


def run(capsys: Any, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    return int(exc.value.code or 0), out


def q(**kw: Any) -> str:
    return json.dumps({"from": "default/backend", "to": "default/frontend", **kw})


def test_suites_on_a_real_mesh(mesh_runner, tmp_path: Path, capsys, monkeypatch) -> None:
    d = copy_example("seed", tmp_path / "seed")
    (d / "frontend-jwt.yaml").write_text(FRONTEND)
    keys = tmp_path / "keys.json"
    keys.write_text(client.demo_jwks())
    mesh = mesh_runner(d, jwks={URI: str(keys)})
    alice = client.mint_token(ISS, "alice")

    # The seed's own suite, over the same manifests: every case passes on the mesh.
    seed = tmp_path / "seed.test.yaml"
    seed.write_text(
        (EXAMPLES / "seed" / "seed.test.yaml")
        .read_text()
        .replace("resources: [.]", "resources: [seed]")
    )
    # The mesh is found by name as the mesh commands find it (under the state home).
    # Its last case says no policy selects the frontend: here some do (--run leaves it out).
    monkeypatch.setenv("MESHAUTHZ_STATE_HOME", str(mesh.state.parent))
    code, out = run(capsys, "test", str(seed), "--mesh", mesh.state.name, "-v", "--run", "GET|POST")
    assert code == 0, out
    assert (
        out.splitlines()[-1]
        == f"mesh {mesh.plan.name}: 4 passed, 0 failed, 0 not run; 0 differ from meshauthz"
    )
    assert "MESH PASS" in out and "note:" not in out

    cases = [
        ("jwt ok", q(path="/jwt/x", token=alice),
         {"decision": "ALLOW", "status": 200, "stage": "ALLOW", "policy": "default/frontend-jwt", "rule": 0}),
        ("jwt missing", q(path="/jwt/x"), {"decision": "DENY", "status": 403, "stage": "ALLOW", "policy": None}),
        ("jwt invalid", q(path="/jwt/x", token="not.a.jwt"), {"decision": "DENY", "status": 401, "stage": "JWT"}),
        ("jwt in a header", q(path="/jwt/x", token=alice, jwtLocation={"header": "authorization", "prefix": "Bearer "}),
         {"decision": "ALLOW", "status": 200}),
        ("dry-run", q(method="POST", path="/open"),
         {"decision": "ALLOW", "dryRun": [{"stage": "DENY", "result": "denied", "policy": "default/dry-deny-post", "rule": 0}]}),
        ("audited", q(path="/audit"), {"decision": "ALLOW", "audit": True}),
        ("not audited", q(path="/open"), {"decision": "ALLOW", "audit": False, "dryRun": [{"stage": "DENY", "result": "allowed"}]}),
        ("audit policy", q(path="/audit"), {"decision": "ALLOW", "auditPolicy": "default/audit-audit"}),
        ("wrong", q(path="/jwt/x"), {"decision": "ALLOW"}),
        ("claims", q(path="/jwt/x", jwt={"iss": ISS, "sub": "alice"}), "ALLOW"),
        ("by identity", json.dumps({"from": {"principal": "cluster.local/ns/default/sa/frontend"}, "to": "default/frontend"}), "ALLOW"),
        ("remote ip", q(remoteIP="203.0.113.9"), "ALLOW"),
        ("host header", q(headers={"host": "x"}), "ALLOW"),
    ]  # fmt: skip
    suite = tmp_path / "frontend.test.yaml"
    suite.write_text(
        json.dumps(
            {
                "resources": ["seed"],
                "jwks": {URI: str(keys)},
                "cases": [{"name": n, "request": json.loads(r), "expect": e} for n, r, e in cases],
            }
        )
    )
    code, out = run(capsys, "test", str(suite), "--mesh-state-dir", str(mesh.state), "-o", "json")
    doc = json.loads(out)
    got = {c["name"]: (c["result"], c["mesh"]) for c in doc["suites"][0]["cases"]}
    assert code == 1 and doc["ok"] is False
    for name in (
        "jwt ok",
        "jwt missing",
        "jwt invalid",
        "jwt in a header",
        "dry-run",
        "audited",
        "not audited",
    ):
        assert got[name][0] == "pass", (name, got[name])
        assert got[name][1]["result"] == "pass", (name, got[name][1])
        assert got[name][1]["differsFromMeshauthz"] == [], (name, got[name][1])
    assert got["audited"][1]["actual"]["audit"] is True
    assert got["dry-run"][1]["actual"]["dryRun"][0]["policy"] == "default/dry-deny-post"
    # A wrong expectation fails on the mesh too, with what differs.
    assert got["wrong"][0] == "fail"
    assert got["wrong"][1]["result"] == "fail"
    assert got["wrong"][1]["mismatches"] == ["expected ALLOW, got DENY (403)"]
    # Never passed unchecked: what the access log cannot establish, or the mesh cannot send.
    reasons = {n: got[n][1]["reason"] for n in got if got[n][1]["result"] == "not-run"}
    assert set(reasons) == {"audit policy", "claims", "by identity", "remote ip", "host header"}
    assert "does not establish auditPolicy" in reasons["audit policy"]
    assert reasons["claims"].startswith("jwt: claims taken as signed")
    assert reasons["by identity"].startswith("the caller is not a workload")
    assert reasons["remote ip"].startswith("remoteIP:")
    assert reasons["host header"] == "the header host: mesh curl sets it itself"
    assert doc["mesh"] == {
        "name": mesh.plan.name, "stateDir": str(mesh.state), "passed": 7, "failed": 1,
        "notRun": 5, "differFromMeshauthz": 0, "notes": [],
    }  # fmt: skip

    # A token whose jwksUri keys the suite does not give (the mesh has them): not run.
    nokeys = tmp_path / "nokeys.test.yaml"
    nokeys.write_text(
        json.dumps(
            {
                "resources": ["seed"],
                "cases": [
                    {
                        "name": "t",
                        "request": json.loads(q(path="/jwt/x", token=alice)),
                        "expect": "DENY",
                    }
                ],
            }
        )
    )
    code, out = run(capsys, "test", str(nokeys), "--mesh-state-dir", str(mesh.state))
    assert code == 0
    assert f"the mesh was given keys for the jwksUri {URI}; the suite has none" in out
    assert out.splitlines()[-1].endswith("0 passed, 0 failed, 1 not run; 0 differ from meshauthz")

    # Another suite's manifests: said, and its cases differ where the manifests do.
    code, out = run(
        capsys, "test", str(EXAMPLES / "seed-fixed"), "--mesh-state-dir", str(mesh.state)
    )
    assert code == 1
    assert "note: " in out and "are not the ones mesh" in out
    assert "the mesh and meshauthz differ: decision: meshauthz ALLOW, mesh DENY" in out
    assert "MESH NOT RUN" in out and "the caller is not a workload" in out

    # Errors: no such mesh, both ways of naming one.
    code, out = run(capsys, "test", str(seed), "--mesh", "no-such-mesh", "-o", "json")
    # (an unknown name is looked up under the state home, as mesh status --name does)
    assert code == 2 and "no mesh at" in json.loads(out)["error"]["message"]
    code, out = run(capsys, "test", str(seed), "--mesh", "a/b", "-o", "json")
    assert code == 2 and json.loads(out)["error"]["field"] == "--mesh"
    code, out = run(capsys, "test", str(seed), "--mesh", "x", "--mesh-state-dir", str(mesh.state))
    assert code == 2


def test_the_jwt_task_on_a_real_mesh(mesh_runner, tmp_path: Path, capsys) -> None:
    """The istio.io JWT task with Istio's sample token and keys, on real sidecars:
    mesh up --jwks gives the mesh the keys the suite's jwks: gives meshauthz, and
    every case the task states passes on both (tests/suite/test_jwt_task.py)."""
    from tests.suite.test_jwt_task import JWKS_URI, SAMPLES, STEPS, task_dir, write_suite

    policies, cases = STEPS[1]  # the RequestAuthentication and require-jwt
    d = task_dir(tmp_path, *policies)
    mesh = mesh_runner(d, jwks={JWKS_URI: str(SAMPLES / "jwks.json")})
    suite = write_suite(d, [*cases, ("invalid", "invalidToken", 401)], str(SAMPLES / "jwks.json"))
    code, out = run(capsys, "test", str(suite), "--mesh-state-dir", str(mesh.state), "-o", "json")
    doc = json.loads(out)
    assert code == 0, out
    reasons = [c["mesh"]["reason"] for c in doc["suites"][0]["cases"]]
    assert reasons == [None, None, None], reasons
    got = {
        c["name"]: (c["result"], c["mesh"]["result"], c["mesh"]["actual"]["status"])
        for c in doc["suites"][0]["cases"]
    }
    assert got == {
        "_6 demo.jwt": ("pass", "pass", 200),
        "_7 no token": ("pass", "pass", 403),
        "invalid": ("pass", "pass", 401),
    }
    assert doc["mesh"]["differFromMeshauthz"] == 0

"""One truth: every request ``mesh curl`` sends through the real mesh is decided by
Envoy exactly as ``meshauthz check`` decides it on the same manifests.

Three manifest sets (the seed; examples/seed-fixed; seed-fixed plus a
RequestAuthentication with the demo JWKS inline, a JWT ALLOW policy, a dry-run
DENY policy and STRICT mTLS on the frontend), a third namespace with a caller
that has a sidecar and one that has none, and requests varied in caller
(mTLS, plaintext through no sidecar), method, path (including paths the
sidecar normalizes), headers and JWTs (valid, expired, badly signed, unknown
issuer, malformed). For each request: the status the client saw, and from
the destination sidecar's access log the policy and rule that decided and
the dry-run results, against ``meshauthz check -o json`` for the same
requests (one ``check --request FILE`` run per set).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from meshauthz.runtime import client

from .conftest import Mesh, copy_example

ISSUER = "https://issuer.meshauthz.test"

TOOLS = """
apiVersion: v1
kind: Namespace
# labelled like the seed's default namespace: with one namespace labelled, Istio injects
# only labelled namespaces (mesh/injection.py)
metadata: {name: tools, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sleep, namespace: tools}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep, namespace: tools}
spec:
  selector: {matchLabels: {app: sleep}}
  template:
    metadata: {labels: {app: sleep}}
    spec:
      serviceAccountName: sleep
      containers: [{name: sleep, image: curl, ports: [{containerPort: 80}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy, namespace: tools}
spec:
  selector: {matchLabels: {app: legacy}}
  template:
    metadata:
      labels: {app: legacy}
      annotations: {sidecar.istio.io/inject: "false"}
    spec:
      containers: [{name: legacy, image: curl, ports: [{containerPort: 80}]}]
"""


def jwt_policies() -> str:
    jwks = client.demo_jwks().strip()
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: backend-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-jwt-readers, namespace: default}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
    to: [{{operation: {{methods: [GET, HEAD], paths: ["/jwt/*"]}}}}]
  - from: [{{source: {{namespaces: [tools]}}}}]
    to: [{{operation: {{notMethods: [DELETE]}}}}]
    when: [{{key: "request.headers[x-team]", values: [blue]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: dry-run-deny-posts
  namespace: default
  annotations: {{istio.io/dry-run: "true"}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  action: DENY
  rules:
  - to: [{{operation: {{methods: [POST]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: default}}
spec:
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/admin*"]}}}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: frontend-strict, namespace: default}}
spec:
  selector: {{matchLabels: {{app: frontend}}}}
  mtls: {{mode: STRICT}}
"""


PATHS = [
    "/",
    "/api/v1/data",
    "/api/v1/data",
    "/api/v1/data",
    "/jwt/read",
    "/api/v1/other",
    "/api/v1/data/",
    "/api/v1/data?x=1",
    "/api/v1/%64ata",
    "/api/v1/./data",
    "/api/v1/../v1/data",
    "/api//v1/data",
    "/API/v1/data",
    "/jwt/read",
    "/admin/users",
]
METHODS = ["GET", "GET", "GET", "POST", "DELETE", "PUT", "HEAD"]
# (caller, plaintext): sidecar callers over mTLS, the same bypassing their sidecar,
# and a workload without a sidecar.
CALLERS = [
    ("default/frontend", False),
    ("default/backend", False),
    ("tools/sleep", False),
    ("default/frontend", True),
    ("tools/sleep", True),
    ("tools/legacy", False),
]
DESTS = ["http://backend.default.svc.cluster.local", "http://frontend.default.svc.cluster.local"]


def tokens() -> dict[str, str]:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = Path(__file__).parent / "_other_key.pem"
    from cryptography.hazmat.primitives import serialization

    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key.write_bytes(pem)
    try:
        bad_sig = client.mint_token(ISSUER, "alice", key_file=str(key))
    finally:
        key.unlink()
    return {
        "alice": client.mint_token(ISSUER, "alice"),
        "bob": client.mint_token(ISSUER, "bob", {"scope": "read write"}),
        "expired": client.mint_token(ISSUER, "alice", {"exp": int(time.time()) - 3600}),
        "bad-signature": bad_sig,
        "unknown-issuer": client.mint_token("https://other.test", "alice"),
        "malformed": "not.a.jwt",
    }


def requests_for(rng: random.Random, n: int, with_jwt: bool) -> list[dict[str, Any]]:
    toks = tokens() if with_jwt else {}
    out = []
    for i in range(n):
        caller, plaintext = CALLERS[i % len(CALLERS)]
        dest = DESTS[0] if rng.random() < 0.75 else DESTS[1]
        headers = []
        if rng.random() < 0.5:
            headers.append(("x-team", rng.choice(["blue", "blue", "red"])))
        token = None
        if toks and rng.random() < 0.6:
            token = toks[rng.choice(["alice", "alice", *sorted(toks)])]
        out.append(
            {
                "caller": caller,
                "plaintext": plaintext,
                "url": dest + rng.choice(PATHS),
                "method": rng.choice(METHODS),
                "headers": headers,
                "jwt": token,
            }
        )
    return out


def check_all(directory: Path, reqs: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    f = tmp / "requests.json"
    f.write_text(json.dumps(reqs))
    p = subprocess.run(
        [sys.executable, "-m", "meshauthz.cli.main", "check", "-f", str(directory)]
        + ["--request", str(f), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def run_set(
    mesh: Mesh, reqs: list[dict[str, Any]], tmp: Path, tally: Counter[str]
) -> tuple[int, list[str]]:
    snap = mesh.snapshot()
    sent = []
    for q in reqs:
        r = mesh.curl(
            q["caller"],
            q["url"],
            method=q["method"],
            headers=q["headers"],
            jwt=q["jwt"],
            plaintext=q["plaintext"],
            snapshot=snap,
        )
        caller = mesh.plan.workload(q["caller"])
        path = "/" + q["url"].split("svc.cluster.local", 1)[1].split("/", 1)[1]
        cr = client.check_request(
            r, caller, plaintext=q["plaintext"], method=q["method"], path=path, jwt=q["jwt"]
        )
        sent.append((q, r, cr))
    expected = check_all(mesh.dir, [cr for _, _, cr in sent], tmp)
    mismatches = []
    for (q, r, _), want in zip(sent, expected, strict=True):
        tcp = r.target is not None and r.target.protocol == "tcp"
        # Over a TCP chain the client sees the echo's answer or a closed connection.
        got: dict[str, Any] = {
            "status": "connected" if tcp and r.status != client.RESET else r.status
        }
        exp: dict[str, Any] = {"status": want["status"]}
        if r.status != client.RESET and not tcp:
            entry = client.find_entry(mesh.plan, r.target.workload, r.request_id)  # type: ignore[union-attr]
            assert entry is not None, f"no access log entry for {q}"
            d = client.interpret(entry)
            got.update(decision=d["decision"], policy=d["policy"], rule=d["rule"])
            exp.update(decision=want["decision"], policy=want["policy"], rule=want["rule"])
            got["dryRun"] = [(x["result"], x["policy"], x["rule"]) for x in d["dryRun"]]
            exp["dryRun"] = [(x["result"], x["policy"], x["rule"]) for x in want["dryRun"]]
            if want["stage"] in ("DENY", "ALLOW", "JWT", "default"):
                got["stage"], exp["stage"] = d["stage"], want["stage"]
        tally[f"{want['status']} {want['stage']}"] += 1
        tally["dry-run"] += bool(want["dryRun"])
        if got != exp:
            mismatches.append(f"{q}: envoy {got} != check {exp}")
    return len(sent), mismatches


def test_mesh_and_check_agree(mesh_runner, tmp_path: Path) -> None:
    rng = random.Random(20240501)
    sets = {
        "seed": (copy_example("seed", tmp_path / "seed"), 70, False),
        "seed-fixed": (copy_example("seed-fixed", tmp_path / "fixed"), 70, False),
        "jwt": (copy_example("seed-fixed", tmp_path / "jwt"), 100, True),
    }
    (tmp_path / "jwt" / "policies.yaml").write_text(jwt_policies())
    total, bad = 0, []
    tally: Counter[str] = Counter()
    summary = []
    for name, (d, n, with_jwt) in sets.items():
        (d / "tools.yaml").write_text(TOOLS)
        mesh = mesh_runner(d)
        count, mismatches = run_set(mesh, requests_for(rng, n, with_jwt), tmp_path, tally)
        total += count
        bad += [f"[{name}] {m}" for m in mismatches]
        summary.append(f"{name}: {count}")
    print(f"\none truth: {total} requests ({', '.join(summary)}), {len(bad)} mismatches")
    print("  outcomes (status stage): " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.items())))
    # The requests must exercise every kind of outcome, not only one.
    assert {"200 default", "200 ALLOW", "403 DENY", "403 ALLOW", "401 JWT"} <= set(tally)
    assert tally["connection reset mTLS"] and tally["dry-run"]
    assert total >= 200
    assert not bad, "\n".join(bad[:20])


PORTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      containers:
      - name: backend
        image: httpd
        ports: [{containerPort: 80}, {containerPort: 9000}, {containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec:
  selector: {app: backend}
  ports:
  - {name: http, port: 80, targetPort: 80}
  - {name: tcp-db, port: 9000, targetPort: 9000}
  - {name: web, port: 8080, targetPort: 8080}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: backend-ports, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  mtls: {mode: STRICT}
  portLevelMtls:
    "80": {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend-ports, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/frontend"]}}]
    to: [{operation: {ports: ["9000", "8080"]}}]
  - to: [{operation: {paths: ["/public*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/default/sa/frontend"]}}]
    to: [{operation: {paths: ["/private"]}}]
"""


def test_tcp_auto_and_disable_ports_agree(mesh_runner, tmp_path: Path) -> None:
    """A TCP port (network RBAC; an HTTP request over it is authorized as TCP), an
    auto-detected port (HTTP chain chosen by ALPN), and a port with mTLS DISABLEd
    (the caller's sidecar sends plaintext, so its identity is not seen)."""
    d = copy_example(
        "seed",
        tmp_path / "ports",
        skip=("deny-all-backend.yaml", "allow-frontend-get-data.yaml", "backend.yaml"),
    )
    (d / "backend.yaml").write_text(PORTS)
    (d / "tools.yaml").write_text(TOOLS)
    mesh = mesh_runner(d)
    reqs = []
    for caller, plaintext in [
        ("default/frontend", False),
        ("tools/sleep", False),
        ("default/frontend", True),
        ("tools/legacy", False),
    ]:
        for port, paths in (
            (9000, ["/"]),
            (8080, ["/", "/public/x"]),
            (80, ["/public", "/private", "/"]),
        ):
            for path in paths:
                for method in ("GET", "POST"):
                    reqs.append(
                        {
                            "caller": caller,
                            "plaintext": plaintext,
                            "url": f"http://backend.default.svc.cluster.local:{port}{path}",
                            "method": method,
                            "headers": [],
                            "jwt": None,
                        }
                    )
    tally: Counter[str] = Counter()
    count, mismatches = run_set(mesh, reqs, tmp_path, tally)
    print(f"\nports: {count} requests, outcomes {dict(tally)}")
    assert not mismatches, "\n".join(mismatches)
    assert {"connected ALLOW", "connection reset ALLOW", "200 ALLOW", "403 ALLOW"} <= set(tally)
    assert tally["connection reset mTLS"]

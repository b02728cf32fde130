"""The seed tutorial, end to end, on a real local mesh (Envoy sidecars, mTLS).

Expectations: the seed's own text for the no-policy and deny-all steps (200,
then 403 for every request), and Istio's evaluation order (CUSTOM, DENY,
ALLOW; a DENY rule ``{}`` matches every request) for the step with both
policies, where the tutorial is wrong: all four of its bullet cases are
denied (403). ``examples/seed-fixed`` is what the author meant: frontend's
GET /api/v1/data is allowed and nothing else. Each policy change is applied
to the running mesh (no restart) and must be enforced within one second.
"""

from __future__ import annotations

import time
from pathlib import Path

from meshauthz.runtime import client
from meshauthz.runtime.ca import CertificateAuthority

from .conftest import EXAMPLES, Mesh, copy_example

BACKEND = "http://backend.default.svc.cluster.local"
FOUR_CASES = [  # the tutorial's bullets: (caller, method, path)
    ("default/frontend", "GET", "/api/v1/data"),
    ("default/frontend", "POST", "/api/v1/data"),
    ("default/frontend", "GET", "/api/v1/other"),
    ("default/backend", "GET", "/api/v1/data"),  # "any other service" (default SA)
]


def statuses(mesh: Mesh) -> list[int | str]:
    snap = mesh.snapshot()
    return [mesh.status(c, BACKEND + p, method=m, snapshot=snap) for c, m, p in FOUR_CASES]


def test_seed_end_to_end(mesh_runner, tmp_path: Path) -> None:
    d = copy_example(
        "seed", tmp_path / "seed", skip=("deny-all-backend.yaml", "allow-frontend-get-data.yaml")
    )
    mesh = mesh_runner(d)
    timings = []

    # 1. No policy: frontend gets 200 from backend, over mTLS with its identity.
    r = mesh.curl("default/frontend", BACKEND + "/")
    assert r.status == 200
    assert '"caller": "spiffe://cluster.local/ns/default/sa/frontend"' in r.body
    assert statuses(mesh) == [200, 200, 200, 200]

    # 2. deny-all-backend: every request gets 403 (the seed's words).
    mesh.put("deny-all-backend.yaml", (EXAMPLES / "seed" / "deny-all-backend.yaml").read_text())
    timings.append(
        mesh.wait_for(lambda: mesh.status("default/frontend", BACKEND + "/"), 403, timeout=1.0)
    )
    assert statuses(mesh) == [403, 403, 403, 403]
    entry = client.find_entry(
        mesh.plan,
        mesh.plan.workload("default/backend"),
        mesh.curl("default/frontend", BACKEND + "/x").request_id,
    )
    assert entry is not None
    d1 = client.interpret(entry)
    assert (d1["decision"], d1["policy"], d1["rule"]) == ("DENY", "default/deny-all-backend", 0)

    # 3. Both seed policies: Istio denies all four bullet cases (the tutorial
    #    claims the first is allowed; DENY is evaluated before ALLOW).
    allow = (EXAMPLES / "seed" / "allow-frontend-get-data.yaml").read_text()
    mesh.put("allow-frontend-get-data.yaml", allow)
    time.sleep(0.5)  # nothing observable changes; give the control plane its turn
    assert statuses(mesh) == [403, 403, 403, 403]

    # 4. seed-fixed: the author's intent.
    mesh.remove("deny-all-backend.yaml")
    mesh.put(
        "allow-nothing-backend.yaml",
        (EXAMPLES / "seed-fixed" / "allow-nothing-backend.yaml").read_text(),
    )
    timings.append(
        mesh.wait_for(
            lambda: mesh.status("default/frontend", BACKEND + "/api/v1/data"), 200, timeout=1.0
        )
    )
    assert statuses(mesh) == [200, 403, 403, 403]
    # The backend can still reach the frontend (no policy selects it).
    assert mesh.status("default/backend", "http://frontend/") == 200
    print(f"\npolicy change -> enforced: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}")


def test_seed_fixed_directory_and_identities(mesh_runner, tmp_path: Path) -> None:
    d = copy_example("seed-fixed", tmp_path / "fixed")
    mesh = mesh_runner(d)
    assert statuses(mesh) == [200, 403, 403, 403]
    # Short names resolve in the caller's namespace, as in a pod.
    assert mesh.status("default/frontend", "http://backend/api/v1/data") == 200
    assert mesh.status("default/frontend", "http://backend.default/api/v1/data") == 200
    # A plaintext caller (no sidecar) has no identity: the ALLOW rule does not match.
    assert mesh.status("default/frontend", BACKEND + "/api/v1/data", plaintext=True) == 403
    # Key files are the owner's only; certificates carry the SPIFFE identity.
    state = mesh.state
    for key in [*state.glob("config/*/key.pem"), state / "ca" / "root-key.pem"]:
        assert key.stat().st_mode & 0o077 == 0, key
    ca = CertificateAuthority(state / "ca")
    cert = (state / "config" / "default.frontend" / "cert-chain.pem").read_bytes()
    from cryptography import x509

    c = x509.load_pem_x509_certificate(cert)
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/default/sa/frontend"
    ]
    c.verify_directly_issued_by(ca.root_cert)


def test_certificates_rotate_without_disruption(mesh_runner, tmp_path: Path) -> None:
    """Short-lived workload certificates are reissued at half-life and pushed by SDS;
    requests keep working across the rotation."""
    d = copy_example("seed-fixed", tmp_path / "rot")
    # reissued at 5 s; the old certificate stays valid until 10 s, so a loaded
    # machine's slower rotation still lands before it expires
    mesh = mesh_runner(d, cert_ttl_seconds=10)
    key = mesh.state / "config" / "default.frontend" / "cert-chain.pem"
    first = key.read_bytes()
    deadline = time.monotonic() + 9
    while key.read_bytes() == first and time.monotonic() < deadline:
        assert mesh.status("default/frontend", BACKEND + "/api/v1/data") == 200
        time.sleep(0.1)
    assert key.read_bytes() != first, "certificate not rotated"
    time.sleep(0.5)
    r = mesh.curl("default/frontend", BACKEND + "/api/v1/data")
    assert r.status == 200
    log = (mesh.state / "logs" / "controlplane.log").read_text()
    assert "rotated certificate of default/frontend" in log


def test_mesh_goes_down_with_its_owner(mesh_runner, tmp_path: Path) -> None:
    """A mesh started for a process that dies (a test run that is killed) stops itself."""
    import subprocess
    import sys

    from meshauthz.runtime import supervisor

    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mesh = mesh_runner(copy_example("seed", tmp_path / "own"), owner_pid=owner.pid)
        ints = supervisor.recorded_pids(mesh.state)
    finally:
        owner.kill()
        owner.wait()
    assert len(ints) == 5  # the control plane, two Envoys, two applications
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        mesh.state.exists() or any(supervisor._alive(p) for p in ints)
    ):
        time.sleep(0.1)
    assert not mesh.state.exists()
    assert not [p for p in ints if supervisor._alive(p)]


def test_seed_where_the_workload_ports_cannot_be_bound(mesh_runner, tmp_path: Path, monkeypatch):
    """Without the right to bind port 80 (not root), sidecars listen on free ports; the
    Service names still lead there and the decisions are the same."""
    monkeypatch.setenv("MESHAUTHZ_MESH_FREE_PORTS", "1")
    mesh = mesh_runner(copy_example("seed-fixed", tmp_path / "free"))
    assert mesh.plan.workload("default/backend").inbound[80] != 80
    assert statuses(mesh) == [200, 403, 403, 403]

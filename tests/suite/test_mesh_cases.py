"""Which cases ``meshauthz test --mesh`` can send, and how, decided without a mesh:
the request a case becomes on the wire (caller, URL, headers), and the reason a
case the mesh cannot express is not run. The real mesh run is
tests/runtime/test_suite_on_mesh.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshauthz.mesh.loading import load_mesh
from meshauthz.runtime.mesh_suite import NotRun, _expressible
from meshauthz.runtime.plan import MeshPlan, WorkloadPlan
from meshauthz.suite import run_paths
from tests.conftest import EXAMPLES

SEED = EXAMPLES / "seed"


def plan(tmp_path: Path, backend_port: int = 80) -> MeshPlan:
    def w(name: str, ip: str, inbound: int) -> WorkloadPlan:
        return WorkloadPlan(
            key=f"default/{name}", namespace="default", name=name, service_account=name,
            ip=ip, admin_port=1, sidecar=True, app_ports={80: 2}, inbound={80: inbound},
            outbound_http={80: 3},
        )  # fmt: skip

    return MeshPlan(
        name="m", manifests=str(SEED), state_dir=str(tmp_path), trust_domain="cluster.local",
        ip_block="127.9.9", cert_ttl_seconds=60,
        workloads={
            "default/frontend": w("frontend", "127.9.9.2", 80),
            "default/backend": w("backend", "127.9.9.3", backend_port),
        },
    )  # fmt: skip


def expressed(tmp_path: Path, request: dict[str, Any], **kw: Any) -> Any:
    suite = tmp_path / "s.test.yaml"
    suite.write_text(
        json.dumps(
            {
                "resources": [str(SEED)],
                "cases": [{"name": "c", "request": request, "expect": "DENY"}],
                **kw,
            }
        )
    )
    (s,) = run_paths([str(suite)]).suites
    snapshot = load_mesh([str(SEED)]).snapshot
    try:
        return _expressible(s, s.cases[0], plan(tmp_path), snapshot)
    except NotRun as e:
        return str(e)


BASE = {"from": "default/frontend", "to": "default/backend"}


def test_a_case_becomes_the_request_mesh_curl_sends(tmp_path: Path) -> None:
    got = expressed(
        tmp_path,
        {**BASE, "method": "POST", "path": "/a?b=1", "headers": {"x-a": ["1", "2"]},
         "token": "t.t.t", "jwtLocation": {"header": "x-jwt", "prefix": "T "}},
    )  # fmt: skip
    assert got == (
        "default/frontend",
        "http://backend.default.svc.cluster.local:80/a?b=1",
        "backend.default.svc.cluster.local",  # the Host, as the case has it
        [("x-a", "1"), ("x-a", "2"), ("x-jwt", "T t.t.t")],
        False,
    )
    got = expressed(
        tmp_path,
        {"from": {"workload": "default/frontend", "plaintext": True}, "to": "default/backend",
         "token": "t.t.t", "jwtLocation": {"param": "tok"}},
    )  # fmt: skip
    assert got[1].endswith("/?tok=t.t.t") and got[4] is True  # bypasses its sidecar
    assert expressed(tmp_path, {**BASE, "token": "t.t.t"})[3] == [("authorization", "Bearer t.t.t")]
    # A Host with a port names the Service port; one without goes to the port the case names.
    got = expressed(tmp_path, {**BASE, "host": "backend.default:80"})
    assert got[1:3] == ("http://backend.default:80/", "backend.default:80")


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ({"from": {"principal": "cluster.local/ns/a/sa/b"}, "to": "default/backend"},
         "the caller is not a workload: the mesh sends only from its workloads"),
        ({"from": {"workload": "default/frontend", "ip": "10.0.0.1"}, "to": "default/backend"},
         "the case sets the caller's address: the mesh's callers use their own"),
        ({**BASE, "remoteIP": "1.2.3.4"}, "remoteIP: a sidecar takes the remote address from the connection"),
        ({**BASE, "sni": "x"}, "sni: the caller's sidecar sets the TLS server name itself"),
        ({**BASE, "jwt": {"iss": "a", "sub": "b"}},
         "jwt: claims taken as signed; the mesh verifies tokens (use token:)"),
        ({**BASE, "headers": {"x-request-id": "1"}}, "the header x-request-id: mesh curl sets it itself"),
        ({**BASE, "headers": {"x-a": "é€"}}, "the header x-a: a control or non-Latin-1 character cannot be sent"),
        ({**BASE, "path": "/é"}, "the path holds a fragment, a space, a control or a non-ASCII character"),
        ({**BASE, "host": "example.com"},
         "the Host example.com leads nowhere in the mesh: example.com: no Service com/example "
         "in the mesh"),
        ({**BASE, "host": "backend.default:81"},
         "the Host backend.default:81 leads nowhere in the mesh: Service default/backend has no "
         "port 81 (ports: 80)"),
        ({**BASE, "host": "frontend.default"},
         "the Host frontend.default leads to default/frontend port 80, not default/backend port 80"),
    ],
)  # fmt: skip
def test_what_the_mesh_cannot_express_is_not_run(
    tmp_path: Path, request_: dict[str, Any], reason: str
) -> None:
    assert expressed(tmp_path, request_) == reason


def test_keys_for_a_jwks_uri_must_be_the_meshs(tmp_path: Path) -> None:
    keys = tmp_path / "k.json"
    keys.write_text(
        (
            Path(__file__).parents[1] / "conformance/istio/security/tools/jwt/samples/jwks.json"
        ).read_text()
    )
    got = expressed(tmp_path, {**BASE, "token": "t.t.t"}, jwks={"https://k": str(keys)})
    assert got == (
        "the suite has keys for the jwksUri https://k, which the mesh was not given "
        "(mesh up --jwks https://k=FILE)"
    )
    # Without a token the keys do not matter.
    assert isinstance(expressed(tmp_path, BASE, jwks={"https://k": str(keys)}), tuple)

"""CUSTOM at a waypoint: istiod builds a waypoint's HTTP chain per Service with
the same authorization builders as a sidecar's, the CUSTOM one first
(pilot/pkg/networking/core/listener_waypoint.go, buildWaypointHTTPFilters:
``authz.NewBuilderForService(authz.Custom, ...)`` beside the Local one), and
the CUSTOM translation is pinned by the builder goldens (custom-*). So a
targetRefs CUSTOM policy on a Service is decided at its waypoint, with the
ext_authz answer assumed as for sidecars (``--ext-authz``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meshauthz.cli.main import main
from tests.conftest import EXAMPLES

CUSTOM = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: ext
      envoyExtAuthzHttp: {service: ext.default.svc.cluster.local, port: 9000}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec: {selector: {app: ext}, ports: [{name: http, port: 9000}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-admin, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: backend}]
  action: CUSTOM
  provider: {name: ext}
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
"""


@pytest.fixture
def mesh(tmp_path: Path) -> str:
    src = EXAMPLES / "seed-ambient-waypoint"
    for name in ("backend.yaml", "frontend.yaml", "namespace.yaml", "waypoint.yaml"):
        shutil.copy(src / name, tmp_path / name)
    (tmp_path / "custom.yaml").write_text(CUSTOM)
    return str(tmp_path)


def check(capsys: pytest.CaptureFixture[str], mesh: str, *args: str) -> dict:
    with pytest.raises(SystemExit):
        main(["check", "-f", mesh, "--from", "default/frontend", "--to", "default/backend",
              *args, "-o", "json"])  # fmt: skip
    return dict(json.loads(capsys.readouterr().out))


def test_a_custom_policy_is_decided_at_the_waypoint(capsys, mesh):
    d = check(capsys, mesh, "--path", "/admin")
    assert (d["decision"], d["status"], d["stage"]) == ("DENY", 403, "CUSTOM")
    assert [(h["enforcer"], h["decision"], h["policy"]) for h in d["hops"]] == [
        ("waypoint", "DENY", "default/ext-admin")
    ]
    # the provider's answer decides: assumed to allow, the request goes on to ztunnel
    d = check(capsys, mesh, "--path", "/admin", "--ext-authz", "allow")
    assert d["decision"] == "ALLOW"
    assert [(h["enforcer"], h["decision"]) for h in d["hops"]] == [
        ("waypoint", "ALLOW"),
        ("ztunnel", "ALLOW"),
    ]
    # a request its rules do not match is never sent to the provider
    d = check(capsys, mesh, "--path", "/x")
    assert d["decision"] == "ALLOW" and d["hops"][0]["policy"] is None

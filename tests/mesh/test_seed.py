"""The seed example (examples/seed): what the mesh layer must say about it."""

from __future__ import annotations

import pytest

from meshauthz.mesh import (
    Protocol,
    by_action,
    effective_mtls_mode,
    inbound_port,
    resolve_target,
    select_policies,
)
from meshauthz.mesh.loading import load_mesh
from tests.conftest import EXAMPLES


@pytest.fixture(scope="module")
def seed():
    return load_mesh([str(EXAMPLES / "seed")]).snapshot


def test_backend_port_80_is_http(seed):
    # Service backend: port 80 named "http", targetPort 80 -> ConvertProtocol: HTTP.
    p = inbound_port(seed, "default/backend", 80)
    assert p.protocol is Protocol.HTTP and p.listener == "http"
    assert p.service is not None and p.service.name == "backend"


def test_frontend_principal(seed):
    assert seed.identity("default/frontend").principal == "cluster.local/ns/default/sa/frontend"
    assert seed.identity("default/backend").principal == "cluster.local/ns/default/sa/default"


def test_both_policies_select_backend(seed):
    got = select_policies(seed, "default/backend")
    assert {p.policy.name for p in got} == {"deny-all-backend", "allow-frontend-get-data"}
    assert all(
        p.reason.kind == "selector" and p.reason.matched_labels == {"app": "backend"} for p in got
    )
    g = by_action(got)
    assert [p.policy.name for p in g.deny] == ["deny-all-backend"]
    assert [p.policy.name for p in g.allow] == ["allow-frontend-get-data"]


def test_no_policy_selects_frontend(seed):
    assert select_policies(seed, "default/frontend") == []
    assert select_policies(seed, "default/frontend", "PeerAuthentication") == []


def test_tutorial_url_resolves_to_backend(seed):
    t = resolve_target(seed, "backend.default.svc.cluster.local:80")
    assert (t.workload.key, t.port) == ("default/backend", 80)
    # No PeerAuthentication: PERMISSIVE (ComposePeerAuthentication default).
    assert effective_mtls_mode(seed, t.workload, 80) == "PERMISSIVE"

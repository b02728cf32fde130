"""istiod's conversion into ztunnel's Authorization, equal to Istio's goldens.

Istio's ``TestRBACConvert`` (pilot/pkg/serviceregistry/ambient/ambientindex_test.go)
reads each ``*-in.yaml`` of testdata/, converts it with root namespace
``istio-system`` and compares with the file without ``-in`` (empty: nothing is
sent). Objects without a namespace keep an empty one (crd.ParseInputs does not
default it). For PeerAuthentication files with several objects the test sorts
them into root / namespace / workload policies as done here
(``_peer_authentication_case``) and converts the workload one (or, if there is
none, the namespace one) against the others.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshauthz.ambient.authorization import authorization_from_dump
from meshauthz.ambient.convert import convert_authorization_policy, convert_peer_authentication
from meshauthz.mesh.snapshot import creation_time
from meshauthz.resources.loader import load
from meshauthz.resources.objects import PeerAuthentication
from tests.conftest import CONFORMANCE

TESTDATA = CONFORMANCE / "pilot/pkg/serviceregistry/ambient/testdata"
ROOT = "istio-system"  # systemNS in ambientindex_test.go
INPUTS = sorted(TESTDATA.glob("*-in.yaml"))


def test_all_22_goldens_are_read() -> None:
    assert len(INPUTS) == 22


def _peer_authentication_case(pas: list[PeerAuthentication]) -> dict[str, object] | None:
    if len(pas) == 1:
        out = convert_peer_authentication(ROOT, pas[0], None, None)
        return out.proto() if out else None
    root = ns = wl = None
    for p in pas:
        if p.namespace == ROOT:
            assert p.spec.selector is None
            if root is None or creation_time(p) < creation_time(root):
                root = p
        elif p.spec.selector is not None:
            assert wl is None, "multiple workload-level policies"
            wl = p
        elif ns is None or creation_time(p) < creation_time(ns):
            ns = p
    if wl is None:
        wl, ns = ns, None
    assert wl is not None
    out = convert_peer_authentication(ROOT, wl, ns, root)
    return out.proto() if out else None


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_rbac_convert(path: Path) -> None:
    manifests = load([str(path)], default_namespace="").manifests
    got: dict[str, object] | None
    if manifests.authorization_policies:
        (ap,) = manifests.authorization_policies
        conv = convert_authorization_policy(ROOT, ap)
        got = conv.authorization.proto() if conv.authorization else None
    else:
        got = _peer_authentication_case(manifests.peer_authentications)
    golden = TESTDATA / path.name.replace("-in", "")
    want = yaml.safe_load(golden.read_text()) if golden.exists() else None
    assert got == (want or None)


@pytest.mark.parametrize("path", INPUTS[:3], ids=lambda p: p.name)
def test_config_dump_form_reads_back(path: Path) -> None:
    # ztunnel's serde form (rbac.rs Authorization) is the same policy.
    (ap,) = load([str(path)], default_namespace="").manifests.authorization_policies
    auth = convert_authorization_policy(ROOT, ap).authorization
    assert auth is not None
    assert authorization_from_dump(auth.dump()) == auth


def test_ztunnel_config_dump_policies_read_and_write_back() -> None:
    # istioctl's ztunnel config-dump test data (configdump_test.go; policies.txt
    # lists: default/allow-nothing Allow Namespace, default/allow-waypoint Allow
    # WorkloadSelector).
    import json

    path = CONFORMANCE / "istioctl/pkg/writer/ztunnel/configdump/testdata/dump.json"
    raw = json.loads(path.read_text())["policies"]
    policies = [authorization_from_dump(p) for p in raw]
    assert [(p.namespace, p.name, p.action, p.scope) for p in policies] == [
        ("default", "allow-nothing", "ALLOW", "NAMESPACE"),
        ("default", "allow-waypoint", "ALLOW", "WORKLOAD_SELECTOR"),
    ]
    assert [p.dump() for p in policies] == [p | {"dryRun": False} for p in raw]

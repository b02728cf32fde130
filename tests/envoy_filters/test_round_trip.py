"""Every Envoy JSON meshauthz writes or reads goes through one model and back.

* the local mesh's files (``runtime/envoy_config.py``) for a mesh with JWT
  rules: the jwt_authn slot, the listeners and their HTTP connection managers;
* every listener, HCM and ext_authz filter of the config-dump fixtures
  (``tests/decide/fixtures``: istiod's output, from real clusters and tools).

Reading what was written gives the model that was written; writing a model
read gives back the JSON it was read from (the parts the model holds).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshauthz.envoy import jwt_authn
from meshauthz.envoy.ext_authz import HTTP_EXT_AUTHZ_TYPE, NETWORK_EXT_AUTHZ_TYPE, ExtAuthzFilter
from meshauthz.envoy.hcm import HCM_TYPE, HcmOptions
from meshauthz.envoy.listener import Connection, Listener, select_chain
from meshauthz.mesh import build_snapshot, select_policies
from meshauthz.resources.loader import load
from meshauthz.runtime.delivery import FileDelivery
from meshauthz.runtime.envoy_config import (
    ResourceSet,
    ResourceType,
    TlsMaterial,
    generate,
    slot_name,
)
from meshauthz.runtime.plan import make_plan
from meshauthz.translate.hcm import SIDECAR_INBOUND_XFF, path_options
from meshauthz.translate.requestauthn import jwt_authentication

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((ROOT / "tests" / "decide" / "fixtures").glob("*.json"))

JWT_RULES = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  jwtRules:
  - issuer: https://b.example
    jwksUri: https://b.example/jwks.json
    fromHeaders: [{name: x-token, prefix: "T "}]
    fromParams: [tok]
    forwardOriginalToken: true
  - issuer: https://a.example
    audiences: [backend]
    spaceDelimitedClaims: [roles]
    jwks: '{"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "k"}]}'
"""


def _walk(v: Any) -> Iterator[dict[str, Any]]:
    if isinstance(v, dict):
        yield v
        for x in v.values():
            yield from _walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from _walk(x)


@pytest.fixture(scope="module")
def mesh_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, ResourceSet]]:
    d = tmp_path_factory.mktemp("mesh")
    for f in (ROOT / "examples" / "seed").glob("*.yaml"):
        if not f.name.endswith(".test.yaml"):
            shutil.copy(f, d / f.name)
    (d / "jwt.yaml").write_text(JWT_RULES)
    snapshot = build_snapshot(load([str(d)]).manifests)
    plan = make_plan(
        snapshot, name="rt", manifests=str(d), state_dir=d / "state", cert_ttl_seconds=3600
    )
    tls = TlsMaterial(b"chain", b"key", b"root")
    files = {
        w.key: generate(plan, w, snapshot, FileDelivery(plan.config_dir(w)), tls, "1")[0]
        for w in plan.workloads.values()
        if w.sidecar
    }
    return snapshot, files


def test_the_runtime_jwt_authn_reads_back_as_the_filter_translated(
    mesh_files: tuple[Any, dict[str, ResourceSet]],
) -> None:
    snapshot, files = mesh_files
    seen = 0
    for key, out in files.items():
        res = out[ResourceType.EXTENSION_CONFIG][slot_name("jwt")]
        written = res["typed_config"]
        model = jwt_authn.from_json(written)
        assert jwt_authn.to_json(model) == written
        assert jwt_authn.from_json(jwt_authn.to_json(model)) == model
        ras = [
            s.policy
            for s in select_policies(snapshot, snapshot.workload(key), "RequestAuthentication")
        ]
        want = jwt_authentication(ras, unresolved_jwks="fake")
        assert model == (want or jwt_authn.JwtAuthentication())
        seen += bool(model.providers)
    assert seen == 1  # the backend


def test_the_runtime_inbound_chains_are_written_by_the_listener_model(
    mesh_files: tuple[Any, dict[str, ResourceSet]],
) -> None:
    """The runtime writes its inbound filter chains through envoy/listener's
    writer, and the lookup Envoy does finds the chain a caller's connection needs."""
    _, files = mesh_files
    seen = 0
    for out in files.values():
        for res in out[ResourceType.LISTENER].values():
            if not res["name"].startswith("inbound|"):
                continue
            lis = Listener.from_json(res)
            assert [c.to_json() for c in lis.filter_chains] == res["filter_chains"]
            port = int(res["name"].split("|")[1])
            ip = res["address"]["socket_address"]["address"]
            mtls = Connection(port, ip, "", "tls", ("istio-http/1.1",), "127.0.0.9")
            plain = Connection(port, ip, "", "raw_buffer", ("http/1.1",), "127.0.0.9")
            chosen = {c: select_chain(lis, c) for c in (mtls, plain)}
            # the seed is PERMISSIVE: one chain for each kind of caller
            assert chosen[mtls] is not None and chosen[mtls][1].requires_client_certificate
            assert chosen[plain] is not None and chosen[plain][1].transport_socket is None
            seen += 1
    assert seen >= 2


def test_the_runtime_listeners_and_hcms_read_back(
    mesh_files: tuple[Any, dict[str, ResourceSet]],
) -> None:
    snapshot, files = mesh_files
    hcms = 0
    for out in files.values():
        for res in out[ResourceType.LISTENER].values():
            lis = Listener.from_json(res)
            assert lis.name == res["name"]
            assert len(lis.filter_chains) == len(res.get("filter_chains", []))
            for d in _walk(res):
                if d.get("@type") != HCM_TYPE:
                    continue
                options = HcmOptions.from_json(d)
                assert HcmOptions.from_json(options.to_json()) == options
                if res["name"].startswith("inbound|"):
                    # written by HcmOptions.to_json: every field it writes is there
                    assert {k: d[k] for k in options.to_json()} == options.to_json()
                    mode = snapshot.mesh_config.path_normalization
                    assert options == HcmOptions(path_options(mode), SIDECAR_INBOUND_XFF)
                    hcms += 1
    assert hcms


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_dump_fixture_filters_read_back(fixture: Path) -> None:
    doc = json.loads(fixture.read_text())
    listeners = [d["listener"] for d in _walk(doc) if isinstance(d.get("listener"), dict)]
    listeners += [
        d["active_state"]["listener"]
        for d in _walk(doc)
        if isinstance(d.get("active_state"), dict) and "listener" in d["active_state"]
    ]
    assert listeners
    ext = 0
    for raw in listeners:
        lis = Listener.from_json(raw)
        assert len(lis.filter_chains) == len(raw.get("filter_chains", []))
        for d in _walk(raw):
            t = d.get("@type")
            if t == HCM_TYPE:
                options = HcmOptions.from_json(d)
                assert HcmOptions.from_json(options.to_json()) == options
                for k, v in options.to_json().items():
                    if k in d:
                        assert d[k] == v, k
            elif t in (HTTP_EXT_AUTHZ_TYPE, NETWORK_EXT_AUTHZ_TYPE):
                flt = ExtAuthzFilter.from_json(d)
                assert flt.to_dict("snake")["typed_config"] == d
                assert ExtAuthzFilter.from_json(flt.to_dict("snake")["typed_config"]) == flt
                ext += 1
    if fixture.name.startswith("istioctl-authz"):
        assert ext

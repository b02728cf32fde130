"""Envoy as Istio runs it: istiod's runtime flags (``translate/bootstrap.py``)
change what a sidecar does with a ``#fragment`` and which regexes it loads.
Both pinned against a real Envoy 1.40 started with and without the flags, and
``check``'s path (``Decider``) and RBAC loading held to the flagged Envoy.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import re2

from meshauthz.decide.engine import Decider
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.envoy.hcm import HcmOptions, normalize_path
from meshauthz.envoy.rbac.errors import RbacConfigError
from meshauthz.envoy.rbac.serialize import HTTP_FILTER_TYPE, parse_filter
from meshauthz.envoy.runtime import VANILLA
from meshauthz.mesh.loading import load_mesh
from meshauthz.translate.bootstrap import ISTIO_RUNTIME
from meshauthz.translate.hcm import SIDECAR_INBOUND_XFF, path_options
from tests.decide.envoy_probe import hcm_filter, raw_request
from tests.envoy_process import EnvoyProcess, free_port, require_envoy

# A header regex RE2 compiles to a program of a few hundred instructions:
# over vanilla Envoy's limit (100), well under istiod's (32768).
BIG_REGEX = "^user-[a-z]{3,200}$"


def _rbac() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": HTTP_FILTER_TYPE,
            "rules": {
                "action": "DENY",
                "policies": {
                    "ns.deny": {
                        "permissions": [
                            {"url_path": {"path": {"exact": "/public/a"}}},
                            {
                                "header": {
                                    "name": "x-user",
                                    "safe_regex_match": {"regex": BIG_REGEX},
                                }
                            },
                        ],
                        "principals": [{"any": True}],
                    }
                },
            },
        },
    }


def _bootstrap(port: int, admin: int) -> dict[str, Any]:
    options = HcmOptions(path_options("BASE"), SIDECAR_INBOUND_XFF).to_json()
    hcm = hcm_filter("rt", options, [_rbac()], 200)
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "rt",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{"filters": [hcm]}],
                }
            ]
        },
    }


@contextmanager
def _envoy(bootstrap: dict[str, Any], admin: int) -> Iterator[None]:
    exe = require_envoy("the runtime-flag comparison")
    with tempfile.TemporaryDirectory(prefix="meshauthz-rt-") as tmp:
        proc = EnvoyProcess(exe, Path(tmp))
        try:
            proc.start(bootstrap, admin, args=["--concurrency", "1"])
            yield
        finally:
            proc.stop()


def test_big_regex_is_over_vanillas_limit_and_under_istiods() -> None:
    size = re2.compile(BIG_REGEX).programsize
    assert VANILLA.re2_max_program_size < size < ISTIO_RUNTIME.re2_max_program_size


def test_istio_sidecar_strips_the_fragment_and_loads_the_big_regex() -> None:
    port, admin = free_port(), free_port()
    with _envoy(_bootstrap(port, admin), admin):  # istiod's runtime flags
        assert raw_request(port, b"/public/a#x").status == 403
        assert raw_request(port, b"/public/b#x").status == 200
        assert raw_request(port, b"/", [("x-user", "user-abc")]).status == 403
        assert raw_request(port, b"/", [("x-user", "user-ab")]).status == 200
    # meshauthz as that Envoy: the fragment is stripped, the filter loads
    assert normalize_path("/public/a#x", path_options("BASE"), ISTIO_RUNTIME).path == "/public/a"
    parse_filter(_rbac(), "rbac", ISTIO_RUNTIME)


def test_vanilla_envoy_rejects_both() -> None:
    port, admin = free_port(), free_port()
    vanilla = {**_bootstrap(port, admin), "layered_runtime": VANILLA.layered_runtime()}
    with pytest.raises(RuntimeError, match="program size"), _envoy(vanilla, admin):
        pass
    vanilla["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"
    ].pop(0)  # without the RBAC filter it starts: the fragment alone is refused
    with _envoy(vanilla, admin):
        assert raw_request(port, b"/public/a#x").status == 400
    assert normalize_path("/public/a#x", path_options("BASE"), VANILLA).rejected_status == 400
    with pytest.raises(RbacConfigError, match="program size"):
        parse_filter(_rbac(), "rbac", VANILLA)


MESH = """\
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: ns, labels: {app: api}}
spec: {serviceAccountName: api, containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: ns}
spec:
  selector: {matchLabels: {app: api}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/public/a"]}}]}]
"""


@pytest.mark.parametrize(("path", "verdict"), [("/public/a#x", "DENY"), ("/public/b#x", "ALLOW")])
def test_check_decides_a_fragment_as_the_istio_sidecar(
    tmp_path: Path, path: str, verdict: str
) -> None:
    (tmp_path / "m.yaml").write_text(MESH)
    snap = load_mesh([str(tmp_path / "m.yaml")]).snapshot
    r = resolve(
        request_from_data({"to": "ns/api:80", "from": {"plaintext": True}, "path": path}), snap
    )
    d = Decider(snap).decide(r)
    assert d.verdict == verdict and d.status in (200, 403)

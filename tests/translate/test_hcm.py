"""Istio's HCM settings: pathNormalization modes -> path options, and XFF.

Expectations from istio ``pilot/pkg/networking/core/listener_builder.go``
(``buildHTTPConnectionManager``) and ``listener_inbound.go``
(``buildSidecarInboundHTTPOpts``), read from an istio checkout when one is
present, and from the options the real-Envoy path corpus was recorded with
(``tests/decide/envoy_probe.py``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from meshauthz.envoy.hcm import HcmOptions, PathOptions, normalize_path
from meshauthz.translate.hcm import (
    PATH_NORMALIZATIONS,
    SIDECAR_INBOUND_XFF,
    gateway_xff,
    path_mode,
    path_options,
)
from tests.decide import envoy_probe as probe


def test_modes_give_the_options_the_corpus_was_recorded_with() -> None:
    for mode in probe.MODES:
        assert path_options(mode) == HcmOptions.from_json(probe.mode_options(mode)).path
        assert path_mode(path_options(mode)) == mode


def test_default_is_base() -> None:
    assert path_options("DEFAULT") == path_options("BASE")
    assert set(PATH_NORMALIZATIONS) == {*probe.MODES, "DEFAULT"}


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown path normalization"):
        path_options("LOWERCASE")


def test_inverse_of_options_outside_the_modes() -> None:
    assert path_mode(PathOptions(False, True, "KEEP_UNCHANGED")) is None
    assert path_mode(PathOptions(True, False, "UNESCAPE_AND_FORWARD")) is None
    # The implementation-specific default keeps escaped slashes, as KEEP_UNCHANGED.
    assert path_mode(PathOptions(True, False)) == "BASE"
    assert normalize_path("/a/../b", path_options("BASE")).path == "/b"


def test_istio_xff_settings() -> None:
    assert SIDECAR_INBOUND_XFF.use_remote_address is False
    assert SIDECAR_INBOUND_XFF.xff_num_trusted_hops == 0
    assert gateway_xff(2).use_remote_address is True
    assert gateway_xff(2).xff_num_trusted_hops == 2


ISTIO_GIT = Path("/work/.mirror/istio+istio/repo")


def _istio_file(path: str) -> str:
    if not ISTIO_GIT.is_dir():
        pytest.skip(f"no istio checkout at {ISTIO_GIT}")
    out = subprocess.run(
        ["git", "-C", str(ISTIO_GIT), "show", f"HEAD:{path}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0:
        pytest.skip(f"cannot read {path} from {ISTIO_GIT}")
    return out.stdout


def test_istio_sidecar_inbound_does_not_use_remote_address() -> None:
    src = _istio_file("pilot/pkg/networking/core/listener_inbound.go")
    body = src[src.index("func buildSidecarInboundHTTPOpts") :]
    body = body[: body.index("\n}\n")]
    assert "useRemoteAddress: false" in body
    assert "XffNumTrustedHops" not in body


def test_istio_path_normalization_options() -> None:
    src = _istio_file("pilot/pkg/networking/core/listener_builder.go")
    block = src[src.index("switch lb.push.Mesh.GetPathNormalization()") :]
    block = block[: block.index("\n\t}\n")]
    assert (
        "ProxyPathNormalization_NONE:\n\t\tconnectionManager.NormalizePath = proto.BoolFalse"
        in block
    )
    assert "MergeSlashes = true" in block
    assert "HttpConnectionManager_UNESCAPE_AND_FORWARD" in block

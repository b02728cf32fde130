"""istiod's header options for a sidecar's inbound HTTP connection manager,
against the inbound HCMs of a config dump from Istio's own test data
(istioctl/pkg/authz/testdata/configdump.yaml, see tests/decide/fixtures/NOTICE),
and a gateway's against Istio's gateway_test.go.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshauthz.envoy.request_headers import ClientCertDetails, HeaderSettings
from meshauthz.translate.hcm_headers import SIDECAR_INBOUND_HEADERS, gateway_headers

DUMP = (
    Path(__file__).resolve().parents[1] / "decide" / "fixtures" / "istioctl-authz-configdump.json"
)
HCM = "envoy.filters.network.http_connection_manager"


def _inbound_hcms() -> Iterator[dict[str, Any]]:
    dump = json.loads(DUMP.read_text())
    for config in dump["configs"]:
        for entry in config.get("dynamic_listeners", []):
            listener = entry.get("active_state", {}).get("listener", {})
            if listener.get("traffic_direction") != "INBOUND":
                continue
            for chain in listener.get("filter_chains", []):
                for f in chain.get("filters", []):
                    if f.get("name") == HCM:
                        yield f["typed_config"]


def test_sidecar_inbound_settings_are_istiods() -> None:
    hcms = list(_inbound_hcms())
    assert len(hcms) >= 4  # the virtual inbound listener's HTTP chains, and port 80's
    for hcm in hcms:
        if hcm["stat_prefix"] == "connect_terminate":
            continue  # the HBONE terminating listener: no client certificate details
        assert HeaderSettings.from_hcm(hcm) == SIDECAR_INBOUND_HEADERS, hcm["stat_prefix"]


@pytest.mark.parametrize(
    "settings", [SIDECAR_INBOUND_HEADERS, gateway_headers(0), gateway_headers(2), HeaderSettings()]
)
def test_envoy_json_round_trip(settings: HeaderSettings) -> None:
    assert HeaderSettings.from_hcm(json.loads(json.dumps(settings.to_hcm()))) == settings


def test_unknown_forwarding_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="forward_client_cert_details"):
        HeaderSettings.from_hcm({"forward_client_cert_details": "APPEND"})


@pytest.mark.parametrize("trusted", [0, 2])
def test_gateway_settings_are_istiods(trusted: int) -> None:
    # Istio's pilot/pkg/networking/core/gateway_test.go, TestCreateGatewayHTTPFilterChainOpts
    # (e.g. "HTTP1.0 mode enabled"): a gateway's HCM has useRemoteAddress true,
    # XffNumTrustedHops from gatewayTopology.numTrustedProxies, ForwardClientCertDetails
    # SANITIZE_SET and SetCurrentClientCertDetails with Subject, Cert, Uri and Dns.
    s = gateway_headers(trusted)
    assert (s.xff.use_remote_address, s.xff.xff_num_trusted_hops) == (True, trusted)
    assert s.forward_client_cert == "SANITIZE_SET"
    assert s.client_cert_details == ClientCertDetails(subject=True, cert=True, dns=True, uri=True)

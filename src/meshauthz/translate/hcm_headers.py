"""The HTTP connection manager options istiod sets that decide the request
headers the filters see (``meshauthz.envoy.request_headers``).

Sidecar inbound (``listener_inbound.go`` ``buildSidecarInboundHTTPOpts``, with
``util.GetProxyHeaders`` for the inbound listener class):
``forward_client_cert_details: APPEND_FORWARD``,
``set_current_client_cert_details`` subject, URI and DNS (cert and chain off),
``generate_request_id`` left unset (Envoy's default: on),
``use_remote_address: false`` and no trusted hops.

Gateway (``gateway.go`` ``buildGatewayConnectionManager``):
``forward_client_cert_details: SANITIZE_SET`` (unless
``gatewayTopology.forwardClientCertDetails`` says otherwise),
``set_current_client_cert_details`` subject, cert, URI and DNS,
``use_remote_address: true`` and ``gatewayTopology.numTrustedProxies`` hops.

Both (``listener_builder.go`` ``buildHTTPConnectionManager`` and
``tracing.go``): the UUID request-id extension with
``use_request_id_for_trace_sampling: true``; with ``meshConfig.enableTracing``
(on by default) and no Telemetry tracing provider, ``tracing`` with client and
overall sampling at 100% and random sampling at ``PILOT_TRACE_SAMPLING``
(1%).

The sidecar settings equal those of the inbound HCMs in a config dump from
Istio's own test data, the gateway's those of Istio's
TestCreateGatewayHTTPFilterChainOpts (tests/translate/test_hcm_headers.py).
The mesh config fields that would change these (``proxyHeaders``, ``enableTracing``, ``defaultConfig.tracing.sampling``,
``gatewayTopology.forwardClientCertDetails``) and Telemetry resources are not
read: istiod's defaults are used.
"""

from __future__ import annotations

from meshauthz.envoy.hcm import XffSettings
from meshauthz.envoy.request_headers import ClientCertDetails, HeaderSettings, Tracing
from meshauthz.translate.hcm import SIDECAR_INBOUND_XFF, gateway_xff

#: ``tracing`` on every HCM istiod builds with the default mesh config.
ISTIO_DEFAULT_TRACING = Tracing(client_sampling=100.0, random_sampling=1.0, overall_sampling=100.0)

SIDECAR_INBOUND_HEADERS = HeaderSettings(
    xff=SIDECAR_INBOUND_XFF,
    forward_client_cert="APPEND_FORWARD",
    client_cert_details=ClientCertDetails(subject=True, dns=True, uri=True),
    tracing=ISTIO_DEFAULT_TRACING,
)


def gateway_headers(num_trusted_proxies: int = 0) -> HeaderSettings:
    """What istiod sets on a gateway's HTTP connection manager."""
    return HeaderSettings(
        xff=gateway_xff(num_trusted_proxies),
        forward_client_cert="SANITIZE_SET",
        client_cert_details=ClientCertDetails(subject=True, cert=True, dns=True, uri=True),
        tracing=ISTIO_DEFAULT_TRACING,
    )


def header_settings(gateway: bool, xff: XffSettings) -> HeaderSettings:
    """istiod's header options for a gateway or a sidecar's inbound HCM whose
    X-Forwarded-For settings are ``xff`` (``Prepared.xff``)."""
    if gateway:
        return gateway_headers(xff.xff_num_trusted_hops)
    if xff == SIDECAR_INBOUND_XFF:
        return SIDECAR_INBOUND_HEADERS
    return HeaderSettings(
        xff=xff,
        forward_client_cert=SIDECAR_INBOUND_HEADERS.forward_client_cert,
        client_cert_details=SIDECAR_INBOUND_HEADERS.client_cert_details,
        tracing=ISTIO_DEFAULT_TRACING,
    )


__all__ = [
    "ISTIO_DEFAULT_TRACING",
    "SIDECAR_INBOUND_HEADERS",
    "gateway_headers",
    "header_settings",
]

"""Istio's settings for the HTTP connection manager: path normalization and XFF.

istiod maps ``meshConfig.pathNormalization`` to HCM options in
``pilot/pkg/networking/core/listener_builder.go`` (``buildHTTPConnectionManager``):

==========================  ==============  =============  ================================
mode                        normalize_path  merge_slashes  path_with_escaped_slashes_action
==========================  ==============  =============  ================================
NONE                        false           false          KEEP_UNCHANGED
BASE (and DEFAULT)          true            false          KEEP_UNCHANGED
MERGE_SLASHES               true            true           KEEP_UNCHANGED
DECODE_AND_MERGE_SLASHES    true            true           UNESCAPE_AND_FORWARD
==========================  ==============  =============  ================================

XFF: sidecar inbound HCMs get ``use_remote_address: false`` and no
``xff_num_trusted_hops`` (0) (``listener_inbound.go``
``buildSidecarInboundHTTPOpts``), so a sidecar trusts the last XFF entry a
client sends. Gateways get ``use_remote_address: true`` and
``xff_num_trusted_hops = gatewayTopology.numTrustedProxies`` (``gateway.go``
``buildGatewayConnectionManager``).
"""

from __future__ import annotations

from typing import Literal

from meshauthz.envoy.hcm import PathOptions, XffSettings

PathNormalization = Literal["NONE", "BASE", "DEFAULT", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]

PATH_NORMALIZATIONS: tuple[PathNormalization, ...] = (
    "NONE",
    "BASE",
    "DEFAULT",
    "MERGE_SLASHES",
    "DECODE_AND_MERGE_SLASHES",
)

_OPTIONS: dict[PathNormalization, PathOptions] = {
    "NONE": PathOptions(False, False, "KEEP_UNCHANGED"),
    "BASE": PathOptions(True, False, "KEEP_UNCHANGED"),
    "MERGE_SLASHES": PathOptions(True, True, "KEEP_UNCHANGED"),
    "DECODE_AND_MERGE_SLASHES": PathOptions(True, True, "UNESCAPE_AND_FORWARD"),
}


def path_options(mode: str) -> PathOptions:
    """The HCM path options istiod sets for ``meshConfig.pathNormalization``."""
    for m, o in _OPTIONS.items():
        if m == mode or (mode == "DEFAULT" and m == "BASE"):
            return o
    raise ValueError(f"unknown path normalization {mode!r}")


def path_mode(options: PathOptions) -> PathNormalization | None:
    """The pathNormalization mode istiod sets these options for (None: none of them)."""
    for mode, o in _OPTIONS.items():
        if (options.normalize_path, options.merge_slashes) != (o.normalize_path, o.merge_slashes):
            continue
        if options.unescapes_slashes == o.unescapes_slashes and (
            options.keeps_escaped_slashes == o.keeps_escaped_slashes
        ):
            return mode
    return None


#: What istiod sets on a sidecar's inbound HTTP connection manager.
SIDECAR_INBOUND_XFF = XffSettings(use_remote_address=False, xff_num_trusted_hops=0)


def gateway_xff(num_trusted_proxies: int = 0) -> XffSettings:
    """What istiod sets on a gateway (``proxyConfig.gatewayTopology.numTrustedProxies``)."""
    return XffSettings(use_remote_address=True, xff_num_trusted_hops=num_trusted_proxies)

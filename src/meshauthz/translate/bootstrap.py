"""The runtime flags istiod's bootstrap sets on every proxy.

pilot-agent writes them into the ``layered_runtime`` static layer of the
Envoy bootstrap (``pkg/bootstrap/config.go``, ``extractRuntimeFlags``; the
template is ``tools/packaging/common/envoy_bootstrap.json``). With the default
``HTTP_STRIP_FRAGMENT_FROM_PATH_UNSAFE_IF_DISABLED`` (true) no further flag is
added, so a fragment is stripped rather than rejected; ``FIPS_140_2`` policy
(not modelled) adds a gRPC client flag, and ``proxyConfig.runtimeValues``
(not read) can add or remove flags.

Every sidecar meshauthz models (``check``) or runs (the local mesh, the
real-Envoy tests) uses these.
"""

from __future__ import annotations

from meshauthz.envoy.runtime import EnvoyRuntime, RuntimeValue

ISTIO_RUNTIME_FLAGS: dict[str, RuntimeValue] = {
    "overload.global_downstream_max_connections": "2147483647",
    "re2.max_program_size.error_level": "32768",
    "envoy.deprecated_features:envoy.config.listener.v3.Listener."
    "hidden_envoy_deprecated_use_original_dst": True,
    "envoy.reloadable_features.http_reject_path_with_fragment": False,
}

#: The runtime of a proxy started by pilot-agent with istiod's defaults.
ISTIO_RUNTIME = EnvoyRuntime.of(ISTIO_RUNTIME_FLAGS)

__all__ = ["ISTIO_RUNTIME", "ISTIO_RUNTIME_FLAGS"]

"""Config dumps of the seed's backend sidecar, as a live pod would give them.

``make_dump(example)`` builds the backend's filters with meshauthz (the code
behind ``meshauthz build -f examples/EXAMPLE --workload default/backend``, for
the HTTP chain and for the TCP passthrough chains) and places them in the
``virtualInbound`` listener istiod gives a sidecar in PERMISSIVE mode for a
Service port 80 declared HTTP (``pilot/pkg/networking/core/listener_inbound.go``
and ``filterchain_options.go``): the passthrough chains (HTTP and TCP, each over
mTLS and plaintext, and one-way TLS), the port-80 chains (HTTP over mTLS with
every Istio ALPN, plaintext HTTP), the blackhole chain for 15006, and the
listener filters (original_dst; tls_inspector off for 15006; http_inspector
off for 15006 and for port 80, which is declared HTTP). Field names are
snake_case, as Envoy's admin endpoint writes them.

Regenerate the committed fixtures with::

    .venv/bin/python -m tests.decide.config_dump_fixture
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshauthz.mesh import select_policies
from meshauthz.mesh.loading import load_mesh
from meshauthz.translate import BuildOptions, Chain, build

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
EXAMPLES = HERE.parent.parent / "examples"

POD = "backend-6d5f7c9b8-x2x7q"
POD_IP = "10.244.0.12"

MTLS_HTTP_ALPNS = ["istio-http/1.0", "istio-http/1.1", "istio-h2"]
ALL_ISTIO_MTLS_ALPNS = ["istio", "istio-peer-exchange", *MTLS_HTTP_ALPNS]
MTLS_TCP_ALPNS = ["istio-peer-exchange", "istio"]
PLAINTEXT_HTTP_ALPNS = ["http/1.1", "h2c"]
ANY_V4 = [{"address_prefix": "0.0.0.0", "prefix_len": 0}]


def built_filters(example: str, protocol: str) -> list[dict[str, Any]]:
    """The backend's filters, as ``meshauthz build`` prints them (snake_case)."""
    snap = load_mesh([str(EXAMPLES / example)]).snapshot
    w = snap.workload("default/backend")
    selected = select_policies(snap, w, "AuthorizationPolicy")
    known = {(s.namespace, s.hostname) for s in snap.services}
    options = BuildOptions.from_mesh_config(snap.mesh_config, known_services=known)
    chain = Chain.HTTP if protocol == "http" else Chain.TCP
    return build([s.policy for s in selected], chain, options).to_dicts("snake")  # type: ignore[misc]


def _sds(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
                "set_node_on_first_message_only": True,
                "transport_api_version": "V3",
            },
            "initial_fetch_timeout": "0s",
            "resource_api_version": "V3",
        },
    }


def _mtls(alpn: list[str]) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_2",
                    "tls_maximum_protocol_version": "TLSv1_3",
                },
                "alpn_protocols": alpn,
                "tls_certificate_sds_secret_configs": [_sds("default")],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_subject_alt_names": [{"prefix": "spiffe://cluster.local/"}]
                    },
                    "validation_context_sds_secret_config": _sds("ROOTCA"),
                },
            },
            "require_client_certificate": True,
        },
    }


def _istio_network_filters() -> list[dict[str, Any]]:
    return [
        {
            "name": "istio_authn",
            "typed_config": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                "type_url": "type.googleapis.com/io.istio.network.authn.Config",
            },
        },
        {
            "name": "istio.metadata_exchange",
            "typed_config": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                "type_url": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
                "value": {"protocol": "istio-peer-exchange", "enable_discovery": True},
            },
        },
    ]


def _hcm(stat: str, cluster: str, authz: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat,
            "route_config": {
                "name": cluster,
                "virtual_hosts": [
                    {
                        "name": "inbound|http|80",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "route": {"cluster": cluster, "timeout": "0s"},
                                "decorator": {
                                    "operation": "backend.default.svc.cluster.local:80/*"
                                },
                                "name": "default",
                            }
                        ],
                    }
                ],
                "validate_clusters": False,
            },
            "http_filters": [
                {
                    "name": "istio.metadata_exchange",
                    "typed_config": {
                        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                        "type_url": "type.googleapis.com/io.istio.http.peer_metadata.Config",
                        "value": {"downstream_discovery": [{"istio_headers": {}}]},
                    },
                },
                *authz,
                {
                    "name": "envoy.filters.http.grpc_stats",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
                        "emit_filter_state": True,
                        "stats_for_all_methods": False,
                    },
                },
                {
                    "name": "envoy.filters.http.fault",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
                    },
                },
                {
                    "name": "envoy.filters.http.cors",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
                    },
                },
                {
                    "name": "istio.stats",
                    "typed_config": {
                        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                        "type_url": "type.googleapis.com/stats.PluginConfig",
                        "value": {},
                    },
                },
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                },
            ],
            "server_name": "istio-envoy",
            "use_remote_address": False,
            "forward_client_cert_details": "APPEND_FORWARD",
            "set_current_client_cert_details": {"subject": True, "dns": True, "uri": True},
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "stream_idle_timeout": "0s",
            "normalize_path": True,
            "request_id_extension": {
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
                    "use_request_id_for_trace_sampling": True,
                }
            },
            "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        },
    }


def _tcp_chain(
    name: str, match: dict[str, Any], rbac: list[dict[str, Any]], tls: bool
) -> dict[str, Any]:
    chain: dict[str, Any] = {
        "filter_chain_match": match,
        "filters": [
            *_istio_network_filters(),
            *rbac,
            {
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "InboundPassthroughCluster",
                    "cluster": "InboundPassthroughCluster",
                },
            },
        ],
        "name": name,
    }
    if tls:
        chain["transport_socket"] = _mtls(["istio-peer-exchange", "h2", "http/1.1"])
    return chain


def _http_chain(
    name: str,
    match: dict[str, Any],
    stat: str,
    cluster: str,
    authz: list[dict[str, Any]],
    tls: bool,
) -> dict[str, Any]:
    chain: dict[str, Any] = {
        "filter_chain_match": match,
        "filters": [*_istio_network_filters(), _hcm(stat, cluster, authz)],
        "name": name,
    }
    if tls:
        chain["transport_socket"] = _mtls(["h2", "http/1.1"])
    return chain


def virtual_inbound(example: str) -> dict[str, Any]:
    http = built_filters(example, "http")
    tcp = built_filters(example, "tcp")
    passthrough = "InboundPassthroughCluster"
    chains = [
        {
            "filter_chain_match": {"destination_port": 15006},
            "filters": [
                {
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "BlackHoleCluster",
                        "cluster": "BlackHoleCluster",
                    },
                }
            ],
            "name": "virtualInbound-blackhole",
        },
        _http_chain(
            "virtualInbound-catchall-http",
            {
                "prefix_ranges": ANY_V4,
                "transport_protocol": "tls",
                "application_protocols": MTLS_HTTP_ALPNS,
            },
            "InboundPassthroughCluster",
            passthrough,
            http,
            tls=True,
        ),
        _http_chain(
            "virtualInbound-catchall-http",
            {
                "prefix_ranges": ANY_V4,
                "transport_protocol": "raw_buffer",
                "application_protocols": PLAINTEXT_HTTP_ALPNS,
            },
            "InboundPassthroughCluster",
            passthrough,
            http,
            tls=False,
        ),
        _tcp_chain(
            "virtualInbound",
            {
                "prefix_ranges": ANY_V4,
                "transport_protocol": "tls",
                "application_protocols": MTLS_TCP_ALPNS,
            },
            tcp,
            tls=True,
        ),
        _tcp_chain(
            "virtualInbound",
            {"prefix_ranges": ANY_V4, "transport_protocol": "raw_buffer"},
            tcp,
            tls=False,
        ),
        _tcp_chain(
            "virtualInbound",
            {"prefix_ranges": ANY_V4, "transport_protocol": "tls"},
            tcp,
            tls=False,
        ),
        _http_chain(
            "0.0.0.0_80",
            {
                "destination_port": 80,
                "transport_protocol": "tls",
                "application_protocols": ALL_ISTIO_MTLS_ALPNS,
            },
            "inbound_0.0.0.0_80",
            "inbound|80||",
            http,
            tls=True,
        ),
        _http_chain(
            "0.0.0.0_80",
            {"destination_port": 80, "transport_protocol": "raw_buffer"},
            "inbound_0.0.0.0_80",
            "inbound|80||",
            http,
            tls=False,
        ),
    ]
    return {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "virtualInbound",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
        "filter_chains": chains,
        "listener_filters": [
            {
                "name": "envoy.filters.listener.original_dst",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
                },
            },
            {
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
                },
                "filter_disabled": {"destination_port_range": {"start": 15006, "end": 15007}},
            },
            {
                "name": "envoy.filters.listener.http_inspector",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
                },
                "filter_disabled": {
                    "or_match": {
                        "rules": [
                            {"destination_port_range": {"start": 80, "end": 81}},
                            {"destination_port_range": {"start": 15006, "end": 15007}},
                        ]
                    }
                },
            },
        ],
        "listener_filters_timeout": "0s",
        "traffic_direction": "INBOUND",
        "continue_on_listener_filters_timeout": True,
    }


def sds_cluster() -> dict[str, Any]:
    return {
        "name": "sds-grpc",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "sds-grpc",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "pipe": {"path": "./var/run/secrets/workload-spiffe-uds/socket"}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def make_dump(example: str) -> dict[str, Any]:
    stamp = "2026-01-01T00:00:00Z"
    return {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": {
                    "node": {
                        "id": f"sidecar~{POD_IP}~{POD}.default~default.svc.cluster.local",
                        "cluster": "backend.default",
                        "metadata": {
                            "NAME": POD,
                            "NAMESPACE": "default",
                            "LABELS": {
                                "app": "backend",
                                "pod-template-hash": "6d5f7c9b8",
                                "security.istio.io/tlsMode": "istio",
                            },
                            "INSTANCE_IPS": POD_IP,
                            "SERVICE_ACCOUNT": "default",
                            "WORKLOAD_NAME": "backend",
                            "CLUSTER_ID": "Kubernetes",
                            "MESH_ID": "cluster.local",
                        },
                    },
                    "static_resources": {"clusters": [sds_cluster()]},
                },
                "last_updated": stamp,
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "version_info": stamp,
                "dynamic_listeners": [
                    {
                        "name": "virtualInbound",
                        "active_state": {
                            "version_info": stamp,
                            "listener": virtual_inbound(example),
                            "last_updated": stamp,
                        },
                    }
                ],
            },
        ]
    }


def fixture_path(example: str) -> Path:
    return FIXTURES / f"{example}-backend.config_dump.json"


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    for example in ("seed", "seed-fixed"):
        fixture_path(example).write_text(json.dumps(make_dump(example), indent=2) + "\n")


if __name__ == "__main__":
    main()

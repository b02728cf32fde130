"""A sidecar's Envoy configuration, as istiod would push it, from meshauthz's build.

This module generates; it writes nothing. ``generate`` gives, per workload, the
resources an xDS server would hold for the proxy (``ResourceSet``: per type
URL, the resources by name, and a version): listeners, clusters, secrets and
the ECDS authorization filters. How they reach Envoy is a delivery's business
(``meshauthz.runtime.delivery``: files today); the generation only asks the
delivery how a listener names a resource it fetches separately (the SDS
secrets and the ECDS filters: ``ConfigSources``), and the delivery completes
``bootstrap_base`` with where LDS and CDS come from.

* Listeners: per inbound port a listener (the part of istiod's
  ``virtualInbound`` for that port): TLS inspector, an mTLS filter chain
  (transport ``tls``; client certificate required, validated against the
  mesh root, URI SAN in the trust domain) unless the port is DISABLE, and a
  plaintext chain unless it is STRICT (a STRICT port resets plaintext
  callers: no chain matches). HTTP ports get an HTTP connection manager with
  istiod's inbound settings (path normalization per mesh config, XFCC with
  the peer URI, ``use_remote_address: false``) and the filters in istiod's
  order: the JWT filter from RequestAuthentications, then the AUDIT, DENY
  and ALLOW RBAC filters that ``meshauthz.translate`` builds; TCP ports get the
  network RBAC filters before ``tcp_proxy``; auto-detected ports (no declared
  protocol) get both, chosen by ALPN (mTLS) or the HTTP inspector (plaintext),
  as in ``filterchain_options.go``. Outbound: an HTTP listener per Service
  port number (routes by Host to ``<svc>.<ns>.svc.<domain>`` and its short
  forms, as istiod's per-port route configurations) and a TCP listener per
  TCP Service port.
* Clusters: ``inbound|<port>||`` clusters to the application, and
  ``outbound|<port>||<host>`` clusters to the destination sidecars, with mTLS
  from the caller's certificate (SAN checked against the destinations'
  identities) or plaintext for endpoints that are not mTLS-capable (no
  sidecar, or a DISABLE port: Istio's auto-mTLS), with Istio's default retry
  policy on the routes.
* Extension configs (ECDS): the HTTP authorization filters themselves. The
  listener names four filter slots (JWT, AUDIT, DENY, ALLOW) whose
  configuration comes by ECDS, so a policy change reaches existing
  connections at their next request and no listener is drained (a slot with
  nothing to enforce holds an RBAC filter without rules, or a JWT filter
  without providers, both no-ops). istiod instead inlines the filters and
  omits empty ones; the decisions are the same.
* Secrets (SDS): ``default`` (the workload certificate) and ``ROOTCA`` (the
  mesh root), istiod's names.
* Failing closed: ``fail_closed`` (and, as a last resort, ``lockdown``) turn a
  generated set into one that denies every inbound request, for a sidecar whose
  Envoy refused its configuration (see ``controlplane``).

Not reproduced: Istio's own filters (``istio.metadata_exchange``,
``istio_authn``, ``istio.stats``, ``istio.alpn``) do not exist in upstream
Envoy; the client's ALPN (``istio-http/1.1`` for HTTP, ``istio-peer-exchange``
and ``istio`` for TCP) is set on the outbound cluster instead of by
``istio.alpn``. CUSTOM (ext_authz) policies are not run (no provider).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from msgspec import Struct

from meshauthz.envoy import jwt_authn
from meshauthz.envoy.hcm import HcmOptions
from meshauthz.envoy.listener import FilterChain, FilterChainMatch
from meshauthz.envoy.rbac.serialize import NETWORK_FILTER_NAME, NETWORK_FILTER_TYPE
from meshauthz.mesh import (
    MeshSnapshot,
    MeshWorkload,
    effective_mtls,
    inbound_port,
    select_policies,
    service_port_protocol,
)
from meshauthz.mesh.ports import resolve_target_port
from meshauthz.mesh.protocol import listener_protocol
from meshauthz.runtime.plan import MeshPlan, WorkloadPlan
from meshauthz.translate import Chain
from meshauthz.translate.bootstrap import ISTIO_RUNTIME
from meshauthz.translate.hcm import SIDECAR_INBOUND_XFF, path_options
from meshauthz.translate.requestauthn import jwt_authentication, jwt_rules
from meshauthz.translate.workload import build_for_workload

T = "type.googleapis.com/"
HTTP_RBAC_T = T + "envoy.extensions.filters.http.rbac.v3.RBAC"
JWT_T = T + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
HCM_T = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

SLOTS = ("jwt", "audit", "deny", "allow")  # istiod's order after CUSTOM
SLOT_STAGE = {"audit": "AUDIT", "deny": "DENY", "allow": "ALLOW"}
MTLS_HTTP_ALPNS = ["istio-http/1.0", "istio-http/1.1", "istio-h2"]
CLIENT_HTTP_ALPN = ["istio-http/1.1", "istio"]
CLIENT_TCP_ALPN = ["istio-peer-exchange", "istio"]

ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "listener": "%ACCESS_LOG_TYPE%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "authority": "%REQ(:AUTHORITY)%",
    "code": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "termination": "%CONNECTION_TERMINATION_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",
    "peer": "%DOWNSTREAM_PEER_URI_SAN%",
    "remote": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "local": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "tls": "%DOWNSTREAM_TLS_VERSION%",
    "rbac": "%DYNAMIC_METADATA(envoy.filters.http.rbac)%",
    "network_rbac": "%DYNAMIC_METADATA(envoy.filters.network.rbac)%",
    "jwt": "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn)%",
    "common": "%DYNAMIC_METADATA(envoy.common)%",  # the AUDIT filters' access_log_hint
    "request_id": "%REQ(X-REQUEST-ID)%",
    "probe": "%REQ(X-MESHAUTHZ-PROBE)%",
}


# --------------------------------------------------------------------------- resources


class ResourceType(StrEnum):
    """The xDS resource types the generation produces, by type URL."""

    LISTENER = T + "envoy.config.listener.v3.Listener"
    CLUSTER = T + "envoy.config.cluster.v3.Cluster"
    SECRET = T + "envoy.extensions.transport_sockets.tls.v3.Secret"
    EXTENSION_CONFIG = T + "envoy.config.core.v3.TypedExtensionConfig"


Resource = dict[str, Any]
"""One Envoy resource in proto3 JSON form, with its ``@type`` and ``name``."""


class ResourceSet(Struct, frozen=True):
    """One proxy's configuration as an xDS server holds it: per type, the
    resources by name, and the version they make up together."""

    version: str
    by_type: Mapping[ResourceType, Mapping[str, Resource]]

    def __post_init__(self) -> None:
        # The key a delivery files a resource under must be what Envoy reads in it.
        for t, items in self.by_type.items():
            for name, r in items.items():
                if r.get("@type") != t or r.get("name") != name:
                    raise ValueError(
                        f"resource {name!r} of {t} is a {r.get('@type')} named {r.get('name')!r}"
                    )

    def __getitem__(self, t: ResourceType) -> Mapping[str, Resource]:
        return self.by_type.get(t, {})

    def replace(self, t: ResourceType, items: Mapping[str, Resource], version: str) -> ResourceSet:
        """The same set with the resources of one type replaced (a certificate rotation)."""
        return ResourceSet(version, {**self.by_type, t: items})


class ConfigSources(Protocol):
    """How a delivery lets Envoy fetch a resource on its own (SDS secrets, ECDS
    filters; LDS and CDS in the bootstrap): a file path, an xDS server."""

    def config_source(self, t: ResourceType, name: str) -> dict[str, Any]:
        """The ``envoy.config.core.v3.ConfigSource`` for resource ``name`` of type ``t``."""
        ...


class TlsMaterial(Struct, frozen=True):
    """A workload's certificate chain and private key, and the mesh root (PEM)."""

    cert_chain: bytes
    private_key: bytes
    root: bytes


def _named(resources: list[Resource]) -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    for r in resources:
        if r["name"] in out:
            raise ValueError(f"two resources named {r['name']!r}")
        out[r["name"]] = r
    return out


def _addr(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


# --------------------------------------------------------------------------- bootstrap


def bootstrap_base(w: WorkloadPlan) -> dict[str, Any]:
    """The bootstrap without ``dynamic_resources``: where LDS and CDS come from is
    the delivery's to add (``Delivery.bootstrap``). The runtime is istiod's."""
    return {
        "layered_runtime": ISTIO_RUNTIME.layered_runtime(),
        "node": {
            "id": f"sidecar~{w.ip}~{w.name}.{w.namespace}~{w.namespace}.svc.cluster.local",
            "cluster": f"{w.name}.{w.namespace}",
            "metadata": {"NAMESPACE": w.namespace, "SERVICE_ACCOUNT": w.service_account},
        },
        "admin": {
            "address": _addr(w.ip, w.admin_port),
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": T + "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": os.devnull,
                    },
                }
            ],
        },
    }


# --------------------------------------------------------------------------- secrets


def secret_resources(tls: TlsMaterial) -> dict[str, Resource]:
    """istiod's two SDS secrets: ``default`` (certificate and key) and ``ROOTCA``."""
    return _named(
        [
            {
                "@type": ResourceType.SECRET,
                "name": "default",
                "tls_certificate": {
                    "certificate_chain": {"inline_bytes": _b64(tls.cert_chain)},
                    "private_key": {"inline_bytes": _b64(tls.private_key)},
                },
            },
            {
                "@type": ResourceType.SECRET,
                "name": "ROOTCA",
                "validation_context": {"trusted_ca": {"inline_bytes": _b64(tls.root)}},
            },
        ]
    )


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _sds(sources: ConfigSources, name: str) -> dict[str, Any]:
    return {"name": name, "sds_config": sources.config_source(ResourceType.SECRET, name)}


def _trust_prefixes(snapshot: MeshSnapshot) -> list[dict[str, Any]]:
    mc = snapshot.mesh_config
    return [
        {"san_type": "URI", "matcher": {"prefix": f"spiffe://{td}/"}}
        for td in (mc.trust_domain, *mc.trust_domain_aliases)
    ]


def _downstream_tls(sources: ConfigSources, snapshot: MeshSnapshot) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_2",
                    "tls_maximum_protocol_version": "TLSv1_3",
                },
                "tls_certificate_sds_secret_configs": [_sds(sources, "default")],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": _trust_prefixes(snapshot)
                    },
                    "validation_context_sds_secret_config": _sds(sources, "ROOTCA"),
                },
            },
        },
    }


def _upstream_tls(
    sources: ConfigSources, sans: list[str], alpn: list[str], sni: str
) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": {
                "alpn_protocols": alpn,
                "tls_certificate_sds_secret_configs": [_sds(sources, "default")],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [
                            {"san_type": "URI", "matcher": {"exact": s}} for s in sans
                        ]
                    },
                    "validation_context_sds_secret_config": _sds(sources, "ROOTCA"),
                },
            },
        },
    }


# --------------------------------------------------------------------------- filters


def jwt_filter_config(config: jwt_authn.JwtAuthentication | None) -> dict[str, Any]:
    """The jwt_authn typed config for a slot: istiod's filter for the workload
    (``meshauthz.translate.requestauthn``), or one without providers (a no-op)."""
    return jwt_authn.to_json(config or jwt_authn.JwtAuthentication())


def authz_filters(
    snapshot: MeshSnapshot, mw: MeshWorkload, chain: Chain
) -> tuple[list[dict[str, Any]], list[str]]:
    """The RBAC filters ``meshauthz build`` gives for the workload, and problems."""
    _, result = build_for_workload(snapshot, mw, chain)
    notes = [p.message for p in result.problems if p.severity != "info"]
    out = []
    for bf in result.filters:
        if bf.stage == "CUSTOM":
            notes.append("CUSTOM policies are not run by the local mesh (no ext_authz provider)")
            continue
        out.append({"stage": bf.stage, **bf.to_dict("snake")})
    return out, notes


def ecds_resources(
    snapshot: MeshSnapshot, mw: MeshWorkload
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Slot name -> typed_config of the HTTP authorization filters."""
    built, notes = authz_filters(snapshot, mw, Chain.HTTP)
    slots: dict[str, dict[str, Any]] = {
        s: {"@type": HTTP_RBAC_T} for s in ("audit", "deny", "allow")
    }
    for f in built:
        slot = f["stage"].lower()
        slots[slot] = f["typed_config"]
    ras = [s.policy for s in select_policies(snapshot, mw, "RequestAuthentication")]
    slots["jwt"] = jwt_filter_config(jwt_authentication(ras, unresolved_jwks="fake"))
    for r in jwt_rules(ras):
        if not r.jwks and r.jwks_url:
            notes.append(
                f"JWT issuer {r.issuer}: jwksUri {r.jwks_url} has no local JWKS "
                "(mesh up --jwks URI=FILE); tokens of this issuer are rejected"
            )
    return slots, notes


def slot_name(slot: str) -> str:
    return f"meshauthz.{slot}"


def _ecds_filter(sources: ConfigSources, slot: str) -> dict[str, Any]:
    type_url = JWT_T if slot == "jwt" else HTTP_RBAC_T
    return {
        "name": slot_name(slot),
        "config_discovery": {
            "config_source": sources.config_source(ResourceType.EXTENSION_CONFIG, slot_name(slot)),
            "type_urls": [type_url],
        },
    }


def _access_log(plan: MeshPlan, w: WorkloadPlan, direction: str) -> list[dict[str, Any]]:
    fmt = {"direction": direction, "workload": w.key, **ACCESS_LOG_FORMAT}
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": T + "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": str(plan.access_log(w)),
                "log_format": {"json_format": fmt},
            },
        }
    ]


def _path_options(snapshot: MeshSnapshot) -> dict[str, Any]:
    """The inbound HCM's path and XFF options, as istiod sets them for a sidecar."""
    mode = snapshot.mesh_config.path_normalization
    return HcmOptions(path_options(mode), SIDECAR_INBOUND_XFF).to_json()


def _inbound_hcm(
    plan: MeshPlan, w: WorkloadPlan, sources: ConfigSources, snapshot: MeshSnapshot, port: int
) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM_T,
            "stat_prefix": f"inbound_{port}",
            "codec_type": "AUTO",
            "forward_client_cert_details": "APPEND_FORWARD",
            "set_current_client_cert_details": {"subject": True, "dns": True, "uri": True},
            "server_name": "istio-envoy",
            **_path_options(snapshot),
            "route_config": {
                "name": f"inbound|{port}||",
                "validate_clusters": False,
                "virtual_hosts": [
                    {
                        "name": f"inbound|http|{port}",
                        "domains": ["*"],
                        "routes": [
                            {
                                "name": "default",
                                "match": {"prefix": "/"},
                                "route": {"cluster": f"inbound|{port}||", "timeout": "0s"},
                            }
                        ],
                    }
                ],
            },
            "http_filters": [
                *(_ecds_filter(sources, s) for s in SLOTS),
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router"},
                },
            ],
            "access_log": _access_log(plan, w, "inbound"),
        },
    }


def _tcp_filters(
    plan: MeshPlan, w: WorkloadPlan, rbac: list[dict[str, Any]], cluster: str, stat: str
) -> list[dict[str, Any]]:
    return [
        *({"name": f["name"], "typed_config": f["typed_config"]} for f in rbac),
        {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": stat,
                "cluster": cluster,
                "access_log": _access_log(plan, w, "inbound-tcp"),
            },
        },
    ]


def inbound_listener(
    plan: MeshPlan,
    w: WorkloadPlan,
    sources: ConfigSources,
    snapshot: MeshSnapshot,
    mw: MeshWorkload,
    port: int,
    tcp_rbac: list[dict[str, Any]],
) -> dict[str, Any]:
    kind = inbound_port(snapshot, mw, port).listener  # http, tcp or auto
    mode = effective_mtls(snapshot, mw).mode_for_port(port)
    cluster = f"inbound|{port}||"

    def http() -> list[dict[str, Any]]:
        return [_inbound_hcm(plan, w, sources, snapshot, port)]

    def tcp() -> list[dict[str, Any]]:
        return _tcp_filters(plan, w, tcp_rbac, cluster, f"inbound_tcp_{port}")

    tls = _downstream_tls(sources, snapshot)
    mtls, plain = (
        FilterChainMatch(transport_protocol="tls"),
        FilterChainMatch(transport_protocol="raw_buffer"),
    )
    chains: list[FilterChain] = []
    if mode != "DISABLE":
        if kind == "auto":
            alpn = FilterChainMatch(
                transport_protocol="tls", application_protocols=tuple(MTLS_HTTP_ALPNS)
            )
            chains.append(FilterChain(f"{port}-mtls-http", alpn, tuple(http()), tls))
            chains.append(FilterChain(f"{port}-mtls-tcp", mtls, tuple(tcp()), tls))
        else:
            filters = http() if kind == "http" else tcp()
            chains.append(FilterChain(f"{port}-mtls", mtls, tuple(filters), tls))
    if mode != "STRICT":
        if kind == "auto":
            alpn = FilterChainMatch(
                transport_protocol="raw_buffer", application_protocols=("http/1.1", "h2c")
            )
            chains.append(FilterChain(f"{port}-plaintext-http", alpn, tuple(http()), None))
            chains.append(FilterChain(f"{port}-plaintext-tcp", plain, tuple(tcp()), None))
        else:
            # DISABLE: Istio has no TLS chain; whatever arrives is read as plaintext.
            match = plain if mode == "PERMISSIVE" else FilterChainMatch()
            filters = http() if kind == "http" else tcp()
            chains.append(FilterChain(f"{port}-plaintext", match, tuple(filters), None))
    listener_filters: list[dict[str, Any]] = [
        {
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {
                "@type": T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
            },
        }
    ]
    if kind == "auto":
        listener_filters.append(
            {
                "name": "envoy.filters.listener.http_inspector",
                "typed_config": {
                    "@type": T + "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
                },
            }
        )
    return {
        "@type": ResourceType.LISTENER,
        "name": f"inbound|{port}",
        "address": _addr(*w.inbound_address(port)),
        "listener_filters": listener_filters,
        "listener_filters_timeout": "1s",
        "continue_on_listener_filters_timeout": True,
        "filter_chains": [c.to_json() for c in chains],
        "access_log": _access_log(plan, w, "inbound-listener"),
    }


# --------------------------------------------------------------------------- outbound


def service_hosts(snapshot: MeshSnapshot, svc_ns: str, svc_name: str, caller_ns: str) -> list[str]:
    """The names a caller can use for a Service, as istiod's route domains:
    the FQDN, ``name.ns.svc``, ``name.ns`` and, in the same namespace, ``name``."""
    fqdn = snapshot.service_hostname(svc_name, svc_ns)
    names = [fqdn, f"{svc_name}.{svc_ns}.svc", f"{svc_name}.{svc_ns}"]
    if caller_ns == svc_ns:
        names.append(svc_name)
    return names


def _retry_policy() -> dict[str, Any]:
    # istiod's default retry policy (route/retry: DefaultPolicy), plus resets
    # before any request byte was sent (a pooled connection closed by the peer).
    return {
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,"
        "retriable-status-codes,reset-before-request",
        "num_retries": 2,
        "retriable_status_codes": [503],
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": T
                    + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": "5",
    }


def _endpoints(
    plan: MeshPlan, snapshot: MeshSnapshot, svc_ns: str, svc_name: str, sp_port: int
) -> list[tuple[WorkloadPlan, int, bool, str]]:
    """(workload, address port, mTLS?, spiffe id) per endpoint of a Service port."""
    svc = snapshot.service(f"{svc_ns}/{svc_name}")
    sp = svc.port(sp_port)
    out: list[tuple[WorkloadPlan, int, bool, str]] = []
    if sp is None:
        return out
    for mw in snapshot.workloads_for(svc):
        wp = plan.workloads.get(mw.key)
        if wp is None:
            continue
        tp = resolve_target_port(mw, sp)
        if tp is None or tp not in wp.inbound:
            continue
        mtls = wp.sidecar and effective_mtls(snapshot, mw).mode_for_port(tp) != "DISABLE"
        out.append((wp, wp.inbound[tp], mtls, mw.identity.spiffe_uri))
    return out


def outbound_cluster(
    plan: MeshPlan,
    w: WorkloadPlan,
    sources: ConfigSources,
    snapshot: MeshSnapshot,
    svc_ns: str,
    svc_name: str,
    sp_port: int,
    http: bool,
) -> dict[str, Any]:
    host = snapshot.service_hostname(svc_name, svc_ns)
    eps = _endpoints(plan, snapshot, svc_ns, svc_name, sp_port)
    sans = sorted({e[3] for e in eps if e[2]})
    lb = [
        {
            "endpoint": {"address": _addr(wp.ip, port)},
            "metadata": {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}
            if mtls
            else {},
        }
        for wp, port, mtls, _ in eps
    ]
    alpn = CLIENT_HTTP_ALPN if http else CLIENT_TCP_ALPN
    sni = f"outbound_.{sp_port}_._.{host}"
    return {
        "@type": ResourceType.CLUSTER,
        "name": f"outbound|{sp_port}||{host}",
        "type": "STATIC",
        "connect_timeout": "2s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": f"outbound|{sp_port}||{host}",
            "endpoints": [{"lb_endpoints": lb}] if lb else [],
        },
        "upstream_bind_config": {"source_address": {"address": w.ip, "port_value": 0}},
        "transport_socket_matches": [
            {
                "name": "tlsMode-istio",
                "match": {"tlsMode": "istio"},
                "transport_socket": _upstream_tls(sources, sans, alpn, sni),
            },
            {
                "name": "tlsMode-disabled",
                "match": {},
                "transport_socket": {
                    "name": "envoy.transport_sockets.raw_buffer",
                    "typed_config": {
                        "@type": T + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
                    },
                },
            },
        ],
    }


def _outbound_http_listener(
    plan: MeshPlan, w: WorkloadPlan, snapshot: MeshSnapshot, port: int, caller_ns: str
) -> dict[str, Any]:
    vhosts = []
    for svc in snapshot.services:
        sp = svc.port(port)
        if sp is None or sp.protocol != "TCP":
            continue
        if listener_protocol(service_port_protocol(sp)) == "tcp":
            continue
        names = service_hosts(snapshot, svc.namespace, svc.name, caller_ns)
        domains = [*names, *(f"{n}:{port}" for n in names)]
        if svc.cluster_ip:
            domains += [svc.cluster_ip, f"{svc.cluster_ip}:{port}"]
        vhosts.append(
            {
                "name": f"{svc.hostname}:{port}",
                "domains": sorted(set(domains)),
                "routes": [
                    {
                        "name": "default",
                        "match": {"prefix": "/"},
                        "route": {
                            "cluster": f"outbound|{port}||{svc.hostname}",
                            "timeout": "0s",
                            "retry_policy": _retry_policy(),
                        },
                    }
                ],
            }
        )
    return {
        "@type": ResourceType.LISTENER,
        "name": f"outbound|{port}",
        "address": _addr(w.ip, w.outbound_http[port]),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM_T,
                            "stat_prefix": f"outbound_{port}",
                            "codec_type": "AUTO",
                            "route_config": {
                                "name": str(port),
                                "validate_clusters": False,
                                "virtual_hosts": vhosts,
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": T
                                        + "envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                            "access_log": _access_log(plan, w, "outbound"),
                        },
                    }
                ]
            }
        ],
    }


def _outbound_tcp_listener(
    plan: MeshPlan, w: WorkloadPlan, snapshot: MeshSnapshot, target: str
) -> dict[str, Any]:
    ref, _, port = target.rpartition(":")
    ns, name = ref.split("/")
    host = snapshot.service_hostname(name, ns)
    return {
        "@type": ResourceType.LISTENER,
        "name": f"outbound|{port}||{host}",
        "address": _addr(w.ip, w.outbound_tcp[target]),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {
                            "@type": T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                            "stat_prefix": f"outbound_{port}_{host}",
                            "cluster": f"outbound|{port}||{host}",
                            "access_log": _access_log(plan, w, "outbound-tcp"),
                        },
                    }
                ]
            }
        ],
    }


# --------------------------------------------------------------------------- all resources


def generate(
    plan: MeshPlan,
    w: WorkloadPlan,
    snapshot: MeshSnapshot,
    sources: ConfigSources,
    tls: TlsMaterial,
    version: str,
) -> tuple[ResourceSet, list[str]]:
    """The workload's listeners, clusters, secrets and ECDS filters, and problems to
    report. Nothing is written and the result depends on the arguments only."""
    mw = snapshot.workload(w.key)
    ecds, notes = ecds_resources(snapshot, mw)
    tcp_built, tcp_notes = authz_filters(snapshot, mw, Chain.TCP)
    notes += [n for n in tcp_notes if n not in notes]
    listeners = [
        inbound_listener(plan, w, sources, snapshot, mw, p, tcp_built) for p in sorted(w.inbound)
    ]
    listeners += [
        _outbound_http_listener(plan, w, snapshot, p, w.namespace) for p in sorted(w.outbound_http)
    ]
    listeners += [_outbound_tcp_listener(plan, w, snapshot, t) for t in sorted(w.outbound_tcp)]
    clusters = [
        {
            "@type": ResourceType.CLUSTER,
            "name": f"inbound|{p}||",
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": {
                "cluster_name": f"inbound|{p}||",
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": _addr(w.ip, w.app_ports[p])}}]}
                ],
            },
        }
        for p in sorted(w.inbound)
    ]
    seen: set[str] = set()
    for svc in snapshot.services:
        for sp in svc.ports:
            if sp.protocol != "TCP":
                continue
            is_http = listener_protocol(service_port_protocol(sp)) != "tcp"
            c = outbound_cluster(
                plan, w, sources, snapshot, svc.namespace, svc.name, sp.port, is_http
            )
            if c["name"] not in seen:
                seen.add(c["name"])
                clusters.append(c)
    filters = [
        {"@type": ResourceType.EXTENSION_CONFIG, "name": slot_name(slot), "typed_config": cfg}
        for slot, cfg in ecds.items()
    ]
    resources = {
        ResourceType.LISTENER: _named(listeners),
        ResourceType.CLUSTER: _named(clusters),
        ResourceType.SECRET: secret_resources(tls),
        ResourceType.EXTENSION_CONFIG: _named(filters),
    }
    return ResourceSet(version, resources), notes


# --------------------------------------------------------------------------- fail closed

FAIL_CLOSED_POLICY = "meshauthz-fail-closed"
_DENY_ALL_RULES = {
    "action": "DENY",
    "policies": {
        FAIL_CLOSED_POLICY: {"permissions": [{"any": True}], "principals": [{"any": True}]}
    },
}


_DENY_CONNECTIONS = {
    "name": NETWORK_FILTER_NAME,
    "typed_config": {
        "@type": NETWORK_FILTER_TYPE,
        "stat_prefix": "meshauthz_fail_closed_",
        "rules": _DENY_ALL_RULES,
    },
}


def fail_closed(resources: ResourceSet, version: str) -> ResourceSet:
    """The same proxy denying every inbound request and connection: for a workload
    whose Envoy refused its configuration, which would otherwise keep enforcing the
    policies the user replaced. The DENY slot holds an RBAC filter that denies
    everything (403, policy ``meshauthz-fail-closed``) and the other slots no-ops
    (so nothing that was refused is sent again); each inbound TCP chain's network
    RBAC filters are replaced by one that denies every connection. Listeners,
    clusters and secrets are otherwise unchanged, so this differs from what Envoy
    accepted before only in these filters."""
    filters: dict[str, Resource] = {}
    for name, r in resources[ResourceType.EXTENSION_CONFIG].items():
        if name == slot_name("deny"):
            cfg: dict[str, Any] = {"@type": HTTP_RBAC_T, "rules": _DENY_ALL_RULES}
        elif name == slot_name("jwt"):
            cfg = jwt_filter_config(None)
        else:
            cfg = {"@type": HTTP_RBAC_T}
        filters[name] = {**r, "typed_config": cfg}
    listeners: dict[str, Resource] = {}
    for name, listener in resources[ResourceType.LISTENER].items():
        if name.startswith("inbound|"):
            chains = []
            for chain in listener["filter_chains"]:
                kept = [f for f in chain["filters"] if f["name"] != NETWORK_FILTER_NAME]
                if kept and kept[-1]["name"] == "envoy.filters.network.tcp_proxy":
                    kept = [_DENY_CONNECTIONS, *kept]
                chains.append({**chain, "filters": kept})
            listener = {**listener, "filter_chains": chains}
        listeners[name] = listener
    by_type = {
        **resources.by_type,
        ResourceType.EXTENSION_CONFIG: filters,
        ResourceType.LISTENER: listeners,
    }
    return ResourceSet(version, by_type)


def lockdown(resources: ResourceSet, version: str) -> ResourceSet:
    """``fail_closed`` for an Envoy that refused even those listeners: only the
    inbound listeners, each on its address with one filter chain that closes every
    connection (nothing generated from the manifests but the address), and no
    outbound listeners."""
    listeners: dict[str, Resource] = {}
    for name, listener in resources[ResourceType.LISTENER].items():
        if not name.startswith("inbound|"):
            continue
        tcp_proxy = {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": "meshauthz_lockdown",
                "cluster": f"{name}||",
            },
        }
        listeners[name] = {
            "@type": ResourceType.LISTENER,
            "name": name,
            "address": listener["address"],
            "filter_chains": [{"filters": [_DENY_CONNECTIONS, tcp_proxy]}],
        }
    closed = fail_closed(resources, version)
    return closed.replace(ResourceType.LISTENER, listeners, version)


__all__ = [
    "ACCESS_LOG_FORMAT",
    "FAIL_CLOSED_POLICY",
    "SLOTS",
    "ConfigSources",
    "Resource",
    "ResourceSet",
    "ResourceType",
    "TlsMaterial",
    "authz_filters",
    "bootstrap_base",
    "fail_closed",
    "generate",
    "jwt_filter_config",
    "lockdown",
    "secret_resources",
    "service_hosts",
]

"""A live proxy's Envoy config dump -> the chain a request runs through there.

The input is Envoy's ``/config_dump`` admin document, as printed by
``kubectl exec POD -c istio-proxy -- pilot-agent request GET config_dump`` or
``istioctl proxy-config all POD -o json``: ``{"configs": [...]}`` with field
names in snake_case (Envoy's admin output) or camelCase (proto3 JSON); both
are read.

What is read, and how Envoy uses it:

* the listener: ``virtualInbound`` when present (iptables sends every inbound
  connection there and the original destination port picks the filter chain),
  otherwise an INBOUND listener bound to the port (``bindToPort`` sidecars);
* the filter chain, chosen as Envoy's ``FilterChainManagerImpl`` does: the
  most specific match at each level in turn (destination port, destination
  IP, server name, transport protocol, application protocols, source), with
  no fallback to a less specific branch once a level matched. The connection
  is described as an Istio client sidecar makes it: mTLS (transport ``tls``,
  ALPN ``istio-http/1.1`` for HTTP or ``istio-peer-exchange``/``istio`` for
  TCP) or plaintext (``raw_buffer``; ALPN ``http/1.1`` only where the
  listener's HTTP inspector runs for the port). The listener filters'
  ``filter_disabled`` port predicates are honoured (istiod turns the HTTP
  inspector off on ports declared HTTP). As istiod builds the chains
  (``listener_inbound.go``, ``filterchain_options.go``), a plaintext caller
  matches only ``raw_buffer`` chains: a port that has only TLS chains is
  STRICT; a caller with an identity that finds no TLS chain is sent plaintext
  by its own sidecar (auto mTLS), so the port is mTLS DISABLEd;
* on an HTTP chain, the ``http_connection_manager``'s ``http_filters`` in
  order: RBAC (``envoy.filters.http.rbac``), ``ext_authz`` and ``jwt_authn``
  (also when delivered by ECDS), and the HCM's path options
  (``normalize_path``, ``merge_slashes``, ``path_with_escaped_slashes_action``)
  and XFF settings (``use_remote_address``, ``xff_num_trusted_hops``); the path
  options are shown as the Istio ``pathNormalization`` mode istiod sets them
  for; on a TCP chain the network RBAC and ``ext_authz`` filters before
  ``tcp_proxy``;
* the route the request takes (``meshauthz.envoy.route``), when the route
  configuration (inline, or the dump's RDS routes) configures one of the
  chain's filters per route: an ``RBACPerRoute`` replaces the configuration
  of every RBAC filter of that name, or turns them off without ``rbac``, as
  a ``FilterConfig`` with ``disabled`` does for any filter; a filter the HCM
  has ``disabled`` runs only where a route configures it;
* the filters that are not evaluated (Lua, Wasm, ext_proc, any other) and
  where they stand: a decision that depends on one is conditional;
* the bootstrap's node metadata (``NAME``, ``NAMESPACE``, ``LABELS``,
  ``INSTANCE_IPS``, ``SERVICE_ACCOUNT``) for the workload's name and address.

Each RBAC filter gets the stage istiod gave it (``builder.go``): CUSTOM for
the filter whose rules carry the ``istio-ext-authz`` prefix (and its
``ext_authz`` filter), else AUDIT for action LOG, DENY, ALLOW, by its
enforced rules or, for a dry-run-only filter, its shadow rules. Envoy policy
names ``ns[NS]-policy[NAME]-rule[N]`` (with the CUSTOM prefix or the
bad-provider suffix) are mapped back to ``NS/NAME`` rule ``N``; the shape
istiod writes for a policy without rules maps to no rule, the shape of an
empty rule ``{}`` is remembered so a decision can say why it matched.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import sys
from collections.abc import Mapping
from typing import Any, Literal

from msgspec import Struct, field
from msgspec.structs import replace

from meshauthz.decide.cause import Stage
from meshauthz.decide.decision import Decision
from meshauthz.decide.engine import Prepared, PreparedStage, run_prepared
from meshauthz.decide.request import Request, resolve_source
from meshauthz.decide.request_spec import RequestSpec
from meshauthz.decide.runner import ExtAuthzAssumption
from meshauthz.decide.view import request_view
from meshauthz.envoy import jwt_authn
from meshauthz.envoy.ext_authz import (
    HTTP_EXT_AUTHZ_NAME,
    HTTP_EXT_AUTHZ_TYPE,
    NETWORK_EXT_AUTHZ_NAME,
    NETWORK_EXT_AUTHZ_TYPE,
    ExtAuthzFilter,
)
from meshauthz.envoy.hcm import HCM_NAME, HCM_TYPE, HcmConfigError, HcmOptions
from meshauthz.envoy.jwt_authn import JWT_FILTER, JWT_TYPE, JwtAuthentication
from meshauthz.envoy.listener import (
    HTTP_INSPECTOR,
    TLS_INSPECTOR,
    Connection,
    FilterChain,
    Listener,
    select_chain,
)
from meshauthz.envoy.proto_json import get as _get
from meshauthz.envoy.rbac.evaluate import compile_filter
from meshauthz.envoy.rbac.model import (
    RBAC,
    HttpRbacFilter,
    IdAnd,
    IdAny,
    IdNot,
    NetworkRbacFilter,
    PermAnd,
    PermAny,
    PermNot,
    Policy,
)
from meshauthz.envoy.rbac.serialize import HTTP_FILTER_TYPE, NETWORK_FILTER_TYPE, parse_filter
from meshauthz.envoy.request_headers import HeaderSettings
from meshauthz.envoy.route import Disabled, RouteUnresolved, choose_route, per_filter_configs
from meshauthz.errors import InputError, Location
from meshauthz.mesh import MeshSnapshot, MeshWorkload, inbound_port, inbound_ports, resolve_target
from meshauthz.mesh.snapshot import Identity, LookupFailed
from meshauthz.translate import naming
from meshauthz.translate.bootstrap import ISTIO_RUNTIME
from meshauthz.translate.builder import BuildResult, BuiltFilter
from meshauthz.translate.hcm import path_mode
from meshauthz.translate.hcm_headers import SIDECAR_INBOUND_HEADERS

MAX_DUMP_BYTES = 512 * 1024 * 1024
RBAC_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
_AUTHZ_TYPES = frozenset({HTTP_FILTER_TYPE, HTTP_EXT_AUTHZ_TYPE, JWT_TYPE})
VIRTUAL_INBOUND = "virtualInbound"
TCP_PROXY_NAME = "envoy.filters.network.tcp_proxy"
# ALPN an Istio client sidecar offers (pilot/pkg/networking/core/cluster_tls.go):
# HTTP over mTLS, TCP over mTLS; a plaintext HTTP/1.1 request as the HTTP
# inspector sees it.
MTLS_HTTP_ALPN = ("istio-http/1.1",)
MTLS_TCP_ALPN = ("istio-peer-exchange", "istio")
PLAINTEXT_HTTP_ALPN = ("http/1.1",)
# Filters istiod places before the authorization filters that do not decide.
_NEUTRAL = frozenset(
    {
        "istio_authn",
        "istio.metadata_exchange",
        "istio.alpn",
        "istio.stats",
        "envoy.filters.http.peer_metadata",
        "envoy.filters.http.grpc_stats",
        "envoy.filters.http.router",
        TCP_PROXY_NAME,
    }
)

Protocol = Literal["http", "tcp"]


class ConfigDumpError(InputError):
    """A config dump that cannot be read, or holds nothing for the request."""


# --------------------------------------------------------------------------- reading


class ChainInfo(Struct, frozen=True):
    """Where in the dump a request went: for the output and the trace."""

    file: str
    listener: str
    chain: str
    index: int
    transport: str
    application_protocols: tuple[str, ...]
    protocol: Protocol
    passthrough: bool
    mtls: str  # "mTLS", "plaintext", "mTLS required", "mTLS disabled"
    normalization: str | None
    not_evaluated: tuple[str, ...] = ()
    # The route whose per-route configuration changed the filters, and how.
    route: str | None = None
    per_route: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "listener": self.listener,
            "filterChain": self.chain,
            "filterChainIndex": self.index,
            "transportProtocol": self.transport or None,
            "applicationProtocols": list(self.application_protocols),
            "protocol": self.protocol,
            "passthrough": self.passthrough,
            "mtls": self.mtls,
            "pathNormalization": self.normalization,
            "notEvaluated": list(self.not_evaluated),
            "route": self.route,
            "perRoute": list(self.per_route),
        }


class DumpChain(Struct):
    """A request made ready for the engine: the prepared chain, the request as
    that chain sees it (its protocol follows the chain), and where it went."""

    prepared: Prepared
    request: Request
    info: ChainInfo


class ConfigDump(Struct):
    file: str
    listeners: list[Listener]  # dump order
    ecds: dict[str, dict[str, Any]]  # ECDS filter name -> typed_config
    workload: MeshWorkload
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)  # RDS name -> config
    _cache: dict[tuple[str, int, str, str], Prepared] = field(default_factory=dict)

    @property
    def listener_names(self) -> list[str]:
        return [lis.name for lis in self.listeners]

    # --- the listener and the chain -------------------------------------------------

    def listener_for(self, port: int) -> Listener:
        for lis in self.listeners:
            if lis.name == VIRTUAL_INBOUND:
                return lis
        for lis in self.listeners:
            if lis.traffic_direction == "INBOUND" and lis.port == port:
                return lis
        present = ", ".join(self.listener_names) or "none"
        raise ConfigDumpError(
            f"no inbound listener for port {port}: the dump has no {VIRTUAL_INBOUND} listener "
            f"and no INBOUND listener bound to port {port}; listeners present: {present}",
            location=Location(self.file),
            field="port",
        )

    def chain_for(self, request: Request, protocol_hint: Protocol | None) -> DumpChain:
        """The filter chain ``request`` lands on, prepared for the engine."""
        port = request.port
        lis = self.listener_for(port)
        lname = lis.name
        proto = protocol_hint or request.protocol
        tls_on = lis.listener_filter_runs(TLS_INSPECTOR, port)
        http_on = lis.listener_filter_runs(HTTP_INSPECTOR, port)

        def conn(mtls: bool) -> Connection:
            alpn: tuple[str, ...]
            if mtls:
                alpn = MTLS_HTTP_ALPN if proto == "http" else MTLS_TCP_ALPN
                transport = "tls" if tls_on else "raw_buffer"
            else:
                alpn = PLAINTEXT_HTTP_ALPN if (proto == "http" and http_on) else ()
                transport = "raw_buffer"
            return Connection(
                port=port,
                ip=request.destination.address,
                sni=request.sni,
                transport=transport,
                alpn=alpn,
                source_ip=request.source_ip,
            )

        mtls_caller = not request.plaintext
        chosen = select_chain(lis, conn(mtls_caller))
        mode = "PERMISSIVE"
        if chosen is None:
            other = select_chain(lis, conn(not mtls_caller))
            if other is None:
                described = (
                    "; ".join(c.describe(i) for i, c in enumerate(lis.filter_chains)) or "none"
                )
                raise ConfigDumpError(
                    f"no filter chain of listener {lname} accepts a connection to port {port} "
                    f"(neither mTLS nor plaintext); filter chains: {described}",
                    location=Location(self.file),
                    field="port",
                )
            chosen = other
            mode = "DISABLE" if mtls_caller else "STRICT"
        index, chain = chosen
        if mode == "PERMISSIVE" and mtls_caller and not chain.requires_client_certificate:
            mode = "DISABLE"  # the chain does not ask for a client certificate
        key = (lname, index, mode, "")
        prepared = self._cache.get(key)
        if prepared is None:
            prepared = self._prepare(lname, index, chain, request, mode)
            self._cache[key] = prepared
        route: str | None = None
        per_route: dict[str, Any] = {}
        if prepared.protocol == "http" and (prepared.custom or prepared.rest or prepared.jwt):
            at = replace(request, destination=self.workload, protocol="http")
            route, per_route = self._route(lname, index, chain, prepared, at)
        if per_route:
            key = (lname, index, mode, json.dumps(per_route, sort_keys=True, default=str))
            prepared = self._cache.get(key) or self._prepare(
                lname, index, chain, request, mode, per_route
            )
            self._cache[key] = prepared
        info = ChainInfo(
            file=self.file,
            listener=lname,
            chain=chain.name or f"filter_chains[{index}]",
            index=index,
            transport=chain.match.transport_protocol,
            application_protocols=chain.match.application_protocols,
            protocol=prepared.protocol,
            passthrough=chain.match.destination_port is None,
            mtls={
                "PERMISSIVE": "mTLS" if mtls_caller else "plaintext",
                "STRICT": "mTLS required",
                "DISABLE": "mTLS disabled",
            }[mode],
            normalization=prepared.normalization if prepared.protocol == "http" else None,
            not_evaluated=prepared.not_evaluated,
            route=route if per_route else None,
            per_route=tuple(f"{n} {_per_route_effect(v)}" for n, v in per_route.items()),
        )
        req = request
        if req.protocol != prepared.protocol:
            req = replace(req, protocol=prepared.protocol)
        req = replace(req, destination=self.workload)
        return DumpChain(dataclasses.replace(prepared, port=port), req, info)

    # --- one chain -> Prepared ---------------------------------------------------------

    def _hcm_at(self, chain: FilterChain) -> int | None:
        return next(
            (
                i
                for i, f in enumerate(chain.filters)
                if _type_of(f, self.ecds) == HCM_TYPE or _get(f, "name") == HCM_NAME
            ),
            None,
        )

    def _route(
        self, lname: str, index: int, chain: FilterChain, prepared: Prepared, request: Request
    ) -> tuple[str | None, dict[str, Any]]:
        """The route ``request`` takes on the chain's HCM and the per-route configuration
        there of the chain's HTTP filters (empty when none applies)."""
        hcm_at = self._hcm_at(chain)
        assert hcm_at is not None
        where = f"{lname}.filter_chains[{index}].filters[{hcm_at}].typed_config"
        hcm = self._typed(chain.filters[hcm_at], where)
        http_filters = list(_get(hcm, "http_filters") or ())
        names = {str(_get(f, "name") or "") for f in http_filters}
        rc = _get(hcm, "route_config")
        if rc is None:
            rds = str(_get(_get(hcm, "rds"), "route_config_name") or "")
            rc = self.routes.get(rds) if rds else None
            if rc is None:
                what = f"route configuration {rds!r} (RDS)" if rds else "routes (scoped RDS)"
                raise ConfigDumpError(
                    f"the HTTP connection manager takes its {what} from outside the dump: "
                    "per-route filter configuration cannot be read (dump the routes too: "
                    "RoutesConfigDump)",
                    location=Location(self.file),
                    field=where,
                )
        if not names & per_filter_configs(rc):
            return None, {}
        view = request_view(prepared, request)
        if view.rejected is not None or view.headers is None:
            return None, {}
        authority = next((v for k, v in view.headers if k == ":authority"), "")
        try:
            choice = choose_route(rc, authority, view.path)
        except RouteUnresolved as e:
            raise ConfigDumpError(
                f"per-route filter configuration: {e}", location=Location(self.file), field=where
            ) from None
        if choice is None:
            return None, {}
        # What changes a decision: a filter turned off or on, the authorization
        # filters' own configuration (another filter's is not evaluated either way).
        kinds = {str(_get(f, "name") or ""): _type_of(f, self.ecds) for f in http_filters}
        off = {str(_get(f, "name") or "") for f in http_filters if _get(f, "disabled")}
        found = {
            k: v
            for k, v in choice.per_filter.items()
            if k in kinds and (_disables(v) or k in off or kinds[k] in _AUTHZ_TYPES)
        }
        return f"virtual host {choice.virtual_host}, route {choice.route}", found

    def _prepare(
        self,
        lname: str,
        index: int,
        chain: FilterChain,
        request: Request,
        mode: str,
        per_route: Mapping[str, Any] | None = None,
    ) -> Prepared:
        where = f"{lname}.filter_chains[{index}]"
        filters = list(chain.filters)
        hcm_at = self._hcm_at(chain)
        jwt: JwtAuthentication | None = None
        options = HcmOptions()
        headers = SIDECAR_INBOUND_HEADERS
        normalization = "NONE"
        if hcm_at is not None:
            protocol: Protocol = "http"
            hcm = self._typed(filters[hcm_at], f"{where}.filters[{hcm_at}]")
            options = self._hcm_options(hcm, f"{where}.filters[{hcm_at}].typed_config")
            try:  # what the HCM does to the headers, read from the dump itself
                headers = HeaderSettings.from_hcm(hcm)
            except (ValueError, TypeError) as e:
                raise ConfigDumpError(
                    str(e),
                    location=Location(self.file),
                    field=f"{where}.filters[{hcm_at}].typed_config",
                ) from None
            normalization = path_mode(options.path) or "NONE"
            placed = self._http_items(
                list(_get(hcm, "http_filters") or []),
                f"{where}.filters[{hcm_at}].typed_config.http_filters",
                per_route or {},
            )
        else:
            protocol = "tcp"
            placed = self._network_items(filters, f"{where}.filters")
        # An ALLOW depends on every filter not evaluated before the last
        # authorization filter of the chain (also one turned off on this route),
        # a denial at a stage on those before the last filter of that stage.
        items = placed.items
        others = placed.others
        not_evaluated = [n for j, n in others if j < placed.last]
        last_at: dict[Stage, int] = {}
        for j, item in zip(placed.at, items, strict=True):
            last_at[Stage.JWT if isinstance(item, JwtAuthentication) else Stage(item.stage)] = j
        before = {stage: tuple(n for j, n in others if j < at) for stage, at in last_at.items()}
        stages: list[PreparedStage | None] = []
        for item in items:
            if isinstance(item, JwtAuthentication):
                jwt = item
                stages.append(None)
                continue
            compiled = None
            if isinstance(item.filter, HttpRbacFilter | NetworkRbacFilter):
                compiled = compile_filter(item.filter)
            stages.append(PreparedStage(item, compiled))
        custom, rest = _split(
            stages, [isinstance(i, JwtAuthentication) for i in items], where, self.file
        )
        empty: set[tuple[str, int | None]] = set()
        if protocol == "http":
            for s in (*custom, *rest):
                empty |= _empty_rules(s.built)
        return Prepared(
            workload=self.workload,
            port=request.port,
            protocol=protocol,
            selected=[],
            build=BuildResult(filters=[s.built for s in (*custom, *rest)]),
            custom=custom,
            rest=rest,
            jwt_rules=[],
            jwt=jwt,
            mtls_mode=mode,
            normalization=normalization,
            path_options=options.path,
            header_settings=headers,
            jwt_source="the jwt_authn filter in the config dump",
            empty_rules=frozenset(empty),
            not_evaluated=tuple(not_evaluated),
            not_evaluated_before={k: v for k, v in before.items() if v},
        )

    def _hcm_options(self, hcm: Mapping[str, Any], where: str) -> HcmOptions:
        try:
            options = HcmOptions.from_json(hcm)
        except HcmConfigError as e:
            raise ConfigDumpError(str(e), location=Location(self.file), field=where) from None
        # Only istiod's four modes are evaluated: the real-Envoy path corpus
        # (tests/decide/path_corpus.jsonl) covers no other combination.
        why = options.path.unmodelled()
        if why is not None or path_mode(options.path) is None:
            raise ConfigDumpError(
                f"{why}: they are none of istiod's pathNormalization modes; meshauthz models "
                "only those four",
                location=Location(self.file),
                field=where,
            )
        return options

    def _typed(self, f: Mapping[str, Any], where: str) -> dict[str, Any]:
        tc = _get(f, "typed_config")
        if tc is None and _get(f, "config_discovery") is not None:
            tc = self.ecds.get(str(_get(f, "name")))
            if tc is None:
                raise ConfigDumpError(
                    f"filter {_get(f, 'name')!r} is delivered by ECDS and the dump holds no "
                    "EcdsConfigDump entry of that name",
                    location=Location(self.file),
                    field=where,
                )
        if not isinstance(tc, dict):
            raise ConfigDumpError(
                f"filter {_get(f, 'name')!r} has no typed_config",
                location=Location(self.file),
                field=where,
            )
        return tc

    def _http_items(
        self, http_filters: list[Any], where: str, per_route: Mapping[str, Any]
    ) -> _Placed:
        """The authorization filters in order and the others, each by its index in
        the list; ``per_route``: the route's configuration of filters by name,
        which replaces theirs."""
        placed = _Placed()
        for j, f in enumerate(http_filters):
            name = str(_get(f, "name") or "")
            t = _type_of(f, self.ecds)
            if t in _AUTHZ_TYPES or (t is None and name == JWT_FILTER):
                placed.last = j  # where the authorization filters end, as configured
            override = per_route.get(name)
            if _disables(override):
                continue  # not run on this route
            if _get(f, "disabled") and override is None:
                continue  # off unless the route configures it
            path = f"{where}[{j}].typed_config"
            if t == HTTP_FILTER_TYPE:
                tc = self._typed(f, path)
                if override is not None:
                    if _get(override, "@type") != RBAC_PER_ROUTE_TYPE:
                        raise ConfigDumpError(
                            f"the route configures the RBAC filter {name} with "
                            f"{_get(override, '@type')!r}, not an RBACPerRoute",
                            location=Location(self.file),
                            field=path,
                        )
                    # RBACPerRoute.rbac replaces the filter's whole configuration.
                    tc = {"@type": HTTP_FILTER_TYPE, **(_get(override, "rbac") or {})}
                    path = f"per-route configuration of {name}"
                placed.add(j, self._rbac(tc, path))
            elif override is not None and t in (HTTP_EXT_AUTHZ_TYPE, JWT_TYPE):
                raise ConfigDumpError(
                    f"the route configures the {name} filter per route, which is not read",
                    location=Location(self.file),
                    field=path,
                )
            elif t == HTTP_EXT_AUTHZ_TYPE:
                placed.add(j, _ext_authz(self._typed(f, path), HTTP_EXT_AUTHZ_NAME))
            elif t == JWT_TYPE or (t is None and name == JWT_FILTER):
                placed.add(j, self._jwt(self._typed(f, path), path))
            elif name not in _NEUTRAL:
                placed.others.append((j, name))
        return placed

    def _network_items(self, filters: list[Any], where: str) -> _Placed:
        placed = _Placed()
        for j, f in enumerate(filters):
            name = str(_get(f, "name") or "")
            t = _type_of(f, self.ecds)
            path = f"{where}[{j}].typed_config"
            if t == NETWORK_FILTER_TYPE:
                placed.add(j, self._rbac(self._typed(f, path), path))
                placed.last = j
            elif t == NETWORK_EXT_AUTHZ_TYPE:
                placed.add(j, _ext_authz(self._typed(f, path), NETWORK_EXT_AUTHZ_NAME))
                placed.last = j
            elif name == TCP_PROXY_NAME:
                break
            elif name not in _NEUTRAL:
                placed.others.append((j, name))
        return placed

    def _rbac(self, tc: dict[str, Any], path: str) -> BuiltFilter:
        try:
            flt = parse_filter(tc, path, ISTIO_RUNTIME)
        except InputError as e:
            raise ConfigDumpError(e.message, location=Location(self.file), field=e.field) from None
        return _built_rbac(flt)

    def _jwt(self, tc: dict[str, Any], path: str) -> JwtAuthentication:
        try:
            cfg = jwt_authn.from_json(tc, path)
        except jwt_authn.JwtConfigError as e:
            raise ConfigDumpError(
                f"jwt_authn filter: {e.message}", location=Location(self.file), field=e.field
            ) from None
        why = jwt_authn.unsupported(cfg)
        if why is None and cfg.requirement_map:
            why = "requirement_map is selected by per-route configuration, which is not read"
        if why is not None:
            raise ConfigDumpError(
                f"jwt_authn filter: {why}", location=Location(self.file), field=path
            )
        return cfg


class _Placed(Struct):
    """A chain's filters: the authorization filters in order with their index in
    the filter list, the others not evaluated (by index), and the index of the
    last authorization filter configured (-1: none)."""

    items: list[BuiltFilter | JwtAuthentication] = field(default_factory=list)
    at: list[int] = field(default_factory=list)
    others: list[tuple[int, str]] = field(default_factory=list)
    last: int = -1

    def add(self, index: int, item: BuiltFilter | JwtAuthentication) -> None:
        self.items.append(item)
        self.at.append(index)


def _per_route_effect(v: Any) -> str:
    return "disabled" if _disables(v) else "replaced"


def _disables(per_route: Any) -> bool:
    """A route's configuration that turns a filter off: a ``FilterConfig`` with
    ``disabled``, or an ``RBACPerRoute`` without ``rbac``."""
    if isinstance(per_route, Disabled):
        return True
    return _get(per_route, "@type") == RBAC_PER_ROUTE_TYPE and _get(per_route, "rbac") is None


def _type_of(f: Any, ecds: Mapping[str, Mapping[str, Any]]) -> str | None:
    tc = _get(f, "typed_config")
    if tc is None and _get(f, "config_discovery") is not None:
        tc = ecds.get(str(_get(f, "name")))
    t = _get(tc, "@type")
    return t if isinstance(t, str) else None


def _ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(s)
    except ValueError:
        return None


# --------------------------------------------------------------------------- filters


def _policy_names(flt: HttpRbacFilter | NetworkRbacFilter) -> list[str]:
    return [n for r in (flt.rules, flt.shadow_rules) if r is not None for n, _ in r.policies]


def _built_rbac(flt: HttpRbacFilter | NetworkRbacFilter) -> BuiltFilter:
    stage = naming.filter_stage(flt)
    provider: str | None = None
    if stage == "CUSTOM":
        parsed = (naming.parse_policy_name(n) for n in _policy_names(flt))
        provider = next((p.provider or "" for p in parsed if p is not None), None)
    sources: dict[str, tuple[str, int | None]] = {}
    for rbac in (flt.rules, flt.shadow_rules):
        for n, pol in rbac.policies if rbac is not None else ():
            name = naming.parse_policy_name(n)
            if name is None:
                continue
            rule: int | None = name.rule
            if _is_match_never(pol):
                rule = None  # istiod's stand-in for a policy without rules
            sources[n] = (name.policy, rule)
    return BuiltFilter(flt, stage, provider, (), sources)


def _is_match_never(p: Policy) -> bool:
    return (
        len(p.permissions) == 1
        and len(p.principals) == 1
        and isinstance(p.permissions[0], PermNot)
        and isinstance(p.permissions[0].rule, PermAny)
        and isinstance(p.principals[0], IdNot)
        and isinstance(p.principals[0].id, IdAny)
    )


def _is_empty_rule(p: Policy) -> bool:
    """The policy istiod writes for an empty rule ``{}``: any permission, any principal."""
    perm, ids = p.permissions, p.principals
    return (
        len(perm) == 1
        and len(ids) == 1
        and isinstance(perm[0], PermAnd)
        and len(perm[0].rules) == 1
        and isinstance(perm[0].rules[0], PermAny)
        and isinstance(ids[0], IdAnd)
        and len(ids[0].ids) == 1
        and isinstance(ids[0].ids[0], IdAny)
    )


def _empty_rules(bf: BuiltFilter) -> set[tuple[str, int | None]]:
    f = bf.filter
    if not isinstance(f, HttpRbacFilter | NetworkRbacFilter):
        return set()
    out: set[tuple[str, int | None]] = set()
    rbacs: tuple[RBAC | None, ...] = (f.rules, f.shadow_rules)
    for rbac in rbacs:
        for n, pol in rbac.policies if rbac is not None else ():
            if n in bf.sources and _is_empty_rule(pol):
                out.add(bf.sources[n])
    return out


def _ext_authz(tc: Mapping[str, Any], name: str) -> BuiltFilter:
    flt = ExtAuthzFilter.from_json(tc, name)
    provider = naming.provider_of_enabled_prefix(flt.metadata_prefix) or ""
    return BuiltFilter(flt, "CUSTOM", provider)


def _split(
    stages: list[PreparedStage | None], is_jwt: list[bool], where: str, file: str
) -> tuple[list[PreparedStage], list[PreparedStage]]:
    """The engine runs ``custom``, then JWT, then ``rest``: cut the dump's order there."""
    if any(is_jwt):
        at = is_jwt.index(True)
        before = [s for s in stages[:at] if s is not None]
        after = [s for s in stages[at + 1 :] if s is not None]
        if any(s.built.stage == "ALLOW" for s in before):
            raise ConfigDumpError(
                "an ALLOW RBAC filter runs before the jwt_authn filter; istiod never builds "
                "this order and meshauthz does not evaluate it",
                location=Location(file),
                field=where,
            )
        return before, after
    flat = [s for s in stages if s is not None]
    n = 0
    while n < len(flat) and flat[n].built.stage == "CUSTOM":
        n += 1
    return flat[:n], flat[n:]


# --------------------------------------------------------------------------- loading


def load_config_dump(path: str) -> ConfigDump:
    """Read an Envoy config dump (a file, or ``-`` for standard input)."""
    display = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_DUMP_BYTES + 1)
        else:
            with open(path, "rb") as f:
                raw = f.read(MAX_DUMP_BYTES + 1)
    except FileNotFoundError:
        raise ConfigDumpError("no such file or directory", location=Location(display)) from None
    except IsADirectoryError:
        raise ConfigDumpError("is a directory", location=Location(display)) from None
    except OSError as e:
        raise ConfigDumpError(
            f"cannot read: {e.strerror or e}", location=Location(display)
        ) from None
    if len(raw) > MAX_DUMP_BYTES:
        raise ConfigDumpError(
            f"larger than the {MAX_DUMP_BYTES // (1024 * 1024)} MiB limit for a config dump",
            location=Location(display),
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigDumpError(
            "not UTF-8 text: a config dump is JSON", location=Location(display, line)
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigDumpError(
            f"not valid JSON: {e.msg} (an Envoy config dump is the JSON of the admin "
            "endpoint /config_dump)",
            location=Location(display, e.lineno, e.colno),
        ) from None
    return parse_config_dump(doc, display)


def parse_config_dump(doc: Any, file: str = "<config dump>") -> ConfigDump:
    configs = _get(doc, "configs")
    if not isinstance(configs, list):
        raise ConfigDumpError(
            'not an Envoy config dump: expected an object with a "configs" list '
            "(the output of the admin endpoint /config_dump)",
            location=Location(file),
        )
    listeners: list[Listener] = []
    ecds: dict[str, dict[str, Any]] = {}
    routes: dict[str, dict[str, Any]] = {}
    node: Mapping[str, Any] = {}
    for c in configs:
        t = str(_get(c, "@type") or "")
        if t.endswith(".ListenersConfigDump"):
            for s in _get(c, "static_listeners") or ():
                lis = _get(s, "listener")
                if isinstance(lis, dict):
                    listeners.append(Listener.from_json(lis))
            for d in _get(c, "dynamic_listeners") or ():
                lis = _get(_get(d, "active_state"), "listener")
                if isinstance(lis, dict):
                    listeners.append(Listener.from_json(lis, str(_get(d, "name") or "")))
        elif t.endswith(".EcdsConfigDump"):
            for e in _get(c, "ecds_filters") or ():
                ext = _get(e, "ecds_filter")
                name, tc = _get(ext, "name"), _get(ext, "typed_config")
                if isinstance(name, str) and isinstance(tc, dict):
                    ecds[name] = tc
        elif t.endswith(".RoutesConfigDump"):
            for r in (
                *(_get(c, "static_route_configs") or ()),
                *(_get(c, "dynamic_route_configs") or ()),
            ):
                rc = _get(r, "route_config")
                if isinstance(rc, dict) and isinstance(_get(rc, "name"), str):
                    routes[_get(rc, "name")] = rc
        elif t.endswith(".BootstrapConfigDump"):
            node = _get(_get(c, "bootstrap"), "node") or {}
    if not listeners:
        raise ConfigDumpError(
            "the config dump holds no listeners (no ListenersConfigDump with an active listener)",
            location=Location(file),
        )
    return ConfigDump(file, listeners, ecds, _workload(node, file), routes)


def _workload(node: Mapping[str, Any], file: str) -> MeshWorkload:
    meta = _get(node, "metadata") or {}
    if not isinstance(meta, Mapping):
        raise InputError("expected an object", location=Location(file), field="node.metadata")
    # node id: <type>~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>
    parts = str(_get(node, "id") or "").split("~")
    pod_ns = parts[2] if len(parts) == 4 else ""
    ns = str(meta.get("NAMESPACE") or (pod_ns.rsplit(".", 1)[1] if "." in pod_ns else ""))
    name = str(meta.get("NAME") or (pod_ns.rsplit(".", 1)[0] if "." in pod_ns else ""))
    ips = meta.get("INSTANCE_IPS") or (parts[1] if len(parts) == 4 else "")
    address = str(ips).split(",")[0] if ips else ""
    synthetic = _ip(address) is None
    if synthetic:
        address = "192.0.2.20"  # documentation range (RFC 5737): the dump does not say
    raw_labels = meta.get("LABELS")
    labels = (
        {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, Mapping) else {}
    )
    sa = str(meta.get("SERVICE_ACCOUNT") or "default")
    ns = ns or "unknown"
    name = name or "config-dump"
    return MeshWorkload(
        kind="Pod",
        name=name,
        namespace=ns,
        labels=labels,
        service_account=sa,
        ports=(),
        address=address,
        address_synthetic=synthetic,
        identity=Identity("cluster.local", ns, sa),
    )


# --------------------------------------------------------------------------- the request


def resolve_for_dump(
    spec: RequestSpec, dump: ConfigDump, snapshot: MeshSnapshot | None
) -> tuple[Request, Protocol | None]:
    """The Request for a dump's proxy, and the protocol to assume when choosing
    its filter chain (None: HTTP, unless the chain found is TCP).

    The destination is always the dump's proxy. Manifests, when given, resolve
    a caller given as a workload and, when ``to`` names a workload or Service in
    them, a Service port (mapped to its target port), the protocol and the host,
    as ``check -f`` does. Otherwise the port is the port the proxy receives on."""
    source = resolve_source(spec, snapshot)
    principal, namespace, ip, workload_key = (
        source.principal,
        source.namespace,
        source.ip,
        source.workload,
    )

    target = None
    if snapshot is not None and spec.to != dump.workload.key:
        ref = (
            spec.to
            if spec.port is not None or spec.to_port is None
            else f"{spec.to}:{spec.to_port}"
        )
        try:
            target = resolve_target(snapshot, ref)
        except LookupFailed:
            target = None
    port = spec.port if spec.port is not None else (target.port if target else spec.to_port)
    if port is None and target is not None and snapshot is not None:  # a target needs manifests
        ports = sorted(
            {p.port for p in inbound_ports(snapshot, target.workload)}
            | {p.container_port for p in target.workload.ports}
        )
        if len(ports) == 1:
            port = ports[0]
    if port is None:
        raise InputError(
            'give the port the proxy receives on (--to :PORT or --port; "port" or '
            '"to: ns/name:PORT" in a request file)',
            location=spec.location,
            field="port",
        )
    hint: Protocol | None = None
    if spec.protocol is not None:
        hint = "tcp" if spec.protocol == "tcp" else "http"
    elif target is not None and snapshot is not None:
        hint = "tcp" if inbound_port(snapshot, target.workload, port).listener == "tcp" else "http"
    host = spec.host
    if host is None:
        svc = None
        if target is not None and snapshot is not None:
            svc = target.service or next(iter(snapshot.services_for(target.workload)), None)
        host = svc.hostname if svc is not None else (target.workload.name if target else None)
        host = host or str(dump.workload.labels.get("app") or dump.workload.name)
    return (
        Request(
            destination=dump.workload,
            port=port,
            protocol=hint or "http",
            source_principal=principal,
            source_namespace=namespace,
            source_ip=ip,
            remote_ip=spec.remote_ip or ip,
            source_workload=workload_key,
            method=spec.method,
            path=spec.path,
            host=host,
            headers=spec.headers,
            jwt=jwt_authn.JwtPresented.from_request(spec.jwt, spec.jwt_location, spec.token),
            sni=spec.sni or "",
            name=spec.name,
        ),
        hint,
    )


def decide_in_dump(
    dump: ConfigDump,
    spec: RequestSpec,
    snapshot: MeshSnapshot | None,
    *,
    ext_authz: ExtAuthzAssumption = "deny",
    trace: bool = True,
) -> tuple[Request, Decision, ChainInfo]:
    """One request against the dump's proxy: resolved, its filter chain chosen as
    Envoy chooses it, decided by the one chain runner (``check --config-dump``)."""
    request, hint = resolve_for_dump(spec, dump, snapshot)
    chain = dump.chain_for(request, hint)
    decision = run_prepared(chain.prepared, chain.request, ext_authz=ext_authz, trace=trace)
    return chain.request, decision, chain.info


__all__ = [
    "ChainInfo",
    "ConfigDump",
    "ConfigDumpError",
    "DumpChain",
    "decide_in_dump",
    "load_config_dump",
    "parse_config_dump",
    "resolve_for_dump",
]

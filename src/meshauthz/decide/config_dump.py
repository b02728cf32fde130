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
  (``normalize_path``, ``merge_slashes``, ``path_with_escaped_slashes_action``),
  mapped back to Istio's ``pathNormalization`` mode; on a TCP chain the
  network RBAC and ``ext_authz`` filters before ``tcp_proxy``;
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

import ipaddress
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from meshauthz.decide.engine import Prepared, PreparedStage
from meshauthz.decide.request import Request, resolve_source
from meshauthz.decide.request_spec import RequestSpec
from meshauthz.envoy.hcm import PathNormalization
from meshauthz.envoy.jwt_authn import (
    DEFAULT_HEADER,
    DEFAULT_PARAM,
    JWT_FILTER,
    PAYLOAD_KEY,
    Provider,
    parse_jwks,
)
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
from meshauthz.errors import InputError, Location
from meshauthz.mesh import MeshSnapshot, MeshWorkload, inbound_port, inbound_ports, resolve_target
from meshauthz.mesh.snapshot import Identity, LookupFailed
from meshauthz.translate import naming
from meshauthz.translate.builder import BuildResult, BuiltFilter
from meshauthz.translate.extauthz import (
    HTTP_EXT_AUTHZ_NAME,
    HTTP_EXT_AUTHZ_TYPE,
    NETWORK_EXT_AUTHZ_NAME,
    NETWORK_EXT_AUTHZ_TYPE,
    ExtAuthzFilter,
)

MAX_DUMP_BYTES = 512 * 1024 * 1024
VIRTUAL_INBOUND = "virtualInbound"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
HCM_NAME = "envoy.filters.network.http_connection_manager"
JWT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
TCP_PROXY_NAME = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
DOWNSTREAM_TLS_TYPE = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
)
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


def _get(d: Any, snake: str, default: Any = None) -> Any:
    """A field in snake_case or its camelCase JSON name."""
    if not isinstance(d, Mapping):
        return default
    if snake in d:
        return d[snake]
    head, *rest = snake.split("_")
    camel = head + "".join(p[:1].upper() + p[1:] for p in rest)
    return d.get(camel, default)


def _camel_keys(v: Any) -> Any:
    if isinstance(v, Mapping):
        out = {}
        for k, x in v.items():
            if isinstance(k, str) and not k.startswith("@") and "_" in k:
                head, *rest = k.split("_")
                k = head + "".join(p[:1].upper() + p[1:] for p in rest)
            out[k] = _camel_keys(x)
        return out
    if isinstance(v, list):
        return [_camel_keys(x) for x in v]
    return v


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class ChainInfo:
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
        }


@dataclass(slots=True)
class DumpChain:
    """A request made ready for the engine: the prepared chain, the request as
    that chain sees it (its protocol follows the chain), and where it went."""

    prepared: Prepared
    request: Request
    info: ChainInfo


@dataclass(slots=True)
class ConfigDump:
    file: str
    listeners: list[tuple[str, dict[str, Any]]]  # (name, Listener), dump order
    ecds: dict[str, dict[str, Any]]  # ECDS filter name -> typed_config
    workload: MeshWorkload
    _cache: dict[tuple[int, str], Prepared] = field(default_factory=dict)

    @property
    def listener_names(self) -> list[str]:
        return [n for n, _ in self.listeners]

    # --- the listener and the chain -------------------------------------------------

    def listener_for(self, port: int) -> tuple[str, dict[str, Any]]:
        for name, lis in self.listeners:
            if name == VIRTUAL_INBOUND:
                return name, lis
        for name, lis in self.listeners:
            addr = _get(_get(lis, "address"), "socket_address") or {}
            if (
                _get(lis, "traffic_direction") == "INBOUND"
                and _int(_get(addr, "port_value")) == port
            ):
                return name, lis
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
        lname, lis = self.listener_for(port)
        chains = list(_get(lis, "filter_chains") or [])
        default = _get(lis, "default_filter_chain")
        proto = protocol_hint or request.protocol
        tls_on = _inspector_enabled(lis, TLS_INSPECTOR, port)
        http_on = _inspector_enabled(lis, HTTP_INSPECTOR, port)

        def conn(mtls: bool) -> _Conn:
            if mtls:
                alpn = MTLS_HTTP_ALPN if proto == "http" else MTLS_TCP_ALPN
                transport = "tls" if tls_on else "raw_buffer"
            else:
                alpn = PLAINTEXT_HTTP_ALPN if (proto == "http" and http_on) else ()
                transport = "raw_buffer"
            return _Conn(
                port=port,
                ip=request.destination.address,
                sni=request.sni,
                transport=transport,
                alpn=alpn,
                source_ip=request.source_ip,
            )

        mtls_caller = not request.plaintext
        chosen = _select(chains, default, conn(mtls_caller))
        mode = "PERMISSIVE"
        if chosen is None:
            other = _select(chains, default, conn(not mtls_caller))
            if other is None:
                raise ConfigDumpError(
                    f"no filter chain of listener {lname} accepts a connection to port {port} "
                    f"(neither mTLS nor plaintext); filter chains: {_describe_chains(chains)}",
                    location=Location(self.file),
                    field="port",
                )
            chosen = other
            mode = "DISABLE" if mtls_caller else "STRICT"
        index, chain = chosen
        terminates = _terminates_mtls(chain)
        if mode == "PERMISSIVE" and mtls_caller and not terminates:
            mode = "DISABLE"  # the chain does not ask for a client certificate
        key = (id(chain), mode)
        prepared = self._cache.get(key)
        not_evaluated: tuple[str, ...]
        if prepared is None:
            prepared = self._prepare(lname, index, chain, request, mode)
            self._cache[key] = prepared
        not_evaluated = tuple(prepared.notes.get("not_evaluated", ()))
        fcm = _get(chain, "filter_chain_match") or {}
        info = ChainInfo(
            file=self.file,
            listener=lname,
            chain=str(_get(chain, "name") or f"filter_chains[{index}]"),
            index=index,
            transport=str(_get(fcm, "transport_protocol") or ""),
            application_protocols=tuple(_get(fcm, "application_protocols") or ()),
            protocol=prepared.protocol,
            passthrough=_get(fcm, "destination_port") is None,
            mtls={
                "PERMISSIVE": "mTLS" if mtls_caller else "plaintext",
                "STRICT": "mTLS required",
                "DISABLE": "mTLS disabled",
            }[mode],
            normalization=prepared.normalization if prepared.protocol == "http" else None,
            not_evaluated=not_evaluated,
        )
        req = request
        if req.protocol != prepared.protocol:
            req = replace(req, protocol=prepared.protocol)
        req = replace(req, destination=self.workload)
        return DumpChain(replace(prepared, port=port), req, info)

    # --- one chain -> Prepared ---------------------------------------------------------

    def _prepare(
        self, lname: str, index: int, chain: Mapping[str, Any], request: Request, mode: str
    ) -> Prepared:
        where = f"{lname}.filter_chains[{index}]"
        filters = list(_get(chain, "filters") or [])
        hcm_at = next(
            (
                i
                for i, f in enumerate(filters)
                if _type_of(f, self.ecds) == HCM_TYPE or _get(f, "name") == HCM_NAME
            ),
            None,
        )
        notes: dict[str, Any] = {
            "config_dump": self.file,
            "jwt_source": "the jwt_authn filter in the config dump",
        }
        providers: list[Provider] = []
        normalization = "NONE"
        if hcm_at is not None:
            protocol: Protocol = "http"
            hcm = self._typed(filters[hcm_at], f"{where}.filters[{hcm_at}]")
            normalization = _normalization(hcm, f"{where}.filters[{hcm_at}].typed_config")
            items, not_evaluated = self._http_items(
                list(_get(hcm, "http_filters") or []),
                f"{where}.filters[{hcm_at}].typed_config.http_filters",
            )
        else:
            protocol = "tcp"
            items, not_evaluated = self._network_items(filters, f"{where}.filters")
        notes["not_evaluated"] = not_evaluated
        stages: list[PreparedStage | None] = []
        for item in items:
            if item is None:
                stages.append(None)
                continue
            if isinstance(item, list):
                providers = item
                stages.append(None)
                continue
            compiled = None
            if isinstance(item.filter, HttpRbacFilter | NetworkRbacFilter):
                compiled = compile_filter(item.filter)
            stages.append(PreparedStage(item, compiled))
        custom, rest = _split(stages, [isinstance(i, list) for i in items], where, self.file)
        empty: set[tuple[str, int | None]] = set()
        if protocol == "http":
            for s in (*custom, *rest):
                empty |= _empty_rules(s.built)
        notes["empty_rules"] = empty
        return Prepared(
            workload=self.workload,
            port=request.port,
            protocol=protocol,
            selected=[],
            build=BuildResult(filters=[s.built for s in (*custom, *rest)]),
            custom=custom,
            rest=rest,
            jwt_rules=[],
            jwt_providers=providers,
            mtls_mode=mode,
            normalization=normalization,
            notes=notes,
        )

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
        self, http_filters: list[Any], where: str
    ) -> tuple[list[BuiltFilter | list[Provider] | None], list[str]]:
        items: list[BuiltFilter | list[Provider] | None] = []
        others: list[tuple[int, str]] = []
        for j, f in enumerate(http_filters):
            name = str(_get(f, "name") or "")
            if _get(f, "disabled"):
                others.append((len(items), f"{name} (disabled)"))
                continue
            t = _type_of(f, self.ecds)
            path = f"{where}[{j}].typed_config"
            if t == HTTP_FILTER_TYPE:
                items.append(self._rbac(self._typed(f, path), path))
            elif t == HTTP_EXT_AUTHZ_TYPE:
                items.append(_ext_authz(self._typed(f, path), HTTP_EXT_AUTHZ_NAME))
            elif t == JWT_TYPE or (t is None and name == JWT_FILTER):
                items.append(_jwt_providers(self._typed(f, path), path, self.file))
            else:
                others.append((len(items), name))
        # Filters after the last authorization filter cannot change the decision.
        last = len(items)
        return items, [n for pos, n in others if pos < last and n not in _NEUTRAL]

    def _network_items(
        self, filters: list[Any], where: str
    ) -> tuple[list[BuiltFilter | list[Provider] | None], list[str]]:
        items: list[BuiltFilter | list[Provider] | None] = []
        others: list[tuple[int, str]] = []
        for j, f in enumerate(filters):
            name = str(_get(f, "name") or "")
            t = _type_of(f, self.ecds)
            path = f"{where}[{j}].typed_config"
            if t == NETWORK_FILTER_TYPE:
                items.append(self._rbac(self._typed(f, path), path))
            elif t == NETWORK_EXT_AUTHZ_TYPE:
                items.append(_ext_authz(self._typed(f, path), NETWORK_EXT_AUTHZ_NAME))
            elif name == TCP_PROXY_NAME:
                break
            else:
                others.append((len(items), name))
        last = len(items)
        return items, [n for pos, n in others if pos < last and n not in _NEUTRAL]

    def _rbac(self, tc: dict[str, Any], path: str) -> BuiltFilter:
        try:
            flt = parse_filter(tc, path)
        except InputError as e:
            raise ConfigDumpError(e.message, location=Location(self.file), field=e.field) from None
        return _built_rbac(flt)


def _type_of(f: Any, ecds: Mapping[str, Mapping[str, Any]]) -> str | None:
    tc = _get(f, "typed_config")
    if tc is None and _get(f, "config_discovery") is not None:
        tc = ecds.get(str(_get(f, "name")))
    t = _get(tc, "@type")
    return t if isinstance(t, str) else None


def _int(v: Any) -> int | None:
    if isinstance(v, Mapping):  # a wrapper type written as {"value": N}
        v = v.get("value")
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


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
    camel = _camel_keys(tc)
    flt = ExtAuthzFilter(name, camel)
    provider = naming.provider_of_enabled_prefix(flt.metadata_prefix) or ""
    return BuiltFilter(replace(flt, provider=provider), "CUSTOM", provider)


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


# --------------------------------------------------------------------------- JWT


def _jwt_providers(tc: Mapping[str, Any], where: str, file: str) -> list[Provider]:
    """The providers of a jwt_authn filter written as istiod writes it
    (``convertToEnvoyJwtConfig``), in the order of its requirement."""

    def fail(msg: str) -> ConfigDumpError:
        return ConfigDumpError(
            f"jwt_authn filter: {msg}; meshauthz evaluates the filter istiod builds from "
            "RequestAuthentications",
            location=Location(file),
            field=where,
        )

    providers = _get(tc, "providers") or {}
    rules = _get(tc, "rules") or []
    if not isinstance(providers, Mapping) or not isinstance(rules, list):
        raise fail("providers must be an object and rules a list")
    for unsupported in ("requirement_map", "filter_state_rules"):
        if _get(tc, unsupported):
            raise fail(f"{unsupported} is not supported")
    if not _get(tc, "bypass_cors_preflight"):
        raise fail("bypass_cors_preflight is not set")
    if len(rules) != 1 or _get(_get(rules[0], "match"), "prefix") != "/":
        raise fail('expected one rule matching the prefix "/"')
    order = _requirement_order(_get(rules[0], "requires"))
    if order is None or sorted(order) != sorted(providers):
        raise fail("the requirement is not the one istiod builds over its providers")
    return [_provider(n, providers[n], fail) for n in order]


def _requirement_order(req: Any) -> list[str] | None:
    def pair(r: Any) -> str | None:
        reqs = _get(_get(r, "requires_any"), "requirements")
        if (
            isinstance(reqs, list)
            and len(reqs) == 2
            and isinstance(_get(reqs[0], "provider_name"), str)
            and _get(reqs[1], "allow_missing") is not None
        ):
            return str(_get(reqs[0], "provider_name"))
        return None

    single = pair(req)
    if single is not None:
        return [single]
    reqs = _get(_get(req, "requires_any"), "requirements")
    if not isinstance(reqs, list) or len(reqs) < 3:
        return None
    names = [_get(r, "provider_name") for r in reqs[:-1]]
    inner = _get(_get(reqs[-1], "requires_all"), "requirements")
    if not all(isinstance(n, str) for n in names) or not isinstance(inner, list):
        return None
    if [pair(r) for r in inner] != names:
        return None
    return [str(n) for n in names]


def _provider(name: str, p: Any, fail: Any) -> Provider:
    payload = _get(p, "payload_in_metadata")
    if payload != PAYLOAD_KEY:
        raise fail(f"provider {name}: payload_in_metadata is {payload!r}, not {PAYLOAD_KEY!r}")
    headers = tuple(
        (str(_get(h, "name", "")).lower(), str(_get(h, "value_prefix") or ""))
        for h in _get(p, "from_headers") or ()
    )
    params = tuple(str(x) for x in _get(p, "from_params") or ())
    cookies = tuple(str(x) for x in _get(p, "from_cookies") or ())
    if not headers and not params and not cookies:
        headers, params = (DEFAULT_HEADER,), (DEFAULT_PARAM,)
    claims = _get(_get(p, "normalize_payload_in_metadata"), "space_delimited_claims") or ()
    keys = None
    error = None
    uri = ""
    local, remote = _get(p, "local_jwks"), _get(p, "remote_jwks")
    if local is not None:
        inline = _get(local, "inline_string")
        if isinstance(inline, str):
            keys, error = parse_jwks(inline)
        else:
            uri = str(_get(local, "filename") or "a local JWKS source that is not inline")
    elif remote is not None:
        uri = str(_get(_get(remote, "http_uri"), "uri") or "")
    return Provider(
        name=name,
        issuer=str(_get(p, "issuer") or ""),
        audiences=tuple(str(a) for a in _get(p, "audiences") or ()),
        headers=headers,
        params=params,
        cookies=cookies,
        forward=bool(_get(p, "forward")),
        space_delimited_claims=tuple(sorted({str(c) for c in claims})),
        jwks_uri=uri,
        keys=keys,
        jwks_error=error,
    )


# --------------------------------------------------------------------------- HCM


_ESCAPED_SLASHES_KEEP = ("KEEP_UNCHANGED", "IMPLEMENTATION_SPECIFIC_DEFAULT", 0, 1, None)


def _normalization(hcm: Mapping[str, Any], where: str) -> PathNormalization:
    """istiod's pathNormalization mode from the HCM options it sets for it."""
    normalize = bool(_get(hcm, "normalize_path", False))
    merge = bool(_get(hcm, "merge_slashes", False))
    esc = _get(hcm, "path_with_escaped_slashes_action")
    keep = esc in _ESCAPED_SLASHES_KEEP
    decode = esc in ("UNESCAPE_AND_FORWARD", 4)
    if not normalize and not merge and keep:
        return "NONE"
    if normalize and not merge and keep:
        return "BASE"
    if normalize and merge and keep:
        return "MERGE_SLASHES"
    if normalize and merge and decode:
        return "DECODE_AND_MERGE_SLASHES"
    raise ConfigDumpError(
        f"the HTTP connection manager's path options (normalize_path={normalize}, "
        f"merge_slashes={merge}, path_with_escaped_slashes_action={esc}) are none of "
        "istiod's pathNormalization modes; meshauthz models only those four",
        field=where,
    )


# --------------------------------------------------------------------------- chain matching


@dataclass(frozen=True, slots=True)
class _Conn:
    port: int
    ip: str
    sni: str
    transport: str
    alpn: tuple[str, ...]
    source_ip: str


def _ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(s)
    except ValueError:
        return None


def _best_prefix(ranges: Any, ip: str) -> int | None:
    """The longest of ``ranges`` holding ``ip``; None if none does."""
    addr = _ip(ip)
    best: int | None = None
    for r in ranges or ():
        prefix = _get(r, "address_prefix")
        plen = _int(_get(r, "prefix_len")) or 0
        try:
            net = ipaddress.ip_network(f"{prefix}/{plen}", strict=False)
        except ValueError:
            continue
        if addr is not None and addr.version == net.version and addr in net:
            best = plen if best is None else max(best, plen)
    return best


Cand = tuple[int, Mapping[str, Any], Mapping[str, Any]]  # (index, chain, its match)


def _narrow_ranges(cands: list[Cand], key: str, ip: str) -> list[Cand]:
    scored = [(c, _best_prefix(_get(c[2], key), ip)) for c in cands if _get(c[2], key)]
    hits = [(c, s) for c, s in scored if s is not None]
    if hits:
        top = max(s for _, s in hits)
        return [c for c, s in hits if s == top]
    return [c for c in cands if not _get(c[2], key)]


def _select(
    chains: Sequence[Mapping[str, Any]], default: Any, conn: _Conn
) -> tuple[int, Mapping[str, Any]] | None:
    """Envoy's filter chain lookup: at each level the most specific branch that
    matches, and no way back once a branch is taken."""
    cands: list[Cand] = [(i, c, _get(c, "filter_chain_match") or {}) for i, c in enumerate(chains)]

    ports = [c for c in cands if _int(_get(c[2], "destination_port")) == conn.port]
    cands = ports or [c for c in cands if not _int(_get(c[2], "destination_port"))]
    cands = _narrow_ranges(cands, "prefix_ranges", conn.ip)

    named = [c for c in cands if _get(c[2], "server_names")]
    exact = [c for c in named if conn.sni and conn.sni in _get(c[2], "server_names")]
    if exact:
        cands = exact
    else:
        best, wild = 0, []
        for c in named:
            for n in _get(c[2], "server_names"):
                if n.startswith("*.") and conn.sni.endswith(n[1:]) and len(n) >= best:
                    if len(n) > best:
                        best, wild = len(n), []
                    wild.append(c)
        cands = wild or [c for c in cands if not _get(c[2], "server_names")]

    tp = [c for c in cands if _get(c[2], "transport_protocol") == conn.transport]
    cands = tp or [c for c in cands if not _get(c[2], "transport_protocol")]

    for a in conn.alpn:
        hit = [c for c in cands if a in (_get(c[2], "application_protocols") or ())]
        if hit:
            cands = hit
            break
    else:
        cands = [c for c in cands if not _get(c[2], "application_protocols")]

    cands = _narrow_ranges(cands, "direct_source_prefix_ranges", conn.source_ip)
    src = _ip(conn.source_ip)
    local = src is not None and (src.is_loopback or conn.source_ip == conn.ip)
    want = ("SAME_IP_OR_LOOPBACK", 1) if local else ("EXTERNAL", 2)
    typed = [c for c in cands if _get(c[2], "source_type") in want]
    cands = typed or [c for c in cands if _get(c[2], "source_type") in (None, "ANY", 0)]
    cands = _narrow_ranges(cands, "source_prefix_ranges", conn.source_ip)
    cands = [c for c in cands if not _get(c[2], "source_ports")]  # the client port is unknown
    if cands:
        return cands[0][0], cands[0][1]
    if isinstance(default, Mapping):
        return -1, default
    return None


def _predicate(p: Any, port: int) -> bool:
    """A ListenerFilterChainMatchPredicate, on the destination port only."""
    if _get(p, "any_match"):
        return True
    if (r := _get(p, "destination_port_range")) is not None:
        return (_int(_get(r, "start")) or 0) <= port < (_int(_get(r, "end")) or 0)
    if (o := _get(p, "or_match")) is not None:
        return any(_predicate(x, port) for x in _get(o, "rules") or ())
    if (a := _get(p, "and_match")) is not None:
        return all(_predicate(x, port) for x in _get(a, "rules") or ())
    if (n := _get(p, "not_match")) is not None:
        return not _predicate(n, port)
    return False


def _inspector_enabled(lis: Mapping[str, Any], name: str, port: int) -> bool:
    for f in _get(lis, "listener_filters") or ():
        if _get(f, "name") == name:
            disabled = _get(f, "filter_disabled")
            return disabled is None or not _predicate(disabled, port)
    return False


def _terminates_mtls(chain: Mapping[str, Any]) -> bool:
    ts = _get(chain, "transport_socket")
    tc = _get(ts, "typed_config")
    return _get(tc, "@type") == DOWNSTREAM_TLS_TYPE and bool(_get(tc, "require_client_certificate"))


def _describe_chains(chains: Sequence[Mapping[str, Any]]) -> str:
    out = []
    for i, c in enumerate(chains):
        m = _get(c, "filter_chain_match") or {}
        bits = [
            f"port {_int(_get(m, 'destination_port'))}"
            if _get(m, "destination_port")
            else "any port"
        ]
        if _get(m, "transport_protocol"):
            bits.append(str(_get(m, "transport_protocol")))
        if _get(m, "application_protocols"):
            bits.append("alpn " + "/".join(_get(m, "application_protocols")))
        out.append(f"{_get(c, 'name') or f'[{i}]'} ({', '.join(bits)})")
    return "; ".join(out) or "none"


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
    listeners: list[tuple[str, dict[str, Any]]] = []
    ecds: dict[str, dict[str, Any]] = {}
    node: Mapping[str, Any] = {}
    for c in configs:
        t = str(_get(c, "@type") or "")
        if t.endswith(".ListenersConfigDump"):
            for s in _get(c, "static_listeners") or ():
                lis = _get(s, "listener")
                if isinstance(lis, dict):
                    listeners.append((str(_get(lis, "name") or ""), lis))
            for d in _get(c, "dynamic_listeners") or ():
                lis = _get(_get(d, "active_state"), "listener")
                if isinstance(lis, dict):
                    listeners.append((str(_get(d, "name") or _get(lis, "name") or ""), lis))
        elif t.endswith(".EcdsConfigDump"):
            for e in _get(c, "ecds_filters") or ():
                ext = _get(e, "ecds_filter")
                name, tc = _get(ext, "name"), _get(ext, "typed_config")
                if isinstance(name, str) and isinstance(tc, dict):
                    ecds[name] = tc
        elif t.endswith(".BootstrapConfigDump"):
            node = _get(_get(c, "bootstrap"), "node") or {}
    if not listeners:
        raise ConfigDumpError(
            "the config dump holds no listeners (no ListenersConfigDump with an active listener)",
            location=Location(file),
        )
    return ConfigDump(file, listeners, ecds, _workload(node, file))


def _workload(node: Mapping[str, Any], file: str) -> MeshWorkload:
    meta = _get(node, "metadata") or {}
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
    labels = meta.get("LABELS") if isinstance(meta.get("LABELS"), Mapping) else {}
    sa = str(meta.get("SERVICE_ACCOUNT") or "default")
    ns = ns or "unknown"
    name = name or "config-dump"
    return MeshWorkload(
        kind="Pod",
        name=name,
        namespace=ns,
        labels=dict(labels),
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
    if port is None and target is not None:
        ports = sorted(
            {p.port for p in inbound_ports(snapshot, target.workload)}  # type: ignore[arg-type]
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
    from meshauthz.envoy.jwt_authn import JwtPresented

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
            jwt=JwtPresented.from_request(spec.jwt, spec.jwt_location, spec.token),
            sni=spec.sni or "",
            name=spec.name,
        ),
        hint,
    )


__all__ = [
    "ChainInfo",
    "ConfigDump",
    "ConfigDumpError",
    "DumpChain",
    "load_config_dump",
    "parse_config_dump",
    "resolve_for_dump",
]

"""CUSTOM action: mesh config extension providers -> Envoy ext_authz filters.

The filter itself is modelled in ``meshauthz.envoy.ext_authz``; this module
is Istio's side: which providers are valid and the typed config istiod
writes for each.

Mirrors istiod's ``builder/extauthz.go``: every ext_authz provider of the mesh
config is checked (name, port, service known to the registry, statusOnError,
pathPrefix, header lists) and, if valid, turned into the typed config of an
HTTP ext_authz filter and (gRPC providers only) a network one. A provider
with any problem is kept with its errors: a CUSTOM policy naming it gets the
deny-all treatment instead of an ext_authz filter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from msgspec import Struct, field

from meshauthz.envoy.ext_authz import (
    HTTP_EXT_AUTHZ_NAME,
    HTTP_EXT_AUTHZ_TYPE,
    NETWORK_EXT_AUTHZ_NAME,
    NETWORK_EXT_AUTHZ_TYPE,
    ExtAuthzFilter,
)
from meshauthz.resources.meshconfig import ExtensionProvider
from meshauthz.translate import naming

HTTP_RBAC_NAME = "envoy.filters.http.rbac"
NETWORK_RBAC_NAME = "envoy.filters.network.rbac"
DEFAULT_TIMEOUT_NANOS = 600 * 10**9

# envoy.type.v3.StatusCode: the codes Envoy can return, by name.
STATUS_CODES: dict[int, str] = {
    0: "Empty",
    100: "Continue",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "NonAuthoritativeInformation",
    204: "NoContent",
    205: "ResetContent",
    206: "PartialContent",
    207: "MultiStatus",
    208: "AlreadyReported",
    226: "IMUsed",
    300: "MultipleChoices",
    301: "MovedPermanently",
    302: "Found",
    303: "SeeOther",
    304: "NotModified",
    305: "UseProxy",
    307: "TemporaryRedirect",
    308: "PermanentRedirect",
    400: "BadRequest",
    401: "Unauthorized",
    402: "PaymentRequired",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    407: "ProxyAuthenticationRequired",
    408: "RequestTimeout",
    409: "Conflict",
    410: "Gone",
    411: "LengthRequired",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    414: "URITooLong",
    415: "UnsupportedMediaType",
    416: "RangeNotSatisfiable",
    417: "ExpectationFailed",
    421: "MisdirectedRequest",
    422: "UnprocessableEntity",
    423: "Locked",
    424: "FailedDependency",
    426: "UpgradeRequired",
    428: "PreconditionRequired",
    429: "TooManyRequests",
    431: "RequestHeaderFieldsTooLarge",
    500: "InternalServerError",
    501: "NotImplemented",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
    505: "HTTPVersionNotSupported",
    506: "VariantAlsoNegotiates",
    507: "InsufficientStorage",
    508: "LoopDetected",
    510: "NotExtended",
    511: "NetworkAuthenticationRequired",
}

HTTP_PROVIDER = "envoyExtAuthzHttp"
GRPC_PROVIDER = "envoyExtAuthzGrpc"

# The service registry: (namespace, hostname) pairs, or a function giving the
# namespaces that define a hostname.
ServiceRegistry = Collection[tuple[str, str]] | Callable[[str], Collection[str]]


def _namespaces_of(registry: ServiceRegistry, hostname: str) -> list[str]:
    if callable(registry):
        return sorted(registry(hostname))
    return sorted({ns for ns, host in registry if host == hostname})


class ResolvedProvider(Struct):
    """A provider after istiod's checks: typed configs or the errors found."""

    name: str
    http: dict[str, Any] | None = None
    tcp: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


# --- value checks ----------------------------------------------------------------

# Compiled on first use (re's cache), not at import: start-up.
_DNS1123_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_WILDCARD_LABEL = r"(\*|(\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)"


def _is_label(s: str) -> bool:
    return len(s) <= 63 and re.fullmatch(_DNS1123_LABEL, s) is not None


def _dns_labels_error(domain: str) -> str | None:
    parts = domain.split(".")
    top = parts[-1]
    if re.fullmatch(r"[+-]?[0-9]+", top):
        return f"domain name {domain!r} invalid (top level domain {top!r} cannot be all-numeric)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None
        if not _is_label(label):
            return f"domain name {domain!r} invalid (label {label!r} invalid)"
    return None


def _precondition_error(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {name!r} too long (max 255)"
    if not name:
        return "empty domain name not allowed"
    return None


def _fqdn_error(fqdn: str) -> str | None:
    return _precondition_error(fqdn) or _dns_labels_error(fqdn)


def _wildcard_domain_error(domain: str) -> str | None:
    if err := _precondition_error(domain):
        return err
    first, dot, rest = domain.partition(".")
    if not (len(first) <= 63 and re.fullmatch(_WILDCARD_LABEL, first)):
        return f"domain name {domain!r} invalid (label {first!r} invalid)"
    return _dns_labels_error(rest) if dot else None


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _service_format_errors(service: str) -> list[str]:
    if not service:
        return ["service must not be empty"]
    parts = service.split("/")
    if len(parts) == 1:
        if _fqdn_error(service) and not _is_ip(service):
            return [f"invalid service fmt {service}: {service} is not a valid IP"]
        return []
    errs: list[str] = []
    ns, _, host = service.partition("/")
    if not ns or not host:
        errs.append("config namespace and dnsName in host entry cannot be empty")
    bare = ns.removeprefix("~")
    if bare not in ("", "*", ".") and not _is_label(bare):
        errs.append(f"invalid namespace value {ns!r} in sidecar")
    if host != "*" and "." not in host:
        errs.append("short names (non FQDN) are not allowed")
    if err := _wildcard_domain_error(host):
        errs.append(err)
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        errs.append(f"partial wildcard {host!r} not allowed")
    return errs


def _provider_name_error(name: str) -> str | None:
    if not name:
        return "provider name cannot be empty"
    if len(name) > 63:
        return f"provider name too long (max 63 characters): {len(name)}"
    for i, c in enumerate(name):
        if "a" <= c <= "z" or "0" <= c <= "9" or c == "-":
            continue
        if "A" <= c <= "Z":
            return f"uppercase letters not allowed (use lowercase): character {c!r} at position {i}"
        return (
            f"invalid character {c!r} at position {i} "
            "(only lowercase letters, digits, and hyphens allowed)"
        )
    if name[0] == "-" or name[-1] == "-":
        return "provider name cannot start or end with hyphen"
    return None


def _port(config: Mapping[str, Any], errs: list[str]) -> int:
    p = config.get("port", 0)
    if isinstance(p, bool) or not isinstance(p, int):
        errs.append(f"port must be a number, found: {p!r}")
        return 0
    if not 1 <= p <= 65535:
        errs.append(f"port must be in the range [1, 65535], found: {p}")
    return p


def _status(config: Mapping[str, Any], errs: list[str]) -> dict[str, Any] | None:
    status = config.get("statusOnError", "")
    if status in ("", None):
        return None
    if not isinstance(status, str):
        errs.append(f"invalid statusOnError {status!r}: not a string")
        return None
    if not re.fullmatch(r"[+-]?[0-9]+", status) or not -(2**31) <= int(status) < 2**31:
        errs.append(f'invalid statusOnError "{status}": not a 32-bit integer')
        return None
    code = int(status)
    if code not in STATUS_CODES:
        errs.append(f"unsupported statusOnError {status}, supported values: {sorted(STATUS_CODES)}")
        return None
    # proto3 JSON leaves out an enum at its zero value.
    return {"code": STATUS_CODES[code]} if code else {}


_DURATION = r"(-)?([0-9]+)(?:\.([0-9]{1,9}))?s"  # as _DNS1123_LABEL


def _timeout(config: Mapping[str, Any], errs: list[str]) -> str:
    raw = config.get("timeout")
    nanos = DEFAULT_TIMEOUT_NANOS
    if raw is not None:
        match = re.fullmatch(_DURATION, raw) if isinstance(raw, str) else None
        if match is None:
            errs.append(f"invalid timeout {raw!r}: expected a duration such as 0.5s")
            return format_duration(nanos)
        sign, secs, frac = match.groups()
        nanos = int(secs) * 10**9 + int((frac or "").ljust(9, "0"))
        nanos = -nanos if sign else nanos
    return format_duration(nanos)


def format_duration(nanos: int) -> str:
    """proto3 JSON for a google.protobuf.Duration (0, 3, 6 or 9 fraction digits)."""
    sign = "-" if nanos < 0 else ""
    secs, frac = divmod(abs(nanos), 10**9)
    if frac == 0:
        return f"{sign}{secs}s"
    if frac % 10**6 == 0:
        return f"{sign}{secs}.{frac // 10**6:03d}s"
    if frac % 10**3 == 0:
        return f"{sign}{secs}.{frac // 10**3:06d}s"
    return f"{sign}{secs}.{frac:09d}s"


def _str_list(config: Mapping[str, Any], key: str, errs: list[str]) -> list[str]:
    v = config.get(key) or []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        errs.append(f"{key} must be a list of strings")
        return []
    return v


def _lookup_cluster(
    registry: ServiceRegistry, service: str, port: int, errs: list[str]
) -> tuple[str, str]:
    """(hostname, cluster name) of the provider's service, as istiod resolves it."""
    if not service:
        errs.append("service must not be empty")
        return "", ""
    parts = service.split("/")
    if len(parts) == 2:
        ns, host = parts
        if ns in _namespaces_of(registry, host):
            return host, f"outbound|{port}||{host}"
    else:
        namespaces = _namespaces_of(registry, service)
        if len(namespaces) == 1:
            return service, f"outbound|{port}||{service}"
        if len(namespaces) > 1:
            errs.append(
                f"found {service} in multiple namespaces {namespaces}, specify the namespace "
                "explicitly in the format of <Namespace>/<Hostname>"
            )
            return "", ""
    errs.append(f"could not find service {service} in Istio service registry")
    return "", ""


def _headers(values: list[str]) -> dict[str, Any] | None:
    """Header names as case-insensitive matchers; a leading or trailing '*'
    makes a suffix or prefix match."""
    if not values:
        return None
    patterns = []
    for h in values:
        if h.startswith("*"):
            patterns.append({"suffix": h[1:], "ignoreCase": True})
        elif h.endswith("*"):
            patterns.append({"prefix": h[:-1], "ignoreCase": True})
        else:
            patterns.append({"exact": h, "ignoreCase": True})
    return {"patterns": patterns}


def _body(config: Mapping[str, Any], errs: list[str]) -> dict[str, Any] | None:
    b = config.get("includeRequestBodyInCheck")
    if b is None:
        return None
    if not isinstance(b, Mapping):
        errs.append("includeRequestBodyInCheck must be a mapping")
        return None
    out: dict[str, Any] = {}
    if b.get("maxRequestBytes"):
        out["maxRequestBytes"] = b["maxRequestBytes"]
    if b.get("allowPartialMessage"):
        out["allowPartialMessage"] = True
    if b.get("packAsBytes"):
        out["packAsBytes"] = True
    return out


def filter_enabled_metadata(rbac_filter: str, provider: str | None) -> dict[str, Any]:
    """Calls the authorizer only when the RBAC filter's shadow rules matched
    one of this provider's CUSTOM policies."""
    return {
        "filter": rbac_filter,
        "path": [{"key": naming.CUSTOM_MARK_KEY}],
        "value": {"stringMatch": {"prefix": naming.custom_enabled_prefix(provider)}},
    }


def _build_http(
    config: Mapping[str, Any], registry: ServiceRegistry
) -> tuple[dict[str, Any] | None, list[str]]:
    errs: list[str] = []
    port = _port(config, errs)
    hostname, cluster = _lookup_cluster(registry, str(config.get("service", "")), port, errs)
    status = _status(config, errs)
    path_prefix = config.get("pathPrefix", "") or ""
    if path_prefix and not str(path_prefix).startswith("/"):
        errs.append(f"pathPrefix must begin with `/`, found: {path_prefix!r}")
    lists = {
        k: _str_list(config, k, errs)
        for k in (
            "includeRequestHeadersInCheck",
            "includeHeadersInCheck",
            "headersToDownstreamOnDeny",
            "headersToDownstreamOnAllow",
            "headersToUpstreamOnAllow",
        )
    }
    for k, vals in lists.items():
        if "*" in vals:
            errs.append(
                'a single wildcard ("*") is not supported, change it to either prefix or '
                f"suffix match: {k[0].upper() + k[1:]}"
            )
    timeout = _timeout(config, errs)
    body = _body(config, errs)
    extra = config.get("includeAdditionalHeadersInCheck") or {}
    if not isinstance(extra, Mapping):
        errs.append("includeAdditionalHeadersInCheck must be a mapping")
        extra = {}
    if errs:
        return None, errs

    service: dict[str, Any] = {
        "serverUri": {"uri": f"http://{hostname}", "cluster": cluster, "timeout": timeout}
    }
    if path_prefix:
        service["pathPrefix"] = path_prefix
    if extra:
        service["authorizationRequest"] = {
            "headersToAdd": [{"key": k, "value": str(extra[k])} for k in sorted(extra)]
        }
    up, deny, allow = (
        lists["headersToUpstreamOnAllow"],
        lists["headersToDownstreamOnDeny"],
        lists["headersToDownstreamOnAllow"],
    )
    if up or deny or allow:
        resp: dict[str, Any] = {}
        for key, vals in (
            ("allowedUpstreamHeaders", up),
            ("allowedClientHeaders", deny),
            ("allowedClientHeadersOnSuccess", allow),
        ):
            if (h := _headers(vals)) is not None:
                resp[key] = h
        service["authorizationResponse"] = resp
    tc: dict[str, Any] = {"@type": HTTP_EXT_AUTHZ_TYPE, "httpService": service}
    # The deprecated includeHeadersInCheck counts only without the new field.
    allowed = _headers(lists["includeRequestHeadersInCheck"]) or _headers(
        lists["includeHeadersInCheck"]
    )
    if allowed is not None:
        tc["allowedHeaders"] = allowed
    _common(tc, config, status, body)
    return tc, []


def _common(
    tc: dict[str, Any],
    config: Mapping[str, Any],
    status: dict[str, Any] | None,
    body: dict[str, Any] | None,
) -> None:
    if status is not None:
        tc["statusOnError"] = status
    if config.get("failOpen"):
        tc["failureModeAllow"] = True
    tc["transportApiVersion"] = "V3"
    tc["filterEnabledMetadata"] = filter_enabled_metadata(HTTP_RBAC_NAME, None)
    if body is not None:
        tc["withRequestBody"] = body


def _build_grpc(
    config: Mapping[str, Any], registry: ServiceRegistry
) -> tuple[tuple[dict[str, Any], dict[str, Any]] | None, list[str]]:
    errs: list[str] = []
    port = _port(config, errs)
    hostname, cluster = _lookup_cluster(registry, str(config.get("service", "")), port, errs)
    status = _status(config, errs)
    timeout = _timeout(config, errs)
    body = _body(config, errs)
    if errs:
        return None, errs
    grpc = {"envoyGrpc": {"clusterName": cluster, "authority": hostname}, "timeout": timeout}
    http: dict[str, Any] = {"@type": HTTP_EXT_AUTHZ_TYPE, "grpcService": grpc}
    _common(http, config, status, body)
    tcp: dict[str, Any] = {
        "@type": NETWORK_EXT_AUTHZ_TYPE,
        "statPrefix": "tcp.",
        "grpcService": dict(grpc),
        "transportApiVersion": "V3",
        "filterEnabledMetadata": filter_enabled_metadata(NETWORK_RBAC_NAME, None),
    }
    if config.get("failOpen"):
        tcp["failureModeAllow"] = True
    return (http, tcp), []


def _validation_errors(p: ExtensionProvider) -> list[str]:
    """Istio's mesh-config checks of an ext_authz provider."""
    c = p.config
    errs: list[str] = []
    port = c.get("port", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        errs.append(f"port number {port} must be in the range 1..65535")
    errs.extend(_service_format_errors(str(c.get("service", "") or "")))
    _status(c, errs)
    return errs


def resolve_providers(
    providers: Iterable[ExtensionProvider], registry: ServiceRegistry
) -> dict[str, ResolvedProvider]:
    """Every ext_authz provider of the mesh config, checked and built."""
    resolved: dict[str, ResolvedProvider] = {}
    for i, p in enumerate(providers):
        errs: list[str] = []
        if not p.name:
            errs.append(f"extension provider name must not be empty, found empty at index: {i}")
        elif p.name in resolved:
            errs.append(f"extension provider name must be unique, found duplicate: {p.name}")
        if p.name and (err := _provider_name_error(p.name)):
            errs.append(f"invalid provider name {p.name!r}: {err}")
        if p.kind not in (HTTP_PROVIDER, GRPC_PROVIDER):
            continue
        rp = ResolvedProvider(p.name)
        build_errs = _validation_errors(p)
        if not build_errs:
            if p.kind == HTTP_PROVIDER:
                rp.http, build_errs = _build_http(p.config, registry)
            else:
                built, build_errs = _build_grpc(p.config, registry)
                if built is not None:
                    rp.http, rp.tcp = built
        if build_errs:
            errs.append(f"failed to parse extension provider {p.name!r}: " + "; ".join(build_errs))
            rp.http = rp.tcp = None
        rp.errors = errs
        resolved[p.name] = rp
    return resolved


def ext_authz_filter(rp: ResolvedProvider, provider: str, network: bool) -> ExtAuthzFilter | None:
    """The ext_authz filter for one provider, its metadata gate naming the
    provider; None when the provider has no form for this chain."""
    base = rp.tcp if network else rp.http
    if base is None:
        return None
    tc = dict(base)
    tc["filterEnabledMetadata"] = filter_enabled_metadata(
        NETWORK_RBAC_NAME if network else HTTP_RBAC_NAME, provider
    )
    return ExtAuthzFilter(NETWORK_EXT_AUTHZ_NAME if network else HTTP_EXT_AUTHZ_NAME, tc)

"""The parts of Istio's MeshConfig that authorization depends on, read as istiod
reads them.

It comes from the ``istio`` ConfigMap (key ``mesh``) or from a standalone
MeshConfig file; fields not given take Istio's defaults. istiod reads the text
with ``protomarshal.ApplyYAML`` (pkg/config/mesh/mesh.go ``ApplyMeshConfig``):
YAML turned into JSON, then golang/protobuf's legacy ``jsonpb`` unmarshaler,
whose rules this module follows for the fields it reads:

* a field may be written with its JSON name or its proto name
  (``statusOnError`` or ``status_on_error``; the JSON name wins when both are);
* integers may be JSON numbers or strings holding one (``port: "9000"``), as
  Go's JSON decoder reads them after the quotes are stripped (no sign on
  unsigned fields, no fraction, no exponent);
* booleans and strings must be JSON booleans and strings;
* enums are names (``"MERGE_SLASHES"``) or numbers (``3``);
* durations are strings in Go's ``time.ParseDuration`` form (``"1s"``,
  ``"500ms"``, ``"1m30s"``);
* ``null`` leaves a field unset;
* unknown fields are allowed (``ApplyJSON`` retries with
  ``AllowUnknownFields``), except that an extension provider must have a
  provider configuration istiod knows (``ValidateMeshConfig``: "unsupported
  provider").

A value of the wrong type makes istiod refuse the whole mesh config (it keeps
its defaults); meshauthz stops with the field's location instead (exit 2).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, cast, get_args

from msgspec import Struct

from meshauthz.errors import Location
from meshauthz.records import Record

PathNormalization = Literal["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]
# ProxyPathNormalization.NormalizationType (istio/api mesh/v1alpha1/config.proto), by number.
_NORMALIZATIONS = ("DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")

DEFAULT_ROOT_NAMESPACE = "istio-system"
DEFAULT_TRUST_DOMAIN = "cluster.local"

# ExtensionProvider's ``provider`` oneof, in declaration order (jsonpb sets the
# members in this order; a later one replaces an earlier one): JSON name, proto name.
PROVIDER_KINDS: tuple[tuple[str, str], ...] = (
    ("envoyExtAuthzHttp", "envoy_ext_authz_http"),
    ("envoyExtAuthzGrpc", "envoy_ext_authz_grpc"),
    ("zipkin", "zipkin"),
    ("lightstep", "lightstep"),
    ("datadog", "datadog"),
    ("stackdriver", "stackdriver"),
    ("opencensus", "opencensus"),
    ("skywalking", "skywalking"),
    ("opentelemetry", "opentelemetry"),
    ("prometheus", "prometheus"),
    ("envoyFileAccessLog", "envoy_file_access_log"),
    ("envoyHttpAls", "envoy_http_als"),
    ("envoyTcpAls", "envoy_tcp_als"),
    ("envoyOtelAls", "envoy_otel_als"),
    ("sds", "sds"),
)
# istiod's ValidateMeshConfig rejects a provider of any other kind ("unsupported provider").
_VALIDATED_KINDS = frozenset(k for k, _ in PROVIDER_KINDS) - {"sds"}

# Field types of the messages read: JSON name -> type. A type is a scalar name,
# ("list", t), ("map", t) or a message (a dict like these).
_Type = Any
_BODY: dict[str, _Type] = {
    "maxRequestBytes": "uint32",
    "allowPartialMessage": "bool",
    "packAsBytes": "bool",
}
_EXT_AUTHZ_COMMON: dict[str, _Type] = {
    "service": "string",
    "port": "uint32",
    "timeout": "duration",
    "failOpen": "bool",
    "clearRouteCache": "bool",
    "statusOnError": "string",
    "includeRequestBodyInCheck": _BODY,
}
_EXT_AUTHZ_HTTP: dict[str, _Type] = {
    **_EXT_AUTHZ_COMMON,
    "pathPrefix": "string",
    "includeHeadersInCheck": ("list", "string"),
    "includeRequestHeadersInCheck": ("list", "string"),
    "includeAdditionalHeadersInCheck": ("map", "string"),
    "headersToUpstreamOnAllow": ("list", "string"),
    "headersToDownstreamOnDeny": ("list", "string"),
    "headersToDownstreamOnAllow": ("list", "string"),
}
_PROVIDER_FIELDS: dict[str, dict[str, _Type]] = {
    "envoyExtAuthzHttp": _EXT_AUTHZ_HTTP,
    "envoyExtAuthzGrpc": _EXT_AUTHZ_COMMON,
}


class ExtensionProvider(Struct, frozen=True):
    name: str
    kind: str  # the provider's field name, e.g. envoyExtAuthzHttp
    # The provider's configuration, JSON names and typed values (an ext_authz
    # provider's fields as istiod holds them; other kinds as written).
    config: dict[str, Any]
    location: Location | None = None


# The providers of istiod's default mesh config (pkg/config/mesh/mesh.go
# DefaultMeshConfig): a mesh config's providers replace these by name, or follow them.
BUILTIN_PROVIDERS: tuple[ExtensionProvider, ...] = (
    ExtensionProvider("prometheus", "prometheus", {}),
    ExtensionProvider("stackdriver", "stackdriver", {}),
    ExtensionProvider("envoy", "envoyFileAccessLog", {"path": "/dev/stdout"}),
)


class MeshConfig(Record, frozen=True):
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    trust_domain_aliases: tuple[str, ...] = ()
    extension_providers: tuple[ExtensionProvider, ...] = BUILTIN_PROVIDERS
    # DEFAULT in MeshConfig means BASE (Istio's documented default).
    path_normalization: PathNormalization = "BASE"
    # defaultConfig.gatewayTopology.numTrustedProxies: the X-Forwarded-For hops a
    # gateway trusts (istiod sets it as the gateway HCM's xff_num_trusted_hops).
    # A pod's proxy.istio.io/config annotation can override it; not read.
    gateway_num_trusted_proxies: int = 0
    location: Location | None = None
    source_fields: dict[str, Location] = {}

    provenance = ("source_fields",)

    def provider(self, name: str) -> ExtensionProvider | None:
        for p in self.extension_providers:
            if p.name == name:
                return p
        return None


class MeshConfigError(ValueError):
    def __init__(self, message: str, path: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.path = path


FieldPath = tuple[str | int, ...]


def _snake(json_name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), json_name)


def _field(data: dict[str, Any], json_name: str) -> tuple[str, Any] | None:
    """(key as written, value) of a field given by JSON or proto name; the JSON
    name wins (jsonpb reads the proto name, then the JSON name over it). None
    when absent or null (unset)."""
    for key in (json_name, _snake(json_name)):
        if key in data and data[key] is not None:
            return key, data[key]
    return None


# compiled on first use (re's cache), not at import: start-up
_JSON_INT = r"\s*(-?(?:0|[1-9][0-9]*))\s*"
_INT_RANGES = {"uint32": (0, 2**32 - 1), "int32": (-(2**31), 2**31 - 1)}


def _integer(value: Any, kind: str, path: FieldPath) -> int:
    """An integer field as jsonpb reads it: a number, or a string holding one."""
    text: str | None
    if isinstance(value, bool):
        text = None
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        text = str(int(value))  # YAML's 9000.0 becomes JSON's 9000
    elif isinstance(value, str):
        text = value
    else:
        text = None
    m = re.fullmatch(_JSON_INT, text) if text is not None else None
    lo, hi = _INT_RANGES[kind]
    if m is None or not lo <= int(m.group(1)) <= hi:
        shown = f'"{value}"' if isinstance(value, str) else _type_name(value)
        raise MeshConfigError(
            f"expected an integer from {lo} to {hi} (a number, or a string holding one), "
            f"got {shown}",
            path,
        )
    return int(m.group(1))


_GO_DURATION_UNITS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_GO_DURATION_PART = r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)"  # as _JSON_INT
_MAX_NANOS = 2**63 - 1


def go_duration_nanos(text: str) -> int | None:
    """Go's ``time.ParseDuration`` (what jsonpb reads a Duration with), in
    nanoseconds; None when Go refuses it."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        return None
    from fractions import Fraction  # start-up: only a mesh config with durations needs it

    total = Fraction(0)
    pos = 0
    part = re.compile(_GO_DURATION_PART)
    while pos < len(s):
        m = part.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            return None
        number = m.group(1).rstrip(".")
        total += Fraction("0" + number) * _GO_DURATION_UNITS[m.group(2)]
        pos = m.end()
    nanos = int(total)  # Go drops what is finer than a nanosecond
    if nanos > _MAX_NANOS:
        return None
    return sign * nanos


def _duration(value: Any, path: FieldPath) -> str:
    """A Duration, as proto3 JSON writes it (``"0.500s"``)."""
    nanos = go_duration_nanos(value) if isinstance(value, str) else None
    if nanos is None:
        raise MeshConfigError(
            f'expected a duration such as "1s", "500ms" or "1m30s", got {_shown(value)}',
            path,
        )
    sign = "-" if nanos < 0 else ""
    secs, frac = divmod(abs(nanos), 10**9)
    return f"{sign}{secs}s" if not frac else f"{sign}{secs}.{frac:09d}".rstrip("0") + "s"


def _value(value: Any, typ: _Type, path: FieldPath) -> Any:
    if isinstance(typ, dict):
        return _message(value, typ, path)
    if isinstance(typ, tuple):
        container, item = typ
        if container == "list":
            if not isinstance(value, list):
                raise MeshConfigError(f"expected a list, got {_shown(value)}", path)
            return [_value(v, item, (*path, i)) for i, v in enumerate(value)]
        if not isinstance(value, dict):
            raise MeshConfigError(f"expected a mapping, got {_shown(value)}", path)
        return {k: _value(v, item, (*path, k)) for k, v in value.items()}
    if typ == "string":
        if not isinstance(value, str):
            raise MeshConfigError(f"expected a string, got {_shown(value)}", path)
        return value
    if typ == "bool":
        if not isinstance(value, bool):
            raise MeshConfigError(f"expected true or false, got {_shown(value)}", path)
        return value
    if typ in _INT_RANGES:
        return _integer(value, typ, path)
    if typ == "duration":
        return _duration(value, path)
    raise AssertionError(typ)


def _message(data: Any, fields: dict[str, _Type], path: FieldPath) -> dict[str, Any]:
    """The known fields of a message, typed, by JSON name (unknown ones dropped)."""
    if not isinstance(data, dict):
        raise MeshConfigError(f"expected a mapping, got {_shown(data)}", path)
    out: dict[str, Any] = {}
    for name, typ in fields.items():
        found = _field(data, name)
        if found is not None:
            key, value = found
            out[name] = _value(value, typ, (*path, key))
    return out


def _provider(p: Any, i: int, locate: Callable[[FieldPath], Any]) -> ExtensionProvider:
    path: FieldPath = ("extensionProviders", i)
    if not isinstance(p, dict):
        raise MeshConfigError(f"expected a mapping, got {_shown(p)}", path)
    named = _field(p, "name")
    name = _value(named[1], "string", (*path, named[0])) if named else ""
    if not name:
        raise MeshConfigError("a provider needs a name", (*path, "name"))
    chosen: tuple[str, str] | None = None  # (JSON name, key as written)
    for json_name, proto_name in PROVIDER_KINDS:
        for key in (proto_name, json_name):
            if p.get(key) is not None:
                chosen = (json_name, key)
    if chosen is None or chosen[0] not in _VALIDATED_KINDS:
        known = ", ".join(k for k, _ in PROVIDER_KINDS if k in _VALIDATED_KINDS)
        raise MeshConfigError(
            f'provider "{name}" has no provider configuration istiod supports '
            f"(one of {known}); istiod rejects the mesh config (unsupported provider)",
            path,
        )
    kind, key = chosen
    raw = p[key]
    if kind in _PROVIDER_FIELDS:
        config = _message(raw, _PROVIDER_FIELDS[kind], (*path, key))
    elif isinstance(raw, dict):
        config = dict(raw)  # a kind authorization does not use: kept as written
    else:
        raise MeshConfigError(f"expected a mapping, got {_shown(raw)}", (*path, key))
    return ExtensionProvider(name, kind, config, locate(path))


def mesh_config_from_data(data: Any, locate: Any = None) -> MeshConfig:
    """Build a MeshConfig from parsed YAML data, as istiod reads it.

    ``locate(path)`` returns the Location of a path inside ``data`` (or None).
    Raises MeshConfigError with the path of a field istiod cannot read.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MeshConfigError("mesh config must be a mapping", ())

    def loc(path: FieldPath) -> Location | None:
        return locate(path) if locate else None

    def get(name: str, typ: _Type) -> Any:
        found = _field(data, name)
        return None if found is None else _value(found[1], typ, (found[0],))

    root = get("rootNamespace", "string") or DEFAULT_ROOT_NAMESPACE
    td = get("trustDomain", "string") or DEFAULT_TRUST_DOMAIN
    aliases = get("trustDomainAliases", ("list", "string")) or []
    providers = list(BUILTIN_PROVIDERS)
    found = _field(data, "extensionProviders")
    if found is not None:
        key, raw = found
        if not isinstance(raw, list):
            raise MeshConfigError(f"expected a list, got {_shown(raw)}", (key,))
        providers = _merged([_provider(p, i, loc) for i, p in enumerate(raw)])
    norm = "DEFAULT"
    found = _field(data, "pathNormalization")
    if found is not None:
        key, pn = found
        if not isinstance(pn, dict):
            raise MeshConfigError(f"expected a mapping, got {_shown(pn)}", (key,))
        inner = _field(pn, "normalization")
        if inner is not None:
            norm = _enum(inner[1], "normalization", _NORMALIZATIONS, (key, inner[0]))
    trusted = 0
    found = _field(data, "defaultConfig")
    if found is not None:
        dc_key, dc = found
        if not isinstance(dc, dict):
            raise MeshConfigError(f"expected a mapping, got {_shown(dc)}", (dc_key,))
        topo = _field(dc, "gatewayTopology")
        if topo is not None:
            topo_key, t = topo
            typed = _message(t, {"numTrustedProxies": "uint32"}, (dc_key, topo_key))
            trusted = typed.get("numTrustedProxies", 0)
    return MeshConfig(
        root_namespace=root,
        trust_domain=td,
        # ApplyMeshConfig keeps them as a sorted set (sets.SortedList)
        trust_domain_aliases=tuple(sorted(set(aliases))),
        extension_providers=tuple(providers),
        path_normalization=_path_normalization(norm),
        gateway_num_trusted_proxies=trusted,
        location=loc(()),
    )


def _merged(given: list[ExtensionProvider]) -> list[ExtensionProvider]:
    """ApplyMeshConfig's merge: a provider named as a built-in one takes its
    place; the others follow, in order."""
    out = list(BUILTIN_PROVIDERS)
    for p in given:
        same = next((i for i, e in enumerate(out) if e.name == p.name), None)
        if same is None:
            out.append(p)
        else:
            out[same] = p
    return out


def _enum(value: Any, what: str, names: tuple[str, ...], path: FieldPath) -> str:
    """An enum as jsonpb reads it: its name, or its number."""
    if isinstance(value, str) and value in names:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    raise MeshConfigError(
        f"unknown {what} {_shown(value)}; one of {', '.join(names)} (or its number, 0 to "
        f"{len(names) - 1})",
        path,
    )


def _shown(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else _type_name(v)


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if isinstance(v, int | float):
        return f"a number ({v})"
    return {list: "a list", dict: "a mapping", type(None): "null"}.get(type(v), type(v).__name__)


def _path_normalization(norm: str) -> PathNormalization:
    """Istio's DEFAULT is BASE; the others were checked against _NORMALIZATIONS."""
    if norm == "DEFAULT":
        return "BASE"
    for mode in get_args(PathNormalization):
        if mode == norm:
            return cast(PathNormalization, mode)
    raise AssertionError(norm)

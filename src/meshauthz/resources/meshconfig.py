"""The parts of Istio's MeshConfig that authorization depends on.

It comes from the ``istio`` ConfigMap (key ``mesh``) or from a standalone
MeshConfig file; fields not given take Istio's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from meshauthz.errors import Location

PathNormalization = Literal["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]
_NORMALIZATIONS = ("DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")

DEFAULT_ROOT_NAMESPACE = "istio-system"
DEFAULT_TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True, slots=True)
class ExtensionProvider:
    name: str
    kind: str  # the provider's field name, e.g. envoyExtAuthzHttp
    config: dict[str, Any]
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class MeshConfig:
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    trust_domain_aliases: tuple[str, ...] = ()
    extension_providers: tuple[ExtensionProvider, ...] = ()
    # DEFAULT in MeshConfig means BASE (Istio's documented default).
    path_normalization: PathNormalization = "BASE"
    # defaultConfig.gatewayTopology.numTrustedProxies: the X-Forwarded-For hops a
    # gateway trusts (istiod sets it as the gateway HCM's xff_num_trusted_hops).
    # A pod's proxy.istio.io/config annotation can override it; not read.
    gateway_num_trusted_proxies: int = 0
    location: Location | None = None
    source_fields: dict[str, Location] = field(default_factory=dict, compare=False)

    def provider(self, name: str) -> ExtensionProvider | None:
        for p in self.extension_providers:
            if p.name == name:
                return p
        return None


class MeshConfigError(ValueError):
    def __init__(self, message: str, path: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.path = path


def mesh_config_from_data(data: Any, locate: Any = None) -> MeshConfig:
    """Build a MeshConfig from parsed YAML data.

    ``locate(path)`` returns the Location of a path inside ``data`` (or None).
    Raises MeshConfigError with the path of a field of the wrong type.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MeshConfigError("mesh config must be a mapping", ())

    def loc(*path: str | int) -> Location | None:
        return locate(path) if locate else None

    def get_str(key: str, default: str) -> str:
        v = data.get(key)
        if v is None:
            return default
        if not isinstance(v, str):
            raise MeshConfigError(f"expected a string, got {_type_name(v)}", (key,))
        return v or default

    root = get_str("rootNamespace", DEFAULT_ROOT_NAMESPACE)
    td = get_str("trustDomain", DEFAULT_TRUST_DOMAIN)
    aliases_raw = data.get("trustDomainAliases") or []
    if not isinstance(aliases_raw, list) or not all(isinstance(a, str) for a in aliases_raw):
        raise MeshConfigError("expected a list of strings", ("trustDomainAliases",))
    providers: list[ExtensionProvider] = []
    raw_providers = data.get("extensionProviders") or []
    if not isinstance(raw_providers, list):
        raise MeshConfigError("expected a list", ("extensionProviders",))
    for i, p in enumerate(raw_providers):
        if not isinstance(p, dict):
            raise MeshConfigError("expected a mapping", ("extensionProviders", i))
        name = p.get("name")
        if not isinstance(name, str) or not name:
            raise MeshConfigError("a provider needs a name", ("extensionProviders", i, "name"))
        kinds = [k for k in p if k != "name"]
        if len(kinds) != 1 or not isinstance(p[kinds[0]], dict | None):
            raise MeshConfigError(
                "a provider needs exactly one provider configuration", ("extensionProviders", i)
            )
        providers.append(
            ExtensionProvider(name, kinds[0], dict(p[kinds[0]] or {}), loc("extensionProviders", i))
        )
    norm = "DEFAULT"
    pn = data.get("pathNormalization")
    if pn is not None:
        if not isinstance(pn, dict):
            raise MeshConfigError("expected a mapping", ("pathNormalization",))
        norm = pn.get("normalization", "DEFAULT") or "DEFAULT"
        if norm not in _NORMALIZATIONS:
            raise MeshConfigError(
                f"unknown normalization {norm!r}; one of {', '.join(_NORMALIZATIONS)}",
                ("pathNormalization", "normalization"),
            )
    trusted = 0
    dc = data.get("defaultConfig")
    if dc is not None:
        if not isinstance(dc, dict):
            raise MeshConfigError("expected a mapping", ("defaultConfig",))
        topo = dc.get("gatewayTopology")
        if topo is not None:
            if not isinstance(topo, dict):
                raise MeshConfigError("expected a mapping", ("defaultConfig", "gatewayTopology"))
            n = topo.get("numTrustedProxies")
            if n is not None:
                if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**32:
                    raise MeshConfigError(
                        f"expected a non-negative number, got {n!r}",
                        ("defaultConfig", "gatewayTopology", "numTrustedProxies"),
                    )
                trusted = n
    return MeshConfig(
        root_namespace=root,
        trust_domain=td,
        trust_domain_aliases=tuple(aliases_raw),
        extension_providers=tuple(providers),
        path_normalization=_path_normalization(norm),
        gateway_num_trusted_proxies=trusted,
        location=loc(),
    )


def _type_name(v: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "a mapping",
    }.get(type(v), type(v).__name__)


def _path_normalization(norm: str) -> PathNormalization:
    """Istio's DEFAULT is BASE; the others were checked against _NORMALIZATIONS."""
    if norm == "DEFAULT":
        return "BASE"
    for mode in get_args(PathNormalization):
        if mode == norm:
            return cast(PathNormalization, mode)
    raise AssertionError(norm)

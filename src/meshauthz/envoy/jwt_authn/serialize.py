"""JwtAuthentication JSON (proto3 JSON or Envoy's snake_case) <-> the model.

Writing uses snake_case, as Envoy's admin output and the local mesh's files
do; scalars at their proto default are omitted. Reading takes either
spelling and ignores fields the model does not hold; a shape the model cannot
hold (a ``rules`` match other than a path prefix, ``filter_state_rules``)
raises ``JwtConfigError`` with the JSON path of the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshauthz.envoy.proto_json import get, str_list
from meshauthz.errors import InputError

from .model import (
    JWT_TYPE,
    AllowMissing,
    AllowMissingOrFailed,
    HeaderLocation,
    JwtAuthentication,
    JwtProvider,
    ProviderName,
    RemoteJwks,
    Requirement,
    RequirementRule,
    RequiresAll,
    RequiresAny,
)


class JwtConfigError(InputError, ValueError):
    """A jwt_authn configuration the model cannot hold."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message, field=path or "<root>", code="jwt-config")
        self.path = path


# --------------------------------------------------------------------------- reading


def from_json(raw: Any, path: str = "") -> JwtAuthentication:
    """A JwtAuthentication typed config (``@type`` optional)."""
    if not isinstance(raw, Mapping):
        raise JwtConfigError(path, "expected an object")
    if get(raw, "filter_state_rules"):
        raise JwtConfigError(_at(path, "filter_state_rules"), "not supported by meshauthz")
    providers = get(raw, "providers", {})
    if not isinstance(providers, Mapping):
        raise JwtConfigError(_at(path, "providers"), "expected an object")
    rules = get(raw, "rules", [])
    if not isinstance(rules, list):
        raise JwtConfigError(_at(path, "rules"), "expected a list")
    rmap = get(raw, "requirement_map", {})
    if not isinstance(rmap, Mapping):
        raise JwtConfigError(_at(path, "requirement_map"), "expected an object")
    return JwtAuthentication(
        providers=tuple(
            _provider(str(n), p, _at(path, f"providers.{n}")) for n, p in providers.items()
        ),
        rules=tuple(_rule(r, f"{_at(path, 'rules')}[{i}]") for i, r in enumerate(rules)),
        requirement_map=tuple(
            (str(n), _requirement(r, _at(path, f"requirement_map.{n}"))) for n, r in rmap.items()
        ),
        bypass_cors_preflight=bool(get(raw, "bypass_cors_preflight", False)),
    )


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _provider(name: str, p: Any, path: str) -> JwtProvider:
    if not isinstance(p, Mapping):
        raise JwtConfigError(path, "expected an object")
    local, remote = get(p, "local_jwks"), get(p, "remote_jwks")
    inline = get(local, "inline_string")
    filename = get(local, "filename")
    if local is not None and inline is None and filename is None:
        raise JwtConfigError(
            _at(path, "local_jwks"), "only inline_string and filename are supported by meshauthz"
        )
    remote_jwks = None
    if remote is not None:
        uri = get(remote, "http_uri", {})
        remote_jwks = RemoteJwks(
            uri=str(get(uri, "uri", "")),
            cluster=str(get(uri, "cluster", "")),
            timeout=str(get(uri, "timeout", "")),
        )
    normalize = get(p, "normalize_payload_in_metadata", {})
    return JwtProvider(
        name=name,
        issuer=str(get(p, "issuer", "")),
        audiences=str_list(get(p, "audiences")),
        from_headers=tuple(
            HeaderLocation(str(get(h, "name", "")), str(get(h, "value_prefix", "")))
            for h in get(p, "from_headers", [])
        ),
        from_params=str_list(get(p, "from_params")),
        from_cookies=str_list(get(p, "from_cookies")),
        forward=bool(get(p, "forward", False)),
        payload_in_metadata=str(get(p, "payload_in_metadata", "")),
        space_delimited_claims=str_list(get(normalize, "space_delimited_claims")),
        local_jwks=None if inline is None else str(inline),
        local_jwks_filename=None if filename is None or inline is not None else str(filename),
        remote_jwks=remote_jwks if local is None else None,
    )


def _rule(r: Any, path: str) -> RequirementRule:
    match = get(r, "match", {})
    prefix = get(match, "prefix")
    others = [k for k in match if k not in ("prefix",)] if isinstance(match, Mapping) else []
    if not isinstance(prefix, str) or others:
        raise JwtConfigError(
            _at(path, "match"), "only a path prefix match is supported by meshauthz"
        )
    requires = get(r, "requires")
    return RequirementRule(
        prefix, None if requires is None else _requirement(requires, _at(path, "requires"))
    )


_KINDS = (
    "provider_name",
    "provider_and_audiences",
    "requires_any",
    "requires_all",
    "allow_missing",
    "allow_missing_or_failed",
)


def _requirement(r: Any, path: str) -> Requirement:
    kinds = [k for k in _KINDS if get(r, k) is not None]
    if len(kinds) != 1:
        raise JwtConfigError(path, f"expected exactly one of {', '.join(_KINDS)}")
    kind = kinds[0]
    v = get(r, kind)
    if kind == "provider_name":
        return ProviderName(str(v))
    if kind == "allow_missing":
        return AllowMissing()
    if kind == "allow_missing_or_failed":
        return AllowMissingOrFailed()
    if kind in ("requires_any", "requires_all"):
        reqs = get(v, "requirements", [])
        at = _at(path, f"{kind}.requirements")
        if not isinstance(reqs, list):
            raise JwtConfigError(at, "expected a list")
        children = tuple(_requirement(c, f"{at}[{i}]") for i, c in enumerate(reqs))
        return RequiresAny(children) if kind == "requires_any" else RequiresAll(children)
    raise JwtConfigError(_at(path, kind), "not supported by meshauthz")


# --------------------------------------------------------------------------- writing


def to_json(cfg: JwtAuthentication) -> dict[str, Any]:
    """The typed config, ``@type`` included."""
    out: dict[str, Any] = {"@type": JWT_TYPE}
    if cfg.providers:
        out["providers"] = {p.name: _provider_json(p) for p in cfg.providers}
    if cfg.rules:
        out["rules"] = [_rule_json(r) for r in cfg.rules]
    if cfg.requirement_map:
        out["requirement_map"] = {n: requirement_to_json(r) for n, r in cfg.requirement_map}
    if cfg.bypass_cors_preflight:
        out["bypass_cors_preflight"] = True
    return out


def _provider_json(p: JwtProvider) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if p.issuer:
        d["issuer"] = p.issuer
    if p.audiences:
        d["audiences"] = list(p.audiences)
    if p.local_jwks is not None:
        d["local_jwks"] = {"inline_string": p.local_jwks}
    elif p.local_jwks_filename is not None:
        d["local_jwks"] = {"filename": p.local_jwks_filename}
    elif p.remote_jwks is not None:
        uri: dict[str, Any] = {"uri": p.remote_jwks.uri}
        if p.remote_jwks.cluster:
            uri["cluster"] = p.remote_jwks.cluster
        if p.remote_jwks.timeout:
            uri["timeout"] = p.remote_jwks.timeout
        d["remote_jwks"] = {"http_uri": uri}
    if p.forward:
        d["forward"] = True
    if p.from_headers:
        d["from_headers"] = [
            {"name": h.name, **({"value_prefix": h.value_prefix} if h.value_prefix else {})}
            for h in p.from_headers
        ]
    if p.from_params:
        d["from_params"] = list(p.from_params)
    if p.from_cookies:
        d["from_cookies"] = list(p.from_cookies)
    if p.payload_in_metadata:
        d["payload_in_metadata"] = p.payload_in_metadata
    if p.space_delimited_claims:
        d["normalize_payload_in_metadata"] = {
            "space_delimited_claims": list(p.space_delimited_claims)
        }
    return d


def _rule_json(r: RequirementRule) -> dict[str, Any]:
    out: dict[str, Any] = {"match": {"prefix": r.prefix}}
    if r.requires is not None:
        out["requires"] = requirement_to_json(r.requires)
    return out


def requirement_to_json(r: Requirement) -> dict[str, Any]:
    if isinstance(r, ProviderName):
        return {"provider_name": r.name}
    if isinstance(r, AllowMissing):
        return {"allow_missing": {}}
    if isinstance(r, AllowMissingOrFailed):
        return {"allow_missing_or_failed": {}}
    kind = "requires_any" if isinstance(r, RequiresAny) else "requires_all"
    return {kind: {"requirements": [requirement_to_json(c) for c in r.requirements]}}

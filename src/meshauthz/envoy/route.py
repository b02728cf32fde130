"""Envoy's route table, as far as per-route filter configuration needs it.

A filter's configuration can be replaced for one route by
``typed_per_filter_config`` on the route, its virtual host or the route
configuration, keyed by the filter's name in the HTTP connection manager; the
most specific one wins. Which route a request takes is modelled as Envoy's
``RouteMatcher`` chooses it, and no further:

* the virtual host by the ``:authority`` (lowercased; the port stripped with
  ``ignore_port_in_host_matching``): an exact domain, then the longest
  ``*suffix`` wildcard, then the longest ``prefix*`` wildcard, then ``*``;
  a wildcard stands for at least one character;
* the first route of that virtual host whose path matches: ``prefix`` (on the
  whole ``:path``), ``path`` and ``safe_regex`` (on the path without its query),
  ``path_separated_prefix``; ``case_sensitive: false`` compares lowercased.

A route whose path matches but which has other conditions (headers, query
parameters, runtime fraction, TLS context, gRPC, metadata, filter state), or a
path matcher not listed above, cannot be resolved offline: ``RouteUnresolved``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec import Struct

from meshauthz.envoy.proto_json import get
from meshauthz.envoy.rbac.matchers import ascii_lower
from meshauthz.envoy.rbac.regex import compile_regex

FILTER_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
# Route match fields beyond the path: each makes the route's choice depend on
# what is not modelled here.
_OTHER_CONDITIONS = (
    "headers",
    "query_parameters",
    "grpc",
    "tls_context",
    "dynamic_metadata",
    "filter_state",
    "runtime_fraction",
    "cel_matcher",
)
_PATH_MATCHERS = ("prefix", "path", "safe_regex", "path_separated_prefix")


class RouteUnresolved(ValueError):
    """The route a request takes depends on what cannot be decided offline."""


class Disabled(Struct, frozen=True):
    """A per-route ``FilterConfig`` with ``disabled: true``: the filter is skipped."""


class RouteChoice(Struct, frozen=True):
    """The route a request takes and the per-filter configuration that applies there."""

    virtual_host: str
    route: str
    per_filter: dict[str, Any]  # filter name -> its typed config there, or Disabled()


def per_filter_configs(route_config: Mapping[str, Any]) -> set[str]:
    """The filter names that any level of ``route_config`` configures per route."""
    names = set(_tpfc(route_config))
    for vh in get(route_config, "virtual_hosts") or ():
        names |= set(_tpfc(vh))
        for r in get(vh, "routes") or ():
            names |= set(_tpfc(r))
            for c in get(get(r, "route"), "weighted_clusters", {}).get("clusters") or ():
                names |= set(_tpfc(c))
    return names


def choose_route(route_config: Mapping[str, Any], authority: str, path: str) -> RouteChoice | None:
    """The route ``authority`` and ``path`` (as the router sees them) take; None: no
    virtual host or no route matches (the filters' own configuration applies)."""
    vh = _virtual_host(route_config, authority)
    if vh is None:
        return None
    vh_name = str(get(vh, "name") or "")
    for i, r in enumerate(get(vh, "routes") or ()):
        match = get(r, "match") or {}
        if not _path_matches(match, path, f"virtual host {vh_name} route {i}"):
            continue
        label = str(get(r, "name") or f"routes[{i}]")
        others = [k for k in _OTHER_CONDITIONS if get(match, k) is not None]
        if others:
            raise RouteUnresolved(
                f"route {label} of virtual host {vh_name} also matches on {', '.join(others)}, "
                "which is not evaluated: which route the request takes cannot be told offline"
            )
        clusters = get(get(r, "route"), "weighted_clusters", {}).get("clusters") or ()
        if any(_tpfc(c) for c in clusters):
            raise RouteUnresolved(
                f"route {label} of virtual host {vh_name} configures filters per weighted "
                "cluster, which is picked at random"
            )
        merged: dict[str, Any] = {}
        for level in (route_config, vh, r):  # the most specific wins
            merged.update({k: _unwrap(v) for k, v in _tpfc(level).items()})
        return RouteChoice(vh_name, label, merged)
    return None


def _tpfc(d: Any) -> dict[str, Any]:
    v = get(d, "typed_per_filter_config")
    return dict(v) if isinstance(v, Mapping) else {}


def _unwrap(v: Any) -> Any:
    if get(v, "@type") == FILTER_CONFIG_TYPE:
        if get(v, "disabled") is True:
            return Disabled()
        return get(v, "config") or {}  # Envoy refuses one with neither
    return v


def strip_port(host: str) -> str:
    """``host[:port]`` without the port (an IPv6 literal keeps its brackets)."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _virtual_host(rc: Mapping[str, Any], authority: str) -> Mapping[str, Any] | None:
    host = ascii_lower(authority)
    if get(rc, "ignore_port_in_host_matching") is True:
        host = strip_port(host)
    exact: Mapping[str, Any] | None = None
    suffixes: list[tuple[int, Mapping[str, Any]]] = []
    prefixes: list[tuple[int, Mapping[str, Any]]] = []
    default: Mapping[str, Any] | None = None
    for vh in get(rc, "virtual_hosts") or ():
        for domain in (ascii_lower(str(d)) for d in get(vh, "domains") or ()):
            if domain == "*":
                default = default or vh
            elif domain.startswith("*"):
                tail = domain[1:]
                if len(host) > len(tail) and host.endswith(tail):
                    suffixes.append((len(tail), vh))
            elif domain.endswith("*"):
                head = domain[:-1]
                if len(host) > len(head) and host.startswith(head):
                    prefixes.append((len(head), vh))
            elif domain == host and exact is None:
                exact = vh
    if exact is not None:
        return exact
    for found in (suffixes, prefixes):
        if found:
            return max(found, key=lambda x: x[0])[1]
    return default


def _path_matches(match: Mapping[str, Any], path: str, where: str) -> bool:
    kinds = [k for k in _PATH_MATCHERS if get(match, k) is not None]
    if not kinds:
        raise RouteUnresolved(
            f"{where} matches the path in a way that is not modelled "
            f"(fields: {', '.join(sorted(match)) or 'none'})"
        )
    kind = kinds[0]
    value = get(match, kind)
    sensitive = get(match, "case_sensitive", True)
    if isinstance(sensitive, Mapping):
        sensitive = sensitive.get("value", True)
    bare = path.split("?", 1)[0].split("#", 1)[0]
    if kind == "safe_regex":
        return compile_regex(str(get(value, "regex") or "")).fullmatch(bare) is not None
    target = path if kind == "prefix" else bare
    want = str(value)
    if sensitive is False:
        target, want = ascii_lower(target), ascii_lower(want)
    if kind == "prefix":
        return target.startswith(want)
    if kind == "path":
        return target == want
    return target == want or target.startswith(want + "/")

"""Reading Envoy's JSON leniently: proto3 JSON or Envoy's admin output.

A config dump spells fields in snake_case (Envoy's admin output) or camelCase
(proto3 JSON); both are read. Integers may be strings or wrapper objects
(``{"value": N}``). Unknown fields are ignored: the readers of the filters
other than RBAC take what they model from a live proxy's configuration, which
carries many fields that do not bear on a decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def camel(name: str) -> str:
    """The proto3 JSON name of a snake_case field."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def get(d: Any, snake: str, default: Any = None) -> Any:
    """A field in snake_case or its camelCase JSON name; ``default`` if absent or null."""
    if not isinstance(d, Mapping):
        return default
    v = d.get(snake)
    if v is None:
        v = d.get(camel(snake))
    return default if v is None else v


def get_int(d: Any, snake: str) -> int | None:
    """An integer field (plain, a decimal string or a ``{"value": N}`` wrapper)."""
    return as_int(get(d, snake))


def as_int(v: Any) -> int | None:
    if isinstance(v, Mapping):
        v = v.get("value")
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def str_list(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in v) if isinstance(v, list) else ()

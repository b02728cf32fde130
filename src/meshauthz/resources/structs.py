"""A document's values (plain dicts, lists, strings, numbers) into the frozen
Structs of ``istio`` and ``k8s``, with every error of the document at once.

msgspec converts in one pass and stops at the first error, while a user fixes a
manifest in one round only when shown all of its errors. A value that does not
convert is therefore walked against its Struct's fields and their types
(``msgspec.structs.fields``): each problem is collected with its path in the
document, fields in the order the Struct declares them and unknown fields after
them in the order written, in Kubernetes' words. Values are not coerced (``methods:
GET`` is not a list, ``port: "80"`` is not a number). The walk also gives
Kubernetes' reading of null: a list or map written as null is one not written.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from meshauthz.resources.yamlload import Path

S = TypeVar("S", bound=msgspec.Struct)
# A problem: where in the converted value (a path below it), and what.
Problem = tuple[Path, str]


def convert(data: Any, cls: type[S]) -> tuple[S | None, list[Problem]]:
    """``data`` as a ``cls``, or None and every problem found in it."""
    try:
        return msgspec.convert(data, cls), []
    except msgspec.ValidationError:
        pass  # a mistake, or only a null list or map: the walk tells which
    problems: list[Problem] = []
    cleaned = _check(data, cls, (), problems)
    if problems:
        return None, list(dict.fromkeys(problems))  # each once, in order
    try:
        return msgspec.convert(cleaned, cls), []
    except msgspec.ValidationError as e:  # pragma: no cover - the walk knows every type used
        return None, [((), str(e))]


# Per Struct class: its fields (name written, required, type) and the names written.
_FIELDS: dict[type[msgspec.Struct], tuple[tuple[tuple[str, bool, Any], ...], frozenset[str]]] = {}


def _fields(cls: type[msgspec.Struct]) -> tuple[tuple[tuple[str, bool, Any], ...], frozenset[str]]:
    found = _FIELDS.get(cls)
    if found is None:
        fields = tuple((f.encode_name, f.required, f.type) for f in msgspec.structs.fields(cls))
        found = _FIELDS[cls] = (fields, frozenset(f[0] for f in fields))
    return found


def _empty_when_null(t: Any) -> bool:
    """A list or map field: written as null, it holds its default (empty), as
    Kubernetes reads null as "not set"."""
    return get_origin(t) in (tuple, list, dict)


def _check(value: Any, t: Any, path: Path, out: list[Problem]) -> Any:
    """Collect in ``out`` what keeps ``value`` from being a ``t`` (a type of the
    Structs' fields); return the value with its nulls for lists and maps left
    out, for msgspec to convert."""
    origin = get_origin(t)
    if origin is None and isinstance(t, type) and issubclass(t, msgspec.Struct):
        if not isinstance(value, dict):
            out.append((path, f"expected a mapping, got {_describe(value)}"))
            return value
        fields, names = _fields(t)
        cleaned: dict[Any, Any] = {}
        for key, required, ftype in fields:
            if key not in value:
                if required:
                    out.append(((*path, key), "required field is missing"))
                continue
            v = value[key]
            if v is None and _empty_when_null(ftype):
                continue
            cleaned[key] = _check(v, ftype, (*path, key), out)
        if t.__struct_config__.forbid_unknown_fields:
            out.extend(((*path, k), f'unknown field "{k}"') for k in value if k not in names)
        return cleaned
    if origin in (tuple, list):
        args = get_args(t)
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise TypeError(f"a type the manifests' Structs do not use: {t}")
        if not isinstance(value, list | tuple):
            out.append((path, f"expected a list, got {_describe(value)}"))
            return value
        return [_check(v, args[0], (*path, i), out) for i, v in enumerate(value)]
    if origin is dict:
        key_type, value_type = get_args(t)
        if not isinstance(value, dict):
            out.append((path, f"expected a mapping, got {_describe(value)}"))
            return value
        mapping: dict[Any, Any] = {}
        for k, v in value.items():
            _check(k, key_type, path, out)
            mapping[k] = _check(v, value_type, (*path, k) if isinstance(k, str) else path, out)
        return mapping
    if origin in (Union, types.UnionType):
        members = [m for m in get_args(t) if m is not type(None)]
        if value is None and len(members) < len(get_args(t)):
            return None
        if len(members) == 1:  # an optional value: its own problems
            return _check(value, members[0], path, out)
        tried: list[Problem] = []
        for m in members:
            found: list[Problem] = []
            checked = _check(value, m, path, found)
            if not found:
                return checked
            tried.extend(found)
        out.extend(tried)  # what each alternative found wrong
        return value
    if origin is Literal:
        allowed = get_args(t)
        if not any(type(value) is type(v) and value == v for v in allowed):
            shown = f'"{value}"' if isinstance(value, str) else _describe(value)
            supported = ", ".join(f'"{v}"' for v in allowed)
            out.append((path, f"unsupported value {shown}; supported values: {supported}"))
        return value
    scalar = _SCALARS.get(t)
    if scalar is None:
        raise TypeError(f"a type the manifests' Structs do not use: {t}")
    word, accepts = scalar
    if not accepts(value):
        out.append((path, f"expected {word}, got {_describe(value)}"))
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# A scalar type: what a message calls it, and which values are one (bool is not an int).
_SCALARS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    str: ("a string", lambda v: isinstance(v, str)),
    int: ("an integer", _is_int),
    bool: ("a boolean", lambda v: isinstance(v, bool)),
    float: ("a number", _is_number),
}


def _describe(value: Any) -> str:
    """A value as an error message names it: ``a string ("GET")``, ``a list``."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f'a string ("{value}")'
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return type(value).__name__


__all__ = ["Problem", "convert"]

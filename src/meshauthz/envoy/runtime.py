"""Envoy's runtime: the bootstrap's ``layered_runtime`` flags that change what
the proxy does with a request or accepts as configuration.

Only the keys meshauthz models are read; a flag left out has Envoy 1.40's
default. The keys and their effect:

``envoy.reloadable_features.http_reject_path_with_fragment`` (default true)
    A request target holding ``#`` is answered 400. When false, the fragment
    (from the first ``#``) is stripped before the path is normalized, unless
    ``envoy.reloadable_features.http_strip_fragment_from_path_unsafe_if_disabled``
    (default true) is also false, in which case the fragment is kept.
``re2.max_program_size.error_level`` (default 100)
    A RE2 regex in the configuration whose program size exceeds it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from msgspec import Struct

FragmentAction = Literal["reject", "strip", "keep"]

REJECT_FRAGMENT = "envoy.reloadable_features.http_reject_path_with_fragment"
STRIP_FRAGMENT = "envoy.reloadable_features.http_strip_fragment_from_path_unsafe_if_disabled"
RE2_ERROR_LEVEL = "re2.max_program_size.error_level"

# Envoy's default for ``re2.max_program_size.error_level``.
RE2_DEFAULT_MAX_PROGRAM_SIZE = 100

RuntimeValue = bool | int | str


def _as_bool(value: RuntimeValue | None, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):  # a static layer may spell booleans as strings
        return value.lower() == "true"
    return bool(value)


class EnvoyRuntime(Struct, frozen=True):
    """The static runtime layer of a proxy's bootstrap (no flags: Envoy's defaults)."""

    flags: tuple[tuple[str, RuntimeValue], ...] = ()

    @staticmethod
    def of(flags: Mapping[str, RuntimeValue]) -> EnvoyRuntime:
        return EnvoyRuntime(tuple(sorted(flags.items())))

    def get(self, key: str) -> RuntimeValue | None:
        return next((v for k, v in self.flags if k == key), None)

    @property
    def fragment(self) -> FragmentAction:
        """What the connection manager does with a ``#fragment`` in the request target."""
        if _as_bool(self.get(REJECT_FRAGMENT), True):
            return "reject"
        return "strip" if _as_bool(self.get(STRIP_FRAGMENT), True) else "keep"

    @property
    def re2_max_program_size(self) -> int:
        value = self.get(RE2_ERROR_LEVEL)
        return RE2_DEFAULT_MAX_PROGRAM_SIZE if value is None else int(value)

    def layered_runtime(self) -> dict[str, Any]:
        """The bootstrap's ``layered_runtime``: these flags as a static layer, then
        an admin layer (as istiod's bootstrap template has it)."""
        return {
            "layers": [
                {"name": "global config", "static_layer": dict(self.flags)},
                {"name": "admin", "admin_layer": {}},
            ]
        }


#: Envoy with no runtime flags set.
VANILLA = EnvoyRuntime()

__all__ = ["VANILLA", "EnvoyRuntime", "FragmentAction", "RuntimeValue"]

"""Envoy's ext_authz filters (HTTP and network): the model, its JSON, and when
the filter calls its authorization service.

The typed config is held as proto3 JSON (camelCase names, ``@type``
included): meshauthz writes it whole and reads back only what bears on a
decision: whether the filter calls the service at all
(``filter_enabled_metadata``, a metadata matcher on an earlier filter's
dynamic metadata) and what it does when the service fails
(``failure_mode_allow``). The service's own answer is not knowable offline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from msgspec import Struct

HTTP_EXT_AUTHZ_NAME = "envoy.filters.http.ext_authz"
NETWORK_EXT_AUTHZ_NAME = "envoy.filters.network.ext_authz"
HTTP_EXT_AUTHZ_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
NETWORK_EXT_AUTHZ_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz"
)


class ExtAuthzFilter(Struct, frozen=True):
    """An Envoy ext_authz filter (HTTP or network).

    ``typed_config`` holds the filter's typed config in proto3 JSON with
    camelCase names, ``@type`` included."""

    name: str
    typed_config: dict[str, Any]

    @classmethod
    def from_json(cls, typed_config: Mapping[str, Any], name: str | None = None) -> ExtAuthzFilter:
        """From a typed config in either spelling; the filter name follows ``@type``
        unless given."""
        tc = _camel_keys(typed_config)
        if name is None:
            name = (
                NETWORK_EXT_AUTHZ_NAME
                if tc.get("@type") == NETWORK_EXT_AUTHZ_TYPE
                else (HTTP_EXT_AUTHZ_NAME)
            )
        return cls(name, tc)

    @property
    def is_network(self) -> bool:
        return self.name == NETWORK_EXT_AUTHZ_NAME

    @property
    def failure_mode_allow(self) -> bool:
        return bool(self.typed_config.get("failureModeAllow", False))

    @property
    def metadata_filter(self) -> str:
        """The filter whose dynamic metadata ``filter_enabled_metadata`` reads."""
        return str(self.typed_config.get("filterEnabledMetadata", {}).get("filter", ""))

    @property
    def metadata_path(self) -> tuple[str, ...]:
        fem = self.typed_config.get("filterEnabledMetadata", {})
        return tuple(str(seg.get("key", "")) for seg in fem.get("path", ()))

    @property
    def metadata_prefix(self) -> str:
        """The prefix the metadata value must have for the service to be called."""
        fem = self.typed_config.get("filterEnabledMetadata", {})
        return str(fem.get("value", {}).get("stringMatch", {}).get("prefix", ""))

    def gate_value(self, metadata: Mapping[str, Any]) -> Any:
        """The dynamic metadata value ``filter_enabled_metadata`` looks at (None: absent),
        given the metadata so far (filter name -> its values)."""
        value: Any = metadata.get(self.metadata_filter)
        for key in self.metadata_path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    def calls_service(self, metadata: Mapping[str, Any]) -> bool:
        """Whether the filter calls its service, given the dynamic metadata so far.
        Only a string prefix gate is modelled."""
        if "filterEnabledMetadata" not in self.typed_config:
            return True
        value = self.gate_value(metadata)
        return isinstance(value, str) and value.startswith(self.metadata_prefix)

    def to_dict(self, style: Literal["camel", "snake"] = "camel") -> dict[str, Any]:
        tc = self.typed_config if style == "camel" else _snake_keys(self.typed_config)
        return {"name": self.name, "typedConfig" if style == "camel" else "typed_config": tc}


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


def _snake_keys(v: Any) -> Any:
    if isinstance(v, dict):
        return {
            (k if k.startswith("@") else re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower()): _snake_keys(
                x
            )
            for k, x in v.items()
        }
    if isinstance(v, list):
        return [_snake_keys(x) for x in v]
    return v

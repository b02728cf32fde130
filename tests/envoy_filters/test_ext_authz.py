"""Envoy's ext_authz filter model: its JSON and when it calls its service."""

from __future__ import annotations

from meshauthz.envoy.ext_authz import (
    HTTP_EXT_AUTHZ_NAME,
    HTTP_EXT_AUTHZ_TYPE,
    NETWORK_EXT_AUTHZ_NAME,
    NETWORK_EXT_AUTHZ_TYPE,
    ExtAuthzFilter,
)

SNAKE = {
    "@type": HTTP_EXT_AUTHZ_TYPE,
    "failure_mode_allow": True,
    "filter_enabled_metadata": {
        "filter": "envoy.filters.http.rbac",
        "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
        "value": {"string_match": {"prefix": "istio-ext-authz-p-"}},
    },
}


def test_reads_either_spelling_and_writes_both() -> None:
    flt = ExtAuthzFilter.from_json(SNAKE)
    assert flt.name == HTTP_EXT_AUTHZ_NAME and not flt.is_network
    assert flt.failure_mode_allow
    assert flt.metadata_filter == "envoy.filters.http.rbac"
    assert flt.metadata_path == ("istio_ext_authz_shadow_effective_policy_id",)
    assert flt.metadata_prefix == "istio-ext-authz-p-"
    assert flt.to_dict("snake") == {"name": HTTP_EXT_AUTHZ_NAME, "typed_config": SNAKE}
    camel = flt.to_dict("camel")["typedConfig"]
    assert camel["filterEnabledMetadata"]["value"] == {
        "stringMatch": {"prefix": "istio-ext-authz-p-"}
    }
    assert ExtAuthzFilter.from_json(camel) == flt
    net = ExtAuthzFilter.from_json({"@type": NETWORK_EXT_AUTHZ_TYPE})
    assert net.name == NETWORK_EXT_AUTHZ_NAME and net.is_network


def test_calls_the_service_only_when_the_metadata_gate_matches() -> None:
    flt = ExtAuthzFilter.from_json(SNAKE)
    key = "istio_ext_authz_shadow_effective_policy_id"
    marked = {"envoy.filters.http.rbac": {key: "istio-ext-authz-p-ns[a]-policy[b]-rule[0]"}}
    assert flt.calls_service(marked)
    assert not flt.calls_service({"envoy.filters.http.rbac": {key: "istio-ext-authz-q-x"}})
    assert not flt.calls_service({})
    # No gate: every request goes to the service.
    assert ExtAuthzFilter.from_json({"@type": HTTP_EXT_AUTHZ_TYPE}).calls_service({})

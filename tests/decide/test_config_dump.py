"""``check --config-dump``: decisions against a live proxy's Envoy config dump.

The dumps under ``fixtures/`` are the seed's backend sidecar as istiod
configures it (see ``config_dump_fixture.py``); a real Envoy accepts their
listener. ``istioctl-authz-configdump.json`` is a real sidecar's dump from
Istio's own test data (see ``fixtures/NOTICE``). The oracle for the decisions
is ``check -f`` on the same manifests: the dump holds the very filters that
meshauthz builds, so both must give the same answer.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from meshauthz.cli.main import main
from meshauthz.decide.config_dump import (
    ConfigDumpError,
    load_config_dump,
    parse_config_dump,
)
from meshauthz.envoy import jwt_authn
from meshauthz.envoy.rbac.serialize import parse_filter
from meshauthz.resources.istio import JWTRule
from meshauthz.translate.requestauthn import jwt_authentication
from tests.conftest import EXAMPLES
from tests.decide.config_dump_fixture import (
    FIXTURES,
    built_filters,
    fixture_path,
    make_dump,
    sds_cluster,
)
from tests.envoy_process import require_envoy

SEED = str(EXAMPLES / "seed")
FIXED = str(EXAMPLES / "seed-fixed")
ISTIOCTL_DUMP = FIXTURES / "istioctl-authz-configdump.json"
FRONTEND = "cluster.local/ns/default/sa/frontend"
BACKEND = "cluster.local/ns/default/sa/default"

# The seed's four bullet cases: (caller workload, its principal, method, path).
SEED_CASES = [
    ("default/frontend", FRONTEND, "GET", "/api/v1/data"),
    ("default/frontend", FRONTEND, "POST", "/api/v1/data"),
    ("default/frontend", FRONTEND, "GET", "/api/v1/other"),
    ("default/backend", BACKEND, "GET", "/api/v1/data"),
]
SAME = ("decision", "status", "stage", "policy", "rule", "envoyPolicy", "reason", "body")


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def check_json(capsys, *args: str) -> dict[str, Any]:
    code, out, err = run(capsys, "check", *args, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def write_dump(tmp_path: Path, dump: dict[str, Any], name: str = "dump.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(dump))
    return str(p)


def vi_chains(dump: dict[str, Any]) -> list[dict[str, Any]]:
    (listeners,) = [c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump")]
    return listeners["dynamic_listeners"][0]["active_state"]["listener"]["filter_chains"]


# ---------------------------------------------------------------- the fixtures


@pytest.mark.parametrize("example", ["seed", "seed-fixed"])
def test_fixtures_hold_what_meshauthz_builds(example):
    """The committed dumps are current: regenerate with
    ``python -m tests.decide.config_dump_fixture`` after a builder change."""
    assert json.loads(fixture_path(example).read_text()) == make_dump(example)


def test_fixture_filters_are_what_the_build_command_prints(capsys):
    code, out, _ = run(
        capsys, "build", "-f", SEED, "--workload", "default/backend", "--port", "80", "-o", "json"
    )
    assert code == 0
    printed = [parse_filter(f) for f in json.loads(out)]
    assert printed == [parse_filter(f) for f in built_filters("seed", "http")]


_ISTIO_ONLY = {"istio_authn", "istio.metadata_exchange", "istio.stats"}


def envoy_bootstrap(dump: dict[str, Any]) -> dict[str, Any]:
    """The dump's virtualInbound listener in a static bootstrap, without the
    filters that only Istio's proxy build has (upstream Envoy cannot load them)."""
    (boot,) = [c for c in dump["configs"] if c["@type"].endswith("BootstrapConfigDump")]
    (listeners,) = [c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump")]
    listener = copy.deepcopy(listeners["dynamic_listeners"][0]["active_state"]["listener"])
    listener.pop("@type")
    for chain in listener["filter_chains"]:
        chain["filters"] = [f for f in chain["filters"] if f["name"] not in _ISTIO_ONLY]
        for f in chain["filters"]:
            hf = f["typed_config"].get("http_filters")
            if hf is not None:
                f["typed_config"]["http_filters"] = [h for h in hf if h["name"] not in _ISTIO_ONLY]

    def cluster(name: str) -> dict[str, Any]:
        return {"name": name, "type": "STATIC", "connect_timeout": "1s"}

    return {
        "node": boot["bootstrap"]["node"],
        "static_resources": {
            "listeners": [listener],
            "clusters": [
                sds_cluster(),
                cluster("inbound|80||"),
                cluster("InboundPassthroughCluster"),
                cluster("BlackHoleCluster"),
            ],
        },
    }


@pytest.mark.parametrize("example", ["seed", "seed-fixed"])
def test_real_envoy_accepts_the_listener(tmp_path, example):
    envoy = require_envoy("Envoy's validation of the config dump listener")
    dump = make_dump(example)
    boot = tmp_path / "bootstrap.json"
    boot.write_text(json.dumps(envoy_bootstrap(dump)))
    res = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(boot), "-l", "warning"],
        capture_output=True,
        timeout=120,
    )
    text = (res.stdout + res.stderr).decode(errors="replace")
    assert res.returncode == 0, text[-3000:]
    assert "configuration" in text and "OK" in text
    # and the same listener, broken on purpose, is refused: validation is real
    bad = envoy_bootstrap(dump)
    chains = bad["static_resources"]["listeners"][0]["filter_chains"]
    chains[-1]["filter_chain_match"] = chains[-2]["filter_chain_match"]
    boot.write_text(json.dumps(bad))
    res = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(boot)], capture_output=True, timeout=120
    )
    assert res.returncode != 0
    assert b"has the same matching rules defined as" in res.stdout + res.stderr


# ---------------------------------------------------------------- the same decisions


@pytest.mark.parametrize("example", ["seed", "seed-fixed"])
@pytest.mark.parametrize(("caller", "principal", "method", "path"), SEED_CASES)
def test_config_dump_decides_as_the_manifests(capsys, example, caller, principal, method, path):
    manifests = SEED if example == "seed" else FIXED
    req = ["--method", method, "--path", path]
    want = check_json(capsys, "-f", manifests, "--from", caller, "--to", "default/backend", *req)
    dump = str(fixture_path(example))
    # the caller from the manifests, the destination from the dump
    got = check_json(
        capsys,
        "--config-dump",
        dump,
        "-f",
        manifests,
        "--from",
        caller,
        "--to",
        "default/backend",
        *req,
    )
    # no manifests at all: the caller by identity, the destination by port
    bare = check_json(capsys, "--config-dump", dump, "--principal", principal, "--to", ":80", *req)
    for d in (got, bare):
        assert {k: d[k] for k in SAME} == {k: want[k] for k in SAME}
        assert d["configDump"]["filterChain"] == "0.0.0.0_80"
        assert d["configDump"]["transportProtocol"] == "tls"
        assert d["configDump"]["mtls"] == "mTLS"
        assert d["request"]["to"] == "default/backend-6d5f7c9b8-x2x7q"
    if example == "seed":  # Istio's truth for every bullet: the empty DENY rule
        assert (want["decision"], want["stage"], want["policy"]) == (
            "DENY",
            "DENY",
            "default/deny-all-backend",
        )
        assert "the rule is empty" in bare["reason"]


@pytest.mark.parametrize("example", ["seed", "seed-fixed"])
@pytest.mark.parametrize("path", ["/api/v1/data", "/api/v1/other"])
def test_plaintext_caller_lands_on_the_raw_buffer_chain(capsys, example, path):
    manifests = SEED if example == "seed" else FIXED
    want = check_json(
        capsys, "-f", manifests, "--plaintext", "--to", "default/backend", "--path", path
    )
    got = check_json(
        capsys,
        "--config-dump",
        str(fixture_path(example)),
        "--plaintext",
        "--port",
        "80",
        "--path",
        path,
    )
    assert {k: got[k] for k in SAME} == {k: want[k] for k in SAME}
    assert got["configDump"]["transportProtocol"] == "raw_buffer"
    assert got["configDump"]["mtls"] == "plaintext"


def test_request_file_against_a_dump(capsys, tmp_path):
    reqs = tmp_path / "reqs.yaml"
    reqs.write_text(
        "- {from: {principal: cluster.local/ns/default/sa/frontend}, to: default/backend:80,"
        " path: /api/v1/data}\n"
        "- {from: {principal: cluster.local/ns/default/sa/frontend}, to: default/backend:80,"
        " method: POST, path: /api/v1/data}\n"
    )
    code, out, _ = run(
        capsys,
        "check",
        "--config-dump",
        str(fixture_path("seed-fixed")),
        "--request",
        str(reqs),
        "-o",
        "json",
    )
    docs = json.loads(out)
    assert code == 0 and [d["decision"] for d in docs] == ["ALLOW", "DENY"]
    assert docs[1]["stage"] == "ALLOW" and docs[1]["reason"].startswith("denied: no rule")


def test_text_output_names_the_chain(capsys):
    code, out, _ = run(
        capsys,
        "check",
        "--config-dump",
        str(fixture_path("seed-fixed")),
        "--principal",
        FRONTEND,
        "--to",
        ":80",
        "--path",
        "/api/v1/data",
        "--expect",
        "allow",
    )
    assert code == 0
    assert out.splitlines()[0] == (
        "ALLOW (200) GET /api/v1/data from cluster.local/ns/default/sa/frontend "
        "to default/backend-6d5f7c9b8-x2x7q port 80 (Host: backend)"
    )
    assert (
        "  config dump: listener virtualInbound, filter chain 0.0.0.0_80 "
        "(HTTP, mTLS, path normalization BASE)"
    ) in out


def test_camel_case_dump_gives_the_same_decision(capsys, tmp_path):
    def camel(v: Any, under: str = "") -> Any:
        if isinstance(v, dict):
            return {
                (
                    k
                    if under in ("policies", "LABELS", "metadata") or k.startswith("@")
                    else re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), k)
                ): camel(x, k)
                for k, x in v.items()
            }
        if isinstance(v, list):
            return [camel(x, under) for x in v]
        return v

    dump = camel(make_dump("seed-fixed"))
    listener = dump["configs"][1]["dynamicListeners"][0]["activeState"]["listener"]
    assert "filterChainMatch" in listener["filterChains"][-1]
    path = write_dump(tmp_path, dump)
    for method, want in (("GET", "ALLOW"), ("POST", "DENY")):
        d = check_json(
            capsys,
            "--config-dump",
            path,
            "--principal",
            FRONTEND,
            "--to",
            ":80",
            "--method",
            method,
            "--path",
            "/api/v1/data",
        )
        assert d["decision"] == want and d["configDump"]["filterChain"] == "0.0.0.0_80"


def test_port_without_its_own_chain_uses_the_passthrough_chains(capsys):
    dump = str(fixture_path("seed-fixed"))
    http = check_json(
        capsys,
        "--config-dump",
        dump,
        "--principal",
        FRONTEND,
        "--to",
        ":8080",
        "--path",
        "/api/v1/data",
    )
    assert http["decision"] == "ALLOW"
    assert http["configDump"]["filterChain"] == "virtualInbound-catchall-http"
    assert http["configDump"]["passthrough"] is True
    plain = check_json(capsys, "--config-dump", dump, "--plaintext", "--to", ":8080")
    assert plain["configDump"]["filterChain"] == "virtualInbound-catchall-http"
    assert plain["configDump"]["transportProtocol"] == "raw_buffer"
    tcp = check_json(
        capsys, "--config-dump", dump, "--principal", FRONTEND, "--to", ":5432", "--protocol", "tcp"
    )
    # a TCP connection: the ALLOW rule needs HTTP fields, so istiod drops it on
    # the TCP chain and only the rule-less policy is left
    assert (tcp["decision"], tcp["status"], tcp["stage"]) == ("DENY", "connection reset", "ALLOW")
    assert tcp["configDump"]["filterChain"] == "virtualInbound"
    assert tcp["configDump"]["protocol"] == "tcp"


def test_strict_port_resets_a_plaintext_caller(capsys, tmp_path):
    dump = make_dump("seed-fixed")
    chains = vi_chains(dump)
    chains[:] = [
        c
        for c in chains
        if c["filter_chain_match"].get("transport_protocol") != "raw_buffer"
        or c["name"] == "virtualInbound-blackhole"
    ]
    path = write_dump(tmp_path, dump)
    d = check_json(capsys, "--config-dump", path, "--plaintext", "--to", ":80")
    assert (d["decision"], d["status"], d["stage"]) == ("DENY", "connection reset", "mTLS")
    assert d["configDump"]["mtls"] == "mTLS required"
    ok = check_json(
        capsys,
        "--config-dump",
        path,
        "--principal",
        FRONTEND,
        "--to",
        ":80",
        "--path",
        "/api/v1/data",
    )
    assert ok["decision"] == "ALLOW"


def test_disabled_port_hides_the_callers_identity(capsys, tmp_path):
    dump = make_dump("seed-fixed")
    chains = vi_chains(dump)
    chains[:] = [c for c in chains if c["filter_chain_match"].get("transport_protocol") != "tls"]
    path = write_dump(tmp_path, dump)
    d = check_json(
        capsys,
        "--config-dump",
        path,
        "--principal",
        FRONTEND,
        "--to",
        ":80",
        "--path",
        "/api/v1/data",
    )
    assert (d["decision"], d["stage"]) == ("DENY", "ALLOW")
    assert d["configDump"]["mtls"] == "mTLS disabled"
    assert any(t["stage"] == "mTLS" for t in d["trace"])


def test_path_normalization_comes_from_the_hcm(capsys, tmp_path):
    dump = make_dump("seed-fixed")
    for c in vi_chains(dump):
        for f in c["filters"]:
            if f["name"] == "envoy.filters.network.http_connection_manager":
                f["typed_config"]["merge_slashes"] = True
    path = write_dump(tmp_path, dump)
    args = ["--principal", FRONTEND, "--to", ":80", "--path", "//api/v1//data"]
    base = check_json(capsys, "--config-dump", str(fixture_path("seed-fixed")), *args)
    merged = check_json(capsys, "--config-dump", path, *args)
    assert base["decision"] == "DENY"
    assert merged["decision"] == "ALLOW"
    assert merged["configDump"]["pathNormalization"] == "MERGE_SLASHES"


def test_xff_settings_and_path_options_come_from_the_hcm(tmp_path):
    from meshauthz.decide.request import Request
    from meshauthz.envoy.hcm import PathOptions, XffSettings

    dump = make_dump("seed-fixed")
    for c in vi_chains(dump):
        for f in c["filters"]:
            if f["name"] == "envoy.filters.network.http_connection_manager":
                f["typed_config"]["use_remote_address"] = True
                f["typed_config"]["xff_num_trusted_hops"] = 2
    loaded = load_config_dump(write_dump(tmp_path, dump))
    r = Request(
        destination=loaded.workload,
        port=80,
        protocol="http",
        source_principal="cluster.local/ns/default/sa/frontend",
        source_namespace=None,
        source_ip="10.0.0.9",
        remote_ip=None,
    )
    p = loaded.chain_for(r, None).prepared
    assert p.xff == XffSettings(use_remote_address=True, xff_num_trusted_hops=2)
    assert p.path_options == PathOptions(True, False, "KEEP_UNCHANGED")


def test_path_options_outside_istiods_modes_are_refused(capsys, tmp_path):
    # The real-Envoy path corpus covers istiod's four modes only.
    dump = make_dump("seed-fixed")
    for c in vi_chains(dump):
        for f in c["filters"]:
            if f["name"] == "envoy.filters.network.http_connection_manager":
                f["typed_config"]["path_with_escaped_slashes_action"] = "REJECT_REQUEST"
    path = write_dump(tmp_path, dump)
    code, _, err = run(
        capsys, "check", "--config-dump", path, "--principal", FRONTEND, "--to", ":80"
    )
    assert code == 2 and "none of istiod's pathNormalization modes" in err


def test_jwt_filter_in_the_dump(capsys, tmp_path):
    """A jwt_authn filter written as istiod writes it (``convertToEnvoyJwtConfig``:
    one provider ``origins-0``, requires_any {provider, allow_missing})."""
    jwks = json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "k"}]})
    jwt_filter = {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                "origins-0": {
                    "issuer": "https://issuer.example",
                    "audiences": ["backend"],
                    "local_jwks": {"inline_string": jwks},
                    "payload_in_metadata": "payload",
                    "normalize_payload_in_metadata": {
                        "space_delimited_claims": ["scope", "permission"]
                    },
                }
            },
            "rules": [
                {
                    "match": {"prefix": "/"},
                    "requires": {
                        "requires_any": {
                            "requirements": [{"provider_name": "origins-0"}, {"allow_missing": {}}]
                        }
                    },
                }
            ],
            "bypass_cors_preflight": True,
        },
    }
    dump = make_dump("seed-fixed")
    for c in vi_chains(dump):
        for f in c["filters"]:
            hf = f.get("typed_config", {}).get("http_filters")
            if hf is not None:
                hf.insert(1, jwt_filter)
    path = write_dump(tmp_path, dump)
    args = ["--config-dump", path, "--principal", FRONTEND, "--to", ":80", "--path", "/api/v1/data"]
    wrong = check_json(
        capsys, *args, "--jwt-claims", '{"iss": "https://other.example", "sub": "a"}'
    )
    assert (wrong["decision"], wrong["status"], wrong["stage"]) == ("DENY", 401, "JWT")
    assert wrong["body"] == "Jwt issuer is not configured"
    aud = check_json(
        capsys, *args, "--jwt-claims", '{"iss": "https://issuer.example", "sub": "a", "aud": "x"}'
    )
    assert (aud["status"], aud["body"]) == (403, "Audiences in Jwt are not allowed")
    good = check_json(
        capsys,
        *args,
        "--jwt-claims",
        '{"iss": "https://issuer.example", "sub": "a", "aud": "backend"}',
    )
    assert good["decision"] == "ALLOW"
    assert any(t["stage"] == "JWT" and "accepted" in t["message"] for t in good["trace"])


def test_jwt_filter_read_from_a_dump_equals_the_one_built_from_the_request_authentication():
    """istiod's JSON for two rules with jwksUri (remote JWKS through a cluster)
    reads back as the filter meshauthz builds from the RequestAuthentication."""
    rules = [
        msgspec.convert(
            {
                "issuer": "b",
                "jwksUri": "https://b.example/jwks",
                "fromHeaders": [{"name": "X-Jwt", "prefix": "T "}],
                "forwardOriginalToken": True,
            },
            JWTRule,
        ),
        msgspec.convert(
            {"issuer": "a", "jwksUri": "https://a.example/jwks", "audiences": ["x"]}, JWTRule
        ),
    ]
    built = jwt_authentication(rules)
    assert built is not None

    def any_of(name: str) -> dict[str, Any]:
        return {"requires_any": {"requirements": [{"provider_name": name}, {"allow_missing": {}}]}}

    config = {
        "providers": {
            "origins-1": {
                "issuer": "b",
                "remote_jwks": {
                    "http_uri": {
                        "uri": "https://b.example/jwks",
                        "cluster": "outbound|443||b.example",
                        "timeout": "5s",
                    }
                },
                "forward": True,
                "from_headers": [{"name": "X-Jwt", "value_prefix": "T "}],
                "payload_in_metadata": "payload",
                "normalize_payload_in_metadata": {
                    "space_delimited_claims": ["permission", "scope"]
                },
            },
            "origins-0": {
                "issuer": "a",
                "audiences": ["x"],
                "remoteJwks": {"httpUri": {"uri": "https://a.example/jwks"}},
                "payloadInMetadata": "payload",
                "normalizePayloadInMetadata": {"spaceDelimitedClaims": ["permission", "scope"]},
            },
        },
        "rules": [
            {
                "match": {"prefix": "/"},
                "requires": {
                    "requires_any": {
                        "requirements": [
                            {"provider_name": "origins-0"},
                            {"provider_name": "origins-1"},
                            {
                                "requires_all": {
                                    "requirements": [any_of("origins-0"), any_of("origins-1")]
                                }
                            },
                        ]
                    }
                },
            }
        ],
        "bypass_cors_preflight": True,
    }
    read = jwt_authn.from_json(config)
    assert read.rules == built.rules and read.bypass_cors_preflight
    for name in ("origins-0", "origins-1"):
        got, want = read.provider(name), built.provider(name)
        assert got is not None and want is not None and got.remote_jwks is not None
        assert got == msgspec.structs.replace(want, remote_jwks=got.remote_jwks)
        assert got.remote_jwks.uri == want.jwks_location


def test_jwt_filter_the_evaluator_does_not_model_is_refused(capsys, tmp_path):
    dump = make_dump("seed-fixed")
    jwt_filter = {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"p": {"issuer": "i", "local_jwks": {"inline_string": "{}"}}},
            "rules": [
                {
                    "match": {"prefix": "/"},
                    "requires": {
                        "requires_any": {
                            "requirements": [
                                {"provider_name": "p"},
                                {"allow_missing_or_failed": {}},
                            ]
                        }
                    },
                }
            ],
        },
    }
    for c in vi_chains(dump):
        for f in c["filters"]:
            hf = f.get("typed_config", {}).get("http_filters")
            if hf is not None:
                hf.insert(1, jwt_filter)
    path = write_dump(tmp_path, dump)
    code, _, err = run(
        capsys, "check", "--config-dump", path, "--principal", FRONTEND, "--to", ":80"
    )
    assert code == 2
    assert "jwt_authn filter: allow_missing_or_failed is not supported" in err


# ---------------------------------------------------------------- errors


def test_no_listener_for_the_port(capsys, tmp_path):
    dump = make_dump("seed")
    (listeners,) = [c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump")]
    listeners["dynamic_listeners"] = []
    listeners["static_listeners"] = [
        {
            "listener": {
                "name": "0.0.0.0_15021",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15021}},
                "filter_chains": [{"filters": []}],
            }
        }
    ]
    path = write_dump(tmp_path, dump)
    code, out, err = run(capsys, "check", "--config-dump", path, "--plaintext", "--to", ":8080")
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: port: no inbound listener for port 8080")
    assert "listeners present: 0.0.0.0_15021" in err
    code, out, _ = run(
        capsys, "check", "--config-dump", path, "--plaintext", "--to", ":8080", "-o", "json"
    )
    e = json.loads(out)["error"]
    assert code == 2 and e["file"] == path and "port 8080" in e["message"]


def test_no_filter_chain_for_the_port(capsys, tmp_path):
    dump = make_dump("seed")
    chains = vi_chains(dump)
    chains[:] = [c for c in chains if c["filter_chain_match"].get("destination_port") == 80]
    path = write_dump(tmp_path, dump)
    code, _, err = run(capsys, "check", "--config-dump", path, "--plaintext", "--to", ":8080")
    assert code == 2
    assert "no filter chain of listener virtualInbound accepts a connection to port 8080" in err
    assert "0.0.0.0_80 (port 80, tls, alpn istio/" in err


def test_malformed_json_names_file_and_line(capsys, tmp_path):
    p = tmp_path / "dump.json"
    p.write_text('{\n  "configs": [\n    {"@type": "x",}\n  ]\n}\n')
    code, _, err = run(capsys, "check", "--config-dump", str(p), "--plaintext", "--to", ":80")
    assert code == 2
    assert err.startswith(f"error: {p}:3:") and "not valid JSON" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"hello": 1}', 'not an Envoy config dump: expected an object with a "configs" list'),
        ('{"configs": []}', "holds no listeners"),
    ],
)
def test_not_a_config_dump(tmp_path, content, message):
    p = tmp_path / "d.json"
    p.write_text(content)
    with pytest.raises(ConfigDumpError, match=re.escape(message)):
        load_config_dump(str(p))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plaintext"], "give the port"),
        (["--plaintext", "--to", ":http"], "--to :PORT expects a port number"),
        (["--plaintext", "--to", ":80", "--port", "80"], "give the port once"),
        (["--from", "default/frontend", "--to", ":80"], "give the manifests that define it"),
    ],
)
def test_bad_flags_with_a_dump(capsys, args, message):
    code, _, err = run(capsys, "check", "--config-dump", str(fixture_path("seed")), *args)
    assert code == 2 and message in err


def test_manifests_are_still_required_without_a_dump(capsys):
    code, _, err = run(capsys, "check", "--plaintext", "--to", "default/backend")
    assert code == 2 and "Missing option '-f'" in err


def test_rbac_error_in_the_dump_names_the_filter(capsys, tmp_path):
    dump = make_dump("seed")
    for c in vi_chains(dump):
        for f in c["filters"]:
            for h in f.get("typed_config", {}).get("http_filters", []):
                if h["name"] == "envoy.filters.http.rbac":
                    h["typed_config"]["rules"]["action"] = "MAYBE"
    path = write_dump(tmp_path, dump)
    code, _, err = run(capsys, "check", "--config-dump", path, "--plaintext", "--to", ":80")
    assert code == 2
    assert "http_filters[1].typed_config.rules.action" in err and "unknown action" in err


# ---------------------------------------------------------------- a real Istio dump


def test_istioctl_config_dump_from_istio():
    """Istio's own sidecar dump (istioctl authz test data): snake_case, an older
    filter order (ALLOW before the CUSTOM pair), passthrough chains, no bootstrap."""
    from meshauthz.decide.request import Request

    dump = load_config_dump(str(ISTIOCTL_DUMP))
    assert "virtualInbound" in dump.listener_names
    assert dump.workload.key == "unknown/config-dump"

    def chain(principal: str | None, port: int, protocol: str = "http"):
        r = Request(
            destination=dump.workload,
            port=port,
            protocol=protocol,  # type: ignore[arg-type]
            source_principal=principal,
            source_namespace=None,
            source_ip="10.0.0.9",
            remote_ip="10.0.0.9",
        )
        return dump.chain_for(r, None)

    mtls = chain("cluster.local/ns/default/sa/sleep", 80)
    assert (mtls.info.chain, mtls.info.transport, mtls.info.passthrough) == (
        "0.0.0.0_80",
        "tls",
        False,
    )
    p = mtls.prepared
    stages = [s.built.stage for s in (*p.custom, *p.rest)]
    assert stages == ["ALLOW", "CUSTOM", "CUSTOM"]
    allow = p.rest[0].built
    assert allow.sources == {"ns[default]-policy[httpbin]-rule[0]": ("default/httpbin", 0)}
    marker = p.rest[1].built
    assert marker.sources == {
        "istio-ext-authz-ns[default]-policy[ext-authz]-rule[0]": ("default/ext-authz", 0)
    }
    assert p.normalization == "BASE"
    plain = chain(None, 80)
    assert (plain.info.chain, plain.info.transport) == ("0.0.0.0_80", "raw_buffer")
    other = chain(None, 9999, "tcp")
    assert (other.info.chain, other.info.protocol, other.info.passthrough) == (
        "virtualInbound",
        "tcp",
        True,
    )


def test_parse_rejects_non_dump_shapes():
    with pytest.raises(ConfigDumpError):
        parse_config_dump([1, 2, 3], "x.json")


def test_rbac_filter_delivered_by_ecds(capsys, tmp_path):
    dump = make_dump("seed")
    ecds = []
    for i, c in enumerate(vi_chains(dump)):
        for f in c["filters"]:
            for h in f.get("typed_config", {}).get("http_filters", []):
                if h["name"] == "envoy.filters.http.rbac" and "DENY" in json.dumps(h):
                    name = f"deny-{i}"
                    ecds.append(
                        {"ecds_filter": {"name": name, "typed_config": h.pop("typed_config")}}
                    )
                    h["name"] = name
                    h["config_discovery"] = {"config_source": {"ads": {}}, "type_urls": []}
    dump["configs"].append(
        {"@type": "type.googleapis.com/envoy.admin.v3.EcdsConfigDump", "ecds_filters": ecds}
    )
    path = write_dump(tmp_path, dump)
    d = check_json(capsys, "--config-dump", path, "--principal", FRONTEND, "--to", ":80")
    assert (d["decision"], d["stage"], d["policy"]) == ("DENY", "DENY", "default/deny-all-backend")

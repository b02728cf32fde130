"""``check --config-dump``: per-route RBAC overrides, and filters that are not evaluated.

The dump is a small inbound listener written here (``fixtures/per-route.config_dump.json``
is the one with a Lua filter, as the README shows it; regenerate it with
``python -m tests.decide.test_config_dump_per_route``); the same listener runs
in a real Envoy 1.40, and every request's status there is recorded below and
compared with ``check``'s (``test_real_envoy_agrees``).
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from meshauthz.cli.main import main
from meshauthz.decide.config_dump import ConfigDumpError, parse_config_dump, resolve_for_dump
from meshauthz.decide.request_spec import request_from_data
from meshauthz.envoy.route import RouteUnresolved, choose_route
from tests.envoy_process import EnvoyProcess, free_port, require_envoy

RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
FILTER_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
RBAC = "envoy.filters.http.rbac"


def header_policy(action: str, header: str) -> dict[str, Any]:
    """An RBAC config whose one policy matches requests carrying ``header: 1``."""
    return {
        "rules": {
            "action": action,
            "policies": {
                f"{action.lower()}-{header}": {
                    "permissions": [{"header": {"name": header, "string_match": {"exact": "1"}}}],
                    "principals": [{"any": True}],
                }
            },
        }
    }


def rbac_filter(config: dict[str, Any]) -> dict[str, Any]:
    return {"name": RBAC, "typed_config": {"@type": RBAC_TYPE, **config}}


def per_route(config: dict[str, Any] | None) -> dict[str, Any]:
    return {RBAC: {"@type": PER_ROUTE_TYPE, **({"rbac": config} if config is not None else {})}}


def route(name: str, match: dict[str, Any], tpfc: dict[str, Any] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"name": name, "match": match, "direct_response": {"status": 200}}
    if tpfc is not None:
        r["typed_per_filter_config"] = tpfc
    return r


def route_config() -> dict[str, Any]:
    return {
        "name": "inbound",
        "virtual_hosts": [
            {
                # a virtual host's override, for every route it has
                "name": "vh-a",
                "domains": ["a.example", "*.a.example", "apre.*"],
                "typed_per_filter_config": per_route(header_policy("DENY", "x-a")),
                "routes": [
                    route("a-own", {"prefix": "/own"}, per_route(header_policy("DENY", "x-o"))),
                    route("a-rest", {"prefix": "/"}),
                ],
            },
            {
                "name": "vh-default",
                "domains": ["*"],
                "routes": [
                    route("over", {"prefix": "/over"}, per_route(header_policy("DENY", "x-o"))),
                    route("off", {"path": "/off"}, per_route(None)),
                    route(
                        "fc-off",
                        {"prefix": "/fcoff"},
                        {RBAC: {"@type": FILTER_CONFIG_TYPE, "disabled": True}},
                    ),
                    route(
                        "re",
                        {"safe_regex": {"regex": "/re/[0-9]+"}},
                        per_route(header_policy("ALLOW", "x-a")),
                    ),
                    route(
                        "ci",
                        {"prefix": "/CI", "case_sensitive": False},
                        per_route(header_policy("DENY", "x-o")),
                    ),
                    route("psp", {"path_separated_prefix": "/psp"}, per_route(None)),
                    route(
                        "en",
                        {"prefix": "/en"},
                        {"rbac-off": per_route(header_policy("DENY", "x-e"))[RBAC]},
                    ),
                    route("rest", {"prefix": "/"}),
                ],
            },
        ],
    }


def listener(port: int, *, lua: bool = False) -> dict[str, Any]:
    """Two RBAC filters of the same name (as istiod writes them): DENY x-d, ALLOW
    x-allow; and one that is off unless a route turns it on: DENY x-z."""
    http_filters = [
        rbac_filter(header_policy("DENY", "x-d")),
        rbac_filter(header_policy("ALLOW", "x-allow")),
        {**rbac_filter(header_policy("DENY", "x-z")), "name": "rbac-off", "disabled": True},
        {
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
            },
        },
    ]
    if lua:
        code = (
            "function envoy_on_request(h) if h:headers():get(':path') == '/lua' then "
            "h:respond({[':status'] = '403'}, 'lua') end end"
        )
        http_filters.insert(
            0,
            {
                "name": "envoy.filters.http.lua",
                "typed_config": {"@type": LUA_TYPE, "default_source_code": {"inline_string": code}},
            },
        )
    return {
        "name": "inbound-test",
        "traffic_direction": "INBOUND",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "t",
                            "route_config": route_config(),
                            "http_filters": http_filters,
                        },
                    }
                ]
            }
        ],
    }


def dump_of(lis: dict[str, Any]) -> dict[str, Any]:
    return {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": {
                    "node": {
                        "id": "sidecar~10.0.0.7~api-0.default~default.svc.cluster.local",
                        "metadata": {"NAME": "api-0", "NAMESPACE": "default"},
                    }
                },
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "dynamic_listeners": [{"name": lis["name"], "active_state": {"listener": lis}}],
            },
        ]
    }


FIXTURE = Path(__file__).parent / "fixtures" / "per-route.config_dump.json"


def fixture_dump() -> dict[str, Any]:
    return dump_of(listener(15006, lua=True))


def test_the_fixture_is_current():
    assert json.loads(FIXTURE.read_text()) == fixture_dump()


# (name, host, path, headers, Envoy 1.40's status). The override replaces the
# configuration of every RBAC filter of that name (the ALLOW x-allow filter
# too); an RBACPerRoute without rbac, or a FilterConfig with disabled, turns
# them off; the route's override wins over its virtual host's.
CASES: list[tuple[str, str, str, dict[str, str], int]] = [
    ("no-override-denied", "b.example", "/x", {"x-allow": "1", "x-d": "1"}, 403),
    ("no-override-allowed", "b.example", "/x", {"x-allow": "1"}, 200),
    ("no-override-not-allowed", "b.example", "/x", {}, 403),
    ("override-replaces-both", "b.example", "/over", {}, 200),
    ("override-ignores-filter-deny", "b.example", "/over", {"x-d": "1"}, 200),
    ("override-denies", "b.example", "/over/y", {"x-o": "1", "x-allow": "1"}, 403),
    ("rbac-per-route-without-rbac", "b.example", "/off", {"x-d": "1"}, 200),
    ("exact-path-only", "b.example", "/off/x", {}, 403),
    ("filter-config-disabled", "b.example", "/fcoff", {"x-d": "1"}, 200),
    ("regex-allow-matches", "b.example", "/re/12", {"x-a": "1"}, 200),
    ("regex-allow-misses", "b.example", "/re/12", {"x-allow": "1"}, 403),
    ("regex-is-a-full-match", "b.example", "/re/12x", {"x-allow": "1"}, 200),
    ("regex-ignores-the-query", "b.example", "/re/12?q=1", {"x-a": "1"}, 200),
    ("case-insensitive-prefix", "b.example", "/ci/x", {"x-o": "1", "x-allow": "1"}, 403),
    ("virtual-host-override", "a.example", "/x", {"x-a": "1", "x-allow": "1"}, 403),
    ("virtual-host-override-allows", "a.example", "/x", {"x-d": "1"}, 200),
    ("route-beats-virtual-host", "a.example", "/own", {"x-a": "1"}, 200),
    ("host-is-case-insensitive", "A.Example", "/x", {"x-a": "1"}, 403),
    ("wildcard-domain", "w.a.example", "/x", {"x-a": "1"}, 403),
    ("prefix-wildcard-domain", "apre.x", "/x", {"x-a": "1"}, 403),
    ("path-separated-prefix", "b.example", "/psp/x", {"x-d": "1"}, 200),
    ("path-separated-prefix-whole", "b.example", "/psp?q", {"x-d": "1"}, 200),
    ("path-separated-prefix-not-a-segment", "b.example", "/pspx", {"x-d": "1"}, 403),
    ("disabled-filter-does-not-run", "b.example", "/x", {"x-z": "1", "x-allow": "1"}, 200),
    ("route-configures-a-disabled-filter", "b.example", "/en", {"x-e": "1", "x-allow": "1"}, 403),
    ("its-own-config-is-replaced", "b.example", "/en", {"x-z": "1", "x-allow": "1"}, 200),
    ("host-with-port-is-another-domain", "a.example:80", "/x", {"x-a": "1", "x-allow": "1"}, 200),
]


def run(capsys: Any, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def check(
    capsys: Any, dump: str, port: int, host: str, path: str, headers: dict[str, str], *extra: str
) -> tuple[int, dict[str, Any]]:
    hs = [x for k, v in headers.items() for x in ("-H", f"{k}: {v}")]
    code, out, err = run(
        capsys,
        "check",
        "--config-dump",
        dump,
        "--plaintext",
        "--to",
        f":{port}",
        "--host",
        host,
        "--path",
        path,
        *hs,
        "-o",
        "json",
        *extra,
    )
    assert code in (0, 1), err
    return code, json.loads(out)


def write(tmp_path: Path, doc: dict[str, Any], name: str = "dump.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


@pytest.mark.parametrize(
    ("host", "path", "headers", "status"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_per_route_rbac_overrides(capsys, tmp_path, host, path, headers, status):
    dump = write(tmp_path, dump_of(listener(15006)))
    _, d = check(capsys, dump, 15006, host, path, headers)
    assert d["status"] == status
    assert d["conditionalOn"] == []


def test_the_route_is_shown(capsys, tmp_path):
    dump = write(tmp_path, dump_of(listener(15006)))
    _, d = check(capsys, dump, 15006, "b.example", "/off", {})
    assert d["configDump"]["route"] == "virtual host vh-default, route off"
    assert d["configDump"]["perRoute"] == [f"{RBAC} disabled"]
    _, d = check(capsys, dump, 15006, "b.example", "/x", {})
    assert (d["configDump"]["route"], d["configDump"]["perRoute"]) == (None, [])
    code, out, _ = run(
        capsys, "check", "--config-dump", dump, "--plaintext", "--to", ":15006", "--path", "/over"
    )
    assert code == 0
    assert f"per-route configuration of virtual host vh-default, route over: {RBAC} replaced" in out


def test_real_envoy_agrees(capsys, tmp_path):
    exe = require_envoy("per-route RBAC against a real Envoy")
    port, admin = free_port(), free_port()
    lis = listener(port, lua=True)
    dump = write(tmp_path, dump_of(lis))
    proc = EnvoyProcess(exe, tmp_path)
    proc.start(
        {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": [lis]},
        },
        admin,
    )
    try:
        for name, host, path, headers, status in [
            *CASES,
            ("lua-answers-first", "b.example", "/lua", {"x-allow": "1"}, 403),
        ]:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path, headers={"Host": host, **headers})
            seen = c.getresponse().status
            c.close()
            assert seen == status, name
            _, d = check(capsys, dump, port, host, path, headers)
            if name == "lua-answers-first":
                # Envoy's Lua filter answered 403 itself; check does not run it,
                # so its ALLOW is conditional on that filter.
                assert (d["decision"], d["conditionalOn"]) == ("ALLOW", ["envoy.filters.http.lua"])
            else:
                assert d["status"] == status, name
    finally:
        proc.stop()


# ------------------------------------------------------------- conditional answers


def test_a_filter_not_evaluated_makes_the_answer_conditional(capsys, tmp_path):
    dump = write(tmp_path, dump_of(listener(15006, lua=True)))
    code, d = check(capsys, dump, 15006, "b.example", "/x", {"x-allow": "1"}, "--expect", "allow")
    assert (d["decision"], d["status"]) == ("ALLOW", 200)
    assert d["conditionalOn"] == ["envoy.filters.http.lua"]
    assert code == 1  # a conditional ALLOW does not meet --expect allow
    # A denial by a filter after the Lua filter is conditional too (Lua could
    # have answered first or changed the request); it does not meet --expect deny.
    code, d = check(capsys, dump, 15006, "b.example", "/x", {"x-d": "1"}, "--expect", "deny")
    assert (d["decision"], d["conditionalOn"], code) == ("DENY", ["envoy.filters.http.lua"], 1)
    code, out, _ = run(
        capsys,
        "check",
        "--config-dump",
        dump,
        "--plaintext",
        "--to",
        ":15006",
        "-H",
        "x-allow: 1",
    )
    lines = out.splitlines()
    assert lines[0].startswith("CONDITIONAL ALLOW (200) GET / from a plaintext caller")
    assert lines[2] == (
        "  conditional: envoy.filters.http.lua runs before the point of decision and is not "
        "evaluated by meshauthz; it could answer the request itself or change it, so the "
        "answer holds only if it lets the request through unchanged"
    )
    assert "not evaluated: envoy.filters.http.lua" in lines[3]


def test_filters_after_the_deciding_one_do_not_make_a_denial_conditional(capsys, tmp_path):
    lis = listener(15006)
    hf = lis["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    lua = {"name": "envoy.filters.http.lua", "typed_config": {"@type": LUA_TYPE}}
    hf.insert(1, lua)  # after the DENY filter, before the ALLOW filter
    dump = write(tmp_path, dump_of(lis))
    code, d = check(capsys, dump, 15006, "b.example", "/x", {"x-d": "1"}, "--expect", "deny")
    assert (d["decision"], d["conditionalOn"], code) == ("DENY", [], 0)
    _, d = check(capsys, dump, 15006, "b.example", "/x", {})  # denied by the ALLOW filter
    assert (d["decision"], d["conditionalOn"]) == ("DENY", ["envoy.filters.http.lua"])
    _, d = check(capsys, dump, 15006, "b.example", "/x", {"x-allow": "1"})
    assert (d["decision"], d["conditionalOn"]) == ("ALLOW", ["envoy.filters.http.lua"])


def test_a_filter_before_authorization_filters_turned_off_on_the_route_still_counts(
    capsys, tmp_path
):
    # /off turns the RBAC filters off; the Lua filter still runs before where they
    # stand, and nothing else decides: the ALLOW is conditional on it.
    dump = write(tmp_path, dump_of(listener(15006, lua=True)))
    _, d = check(capsys, dump, 15006, "b.example", "/off", {})
    assert (d["decision"], d["conditionalOn"]) == ("ALLOW", ["envoy.filters.http.lua"])
    assert d["reason"] == (
        "allowed: no DENY policy matched and no ALLOW policy applies to this workload"
    )
    _, d = check(capsys, dump, 15006, "b.example", "/x", {"x-allow": "1"})
    assert d["reason"] == "allowed by the ALLOW filter"  # an Envoy policy, not Istio's


def test_a_filter_disabled_on_the_route_is_not_a_condition(capsys, tmp_path):
    lis = listener(15006, lua=True)
    rc = lis["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    rc["virtual_hosts"][1]["routes"][-1]["typed_per_filter_config"] = {
        "envoy.filters.http.lua": {"@type": FILTER_CONFIG_TYPE, "disabled": True}
    }
    dump = write(tmp_path, dump_of(lis))
    code, d = check(capsys, dump, 15006, "b.example", "/x", {"x-allow": "1"}, "--expect", "allow")
    assert (d["decision"], d["conditionalOn"], code) == ("ALLOW", [], 0)


def test_a_disabled_filter_a_route_turns_on_is_a_condition_there(capsys, tmp_path):
    lis = listener(15006, lua=True)
    hcm = lis["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["disabled"] = True
    lua_per_route = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute"
    rc = hcm["route_config"]
    rc["virtual_hosts"][1]["routes"][-1]["typed_per_filter_config"] = {
        "envoy.filters.http.lua": {"@type": lua_per_route, "name": "x"}
    }
    dump = write(tmp_path, dump_of(lis))
    _, d = check(capsys, dump, 15006, "b.example", "/x", {"x-allow": "1"})
    assert (d["decision"], d["conditionalOn"]) == ("ALLOW", ["envoy.filters.http.lua"])
    _, d = check(capsys, dump, 15006, "b.example", "/over", {})  # off on this route
    assert (d["decision"], d["conditionalOn"]) == ("ALLOW", [])


# ---------------------------------------------------------- routes not resolved offline


def test_a_route_with_header_conditions_cannot_be_resolved(capsys, tmp_path):
    lis = listener(15006)
    rc = lis["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    routes = rc["virtual_hosts"][1]["routes"]
    routes.insert(0, route("by-header", {"prefix": "/", "headers": [{"name": "x-h"}]}))
    dump = write(tmp_path, dump_of(lis))
    code, out, err = run(
        capsys, "check", "--config-dump", dump, "--plaintext", "--to", ":15006", "--path", "/x"
    )
    assert code == 2
    assert "route by-header of virtual host vh-default also matches on headers" in err
    # Without per-route configuration the route does not matter.
    for vh in rc["virtual_hosts"]:
        vh.pop("typed_per_filter_config", None)
        for r in vh["routes"]:
            r.pop("typed_per_filter_config", None)
    dump = write(tmp_path, dump_of(lis), "plain.json")
    code, out, _ = run(
        capsys, "check", "--config-dump", dump, "--plaintext", "--to", ":15006", "--path", "/x"
    )
    assert code == 0 and out.startswith("DENY (403)")


def test_routes_from_rds_are_read_from_the_dump(tmp_path):
    lis = listener(15006)
    hcm = lis["filter_chains"][0]["filters"][0]["typed_config"]
    rc = hcm.pop("route_config")
    hcm["rds"] = {"route_config_name": "inbound", "config_source": {"ads": {}}}
    doc = dump_of(lis)
    spec = request_from_data(
        {"from": {"plaintext": True}, "to": "x/y", "port": 15006, "path": "/off"}, "<test>"
    )
    missing = parse_config_dump(doc)
    request, hint = resolve_for_dump(spec, missing, None)
    with pytest.raises(ConfigDumpError, match="route configuration 'inbound' \\(RDS\\)"):
        missing.chain_for(request, hint)
    doc["configs"].append(
        {
            "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "dynamic_route_configs": [{"route_config": rc}],
        }
    )
    found = parse_config_dump(doc)
    chain = found.chain_for(request, hint)
    assert chain.info.per_route == (f"{RBAC} disabled",)


def test_choose_route_edges():
    rc = route_config()
    chosen = choose_route(rc, "b.example", "/nothing-matches-first")
    assert chosen is not None and chosen.route == "rest"
    assert choose_route({"virtual_hosts": [{"name": "v", "domains": ["x"]}]}, "y", "/") is None
    with pytest.raises(RouteUnresolved, match="not modelled"):
        choose_route(
            {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {}}]}]},
            "h",
            "/",
        )


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(fixture_dump(), indent=2) + "\n")

"""Rows through a gateway whose own AuthorizationPolicies take part: the
client's request is decided at the gateway, the request it sends on at the
destination (``meshauthz.decide.gateway_hop``), and reach encodes both chains
together. Every witness is decided again here by that concrete path, and
random requests through it agree with "all" and "none".

Evidence for the hop's semantics: Istio's TestAuthz_IngressGateway (the
gateway's own DENY policies, remoteIpBlocks from X-Forwarded-For under
numTrustedProxies: 1) decided through both hops as Istio's test expects;
what the gateway sends on follows Envoy's HCM documentation (a
``use_remote_address`` HCM appends its peer to X-Forwarded-For) and the
sidecar's XFF settings (last entry), both modelled in envoy/.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshauthz.decide.engine import Decider
from meshauthz.decide.gateway_hop import through_gateway
from meshauthz.envoy.request_headers import appended_peer
from meshauthz.mesh import MeshSnapshot
from meshauthz.mesh.loading import load_mesh
from meshauthz.symbolic.reach import Caller, Row, mesh_callers, reach
from meshauthz.symbolic.witness import Destination
from tests.conftest import EXAMPLES, REPO

SEED = EXAMPLES / "seed"
SUITES = REPO / "tests" / "istio_suites"
GATEWAY = "istio-system/istio-ingressgateway"
GATEWAY_IP = "10.10.0.10"
GATEWAY_PRINCIPAL = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
BACKEND = Destination("default/backend", 80, "http")

# the ingress gateway of tests/reach/gateway, whose pod has GATEWAY_IP
GATEWAY_YAML = (REPO / "tests" / "reach" / "gateway" / "gateway.yaml").read_text()


def policy(name: str, namespace: str, app: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
    }


def write_mesh(
    d: Path,
    gateway: list[dict[str, Any]],
    backend: list[dict[str, Any]] = (),  # type: ignore[assignment]
    trusted_proxies: int = 0,
    extra: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> MeshSnapshot:
    d.mkdir(parents=True)
    for f in ("backend.yaml", "frontend.yaml", "namespace.yaml"):
        shutil.copy(SEED / f, d / f)
    (d / "gateway.yaml").write_text(GATEWAY_YAML)
    docs = [
        *(
            policy(f"gw{i}", "istio-system", "istio-ingressgateway", s)
            for i, s in enumerate(gateway)
        ),
        *(policy(f"be{i}", "default", "backend", s) for i, s in enumerate(backend)),
        *extra,
    ]
    if docs:
        (d / "policies.yaml").write_text(yaml.safe_dump_all(docs))
    paths = [str(d)]
    if trusted_proxies:
        mc = d.parent / f"{d.name}-mesh.yaml"
        mc.write_text(
            f"defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: {trusted_proxies}\n"
        )
        return load_mesh(tuple(paths), mesh_config=str(mc)).snapshot
    return load_mesh(tuple(paths)).snapshot


def gateway_row(snapshot: MeshSnapshot, dest: Destination = BACKEND) -> Row:
    callers = [c for c in mesh_callers(snapshot) if c.kind == "gateway"]
    (row,) = reach(snapshot, callers=callers, only=[dest]).rows
    return row


def through(decider: Decider, client: dict[str, Any], sni: str = "", dest: Destination = BACKEND):
    return through_gateway(decider, client, dest.workload, dest.port, dest.protocol, sni=sni)


def confirm(snapshot: MeshSnapshot, row: Row, dest: Destination = BACKEND) -> None:
    """Both witnesses decided again by the concrete path, as the row says."""
    decider = Decider(snapshot)
    for client, onward, verdict in (
        (row.allowed_witness, row.allowed_onward, "ALLOW"),
        (row.denied_witness, row.denied_onward, "DENY"),
    ):
        if client is None:
            assert onward is None
            continue
        assert client["to"] == GATEWAY and client["from"]["plaintext"] is True
        t = through(decider, client, (onward or {}).get("sni", ""), dest)
        assert t.final.verdict == verdict, (client, t)
        assert t.onward == onward
    assert row.two_hops and "allowedWitnessOnward" in row.to_json()


def test_an_allow_on_the_gateways_paths(tmp_path: Path) -> None:
    snap = write_mesh(
        tmp_path / "m",
        [{"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/public/*"]}}]}]}],
    )
    row = gateway_row(snap)
    assert row.verdict == "some", row
    confirm(snap, row)
    assert row.allowed_witness["path"].startswith("/public/")
    assert not row.denied_witness["path"].startswith("/public/")
    assert row.denied_onward is None  # the gateway denies it: nothing is sent on
    assert row.conditions is not None
    assert "at the gateway istio-system/istio-ingressgateway: paths /public/*" in row.conditions
    assert row.conditions.endswith("; then at default/backend: any request")
    allows = [d for d in row.deciding if d.end.verdict == "ALLOW"]
    assert [(d.end.policy, d.line) for d in allows if d.end.policy] == [("istio-system/gw0", 9)]


def test_an_allow_on_the_clients_address_at_the_gateway(tmp_path: Path) -> None:
    snap = write_mesh(
        tmp_path / "m",
        [{"action": "ALLOW", "rules": [{"from": [{"source": {"ipBlocks": ["203.0.113.0/24"]}}]}]}],
    )
    row = gateway_row(snap)
    assert row.verdict == "some"
    confirm(snap, row)
    assert row.allowed_witness["from"]["ip"].startswith("203.0.113.")
    assert not row.denied_witness["from"]["ip"].startswith("203.0.113.")
    # the destination sees the gateway's address, the client's as X-Forwarded-For
    assert row.allowed_onward["from"] == GATEWAY
    assert row.allowed_onward["headers"]["x-forwarded-for"] == row.allowed_witness["from"]["ip"]


@pytest.mark.parametrize("trusted", [0, 1])
def test_remote_ip_blocks_at_the_gateway_follow_its_trusted_proxies(
    tmp_path: Path, trusted: int
) -> None:
    snap = write_mesh(
        tmp_path / "m",
        [
            {
                "action": "ALLOW",
                "rules": [{"from": [{"source": {"remoteIpBlocks": ["198.51.100.0/24"]}}]}],
            }
        ],
        trusted_proxies=trusted,
    )
    row = gateway_row(snap)
    assert row.verdict == "some"
    confirm(snap, row)
    allowed = row.allowed_witness
    if trusted:  # the address comes from the client's X-Forwarded-For
        assert allowed["headers"]["x-forwarded-for"].startswith("198.51.100.")
        assert not allowed["from"]["ip"].startswith("198.51.100.")
        # the onward request carries the client's entries, then its connection's address
        assert row.allowed_onward["headers"]["x-forwarded-for"] == (
            f"{allowed['headers']['x-forwarded-for']},{allowed['from']['ip']}"
        )
    else:  # from the connection: the client's own address
        assert allowed["from"]["ip"].startswith("198.51.100.")
        assert "headers" not in allowed


def test_a_deny_on_the_gateway_denies_everything(tmp_path: Path) -> None:
    snap = write_mesh(tmp_path / "m", [{"action": "DENY", "rules": [{}]}])
    row = gateway_row(snap)
    assert row.verdict == "none"
    confirm(snap, row)
    assert row.denied_onward is None and row.allowed_witness is None


def test_an_allow_all_on_the_gateway_lets_the_destination_decide(tmp_path: Path) -> None:
    snap = write_mesh(tmp_path / "m", [{"action": "ALLOW", "rules": [{}]}])
    row = gateway_row(snap)
    assert row.verdict == "all"
    confirm(snap, row)
    snap = write_mesh(
        tmp_path / "n",
        [{"action": "ALLOW", "rules": [{}]}],
        [
            {
                "action": "DENY",
                "rules": [{"from": [{"source": {"principals": [GATEWAY_PRINCIPAL]}}]}],
            }
        ],
    )
    row = gateway_row(snap)
    assert row.verdict == "none"
    confirm(snap, row)
    assert row.denied_onward is not None  # the gateway let it through; the backend denies


def test_both_chains_conjoined(tmp_path: Path) -> None:
    snap = write_mesh(
        tmp_path / "m",
        [{"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}],
        [
            {
                "action": "ALLOW",
                "rules": [
                    {
                        "from": [{"source": {"principals": [GATEWAY_PRINCIPAL]}}],
                        "to": [{"operation": {"methods": ["GET"]}}],
                    }
                ],
            }
        ],
    )
    row = gateway_row(snap)
    assert row.verdict == "some"
    confirm(snap, row)
    assert row.conditions == (
        "at the gateway istio-system/istio-ingressgateway: any request; unless paths /admin* "
        "[istio-system/gw0 rule 0]; then at default/backend: methods GET [default/be0 rule 0]"
    )


def test_the_destination_sees_the_clients_address_as_its_remote_address(tmp_path: Path) -> None:
    snap = write_mesh(
        tmp_path / "m",
        [{"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}],
        [
            {
                "action": "ALLOW",
                "rules": [
                    {
                        "from": [
                            {
                                "source": {
                                    "remoteIpBlocks": ["203.0.113.0/24"],
                                    "ipBlocks": [GATEWAY_IP],
                                }
                            }
                        ]
                    }
                ],
            }
        ],
    )
    row = gateway_row(snap)
    assert row.verdict == "some"
    confirm(snap, row)
    assert row.allowed_witness["from"]["ip"].startswith("203.0.113.")
    assert row.allowed_witness["path"] != "/admin"


def test_for_127_0_0_1_the_gateway_appends_its_own_address(tmp_path: Path) -> None:
    """tests/envoy/test_gateway_forwarded_for.py observes it with Envoy 1.40."""
    assert appended_peer("127.0.0.1", GATEWAY_IP) == GATEWAY_IP
    assert appended_peer("::1", GATEWAY_IP) == GATEWAY_IP
    assert appended_peer("127.0.0.5", GATEWAY_IP) == "127.0.0.5"
    # a backend that takes its remote address from the gateway's X-Forwarded-For
    snap = write_mesh(
        tmp_path / "m",
        [{"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}],
        [{"action": "ALLOW", "rules": [{"from": [{"source": {"remoteIpBlocks": [GATEWAY_IP]}}]}]}],
    )
    row = gateway_row(snap)
    assert row.verdict == "some"
    confirm(snap, row)
    assert row.allowed_witness["from"]["ip"] in ("127.0.0.1", "::1", GATEWAY_IP)
    decider = Decider(snap)
    for ip, verdict in [("127.0.0.1", "ALLOW"), ("127.0.0.5", "DENY"), (GATEWAY_IP, "ALLOW")]:
        client = {"from": {"plaintext": True, "ip": ip}, "to": GATEWAY, "port": 8080}
        assert through(decider, client).final.verdict == verdict, ip


def test_a_gateway_jwt_filter_stays_unknown_with_the_reason(tmp_path: Path) -> None:
    ra = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": "istio-system"},
        "spec": {
            "selector": {"matchLabels": {"app": "istio-ingressgateway"}},
            "jwtRules": [
                {"issuer": "https://issuer.example", "jwksUri": "https://issuer.example/jwks"}
            ],
        },
    }
    snap = write_mesh(
        tmp_path / "m",
        [{"action": "ALLOW", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}],
        extra=[ra],
    )
    row = gateway_row(snap)
    if row.verdict == "unknown":  # until the engine encodes JWT filters
        assert row.conditions is not None and "JWT" in row.conditions
        assert "istio-ingressgateway:8080" in row.conditions
    else:
        confirm(snap, row)


def test_istios_ingress_gateway_cases_through_both_hops() -> None:
    """TestAuthz_IngressGateway (tests/integration/security/authz_test.go): each
    request to the gateway, then on to b (no policy of its own), decided as
    Istio's test expects; and reach's row for it."""
    suite = SUITES / "TestAuthz_IngressGateway"
    snap = load_mesh(
        (str(SUITES / "echo"), str(suite / "policies.yaml")),
        mesh_config=str(suite / "mesh-config.yaml"),
    ).snapshot
    decider = Decider(snap)
    b = Destination("echo1/b", 18080, "http")
    cases = yaml.safe_load((suite / "TestAuthz_IngressGateway.test.yaml").read_text())["cases"]
    for case in cases:
        t = through(decider, case["request"], dest=b)
        assert t.final.verdict == case["expect"]["decision"], case["name"]
        assert t.decided_at_gateway == (case["expect"]["decision"] == "DENY"), case["name"]
    row = gateway_row(snap, b)
    assert row.verdict == "some"
    confirm(snap, row, b)


# ------------------------------------------------------------------ soundness

PATHS = ["/public/*", "/admin", "*/x", "/"]
METHODS = ["GET", "POST"]
BLOCKS = ["203.0.113.0/24", "10.0.0.0/8", "198.51.100.4", "127.0.0.1"]

gw_rule = st.fixed_dictionaries(
    {},
    optional={
        "to": st.lists(
            st.builds(
                lambda o: {"operation": o},
                st.fixed_dictionaries(
                    {},
                    optional={
                        "paths": st.lists(st.sampled_from(PATHS), min_size=1, max_size=2),
                        "methods": st.lists(st.sampled_from(METHODS), min_size=1, max_size=1),
                        "hosts": st.just(["www.example.com"]),
                    },
                ).filter(bool),
            ),
            min_size=1,
            max_size=1,
        ),
        "from": st.lists(
            st.builds(
                lambda s: {"source": s},
                st.fixed_dictionaries(
                    {},
                    optional={
                        "ipBlocks": st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=1),
                        "remoteIpBlocks": st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=1),
                        "notRemoteIpBlocks": st.lists(
                            st.sampled_from(BLOCKS), min_size=1, max_size=1
                        ),
                    },
                ).filter(bool),
            ),
            min_size=1,
            max_size=1,
        ),
    },
)
be_rule = st.fixed_dictionaries(
    {},
    optional={
        "from": st.just([{"source": {"principals": [GATEWAY_PRINCIPAL]}}])
        | st.builds(lambda b: [{"source": {"remoteIpBlocks": [b]}}], st.sampled_from(BLOCKS)),
        "to": st.builds(
            lambda ps, ms: [{"operation": {"paths": ps, "methods": ms}}],
            st.lists(st.sampled_from(PATHS), min_size=1, max_size=1),
            st.lists(st.sampled_from(METHODS), min_size=1, max_size=1),
        ),
    },
)


def policies(rule: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(
        st.fixed_dictionaries(
            {
                "action": st.sampled_from(["ALLOW", "DENY"]),
                "rules": st.lists(rule, min_size=1, max_size=2),
            }
        ),
        min_size=0,
        max_size=2,
    )


def random_clients(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        req: dict[str, Any] = {
            "from": {
                "plaintext": True,
                "ip": rng.choice(
                    ["203.0.113.7", "10.1.2.3", "192.0.2.10", "127.0.0.5", "127.0.0.1"]
                ),
            },
            "to": GATEWAY,
            "port": 8080,
            "method": rng.choice(METHODS),
            "path": rng.choice(["/public/a", "/admin", "/y/x", "/", "/public"]),
            "host": rng.choice(["www.example.com", "backend.default.svc.cluster.local"]),
        }
        xff = rng.choice([None, "198.51.100.4", "10.9.8.7", "203.0.113.99, 10.1.1.1"])
        if xff is not None:
            req["headers"] = {"x-forwarded-for": xff}
        out.append(req)
    return out


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(gw=policies(gw_rule), be=policies(be_rule), trusted=st.sampled_from([0, 1]))
def test_soundness_through_a_gateway(
    gw: list[dict[str, Any]], be: list[dict[str, Any]], trusted: int
) -> None:
    if not gw:
        gw = [{"action": "ALLOW", "rules": [{}]}]  # the gateway's own policies take part
    with tempfile.TemporaryDirectory() as tmp:
        snap = write_mesh(Path(tmp) / "m", gw, be, trusted_proxies=trusted)
        row = gateway_row(snap)
        assert row.verdict in ("all", "none", "some"), row
        confirm(snap, row)
        if row.verdict == "some":
            return
        decider = Decider(snap)
        for client in random_clients(random.Random(len(gw) * 7 + len(be)), 60):
            got = through(decider, client).final.verdict
            assert got == ("ALLOW" if row.verdict == "all" else "DENY"), (client, row)


# ------------------------------------------------------------------ more of the gateway's chain

EXT_AUTHZ = [
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {
            "mesh": yaml.safe_dump(
                {
                    "extensionProviders": [
                        {
                            "name": "my-ext",
                            "envoyExtAuthzHttp": {
                                "service": "ext.default.svc.cluster.local",
                                "port": 8000,
                            },
                        }
                    ]
                }
            )
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ext", "namespace": "default"},
        "spec": {"selector": {"app": "ext"}, "ports": [{"name": "http", "port": 8000}]},
    },
]


@pytest.mark.parametrize("assume", ["deny", "allow"])
def test_a_custom_policy_on_the_gateway(tmp_path: Path, assume: Any) -> None:
    snap = write_mesh(
        tmp_path / "m",
        [
            {
                "action": "CUSTOM",
                "provider": {"name": "my-ext"},
                "rules": [{"to": [{"operation": {"paths": ["/ext/*"]}}]}],
            }
        ],
        extra=EXT_AUTHZ,
    )
    callers = [c for c in mesh_callers(snap) if c.kind == "gateway"]
    (row,) = reach(snap, callers=callers, only=[BACKEND], ext_authz=assume).rows
    if assume == "allow":  # the provider lets everything through
        assert row.verdict == "all"
        return
    assert row.verdict == "some"
    assert row.denied_witness["path"].startswith("/ext/") and row.denied_onward is None
    (custom,) = [d for d in row.deciding if str(d.end.stage) == "CUSTOM"]
    assert (custom.end.verdict, custom.end.policy) == ("DENY", "istio-system/gw0")
    confirm(snap, row)


def test_a_gateway_with_two_ports_decides_per_port(tmp_path: Path) -> None:
    d = tmp_path / "m"
    snap = write_mesh(
        d, [{"action": "ALLOW", "rules": [{"to": [{"operation": {"ports": ["8080"]}}]}]}]
    )
    text = (d / "gateway.yaml").read_text()
    text = text.replace(
        "    - {containerPort: 8080}\n",
        "    - {containerPort: 8080}\n    - {containerPort: 8081}\n",
    )
    text = text.replace(
        "  - {name: http2, port: 80, targetPort: 8080}\n",
        "  - {name: http2, port: 80, targetPort: 8080}\n  - {name: http-alt, port: 81, targetPort: 8081}\n",
    )
    (d / "gateway.yaml").write_text(text)
    snap = load_mesh((str(d),)).snapshot
    row = gateway_row(snap)
    assert row.verdict == "some"
    assert row.conditions == "through port 8080: all; through port 8081: none"
    assert row.allowed_witness["port"] == 8080 and row.denied_witness["port"] == 8081
    confirm(snap, row)


MESH_STRICT = {
    "apiVersion": "security.istio.io/v1",
    "kind": "PeerAuthentication",
    "metadata": {"name": "default", "namespace": "istio-system"},
    "spec": {"mtls": {"mode": "STRICT"}},
}


def test_mesh_wide_strict_does_not_reset_the_gateways_clients(tmp_path: Path) -> None:
    """PeerAuthentication is not applied at a gateway's listeners (gateway.go;
    Istio's tests/integration/security/pqc/main_test.go TestIngress gets 200
    through the ingress gateway from a client without a certificate under a
    mesh-wide STRICT policy; tests/decide/test_gateway_mtls.py): the gateway's
    own rules decide its plaintext clients, the backend the gateway's mTLS."""
    public = [{"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/public/*"]}}]}]}]
    snap = write_mesh(tmp_path / "m", public, extra=[MESH_STRICT])
    row = gateway_row(snap)
    assert row.verdict == "some", row
    confirm(snap, row)
    assert row.allowed_witness["path"].startswith("/public/")


def test_a_workload_reaches_the_gateway_in_plaintext(tmp_path: Path) -> None:
    """The gateway's pods carry no security.istio.io/tlsMode label, so the
    frontend's auto mTLS sends them plaintext (cluster_tls.go; see
    tests/decide/test_gateway_mtls.py): a rule on its principal at the gateway
    does not match it, while a caller given by that identity (mTLS a
    DestinationRule sets) does."""
    principal = "cluster.local/ns/default/sa/frontend"
    only = [{"action": "ALLOW", "rules": [{"from": [{"source": {"principals": [principal]}}]}]}]
    snap = write_mesh(tmp_path / "m", only, extra=[MESH_STRICT])
    callers = [c for c in mesh_callers(snap) if c.workload == "default/frontend"]
    callers.append(Caller.parse(f"principal={principal}"))
    rows = reach(snap, callers=callers, only=[Destination(GATEWAY, 8080, "http")]).rows
    verdicts = {r.caller.label: r.verdict for r in rows}
    assert verdicts == {"default/frontend": "none", f"principal={principal}": "all"}, rows


def test_the_cli_keeps_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from meshauthz.cli.main import main

    args = [
        "reach", "-f", str(SEED / "backend.yaml"), "-f", str(SEED / "namespace.yaml"),
        "-f", str(REPO / "tests" / "reach" / "gateway"), "--to", "default/backend",
    ]  # fmt: skip
    outputs = {}
    for fmt in ("json", "csv", "dot"):
        with pytest.raises(SystemExit) as exc:
            main([*args, "-o", fmt, "--html", str(tmp_path / f"{fmt}.html")])
        assert exc.value.code == 0
        outputs[fmt] = capsys.readouterr().out
    import json

    rows = {r["from"]: r for r in json.loads(outputs["json"])["rows"]}
    gw = rows[f"gateway:{GATEWAY}"]
    assert gw["verdict"] == "some" and gw["deniedWitnessOnward"] is None
    assert gw["allowedWitnessOnward"]["to"] == "default/backend"
    assert "allowedWitnessOnward" not in rows["plaintext"]
    assert f"gateway:{GATEWAY},default/backend,80,http,some," in outputs["csv"]
    assert f'"gateway:{GATEWAY}" -> "default/backend"' in outputs["dot"]
    page = (tmp_path / "json.html").read_text()
    assert "allowedWitnessOnward" in page and "sent on by the gateway" in page

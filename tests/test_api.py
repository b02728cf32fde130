"""The Python API answers exactly as the commands do: same decisions, same JSON,
same explanation text, same filters, same errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import meshauthz
from meshauthz.cli.main import main
from meshauthz.resources.istio_release import ISTIO
from tests.conftest import EXAMPLES, REPO


def cli_json(out: str) -> Any:
    """A command's JSON decisions without the Istio release each carries
    (``istioVersion``: a key of the command's output, not of the decision)."""
    docs = json.loads(out)
    for d in docs if isinstance(docs, list) else [docs]:
        assert d.pop("istioVersion") == ISTIO.version
    return docs


SEED = str(EXAMPLES / "seed")
FIXED = str(EXAMPLES / "seed-fixed")
DUMP = str(REPO / "tests/decide/fixtures/seed-backend.config_dump.json")

# Every field of the request format (schemas/request.schema.json).
EVERY_FIELD: dict[str, Any] = {
    "name": "every field",
    "from": {"workload": "default/frontend", "ip": "10.0.0.7"},
    "remoteIP": "203.0.113.7",
    "to": "default/backend:80",
    "port": 80,
    "protocol": "http",
    "method": "POST",
    "path": "/api/v1/data?x=1",
    "host": "backend.default.svc.cluster.local",
    "headers": {"x-user": "alice", "x-multi": ["a", "b"]},
    "jwt": {"iss": "https://issuer.example", "sub": "alice", "aud": ["web"]},
    "jwtLocation": {"header": "x-jwt", "prefix": "Bearer "},
    "sni": "backend.default.svc.cluster.local",
}
REQUESTS: list[dict[str, Any]] = [
    {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"},
    {"from": "default/frontend", "to": "default/backend", "method": "POST", "path": "/api/v1/data"},
    {"from": {"plaintext": True}, "to": "default/backend:80", "protocol": "tcp"},
    {"from": {"principal": "cluster.local/ns/other/sa/x"}, "to": "default/frontend"},
    EVERY_FIELD,
]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def request_file(tmp_path: Path, data: Any) -> str:
    p = tmp_path / "requests.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(p)


@pytest.mark.parametrize("example", [SEED, FIXED])
def test_check_gives_check_json(capsys, tmp_path: Path, example: str) -> None:
    mesh = meshauthz.load(example)
    got = [o.to_json() for o in mesh.check(REQUESTS, trace=True)]
    code, out, _ = run(
        capsys, "check", "-f", example, "--request", request_file(tmp_path, REQUESTS), "-o", "json"
    )
    assert code == 0 and got == cli_json(out)


def test_check_takes_one_request_or_a_list() -> None:
    mesh = meshauthz.load(SEED)
    one = mesh.check(REQUESTS[0])
    assert isinstance(one, meshauthz.Outcome)
    many = mesh.check(REQUESTS[:2])
    assert isinstance(many, list) and len(many) == 2
    assert many[0].decision == one.decision
    assert mesh.check(REQUESTS[:1])[0].decision == one.decision


def test_the_seeds_denial_as_data() -> None:
    d = meshauthz.load(SEED).check(REQUESTS[0])
    assert (d.allowed, d.verdict, d.status, d.policy, d.rule) == (
        False,
        "DENY",
        403,
        "default/deny-all-backend",
        0,
    )
    assert d.stage is meshauthz.Stage.DENY and d.stage == "DENY"
    assert d.request.destination.key == "default/backend" and d.request.port == 80
    assert d.decision.trace == ()  # no trace unless asked
    assert d.reason == meshauthz.load(SEED).check(REQUESTS[0], trace=True).reason


@pytest.mark.parametrize("example", [SEED, FIXED])
@pytest.mark.parametrize("index", range(len(REQUESTS)))
def test_explain_is_the_explain_commands_text(capsys, tmp_path, example: str, index: int) -> None:
    d = meshauthz.load(example).check(REQUESTS[index])
    code, out, _ = run(
        capsys, "explain", "-f", example, "--request", request_file(tmp_path, REQUESTS[index])
    )
    assert code == 0 and d.explain() + "\n" == out


def test_ext_authz_assumption(write) -> None:
    write(
        "m/custom.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: ext, namespace: default}\n"
        "spec:\n  selector: {matchLabels: {app: backend}}\n  action: CUSTOM\n"
        "  provider: {name: ext}\n  rules: [{to: [{operation: {paths: [/api/*]}}]}]\n",
    )
    write(
        "m/ext.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: default}\n"
        "spec:\n  selector: {app: ext}\n  ports: [{name: http, port: 8000}]\n",
    )
    config = write(
        "mesh.yaml",
        "extensionProviders: [{name: ext, envoyExtAuthzHttp: "
        "{service: ext.default.svc.cluster.local, port: 8000}}]\n",
    )
    for f in ("backend.yaml", "frontend.yaml", "namespace.yaml"):
        write(f"m/{f}", (EXAMPLES / "seed-fixed" / f).read_text())
    mesh = meshauthz.load(str(Path(config).parent / "m"), mesh_config=config)
    request = {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}
    denied = mesh.check(request)
    assert (denied.allowed, denied.stage) == (False, meshauthz.Stage.CUSTOM)
    allowed = mesh.check(request, ext_authz="allow")
    assert allowed.allowed and allowed.stage is meshauthz.Stage.DEFAULT  # no ALLOW policy
    # explain() decides under the same assumption as the check it explains.
    assert "=> DENY" in denied.explain() and "=> ALLOW" in allowed.explain()


@pytest.mark.parametrize(
    ("workload", "port", "protocol"),
    [
        ("default/backend", None, None),
        ("default/backend", 80, None),
        ("default/backend", 80, "tcp"),
        ("default/frontend", None, None),
    ],
)
def test_filters_are_what_build_prints(capsys, workload: str, port: int | None, protocol) -> None:
    mesh = meshauthz.load(SEED)
    got = [f.to_dict() for f in mesh.filters(workload, port=port, protocol=protocol)]
    args = ["build", "-f", SEED, "--workload", workload, "-o", "json"]
    args += ["--port", str(port)] if port is not None else []
    args += ["--protocol", protocol] if protocol is not None else []
    code, out, _ = run(capsys, *args)
    assert code == 0 and got == json.loads(out)  # Envoy's own JSON: no istioVersion


def test_config_dump_checks_as_check_config_dump(capsys, tmp_path: Path) -> None:
    requests = [
        {"from": {"principal": "cluster.local/ns/default/sa/frontend"}, "to": "x/y:80"},
        {"from": {"plaintext": True}, "to": "x/y", "port": 9090, "protocol": "tcp"},
    ]
    proxy = meshauthz.load_config_dump(DUMP)
    assert proxy.workload == "default/backend-6d5f7c9b8-x2x7q"
    got = [o.to_json() for o in proxy.check(requests)]
    code, out, _ = run(
        capsys,
        "check",
        "--config-dump",
        DUMP,
        "--request",
        request_file(tmp_path, requests),
        "-o",
        "json",
    )
    assert code == 0 and got == cli_json(out)
    tcp = proxy.check(requests[1])
    assert tcp.status == "connection reset" and tcp.chain.passthrough


def test_config_dump_with_the_mesh_resolves_workloads(capsys, tmp_path: Path) -> None:
    mesh = meshauthz.load(SEED)
    proxy = meshauthz.load_config_dump(Path(DUMP), mesh=mesh)
    got = proxy.check(REQUESTS[:2])
    code, out, _ = run(
        capsys,
        "check",
        "--config-dump",
        DUMP,
        "-f",
        SEED,
        "--request",
        request_file(tmp_path, REQUESTS[:2]),
        "-o",
        "json",
    )
    assert code == 0 and [o.to_json() for o in got] == cli_json(out)
    assert [(o.policy, o.stage) for o in got] == [("default/deny-all-backend", "DENY")] * 2


@pytest.mark.parametrize(
    "bad",
    [
        {"from": "default/frontend"},
        {"from": "default/frontend", "to": "default/backend", "colour": "red"},
        {"from": {"plaintext": True, "principal": "x"}, "to": "default/backend"},
        {"from": "default/frontend", "to": "default/backend", "port": 0},
        "default/frontend",
    ],
)
def test_malformed_requests_get_the_request_files_errors(capsys, tmp_path, bad: Any) -> None:
    with pytest.raises(meshauthz.InputError) as e:
        meshauthz.load(SEED).check(bad)
    code, _, err = run(capsys, "check", "-f", SEED, "--request", request_file(tmp_path, bad))
    assert code == 2 and e.value.message in err
    assert e.value.field is None or f" {e.value.field}: " in err


def test_names_the_mesh_does_not_hold() -> None:
    with pytest.raises(meshauthz.MeshauthzError, match="no workload default/nope"):
        meshauthz.load(SEED).check({"from": "default/nope", "to": "default/backend"})


def test_load_refuses_what_istio_would_reject(write) -> None:
    write("m/a.yaml", (EXAMPLES / "seed" / "backend.yaml").read_text())
    write(
        "m/p.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: p, namespace: default}\n"
        "spec:\n  action: DENY\n",
    )
    with pytest.raises(meshauthz.InvalidInput) as e:
        meshauthz.load(str(Path(write("m/x.txt", "")).parent))
    assert [f.code for f in e.value.errors] == ["action-without-rules"]
    assert isinstance(e.value.errors[0], meshauthz.Finding)


def test_the_facade_exports_what_it_lists() -> None:
    for name in meshauthz.__all__:
        assert hasattr(meshauthz, name), name
    assert {"load", "load_config_dump", "Stage", "InvalidInput"} <= set(meshauthz.__all__)
    assert [s.value for s in meshauthz.Stage] == [
        "mTLS",
        "normalization",
        "CUSTOM",
        "JWT",
        "AUDIT",
        "DENY",
        "ALLOW",
        "default",
        "error",
    ]

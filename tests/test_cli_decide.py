"""check / explain / build on the examples, through the command line."""

from __future__ import annotations

import json

import pytest
import yaml

from meshauthz.cli.main import main
from meshauthz.decide.request_spec import load_request_file
from meshauthz.errors import InputError
from tests.conftest import EXAMPLES

SEED = str(EXAMPLES / "seed")
FIXED = str(EXAMPLES / "seed-fixed")


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def test_check_json_shape(capsys):
    code, out, _ = run(
        capsys,
        "check",
        "-f",
        SEED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "--path",
        "/api/v1/data",
        "-o",
        "json",
    )
    d = json.loads(out)
    assert code == 0
    assert {
        k: d[k] for k in ("decision", "status", "stage", "policy", "rule", "audit", "dryRun")
    } == {
        "decision": "DENY",
        "status": 403,
        "stage": "DENY",
        "policy": "default/deny-all-backend",
        "rule": 0,
        "audit": False,
        "dryRun": [],
    }
    assert isinstance(d["trace"], list) and d["trace"][0]["file"].endswith("deny-all-backend.yaml")


def test_check_expect_mismatch_exits_1(capsys):
    args = [
        "check",
        "-f",
        SEED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "--path",
        "/api/v1/data",
    ]
    code, out, _ = run(capsys, *args, "--expect", "allow")
    assert code == 1 and out.startswith(
        "DENY (403) GET /api/v1/data from default/frontend to default/backend port 80"
    )
    assert run(capsys, *args, "--expect", "deny")[0] == 0


def test_check_fixed_allows_and_names_the_policy(capsys):
    code, out, _ = run(
        capsys,
        "check",
        "-f",
        FIXED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend:80",
        "--path",
        "/api/v1/data",
        "--expect",
        "allow",
    )
    assert code == 0 and "policy: default/allow-frontend-get-data rule 0" in out


def test_check_request_file_with_a_list(capsys, write):
    path = write(
        "reqs.yaml",
        yaml.safe_dump(
            [
                {
                    "from": "default/frontend",
                    "to": "default/backend",
                    "method": "GET",
                    "path": "/api/v1/data",
                },
                {
                    "from": "default/frontend",
                    "to": "default/backend",
                    "method": "POST",
                    "path": "/api/v1/data",
                },
            ]
        ),
    )
    code, out, _ = run(capsys, "check", "-f", FIXED, "--request", path, "-o", "json")
    assert code == 0 and [d["decision"] for d in json.loads(out)] == ["ALLOW", "DENY"]


def test_check_unknown_workload_is_an_input_error(capsys):
    code, _, err = run(
        capsys, "check", "-f", SEED, "--from", "default/nope", "--to", "default/backend"
    )
    assert code == 2 and "default/nope" in err


def test_check_needs_a_destination(capsys):
    code, _, err = run(capsys, "check", "-f", SEED, "--from", "default/frontend")
    assert code == 2 and "--to" in err


def test_explain_says_why_the_seed_denies(capsys):
    code, out, _ = run(
        capsys,
        "explain",
        "-f",
        SEED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "--path",
        "/api/v1/data",
    )
    assert code == 0
    assert "=> DENY (403)" in out and "DENY policies are evaluated before ALLOW" in out
    assert (
        "DENY   default/deny-all-backend" in out and "ALLOW  default/allow-frontend-get-data" in out
    )


def test_explain_nearest_miss_on_the_fixed_example(capsys):
    code, out, _ = run(
        capsys,
        "explain",
        "-f",
        FIXED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "-X" if False else "--method",
        "POST",
        "--path",
        "/api/v1/data",
    )
    assert code == 0 and "to.operation.methods: GET does not match" in out


def test_build_prints_the_filters_in_order(capsys):
    code, out, _ = run(capsys, "build", "-f", SEED, "--workload", "default/backend", "-o", "json")
    filters = json.loads(out)
    assert code == 0
    assert [f["typedConfig"]["rules"].get("action", "ALLOW") for f in filters] == ["DENY", "ALLOW"]
    assert (
        "ns[default]-policy[deny-all-backend]-rule[0]"
        in filters[0]["typedConfig"]["rules"]["policies"]
    )


def test_build_by_namespace_and_labels_and_tcp(capsys):
    code, out, _ = run(
        capsys,
        "build",
        "-f",
        SEED,
        "--namespace",
        "default",
        "--labels",
        "app=backend",
        "--protocol",
        "tcp",
    )
    docs = list(yaml.safe_load_all(out))
    assert code == 0 and [d["name"] for d in docs] == ["envoy.filters.network.rbac"] * 2


SEED_DENIED = (
    "-f",
    SEED,
    "--from",
    "default/frontend",
    "--to",
    "default/backend",
    "--path",
    "/api/v1/data",
)


def test_an_internal_error_is_never_the_expected_deny(capsys, failing_matcher):
    # Without the fault this request is denied and --expect deny exits 0 (above);
    # with it the decision is a fail-closed DENY: exit 3, and said on stderr.
    for command in ("check", "explain"):
        code, out, err = run(capsys, command, *SEED_DENIED, "--expect", "deny")
        assert code == 3, command
        assert (
            "DENY (403)" in out
            and f"internal error and denies (fail closed): {failing_matcher}" in out
        )
        assert err == (
            "error: internal error in meshauthz deciding GET /api/v1/data from default/frontend "
            f"to default/backend port 80: {failing_matcher}; its DENY is fail-closed, not an "
            "answer (this is a bug; set MESHAUTHZ_DEBUG=1 for the details to report)\n"
        )
    # without --expect too, and in JSON: the decision says so, the exit code too
    code, out, _ = run(capsys, "check", *SEED_DENIED, "-o", "json")
    d = json.loads(out)
    assert code == 3 and (d["decision"], d["stage"], d["error"]) == (
        "DENY",
        "error",
        failing_matcher,
    )


def test_explain_takes_expect(capsys):
    assert run(capsys, "explain", *SEED_DENIED, "--expect", "deny")[0] == 0
    code, out, _ = run(capsys, "explain", *SEED_DENIED, "--expect", "allow")
    assert code == 1 and out.startswith("GET /api/v1/data from default/frontend")


def test_check_json_reports_the_remote_address_it_used(capsys):
    args = ["check", "-f", SEED, "--from", "default/frontend", "--to", "default/backend"]

    def remote(*extra: str) -> str:
        code, out, _ = run(capsys, *args, *extra, "-o", "json")
        assert code == 0
        return json.loads(out)["request"]["remoteIP"]

    # a sidecar's inbound HCM trusts no hop: the address X-Forwarded-For ends with
    assert remote("-H", "x-forwarded-for: 198.51.100.1, 203.0.113.7") == "203.0.113.7"
    # without the header: the caller's own address
    _, out, _ = run(capsys, *args, "-o", "json")
    request = json.loads(out)["request"]
    assert request["remoteIP"] == request["from"]["ip"] is not None
    assert remote("--remote-ip", "192.0.2.99") == "192.0.2.99"


# --------------------------------------------------------------------------- injection

# istio.io's "Mutual TLS Migration" task: httpbin and sleep in foo (injected), sleep in
# legacy (namespace labelled istio-injection: disabled) and in bar (pod template annotated
# sidecar.istio.io/inject: "false"), a STRICT PeerAuthentication on foo. The task shows
# the legacy sleep's requests failing once foo is STRICT ("000 ... exit code 56").
MIGRATION = str(EXAMPLES.parent / "tests" / "decide" / "fixtures" / "mtls-migration")


@pytest.mark.parametrize("caller", ["legacy/sleep", "bar/sleep"])
def test_caller_without_sidecar_is_reset_by_strict(capsys, caller):
    code, out, _ = run(
        capsys, "check", "-f", MIGRATION, "--from", caller, "--to", "foo/httpbin:8000"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        f"DENY (connection reset) GET / from {caller} (no sidecar: plaintext) to foo/httpbin "
        "port 8080 (Host: httpbin.foo.svc.cluster.local:8000)"
    )
    assert "requires mTLS (PeerAuthentication STRICT)" in lines[1]
    why = (
        "namespace legacy is labelled istio-injection=disabled"
        if caller == "legacy/sleep"
        else 'its pods are annotated sidecar.istio.io/inject: "false"'
    )
    assert lines[2] == (
        f"  the caller {caller} has no sidecar ({why}): it sends plaintext from its own "
        "address, with no client certificate"
    )


def test_caller_without_sidecar_json(capsys):
    _, out, _ = run(
        capsys,
        "check",
        "-f",
        MIGRATION,
        "--from",
        "legacy/sleep",
        "--to",
        "foo/httpbin:8000",
        "-o",
        "json",
    )
    d = json.loads(out)
    assert (d["decision"], d["status"], d["stage"]) == ("DENY", "connection reset", "mTLS")
    assert d["request"]["from"]["sidecar"] is False
    assert d["request"]["from"]["principal"] is None


def test_injected_caller_passes_strict(capsys):
    code, out, _ = run(
        capsys,
        "check",
        "-f",
        MIGRATION,
        "--from",
        "foo/sleep",
        "--to",
        "foo/httpbin:8000",
        "--expect",
        "allow",
    )
    assert code == 0, out


def test_explain_says_the_caller_sends_plaintext(capsys):
    _, out, _ = run(
        capsys, "explain", "-f", MIGRATION, "--from", "legacy/sleep", "--to", "foo/httpbin:8000"
    )
    assert "the caller legacy/sleep has no sidecar" in out
    assert "it sends plaintext from its own address" in out


def test_destination_without_sidecar_is_unchecked(tmp_path, capsys):
    deny_all = tmp_path / "deny.yaml"
    deny_all.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: deny-all, namespace: legacy}\nspec: {action: DENY, rules: [{}]}\n"
    )
    _, out, _ = run(
        capsys,
        "check",
        "-f",
        MIGRATION,
        "-f",
        str(deny_all),
        "--from",
        "foo/sleep",
        "--to",
        "legacy/sleep",
        "-o",
        "json",
    )
    d = json.loads(out)
    # no Envoy in front of legacy/sleep: the DENY policy is never enforced
    assert (d["decision"], d["status"], d["stage"], d["policy"]) == (
        "ALLOW",
        200,
        "no sidecar",
        None,
    )
    assert "reaches the application unchecked" in d["reason"]


# --------------------------------------------------------------------------- default Host


def _hosts_policy(tmp_path, hosts: list[str]) -> str:
    f = tmp_path / "hosts.yaml"
    f.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: by-host, namespace: foo}\n"
        "spec: {selector: {matchLabels: {app: httpbin}}, rules: [{to: [{operation: {hosts: "
        + json.dumps(hosts)
        + "}}]}]}\n"
    )
    return str(f)


@pytest.mark.parametrize(
    ("hosts", "verdict"),
    [
        (["httpbin.foo.svc.cluster.local"], "DENY"),
        (["httpbin.foo.svc.cluster.local:8000"], "ALLOW"),
        (["httpbin.foo.svc.cluster.local", "httpbin.foo.svc.cluster.local:*"], "ALLOW"),
    ],
)
def test_default_host_carries_the_service_port(tmp_path, capsys, hosts, verdict):
    # A client calling http://httpbin.foo.svc.cluster.local:8000/ sends the port in Host
    # (RFC 9110 7.2), and istiod turns `hosts` into an :authority matcher on the whole
    # value (builder testdata http/allow-full-rule-out.yaml: exact "exact.com",
    # prefix "prefix.", ignoreCase): without the port, the rule does not match.
    _, out, _ = run(
        capsys,
        "check",
        "-f",
        MIGRATION,
        "-f",
        _hosts_policy(tmp_path, hosts),
        "--from",
        "foo/sleep",
        "--to",
        "foo/httpbin:8000",
        "-o",
        "json",
    )
    d = json.loads(out)
    assert d["request"]["host"] == "httpbin.foo.svc.cluster.local:8000"
    assert d["decision"] == verdict


def test_default_host_leaves_out_port_80(capsys):
    _, out, _ = run(capsys, "check", "-f", MIGRATION, "--from", "foo/httpbin", "--to", "foo/sleep")
    assert out.splitlines()[0].endswith("port 80 (Host: sleep.foo.svc.cluster.local)")


def test_default_host_for_a_workload_port_is_its_service_port(capsys):
    # --to a workload's own port: the Service port that reaches it names the Host
    _, out, _ = run(
        capsys, "check", "-f", MIGRATION, "--from", "foo/sleep", "--to", "foo/httpbin:8080"
    )
    assert out.splitlines()[0].endswith("(Host: httpbin.foo.svc.cluster.local:8000)")


def test_a_real_client_sends_the_port_in_host():
    # What "a client calling that URL" sends, observed: Python's http.client against a
    # loopback server on a non-default port.
    import http.client
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got: list[bytes] = []

    def serve() -> None:
        c, _ = srv.accept()
        got.append(c.recv(4096))
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
    finally:
        t.join(5)
        srv.close()
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in got[0]


# --------------------------------------------------------------------------- several workloads

TWO = str(EXAMPLES.parent / "tests" / "decide" / "fixtures" / "two-versions.yaml")
CALLER = ("--principal", "cluster.local/ns/bar/sa/x")


def test_a_service_of_several_workloads_decides_for_each(capsys):
    code, out, _ = run(capsys, "check", "-f", TWO, *CALLER, "--to", "foo/httpbin:8000")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "foo/httpbin:8000 selects 2 workloads (foo/httpbin-v1, foo/httpbin-v2); "
        "each decides the same: ALLOW (200)"
    )
    assert [ln.split(" to ")[1].split()[0] for ln in lines if ln.startswith("ALLOW")] == [
        "foo/httpbin-v1",
        "foo/httpbin-v2",
    ]
    code, out, _ = run(
        capsys, "check", "-f", TWO, *CALLER, "--to", "foo/httpbin:8000", "--method", "POST"
    )
    assert out.splitlines()[0] == (
        "foo/httpbin:8000 selects 2 workloads (foo/httpbin-v1, foo/httpbin-v2); their "
        "decisions differ: foo/httpbin-v1 ALLOW (200), foo/httpbin-v2 DENY (403)"
    )


def test_a_service_of_several_workloads_json(capsys):
    _, out, _ = run(
        capsys,
        "check",
        "-f",
        TWO,
        *CALLER,
        "--to",
        "foo/httpbin:8000",
        "--method",
        "POST",
        "-o",
        "json",
    )
    d = json.loads(out)
    assert {k: d[k] for k in ("to", "workloads", "differ")} == {
        "to": "foo/httpbin:8000",
        "workloads": ["foo/httpbin-v1", "foo/httpbin-v2"],
        "differ": True,
    }
    assert [(x["request"]["to"], x["decision"]) for x in d["decisions"]] == [
        ("foo/httpbin-v1", "ALLOW"),
        ("foo/httpbin-v2", "DENY"),
    ]
    # one workload: the single-decision shape, as before
    _, out, _ = run(
        capsys, "check", "-f", TWO, *CALLER, "--to", "foo/httpbin-v2:8080", "-o", "json"
    )
    assert json.loads(out)["decision"] == "ALLOW"


def test_explain_for_several_workloads(capsys):
    _, out, _ = run(capsys, "explain", "-f", TWO, *CALLER, "--to", "foo/httpbin:8000", "-o", "json")
    d = json.loads(out)
    assert [len(x["applicable"]) for x in d["decisions"]] == [0, 1]


def test_expect_marks_the_decisions_that_differ(capsys):
    code, out, _ = run(
        capsys,
        "check",
        "-f",
        TWO,
        *CALLER,
        "--to",
        "foo/httpbin:8000",
        "--method",
        "POST",
        "--expect",
        "allow",
    )
    assert code == 1
    lines = out.splitlines()
    marked = [ln for ln in lines if ln.endswith("<- differs from --expect allow")]
    assert len(marked) == 1 and "to foo/httpbin-v2 " in marked[0]
    assert lines[-1] == "1 of 2 decisions differ from --expect allow"


def test_expect_marks_in_a_request_file(tmp_path, capsys):
    f = tmp_path / "requests.yaml"
    f.write_text(
        "- {from: default/frontend, to: default/backend, path: /api/v1/data}\n"
        "- {from: default/frontend, to: default/backend, path: /api/v1/data, method: POST}\n"
    )
    code, out, _ = run(capsys, "check", "-f", FIXED, "--request", str(f), "--expect", "allow")
    assert code == 1
    firsts = [ln for ln in out.splitlines() if not ln.startswith(" ")]
    assert not firsts[0].endswith("--expect allow")
    assert firsts[1].startswith("DENY (403) POST") and firsts[1].endswith(
        "<- differs from --expect allow"
    )
    assert firsts[2] == "1 of 2 decisions differ from --expect allow"
    # one request: nothing to tell apart, nothing marked
    _, out, _ = run(
        capsys,
        "check",
        "-f",
        FIXED,
        "--from",
        "default/frontend",
        "--to",
        "default/backend",
        "--expect",
        "deny",
    )
    assert "differs from" not in out


def test_a_port_the_service_does_not_have_is_an_error(capsys):
    code, out, err = run(capsys, "check", "-f", MIGRATION, *CALLER, "--to", "foo/httpbin:9999")
    assert code == 2
    assert "service foo/httpbin has no port 9999 (ports: 8000)" in out + err
    # the workload's own port is still a workload port
    code, _, _ = run(capsys, "check", "-f", MIGRATION, *CALLER, "--to", "foo/httpbin:8080")
    assert code == 0


def test_a_policy_named_like_a_generated_value_decides(capsys):
    # policy "v2-get-only": its name in the generated chain's notes is no variable
    code, out, err = run(
        capsys, "check", "-f", TWO, *CALLER, "--to", "foo/httpbin-v2:8080", "--method", "POST"
    )
    assert code == 0 and out.startswith("DENY (403)"), out + err


# --------------------------------------------------------------------------- explanations

BUILDER_TCP = (
    EXAMPLES.parent / "tests/conformance/istio/pilot/pkg/security/authz/builder/testdata/tcp"
)
# The proxy of Istio's builder test: namespace foo, labels app: httpbin, version: v1.
HTTPBIN_TCP = """
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: tcp, port: 9000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: foo}
spec:
  template:
    metadata: {labels: {app: httpbin, version: v1}}
    spec: {containers: [{name: httpbin, ports: [{containerPort: 9000}]}]}
"""


def _rule_count(path) -> int:
    return len(yaml.safe_load(path.read_text())["spec"]["rules"])


@pytest.mark.parametrize("action", ["allow", "deny"])
def test_http_only_fields_on_a_tcp_port_are_explained(tmp_path, capsys, action):
    # builder testdata tcp/{allow,deny}-both-http-tcp: istiod keeps, of the ALLOW
    # policy, only the rules without HTTP-only fields (rule[3] in -out.yaml), and builds
    # every DENY rule with its HTTP-only fields left out.
    policy = BUILDER_TCP / f"{action}-both-http-tcp-in.yaml"
    out_doc = yaml.safe_load((BUILDER_TCP / f"{action}-both-http-tcp-out.yaml").read_text())
    kept = {
        int(n.split("rule[")[1].rstrip("]")) for n in out_doc["typedConfig"]["rules"]["policies"]
    }
    (tmp_path / "httpbin.yaml").write_text(HTTPBIN_TCP)
    _, out, _ = run(
        capsys,
        "explain",
        "-f",
        str(tmp_path / "httpbin.yaml"),
        "-f",
        str(policy),
        "--principal",
        "cluster.local/ns/ns-1/sa/x",
        "--to",
        "foo/httpbin:9000",
        "-o",
        "json",
    )
    d = json.loads(out)
    notes = [t for t in d["trace"] if t["field"] and t["matched"] is None]
    noted = {t["rule"] for t in notes}
    rules = set(range(_rule_count(policy)))
    if action == "allow":
        assert noted == rules - kept
        assert all("istiod drops an ALLOW rule" in t["message"] for t in notes)
    else:
        # every rule is kept; those with an HTTP-only field say it was left out
        assert kept == rules and noted and noted < rules
        assert all("is left out on this TCP port" in t["message"] for t in notes)
        assert all("errs toward denying" in t["message"] for t in notes)
    assert {t["field"].split(".")[0] for t in notes} <= {"from", "to", "when"}


def test_a_custom_policy_is_not_labelled_dry_run(tmp_path, capsys):
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
        "data:\n  mesh: |\n    extensionProviders:\n    - name: ext\n"
        "      envoyExtAuthzHttp: {service: ext.foo.svc.cluster.local, port: 9000}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: foo}\n"
        "spec: {selector: {app: ext}, ports: [{name: http, port: 9000}]}\n---\n"
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: ext-admin, namespace: foo}\n"
        "spec: {action: CUSTOM, provider: {name: ext}, rules: [{to: [{operation: {paths: [/admin]}}]}]}\n"
    )
    for path, matched in (("/admin", True), ("/x", False)):
        _, out, _ = run(
            capsys,
            "explain",
            "-f",
            MIGRATION,
            "-f",
            str(mesh),
            "--from",
            "foo/sleep",
            "--to",
            "foo/httpbin:8000",
            "--path",
            path,
        )
        custom = [ln for ln in out.splitlines() if ln.startswith("  [CUSTOM] foo/ext-admin")]
        assert len(custom) == 1 and ("rule 0 matches" in custom[0]) is matched, out
        assert "[dry-run]" not in out


def test_a_missing_jwt_claim_is_named_missing(tmp_path, capsys):
    f = tmp_path / "claims.yaml"
    f.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: need-group, namespace: foo}\n"
        "spec: {selector: {matchLabels: {app: httpbin}}, rules: [{when: "
        "[{key: 'request.auth.claims[groups]', values: [admin]}]}]}\n---\n"
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        "metadata: {name: jwt, namespace: foo}\n"
        "spec: {selector: {matchLabels: {app: httpbin}}, jwtRules: [{issuer: https://issuer.example, "
        "jwksUri: https://issuer.example/jwks}]}\n"
    )
    base = [
        "explain",
        "-f",
        MIGRATION,
        "-f",
        str(f),
        "--from",
        "foo/sleep",
        "--to",
        "foo/httpbin:8000",
    ]
    claims = {"iss": "https://issuer.example", "sub": "a"}
    _, out, _ = run(capsys, *base, "--jwt-claims", json.dumps(claims))
    assert "when.request.auth.claims[groups]: claim groups is missing from the token" in out
    _, out, _ = run(capsys, *base, "--jwt-claims", json.dumps({**claims, "groups": ["dev"]}))
    assert "is missing" not in out and "admin does not match the request" in out
    _, out, _ = run(capsys, *base)
    assert "no validated token, so claim groups is missing" in out


def test_an_undeclared_port_says_the_protocol_is_inferred(capsys):
    _, out, _ = run(
        capsys, "check", "-f", MIGRATION, *CALLER, "--to", "foo/httpbin", "--port", "9999"
    )
    assert (
        "  port 9999: no Service declares it, so the sidecar infers the protocol from the "
        "traffic; this request is taken as HTTP (--protocol http|tcp to choose)"
    ) in out.splitlines()
    # a declared port says nothing of the kind, nor does an explicit --protocol
    _, out, _ = run(capsys, "check", "-f", MIGRATION, *CALLER, "--to", "foo/httpbin:8000")
    assert "infers the protocol" not in out
    _, out, _ = run(
        capsys,
        "check",
        "-f",
        MIGRATION,
        *CALLER,
        "--to",
        "foo/httpbin",
        "--port",
        "9999",
        "--protocol",
        "tcp",
    )
    assert "infers the protocol" not in out


def test_a_suite_decides_injection_as_check_does(tmp_path, capsys):
    suite = tmp_path / "migration.test.yaml"
    suite.write_text(
        f"name: migration\nresources: [{MIGRATION}]\ncases:\n"
        "  - name: legacy sleep is reset by STRICT\n"
        "    request: {from: legacy/sleep, to: 'foo/httpbin:8000'}\n"
        "    expect: {decision: DENY, status: connection reset, stage: mTLS}\n"
        "  - name: nothing checks what reaches legacy sleep\n"
        "    request: {from: foo/sleep, to: legacy/sleep}\n"
        "    expect: {decision: ALLOW, status: 200, stage: no sidecar}\n"
    )
    code, out, err = run(capsys, "test", str(suite))
    assert code == 0, out + err


@pytest.mark.parametrize("mode", ["PERMISSIVE", "DISABLE"])
def test_caller_without_sidecar_has_no_principal(tmp_path, capsys, mode):
    # without STRICT the plaintext connection is accepted, but it carries no
    # certificate: a principals rule cannot match it
    d = tmp_path / "m"
    d.mkdir()
    for f in ("namespaces.yaml", "workloads.yaml"):
        (d / f).write_text(
            (EXAMPLES.parent / "tests/decide/fixtures/mtls-migration" / f).read_text()
        )
    (d / "policy.yaml").write_text(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        f"metadata: {{name: default, namespace: foo}}\nspec: {{mtls: {{mode: {mode}}}}}\n---\n"
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: from-sleeps, namespace: foo}\n"
        "spec: {selector: {matchLabels: {app: httpbin}}, rules: [{from: [{source: {principals: "
        "[cluster.local/ns/legacy/sa/sleep, cluster.local/ns/foo/sa/sleep]}}]}]}\n"
    )
    _, out, _ = run(
        capsys,
        "check",
        "-f",
        str(d),
        "--from",
        "legacy/sleep",
        "--to",
        "foo/httpbin:8000",
        "-o",
        "json",
    )
    got = json.loads(out)
    assert (got["decision"], got["status"], got["stage"]) == ("DENY", 403, "ALLOW")
    _, out, _ = run(
        capsys,
        "check",
        "-f",
        str(d),
        "--from",
        "foo/sleep",
        "--to",
        "foo/httpbin:8000",
        "-o",
        "json",
    )
    # an injected caller's identity is seen unless mTLS is DISABLEd on the port
    assert json.loads(out)["decision"] == ("ALLOW" if mode == "PERMISSIVE" else "DENY")


def test_kubectl_get_all_output_is_one_workload(capsys):
    get_all = str(EXAMPLES.parent / "tests" / "mesh" / "fixtures" / "kubectl-get-all.yaml")
    code, out, err = run(capsys, "check", "-f", get_all, *CALLER, "--to", "foo/httpbin:8000")
    assert code == 0, out + err
    assert out.splitlines()[0] == (
        "ALLOW (200) GET / from cluster.local/ns/bar/sa/x to foo/httpbin port 8080 "
        "(Host: httpbin.foo.svc.cluster.local:8000)"
    )
    # a pod's own name is its workload's, caller or destination
    _, out, _ = run(
        capsys,
        "check",
        "-f",
        get_all,
        "--from",
        "foo/httpbin-7b549f7859-q2k9d",
        "--to",
        "foo/httpbin:8000",
        "-o",
        "json",
    )
    d = json.loads(out)
    assert d["request"]["from"]["workload"] == "foo/httpbin"
    assert d["request"]["from"]["ip"] == "10.244.0.17"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_check_request_file_errors_name_their_line(capsys, tmp_path, suffix):
    """A request file is read without positions for speed; an error found in it,
    or a name the mesh does not hold, is still reported with its line: the
    line and column of the field that holds the name, not of the request."""
    good = {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}
    many = [good] * 3 + [{**good, "to": "default/nope"}] + [good]
    path = tmp_path / f"requests{suffix}"
    text = json.dumps(many, indent=1) if suffix == ".json" else yaml.safe_dump(many)
    path.write_text(text)
    lines = text.splitlines()
    (line,) = [n for n, t in enumerate(lines, 1) if "default/nope" in t]
    column = lines[line - 1].index('"to"' if suffix == ".json" else "to:") + 1
    request = load_request_file(str(path))[3].location
    assert request is not None and request.line != line  # the field is not the request's line
    code, _, err = run(capsys, "check", "-f", SEED, "--request", str(path))
    assert code == 2 and "default/nope" in err
    assert f"{path}:{line}:{column}: to: no workload or service default/nope" in err, err
    many[1] = {**good, "method": 7}  # a malformed request: read again with positions
    text = json.dumps(many, indent=1) if suffix == ".json" else yaml.safe_dump(many)
    path.write_text(text)
    with pytest.raises(InputError) as e:
        load_request_file(str(path))  # positions: the message names the field's line
    assert e.value.location is not None and e.value.location.line is not None
    code, _, err = run(capsys, "check", "-f", SEED, "--request", str(path))
    assert code == 2 and f"{e.value.location}:" in err, err


def test_check_request_decides_repeated_requests_alike(capsys, tmp_path):
    good = {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}
    other = {**good, "method": "DELETE"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps([good, other, good, other, good]))
    code, out, _ = run(capsys, "check", "-f", SEED, "--request", str(path), "-o", "json")
    docs = json.loads(out)
    assert code == 0 and docs[0] == docs[2] == docs[4] and docs[1] == docs[3]


def test_check_request_shows_progress_on_a_terminal_only(tmp_path):
    """A long check --request draws a progress bar on stderr when stderr is a
    terminal; stdout (the decisions) is the same either way."""
    import os
    import pty
    import subprocess
    import sys

    good = {"from": "default/frontend", "to": "default/backend", "path": "/api/v1/data"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{**good, "path": f"/api/v1/{i}"} for i in range(2500)]))
    args = [sys.executable, "-m", "meshauthz.cli.main", "check", "-f", SEED, "--request", str(path)]
    plain = subprocess.run(args, capture_output=True, text=True, timeout=600)
    master, slave = pty.openpty()
    try:
        tty = subprocess.run(args, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=600)
        os.close(slave)
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(master)
    assert plain.returncode == tty.returncode == 0
    assert tty.stdout == plain.stdout and plain.stdout.count("\n") >= 2500
    assert "deciding" not in plain.stderr and b"deciding" in drawn


def test_a_deny_for_an_unusable_custom_provider_says_why(tmp_path, capsys):
    # builder goldens custom-bad-*: for CUSTOM policies whose provider istiod cannot
    # use, it builds a deny filter in their place; the reason says so (seen by a new
    # user with a misspelt provider beside a good one)
    f = tmp_path / "custom.yaml"
    f.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: ext, namespace: default}\n"
        "spec: {selector: {matchLabels: {app: backend}}, action: CUSTOM, "
        "provider: {name: no-such-provider}, rules: [{to: [{operation: {paths: [/admin]}}]}]}\n"
    )
    _, out, err = run(
        capsys, "check", "-f", FIXED, "-f", str(f), "--from", "default/frontend",
        "--to", "default/backend", "--path", "/admin", "--ext-authz", "allow", "-o", "json",
    )  # fmt: skip
    d = json.loads(out)
    assert (d["decision"], d["stage"], d["policy"]) == ("DENY", "CUSTOM", "default/ext")
    assert "istiod cannot use the CUSTOM provider(s)" in d["reason"]
    assert "no-such-provider" in err  # the warning names it


def test_the_host_shown_is_the_host_sent(capsys):
    # the request's own Host header replaces the default one: the decision used
    # it, so the text and the JSON show it too
    args = ["check", "-f", SEED, "--plaintext", "--to", "default/backend", "-H", "Host: evil.com"]
    _, out, _ = run(capsys, *args)
    assert out.splitlines()[0].endswith("(Host: evil.com)"), out
    _, out, _ = run(capsys, *args, "-o", "json")
    assert json.loads(out)["request"]["host"] == "evil.com"
    # without one, the default
    _, out, _ = run(capsys, *args[:-2])
    assert out.splitlines()[0].endswith("(Host: backend.default.svc.cluster.local)"), out

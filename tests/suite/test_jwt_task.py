"""A raw JWT whose keys live at a jwksUri, tested offline: the istio.io task
"Authorization with JWT" with Istio's own sample tokens and keys.

``check``/``explain --jwks URI=FILE`` and a suite's ``jwks:`` give the keys
istiod would fetch from the RequestAuthentication's jwksUri. The expectations
are the task's stated outcomes (tests/conformance/istio.io/README.md names each
snippet); the jwt_authn answers behind them (200, 401 and its body) are also
checked against a real Envoy given the same filter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshauthz.cli.main import main
from meshauthz.mesh.loading import load_mesh
from meshauthz.suite import run_paths
from meshauthz.translate.requestauthn import jwt_authentication
from tests.conftest import CONFORMANCE, REPO

TASK = REPO / "tests" / "conformance" / "istio.io" / "authz-jwt"
SAMPLES = CONFORMANCE / "security" / "tools" / "jwt" / "samples"
JWKS_URI = (
    "https://raw.githubusercontent.com/istio/istio/release-1.8/security/tools/jwt/samples/jwks.json"
)
DEMO = (SAMPLES / "demo.jwt").read_text().strip()
GROUPS = (SAMPLES / "groups-scope.jwt").read_text().strip()
SLEEP_TO_HTTPBIN = {"from": "foo/sleep", "to": "foo/httpbin:8000", "path": "/headers"}


def run(capsys: Any, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def task_dir(tmp_path: Path, *policies: str) -> Path:
    """The task's cluster: Istio's httpbin and sleep samples applied with ``-n foo``
    (and injected, as the task's ``istioctl kube-inject`` does), plus its manifests."""
    d = tmp_path / "task"
    d.mkdir(exist_ok=True)
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "foo", "labels": {"istio-injection": "enabled"}},
        }
    ]
    for sample in ("httpbin/httpbin.yaml", "sleep/sleep.yaml"):
        for doc in yaml.safe_load_all((CONFORMANCE / "samples" / sample).read_text()):
            if doc:
                doc["metadata"]["namespace"] = "foo"
                docs.append(doc)
    (d / "apps.yaml").write_text(yaml.safe_dump_all(docs))
    for p in policies:
        (d / p).write_text((TASK / p).read_text())
    return d


def case(name: str, expect: Any, token: str | None = None, **kw: Any) -> dict[str, Any]:
    request: dict[str, Any] = {**SLEEP_TO_HTTPBIN, **kw}
    if token is not None:
        request["headers"] = {"authorization": f"Bearer {token}"}
    return {"name": name, "request": request, "expect": expect}


# The task's steps: (manifests in force, [(case, status the task states)]).
STEPS = [
    (
        ("requestauthentication.yaml",),
        [("_2 invalid token", "invalidToken", 401), ("_3 no token", None, 200)],
    ),
    (
        ("requestauthentication.yaml", "require-jwt.yaml"),
        [("_6 demo.jwt", DEMO, 200), ("_7 no token", None, 403)],
    ),
    (
        ("requestauthentication.yaml", "require-jwt-groups.yaml"),
        [("_10 groups-scope.jwt", GROUPS, 200), ("_11 demo.jwt", DEMO, 403)],
    ),
]


def write_suite(d: Path, cases: list[tuple[str, str | None, int]], jwks: Any) -> Path:
    suite = {
        "resources": ["."],
        "jwks": {JWKS_URI: jwks},
        "cases": [
            case(name, {"decision": "ALLOW" if s == 200 else "DENY", "status": s}, tok)
            for name, tok, s in cases
        ],
    }
    p = d / "task.test.yaml"
    p.write_text(yaml.safe_dump(suite, sort_keys=False))
    return p


@pytest.mark.parametrize("step", range(len(STEPS)))
@pytest.mark.parametrize("form", ["file", "inline", "inline-json"])
def test_the_task_in_a_suite(tmp_path: Path, step: int, form: str) -> None:
    policies, cases = STEPS[step]
    d = task_dir(tmp_path, *policies)
    keys = (SAMPLES / "jwks.json").read_text()
    if form == "file":
        (tmp_path / "keys").mkdir()
        (tmp_path / "keys" / "jwks.json").write_text(keys)
        jwks: Any = "../keys/jwks.json"  # relative to the suite (outside its resources)
    else:
        jwks = json.loads(keys) if form == "inline" else keys
    result = run_paths([str(write_suite(d, cases, jwks))])
    (s,) = result.suites
    assert s.error is None and not s.findings
    got = {c.case.name: (c.outcome, c.decision and c.decision.status) for c in s.cases}
    assert got == {name: ("pass", status) for name, _, status in cases}


def test_without_the_keys_a_raw_token_is_not_decided(tmp_path: Path) -> None:
    """No keys for the jwksUri: the token cannot be verified offline, and the
    case fails (fail-closed 401) instead of passing on a guess."""
    d = task_dir(tmp_path, "requestauthentication.yaml", "require-jwt.yaml")
    p = write_suite(d, [("_6 demo.jwt", DEMO, 200)], "x")
    text = p.read_text().replace("jwks:\n  " + JWKS_URI + ": x\n", "")
    p.write_text(text)
    c = run_paths([str(p)]).suites[0].cases[0]
    assert c.outcome == "fail" and c.decision is not None
    assert c.decision.status == 401 and "cannot be verified offline" in c.decision.reason


def test_check_and_explain_take_jwks(tmp_path: Path, capsys: Any) -> None:
    d = str(task_dir(tmp_path, "requestauthentication.yaml", "require-jwt.yaml"))
    keys = f"{JWKS_URI}={SAMPLES / 'jwks.json'}"
    base = ["-f", d, "--from", "foo/sleep", "--to", "foo/httpbin:8000", "--path", "/headers"]
    for token, status in ((DEMO, 200), ("invalidToken", 401), (None, 403)):
        auth = ["-H", f"Authorization: Bearer {token}"] if token else []
        code, out, _ = run(capsys, "check", *base, *auth, "--jwks", keys, "-o", "json")
        assert (code, json.loads(out)["status"]) == (0, status)
        code, out, _ = run(capsys, "explain", *base, *auth, "--jwks", keys, "-o", "json")
        assert (code, json.loads(out)["status"]) == (0, status)
    code, out, _ = run(
        capsys, "check", *base, "-H", f"Authorization: Bearer {DEMO}", "--jwks", keys
    )
    assert code == 0 and out.startswith("ALLOW (200)")
    assert "allowed by ALLOW policy foo/require-jwt rule 0" in out
    code, out, _ = run(
        capsys, "explain", *base, "-H", "Authorization: Bearer invalidToken", "--jwks", keys
    )
    assert "Jwt is not in the form of Header.Payload.Signature" in out
    # Without --jwks the same valid token is a fail-closed denial that says why.
    code, out, _ = run(capsys, "check", *base, "-H", f"Authorization: Bearer {DEMO}")
    assert out.startswith("DENY (401)") and "cannot be verified offline" in out


@pytest.mark.parametrize("command", ["check", "explain", "mesh-up"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no-equals-sign", "'no-equals-sign': expected URI=FILE"),
        ("=file", "'=file': expected URI=FILE"),
        ("https://x/jwks=", "'https://x/jwks=': expected URI=FILE"),
        ("https://x/jwks=/no/such/file", "https://x/jwks=/no/such/file: no such file"),
        (
            f"https://x/jwks={SAMPLES / 'demo.jwt'}",
            f"https://x/jwks={SAMPLES / 'demo.jwt'}: not a JWKS Envoy accepts: "
            "Jwks is an invalid JSON",
        ),
    ],
)
def test_one_jwks_parser_one_message(
    tmp_path: Path, capsys: Any, command: str, value: str, message: str
) -> None:
    d = str(task_dir(tmp_path, "requestauthentication.yaml"))
    if command == "mesh-up":
        args = ["mesh", "up", d, "--state-dir", str(tmp_path / "state"), "--jwks", value]
    else:
        args = [command, "-f", d, "--from", "foo/sleep", "--to", "foo/httpbin", "--jwks", value]
    code, out, _ = run(capsys, *args, "-o", "json")
    assert code == 2
    error = json.loads(out)["error"]
    assert (error["code"], error["field"]) == ("usage", "--jwks")
    assert error["message"] == f"Invalid value for --jwks: {message}"
    assert not (tmp_path / "state").exists()


def test_jwks_with_a_config_dump_is_refused(capsys: Any) -> None:
    dump = str(REPO / "tests" / "decide" / "fixtures" / "seed-backend.config_dump.json")
    code, out, _ = run(
        capsys, "check", "--config-dump", dump, "--plaintext", "--to", ":80",
        "--jwks", f"{JWKS_URI}={SAMPLES / 'jwks.json'}", "-o", "json",
    )  # fmt: skip
    assert code == 2 and "the dump holds the proxy's keys" in json.loads(out)["error"]["message"]


@pytest.mark.parametrize(
    ("jwks", "line", "message"),
    [
        ("[a]", 3, "expected a mapping of jwksUri to a JWKS file or a JWKS"),
        ("{u: missing.json}", 3, "no such file: 'missing.json' (relative to the suite)"),
        ("{u: {nokeys: 1}}", 3, 'an inline JWKS needs "keys": a list of keys'),
        ("{u: 5}", 3, "expected a JWKS file (relative to the suite) or a JWKS"),
        ("{u: '{bad'}", 3, "not a JWKS Envoy accepts: Jwks is an invalid JSON"),
        ("{u: {keys: [1]}}", 3, "not a JWKS Envoy accepts: Jwks doesn't have any valid public key"),
        ("{u: apps.yaml}", 3, "not a JWKS Envoy accepts: Jwks is an invalid JSON"),
    ],
)
def test_bad_suite_jwks_names_file_line_and_field(
    tmp_path: Path, capsys: Any, jwks: str, line: int, message: str
) -> None:
    d = task_dir(tmp_path, "requestauthentication.yaml")
    p = d / "bad.test.yaml"
    p.write_text(
        "resources: [.]\ncases: [{name: a, request: {from: foo/sleep, to: foo/httpbin}, "
        f"expect: ALLOW}}]\njwks: {jwks}\n"
    )
    code, out, _ = run(capsys, "test", str(p), "-o", "json")
    assert code == 2
    err = json.loads(out)["suites"][0]["error"]
    assert (err["file"], err["line"], err["message"]) == (str(p), line, message)
    assert err["field"].startswith("jwks")


# --------------------------------------------------------------- a real Envoy agrees


def test_the_task_tokens_through_a_real_envoy(tmp_path: Path) -> None:
    """The jwt_authn filter istiod builds for jwt-example once it has fetched the
    keys (meshauthz inlines them from --jwks), in a real Envoy 1.40 and in
    meshauthz: same status and body for each of the task's tokens, same payload."""
    from meshauthz.envoy.jwt_authn import apply_jwt_authn
    from tests.envoy_filters.test_jwt_authn import _Envoy
    from tests.envoy_process import require_envoy

    exe = require_envoy("the JWT task's tokens against a real Envoy")
    d = task_dir(tmp_path, "requestauthentication.yaml")
    snap = load_mesh([str(d)], jwks={JWKS_URI: SAMPLES / "jwks.json"}).snapshot
    (ra,) = snap.request_authentications
    config = jwt_authentication(ra.spec.jwt_rules)
    assert config is not None
    envoy = _Envoy(config, exe, tmp_path)
    seen = {}
    try:
        for name, token in (("demo", DEMO), ("groups", GROUPS), ("invalid", "invalidToken")):
            headers = [("Authorization", f"Bearer {token}")]
            status, body, md = envoy.request("GET", "/headers", headers)
            ours = apply_jwt_authn(config, None, headers, "/headers")
            assert (ours.status or 200, ours.body or "") == (status, body), name
            if status == 200:
                assert ours.metadata == md, name
            seen[name] = status
    finally:
        envoy.close()
    assert seen == {"demo": 200, "groups": 200, "invalid": 401}

"""``meshauthz reach``: verdicts, conditions, witnesses, filters and output shapes."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from meshauthz.cli.main import main
from meshauthz.decide.engine import Decider
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.mesh.loading import load_mesh
from tests.conftest import EXAMPLES

SEED = str(EXAMPLES / "seed")
FIXED = str(EXAMPLES / "seed-fixed")
ROW_KEYS = {
    "from",
    "to",
    "port",
    "protocol",
    "verdict",
    "conditions",
    "allowedWitness",
    "deniedWitness",
}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def rows(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code, out, _ = run(capsys, "reach", *args, "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"rows", "istioVersion"}
    for r in doc["rows"]:
        assert set(r) == ROW_KEYS
    result: list[dict[str, Any]] = doc["rows"]
    return result


def cell(rs: list[dict[str, Any]], src: str, dst: str, port: int = 80) -> dict[str, Any]:
    (r,) = [r for r in rs if r["from"] == src and r["to"] == dst and r["port"] == port]
    return r


def decided(paths: str, request: dict[str, Any]) -> str:
    snap = load_mesh([paths]).snapshot
    return Decider(snap).decide(resolve(request_from_data(request), snap)).verdict


def test_seed_frontend_to_backend_is_none_because_of_the_deny(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rs = rows(capsys, "-f", SEED)
    r = cell(rs, "default/frontend", "default/backend")
    assert r["verdict"] == "none" and r["protocol"] == "http"
    assert r["conditions"] is None and r["allowedWitness"] is None
    assert r["deniedWitness"]["from"] == "default/frontend"
    assert decided(SEED, r["deniedWitness"]) == "DENY"
    # no policy selects the frontend: everyone reaches it, plaintext callers too
    for src in ("default/backend", "default/frontend", "plaintext"):
        assert cell(rs, src, "default/frontend")["verdict"] == "all"
    code, out, _ = run(capsys, "reach", "-f", SEED)
    assert code == 0
    assert "denied by" not in out  # the stage's own wording, as diff prints it
    assert "DENY by default/deny-all-backend rule 0 (DENY) at " in out


def test_seed_fixed_frontend_gets_get_api_v1_data_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rs = rows(capsys, "-f", FIXED)
    r = cell(rs, "default/frontend", "default/backend")
    assert r["verdict"] == "some"
    assert r["conditions"] == (
        "methods GET and paths /api/v1/data [default/allow-frontend-get-data rule 0]"
    )
    allowed, denied = r["allowedWitness"], r["deniedWitness"]
    assert (allowed["method"], allowed["path"]) == ("GET", "/api/v1/data")
    assert decided(FIXED, allowed) == "ALLOW"
    assert decided(FIXED, denied) == "DENY"
    # another identity and plaintext callers get nothing
    assert cell(rs, "default/backend", "default/backend")["verdict"] == "none"
    assert cell(rs, "plaintext", "default/backend")["verdict"] == "none"


def test_filters_narrow_callers_destinations_and_ports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rs = rows(capsys, "-f", FIXED, "--from", "default/frontend", "--to", "app=backend")
    assert [(r["from"], r["to"]) for r in rs] == [("default/frontend", "default/backend")]
    rs = rows(capsys, "-f", FIXED, "--from", "plaintext", "--to", "default")
    assert {r["from"] for r in rs} == {"plaintext"}
    assert {r["to"] for r in rs} == {"default/backend", "default/frontend"}
    assert rows(capsys, "-f", FIXED, "--port", "8080") == []
    code, _out, err = run(capsys, "reach", "-f", FIXED, "--to", "nowhere/nothing")
    assert code == 2 and "--to nowhere/nothing: selects no workload" in err


def test_callers_given_by_identity_or_address(capsys: pytest.CaptureFixture[str]) -> None:
    rs = rows(
        capsys,
        "-f",
        FIXED,
        "--caller",
        "principal=cluster.local/ns/default/sa/frontend,ip=10.0.0.9",
        "--caller",
        "ip=203.0.113.7",
        "--to",
        "default/backend",
    )
    ident = cell(
        rs, "principal=cluster.local/ns/default/sa/frontend,ip=10.0.0.9", "default/backend"
    )
    assert ident["verdict"] == "some"
    assert ident["allowedWitness"]["from"] == {
        "principal": "cluster.local/ns/default/sa/frontend",
        "ip": "10.0.0.9",
    }
    plain = cell(rs, "ip=203.0.113.7", "default/backend")
    assert plain["verdict"] == "none"
    assert plain["deniedWitness"]["from"] == {"plaintext": True, "ip": "203.0.113.7"}
    for bad in ("principal=", "host=x", "ip=not-an-ip"):
        code, out, _err = run(capsys, "reach", "-f", FIXED, "--caller", bad, "-o", "json")
        assert code == 2 and json.loads(out)["error"]["field"] == "--caller"


def test_csv_has_the_json_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "reach", "-f", FIXED, "-o", "csv")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert set(table[0]) == ROW_KEYS
    some = [r for r in table if r["verdict"] == "some"]
    assert len(some) == 1 and json.loads(some[0]["allowedWitness"])["path"] == "/api/v1/data"


def test_the_text_matrix_fits_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "reach", "-f", FIXED)
    assert code == 0
    matrix = out.split("\n\n")[0].splitlines()
    assert matrix[0].split() == ["D1", "D2"]
    assert matrix[2].split() == ["default/frontend", "some[2]", "all"]
    assert all(len(line) <= 100 for line in out.splitlines() if not line.startswith("    "))
    assert "allowed when: methods GET and paths /api/v1/data" in out


def test_dot_draws_one_edge_per_row_coloured_by_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "reach", "-f", FIXED, "-o", "dot")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "digraph reach {" and lines[-1] == "}"
    edges = [line for line in lines if "->" in line]
    assert len(edges) == len(rows(capsys, "-f", FIXED))
    assert '"default/frontend" -> "default/backend" [color="#f9a825", label="80 some"];' in (
        line.strip() for line in edges
    )
    assert "subgraph cluster_1 {" in out and 'label="default";' in out


def test_html_page_is_self_contained_and_holds_the_rows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "reach.html"
    code, out, _ = run(capsys, "reach", "-f", FIXED, "--html", str(target), "-o", "json")
    assert code == 0
    html = target.read_text()
    # nothing fetched from the network: no external script, style, image or font
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    blob = re.search(r'<script id="reach-data" type="application/json">(.*?)</script>', html, re.S)
    assert blob is not None
    data = json.loads(blob.group(1))
    shown = [{k: r[k] for k in ROW_KEYS} for r in data["rows"]]
    assert shown == json.loads(out)["rows"]
    (some,) = [r for r in data["rows"] if r["verdict"] == "some"]
    assert {d["policy"] for d in some["deciding"]} == {"default/allow-frontend-get-data", None}
    assert any(
        d["file"].endswith("allow-frontend-get-data.yaml") and d["line"] == 13
        for d in some["deciding"]
        if d["policy"]
    )
    code, _, err = run(capsys, "reach", "-f", FIXED, "--html", str(tmp_path / "no" / "x.html"))
    assert code == 2 and "--html" in err


STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: default}
spec: {mtls: {mode: STRICT}}
"""
XFF = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: xff, namespace: default}
spec:
  selector: {matchLabels: {app: frontend}}
  action: DENY
  rules: [{when: [{key: "request.headers[x-forwarded-for]", values: ["192.0.2.1"]}]}]
"""


def test_strict_mtls_leaves_plaintext_callers_nothing(
    capsys: pytest.CaptureFixture[str], write: Any
) -> None:
    rs = rows(capsys, "-f", SEED, "-f", write("strict.yaml", STRICT), "--to", "default/frontend")
    assert cell(rs, "plaintext", "default/frontend")["verdict"] == "none"
    assert cell(rs, "default/backend", "default/frontend")["verdict"] == "all"
    denied = cell(rs, "plaintext", "default/frontend")["deniedWitness"]
    assert denied["from"] == {"plaintext": True, "ip": "192.0.2.10"}


def test_what_the_engine_cannot_encode_is_unknown_with_the_reason(
    capsys: pytest.CaptureFixture[str], write: Any
) -> None:
    rs = rows(capsys, "-f", SEED, "-f", write("xff.yaml", XFF), "--to", "default/frontend")
    r = cell(rs, "default/backend", "default/frontend")
    assert r["verdict"] == "unknown"
    assert "x-forwarded-for" in r["conditions"]
    assert r["allowedWitness"] is None and r["deniedWitness"] is None


def test_a_tcp_port_s_conditions_leave_out_the_http_only_fields_istiod_left_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # On TCP istiod leaves a DENY rule's methods out: it denies every
    # connection from 10.0.0.0/8, which has no method.
    d = tmp_path / "tcp"
    d.mkdir()
    for f in ("backend.yaml", "frontend.yaml", "namespace.yaml"):
        text = (EXAMPLES / "seed" / f).read_text()
        (d / f).write_text(text.replace("name: http\n", "name: tcp\n"))
    (d / "deny.yaml").write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: deny-get, namespace: default}\n"
        "spec:\n  selector: {matchLabels: {app: backend}}\n  action: DENY\n  rules:\n"
        "  - from: [{source: {ipBlocks: [10.0.0.0/8]}}]\n"
        "    to: [{operation: {methods: [GET]}}]\n"
    )
    caller = "principal=cluster.local/ns/other/sa/x"
    got = cell(rows(capsys, "-f", str(d), "--caller", caller), caller, "default/backend")
    assert got["protocol"] == "tcp" and got["verdict"] == "some"
    assert got["conditions"] == "any request; unless ipBlocks 10.0.0.0/8 [default/deny-get rule 0]"

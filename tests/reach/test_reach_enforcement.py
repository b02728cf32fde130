"""Rows the sidecar chain alone cannot answer: never a guessed verdict.

- an ambient destination a waypoint can be in front of: unknown, with the reason
  (one that ztunnel alone guards is answered: test_reach_ambient.py);
- a destination without a sidecar that ztunnel does not capture: all (nothing
  enforces: `check` answers ALLOW at the "no sidecar" stage);
- a gateway row where policies select the gateway itself, for a protocol the
  gateway receives on no port: unknown (its own filters run first; the rows it
  can carry are answered through both chains: test_reach_gateway.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meshauthz.cli.main import main
from tests.conftest import EXAMPLES, REPO

SUITES = REPO / "tests" / "istio_suites"


def rows(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    with pytest.raises(SystemExit) as exc:
        main(["reach", *args, "-o", "json"])
    assert exc.value.code == 0
    return list(json.loads(capsys.readouterr().out)["rows"])


def test_ambient_destinations_behind_a_waypoint_are_unknown(capsys):
    got = rows(capsys, "-f", str(EXAMPLES / "seed-ambient-waypoint"))
    assert got and {r["verdict"] for r in got} == {"unknown"}
    assert all("ambient mode" in r["conditions"] for r in got)


def test_a_destination_nothing_enforces_allows_all(capsys, tmp_path: Path):
    d = tmp_path / "outside"
    shutil.copytree(EXAMPLES / "seed", d)
    ns = d / "namespace.yaml"
    ns.write_text(ns.read_text().replace("istio-injection: enabled", "istio-injection: disabled"))
    got = rows(capsys, "-f", str(d), "--to", "default/backend")
    assert got and {r["verdict"] for r in got} == {"all"}
    assert all("nothing enforces" in r["conditions"] for r in got)
    # as check answers: the DENY {} policy is never enforced without a sidecar
    with pytest.raises(SystemExit):
        main(["check", "-f", str(d), "--from", "default/frontend", "--to", "default/backend",
              "-o", "json"])  # fmt: skip
    assert json.loads(capsys.readouterr().out)["stage"] == "no sidecar"


def test_gateway_rows_with_the_gateways_own_policies(capsys):
    suite = SUITES / "TestAuthz_IngressGateway"
    got = rows(
        capsys,
        "-f", str(SUITES / "echo"), "-f", str(suite / "policies.yaml"),
        "--mesh-config", str(suite / "mesh-config.yaml"), "--to", "echo1/b",
    )  # fmt: skip
    gateway = [r for r in got if r["from"].startswith("gateway:")]
    by_protocol = {
        p: {r["verdict"] for r in gateway if r["protocol"] == p} for p in ("http", "tcp")
    }
    # the gateway's DENY rules take some of its clients' requests away
    assert by_protocol == {"http": {"some"}, "tcp": {"unknown"}}
    for r in gateway:
        if r["protocol"] == "http":
            assert "istio-system/policy-b" in r["conditions"]
            assert r["deniedWitness"]["to"] == "istio-system/istio-ingressgateway"
            assert r["allowedWitnessOnward"]["from"] == "istio-system/istio-ingressgateway"
        else:
            assert "istio-system/policy-b" in r["conditions"]
            assert "receives no tcp" in r["conditions"]
    # the other callers are still answered
    assert {r["verdict"] for r in got if not r["from"].startswith("gateway:")} - {"unknown"}

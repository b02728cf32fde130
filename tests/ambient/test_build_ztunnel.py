"""``meshauthz build --ztunnel --workload NS/NAME``: what ztunnel holds, in
ztunnel's config-dump form."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meshauthz.ambient.authorization import authorization_from_dump
from meshauthz.cli.main import main
from tests.conftest import EXAMPLES

AMBIENT_NS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels:
    istio.io/dataplane-mode: ambient
"""


@pytest.fixture
def ambient_seed(tmp_path: Path) -> str:
    """The seed's manifests with the namespace in ambient mode."""
    for f in (EXAMPLES / "seed").glob("*.yaml"):
        if not f.name.endswith(".test.yaml"):
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "namespace.yaml").write_text(AMBIENT_NS)
    return str(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def test_build_ztunnel_prints_the_workload_and_its_policies(capsys, ambient_seed):
    code, out, err = run(
        capsys,
        "build",
        "-f",
        ambient_seed,
        "--ztunnel",
        "--workload",
        "default/backend",
        "-o",
        "json",
    )
    assert code == 0
    dump = json.loads(out)
    (w,) = dump["workloads"]
    assert w["protocol"] == "HBONE"
    assert w["authorizationPolicies"] == [
        "default/allow-frontend-get-data",
        "default/deny-all-backend",
    ]
    policies = {p["name"]: authorization_from_dump(p) for p in dump["policies"]}
    # istiod dropped the ALLOW's only rule (it has HTTP fields): it allows nothing.
    assert policies["allow-frontend-get-data"].rules == ()
    # The DENY's empty rule is a rule without clauses: it matches every connection.
    assert policies["deny-all-backend"].rules == ((),)
    assert "accepted with a warning (UnsupportedValue): ztunnel does not support HTTP" in err


def test_build_ztunnel_on_a_sidecar_workload_says_so(capsys):
    code, _, err = run(
        capsys, "build", "-f", str(EXAMPLES / "seed"), "--ztunnel", "--workload", "default/backend"
    )
    assert code == 0
    assert (
        "not captured by ztunnel (namespace default is labelled istio-injection=enabled for sidecar injection)"
        in err
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--ztunnel",),
        ("--ztunnel", "--namespace", "default"),
        ("--ztunnel", "--workload", "default/backend", "--port", "80"),
        ("--ztunnel", "--workload", "default/backend", "--istiod-flag", "NOPE=true"),
        (
            "--ztunnel",
            "--workload",
            "default/backend",
            "--istiod-flag",
            "PILOT_AUTO_ALLOW_WAYPOINT_POLICY",
        ),
    ],
)
def test_build_ztunnel_usage_errors(capsys, ambient_seed, args):
    code, _, _ = run(capsys, "build", "-f", ambient_seed, *args)
    assert code == 2


def test_build_ztunnel_unknown_workload(capsys, ambient_seed):
    code, _, err = run(
        capsys, "build", "-f", ambient_seed, "--ztunnel", "--workload", "default/nope"
    )
    assert code == 2
    assert "--workload: no workload default/nope" in err


def test_dry_run_flag_sends_dry_run_policies(capsys, ambient_seed):
    Path(ambient_seed, "dry.yaml").write_text(
        """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: dry
  namespace: default
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules: [{}]
"""
    )
    base = ("build", "-f", ambient_seed, "--ztunnel", "--workload", "default/backend", "-o", "json")
    _, out, _ = run(capsys, *base)
    assert "dry" not in [p["name"] for p in json.loads(out)["policies"]]
    flag = "AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY=true"
    _, out, _ = run(capsys, *base, "--istiod-flag", flag)
    dry = [p for p in json.loads(out)["policies"] if p["name"] == "dry"]
    assert dry and dry[0]["dryRun"] is True and dry[0]["scope"] == "Namespace"

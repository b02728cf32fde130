"""Destinations no sidecar enforces: the symbolic engine never answers
"equivalent" for ztunnel-enforced (ambient) destinations, whose decision it does
not model, and knows that a destination nothing enforces allows everything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meshauthz.cli.main import main
from tests.conftest import EXAMPLES


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return int(exc.value.code or 0), json.loads(capsys.readouterr().out)


def relabel(tmp_path: Path, name: str, label: str) -> str:
    d = tmp_path / name
    shutil.copytree(EXAMPLES / "seed-fixed", d)
    ns = d / "namespace.yaml"
    ns.write_text(ns.read_text().replace("istio-injection: enabled", label))
    return str(d)


def test_moving_to_ambient_is_unknown_not_equivalent(capsys, tmp_path):
    # the seed-fixed ALLOW has HTTP fields: in ambient mode ztunnel drops the rule
    # and denies every request (tests/ambient), which the engine does not model
    ambient = relabel(tmp_path, "ambient", "istio.io/dataplane-mode: ambient")
    code, doc = run(capsys, "diff", str(EXAMPLES / "seed-fixed"), ambient, "-o", "json")
    assert code == 1 and doc["equivalent"] is False
    reasons = {u["workload"]: u["reason"] for u in doc["unknown"]}
    assert (
        "default/backend" in reasons
        and "ambient mode on the new side" in reasons["default/backend"]
    )


def test_a_destination_without_a_sidecar_on_one_side_is_unknown(capsys, tmp_path):
    outside = relabel(tmp_path, "outside", "istio-injection: disabled")
    code, doc = run(capsys, "diff", str(EXAMPLES / "seed-fixed"), outside, "-o", "json")
    assert code == 1 and doc["equivalent"] is False
    assert any("has no sidecar" in u["reason"] for u in doc["unknown"])


def test_no_sidecar_on_both_sides_is_the_same(capsys, tmp_path):
    a = relabel(tmp_path, "a", "istio-injection: disabled")
    b = relabel(tmp_path, "b", "istio-injection: disabled")
    # a policy change nobody enforces changes no decision
    policy = Path(b) / "allow-frontend-get-data.yaml"
    policy.write_text(policy.read_text().replace('"GET"', '"POST"'))
    code, doc = run(capsys, "diff", a, b, "-o", "json")
    assert (code, doc["equivalent"], doc["unknown"]) == (0, True, [])

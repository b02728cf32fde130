"""Destinations no sidecar enforces: the symbolic engine never answers
"equivalent" for ztunnel-enforced (ambient) destinations, whose decision it does
not model, and knows that a destination nothing enforces allows everything
(``check``'s "no sidecar" stage), on one side or both."""

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


@pytest.mark.parametrize("outside_is_new", [True, False])
def test_a_destination_without_a_sidecar_on_one_side_allows_everything_there(
    capsys, tmp_path, outside_is_new
):
    """Nothing enforces on the side without a sidecar: what the other side denies
    is opened (or closed), nothing else, each witness as check decides it."""
    outside = relabel(tmp_path, "outside", "istio-injection: disabled")
    enforced = str(EXAMPLES / "seed-fixed")
    old, new = (enforced, outside) if outside_is_new else (outside, enforced)
    code, doc = run(capsys, "diff", old, new, "-o", "json")
    assert code == 1 and doc["equivalent"] is False and doc["unknown"] == []
    changes = doc["opened" if outside_is_new else "closed"]
    assert doc["closed" if outside_is_new else "opened"] == []
    # the seed-fixed backend denies all but frontend's GET /api/v1/data
    assert {c["workload"] for c in changes} == {"default/backend"}
    sides = {"old": old, "new": new}
    request = tmp_path / "witness.json"
    for c in changes:
        request.write_text(json.dumps(c["witness"]))
        for side, mesh in sides.items():
            _, decided = run(capsys, "check", "-f", mesh, "--request", str(request), "-o", "json")
            unenforced = (side == "new") == outside_is_new
            assert decided["decision"] == c[side]["decision"]
            assert decided["decision"] == ("ALLOW" if unenforced else "DENY")
            if unenforced:
                assert decided["stage"] == "no sidecar"


def test_redundant_and_always_skip_nothing_enforced(tmp_path):
    from meshauthz.mesh.loading import load_mesh
    from meshauthz.symbolic.redundant import always, redundant

    snap = load_mesh((relabel(tmp_path, "outside", "istio-injection: disabled"),)).snapshot
    # no policy decides anything where nothing enforces: none is reported redundant
    assert redundant(snap).findings == []
    kinds = {(a.destination.workload, a.kind) for a in always(snap)}
    assert ("default/backend", "always-allows") in kinds
    assert not any(k == "always-denies" for _, k in kinds)


def test_no_sidecar_on_both_sides_is_the_same(capsys, tmp_path):
    a = relabel(tmp_path, "a", "istio-injection: disabled")
    b = relabel(tmp_path, "b", "istio-injection: disabled")
    # a policy change nobody enforces changes no decision
    policy = Path(b) / "allow-frontend-get-data.yaml"
    policy.write_text(policy.read_text().replace('"GET"', '"POST"'))
    code, doc = run(capsys, "diff", a, b, "-o", "json")
    assert (code, doc["equivalent"], doc["unknown"]) == (0, True, [])


def test_diff_text_names_the_unenforced_side(capsys, tmp_path):
    outside = relabel(tmp_path, "outside", "istio-injection: disabled")
    with pytest.raises(SystemExit) as exc:
        main(["diff", str(EXAMPLES / "seed-fixed"), outside])
    out = capsys.readouterr().out
    assert exc.value.code == 1
    assert "    new: ALLOW: nothing enforces (no sidecar)" in out.splitlines()

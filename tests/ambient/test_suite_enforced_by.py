"""Suites can assert ``enforcedBy``: the deciding enforcement point, or the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshauthz.cli.main import main
from tests.conftest import EXAMPLES

SUITE = """\
name: t
resources: [{res}]
cases:
  - name: c
    request: {{from: default/frontend, to: default/backend, path: /api/v1/data}}
    expect: {{decision: DENY, enforcedBy: {eb}}}
"""


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, res: str, eb: str) -> tuple[int, str]:
    f = tmp_path / "t.test.yaml"
    f.write_text(SUITE.format(res=res, eb=eb))
    with pytest.raises(SystemExit) as exc:
        main(["test", str(f)])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out + err


@pytest.mark.parametrize(
    ("example", "eb", "code"),
    [
        ("seed", "sidecar", 0),
        ("seed", "[sidecar]", 0),
        ("seed", "ztunnel", 1),
        ("seed-ambient", "ztunnel", 0),
        ("seed-ambient", "sidecar", 1),
        ("seed-ambient-waypoint", "ztunnel", 0),
        ("seed-ambient-waypoint", "[waypoint, ztunnel]", 0),
        ("seed-ambient-waypoint", "[ztunnel]", 1),
    ],
)
def test_enforced_by(capsys, tmp_path, example, eb, code):
    got, out = run(capsys, tmp_path, str(EXAMPLES / example), eb)
    assert got == code, out
    if code == 1:
        assert "expected enforced by" in out or "expected the path" in out


def test_enforced_by_mismatch_message(capsys, tmp_path):
    _, out = run(capsys, tmp_path, str(EXAMPLES / "seed-ambient-waypoint"), "[ztunnel]")
    assert "expected the path ztunnel, got waypoint -> ztunnel" in out


@pytest.mark.parametrize("eb", ["envoy", "[none]", "3"])
def test_bad_enforced_by_is_an_input_error(capsys, tmp_path, eb):
    code, out = run(capsys, tmp_path, str(EXAMPLES / "seed"), eb)
    assert code == 2
    assert "enforcedBy" in out and "expected sidecar, waypoint, ztunnel or none" in out

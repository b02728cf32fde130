"""The ambient checks (``meshauthz.ambient.lint``) as analyze findings: the
same findings validate warns about, each under its MA code with the
istioctl/Kiali code as an equivalent, on the ambient examples."""

from __future__ import annotations

import json

import pytest

from meshauthz.ambient.lint import ambient_findings
from meshauthz.analyze.checks.ambient import _CONVERSION
from meshauthz.analyze.codes import CODES
from meshauthz.mesh.loading import load_mesh
from tests.analyze.helpers import analyze_json, run
from tests.conftest import EXAMPLES

AMBIENT = str(EXAMPLES / "seed-ambient")
WAYPOINT = str(EXAMPLES / "seed-ambient-waypoint")


def test_every_lint_code_has_an_ma_code_with_the_equivalent():
    for lint_code, (ma, _, _) in _CONVERSION.items():
        assert ma in CODES
        if lint_code.startswith(("IST", "KIA")):
            assert lint_code in CODES[ma].equivalents


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            AMBIENT,
            {
                ("MA1011", "default/allow-frontend-get-data", ("KIA0109",)),
                ("MA1012", "default/allow-frontend-get-data", ("KIA0110",)),
            },
        ),
        (
            WAYPOINT,
            {
                ("MA1012", "default/allow-frontend-get-data", ("KIA0110",)),
                ("MA2012", "default/allow-frontend-get-data", ()),
            },
        ),
    ],
)
def test_the_ambient_examples_get_the_ambient_codes(capsys, example, expected):
    _, doc = analyze_json(capsys, example)
    ours = {c for _, (c, _, _) in _CONVERSION.items()}
    got = {
        (
            f["code"],
            f"{f['resource']['namespace']}/{f['resource']['name']}",
            tuple(f["equivalents"]),
        )
        for f in doc["findings"]
        if f["code"] in ours
    }
    assert got == expected


@pytest.mark.parametrize("example", [AMBIENT, WAYPOINT])
def test_analyze_reports_what_validate_warns_about_once_each(capsys, example):
    """One check, two front ends: validate's ambient warnings and analyze's
    ambient findings are the same list, converted."""
    status, out, _ = run(capsys, "validate", example, "-o", "json")
    assert status == 0
    warned = sorted(
        (_CONVERSION[f["code"]][0], f["message"])
        for f in json.loads(out)["findings"]
        if f["code"] in _CONVERSION
    )
    _, doc = analyze_json(capsys, example)
    found = sorted(
        (f["code"], f["message"])
        for f in doc["findings"]
        if f["code"] in {c for c, _, _ in _CONVERSION.values()}
    )
    assert warned and found == warned
    lint = load_mesh([example]).snapshot
    assert len(found) == len(ambient_findings(lint))


def test_ambient_codes_are_suppressed_by_their_kiali_code(capsys):
    _, doc = analyze_json(capsys, AMBIENT, "-S", "KIA0110")
    assert "MA1012" not in {f["code"] for f in doc["findings"]}
    assert "MA1011" in {f["code"] for f in doc["findings"]}


def test_ambient_findings_point_at_the_field(capsys):
    _, doc = analyze_json(capsys, AMBIENT)
    (f,) = [f for f in doc["findings"] if f["code"] == "MA1012"]
    assert (f["field"], f["line"]) == ("spec.selector", 8)


@pytest.mark.parametrize("example", [AMBIENT, WAYPOINT])
def test_workloads_ztunnel_captures_are_in_the_mesh(capsys, example):
    """The namespace's istio.io/dataplane-mode: ambient puts the backend in the
    mesh: its policies select a workload (no MA1001/IST0127)."""
    _, doc = analyze_json(capsys, example)
    assert "MA1001" not in [f["code"] for f in doc["findings"]]

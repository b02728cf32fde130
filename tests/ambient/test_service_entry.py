"""A ServiceEntry bound to a waypoint: a request whose Host is one of its hosts
goes through the waypoint's chain for that ServiceEntry, where the policies with
a ServiceEntry targetRef apply.

Expectations: pilot/pkg/model/policyattachment_test.go TestPolicyMatcher ("service
entry attached policy": attached; "service entry policy selecting": a ServiceEntry
targetRef does not attach to the chain of a Service of the same name) and
pilot/pkg/serviceregistry/ambient/authorization_test.go TestWaypointPolicyStatusCollection
("single-bind-success-serviceentry": bound to the namespace's waypoint;
"single-bind-no-waypoint-serviceentry": istio.io/use-waypoint=none binds nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshauthz.cli.main import main

SE_MESH = Path(__file__).parent / "meshes" / "waypoint-serviceentry.yaml"
CLIENT = "cluster.local/ns/ns/sa/client"
WAYPOINT = "cluster.local/ns/ns/sa/waypoint"
TO_SE = ("--from", "ns/client", "--to", "ns/ext", "--port", "8080", "--host", "ext.example.com")


def run(capsys: pytest.CaptureFixture[str], command: str, *args: str) -> dict[str, Any]:
    with pytest.raises(SystemExit) as exc:
        main([command, *args, "-o", "json"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def hops(d: dict[str, Any]) -> list[tuple[str, str | None, str, str | None]]:
    return [(h["enforcer"], h["identity"], h["decision"], h["policy"]) for h in d["hops"]]


def test_a_service_entry_host_is_decided_by_its_waypoint_chain(capsys):
    d = run(capsys, "check", "-f", str(SE_MESH), *TO_SE)
    assert hops(d) == [
        ("waypoint", CLIENT, "ALLOW", "ns/se-at-waypoint"),
        ("ztunnel", WAYPOINT, "ALLOW", "ns/l4-at-ztunnel"),
    ]
    assert (d["decision"], d["status"], d["policy"]) == ("ALLOW", 200, "ns/se-at-waypoint")
    d = run(capsys, "check", "-f", str(SE_MESH), *TO_SE, "--method", "POST")
    assert hops(d) == [("waypoint", CLIENT, "DENY", None)]
    assert (d["decision"], d["status"], d["stage"]) == ("DENY", 403, "ALLOW")


def test_a_service_entry_target_ref_does_not_apply_to_a_service_of_the_same_name(capsys):
    d = run(capsys, "check", "-f", str(SE_MESH), "--from", "ns/client", "--to", "ns/ext:80",
            "--method", "POST")  # fmt: skip
    assert hops(d) == [
        ("waypoint", CLIENT, "ALLOW", None),
        ("ztunnel", WAYPOINT, "ALLOW", "ns/l4-at-ztunnel"),
    ]


def test_a_service_entry_that_opts_out_goes_straight_to_ztunnel(capsys, tmp_path):
    text = SE_MESH.read_text().replace(
        "  name: ext\n  namespace: ns\n  labels: {istio.io/use-waypoint: waypoint}\nspec:\n  hosts",
        "  name: ext\n  namespace: ns\n  labels: {istio.io/use-waypoint: none}\nspec:\n  hosts",
    )
    assert "use-waypoint: none" in text
    (tmp_path / "m.yaml").write_text(text)
    d = run(capsys, "check", "-f", str(tmp_path / "m.yaml"), *TO_SE)
    assert hops(d) == [("ztunnel", CLIENT, "DENY", None)]
    assert d["status"] == "connection reset"


def test_a_host_whose_service_entry_does_not_select_the_destination_is_the_workload(
    capsys, tmp_path
):
    text = SE_MESH.read_text().replace("workloadSelector: {labels: {app: ext}}",
                                       "workloadSelector: {labels: {app: other}}")  # fmt: skip
    (tmp_path / "m.yaml").write_text(text)
    d = run(capsys, "check", "-f", str(tmp_path / "m.yaml"), *TO_SE)
    # addressed to the workload: the namespace binds no waypoint for it
    assert [h["enforcer"] for h in d["hops"]] == ["ztunnel"]


def test_explain_places_the_service_entry_policy_at_the_waypoint(capsys):
    d = run(capsys, "explain", "-f", str(SE_MESH), *TO_SE)
    where = {a["policy"]: a["enforcer"] for a in d["applicable"]}
    assert where == {"ns/se-at-waypoint": "waypoint", "ns/l4-at-ztunnel": "ztunnel"}


def test_to_a_service_entry_host_reaches_the_workloads_it_selects(capsys):
    d = run(capsys, "check", "-f", str(SE_MESH), "--from", "ns/client", "--to", "ext.example.com")
    assert (d["request"]["to"], d["request"]["port"], d["request"]["host"]) == (
        "ns/ext",
        8080,
        "ext.example.com",
    )
    assert hops(d) == [
        ("waypoint", CLIENT, "ALLOW", "ns/se-at-waypoint"),
        ("ztunnel", WAYPOINT, "ALLOW", "ns/l4-at-ztunnel"),
    ]


def test_to_a_service_entry_port_it_does_not_declare_is_an_input_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "-f", str(SE_MESH), "--from", "ns/client", "--to", "ext.example.com:81"])
    _, err = capsys.readouterr()
    assert exc.value.code == 2
    assert "to: service entry ns/ext has no port 81 (ports: 80)" in err

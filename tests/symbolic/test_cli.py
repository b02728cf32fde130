"""``meshauthz diff`` and ``meshauthz equiv`` through the command line: shapes,
exit codes, --base, --fail-on, --callers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from meshauthz.cli.main import main
from meshauthz.resources.istio_release import ISTIO
from tests.conftest import EXAMPLES

SEED = str(EXAMPLES / "seed")
FIXED = str(EXAMPLES / "seed-fixed")
TWINS = EXAMPLES / "twins"
WORKLOADS = ["-f", str(TWINS / "workloads.yaml")]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exc.value.code or 0), out, err


def test_diff_json_shape_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diff", SEED, FIXED, "-o", "json")
    doc = json.loads(out)
    assert code == 1
    assert set(doc) == {"equivalent", "opened", "closed", "unknown", "istioVersion"}
    assert doc["equivalent"] is False and doc["closed"] == [] and doc["unknown"] == []
    (change,) = doc["opened"]
    assert set(change) == {
        "workload",
        "port",
        "protocol",
        "description",
        "witness",
        "old",
        "new",
    }
    assert (change["workload"], change["port"], change["protocol"]) == (
        "default/backend",
        80,
        "http",
    )
    assert change["old"] == {"decision": "DENY", "policy": "default/deny-all-backend", "rule": 0}
    assert change["new"] == {
        "decision": "ALLOW",
        "policy": "default/allow-frontend-get-data",
        "rule": 0,
    }
    w = change["witness"]
    assert (w["method"], w["path"], w["to"]) == ("GET", "/api/v1/data", "default/backend")


def test_the_witness_is_a_request_check_decides_as_shown(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, out, _ = run(capsys, "diff", SEED, FIXED, "-o", "json")
    witness = json.loads(out)["opened"][0]["witness"]
    request = tmp_path / "witness.json"
    request.write_text(json.dumps(witness))
    for side, decision in ((SEED, "DENY"), (FIXED, "ALLOW")):
        _, out, _ = run(capsys, "check", "-f", side, "--request", str(request), "-o", "json")
        assert json.loads(out)["decision"] == decision


def test_fail_on_chooses_what_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "diff", SEED, FIXED, "--fail-on", "closed")[0] == 0
    assert run(capsys, "diff", SEED, FIXED, "--fail-on", "opened")[0] == 1
    assert run(capsys, "diff", FIXED, SEED, "--fail-on", "opened")[0] == 0
    assert run(capsys, "diff", SEED, SEED)[0] == 0


def test_diff_text(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "diff", FIXED, SEED)
    assert out.splitlines()[0] == "opened (NEW allows, OLD denied): none"
    assert "closed (NEW denies, OLD allowed):" in out
    assert (
        "  principals cluster.local/ns/default/sa/frontend and methods GET and paths "
        "/api/v1/data to default/backend:80\n" in out
    )


def test_diff_callers_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "diff", SEED, FIXED, "--callers", "workloads", "-o", "json")
    (change,) = json.loads(out)["opened"]
    assert change["witness"]["from"] == "default/frontend"


def test_diff_base_compares_with_a_git_revision(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(SEED, repo / "policies")

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "seed")
    (repo / "policies" / "deny-all-backend.yaml").unlink()
    shutil.copy(Path(FIXED) / "allow-nothing-backend.yaml", repo / "policies")
    monkeypatch.chdir(repo)
    code, out, _ = run(capsys, "diff", "--base", "HEAD", "policies", "-o", "json")
    doc = json.loads(out)
    assert code == 1 and doc["closed"] == []
    assert [c["witness"]["path"] for c in doc["opened"]] == ["/api/v1/data"]
    code, out, err = run(capsys, "diff", "--base", "no-such-rev", "policies")
    assert code == 2 and "no-such-rev" in err


def test_equiv_twin_and_not_twin(capsys: pytest.CaptureFixture[str]) -> None:
    one, twin = str(TWINS / "allow-frontend.yaml"), str(TWINS / "allow-frontend-twin.yaml")
    code, out, _ = run(capsys, "equiv", one, twin, *WORKLOADS, "-o", "json")
    assert code == 0
    assert json.loads(out) == {
        "equivalent": True,
        "differences": [],
        "unknown": [],
        "istioVersion": ISTIO.version,
    }
    wider = str(TWINS / "allow-frontend-wider.yaml")
    code, out, _ = run(capsys, "equiv", one, wider, *WORKLOADS, "-o", "json")
    doc = json.loads(out)
    assert code == 1 and doc["equivalent"] is False
    (difference,) = doc["differences"]
    assert difference["witness"]["path"] == "/health"
    assert difference["witness"]["method"] != "GET"
    assert difference["a"]["decision"] == "DENY" and difference["b"]["decision"] == "ALLOW"


@pytest.mark.parametrize(
    "args",
    [
        ["diff", SEED],
        ["diff", SEED, "no/such/dir"],
        ["equiv", str(TWINS / "allow-frontend.yaml"), str(TWINS / "allow-frontend-twin.yaml")],
    ],
    ids=["one-side", "missing", "no-workloads"],
)
def test_unusable_input_exits_2_with_a_json_error(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, _ = run(capsys, *args, "-o", "json")
    assert code == 2
    assert json.loads(out)["error"]["message"]


EXT = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ext
  namespace: default
spec:
  selector:
    matchLabels:
      app: backend
  action: CUSTOM
  provider:
    name: nowhere
  rules:
  - to:
    - operation:
        paths: ["/ext/*"]
"""


def test_diff_base_warns_at_the_working_trees_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NEW's documents that the revision has too are read once (what reading the
    revision made of them is reused); what is said about them names the working
    tree's file at the working tree's lines, as a fresh read does."""
    repo = tmp_path / "repo"
    shutil.copytree(SEED, repo / "policies")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    policies = repo / "policies" / "ext.yaml"
    policies.write_text(Path(SEED, "deny-all-backend.yaml").read_text() + "---\n" + EXT)
    (repo / "policies" / "deny-all-backend.yaml").unlink()
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "x"],
        cwd=repo,
        check=True,
    )
    # the first document grows by three lines; the CUSTOM policy after it is the same text
    text = policies.read_text()
    policies.write_text("# one\n# two\n# three\n" + text)
    monkeypatch.chdir(repo)
    _, _, err = run(capsys, "diff", "--base", "HEAD", "policies", "-o", "json")
    warnings = [line for line in err.splitlines() if "custom-provider-unknown" in line]
    assert len(warnings) == 2  # one per side
    _, out, _ = run(capsys, "validate", "policies")
    (fresh,) = [line for line in out.splitlines() if "custom-provider-unknown" in line]
    where = fresh.split(": ")[0]
    assert where.startswith("policies/ext.yaml:")
    assert warnings[1].startswith(where + ": ")
    assert not warnings[0].startswith("policies/")

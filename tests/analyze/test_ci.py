"""meshauthz where CI runs it: pre-commit hooks (tried with pre-commit
try-repo), the composite GitHub Action's steps, the pytest plugin for
*.test.yaml suites, and the kubectl plugin executable."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import EXAMPLES, REPO

BIN = Path(sys.executable).parent


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _repo(path: Path, files: dict[Path, Path]) -> Path:
    """A git repository at ``path`` holding copies of ``files`` (target -> source)."""
    path.mkdir(parents=True)
    for dst, src in files.items():
        if src.is_dir():
            shutil.copytree(
                src, path / dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy(src, path / dst)
    _git(path, "init", "-q")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "content")
    return path


def test_pre_commit_hooks_with_try_repo(tmp_path):
    """The hooks install meshauthz from the repository (language: python: pre-commit
    pip-installs it into its own environment, from the machine's package index)."""
    source = _repo(
        tmp_path / "meshauthz",
        {
            Path(n): REPO / n
            for n in ("src", "pyproject.toml", "README.md", ".pre-commit-hooks.yaml")
        },
    )
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache")}

    def try_repo(target: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "try-repo", str(source), "--all-files"],
            cwd=target,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    fixed = _repo(
        tmp_path / "fixed", {Path(p.name): p for p in (EXAMPLES / "seed-fixed").iterdir()}
    )
    run = try_repo(fixed)
    assert run.returncode == 0, run.stdout + run.stderr
    for hook in ("meshauthz validate", "meshauthz analyze", "meshauthz test"):
        assert re.search(rf"^{hook}\.+Passed$", run.stdout, re.M), run.stdout

    seed = _repo(tmp_path / "seed", {Path(p.name): p for p in (EXAMPLES / "seed").iterdir()})
    run = try_repo(seed)
    assert run.returncode == 1
    assert re.search(r"^meshauthz analyze\.+Failed$", run.stdout, re.M), run.stdout
    assert "error[MA2001]" in run.stdout
    assert re.search(r"^meshauthz validate\.+Passed$", run.stdout, re.M)


def _action_step(name: str) -> str:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    (step,) = [s for s in action["runs"]["steps"] if s.get("name") == name]
    return step["run"]


GITHUB = {
    "server_url": "https://github.com",
    "action_repository": "owner/meshauthz",
    "action_ref": "v1",
}


def _expand(script: str, inputs: dict[str, str]) -> str:
    """The step's script as GitHub runs it: ``${{ inputs.x }}`` and ``${{ github.x }}``
    replaced."""
    script = re.sub(r"\$\{\{\s*github\.(\w+)\s*\}\}", lambda m: GITHUB[m.group(1)], script)
    return re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: inputs[m.group(1)], script)


def test_action_steps_run_test_and_analyze_and_write_sarif(tmp_path):
    action = yaml.safe_load((REPO / "action.yml").read_text())
    inputs = {k: v.get("default", "") for k, v in action["inputs"].items()}
    steps = action["runs"]["steps"]
    assert any(s.get("uses", "").startswith("github/codeql-action/upload-sarif") for s in steps)
    work = tmp_path / "work"
    shutil.copytree(EXAMPLES / "seed", work)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "github_output"
    out.touch()
    env["GITHUB_OUTPUT"] = str(out)

    test = subprocess.run(
        ["bash", "-c", _expand(_action_step("meshauthz test"), inputs)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    analyze = subprocess.run(
        ["bash", "-e", "-c", _expand(_action_step("meshauthz analyze"), inputs)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert analyze.returncode == 0, analyze.stderr  # the step records; a later step fails
    assert "exit-code=1" in out.read_text()
    sarif = json.loads((work / inputs["sarif-file"]).read_text())
    assert "MA2001" in {r["ruleId"] for r in sarif["runs"][0]["results"]}
    rule = sarif["runs"][0]["tool"]["driver"]["rules"][0]
    assert rule["helpUri"] == (
        f"https://github.com/owner/meshauthz/blob/v1/docs/analyze.md#{rule['id'].lower()}"
    )


def test_pytest_plugin_collects_suites_when_asked(tmp_path):
    for d in ("seed", "failing"):
        shutil.copytree(EXAMPLES / d, tmp_path / d)
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]

    def pytest(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], cwd=cwd, capture_output=True, text=True)

    run = pytest("--meshauthz", "-v")
    # one item per case: the seed's five and one of the failing example's pass
    assert "1 failed, 6 passed" in run.stdout.splitlines()[-1], run.stdout
    assert "seed/seed.test.yaml::frontend GET /api/v1/data" in run.stdout
    # the failure: the case's file and line, what differs, the explanation
    assert "failing/claims.test.yaml:3: case 'frontend may read the data' failed" in run.stdout
    assert "expected ALLOW, got DENY (403)" in run.stdout
    assert "[DENY] default/deny-all-backend rule 0 matches" in run.stdout
    # off unless asked: nothing collected (pytest's exit code 5)
    assert pytest().returncode == 5
    # the ini setting turns it on too
    (tmp_path / "pytest.ini").write_text("[pytest]\nmeshauthz_suites = true\n")
    assert pytest("seed").returncode == 0


def test_kubectl_plugin_executable(capsys):
    exe = shutil.which("kubectl-meshauthz", path=str(BIN))
    assert exe is not None
    run = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("Usage: kubectl meshauthz ")
    run = subprocess.run([exe, "analyze", str(EXAMPLES / "seed")], capture_output=True, text=True)
    assert run.returncode == 1 and "error[MA2001]" in run.stdout

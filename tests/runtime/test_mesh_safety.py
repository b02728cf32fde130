"""A mesh that cannot hurt its host: ``mesh down`` removes only a mesh's own state and
signals only the processes the mesh started; commands from manifests run only when
asked for, without a shell; ``mesh status`` and ``mesh up`` say when something is wrong."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from meshauthz.runtime import pids, supervisor
from meshauthz.runtime.plan import MeshPlan, create_state_dir

from .conftest import EXAMPLES, copy_example

BACKEND = "http://backend.default.svc.cluster.local/api/v1/data"


def meshauthz(*args: str, state_home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESHAUTHZ_STATE_HOME": str(state_home)}
    return subprocess.run(
        [sys.executable, "-m", "meshauthz.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def fake_mesh_state(path: Path) -> Path:
    """A state directory as mesh up leaves it (marker and plan), without processes."""
    state_id = create_state_dir(path)
    MeshPlan(
        name=path.name,
        manifests=str(path.parent),
        state_dir=str(path),
        trust_domain="cluster.local",
        ip_block="127.0.0",
        cert_ttl_seconds=60,
        state_id=state_id,
    ).save()
    return path


@pytest.fixture
def bystander():
    """A process this test starts, leading its own process group: a stale pids.json
    will point at it, and mesh down must leave it alone."""
    p = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(5)


def test_down_refuses_a_directory_that_is_not_a_mesh_state(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (victim / "plan.json").write_text("{}")  # looks like a mesh, but has no marker
    r = meshauthz("mesh", "down", "--state-dir", str(victim), state_home=tmp_path / "home")
    assert r.returncode == 2, r.stderr
    assert "is not the state directory of a mesh meshauthz started" in r.stderr
    assert (victim / "precious.txt").read_text() == "keep me"

    # A marker whose id the plan does not hold (copied from another mesh) is refused too.
    other = fake_mesh_state(tmp_path / "other")
    (victim / ".meshauthz-mesh-state").write_bytes((other / ".meshauthz-mesh-state").read_bytes())
    r = meshauthz("mesh", "down", "--state-dir", str(victim), state_home=tmp_path / "home")
    assert r.returncode == 2
    assert (victim / "precious.txt").exists()

    # Under the state home, by name: the same rule.
    home = tmp_path / "home"
    (home / "lookalike").mkdir(parents=True)
    (home / "lookalike" / "plan.json").write_text("{}")
    r = meshauthz("mesh", "down", "--name", "lookalike", state_home=home)
    assert r.returncode == 2
    assert (home / "lookalike" / "plan.json").exists()

    # A real (marked) mesh state is removed.
    r = meshauthz("mesh", "down", "--state-dir", str(other), state_home=home)
    assert r.returncode == 0, r.stderr
    assert not other.exists()


@pytest.mark.parametrize("name", ["../outside", "..", "a/b", "/abs", ".hidden", "x y", ""])
def test_names_are_validated(tmp_path: Path, name: str) -> None:
    home = tmp_path / "home"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "plan.json").write_text("{}")
    for cmd in (["down"], ["status"], ["up", str(EXAMPLES / "seed")]):
        r = meshauthz("mesh", *cmd, "--name", name, state_home=home)
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        if name:
            assert "a mesh name is 1 to 63 letters" in r.stderr
    assert (outside / "plan.json").exists()
    assert not home.exists()  # nothing was created either


def test_up_uses_only_a_new_or_empty_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "mine"
    state.mkdir()
    (state / "notes.txt").write_text("mine")
    r = meshauthz(
        "mesh", "up", str(EXAMPLES / "seed"), "--state-dir", str(state), state_home=tmp_path
    )
    assert r.returncode == 2
    assert "exists and is not a mesh's state directory" in r.stderr
    assert sorted(p.name for p in state.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("stale", ["start-time", "command-line", "no-identity"])
def test_down_never_signals_a_process_it_did_not_start(
    tmp_path: Path, bystander: subprocess.Popen[bytes], stale: str
) -> None:
    state = fake_mesh_state(tmp_path / "stale")
    real = pids.identify(bystander.pid)
    assert real is not None
    if stale == "no-identity":  # the format before identities were recorded
        (state / "pids.json").write_text(
            json.dumps({"controlplane": bystander.pid, "pgid": bystander.pid})
        )
    else:
        if stale == "start-time":  # the PID, reused by another process
            rec = pids.ProcessIdentity(real.pid, str(int(real.start) - 1), real.cmdline)
        else:
            rec = pids.ProcessIdentity(real.pid, real.start, ("/usr/bin/envoy", "-c", "x"))
        pids.write(
            state / "pids.json", pids.PidsFile(pgid=bystander.pid, processes={"controlplane": rec})
        )
    r = meshauthz("mesh", "down", "--state-dir", str(state), state_home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "stale pids.json entry controlplane" in r.stderr
    assert "not signalled" in r.stderr
    assert bystander.poll() is None, "mesh down signalled a process it did not start"
    assert not state.exists()


def test_down_signals_a_process_whose_identity_holds(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    """The other side of the check: a recorded process that is still itself is stopped."""
    state = fake_mesh_state(tmp_path / "live")
    real = pids.identify(bystander.pid)
    assert real is not None
    pids.write(state / "pids.json", pids.PidsFile(pgid=real.pid, processes={"controlplane": real}))
    r = meshauthz("mesh", "down", "--state-dir", str(state), state_home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert bystander.wait(5) == -signal.SIGTERM


def test_up_on_manifests_istio_rejects_exits_2_with_the_findings(tmp_path: Path) -> None:
    d = copy_example("seed-fixed", tmp_path / "bad")
    p = d / "allow-frontend-get-data.yaml"
    p.write_text(p.read_text().replace('methods: ["GET"]', 'methods: "GET"'))
    r = meshauthz("mesh", "up", str(d), state_home=tmp_path / "home")
    assert r.returncode == 2, r.stderr
    assert "the cluster would reject these objects (Istio or the API server)" in r.stderr
    assert "allow-frontend-get-data.yaml:" in r.stderr and "expected a list" in r.stderr
    assert "this is a bug" not in r.stderr
    assert not (tmp_path / "home" / "bad").exists()

    scalar = tmp_path / "scalar"
    scalar.mkdir()
    (scalar / "x.yaml").write_text("- just\n- a list\n")
    r = meshauthz("mesh", "up", str(scalar), state_home=tmp_path / "home")
    assert r.returncode == 2, r.stderr
    # not a Kubernetes object: skipped, and nothing else is there to run
    assert "no Kubernetes objects found" in r.stderr and "this is a bug" not in r.stderr


APP = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"argv": sys.argv[1:]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer((os.environ["MESH_BIND"], int(os.environ["PORT"])), H).serve_forever()
"""


def with_command(tmp_path: Path) -> tuple[Path, Path]:
    """seed-fixed, with the backend's pod template asking for a command whose
    arguments a shell would expand, split and execute."""
    d = copy_example("seed-fixed", tmp_path / "cmd")
    app = tmp_path / "app.py"
    app.write_text(APP)
    touched = tmp_path / "touched"
    command = f"{sys.executable} {app} '$PORT' 'a;touch {touched}' \"x y\" '$(id)'"
    backend = d / "backend.yaml"
    text = backend.read_text()
    anchor = "  template:\n    metadata:\n"
    assert anchor in text
    backend.write_text(
        text.replace(
            anchor,
            anchor
            + f"      annotations:\n        mesh.meshauthz.io/command: {json.dumps(command)}\n",
        )
    )
    return d, touched


def test_commands_from_manifests_need_the_flag(tmp_path: Path) -> None:
    d, _ = with_command(tmp_path)
    state = tmp_path / "state"
    r = meshauthz("mesh", "up", str(d), "--state-dir", str(state), state_home=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "default/backend asks to run" in r.stderr
    assert "--run-commands" in r.stderr
    assert not state.exists()

    v = meshauthz("validate", str(d), state_home=tmp_path)
    assert v.returncode == 0, v.stdout
    line = next(x for x in v.stdout.splitlines() if "mesh-command-annotation" in x)
    assert line.startswith(f"{d / 'backend.yaml'}:")
    assert "warning[mesh-command-annotation] Deployment default/backend" in line
    assert "--run-commands" in line
    assert "1 warning" in v.stdout


def test_commands_run_as_argv_without_a_shell(mesh_runner, tmp_path: Path) -> None:
    d, touched = with_command(tmp_path)
    mesh = mesh_runner(d, run_commands=True)
    r = mesh.curl("default/frontend", BACKEND)
    assert r.status == 200, r.body
    assert json.loads(r.body)["argv"] == ["$PORT", f"a;touch {touched}", "x y", "$(id)"]
    assert not touched.exists()


def test_status_exits_1_when_the_control_plane_is_gone(mesh_runner, tmp_path: Path) -> None:
    mesh = mesh_runner(copy_example("seed-fixed", tmp_path / "fixed"))
    ok = meshauthz("mesh", "status", "--state-dir", str(mesh.state), state_home=tmp_path)
    assert ok.returncode == 0, ok.stdout
    recorded = pids.read(mesh.state / "pids.json")
    cp = recorded.processes["controlplane"]
    os.kill(cp.pid, signal.SIGKILL)  # started by this test (mesh_runner), crashed here
    os.waitpid(cp.pid, 0)
    for fmt in ("text", "json"):
        r = meshauthz(
            "mesh", "status", "--state-dir", str(mesh.state), "-o", fmt, state_home=tmp_path
        )
        assert r.returncode == 1, r.stdout
    assert "NOT RUNNING" in r.stdout or json.loads(r.stdout)["running"] is False
    # Its Envoys and applications outlived it; mesh down still stops every one of them
    # (the group's leader is gone, so its members are found by their recorded identity).
    left = [r for n, r in recorded.processes.items() if n != "controlplane"]
    assert all(pids.is_alive(r) for r in left)
    result = supervisor.down(mesh.state)
    assert result.skipped == []
    assert not any(pids.is_alive(r) for r in left)
    assert not mesh.state.exists()


def test_a_mesh_whose_state_is_removed_stops_itself(mesh_runner, tmp_path: Path) -> None:
    """Without its state, mesh down could not find the processes: they must not outlive it."""
    import shutil
    import time

    mesh = mesh_runner(copy_example("seed", tmp_path / "seed"))
    recorded = list(pids.read(mesh.state / "pids.json").processes.values())
    assert len(recorded) == 5
    shutil.rmtree(mesh.state)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(pids.is_alive(r) for r in recorded):
        time.sleep(0.1)
    assert not any(pids.is_alive(r) for r in recorded)
    assert not mesh.state.exists()

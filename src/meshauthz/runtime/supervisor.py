"""Starting and stopping a local mesh: ``mesh up`` / ``mesh down`` behind the CLI.

``up`` writes the plan into a fresh state directory, starts the control plane
detached (a new session: it and everything it starts form one process group)
and waits, bounded, until its ``status.json`` says ready (or failed). ``down``
sends SIGTERM to the group, waits, sends SIGKILL to what is left (the group
and every PID recorded in ``pids.json``), then removes the state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from meshauthz.errors import MeshauthzError
from meshauthz.runtime.controlplane import load_snapshot
from meshauthz.runtime.plan import MeshPlan, make_plan, state_root


class MeshError(MeshauthzError):
    pass


def mesh_dir(name: str | None, state_dir: str | None) -> Path:
    """The state directory of a mesh: ``--state-dir``, else ``<state root>/<name>``,
    else the only mesh under the state root."""
    if state_dir:
        return Path(state_dir).resolve()
    root = state_root()
    if name:
        return root / name
    found = sorted(p.parent for p in root.glob("*/plan.json")) if root.is_dir() else []
    if not found:
        raise MeshError(f"no mesh is up (nothing under {root}); run: meshauthz mesh up DIR")
    if len(found) > 1:
        running = [p for p in found if is_running(p)]
        if len(running) == 1:
            return running[0]
        names = ", ".join(p.name for p in (running or found))
        raise MeshError(f"several meshes are up ({names}): choose one with --name")
    return found[0]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def is_running(state: Path) -> bool:
    pids = read_json(state / "pids.json") or {}
    cp = pids.get("controlplane")
    return isinstance(cp, int) and _alive(cp)


def up(
    manifests: str,
    *,
    name: str | None = None,
    state_dir: str | None = None,
    cert_ttl_seconds: int = 3600,
    jwks: dict[str, str] | None = None,
    timeout: float = 90.0,
    owner_pid: int | None = None,
) -> MeshPlan:
    """Bring a mesh up; returns its plan once every process is ready."""
    src = Path(manifests)
    if not src.exists():
        raise MeshError(f"{manifests}: no such file or directory")
    mesh_name = name or src.resolve().name
    state = mesh_dir(mesh_name, state_dir)
    if (state / "plan.json").exists():
        if is_running(state):
            raise MeshError(
                f"mesh {mesh_name} is already up (state {state}); run: meshauthz mesh down"
                + (f" --name {mesh_name}" if not state_dir else f" --state-dir {state}")
            )
        shutil.rmtree(state, ignore_errors=True)
    for uri, f in (jwks or {}).items():
        if not Path(f).is_file():
            raise MeshError(f"--jwks {uri}={f}: no such file")
    jwks = {u: str(Path(f).resolve()) for u, f in (jwks or {}).items()}
    snapshot = load_snapshot(manifests, jwks)  # refuses manifests Istio would reject
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state, 0o700)
    plan = make_plan(
        snapshot,
        name=mesh_name,
        manifests=manifests,
        state_dir=state,
        cert_ttl_seconds=cert_ttl_seconds,
        jwks=jwks,
    )
    plan.owner_pid = owner_pid
    plan.log_dir().mkdir(parents=True, exist_ok=True)
    plan.save()
    log = (plan.log_dir() / "controlplane.out").open("ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshauthz.runtime.controlplane", "--state-dir", str(state)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        log.close()
    (state / "pids.json").write_text(json.dumps({"controlplane": proc.pid, "pgid": proc.pid}))
    deadline = time.monotonic() + timeout
    while True:
        status = read_json(state / "status.json") or {}
        if status.get("state") == "ready":
            return plan
        if status.get("state") == "failed" or proc.poll() is not None:
            detail = status.get("error") or _tail(plan.log_dir() / "controlplane.log")
            down(state)
            raise MeshError(f"mesh {mesh_name} failed to start: {detail}")
        if time.monotonic() > deadline:
            detail = _tail(plan.log_dir() / "controlplane.log")
            down(state)
            raise MeshError(f"mesh {mesh_name} not ready after {timeout:.0f}s: {detail}")
        time.sleep(0.05)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def down(state: Path, *, timeout: float = 10.0, keep_state: bool = False) -> list[int]:
    """Stop every process of the mesh and remove its state. Returns PIDs that were
    still alive and had to be killed."""
    pids = read_json(state / "pids.json") or {}
    pgid = pids.get("pgid")
    all_pids = [p for p in pids.values() if isinstance(p, int)]
    if isinstance(pgid, int):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    for p in all_pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout / 2
    while time.monotonic() < deadline and (
        any(_alive(p) for p in all_pids) or (isinstance(pgid, int) and _group_alive(pgid))
    ):
        time.sleep(0.05)
    killed = []
    if isinstance(pgid, int) and _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for p in all_pids:
        if _alive(p):
            killed.append(p)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + timeout / 2
    while time.monotonic() < deadline and any(_alive(p) for p in all_pids):
        time.sleep(0.05)
    if not keep_state:
        shutil.rmtree(state, ignore_errors=True)
    return killed


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies left? Look for a live member.
    try:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{d}/stat").read_text()
                rest = stat.split(") ", 1)[1].split()
                if int(rest[2]) == pgid and rest[0] != "Z":
                    return True
        return False
    except OSError:
        return True


__all__ = ["MeshError", "down", "is_running", "mesh_dir", "read_json", "up"]

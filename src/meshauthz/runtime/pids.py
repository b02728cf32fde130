"""Which processes are a mesh's: ``pids.json`` and the identity checks before any signal.

A PID alone does not name a process: once the process is gone, the number is
handed to another one, and a stale ``pids.json`` would make ``mesh down``
signal a stranger. So each process is recorded, when it is started, with its
identity (its start time, field 22 of ``/proc/PID/stat``, and its command
line), and a signal goes only to a process that still has that identity.
Where ``pidfd`` is available the process is pinned before it is checked, so
the PID cannot be reused between the check and the signal.

``pids.json``::

    {"version": 2, "pgid": 1234,
     "processes": {"controlplane": {"pid": 1234, "start": "98765", "cmdline": [...]},
                   "default/backend/envoy": {...}, ...}}
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from msgspec import Struct, field

VERSION = 2


class ProcessIdentity(Struct, frozen=True):
    pid: int
    start: str  # clock ticks since boot (Linux); ps's lstart elsewhere
    cmdline: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "start": self.start, "cmdline": list(self.cmdline)}

    def describe(self) -> str:
        return f"pid {self.pid} ({' '.join(self.cmdline)[:80]!r}, started at {self.start})"


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the live process ``pid``; None when there is none (or a zombie)."""
    if pid <= 0:
        return None
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self/stat").exists():
        try:
            stat = (proc / "stat").read_text()
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            return None
        # The command name (field 2) is in parentheses and may itself hold ") ".
        rest = stat[stat.rindex(")") + 2 :].split()
        if rest[0] in ("Z", "X"):
            return None
        return ProcessIdentity(pid, rest[19], tuple(raw.decode(errors="replace").split("\0")[:-1]))
    try:  # no /proc (macOS, BSD): ps gives the same two facts
        out = subprocess.run(
            ["ps", "-o", "stat=", "-o", "lstart=", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out or out.startswith("Z"):
        return None
    _, _, out = out.partition(" ")
    out = out.strip()
    return ProcessIdentity(pid, out[:24], (out[24:].strip(),))


def is_alive(rec: ProcessIdentity) -> bool:
    """The recorded process still runs (not merely some process with its PID)."""
    return identify(rec.pid) == rec


def send_signal(rec: ProcessIdentity, sig: int) -> bool:
    """Signal the recorded process if it is still that process; True when sent."""
    pidfd_open = getattr(os, "pidfd_open", None)
    pidfd_send = getattr(signal, "pidfd_send_signal", None)
    if pidfd_open is not None and pidfd_send is not None:
        try:
            fd = pidfd_open(rec.pid)
        except ProcessLookupError:
            return False
        except OSError:
            fd = None  # no pidfd here (old kernel): check, then signal by PID
        if fd is not None:
            try:
                # The descriptor pins this process: checked now, it is the one signalled.
                if not is_alive(rec):
                    return False
                pidfd_send(fd, sig)
                return True
            except OSError:
                return False
            finally:
                os.close(fd)
    if not is_alive(rec):
        return False
    try:
        os.kill(rec.pid, sig)
    except OSError:
        return False
    return True


class PidsFile(Struct):
    pgid: int | None = None
    processes: dict[str, ProcessIdentity] = field(default_factory=dict)
    # Entries that cannot be checked (no identity recorded, malformed): never signalled.
    unverifiable: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "pgid": self.pgid,
            "processes": {n: r.to_json() for n, r in self.processes.items()},
        }


def record(processes: dict[str, int | None], pgid: int | None) -> PidsFile:
    """Identities of processes just started (one that already exited is left out)."""
    out = PidsFile(pgid=pgid)
    for name, pid in processes.items():
        ident = identify(pid) if pid else None
        if ident is not None:
            out.processes[name] = ident
    return out


def read(path: Path) -> PidsFile:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return PidsFile()
    out = PidsFile()
    if not isinstance(doc, dict):
        return out
    if doc.get("version") != VERSION:
        # An older or foreign file: bare numbers, nothing to check them against.
        for k, v in doc.items():
            if k != "pgid":
                out.unverifiable[str(k)] = f"{v!r} recorded without its identity"
        return out
    pgid = doc.get("pgid")
    out.pgid = pgid if isinstance(pgid, int) and not isinstance(pgid, bool) else None
    procs = doc.get("processes")
    for name, r in (procs if isinstance(procs, dict) else {}).items():
        try:
            pid, start, cmd = r["pid"], r["start"], r["cmdline"]
            if not (isinstance(pid, int) and isinstance(start, str) and isinstance(cmd, list)):
                raise TypeError
            out.processes[str(name)] = ProcessIdentity(pid, start, tuple(str(c) for c in cmd))
        except (KeyError, TypeError):
            out.unverifiable[str(name)] = f"{r!r} is not a process record"
    return out


def write(path: Path, pids: PidsFile, *, exclusive: bool = False) -> bool:
    """Write atomically; with ``exclusive``, only if no file is there yet (the one
    there was written by the control plane itself and is newer). True when written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(pids.to_json(), indent=1, sort_keys=True))
    try:
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


__all__ = [
    "PidsFile",
    "ProcessIdentity",
    "identify",
    "is_alive",
    "read",
    "record",
    "send_signal",
    "write",
]

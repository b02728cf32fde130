"""The mesh never keeps enforcing a policy the user replaced.

* A sidecar whose Envoy refuses an update (here a real refusal: a principal
  pattern istiod turns into a regex larger than RE2's program-size limit, which
  Istio accepts and Envoy rejects) is detected from Envoy's own stats, reported
  by ``mesh status`` (exit 1, which workload and why) and the control plane's
  log, and fails closed: it denies every request until a change Envoy accepts.
* A manifest rewritten in place, in chunks, is read only once it stands still:
  no half-written state is ever enforced; a file that does not parse is
  reported and the last good configuration stays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from meshauthz.runtime import acks, client
from meshauthz.runtime import envoy_config as ec
from meshauthz.runtime.controlplane import ManifestWatch
from meshauthz.runtime.delivery import FileDelivery

from .conftest import Mesh, copy_example, write_atomic
from .test_one_truth import PORTS

# Larger than RE2's program-size limit both in vanilla Envoy (100) and with istiod's
# runtime flag (re2.max_program_size.error_level: 32768).
LONG = "x" * 40000


def deny_frontend(extra_principal: str | None = None) -> str:
    principals = ["*/sa/frontend"] + ([f"*{extra_principal}"] if extra_principal else [])
    return f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-frontend, namespace: default}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  action: DENY
  rules:
  - from: [{{source: {{principals: {json.dumps(principals)}}}}}]
"""


def mesh_status(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshauthz.cli.main", "mesh", "status"]
        + ["--state-dir", str(mesh.state), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def status_json(mesh: Mesh) -> dict[str, Any]:
    return json.loads((mesh.state / "status.json").read_text())


def held(cfg: Path) -> ec.ResourceSet:
    """The resources in a sidecar's configuration files."""
    by_type: dict[ec.ResourceType, dict[str, Any]] = {}
    for f in sorted(cfg.glob("*.json")):
        if f.name != "bootstrap.json":
            for r in json.loads(f.read_text())["resources"]:
                by_type.setdefault(ec.ResourceType(r["@type"]), {})[r["name"]] = r
    return ec.ResourceSet("held", by_type)


def test_a_refused_update_is_reported_and_fails_closed(mesh_runner, tmp_path: Path) -> None:
    d = copy_example(
        "seed",
        tmp_path / "ports",
        skip=("deny-all-backend.yaml", "allow-frontend-get-data.yaml", "backend.yaml"),
    )
    (d / "backend.yaml").write_text(PORTS)
    mesh = mesh_runner(d)
    snap = mesh.snapshot()
    http = "http://backend.default.svc.cluster.local:80/public"  # DISABLE: no principal seen
    auto = "http://backend.default.svc.cluster.local:8080/"  # auto-detected, over mTLS
    tcp = "http://backend.default.svc.cluster.local:9000/"  # network RBAC
    other = "http://frontend.default.svc.cluster.local/"

    def outcomes() -> tuple[Any, ...]:
        return (
            mesh.status("default/frontend", http, snapshot=snap),
            mesh.status("default/frontend", auto, snapshot=snap),
            mesh.status("default/frontend", tcp, snapshot=snap),
            mesh.status("default/backend", other, snapshot=snap),
        )

    assert outcomes() == (200, 200, 200, 200)
    assert mesh_status(mesh).returncode == 0

    # The user denies frontend; Envoy refuses the DENY filter (ECDS) and the
    # listeners holding the network RBAC filter (LDS). Without failing closed the
    # backend would go on letting frontend in.
    mesh.put("deny-frontend.yaml", deny_frontend(LONG))
    mesh.wait_for(lambda: bool(status_json(mesh).get("failClosed")), True, timeout=15)
    assert outcomes() == (403, 403, client.RESET, 200)  # only the backend is closed
    r = mesh.curl("default/frontend", http, snapshot=snap)
    entry = client.find_entry(mesh.plan, mesh.plan.workloads["default/backend"], r.request_id, 2.0)
    assert entry is not None and ec.FAIL_CLOSED_POLICY in entry["details"]

    fc = status_json(mesh)["failClosed"]
    assert list(fc) == ["default/backend"]
    assert fc["default/backend"]["denyingAll"] is True
    reason = fc["default/backend"]["reason"]
    assert "filter meshauthz.deny (ECDS)" in reason and "listeners (LDS)" in reason
    assert "extension_config_discovery.http_filter.meshauthz.deny.update_rejected" in reason
    assert "program size" in reason  # Envoy's own words, from its log
    st = mesh_status(mesh)
    assert st.returncode == 1, st.stdout
    assert "default/backend: FAILING CLOSED: its Envoy refused generation" in st.stdout
    assert "deny every request" in st.stdout
    js = mesh_status(mesh, "-o", "json")
    assert js.returncode == 1
    assert "default/backend" in json.loads(js.stdout)["status"]["failClosed"]
    log = (mesh.plan.log_dir() / "controlplane.log").read_text()
    assert "default/backend: Envoy refused its configuration" in log
    assert "failing closed" in log

    # A change Envoy accepts ends it: the real DENY (no principal on the DISABLE port).
    mesh.put("deny-frontend.yaml", deny_frontend())
    mesh.wait_for(lambda: status_json(mesh).get("failClosed"), {}, timeout=15)
    assert outcomes() == (200, 403, client.RESET, 200)
    assert mesh_status(mesh).returncode == 0
    mesh.remove("deny-frontend.yaml")
    mesh.wait_for(outcomes, (200, 200, 200, 200), timeout=10)
    assert "no longer failing closed" in (mesh.plan.log_dir() / "controlplane.log").read_text()

    # The last resort, for an Envoy that refused even the fail-closed listeners
    # (listeners that close every connection): a real Envoy takes it, and nothing of
    # the backend answers on any kind of port.
    urls = [http, auto, tcp]
    w = mesh.plan.workloads["default/backend"]
    delivery = FileDelivery(mesh.plan.config_dir(w))
    before = acks.read_stats(w.ip, w.admin_port)
    assert before is not None
    delivery.deliver(ec.lockdown(held(mesh.plan.config_dir(w)), "5000"))
    expected = acks.Expected(
        delivery.versions(), {s: before.failures(s) for s in delivery.versions()}
    )
    assert expected.versions[(ec.ResourceType.LISTENER, "")] == "5000"

    def verdict() -> tuple[bool, dict[Any, str]]:
        stats = acks.read_stats(w.ip, w.admin_port)
        assert stats is not None
        v = acks.judge(stats, expected)
        return v.confirmed, v.refused

    mesh.wait_for(verdict, (True, {}))

    def locked() -> list[Any]:
        return [mesh.status("default/frontend", u, snapshot=snap, timeout=5) for u in urls]

    # Connections open before it drain with the filters of the fail-closed set (403);
    # new ones are closed at once (the caller's sidecar answers 503).
    assert all(s in (403, 503, client.RESET) for s in locked())
    mesh.wait_for(lambda: all(s in (503, client.RESET) for s in locked()), True, timeout=10)
    listeners = json.loads((mesh.plan.config_dir(w) / "lds.json").read_text())["resources"]
    assert sorted(r["name"] for r in listeners) == ["inbound|80", "inbound|8080", "inbound|9000"]


def deny_paths(*paths: str) -> str:
    listed = "".join(f"        - {p}\n" for p in paths)
    return f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-frontend-paths
  namespace: default
spec:
  selector:
    matchLabels:
      app: backend
  action: DENY
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/frontend
    to:
    - operation:
        paths:
{listed}"""


OLD = deny_paths("/api/v1/data")
# Written line by line, NEW is for a moment a policy that denies only /api/v1/other.
NEW = deny_paths("/api/v1/other", "/api/v1/data")


def rewrite_in_place(path: Path, text: str, pause: float = 0.09) -> None:
    """As a program saving over the file: truncate, then write it line by line,
    each pause shorter than the control plane's debounce."""
    with path.open("w") as f:
        for line in text.splitlines(keepends=True):
            f.write(line)
            f.flush()
            time.sleep(pause)


def test_a_policy_rewritten_in_place_is_never_half_enforced(mesh_runner, tmp_path: Path) -> None:
    d = copy_example(
        "seed-fixed",
        tmp_path / "m",
        skip=("allow-nothing-backend.yaml", "allow-frontend-get-data.yaml"),
    )
    policy = d / "deny.yaml"
    write_atomic(policy, OLD)
    mesh = mesh_runner(d)
    snap = mesh.snapshot()
    data = "http://backend.default.svc.cluster.local/api/v1/data"
    other = "http://backend.default.svc.cluster.local/api/v1/other"
    assert mesh.status("default/frontend", data, snapshot=snap) == 403
    assert mesh.status("default/frontend", other, snapshot=snap) == 200

    results: list[Any] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                results.append(mesh.status("default/frontend", data, snapshot=snap, timeout=5))
            except Exception as e:  # counted, never hidden
                results.append(f"{type(e).__name__}: {e}")

    t = threading.Thread(target=traffic)
    t.start()
    try:
        # Both policies deny /api/v1/data; a state in between does not.
        for text in (NEW, OLD, NEW):
            rewrite_in_place(policy, text)
            time.sleep(0.4)
    finally:
        stop.set()
        t.join(timeout=15)
    assert not t.is_alive()
    counts = Counter(str(r) for r in results)
    print(f"\nin-place rewrites under traffic: {dict(counts)}")
    assert len(results) >= 30, counts
    assert counts == {"403": len(results)}, counts
    # The rewritten policy is the one in force.
    mesh.wait_for(lambda: mesh.status("default/frontend", other, snapshot=snap), 403)
    assert mesh_status(mesh).returncode == 0

    # A file that does not parse is reported and not applied: NEW stays in force.
    cut = NEW[: NEW.index("selector")] + "selector: {matchLabels: {app: back"
    write_atomic(policy, cut)
    mesh.wait_for(lambda: bool(status_json(mesh).get("lastError")), True)
    st = mesh_status(mesh)
    assert st.returncode == 1
    assert "last change NOT applied" in st.stdout and "deny.yaml" in st.stdout
    log = (mesh.plan.log_dir() / "controlplane.log").read_text()
    assert "manifests not applied (the running configuration stays)" in log
    assert mesh.status("default/frontend", other, snapshot=snap) == 403
    assert mesh.status("default/frontend", data, snapshot=snap) == 403
    write_atomic(policy, OLD)
    mesh.wait_for(lambda: mesh.status("default/frontend", other, snapshot=snap), 200)
    assert mesh_status(mesh).returncode == 0


def test_manifest_watch_waits_until_files_stand_still(tmp_path: Path) -> None:
    p = tmp_path / "a.yaml"
    p.write_text("a: 1\n")
    watch = ManifestWatch(str(tmp_path))
    assert not watch.poll(0.0)
    with p.open("a") as f:  # in place: wait until it stands still
        f.write("b: 2\n")
    assert not watch.poll(1.0)
    assert not watch.poll(1.1)
    with p.open("a") as f:
        f.write("c: 3\n")
    assert not watch.poll(1.3)  # changed again: the wait starts over
    assert not watch.poll(1.4)
    assert watch.poll(1.6)
    assert not watch.poll(2.0)
    write_atomic(p, "d: 4\n")  # replaced whole by a rename: at once
    assert watch.poll(2.1)
    (tmp_path / "b.yaml").write_text("e: 5\n")  # a new file may still be being written
    assert not watch.poll(3.0)
    assert watch.poll(3.25)
    os.unlink(tmp_path / "b.yaml")
    assert not watch.poll(4.0)
    assert watch.poll(4.25)


def test_acks_judge_confirmation_refusal_and_waiting() -> None:
    """The stats as Envoy 1.40 showed them after a refused ECDS update, an accepted
    LDS one and a CDS update not read yet (names and values from a real run)."""
    lds = (ec.ResourceType.LISTENER, "")
    cds = (ec.ResourceType.CLUSTER, "")
    deny = (ec.ResourceType.EXTENSION_CONFIG, "meshauthz.deny")
    stats = acks.EnvoyStats(
        {
            "listener_manager.lds.version_text": '"7"',
            "listener_manager.lds.update_rejected": "1",
            "cluster_manager.cds.version_text": '"1"',
            "extension_config_discovery.http_filter.meshauthz.deny.version_text": '"1"',
            "extension_config_discovery.http_filter.meshauthz.deny.update_rejected": "1",
            "extension_config_discovery.http_filter.meshauthz.deny.config_fail": "1",
            "extension_config_discovery.http_filter.meshauthz.deny.update_failure": "0",
        }
    )
    v = acks.judge(stats, acks.Expected({lds: "7", cds: "7", deny: "7"}, {lds: 1}))
    assert not v.confirmed
    assert list(v.refused) == [deny]
    assert "version 7 refused" in v.refused[deny] and "still holds version 1" in v.refused[deny]
    assert "meshauthz.deny.update_rejected" in v.refused[deny]
    assert "meshauthz.deny.update_failure" not in v.refused[deny]
    assert v.pending == (cds,)
    # Failures counted before the delivery are not a refusal of it.
    v = acks.judge(stats, acks.Expected({deny: "7"}, {deny: 2}))
    assert not v.refused and v.pending == (deny,)
    assert acks.judge(stats, acks.Expected({lds: "7"}, {})).confirmed

"""One scaling point, in a process of its own (so that its peak memory is its own).

Usage: ``python benchmarks/scaling.py N`` prints one JSON object: the generated
mesh of N policies and workloads (meshgen.generate_mesh), its YAML size, the
seconds to load it (``load_mesh``), to build every workload's filters and chain
(``Decider.prepare`` + its runner, for all N workloads), each also as CPU
seconds (``*_cpu_s``: steadier than wall time on a busy machine), the median µs of an
untraced decision of 2,000 prepared random requests, and the process's peak
resident memory: before loading (interpreter and modules), after loading, and
at the end (with every workload's filters built). The files are written by a
child process, so that the memory generating them takes is not counted.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import meshgen

from meshauthz.collector import settle
from meshauthz.decide.engine import Decider
from meshauthz.decide.request import resolve
from meshauthz.decide.request_spec import request_from_data
from meshauthz.mesh.loading import load_mesh


def _hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # ru_maxrss survives exec: the parent's would count
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _generate(d: Path, n: int) -> None:
    """The mesh's files, written by another process: what generating them costs
    (the text, the rules) is then not counted as loading's."""
    code = f"import meshgen, pathlib; meshgen.generate_mesh(pathlib.Path({str(d)!r}), {n})"
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, check=True)


def point(n: int) -> dict[str, float]:
    base = _hwm()  # the interpreter and meshauthz's modules
    with tempfile.TemporaryDirectory(prefix="meshauthz-scale-") as tmp:
        d = Path(tmp) / "mesh"
        _generate(d, n)
        size = sum(p.stat().st_size for p in d.iterdir())
        t0, c0 = time.perf_counter(), time.process_time()
        snapshot = load_mesh([str(d)]).snapshot
        load, load_cpu = time.perf_counter() - t0, time.process_time() - c0
        loaded = _hwm()
        rules = meshgen.generate_mesh(Path(tmp) / "again", n)  # the same rules, for requests
    settle()  # as the command line does after reading
    decider = Decider(snapshot)
    t0, c0 = time.perf_counter(), time.process_time()
    for w in snapshot.workloads:
        assert decider.prepare(w, 8080, "http").runner is not None
    build, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    prepared = []
    for r in meshgen.mesh_requests(rules, 2000):
        data = {"from": {"principal": r.principal}, "to": r.destination, "port": 8080}
        data |= {"method": r.method, "path": r.path}
        prepared.append(decider.prepare_request(resolve(request_from_data(data), snapshot)))
    lat = []
    for p in prepared:
        t = time.perf_counter_ns()
        decider.decide_prepared(p)
        lat.append(time.perf_counter_ns() - t)
    rss = _hwm()
    return {
        "policies": n,
        "yaml_bytes": size,
        "load_s": load,
        "load_cpu_s": load_cpu,
        "build_all_s": build,
        "build_all_cpu_s": build_cpu,
        "decide_us": statistics.median(lat) / 1000,
        "peak_rss_bytes": rss,
        "base_rss_bytes": base,
        "loaded_rss_bytes": loaded,
    }


if __name__ == "__main__":
    print(json.dumps(point(int(sys.argv[1]))))

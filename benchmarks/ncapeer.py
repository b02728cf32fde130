"""IBM's network-config-analyzer (NCA) as the benchmarks beside it call it, and
the timer they share.

``nca_main()``: NCA's command line entry point from the installed package
(``pip install -e '.[bench]'``), or None when it is not installed. ``best``:
the least CPU time of N runs after a warm-up (CPU, not wall: the machine is
shared, and both tools' columns then measure the same thing).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def nca_main() -> Callable[[list[str]], object] | None:
    # benchmarks/nca.py and benchmarks/nca/ here would shadow NCA's own package
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.modules.pop("nca", None)
    try:
        from nca.nca_cli import nca_main as entry
    except ImportError:
        return None
    finally:
        sys.path[:] = saved
    return entry  # type: ignore[no-any-return]


def best(fn: Callable[[], object], repeat: int) -> float:
    """The least CPU time of ``repeat`` runs of ``fn`` after one warm-up run
    (first-use caches, z3's first contexts)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)
